//! TAXII 2.1 (`--scenario taxii`): adding objects over TAXII against gRPC publish at the same
//! batch size, and paging a collection of 100,000 objects back against a gRPC catch-up of
//! the same feed, each pair taking turns on twin gateways; then medallion (the OASIS TAXII
//! reference server, from PyPI, run with the `--python` interpreter) adding and paging the
//! same objects on this machine in the same run.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use cordon_integration_tests::{GatewayProcess, MemberDir, TaxiiConnection, taxii_request};
use serde_json::{Value, json};

use crate::scenario::{self, memory_mib};
use crate::target::Target;
use crate::{Bench, PUBLISH_TURNS, Row, Turns, finish};

/// Indicators per request, both ways.
const BATCH: usize = 100;
/// Requests in flight, both ways.
const IN_FLIGHT: usize = 4;
/// Indicators added per system over all turns.
const ADDED: u64 = 12_000;
/// Indicators stored for the page-back: three objects each (observable, indicator,
/// relationship), 100,000 objects and more with the vocabulary.
const STORED: u64 = 33_400;
/// Objects per page of the page-back.
const PAGE: usize = 1_000;
/// Turns of the page-back pair.
const PAGE_TURNS: usize = 2;
/// medallion adds the same [`ADDED`] indicators in envelopes of [`BATCH`], for at most
/// [`MEDALLION_ADD_TIME`]: its add rate falls as its collection grows (each add compares the
/// new object with every stored one: 3,146/s for 2,000, about 700/s for 12,000 here). Then it
/// pages its collection back for at most [`MEDALLION_PAGE_TIME`] (one run without the limit
/// had not paged its 12,000 back after 7 minutes). Each rate is what it did over
/// that time; a request still running when the time is up counts as not done (and no page at
/// all as one page at the end of the time).
const MEDALLION_ADD_TIME: Duration = Duration::from_secs(60);
const MEDALLION_PAGE_TIME: Duration = Duration::from_secs(30);
const MEDALLION_VERSION: &str = "3.0.0";
const TAXII: &str = "application/taxii+json;version=2.1";

/// `count` STIX indicators as a TAXII client from elsewhere would send them: pattern-only,
/// the same vessel as the gRPC bench indicators, TLP:CLEAR.
fn stix_indicators(count: usize) -> Vec<Value> {
    let now = "2026-12-07T00:00:00.000Z";
    (0..count)
        .map(|i| {
            json!({
                "type": "indicator",
                "spec_version": "2.1",
                "id": format!("indicator--{}", uuid::Uuid::new_v4()),
                "created": now,
                "modified": now,
                "description": format!("bench:{i}"),
                "pattern": "[salw-vessel:imo = '9234563' AND salw-vessel:name = 'BENCH']",
                "pattern_type": "stix",
                "valid_from": "2026-09-21T00:00:00Z",
                "confidence": 50,
                "object_marking_refs": ["marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487"]
            })
        })
        .collect()
}

impl Bench {
    fn customs(&self, member: &MemberDir) -> Result<std::path::PathBuf> {
        self.federation
            .identity(&format!("{}/customs", member.member))
    }

    /// A fresh gateway with a TAXII listener.
    async fn taxii_gateway(&mut self) -> Result<(MemberDir, GatewayProcess, String)> {
        self.gateways += 1;
        let member = self.federation.member(&format!("GH-{}", self.gateways))?;
        let mut config = std::fs::read_to_string(member.config())?;
        config.push_str("\n[taxii]\nlisten = \"127.0.0.1:0\"\n");
        std::fs::write(member.config(), config)?;
        let gateway = self.start(&member).await?;
        let taxii = gateway.taxii.clone().context("no TAXII address")?;
        Ok((member, gateway, taxii))
    }

