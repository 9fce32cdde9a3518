//! The TAXII 2.1 server of a real `cordon serve`: each caller's collection is exactly its
//! release view (the same indicators as Subscribe, what the policy denies absent from objects
//! and manifests, withheld fields absent, a retraction as a revoked object); bad requests get
//! TAXII error objects and store nothing. Then the peers' own tools: every object served
//! passes the OASIS stix2-validator, and the Python taxii2-client discovers, pages, adds and
//! polls (both pinned in `.ci/requirements.txt`; `.ci/run` sets `CORDON_CI_PYTHON`).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};
use cordon_integration_tests::{
    Federation, GatewayProcess, MemberDir, example_indicators, indicator_client, publish_ids,
    published, read_all, taxii_request,
};
use cordon_proto::v1::{GetRequest, RetractRequest};
use serde_json::{Value, json};

const TAXII: &str = "application/taxii+json;version=2.1";

fn enable_taxii(member: &MemberDir) -> Result<()> {
    let mut config = std::fs::OpenOptions::new()
        .append(true)
        .open(member.config())?;
    config.write_all(b"\n[taxii]\nlisten = \"127.0.0.1:0\"\n")?;
    Ok(())
}

async fn get_json(address: &str, identity: &Path, path: &str) -> Result<(u16, String, Value)> {
    let (status, headers, body) =
        taxii_request(address, identity, "GET", path, Some(TAXII), None).await?;
    let value = serde_json::from_str(&body).with_context(|| format!("{path}: {body}"))?;
    Ok((status, headers, value))
}

async fn post(
    address: &str,
    identity: &Path,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<(u16, Value)> {
    let (status, _, body) = taxii_request(
        address,
        identity,
        "POST",
        path,
        Some(TAXII),
        Some((content_type, body)),
    )
    .await?;
    let value = serde_json::from_str(&body).with_context(|| format!("{path}: {body}"))?;
    Ok((status, value))
}

/// The caller's one collection: its objects path.
async fn objects_path(address: &str, identity: &Path) -> Result<String> {
    let (status, _, collections) = get_json(address, identity, "/cordon/collections/").await?;
    ensure!(status == 200, "{collections}");
    let id = collections["collections"][0]["id"]
        .as_str()
        .context("collection id")?;
    Ok(format!("/cordon/collections/{id}/objects/"))
}

/// Every object of the caller's view, following `next` pages of `limit`; and the pages.
async fn page_all(
    address: &str,
    identity: &Path,
    path: &str,
    query: &str,
    limit: usize,
) -> Result<(Vec<Value>, usize)> {
    let mut objects = Vec::new();
    let mut next: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut url = format!("{path}?limit={limit}{query}");
        if let Some(next) = &next {
            url.push_str(&format!("&next={next}"));
        }
        let (status, headers, envelope) = get_json(address, identity, &url).await?;
        ensure!(status == 200, "{url}: {envelope}");
        ensure!(
            headers.contains(&format!("content-type: {TAXII}")),
            "{headers}"
        );
        pages += 1;
        let page = envelope["objects"].as_array().cloned().unwrap_or_default();
        ensure!(
            page.len() <= limit,
            "{} objects in a page of {limit}",
            page.len()
        );
        objects.extend(page);
        if envelope["more"] != true {
            return Ok((objects, pages));
        }
        next = Some(
            envelope["next"]
                .as_str()
                .context("more without next")?
                .to_string(),
        );
    }
}

fn cordon_id(indicator: &Value) -> Option<String> {
    let extension = indicator["extensions"]
        .as_object()?
        .values()
        .find(|e| e.get("cordon_id").is_some())?;
    extension["cordon_id"].as_str().map(String::from)
}

/// The Cordon ids of the STIX indicators among `objects`.
fn cordon_ids(objects: &[Value]) -> BTreeSet<String> {
    indicators(objects)
        .into_iter()
        .filter_map(cordon_id)
        .collect()
}

/// The ids of the indicators a Subscribe from 0 releases to `identity`.
async fn subscribed_ids(endpoint: &str, identity: &Path) -> Result<BTreeSet<String>> {
    let events = read_all(endpoint, identity, 0, 0).await?;
    Ok(published(&events)
        .into_iter()
        .map(|(_, i, _)| i.id)
        .collect())
}

fn indicators(objects: &[Value]) -> Vec<&Value> {
    objects
        .iter()
        .filter(|o| o["type"] == "indicator")
        .collect()
}

