//! Circles with real gateway processes: a hub (GH) and a member (NG) share a
//! source-protected indicator under MLS; a third gateway (SN), which follows GH's
//! feed, never sees it; after NG's removal NG receives nothing new.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use cordon_gateway::circle::{follower, mls};
use cordon_integration_tests::{
    Federation, GatewayProcess, MemberDir, circle, cordon, indicator_client, patience,
    postgres_url, published, read_all, vessel, wait_until,
};
use cordon_proto::v1::circle_service_client::CircleServiceClient;
use cordon_proto::v1::{
    CircleInfo, LogEntry, LogRequest, MembersRequest, MessageKind, PublishRequest, RotateRequest,
    SendRequest, Tlp,
};
use cordon_storage::Store;
use openmls::prelude::{GroupId, MlsGroup, OpenMlsProvider, ProcessedMessageContent};
use tonic::transport::Channel;

async fn narratives(endpoint: &str, identity: &Path) -> Result<Vec<String>> {
    let events = read_all(endpoint, identity, 0, 0).await?;
    Ok(published(&events)
        .into_iter()
        .map(|(_, indicator, _)| indicator.narrative)
        .collect())
}

fn file_contains(path: &Path, marker: &str) -> Result<bool> {
    let mut found = false;
    for suffix in ["", "-wal"] {
        let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
        if let Ok(bytes) = std::fs::read(&file) {
            found |= bytes
                .windows(marker.len())
                .any(|window| window == marker.as_bytes());
        }
    }
    Ok(found)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn circle_members_decrypt_outsiders_and_removed_members_get_nothing() -> Result<()> {
    let federation = Federation::new()?;
    let [ghana, nigeria, senegal] = &federation.members(&["GH", "NG", "SN"])?[..] else {
        bail!("three members")
    };
    let endpoints: Vec<String> = [ghana, nigeria, senegal]
        .iter()
        .map(|member| member.fix_listen_port())
        .collect::<Result<_>>()?;
    let (gh_endpoint, ng_endpoint, sn_endpoint) = (&endpoints[0], &endpoints[1], &endpoints[2]);
    // Peers give the hub its members' endpoints and the members their hub's; SN follows
    // GH's feed, so it would see anything GH released to it.
    ghana.follow(nigeria, ng_endpoint)?;
    ghana.follow(senegal, sn_endpoint)?;
    nigeria.follow(ghana, gh_endpoint)?;
    senegal.follow(ghana, gh_endpoint)?;
    senegal.follow(nigeria, ng_endpoint)?;
    let gh = ghana.start(&[]).await?;
    let ng = nigeria.start(&[]).await?;
    let sn = senegal.start(&[]).await?;
    let gh_customs = federation.identity("GH/customs")?;
    let ng_customs = federation.identity("NG/customs")?;
    let sn_police = federation.identity("SN/police")?;

    let created = circle(ghana, &gh.endpoint, &["create", "alpha"]).await?;
    assert_eq!(created["hub"], "GH");
    let added = circle(ghana, &gh.endpoint, &["add", "alpha", "NG"]).await?;
    assert_eq!(added["members"], serde_json::json!(["GH", "NG"]), "{added}");

    let marker = format!(
        "CIRCLE-MARKER-{}",
        std::process::id()
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(7)
    );
    let mut client = indicator_client(&gh.endpoint, &gh_customs).await?;
    let accepted = client
        .publish(PublishRequest {
            indicators: vec![vessel(Tlp::Green, format!("informant: {marker}"))],
            circle: "alpha".into(),
        })
        .await?
        .into_inner()
        .accepted;
    ensure!(accepted.len() == 1, "one accepted: {accepted:?}");

    // NG's gateway decrypts it, checks GH's signature and holds it; NG's own agency sees
    // it because NG's policy allows it inside the circle.
    wait_for_marker(
        "NG/customs to see the circle indicator",
        &ng.endpoint,
        &ng_customs,
        &marker,
    )
    .await?;
    let at_ng = circle(nigeria, &ng.endpoint, &["members", "alpha"]).await?;
    assert_eq!(at_ng["hub"], "GH");
    assert_eq!(at_ng["status"], "active");
    // An attacker keeps a copy of NG's database from while NG was a member.
    ng.stop().await?;
    let kept = tempfile::tempdir()?;
    for suffix in ["", "-wal"] {
        let from = std::path::PathBuf::from(format!(
            "{}{suffix}",
            nigeria.dir.join("cordon.db").display()
        ));
        if from.exists() {
            std::fs::copy(&from, kept.path().join(format!("cordon.db{suffix}")))?;
        }
    }
    let ng = nigeria.start(&[]).await?;

    // Remove NG, then publish a second marker: NG must not receive it.
    let removed = circle(ghana, &gh.endpoint, &["remove", "alpha", "NG"]).await?;
    assert_eq!(removed["members"], serde_json::json!(["GH"]), "{removed}");
    wait_until("NG to process its removal", || async {
        let info = circle(nigeria, &ng.endpoint, &["members", "alpha"]).await?;
        Ok((info["status"] == "removed", info.to_string()))
    })
    .await?;
    let after = format!(
        "AFTER-REMOVAL-{}",
        std::process::id()
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(7)
    );
    client
        .publish(PublishRequest {
            indicators: vec![vessel(Tlp::Green, format!("informant: {after}"))],
            circle: "alpha".into(),
        })
        .await?;
    let at_gh = narratives(&gh.endpoint, &gh_customs).await?;
    ensure!(
        at_gh.iter().any(|text| text.contains(&after)),
        "GH holds its own: {at_gh:?}"
    );

    // SN follows GH's feed: neither marker ever reaches SN or its agencies.
    let at_sn = narratives(&sn.endpoint, &sn_police).await?;
    ensure!(
        !at_sn.iter().any(|text| text.contains("informant")),
        "SN saw a circle indicator: {at_sn:?}"
    );
    // Nor do the members release them to anyone outside the circle: SN's agency and SN's
    // gateway subscribing at GH and at NG get nothing of them.
    for endpoint in [&gh.endpoint, &ng.endpoint] {
        for outsider in [&sn_police, &senegal.identity()] {
            let events = read_all(endpoint, outsider, 0, 0).await?;
            let text = format!("{events:?}");
            ensure!(
                !text.contains(&marker) && !text.contains(&after),
                "{endpoint} released a circle indicator to {}",
                outsider.display()
            );
        }
    }
    let seen_by_ng = narratives(&ng.endpoint, &ng_customs).await?;
    ensure!(
        !seen_by_ng.iter().any(|text| text.contains(&after)),
        "NG received an indicator sent after its removal"
    );
    let sn_log = sn.log_text();
    let ng_log = ng.log_text();
    gh.stop().await?;
    ng.stop().await?;
    sn.stop().await?;
    let db = |member: &MemberDir| member.dir.join("cordon.db");
    ensure!(
        !file_contains(&db(senegal), &marker)?,
        "marker in SN's database"
    );
    ensure!(!sn_log.contains(&marker), "marker in SN's log");
    ensure!(
        file_contains(&db(nigeria), &marker)?,
        "NG holds the first marker"
    );
    ensure!(
        !file_contains(&db(nigeria), &after)?,
        "NG's database holds the later marker"
    );
    ensure!(!ng_log.contains(&after), "NG's log holds the later marker");

    // Given the ciphertext sent after its removal, NG's own MLS state cannot decrypt it.
    let gh_store = Store::connect(&ghana.sqlite_url()).await?;
    let log = gh_store.circle_log("alpha", 1, 1000).await?;
    gh_store.close().await;
    let later = log
        .iter()
        .rev()
        .find(|entry| entry.kind == "application")
        .context("the later message in GH's log")?;
    let removal = log
        .iter()
        .rev()
        .find(|entry| entry.kind == "commit")
        .context("the removal in GH's log")?;
    ensure!(later.position > removal.position, "{log:?}");
    // Neither NG's state now nor the copy kept from before its removal opens it: the
    // message is under the keys of an epoch NG was never given.
    for (what, url) in [
        ("NG's state", nigeria.sqlite_url()),
        (
            "the copy of NG's state from before the removal",
            format!("sqlite:{}", kept.path().join("cordon.db").display()),
        ),
    ] {
        let store = Store::connect(&url).await?;
        let attempt = try_decrypt(&store, "alpha", &later.message).await?;
        store.close().await;
        match attempt {
            Ok(plaintext) => bail!(
                "{what} decrypted a message sent after NG's removal: {:?}",
                String::from_utf8_lossy(&plaintext)
            ),
            Err(reason) => {
                eprintln!("{what} refuses the later ciphertext: {reason}");
                ensure!(
                    !reason.contains("not an MLS"),
                    "the ciphertext must be a real message for the group: {reason}"
                );
            }
        }
    }
    Ok(())
}

/// `ids` (the hub first), pinning each other, each started with its `environments` entry;
/// the others follow the hub, which lists them as peers; the hub's circle "alpha" with the
/// others added in order.
async fn hub_circle<const N: usize>(
    federation: &Federation,
    ids: [&str; N],
    environments: [&[(&str, &str)]; N],
) -> Result<(Vec<MemberDir>, [GatewayProcess; N])> {
    let dirs = federation.members(&ids)?;
    let endpoints: Vec<String> = dirs
        .iter()
        .map(MemberDir::fix_listen_port)
        .collect::<Result<_>>()?;
    for (member, endpoint) in dirs[1..].iter().zip(&endpoints[1..]) {
        dirs[0].follow(member, endpoint)?;
        member.follow(&dirs[0], &endpoints[0])?;
    }
    let mut gateways = Vec::new();
    for (member, environment) in dirs.iter().zip(environments) {
        gateways.push(member.start(environment).await?);
    }
    circle(&dirs[0], &gateways[0].endpoint, &["create", "alpha"]).await?;
    for member in &ids[1..] {
        circle(&dirs[0], &gateways[0].endpoint, &["add", "alpha", member]).await?;
    }
    let gateways: [GatewayProcess; N] = gateways.try_into().map_err(|_| anyhow!("{N} gateways"))?;
    Ok((dirs, gateways))
}

/// Waits until `agency`'s feed at `endpoint` shows an indicator whose narrative holds `marker`.
async fn wait_for_marker(what: &str, endpoint: &str, agency: &Path, marker: &str) -> Result<()> {
    wait_until(what, || async {
        let seen = narratives(endpoint, agency).await?;
        Ok((
            seen.iter().any(|text| text.contains(marker)),
            format!("{seen:?}"),
        ))
    })
    .await
}

/// Decrypts `message` offline with the MLS state of `circle` held in `store`, without
/// writing anything back.
async fn try_decrypt(
    store: &Store,
    circle: &str,
    message: &[u8],
) -> Result<std::result::Result<Vec<u8>, String>> {
    let provider = mls::Provider::with_values(store.mls_values().await?);
    let row = store.circle(circle).await?.context("circle row")?;
    let mut group = MlsGroup::load(provider.storage(), &GroupId::from_slice(&row.group_id))
        .map_err(|error| anyhow!("loading the group: {error:?}"))?
        .context("no MLS group state")?;
    Ok(match follower::process(&provider, &mut group, message) {
        Ok(ProcessedMessageContent::ApplicationMessage(application)) => {
            Ok(application.into_bytes())
        }
        Ok(_) => Err("not an application message".into()),
        Err(reason) => Err(reason),
    })
}

async fn circle_client(endpoint: &str, identity: &Path) -> Result<CircleServiceClient<Channel>> {
    Ok(CircleServiceClient::new(
        cordon_gateway::cli::client::channel(endpoint, identity).await?,
    ))
}

async fn members_info(endpoint: &str, identity: &Path, circle: &str) -> Result<CircleInfo> {
    Ok(circle_client(endpoint, identity)
        .await?
        .members(MembersRequest {
            circle: circle.into(),
        })
        .await?
        .into_inner())
}

/// The hub's log read as `reader` (a member gateway's identity), up to `until` inclusive.
async fn hub_log(hub: &str, reader: &Path, circle: &str, until: u64) -> Result<Vec<LogEntry>> {
    let mut stream = circle_client(hub, reader)
        .await?
        .log(LogRequest {
            circle: circle.into(),
            from_position: 1,
        })
        .await?
        .into_inner();
    let mut entries = Vec::new();
    while entries
        .last()
        .is_none_or(|entry: &LogEntry| entry.position < until)
    {
        let entry = tokio::time::timeout(patience(), stream.message())
            .await
            .context("the hub's log stalled")??
            .context("the hub's log ended")?;
        entries.push(entry);
    }
    Ok(entries)
}

fn marker(label: &str) -> String {
    format!(
        "{label}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.subsec_nanos())
            .unwrap_or(7)
    )
}

async fn publish_in_circle(
    endpoint: &str,
    agency: &Path,
    circle: &str,
    narrative: String,
) -> Result<String> {
    let accepted = indicator_client(endpoint, agency)
        .await?
        .publish(PublishRequest {
            indicators: vec![vessel(Tlp::Green, narrative)],
            circle: circle.into(),
        })
        .await?
        .into_inner()
        .accepted;
    ensure!(accepted.len() == 1, "one accepted: {accepted:?}");
    Ok(accepted[0].id.clone())
}

async fn ids_seen(endpoint: &str, agency: &Path) -> Result<HashSet<String>> {
    let events = read_all(endpoint, agency, 0, 0).await?;
    Ok(published(&events)
        .into_iter()
        .map(|(_, indicator, _)| indicator.id)
        .collect())
}

async fn ids_by(endpoint: &str, agency: &Path, originator: &str) -> Result<HashSet<String>> {
    let events = read_all(endpoint, agency, 0, 0).await?;
    Ok(published(&events)
        .into_iter()
        .filter(|(_, indicator, _)| indicator.originator == originator)
        .map(|(_, indicator, _)| indicator.id)
        .collect())
}

/// A replayed message and a tampered one are refused by the hub, which logs nothing for
/// them; a message altered in the hub's log (the hub is a relay members do not trust) is
/// refused by the member, which stores nothing, and the circle goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_and_replayed_circle_messages_are_rejected() -> Result<()> {
    let federation = Federation::new()?;
    let (dirs, [gh, ng]) = hub_circle(&federation, ["GH", "NG"], [&[], &[]]).await?;
    let [ghana, nigeria] = &dirs[..] else {
        bail!("two members")
    };
    let gh_customs = federation.identity("GH/customs")?;
    let ng_customs = federation.identity("NG/customs")?;

    // NG publishes three indicators into the circle in one call: its gateway sends three
    // application messages to GH in one request, logged there together.
    let from_ng: HashSet<String> = indicator_client(&ng.endpoint, &ng_customs)
        .await?
        .publish(PublishRequest {
            indicators: (0..3)
                .map(|index| vessel(Tlp::Green, format!("from NG {index}")))
                .collect(),
            circle: "alpha".into(),
        })
        .await?
        .into_inner()
        .accepted
        .into_iter()
        .map(|accepted| accepted.id)
        .collect();
    ensure!(from_ng.len() == 3, "{from_ng:?}");
    wait_until("GH to hold NG's circle indicators", || async {
        let seen = ids_seen(&gh.endpoint, &gh_customs).await?;
        Ok((from_ng.is_subset(&seen), format!("{seen:?}")))
    })
    .await?;
    let position = members_info(&gh.endpoint, &ghana.identity(), "alpha")
        .await?
        .position;
    ensure!(position == 4, "the add and NG's three messages: {position}");
    ensure!(
        ids_by(&ng.endpoint, &ng_customs, "NG").await? == from_ng,
        "NG holds its own three"
    );
    let log = hub_log(&gh.endpoint, &nigeria.identity(), "alpha", position).await?;
    let sent = log
        .iter()
        .find(|entry| entry.sender == "NG" && entry.kind == MessageKind::Application as i32)
        .context("NG's message in GH's log")?
        .message
        .clone();
    // Replayed by NG's own gateway identity (the only one the hub takes NG's messages
    // from), and then with one byte of the ciphertext flipped.
    let mut as_ng = circle_client(&gh.endpoint, &nigeria.identity()).await?;
    let mut tampered = sent.clone();
    let last = tampered.len() - 8;
    tampered[last] ^= 0x01;
    for (what, message, more) in [
        ("replayed", sent.clone(), Vec::new()),
        ("tampered", tampered.clone(), Vec::new()),
        (
            "batch of a replayed and a tampered",
            sent.clone(),
            vec![tampered],
        ),
    ] {
        let refused = as_ng
            .send(SendRequest {
                circle: "alpha".into(),
                kind: MessageKind::Application as i32,
                message,
                messages: more,
            })
            .await
            .expect_err(&format!("the hub must refuse a {what} message"));
        ensure!(
            refused.code() == tonic::Code::InvalidArgument
                && refused.message().contains("message rejected"),
            "{what}: {refused:?}"
        );
    }
    let info = members_info(&gh.endpoint, &ghana.identity(), "alpha").await?;
    ensure!(
        info.position == position,
        "nothing appended to the log: {info:?}"
    );
    ensure!(
        gh.log_text().contains("refused a circle message"),
        "GH logs the refusals"
    );

    // NG is down while GH publishes; then the entry is altered in GH's database.
    ng.stop().await?;
    let secret = marker("TAMPERED");
    publish_in_circle(&gh.endpoint, &gh_customs, "alpha", secret.clone()).await?;
    let altered_at = members_info(&gh.endpoint, &ghana.identity(), "alpha")
        .await?
        .position;
    gh.stop().await?;
    let gh_store = Store::connect(&ghana.sqlite_url()).await?;
    let entry = gh_store
        .circle_log("alpha", altered_at, 1)
        .await?
        .pop()
        .context("the new entry")?;
    gh_store.close().await;
    ensure!(entry.kind == "application", "{entry:?}");
    // Control: NG's state, untouched, decrypts the genuine ciphertext.
    let ng_store = Store::connect(&nigeria.sqlite_url()).await?;
    let genuine = try_decrypt(&ng_store, "alpha", &entry.message)
        .await?
        .map_err(|reason| anyhow!("NG could not decrypt the genuine message: {reason}"))?;
    ensure!(
        String::from_utf8_lossy(&genuine).contains(&secret),
        "the genuine message holds the marker"
    );
    let mut altered = entry.message.clone();
    let last = altered.len() - 8;
    altered[last] ^= 0x01;
    ensure!(
        try_decrypt(&ng_store, "alpha", &altered).await?.is_err(),
        "NG's state must not decrypt the altered message"
    );
    ng_store.close().await;
    let pool = sqlx::SqlitePool::connect(&ghana.sqlite_url()).await?;
    let changed =
        sqlx::query("UPDATE circle_log SET message = ? WHERE circle = ? AND position = ?")
            .bind(altered.as_slice())
            .bind("alpha")
            .bind(altered_at as i64)
            .execute(&pool)
            .await?
            .rows_affected();
    pool.close().await;
    ensure!(changed == 1, "one log entry altered");

    let gh = ghana.start(&[]).await?;
    let ng = nigeria.start(&[]).await?;
    wait_until("NG to read past the altered entry", || async {
        let info = members_info(&ng.endpoint, &nigeria.identity(), "alpha").await?;
        Ok((info.position >= altered_at, format!("{info:?}")))
    })
    .await?;
    let seen = narratives(&ng.endpoint, &ng_customs).await?;
    ensure!(
        !seen.iter().any(|text| text.contains(&secret)),
        "NG stored the altered message: {seen:?}"
    );
    ensure!(
        ng.log_text()
            .lines()
            .any(|line| line.contains("refused a circle message")
                && line.contains(&format!("position={altered_at}"))),
        "NG logs the refusal: {}",
        ng.log_text()
    );
    // The circle goes on: the next message is decrypted.
    let next = marker("NEXT");
    publish_in_circle(&gh.endpoint, &gh_customs, "alpha", next.clone()).await?;
    wait_for_marker(
        "NG to decrypt the next message",
        &ng.endpoint,
        &ng_customs,
        &next,
    )
    .await?;
    let ng_log = ng.log_text();
    gh.stop().await?;
    ng.stop().await?;
    ensure!(
        !file_contains(&nigeria.dir.join("cordon.db"), &secret)?,
        "NG's database holds the altered message's marker"
    );
    ensure!(!ng_log.contains(&secret), "NG's log holds the marker");
    Ok(())
}