    pub(crate) async fn taxii(&mut self) -> Result<()> {
        eprintln!("TAXII 2.1: add and page back, against gRPC and medallion");
        let system = self.system();
        let taxii_system = format!("{system}, TAXII");
        let grpc_system = format!("{system}, gRPC");

        // Add: gRPC publish on one gateway, TAXII add on its twin, taking turns.
        let (grpc_member, grpc_gateway, _) = self.taxii_gateway().await?;
        let (taxii_member, taxii_gateway, taxii_address) = self.taxii_gateway().await?;
        let grpc = self.grpc_target(&grpc_gateway.endpoint, self.customs(&grpc_member)?);
        let adder = self.customs(&taxii_member)?;
        let collection = objects_path(&taxii_address, &adder).await?;
        let per_turn = ADDED.div_ceil(PUBLISH_TURNS as u64);
        let mut turns = [Turns::default(), Turns::default()];
        for turn in 0..PUBLISH_TURNS {
            for index in if turn % 2 == 0 { [0, 1] } else { [1, 0] } {
                if index == 0 {
                    let (rate, latency) =
                        scenario::publish_throughput(&grpc, BATCH, IN_FLIGHT, per_turn).await?;
                    turns[0].add(per_turn, rate, &latency)?;
                } else {
                    let (rate, latency) =
                        taxii_add(&taxii_address, &adder, &collection, per_turn).await?;
                    turns[1].add(per_turn, rate, &latency)?;
                }
            }
        }
        let memory = [&grpc_gateway, &taxii_gateway].map(|g| g.pid().and_then(memory_mib));
        for (index, (name, note)) in [
            (grpc_system.clone(), "gRPC Publish"),
            (
                taxii_system.clone(),
                "TAXII add objects (POST, one kept-alive TLS connection per request in flight)",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let latency = turns[index].latency.as_ref();
            let quantile = |q: f64| latency.map(|latency| latency.value_at_quantile(q));
            self.push(Row {
                scenario: "taxii add".into(),
                system: name,
                batch: BATCH,
                events: turns[index].events,
                rate_per_s: turns[index].rate(),
                p50_us: quantile(0.5),
                p99_us: quantile(0.99),
                p999_us: quantile(0.999),
                rss_mib: memory[index].map(|(rss, _)| rss),
                peak_rss_mib: memory[index].map(|(_, peak)| peak),
                note: format!(
                    "{note}: indicators per second, batches of {BATCH}, {IN_FLIGHT} requests in \
                     flight; {PUBLISH_TURNS} turns each, alternating"
                ),
                ..Row::default()
            });
        }
        finish(&grpc, Some((grpc_member, grpc_gateway))).await?;
        taxii_gateway.stop().await?;

        // Page back: one gateway holding STORED indicators; a gRPC catch-up and a TAXII page-back
        // of the whole feed as the same identity, taking turns.
        let (member, gateway, address) = self.taxii_gateway().await?;
        let reader = self
            .federation
            .identity(&format!("{}/police", member.member))?;
        let loader = self.grpc_target(&gateway.endpoint, self.customs(&member)?);
        scenario::preload(&loader, STORED).await?;
        let catch_up = Target::Grpc {
            endpoint: gateway.endpoint.clone(),
            publisher: self.customs(&member)?,
            subscribers: vec![reader.clone()],
            circle: String::new(),
        };
        let collection = objects_path(&address, &reader).await?;
        let (mut grpc_seconds, mut taxii_seconds) = (0.0, 0.0);
        let mut objects = 0usize;
        let mut indicators = 0usize;
        for turn in 0..PAGE_TURNS {
            for index in if turn % 2 == 0 { [0, 1] } else { [1, 0] } {
                if index == 0 {
                    let rate = scenario::catch_up(&catch_up, STORED).await?;
                    grpc_seconds += STORED as f64 / rate;
                } else {
                    let start = Instant::now();
                    let (read, read_indicators) = page_all(&address, &reader, &collection).await?;
                    taxii_seconds += start.elapsed().as_secs_f64();
                    objects += read;
                    indicators += read_indicators;
                }
            }
        }
        ensure!(
            objects / PAGE_TURNS >= 100_000,
            "paged {objects} objects in {PAGE_TURNS} turns"
        );
        let memory = gateway.pid().and_then(memory_mib);
        self.push(Row {
            scenario: "taxii page back".into(),
            system: grpc_system,
            events: STORED * PAGE_TURNS as u64,
            rate_per_s: (STORED * PAGE_TURNS as u64) as f64 / grpc_seconds,
            rss_mib: memory.map(|(rss, _)| rss),
            peak_rss_mib: memory.map(|(_, peak)| peak),
            note: format!(
                "Subscribe from 0 of {STORED} stored indicators: events per second; \
                 {PAGE_TURNS} turns"
            ),
            ..Row::default()
        });
        self.push(Row {
            scenario: "taxii page back".into(),
            system: taxii_system,
            batch: PAGE,
            events: objects as u64,
            rate_per_s: objects as f64 / taxii_seconds,
            rss_mib: memory.map(|(rss, _)| rss),
            peak_rss_mib: memory.map(|(_, peak)| peak),
            note: format!(
                "get objects of the whole collection ({} objects, {} indicators) in pages of \
                 {PAGE}: objects per second ({:.0} indicators per second); {PAGE_TURNS} turns",
                objects / PAGE_TURNS,
                indicators / PAGE_TURNS,
                indicators as f64 / taxii_seconds
            ),
            ..Row::default()
        });
        finish(&loader, Some((member, gateway))).await?;

        self.medallion().await
    }

    /// medallion, on this machine now: adding the gateway's [`ADDED`] indicators (within
    /// [`MEDALLION_ADD_TIME`]), then paging them back 100 at a time (its default page size,
    /// within [`MEDALLION_PAGE_TIME`]).
    async fn medallion(&mut self) -> Result<()> {
        let python = self.args.python.clone();
        let dir = tempfile::tempdir()?;
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            listener.local_addr()?.port()
        };
        let address = format!("127.0.0.1:{port}");
        let collection = "91a7b528-80eb-42ed-a74d-c6fbd5a26116";
        let data = json!({
            "/discovery": {
                "title": "medallion (bench)",
                "default": format!("http://{address}/api1/"),
                "api_roots": [format!("http://{address}/api1/")]
            },
            "api1": {
                "information": {"title": "bench", "versions": [TAXII], "max_content_length": 104_857_600},
                "status": [],
                "collections": [{
                    "id": collection, "title": "bench", "can_read": true, "can_write": true,
                    "media_types": ["application/stix+json;version=2.1"],
                    "objects": [], "manifest": []
                }]
            }
        });
        let data_file = dir.path().join("data.json");
        std::fs::write(&data_file, data.to_string())?;
        let config = json!({
            "backend": {
                "module": "medallion.backends.memory_backend",
                "module_class": "MemoryBackend",
                "filename": data_file,
            },
            "users": {"bench": "bench"},
            "taxii": {"max_page_size": 100},
        });
        let config_file = dir.path().join("config.json");
        std::fs::write(&config_file, config.to_string())?;
        let version = std::process::Command::new(&python)
            .args(["-c", "import medallion; print(medallion.__version__)"])
            .output()
            .with_context(|| format!("running {python}"))?;
        let found = String::from_utf8_lossy(&version.stdout).trim().to_string();
        if found != MEDALLION_VERSION {
            bail!(
                "medallion {MEDALLION_VERSION} is not importable by {python} (found {found:?}): \
                 pip install -r .ci/requirements.txt, then pass --python"
            );
        }
        let mut server = tokio::process::Command::new(&python)
            .args([
                "-m",
                "medallion.scripts.run",
                "--host",
                "127.0.0.1",
                "--port",
            ])
            .arg(port.to_string())
            .arg(&config_file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let path = format!("/api1/collections/{collection}/objects/");
        let deadline = Instant::now() + Duration::from_secs(30);
        while plain_request(&address, "GET", "/taxii2/", None)
            .await
            .is_err()
        {
            ensure!(Instant::now() < deadline, "medallion did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let start = Instant::now();
        let mut added = 0u64;
        while added < ADDED {
            let body = serde_json::to_vec(&json!({"objects": stix_indicators(BATCH)}))?;
            let left = MEDALLION_ADD_TIME.saturating_sub(start.elapsed());
            // A request still running when the time is up counts as not done.
            let Ok(answer) =
                tokio::time::timeout(left, plain_request(&address, "POST", &path, Some(&body)))
                    .await
            else {
                break;
            };
            let (status, text) = answer?;
            ensure!(status == 202, "medallion add: {status} {text}");
            added += BATCH as u64;
        }
        let add_rate = added as f64 / start.elapsed().as_secs_f64();
        let start = Instant::now();
        let mut read = 0usize;
        let mut next: Option<String> = None;
        loop {
            let url = match &next {
                Some(next) => format!("{path}?limit=100&next={next}"),
                None => format!("{path}?limit=100"),
            };
            let left = MEDALLION_PAGE_TIME.saturating_sub(start.elapsed());
            let Ok(answer) =
                tokio::time::timeout(left, plain_request(&address, "GET", &url, None)).await
            else {
                break;
            };
            let (status, text) = answer?;
            ensure!(status == 200, "medallion get: {status} {text}");
            let envelope: Value = serde_json::from_str(&text)?;
            read += envelope["objects"].as_array().map_or(0, Vec::len);
            if envelope["more"] != true || start.elapsed() >= MEDALLION_PAGE_TIME {
                break;
            }
            next = envelope["next"].as_str().map(String::from);
        }
        // No page in the time: credit it one page at the end of the time (an upper bound).
        let page_rate = read.max(100) as f64 / start.elapsed().as_secs_f64();
        server.kill().await?;
        let system = format!("medallion {MEDALLION_VERSION}");
        self.push(Row {
            scenario: "taxii add".into(),
            system: system.clone(),
            batch: BATCH,
            events: added,
            rate_per_s: add_rate,
            note: format!(
                "memory backend, plain HTTP, basic auth; the same {ADDED} indicators in \
                 envelopes of {BATCH}, one at a time, for at most {} s: {added} added",
                MEDALLION_ADD_TIME.as_secs()
            ),
            ..Row::default()
        });
        self.push(Row {
            scenario: "taxii page back".into(),
            system,
            batch: 100,
            events: read as u64,
            rate_per_s: page_rate,
            note: format!(
                "its collection of {added} objects paged back 100 at a time (its \
                 max_page_size) for at most {} s: {read} objects read; objects per second",
                MEDALLION_PAGE_TIME.as_secs()
            ),
            ..Row::default()
        });
        Ok(())
    }
}

/// The objects path of the caller's collection.
async fn objects_path(address: &str, identity: &std::path::Path) -> Result<String> {
    let (status, _, body) = taxii_request(
        address,
        identity,
        "GET",
        "/cordon/collections/",
        Some(TAXII),
        None,
    )
    .await?;
    ensure!(status == 200, "collections: {status} {body}");
    let collections: Value = serde_json::from_str(&body)?;
    let id = collections["collections"][0]["id"]
        .as_str()
        .context("collection id")?;
    Ok(format!("/cordon/collections/{id}/objects/"))
}

/// Adds `count` indicators in envelopes of [`BATCH`], [`IN_FLIGHT`] requests at a time.
async fn taxii_add(
    address: &str,
    identity: &std::path::Path,
    path: &str,
    count: u64,
) -> Result<(f64, hdrhistogram::Histogram<u64>)> {
    let requests = (count as usize).div_ceil(BATCH);
    let bodies: Vec<Vec<u8>> = (0..requests)
        .map(|_| serde_json::to_vec(&json!({"objects": stix_indicators(BATCH)})))
        .collect::<Result<_, _>>()?;
    let queue = std::sync::Arc::new(std::sync::Mutex::new(bodies));
    let start = Instant::now();
    let workers: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let queue = queue.clone();
            let (address, identity, path) = (
                address.to_string(),
                identity.to_path_buf(),
                path.to_string(),
            );
            tokio::spawn(async move {
                let mut latency = scenario::histogram();
                // One kept-alive connection per request in flight, as gRPC keeps its channel.
                let mut connection = TaxiiConnection::open(&address, &identity).await?;
                loop {
                    let Some(body) = queue.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.pop()
                    else {
                        return anyhow::Ok(latency);
                    };
                    let sent = Instant::now();
                    let (status, _, text) = connection
                        .request("POST", &path, Some(TAXII), Some((TAXII, &body)))
                        .await?;
                    ensure!(status == 202, "TAXII add: {status} {text}");
                    ensure!(
                        text.contains(&format!("\"success_count\":{BATCH}")),
                        "TAXII add: {text}"
                    );
                    latency.record(sent.elapsed().as_micros() as u64)?;
                }
            })
        })
        .collect();
    let mut latency = scenario::histogram();
    for worker in workers {
        latency.add(worker.await??)?;
    }
    Ok((
        (requests * BATCH) as f64 / start.elapsed().as_secs_f64(),
        latency,
    ))
}

/// Every object of the collection in pages of [`PAGE`]: (objects, indicators).
async fn page_all(address: &str, identity: &std::path::Path, path: &str) -> Result<(usize, usize)> {
    let mut next: Option<String> = None;
    let (mut objects, mut indicators) = (0, 0);
    let mut connection = TaxiiConnection::open(address, identity).await?;
    loop {
        let url = match &next {
            Some(next) => format!("{path}?limit={PAGE}&next={next}"),
            None => format!("{path}?limit={PAGE}"),
        };
        let (status, _, text) = connection.request("GET", &url, Some(TAXII), None).await?;
        ensure!(status == 200, "TAXII get objects: {status} {text}");
        // Every object is read, for its type only (as a client that files objects by type).
        let envelope: Envelope = serde_json::from_str(&text)?;
        objects += envelope.objects.len();
        indicators += envelope
            .objects
            .iter()
            .filter(|o| o.object_type == "indicator")
            .count();
        if !envelope.more {
            return Ok((objects, indicators));
        }
        next = Some(envelope.next.context("more without next")?);
    }
}

#[derive(serde::Deserialize)]
struct Envelope {
    #[serde(default)]
    more: bool,
    next: Option<String>,
    #[serde(default)]
    objects: Vec<Typed>,
}

#[derive(serde::Deserialize)]
struct Typed {
    #[serde(rename = "type")]
    object_type: String,
}

/// One plain HTTP/1.1 exchange with medallion (basic auth `bench:bench`): (status, body).
async fn plain_request(
    address: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Authorization: Basic YmVuY2g6YmVuY2g=\r\nAccept: {TAXII}\r\n"
    );
    if let Some(body) = body {
        request.push_str(&format!(
            "Content-Type: {TAXII}\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    let mut bytes = request.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());
    stream.write_all(&bytes).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8(response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("no end of headers")?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("status line")?;
    Ok((status, body.to_string()))
}