struct Setup {
    _federation: Federation,
    gateway: GatewayProcess,
    taxii: String,
    ids: Vec<String>,
    customs: std::path::PathBuf,
    partner: std::path::PathBuf,
}

/// GH with a TAXII listener, the example indicators published by GH/customs, the first
/// (TLP:CLEAR) retracted. CI is the partner: the reference policy releases it lines 1, 2, 6,
/// 7, 8 and 10, line 2 without its source.
async fn setup() -> Result<Setup> {
    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    enable_taxii(&member)?;
    let gateway = member.start(&[]).await?;
    let taxii = gateway
        .taxii
        .clone()
        .context("no taxii address on the first line")?;
    let customs = federation.identity("GH/customs")?;
    let partner = federation.identity("CI")?;
    let ids = publish_ids(&gateway.endpoint, &customs, example_indicators()?).await?;
    indicator_client(&gateway.endpoint, &customs)
        .await?
        .retract(RetractRequest {
            id: ids[0].clone(),
            reason: "wrong vessel".into(),
        })
        .await?;
    Ok(Setup {
        _federation: federation,
        gateway,
        taxii,
        ids,
        customs,
        partner,
    })
}

#[tokio::test]
async fn a_collection_is_the_callers_release_view() -> Result<()> {
    let Setup {
        _federation,
        gateway,
        taxii,
        ids,
        customs: _,
        partner,
    } = setup().await?;

    let (status, _, discovery) = get_json(&taxii, &partner, "/taxii2/").await?;
    ensure!(status == 200, "{discovery}");
    ensure!(
        discovery["api_roots"][0]
            .as_str()
            .is_some_and(|r| r.ends_with("/cordon/")),
        "{discovery}"
    );
    let (status, _, root) = get_json(&taxii, &partner, "/cordon/").await?;
    ensure!(status == 200 && root["versions"][0] == TAXII, "{root}");
    let (_, _, collections) = get_json(&taxii, &partner, "/cordon/collections/").await?;
    ensure!(
        collections["collections"].as_array().map(Vec::len) == Some(1),
        "{collections}"
    );
    ensure!(
        collections["collections"][0]["can_write"] == false,
        "{collections}"
    );
    let path = objects_path(&taxii, &partner).await?;

    // Subscribe's view of CI, and the TAXII view, page by page.
    let subscribed = subscribed_ids(&gateway.endpoint, &partner).await?;
    let expected: BTreeSet<String> = [1, 2, 6, 7, 8, 10]
        .iter()
        .map(|line| ids[line - 1].clone())
        .collect();
    assert_eq!(subscribed, expected);
    // Every page size gives the same objects, once each.
    let (objects, pages) = page_all(&taxii, &partner, &path, "", 1000).await?;
    ensure!(pages == 1, "{pages} pages");
    for limit in [1, 7, 10, 23, 24] {
        let (paged, pages) = page_all(&taxii, &partner, &path, "", limit).await?;
        ensure!(pages > 1, "{pages} pages of {limit}");
        let ids = |objects: &[Value]| -> Vec<String> {
            objects
                .iter()
                .map(|o| format!("{} {}", o["id"], o["modified"]))
                .collect()
        };
        assert_eq!(ids(&paged), ids(&objects), "pages of {limit}");
    }
    assert_eq!(
        cordon_ids(&objects),
        subscribed,
        "TAXII and Subscribe release the same indicators"
    );
    let mut seen = BTreeSet::new();
    for object in &objects {
        let key = (object["id"].to_string(), object["modified"].to_string());
        ensure!(seen.insert(key), "{} served twice", object["id"]);
    }

    // Denied to CI (line 3, AMBER end-user certificate; line 4 AMBER+STRICT; line 11
    // source-protected): absent from objects and manifests, by Cordon id and STIX id.
    let (manifest, _) = page_all(
        &taxii,
        &partner,
        &path.replace("/objects/", "/manifest/"),
        "",
        5,
    )
    .await?;
    let manifest_ids: BTreeSet<&str> = manifest.iter().filter_map(|m| m["id"].as_str()).collect();
    let object_ids: BTreeSet<&str> = objects.iter().filter_map(|o| o["id"].as_str()).collect();
    assert_eq!(manifest_ids, object_ids, "the manifest lists the objects");
    let text = serde_json::to_string(&objects)? + &serde_json::to_string(&manifest)?;
    for line in [3, 4, 11] {
        let id = &ids[line - 1];
        ensure!(!text.contains(id.as_str()), "line {line} ({id}) reached CI");
        ensure!(
            !text.contains(&cordon_stix::indicator_id(id)),
            "line {line} reached CI"
        );
    }
    ensure!(
        !text.contains("Ministry of Defence"),
        "the AMBER certificate's content reached CI"
    );
    // Line 2's source is withheld from CI: absent, and listed by path.
    ensure!(!text.contains("port scanner"), "line 2's source reached CI");
    let line_2 = indicators(&objects)
        .into_iter()
        .find(|o| cordon_id(o).as_deref() == Some(ids[1].as_str()))
        .context("line 2")?;
    ensure!(
        line_2.to_string().contains("\"withheld\":[\"source\"]"),
        "{line_2}"
    );

    // The retraction: line 1 is served revoked (the default `match[version]=last`), both
    // versions with `all`, and by id.
    let stix_id = cordon_stix::indicator_id(&ids[0]);
    let line_1: Vec<&Value> = objects
        .iter()
        .filter(|o| o["id"] == stix_id.as_str())
        .collect();
    ensure!(
        line_1.len() == 1 && line_1[0]["revoked"] == true,
        "{line_1:?}"
    );
    let (all, _) = page_all(
        &taxii,
        &partner,
        &path,
        "&match[version]=all&match[type]=indicator",
        100,
    )
    .await?;
    let versions: Vec<&Value> = all.iter().filter(|o| o["id"] == stix_id.as_str()).collect();
    ensure!(
        versions.len() == 2
            && versions[0].get("revoked").is_none()
            && versions[1]["revoked"] == true,
        "{versions:?}"
    );
    ensure!(all.iter().all(|o| o["type"] == "indicator"), "match[type]");
    let (status, _, by_id) = get_json(&taxii, &partner, &format!("{path}{stix_id}/")).await?;
    ensure!(
        status == 200 && by_id["objects"][0]["revoked"] == true,
        "{by_id}"
    );
    let (status, _, listed) =
        get_json(&taxii, &partner, &format!("{path}{stix_id}/versions/")).await?;
    ensure!(
        status == 200 && listed["versions"].as_array().map(Vec::len) == Some(2),
        "{listed}"
    );
    // By id, a denied indicator is as absent as one that does not exist.
    let denied = cordon_stix::indicator_id(&ids[2]);
    let (status, _, error) = get_json(&taxii, &partner, &format!("{path}{denied}/")).await?;
    ensure!(status == 404 && error["http_status"] == "404", "{error}");
    let absent = cordon_stix::indicator_id(&uuid_v7_like());
    let (status, _, absent_error) = get_json(&taxii, &partner, &format!("{path}{absent}/")).await?;
    ensure!(
        status == 404 && absent_error["title"] == error["title"],
        "{absent_error}"
    );

    // A page resumes only where this gateway said, for the caller it said it to: a made-up
    // `next` (a re-read from the start that would escape the re-read quota) or another
    // caller's is refused.
    for forged in [
        "0.0",
        "1.0.00",
        "0.0.0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let (status, _, error) =
            get_json(&taxii, &partner, &format!("{path}?next={forged}")).await?;
        ensure!(
            status == 400
                && error["description"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("next:")),
            "{error}"
        );
    }
    let (_, _, first_page) = get_json(&taxii, &partner, &format!("{path}?limit=3")).await?;
    let given = first_page["next"].as_str().context("next")?.to_string();
    let (status, _, _) =
        get_json(&taxii, &partner, &format!("{path}?limit=3&next={given}")).await?;
    ensure!(status == 200);
    let other = _federation.identity("CI/customs")?;
    let other_path = objects_path(&taxii, &other).await?;
    let (status, _, _) = get_json(
        &taxii,
        &other,
        &format!("{other_path}?limit=3&next={given}"),
    )
    .await?;
    ensure!(status == 400, "another caller's token");

    // `added_after`: nothing was added after the last object's date_added.
    let last = manifest.last().context("manifest")?["date_added"]
        .as_str()
        .context("date_added")?
        .to_string();
    let (later, _) = page_all(
        &taxii,
        &partner,
        &path,
        &format!("&added_after={last}"),
        100,
    )
    .await?;
    ensure!(later.is_empty(), "{later:?}");

    // Every object served passes the OASIS validator.
    validate(&objects)?;
    Ok(())
}