fn set_listen(member: &MemberDir, endpoint: &str) -> Result<()> {
    let port = endpoint.rsplit(':').next().context("port")?;
    let text = std::fs::read_to_string(member.config())?;
    let replaced = text.replace(
        "listen = \"127.0.0.1:0\"",
        &format!("listen = \"127.0.0.1:{port}\""),
    );
    ensure!(replaced != text, "no listen address to replace");
    std::fs::write(member.config(), replaced)?;
    Ok(())
}

/// GH adds NG; at NG's address answers in turn (1) SN's gateway presenting NG's TLS
/// certificate, serving SN's own KeyPackage, (2) a gateway with a valid certificate for
/// NG but a signing key that is not NG's pinned one, (3) NG's real gateway. The first two
/// are refused and leave the circle untouched; the third is added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_package_that_does_not_name_the_tls_peer_is_refused() -> Result<()> {
    let federation = Federation::new()?;
    let [ghana, nigeria, senegal] = &federation.members(&["GH", "NG", "SN"])?[..] else {
        bail!("three members")
    };
    let ng_endpoint = nigeria.fix_listen_port()?;
    ghana.follow(nigeria, &ng_endpoint)?;
    let gh = ghana.start(&[]).await?;
    circle(ghana, &gh.endpoint, &["create", "alpha"]).await?;

    // (1) SN's gateway, its own keys, but NG's certificate and NG's address.
    for file in ["cert.pem", "key.pem"] {
        std::fs::copy(nigeria.identity().join(file), senegal.identity().join(file))?;
    }
    set_listen(senegal, &ng_endpoint)?;
    // It lists GH as a peer, as NG would: KeyPackages are served only to listed peers.
    senegal.follow(ghana, &gh.endpoint)?;
    let rogue = senegal.start(&[]).await?;
    let error = circle(ghana, &gh.endpoint, &["add", "alpha", "NG"])
        .await
        .expect_err("a KeyPackage naming SN served as NG's must be refused");
    let error = format!("{error:#}");
    ensure!(
        error.contains("KeyPackage credential names SN, but the gateway that served it is NG"),
        "{error}"
    );
    rogue.stop().await?;

    // (2) A second, CA-issued identity for NG whose signing key was never pinned.
    let forged_dir = tempfile::tempdir()?;
    let forged = MemberDir {
        dir: forged_dir.path().join("NG"),
        member: "NG".into(),
    };
    cordon(&[
        "init",
        "--member",
        "NG",
        "--dir",
        forged.dir.to_str().context("path")?,
        "--ca",
        federation.ca_dir().to_str().context("path")?,
        "--listen",
        "127.0.0.1:0",
    ])?;
    forged.trust_member(ghana)?;
    forged.follow(ghana, &gh.endpoint)?;
    set_listen(&forged, &ng_endpoint)?;
    let rogue = forged.start(&[]).await?;
    let error = circle(ghana, &gh.endpoint, &["add", "alpha", "NG"])
        .await
        .expect_err("a KeyPackage with NG's name and an unpinned key must be refused");
    let error = format!("{error:#}");
    ensure!(error.contains("is not the one pinned for it"), "{error}");
    rogue.stop().await?;
    let info = members_info(&gh.endpoint, &ghana.identity(), "alpha").await?;
    ensure!(
        info.members == ["GH"] && info.position == 0,
        "the refusals left the circle as it was: {info:?}"
    );
    let gh_log = gh.log_text();
    ensure!(
        gh_log.matches("refused a KeyPackage").count() == 2,
        "GH logs both refusals: {gh_log}"
    );

    // (3) NG's real gateway at the same address is added.
    let gh_endpoint = gh.endpoint.clone();
    nigeria.follow(ghana, &gh_endpoint)?;
    let ng = nigeria.start(&[]).await?;
    let added = circle(ghana, &gh.endpoint, &["add", "alpha", "NG"]).await?;
    ensure!(
        added["members"] == serde_json::json!(["GH", "NG"]),
        "{added}"
    );
    ng.stop().await?;
    gh.stop().await
}

/// NG and SN rotate their keys in the same circle at the same moment, round after round:
/// in a round where both commits were made for the same epoch, the hub takes exactly one,
/// the other member catches up and commits again. Every rotation is committed exactly
/// once, the log's epochs follow each other, and the circle still works afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_committing_at_once_one_wins_the_other_retries() -> Result<()> {
    let federation = Federation::new()?;
    let (dirs, [gh, ng, sn]) = hub_circle(&federation, ["GH", "NG", "SN"], [&[], &[], &[]]).await?;
    let [ghana, nigeria, senegal] = &dirs[..] else {
        bail!("three members")
    };
    let start = members_info(&gh.endpoint, &ghana.identity(), "alpha").await?;
    for (member, endpoint) in [(nigeria, &ng.endpoint), (senegal, &sn.endpoint)] {
        wait_until("the members to reach the hub's epoch", || async {
            let info = members_info(endpoint, &member.identity(), "alpha").await?;
            Ok((info.epoch == start.epoch, format!("{info:?}")))
        })
        .await?;
    }
    let mut ng_client = circle_client(&ng.endpoint, &nigeria.identity()).await?;
    let mut sn_client = circle_client(&sn.endpoint, &senegal.identity()).await?;
    let rotate = RotateRequest {
        circle: "alpha".into(),
    };
    let mut rounds = 0u64;
    let mut contested = 0;
    while contested == 0 && rounds < 30 {
        rounds += 1;
        let (at_ng, at_sn) = tokio::join!(
            ng_client.rotate(rotate.clone()),
            sn_client.rotate(rotate.clone())
        );
        let (at_ng, at_sn) = (at_ng?.into_inner(), at_sn?.into_inner());
        if at_ng.attempts > 1 || at_sn.attempts > 1 {
            contested += 1;
            ensure!(
                at_ng.attempts.min(at_sn.attempts) == 1,
                "one of the two commits won at once: {at_ng:?} {at_sn:?}"
            );
        }
    }
    eprintln!("{contested} contested round(s) in {rounds}");
    ensure!(
        contested > 0,
        "in {rounds} rounds the two members never committed for the same epoch"
    );
    let end = members_info(&gh.endpoint, &ghana.identity(), "alpha").await?;
    ensure!(
        end.epoch == start.epoch + 2 * rounds && end.position == start.position + 2 * rounds,
        "every rotation committed exactly once: {start:?} then {end:?} after {rounds} rounds"
    );
    // Each member reads the log only from after the commit that added it (NG at 1, SN at 2).
    let seen_by_sn = hub_log(&gh.endpoint, &senegal.identity(), "alpha", end.position).await?;
    ensure!(
        seen_by_sn.first().map(|entry| entry.position) == Some(3),
        "SN reads from position 3: {:?}",
        seen_by_sn.first().map(|entry| entry.position)
    );
    let log = hub_log(&gh.endpoint, &nigeria.identity(), "alpha", end.position).await?;
    ensure!(log.first().map(|entry| entry.position) == Some(2));
    let commits: Vec<&LogEntry> = log
        .iter()
        .filter(|entry| entry.kind == MessageKind::Commit as i32)
        .collect();
    for pair in commits.windows(2) {
        ensure!(
            pair[1].epoch == pair[0].epoch + 1,
            "one commit per epoch: {} then {}",
            pair[0].epoch,
            pair[1].epoch
        );
    }
    ensure!(
        ng.log_text().contains("commit lost its epoch")
            || sn.log_text().contains("commit lost its epoch"),
        "the losing member logs its retry"
    );
    // Both members follow the circle to its last epoch and still decrypt.
    let gh_customs = federation.identity("GH/customs")?;
    let after = marker("AFTER-ROTATIONS");
    publish_in_circle(&gh.endpoint, &gh_customs, "alpha", after.clone()).await?;
    for (member, endpoint, agency) in [
        (nigeria, &ng.endpoint, "NG/customs"),
        (senegal, &sn.endpoint, "SN/customs"),
    ] {
        let agency = federation.identity(agency)?;
        wait_for_marker(
            "each member to decrypt after the rotations",
            endpoint,
            &agency,
            &after,
        )
        .await?;
        let info = members_info(endpoint, &member.identity(), "alpha").await?;
        ensure!(info.epoch == end.epoch, "{info:?} against {end:?}");
    }
    for gateway in [gh, ng, sn] {
        gateway.stop().await?;
    }
    Ok(())
}