fn uuid_v7_like() -> String {
    "0193a0c4-5e1f-7a2b-8c3d-000000000000".to_string()
}

#[tokio::test]
async fn bad_requests_get_taxii_errors_and_store_nothing() -> Result<()> {
    let Setup {
        _federation,
        gateway,
        taxii,
        ids,
        customs,
        partner,
    } = setup().await?;
    let head = || async {
        let events = read_all(&gateway.endpoint, &customs, 0, 0).await?;
        Ok::<u64, anyhow::Error>(events.last().map_or(0, |e| e.sequence))
    };
    let before = head().await?;
    let path = objects_path(&taxii, &customs).await?;
    let foreign = json!({
        "type": "indicator", "spec_version": "2.1",
        "id": "indicator--6b1e3f0a-2c4d-4e5f-8a9b-0c1d2e3f4a5b",
        "created": "2026-11-20T00:00:00.000Z", "modified": "2026-11-20T00:00:00.000Z",
        "pattern": "[salw-vessel:imo = '9319466' AND salw-vessel:flag = 'PA']",
        "pattern_type": "stix", "valid_from": "2026-11-20T00:00:00Z",
        "confidence": 55, "description": "Flag hopping twice in one month.",
        "object_marking_refs": ["marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb"]
    });

    // Not TAXII's media type: 406 for Accept, 415 for the body.
    let (status, _, body) = taxii_request(
        &taxii,
        &customs,
        "GET",
        "/cordon/collections/",
        Some("text/html"),
        None,
    )
    .await?;
    ensure!(
        status == 406 && body.contains("\"http_status\":\"406\""),
        "{status} {body}"
    );
    let envelope = serde_json::to_vec(&json!({"objects": [foreign.clone()]}))?;
    let (status, error) = post(&taxii, &customs, &path, "application/json", &envelope).await?;
    ensure!(status == 415 && error["http_status"] == "415", "{error}");
    // Wrong spec_version, bad ids, 10 MB of nesting: 400, naming what is wrong.
    let mut old = foreign.clone();
    old["spec_version"] = json!("2.0");
    let mut bad_id = foreign.clone();
    bad_id["id"] = json!("indicator--12345");
    let nested = format!(
        "{{\"objects\": {}{}}}",
        "[".repeat(5_000_000),
        "]".repeat(5_000_000)
    );
    let cases: [(Vec<u8>, &str); 5] = [
        (b"{\"objects\": []}".to_vec(), "objects: empty"),
        (
            serde_json::to_vec(&json!({"objects": [foreign.clone(), old]}))?,
            "objects[1].spec_version",
        ),
        (
            serde_json::to_vec(&json!({"objects": [bad_id]}))?,
            "objects[0].id",
        ),
        (nested.into_bytes(), "not JSON"),
        (b"{\"objects\": 7}".to_vec(), "objects: expected a list"),
    ];
    for (body, named) in cases {
        let (status, error) = post(&taxii, &customs, &path, TAXII, &body).await?;
        ensure!(
            status == 400 && error["http_status"] == "400",
            "{named}: {error}"
        );
        ensure!(
            error["description"]
                .as_str()
                .is_some_and(|d| d.contains(named)),
            "{named}: {error}"
        );
    }
    // A partner's collection is read-only; another caller's collection does not exist.
    let partner_path = objects_path(&taxii, &partner).await?;
    let (status, error) = post(&taxii, &partner, &partner_path, TAXII, &envelope).await?;
    ensure!(
        status == 403
            && error["description"]
                .as_str()
                .is_some_and(|d| d.contains("read-only")),
        "{error}"
    );
    let (status, _, error) = get_json(&taxii, &partner, &path).await?;
    ensure!(status == 404, "{error}");
    ensure!(
        head().await? == before,
        "a refused request stored something"
    );

    // A valid add: published as GH/customs would publish it, reported per object.
    let malware = json!({"type": "malware", "spec_version": "2.1",
        "id": "malware--0c7b5b88-8ff7-4a4d-aa9d-feb398cd0061",
        "created": "2026-10-01T00:00:00.000Z", "modified": "2026-10-01T00:00:00.000Z",
        "name": "not ours", "is_family": false});
    let body = serde_json::to_vec(&json!({"objects": [foreign, malware]}))?;
    let (status, added) = post(&taxii, &customs, &path, TAXII, &body).await?;
    ensure!(status == 202 && added["status"] == "complete", "{added}");
    ensure!(
        added["success_count"] == 1 && added["failure_count"] == 1 && added["total_count"] == 2,
        "{added}"
    );
    let status_path = format!(
        "/cordon/status/{}/",
        added["id"].as_str().context("status id")?
    );
    let (status, _, polled) = get_json(&taxii, &customs, &status_path).await?;
    ensure!(status == 200 && polled == added, "{polled}");
    // Another caller cannot read the status.
    let (status, _, _) = get_json(&taxii, &partner, &status_path).await?;
    ensure!(status == 404);
    let message = added["successes"][0]["message"]
        .as_str()
        .context("message")?;
    let id = message
        .split_whitespace()
        .nth(4)
        .context("id in the message")?
        .to_string();
    let stored = indicator_client(&gateway.endpoint, &customs)
        .await?
        .get(GetRequest { id: id.clone() })
        .await?
        .into_inner()
        .indicator
        .context("indicator")?;
    ensure!(
        stored.publisher == "GH/customs" && stored.signature.is_some(),
        "{stored:?}"
    );
    ensure!(
        stored.narrative == "Flag hopping twice in one month.",
        "{stored:?}"
    );
    ensure!(head().await? == before + 1, "one indicator added");
    ensure!(!ids.contains(&id));
    Ok(())
}