/// The hub and a member are killed with SIGKILL while both publish into the circle, then
/// restarted: every indicator either side acknowledged is held by both, and the circle
/// goes on (new messages both ways, a key rotation).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_and_member_killed_and_restarted_lose_nothing_acknowledged() -> Result<()> {
    killed_and_restarted(None, None).await
}

/// The same with both gateways' MLS state, log and feed in PostgreSQL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_and_member_on_postgres_killed_and_restarted_lose_nothing_acknowledged() -> Result<()> {
    let Some(gh_url) = postgres_url("circle_killed_gh").await? else {
        return Ok(());
    };
    let Some(ng_url) = postgres_url("circle_killed_ng").await? else {
        return Ok(());
    };
    killed_and_restarted(Some(gh_url), Some(ng_url)).await
}

async fn killed_and_restarted(gh_url: Option<String>, ng_url: Option<String>) -> Result<()> {
    let gh_env: Vec<(&str, &str)> = gh_url
        .iter()
        .map(|url| ("CORDON_DATABASE_URL", url.as_str()))
        .collect();
    let ng_env: Vec<(&str, &str)> = ng_url
        .iter()
        .map(|url| ("CORDON_DATABASE_URL", url.as_str()))
        .collect();
    let federation = Federation::new()?;
    let (dirs, [gh, ng]) = hub_circle(&federation, ["GH", "NG"], [&gh_env, &ng_env]).await?;
    let [ghana, nigeria] = &dirs[..] else {
        bail!("two members")
    };
    let gh_customs = federation.identity("GH/customs")?;
    let ng_customs = federation.identity("NG/customs")?;

    // Each side publishes one indicator per call until its gateway dies.
    let publisher = |endpoint: String, agency: std::path::PathBuf, label: &'static str| {
        let (sender, receiver) = tokio::sync::watch::channel(Vec::<String>::new());
        let task = tokio::spawn(async move {
            for index in 0.. {
                match publish_in_circle(&endpoint, &agency, "alpha", format!("{label} {index}"))
                    .await
                {
                    Ok(id) => sender.send_modify(|ids| ids.push(id)),
                    Err(_) => break,
                }
            }
        });
        (receiver, task)
    };
    let (mut gh_acked, gh_task) = publisher(gh.endpoint.clone(), gh_customs.clone(), "GH");
    let (mut ng_acked, ng_task) = publisher(ng.endpoint.clone(), ng_customs.clone(), "NG");
    tokio::time::timeout(patience(), async {
        gh_acked.wait_for(|ids| ids.len() >= 5).await?;
        ng_acked.wait_for(|ids| ids.len() >= 5).await
    })
    .await
    .context("both sides publishing")??;
    gh.kill().await?;
    ng.kill().await?;
    gh_task.await?;
    ng_task.await?;
    let from_gh: Vec<String> = gh_acked.borrow().clone();
    let from_ng: Vec<String> = ng_acked.borrow().clone();
    eprintln!(
        "killed after {} acknowledged at GH and {} at NG",
        from_gh.len(),
        from_ng.len()
    );

    let gh = ghana.start(&gh_env).await?;
    let ng = nigeria.start(&ng_env).await?;
    let everything: HashSet<String> = from_gh.iter().chain(&from_ng).cloned().collect();
    for (endpoint, agency, who) in [
        (&gh.endpoint, &gh_customs, "GH"),
        (&ng.endpoint, &ng_customs, "NG"),
    ] {
        wait_until("every acknowledged indicator on both sides", || async {
            let seen = ids_seen(endpoint, agency).await?;
            let missing: Vec<&String> = everything.difference(&seen).collect();
            Ok((missing.is_empty(), format!("{who} misses {missing:?}")))
        })
        .await?;
    }
    // And NG, the originator, holds every indicator of its own that the circle holds, even
    // one the hub took just before NG was killed (from NG's outbox).
    let ng_own_at_gh = ids_by(&gh.endpoint, &gh_customs, "NG").await?;
    wait_until(
        "NG to hold all its own indicators the hub holds",
        || async {
            let at_ng = ids_by(&ng.endpoint, &ng_customs, "NG").await?;
            let missing: Vec<&String> = ng_own_at_gh.difference(&at_ng).collect();
            Ok((missing.is_empty(), format!("NG misses {missing:?}")))
        },
    )
    .await?;
    // The circle goes on after the crash: both ways, and a rotation by the member.
    let late_gh = publish_in_circle(&gh.endpoint, &gh_customs, "alpha", marker("LATE-GH")).await?;
    let late_ng = publish_in_circle(&ng.endpoint, &ng_customs, "alpha", marker("LATE-NG")).await?;
    let rotated = circle_client(&ng.endpoint, &nigeria.identity())
        .await?
        .rotate(RotateRequest {
            circle: "alpha".into(),
        })
        .await?
        .into_inner();
    let after_rotation =
        publish_in_circle(&gh.endpoint, &gh_customs, "alpha", marker("ROTATED")).await?;
    wait_until("NG to hold GH's late indicators", || async {
        let seen = ids_seen(&ng.endpoint, &ng_customs).await?;
        Ok((
            seen.contains(&late_gh) && seen.contains(&after_rotation),
            format!("{seen:?}"),
        ))
    })
    .await?;
    wait_until("GH to hold NG's late indicator", || async {
        let seen = ids_seen(&gh.endpoint, &gh_customs).await?;
        Ok((seen.contains(&late_ng), format!("{seen:?}")))
    })
    .await?;
    let info = members_info(&gh.endpoint, &ghana.identity(), "alpha").await?;
    ensure!(info.epoch == rotated.epoch, "{info:?} {rotated:?}");
    gh.stop().await?;
    ng.stop().await
}