fn python() -> Option<String> {
    match std::env::var("CORDON_CI_PYTHON") {
        Ok(python) if !python.is_empty() => Some(python),
        _ => {
            eprintln!(
                "skipped: CORDON_CI_PYTHON is not set (.ci/run sets it to a virtual environment \
                 with the pinned stix2-validator and taxii2-client)"
            );
            None
        }
    }
}

fn script(name: &str) -> String {
    format!("{}/../.ci/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The OASIS validator on `objects`, every check on, but `uuid-check` for the SALW
/// observables (see stix/tests/validator.rs for the reason).
fn validate(objects: &[Value]) -> Result<()> {
    let Some(python) = python() else {
        return Ok(());
    };
    let (observables, others): (Vec<&Value>, Vec<&Value>) = objects
        .iter()
        .partition(|o| o["type"].as_str().unwrap_or_default().starts_with("salw-"));
    ensure!(!observables.is_empty() && !others.is_empty());
    for (group, disabled) in [(others, None), (observables, Some("uuid-check"))] {
        let mut child = Command::new(&python)
            .arg(script("stix_validate.py"))
            .args(disabled)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(&serde_json::to_vec(&group)?)?;
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!(
                "stix2-validator: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
    Ok(())
}

fn taxii_client(python: &str, args: &[&str]) -> Result<Value> {
    // requests prefers REQUESTS_CA_BUNDLE (and CURL_CA_BUNDLE) to the CA the client is given.
    let output = Command::new(python)
        .arg(script("taxii_client.py"))
        .args(args)
        .env_remove("REQUESTS_CA_BUNDLE")
        .env_remove("CURL_CA_BUNDLE")
        .output()?;
    if !output.status.success() {
        bail!(
            "taxii_client.py {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

#[tokio::test]
async fn the_python_taxii2_client_discovers_pages_adds_and_polls() -> Result<()> {
    let Some(python) = python() else {
        return Ok(());
    };
    let Setup {
        _federation,
        gateway,
        taxii,
        ids: _,
        customs,
        partner,
    } = setup().await?;
    let url = format!("https://{taxii}/taxii2/");
    let files = |dir: &Path| -> Result<[String; 3]> {
        Ok(["cert.pem", "key.pem", "ca.pem"].map(|f| dir.join(f).display().to_string()))
    };
    let [cert, key, ca] = files(&partner)?;
    let read = tokio::task::spawn_blocking({
        let (python, url) = (python.clone(), url.clone());
        move || taxii_client(&python, &["read", &url, &cert, &key, &ca, "10"])
    })
    .await??;
    ensure!(
        read["pages"].as_u64().is_some_and(|p| p > 2),
        "{}",
        read["pages"]
    );
    ensure!(
        read["collections"][0]["can_read"] == true && read["collections"][0]["can_write"] == false
    );
    let objects = read["objects"].as_array().context("objects")?;
    let viewed = cordon_ids(objects);
    let subscribed = subscribed_ids(&gateway.endpoint, &partner).await?;
    let revoked: Vec<&Value> = objects.iter().filter(|o| o["revoked"] == true).collect();
    assert_eq!(
        viewed,
        subscribed,
        "taxii2-client reads what Subscribe releases (revoked: {revoked:?}, {} objects in {} pages)",
        objects.len(),
        read["pages"]
    );
    ensure!(
        read["manifest"].as_array().map(Vec::len) == Some(objects.len()),
        "{}",
        read["manifest"]
    );

    // Adding, as an agency of the member, a bundle of our own making; polled until complete.
    let envelope = customs.join("add.json");
    std::fs::write(
        &envelope,
        serde_json::to_vec(&json!({"objects": [{
            "type": "indicator", "spec_version": "2.1",
            "id": "indicator--0f3c6a2e-9d41-4b7e-a5c8-1e2f3a4b5c6d",
            "created": "2026-11-21T00:00:00.000Z", "modified": "2026-11-21T00:00:00.000Z",
            "pattern": "[salw-account:iban = 'GB29NWBK60161331926819' AND salw-account:bic = 'NWBKGB2L']",
            "pattern_type": "stix", "valid_from": "2026-11-21T00:00:00Z",
            "object_marking_refs": ["marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487"]
        }]}))?,
    )?;
    let [cert, key, ca] = files(&customs)?;
    let envelope = envelope.display().to_string();
    let added = tokio::task::spawn_blocking(move || {
        taxii_client(&python, &["add", &url, &cert, &key, &ca, &envelope])
    })
    .await??;
    ensure!(
        added["status"] == "complete" && added["success_count"] == 1,
        "{added}"
    );
    Ok(())
}

fn cordon_json(args: &[&str]) -> Result<Value> {
    Ok(serde_json::from_str(&cordon_integration_tests::cordon(
        args,
    )?)?)
}

fn test_file(name: &str) -> String {
    format!("{}/tests/interop/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn a_stix_bundle_and_a_misp_event_import_with_a_report_of_the_rest() -> Result<()> {
    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    let gateway = member.start(&[]).await?;
    let customs = federation.identity("GH/customs")?;
    let identity = customs.to_str().context("path")?;
    let connection = [
        "--endpoint",
        gateway.endpoint.as_str(),
        "--identity",
        identity,
    ];

    let bundle = test_file("bundle.json");
    let mut args = vec!["import", "stix", bundle.as_str()];
    args.extend(connection);
    let report = cordon_json(&args)?;
    let sources: Vec<&str> = report["published"]
        .as_array()
        .context("published")?
        .iter()
        .filter_map(|p| p["source"].as_str())
        .collect();
    assert_eq!(
        sources,
        [
            "indicator--d1e2f3a4-b5c6-4d7e-8f90-a1b2c3d4e5f6",
            "indicator--e2f3a4b5-c6d7-4e8f-9a01-b2c3d4e5f6a7"
        ]
    );
    let unmapped: Vec<(String, String)> = report["unmapped"]
        .as_array()
        .context("unmapped")?
        .iter()
        .map(|u| {
            (
                u["id"].as_str().unwrap_or_default().into(),
                u["reason"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    let reason_of = |id: &str| {
        unmapped
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, r)| r.clone())
            .unwrap_or_default()
    };
    assert_eq!(unmapped.len(), 4, "{unmapped:?}");
    ensure!(reason_of("indicator--f3a4b5c6-d7e8-4f90-8b12-c3d4e5f6a7b8").contains("ipv4-addr"));
    ensure!(reason_of("indicator--a4b5c6d7-e8f9-4a01-9c23-d4e5f6a7b8c9").contains("OR"));
    ensure!(
        reason_of("threat-actor--b5c6d7e8-f9a0-4b12-8d34-e5f6a7b8c9d0")
            .contains("no Cordon mapping")
    );
    ensure!(reason_of("relationship--c6d7e8f9-a0b1-4c23-9e45-f6a7b8c9d0e1").contains("indicates"));

    let misp = test_file("misp-event.json");
    let mut args = vec!["import", "misp", misp.as_str()];
    args.extend(connection);
    let report = cordon_json(&args)?;
    ensure!(
        report["published"].as_array().map(Vec::len) == Some(3),
        "{report}"
    );
    let unmapped: Vec<&str> = report["unmapped"]
        .as_array()
        .context("unmapped")?
        .iter()
        .filter_map(|u| u["reason"].as_str())
        .collect();
    assert_eq!(
        unmapped,
        [
            "attribute type email-src has no Cordon mapping",
            "object relation currency of bank-account has no Cordon field",
            "object domain-ip has no Cordon mapping",
        ]
    );

    // What was published is what the files said, signed by GH for GH/customs.
    let events = read_all(&gateway.endpoint, &customs, 0, 0).await?;
    let stored: Vec<Value> = published(&events)
        .into_iter()
        .map(|(_, indicator, _)| serde_json::to_value(indicator))
        .collect::<Result<_, _>>()?;
    ensure!(stored.len() == 5, "{stored:?}");
    let vessel = &stored[0];
    ensure!(
        vessel["vessel"] == json!({"imo": "9319466", "mmsi": "636092001", "flag": "LR"}),
        "{vessel}"
    );
    ensure!(
        vessel["tlp"] == "TLP_GREEN"
            && vessel["confidence"] == 70
            && vessel["publisher"] == "GH/customs",
        "{vessel}"
    );
    ensure!(
        vessel["tags"] == json!(["ais-gap", "loitering"]),
        "{vessel}"
    );
    ensure!(
        stored[1]["endUserCertificate"]["status"] == "EUC_STATUS_SUSPICIOUS"
            && stored[1]["tlp"] == "TLP_GREEN",
        "{}",
        stored[1]
    );
    ensure!(
        stored[2]["account"]["iban"] == "FR1420041010050500013M02606"
            && stored[2]["tlp"] == "TLP_AMBER",
        "{}",
        stored[2]
    );
    ensure!(
        stored[3]["account"]
            == json!({"iban": "NL91ABNA0417164300", "bic": "ABNANL2A", "holder": "Example Forwarding BV"}),
        "{}",
        stored[3]
    );
    ensure!(
        stored[4]["consignment"]["containerNumber"] == "MSCU1234566",
        "{}",
        stored[4]
    );

    // A bundle that cannot be read stores nothing.
    let bad = customs.join("bad-bundle.json");
    let mut text = std::fs::read_to_string(&bundle)?;
    text = text.replacen(
        "\"spec_version\": \"2.1\",\n      \"id\": \"indicator--d1e2",
        "\"spec_version\": \"2.0\",\n      \"id\": \"indicator--d1e2",
        1,
    );
    ensure!(text.contains("\"2.0\""));
    std::fs::write(&bad, text)?;
    let bad = bad.to_str().context("path")?;
    let mut args = vec!["import", "stix", bad];
    args.extend(connection);
    let error = cordon_integration_tests::cordon(&args)
        .unwrap_err()
        .to_string();
    ensure!(error.contains("objects[1].spec_version"), "{error}");
    let after = read_all(&gateway.endpoint, &customs, 0, 0).await?;
    ensure!(
        published(&after).len() == 5,
        "the refused bundle stored something"
    );
    Ok(())
}

#[tokio::test]
async fn export_writes_the_release_view_as_a_bundle_that_validates() -> Result<()> {
    let Setup {
        _federation,
        gateway,
        taxii: _,
        ids,
        customs: _,
        partner,
    } = setup().await?;
    let out = partner.join("export.json");
    cordon_integration_tests::cordon(&[
        "export",
        "stix",
        "--endpoint",
        &gateway.endpoint,
        "--identity",
        partner.to_str().context("path")?,
        "--out",
        out.to_str().context("path")?,
    ])?;
    let bundle: Value = serde_json::from_slice(&std::fs::read(&out)?)?;
    ensure!(bundle["type"] == "bundle", "{bundle}");
    let objects = bundle["objects"].as_array().context("objects")?;
    let exported = cordon_ids(objects);
    let events = read_all(&gateway.endpoint, &partner, 0, 0).await?;
    let subscribed: BTreeSet<String> = published(&events)
        .into_iter()
        .map(|(_, i, _)| i.id)
        .collect();
    assert_eq!(exported, subscribed);
    let line_1 = cordon_stix::indicator_id(&ids[0]);
    let revoked: Vec<&Value> = objects
        .iter()
        .filter(|o| o["id"] == line_1.as_str())
        .collect();
    ensure!(
        revoked.len() == 1 && revoked[0]["revoked"] == true,
        "{revoked:?}"
    );
    // The bundle reads back: the same indicators, as CI received them.
    let import = cordon_stix::read_bundle(&bundle)?;
    ensure!(import.unmapped.is_empty(), "{:?}", import.unmapped);
    for (_, indicator, _) in published(&events) {
        let back = import
            .indicators
            .iter()
            .find(|i| i.indicator["id"] == indicator.id.as_str())
            .context("exported indicator")?;
        let back: cordon_proto::v1::Indicator = serde_json::from_value(back.indicator.clone())?;
        assert_eq!(back, indicator, "Cordon -> STIX -> Cordon");
    }
    validate(objects)
}

/// A TLS connection to the TAXII listener with `client` as the client configuration; the
/// first line of its answer to a discovery request, or the error.
async fn discover_with(address: &str, ca: &Path, client: Option<(&Path, &Path)>) -> Result<String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca)? {
        roots.add(certificate?)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder.with_client_auth_cert(
            CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?,
            PrivateKeyDer::from_pem_file(key)?,
        )?,
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(address).await?;
    let mut stream = connector
        .connect(ServerName::try_from("127.0.0.1")?, tcp)
        .await?;
    stream
        .write_all(
            format!("GET /taxii2/ HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    Ok(String::from_utf8_lossy(&response)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string())
}

#[tokio::test]
async fn taxii_refuses_callers_without_a_federation_certificate() -> Result<()> {
    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    enable_taxii(&member)?;
    let gateway = member.start(&[]).await?;
    let taxii = gateway.taxii.clone().context("taxii address")?;
    let partner = federation.identity("CI")?;
    let ca = partner.join("ca.pem");
    // The federation's own identity is answered.
    let answered = discover_with(
        &taxii,
        &ca,
        Some((&partner.join("cert.pem"), &partner.join("key.pem"))),
    )
    .await?;
    ensure!(answered.contains(" 200 "), "{answered}");
    // No client certificate: no answer.
    let anonymous = discover_with(&taxii, &ca, None).await;
    ensure!(
        anonymous.as_ref().map_or(true, |line| line.is_empty()),
        "{anonymous:?}"
    );
    // A certificate of another CA (another federation): no answer.
    let stranger = Federation::new()?;
    let outsider = stranger.identity("CI")?;
    let refused = discover_with(
        &taxii,
        &ca,
        Some((&outsider.join("cert.pem"), &outsider.join("key.pem"))),
    )
    .await;
    ensure!(
        refused.as_ref().map_or(true, |line| line.is_empty()),
        "{refused:?}"
    );
    Ok(())
}

/// One request reads a bounded part of the feed: a filter that matches nothing does not make
/// the gateway decide the whole feed in one request, and paging on from the `next` it gives
/// still reaches the end.
#[tokio::test]
async fn one_request_reads_a_bounded_part_of_the_feed() -> Result<()> {
    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    enable_taxii(&member)?;
    let gateway = member.start(&[]).await?;
    let taxii = gateway.taxii.clone().context("taxii address")?;
    let customs = federation.identity("GH/customs")?;
    for batch in 0..11 {
        let indicators = (0..1_000)
            .map(|i| cordon_integration_tests::clear_vessel(format!("bulk {batch}.{i}")))
            .collect();
        publish_ids(&gateway.endpoint, &customs, indicators).await?;
    }
    let path = objects_path(&taxii, &customs).await?;
    // An id that matches nothing: the first page stops after 10,000 events, empty, with more.
    let nothing = "&match[id]=malware--0c7b5b88-8ff7-4a4d-aa9d-feb398cd0061";
    let (status, _, first) =
        get_json(&taxii, &customs, &format!("{path}?limit=10{nothing}")).await?;
    ensure!(status == 200, "{first}");
    ensure!(first["more"] == true, "{first}");
    ensure!(
        first["objects"].as_array().is_none_or(Vec::is_empty),
        "{first}"
    );
    // Paging on reaches the end, nothing found.
    let (found, pages) = page_all(&taxii, &customs, &path, nothing, 10).await?;
    ensure!(
        found.is_empty() && pages == 2,
        "{pages} pages, {} objects",
        found.len()
    );
    Ok(())
}

/// A `next` token resumes a read for free once: used again it counts against the caller's
/// re-read quota, as a read from the start does, so paging cannot re-read the feed past it.
#[tokio::test]
async fn a_replayed_next_token_counts_against_the_reread_quota() -> Result<()> {
    let federation = Federation::new()?;
    let member = federation.member("GH")?;
    enable_taxii(&member)?;
    member.set_limit("subscribe_rereads_per_minute", 2)?;
    let gateway = member.start(&[]).await?;
    let taxii = gateway.taxii.clone().context("taxii address")?;
    let partner = federation.identity("CI")?;
    let path = objects_path(&taxii, &partner).await?;
    // A read from the start: one of two.
    let (status, _, first) = get_json(&taxii, &partner, &format!("{path}?limit=3")).await?;
    ensure!(status == 200, "{first}");
    let token = first["next"].as_str().context("next")?.to_string();
    // Its token, first use: free. Then twice more: the second of two, then refused.
    let page = format!("{path}?limit=3&next={token}");
    for expected in [200, 200, 429] {
        let (status, _, body) = get_json(&taxii, &partner, &page).await?;
        ensure!(status == expected, "{expected}: {status} {body}");
    }
    let (status, _, error) = get_json(&taxii, &partner, &page).await?;
    ensure!(status == 429 && error["http_status"] == "429", "{error}");
    Ok(())
}