/// NG refuses its Welcome (the circle has a member, SN, whose key NG has not pinned); the hub
/// keeps the Welcome, is killed with SIGKILL, and once NG pins SN and the hub restarts, the
/// hub delivers it: NG joins and reads what was sent in the circle since it was added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_welcome_not_taken_is_kept_and_delivered_after_a_hub_crash() -> Result<()> {
    let federation = Federation::new()?;
    let ghana = federation.member("GH")?;
    let nigeria = federation.member("NG")?;
    let senegal = federation.member("SN")?;
    ghana.trust_member(&nigeria)?;
    ghana.trust_member(&senegal)?;
    nigeria.trust_member(&ghana)?;
    senegal.trust_member(&ghana)?;
    let gh_endpoint = ghana.fix_listen_port()?;
    let ng_endpoint = nigeria.fix_listen_port()?;
    let sn_endpoint = senegal.fix_listen_port()?;
    ghana.follow(&nigeria, &ng_endpoint)?;
    ghana.follow(&senegal, &sn_endpoint)?;
    nigeria.follow(&ghana, &gh_endpoint)?;
    senegal.follow(&ghana, &gh_endpoint)?;
    let gh = ghana.start(&[]).await?;
    let ng = nigeria.start(&[]).await?;
    let sn = senegal.start(&[]).await?;
    circle(&ghana, &gh.endpoint, &["create", "alpha"]).await?;
    circle(&ghana, &gh.endpoint, &["add", "alpha", "SN"]).await?;
    circle(&ghana, &gh.endpoint, &["add", "alpha", "NG"]).await?;
    let info = members_info(&gh.endpoint, &ghana.identity(), "alpha").await?;
    ensure!(
        info.members == ["GH", "SN", "NG"] && info.awaiting_welcome == ["NG"],
        "NG is added, its Welcome not taken: {info:?}"
    );
    ensure!(
        ng.log_text()
            .contains("SN is not a member with pinned keys")
            || gh
                .log_text()
                .contains("SN is not a member with pinned keys"),
        "the refusal names the reason: {}",
        gh.log_text()
    );
    let gh_customs = federation.identity("GH/customs")?;
    let sent = marker("SENT-BEFORE-JOIN");
    publish_in_circle(&gh.endpoint, &gh_customs, "alpha", sent.clone()).await?;

    gh.kill().await?;
    ng.stop().await?;
    nigeria.trust_member(&senegal)?;
    let ng = nigeria.start(&[]).await?;
    let gh = ghana.start(&[]).await?;
    let ng_customs = federation.identity("NG/customs")?;
    wait_for_marker(
        "NG to join from the kept Welcome and decrypt",
        &ng.endpoint,
        &ng_customs,
        &sent,
    )
    .await?;
    wait_until("GH to forget the delivered Welcome", || async {
        let info = members_info(&gh.endpoint, &ghana.identity(), "alpha").await?;
        Ok((info.awaiting_welcome.is_empty(), format!("{info:?}")))
    })
    .await?;
    let info = members_info(&gh.endpoint, &ghana.identity(), "alpha").await?;
    let at_ng = members_info(&ng.endpoint, &nigeria.identity(), "alpha").await?;
    ensure!(
        at_ng.status == "active" && at_ng.epoch == info.epoch,
        "{at_ng:?} against {info:?}"
    );
    for gateway in [gh, ng, sn] {
        gateway.stop().await?;
    }
    Ok(())
}

/// GH's policy refuses one member of the circle (SS, under a UN arms embargo in GH's board
/// data): the publish fails with FAILED_PRECONDITION naming SS and why, and nothing is sent
/// (the hub's log does not move; NG receives nothing). Without SS, the same publish goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_the_policy_refuses_for_one_member_sends_nothing() -> Result<()> {
    let federation = Federation::new()?;
    let (dirs, [gh, ng, ss]) = hub_circle(&federation, ["GH", "NG", "SS"], [&[], &[], &[]]).await?;
    let [ghana, nigeria, south_sudan] = &dirs[..] else {
        bail!("three members")
    };
    let before = members_info(&gh.endpoint, &ghana.identity(), "alpha").await?;

    let gh_customs = federation.identity("GH/customs")?;
    let refused_marker = marker("REFUSED");
    let refused = indicator_client(&gh.endpoint, &gh_customs)
        .await?
        .publish(PublishRequest {
            indicators: vec![vessel(Tlp::Green, refused_marker.clone())],
            circle: "alpha".into(),
        })
        .await
        .expect_err("the policy refuses SS");
    ensure!(
        refused.code() == tonic::Code::FailedPrecondition
            && refused
                .message()
                .contains("SS (recipient country SS is under a UN arms embargo)")
            && refused.message().contains("nothing was sent")
            && !refused.message().contains("NG"),
        "{refused:?}"
    );
    let after = members_info(&gh.endpoint, &ghana.identity(), "alpha").await?;
    ensure!(
        after.position == before.position,
        "{before:?} then {after:?}"
    );

    // Without SS the same kind of indicator goes, and NG holds only that one.
    circle(ghana, &gh.endpoint, &["remove", "alpha", "SS"]).await?;
    let allowed = marker("ALLOWED");
    publish_in_circle(&gh.endpoint, &gh_customs, "alpha", allowed.clone()).await?;
    let ng_customs = federation.identity("NG/customs")?;
    wait_for_marker(
        "NG to decrypt the allowed indicator",
        &ng.endpoint,
        &ng_customs,
        &allowed,
    )
    .await?;
    let seen = narratives(&ng.endpoint, &ng_customs).await?;
    ensure!(
        !seen.iter().any(|text| text.contains(&refused_marker)),
        "{seen:?}"
    );
    for gateway in [gh, ng, ss] {
        gateway.stop().await?;
    }
    for member in [ghana, nigeria, south_sudan] {
        ensure!(
            !file_contains(&member.dir.join("cordon.db"), &refused_marker)?,
            "{}'s database holds the refused indicator",
            member.member
        );
    }
    Ok(())
}

/// A gateway asking for a circle's log learns nothing of which circles exist or who hubs them:
/// a circle it is not in, one that does not exist and one hubbed elsewhere get one answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_requests_for_circles_one_may_not_read_get_one_answer() -> Result<()> {
    let federation = Federation::new()?;
    let (dirs, [gh, ng, sn]) = hub_circle(&federation, ["GH", "NG", "SN"], [&[], &[], &[]]).await?;
    // "beta" holds GH and NG only.
    circle(&dirs[0], &gh.endpoint, &["create", "beta"]).await?;
    circle(&dirs[0], &gh.endpoint, &["add", "beta", "NG"]).await?;
    let sn_identity = federation.identity("SN")?;
    let refusal = async |endpoint: &str, circle: &str| -> Result<tonic::Status> {
        let answer = circle_client(endpoint, &sn_identity)
            .await?
            .log(LogRequest {
                circle: circle.into(),
                from_position: 1,
            })
            .await;
        match answer {
            Ok(_) => bail!("{circle} at {endpoint}: a log stream for SN"),
            Err(status) => Ok(status),
        }
    };
    let not_in = refusal(&gh.endpoint, "beta").await?;
    let absent = refusal(&gh.endpoint, "gamma").await?;
    let elsewhere = refusal(&ng.endpoint, "alpha").await?;
    for status in [&not_in, &absent, &elsewhere] {
        ensure!(status.code() == tonic::Code::NotFound, "{status:?}");
    }
    let shape = |status: &tonic::Status| {
        ["alpha", "beta", "gamma"]
            .iter()
            .fold(status.message().to_string(), |text, name| {
                text.replace(name, "NAME")
            })
    };
    ensure!(
        shape(&not_in) == shape(&absent) && shape(&absent) == shape(&elsewhere),
        "{not_in:?} {absent:?} {elsewhere:?}"
    );
    ensure!(
        !elsewhere.message().contains("GH"),
        "the hub is named: {elsewhere:?}"
    );
    // A member is still given its circle's log.
    circle_client(&gh.endpoint, &sn_identity)
        .await?
        .log(LogRequest {
            circle: "alpha".into(),
            from_position: 1,
        })
        .await?;
    for gateway in [gh, ng, sn] {
        gateway.stop().await?;
    }
    Ok(())
}

/// A KeyPackage (kept 30 days with its private keys) is handed only to a gateway listed under
/// `[[peers]]`: another member of the federation asking for one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_packages_are_served_only_to_listed_peers() -> Result<()> {
    use cordon_proto::v1::GetKeyPackageRequest;

    let federation = Federation::new()?;
    let [ghana, nigeria, senegal] = &federation.members(&["GH", "NG", "SN"])?[..] else {
        bail!("three members")
    };
    let gh_endpoint = ghana.fix_listen_port()?;
    // GH lists NG, not SN; all three trust each other's signing keys.
    ghana.follow(nigeria, "https://127.0.0.1:9")?;
    let gh = ghana.start(&[]).await?;
    let ask = async |identity: &Path| {
        circle_client(&gh_endpoint, identity)
            .await?
            .get_key_package(GetKeyPackageRequest {})
            .await
            .map_err(anyhow::Error::from)
    };
    let listed = ask(&federation.identity("NG")?).await?.into_inner();
    ensure!(!listed.key_package.is_empty() && !listed.last_resort);
    let refused = ask(&federation.identity("SN")?)
        .await
        .expect_err("SN is not a peer of GH");
    let status = refused
        .downcast_ref::<tonic::Status>()
        .context("a gRPC status")?;
    ensure!(
        status.code() == tonic::Code::PermissionDenied && status.message().contains("[[peers]]"),
        "{status:?}"
    );
    let _ = senegal;
    gh.stop().await
}

/// GH hubs "alpha" with NG and SN. NG's gateway and an NG agency follow GH's feed. The
/// operator marks NG `suspended = true` in GH's running config: both open subscriptions end
/// with PERMISSION_DENIED, a new call is refused, NG leaves the circle (SN stays), and SN is
/// served throughout. Turning it back lets NG call again (it is not put back in the circle).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_member_loses_its_subscriptions_at_once_and_leaves_the_circles() -> Result<()> {
    use cordon_proto::v1::SubscribeRequest;

    let federation = Federation::new()?;
    let (dirs, [gh, ng, sn]) = hub_circle(&federation, ["GH", "NG", "SN"], [&[], &[], &[]]).await?;
    let ghana = &dirs[0];
    let following = async |identity: &Path| {
        let mut client = indicator_client(&gh.endpoint, identity).await?;
        let request = SubscribeRequest {
            after: 0,
            follow: true,
            kinds: Vec::new(),
            limit: 0,
        };
        anyhow::Ok(client.subscribe(request).await?.into_inner())
    };
    let ng_gateway = federation.identity("NG")?;
    let ng_police = federation.identity("NG/police")?;
    let sn_gateway = federation.identity("SN")?;
    let mut streams = vec![following(&ng_gateway).await?, following(&ng_police).await?];
    let mut sn_stream = following(&sn_gateway).await?;
    // NG's gateway hears of what GH releases to it.
    let gh_customs = federation.identity("GH/customs")?;
    indicator_client(&gh.endpoint, &gh_customs)
        .await?
        .publish(PublishRequest {
            indicators: vec![vessel(Tlp::Green, marker("BEFORE"))],
            ..Default::default()
        })
        .await?;
    tokio::time::timeout(patience(), streams[0].message())
        .await
        .context("a first event for NG")??
        .context("NG's stream ended early")?;
    let info = members_info(&gh.endpoint, &ghana.identity(), "alpha").await?;
    ensure!(info.members.contains(&"NG".to_string()), "{info:?}");

    set_suspended(ghana, "NG", true)?;
    for stream in &mut streams {
        let ended = tokio::time::timeout(patience(), async {
            loop {
                match stream.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => return Err(anyhow!("the stream ended without a status")),
                    Err(status) => return Ok(status),
                }
            }
        })
        .await
        .context("NG's subscription did not end after its suspension")??;
        ensure!(
            ended.code() == tonic::Code::PermissionDenied && ended.message().contains("suspended"),
            "{ended:?}"
        );
    }
    let refused = following(&ng_police).await.expect_err("NG is suspended");
    let status = refused
        .downcast_ref::<tonic::Status>()
        .context("a gRPC status")?;
    ensure!(status.code() == tonic::Code::PermissionDenied, "{status:?}");
    wait_until("NG to leave GH's circle", || async {
        let info = members_info(&gh.endpoint, &ghana.identity(), "alpha").await?;
        Ok((
            !info.members.contains(&"NG".to_string()) && info.members.contains(&"SN".to_string()),
            format!("{info:?}"),
        ))
    })
    .await?;
    // Both changes of membership are in GH's audit log.
    let mut audit = cordon_proto::v1::audit_service_client::AuditServiceClient::new(
        cordon_gateway::cli::client::channel(&gh.endpoint, &ghana.identity()).await?,
    );
    let entries: Vec<String> = audit
        .entries(cordon_proto::v1::AuditEntriesRequest { from: 0, limit: 0 })
        .await?
        .into_inner()
        .entries
        .into_iter()
        .map(|entry| String::from_utf8_lossy(&entry.entry).into_owned())
        .collect();
    for change in ["added", "removed"] {
        let wanted = format!(
            "\"entry\":\"circleMembership\",\"circle\":\"alpha\",\"member\":\"NG\",\"change\":\"{change}\""
        );
        ensure!(
            entries.iter().any(|entry| entry.contains(&wanted)),
            "no {change} entry for NG in {entries:?}"
        );
    }
    // SN is served as before: its stream is still open, and it may call.
    match tokio::time::timeout(Duration::from_millis(500), sn_stream.message()).await {
        Err(_) | Ok(Ok(Some(_))) => {}
        Ok(ended) => bail!("SN's stream ended with NG's suspension: {ended:?}"),
    }
    read_all(&gh.endpoint, &sn_gateway, 0, 0).await?;

    set_suspended(ghana, "NG", false)?;
    wait_until("NG to be served again", || async {
        Ok((following(&ng_police).await.is_ok(), String::new()))
    })
    .await?;
    for gateway in [gh, ng, sn] {
        gateway.stop().await?;
    }
    Ok(())
}

/// Sets `suspended` on MEMBER's `[[members]]` entry in `gateway`'s config.
fn set_suspended(gateway: &MemberDir, member: &str, suspended: bool) -> Result<()> {
    let text = std::fs::read_to_string(gateway.config())?;
    let entry = format!("[[members]]\nid = \"{member}\"\n");
    let without = text.replace(&format!("{entry}suspended = true\n"), &entry);
    ensure!(
        without.contains(&entry),
        "no [[members]] entry for {member}"
    );
    let replaced = if suspended {
        without.replacen(&entry, &format!("{entry}suspended = true\n"), 1)
    } else {
        without
    };
    // Written whole and renamed over the file, as an editor does.
    let staged = gateway.dir.join("cordon.toml.new");
    std::fs::write(&staged, replaced)?;
    std::fs::rename(&staged, gateway.config())?;
    Ok(())
}

/// A Rotate whose caller gives up while the hub's database write waits (another connection
/// holds the database's write lock) still lands whole once the lock is released: what the
/// hub holds in memory is what its database holds, before and after a restart. Stopped with
/// its caller, the write was rolled back while memory kept the new epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circle_operation_whose_caller_gives_up_mid_write_still_lands_whole() -> Result<()> {
    use sqlx::Connection as _;

    let federation = Federation::new()?;
    let (dirs, [gh]) = hub_circle(&federation, ["GH"], [&[]]).await?;
    let ghana = &dirs[0];
    let before = members_info(&gh.endpoint, &ghana.identity(), "alpha").await?;
    let url = ghana.sqlite_url();

    let mut lock = sqlx::SqliteConnection::connect(&url).await?;
    sqlx::raw_sql("BEGIN EXCLUSIVE").execute(&mut lock).await?;
    let mut request = tonic::Request::new(RotateRequest {
        circle: "alpha".into(),
    });
    request.set_timeout(Duration::from_millis(300));
    let given_up = circle_client(&gh.endpoint, &ghana.identity())
        .await?
        .rotate(request)
        .await;
    ensure!(
        given_up.as_ref().is_err_and(|status| matches!(
            status.code(),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
        )),
        "the caller did not give up at its deadline while the database was locked: {given_up:?}"
    );
    sqlx::raw_sql("COMMIT").execute(&mut lock).await?;
    lock.close().await?;

    let store = Store::connect(&url).await?;
    let rotated = before.epoch + 1;
    wait_until(
        "the hub's memory and database to hold the rotation",
        || async {
            let held = members_info(&gh.endpoint, &ghana.identity(), "alpha")
                .await?
                .epoch;
            let stored = store.circle("alpha").await?.context("circle row")?.epoch;
            Ok((
                held == rotated && stored == rotated,
                format!("in memory epoch {held}, in the database {stored}, expected {rotated}"),
            ))
        },
    )
    .await?;
    gh.stop().await?;
    let gh = ghana.start(&[]).await?;
    let info = members_info(&gh.endpoint, &ghana.identity(), "alpha").await?;
    ensure!(info.epoch == rotated, "after a restart: {info:?}");
    gh.stop().await
}
