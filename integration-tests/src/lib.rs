//! Test harness: a federation CA, member directories made by `cordon init`, and
//! real `cordon serve` processes on loopback that tests start, kill and restart.
//!
//! Everything runs the built `cordon` binary, as an operator would.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub use cordon_gateway::cli::client::indicator_client;

/// How long a test waits for a condition before failing; raise it on slow machines.
pub fn patience() -> Duration {
    let seconds = std::env::var("CORDON_TEST_PATIENCE_SECS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(seconds)
}

/// The `cordon` binary built beside this test (`target/<profile>/cordon`),
/// or `CORDON_BIN`.
pub fn cordon_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("CORDON_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // A test is target/<profile>/deps/<test>; a binary such as cordon-bench is
    // target/<profile>/<bin>: either way, target/<profile>/cordon.
    let beside = exe.parent().expect("executable directory");
    let binary = if beside.join("cordon").exists() {
        beside.join("cordon")
    } else {
        beside.parent().unwrap_or(beside).join("cordon")
    };
    assert!(
        binary.exists(),
        "{} is missing: build it with `cargo build -p cordon-gateway` (the workspace test command does)",
        binary.display()
    );
    binary
}

/// Runs `cordon ARGS…` to completion and returns its stdout; fails on a non-zero exit.
pub fn cordon(args: &[&str]) -> Result<String> {
    let output = std::process::Command::new(cordon_bin())
        .args(args)
        .output()
        .with_context(|| format!("running cordon {args:?}"))?;
    if !output.status.success() {
        bail!(
            "cordon {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// A federation on a temporary directory: one CA and the identities issued by it.
#[derive(Debug)]
pub struct Federation {
    pub dir: tempfile::TempDir,
}

impl Federation {
    pub fn new() -> Result<Federation> {
        let dir = tempfile::tempdir()?;
        let ca = dir.path().join("ca");
        cordon(&[
            "ca",
            "init",
            "--out",
            ca.to_str().context("path")?,
            "--federation",
            "cordon-test",
        ])?;
        Ok(Federation { dir })
    }

    pub fn ca_dir(&self) -> PathBuf {
        self.dir.path().join("ca")
    }

    /// Issues (once) the identity NAME (`GH`, `GH/customs`) and returns its directory.
    pub fn identity(&self, name: &str) -> Result<PathBuf> {
        let out = self
            .dir
            .path()
            .join("identities")
            .join(name.replace('/', "-"));
        if !out.join("cert.pem").exists() {
            cordon(&[
                "ca",
                "issue",
                "--ca",
                self.ca_dir().to_str().context("path")?,
                "--name",
                name,
                "--out",
                out.to_str().context("path")?,
            ])?;
        }
        Ok(out)
    }

    /// Members (`cordon init` each) that all list each other's signing keys.
    pub fn members(&self, ids: &[&str]) -> Result<Vec<MemberDir>> {
        let members = ids
            .iter()
            .map(|id| self.member(id))
            .collect::<Result<Vec<_>>>()?;
        for member in &members {
            for other in &members {
                if other.member != member.member {
                    member.trust_member(other)?;
                }
            }
        }
        Ok(members)
    }

    /// `cordon init` for MEMBER in its own directory, listening on a free loopback port.
    pub fn member(&self, member: &str) -> Result<MemberDir> {
        self.member_reached_at(member, &[])
    }

    /// [`Federation::member`], with a certificate that also names `hosts` (`--san`): for a
    /// gateway reached at an address other than loopback (in a [`NetNs`] of the test).
    pub fn member_reached_at(&self, member: &str, hosts: &[&str]) -> Result<MemberDir> {
        let dir = self.dir.path().join("members").join(member);
        let ca_dir = self.ca_dir();
        let mut args = vec![
            "init",
            "--member",
            member,
            "--dir",
            dir.to_str().context("path")?,
            "--ca",
            ca_dir.to_str().context("path")?,
            "--listen",
            "127.0.0.1:0",
        ];
        for host in hosts {
            args.extend(["--san", host]);
        }
        cordon(&args)?;
        let member = MemberDir {
            dir,
            member: member.to_string(),
        };
        // Tests poll with re-reads many times a second while they wait for a condition: the
        // request-rate limits stay on, far above that (the rate-limit test sets its own).
        member.set_limit("subscribe_rereads_per_minute", 1_000_000)?;
        member.set_limit("gets_per_minute", 1_000_000)?;
        Ok(member)
    }
}

/// A member's gateway directory (config, identity, policy, SQLite file).
#[derive(Debug, Clone)]
pub struct MemberDir {
    pub dir: PathBuf,
    pub member: String,
}

/// A free loopback port for a gateway that keeps its address across restarts. It is taken
/// below the kernel's ephemeral range, where no `bind(0)` of another test (a gateway on port
/// 0, a client socket) can be given it between now and the gateway's start, and never twice
/// in one test process.
fn fixed_port() -> Result<u16> {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let low = 10_000u16.min(ephemeral_start.saturating_sub(1_000));
    let mut handed_out = HANDED_OUT
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for _ in 0..1_000 {
        let port = fastrand::u16(low..ephemeral_start);
        if handed_out.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return Ok(port);
        }
    }
    bail!("no free loopback port below the ephemeral range ({ephemeral_start})")
}

impl MemberDir {
    pub fn config(&self) -> PathBuf {
        self.dir.join("cordon.toml")
    }

    /// The gateway's own identity directory (certificate, keys).
    pub fn identity(&self) -> PathBuf {
        self.dir.join("identity")
    }

    /// The gateway's Ed25519 public signing key, hex, as `cordon init` wrote it.
    pub fn public_key(&self) -> Result<String> {
        let path = self.identity().join("signing-key.pub");
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_string())
    }

    /// The gateway's SQLite database URL (the default of `cordon init`).
    pub fn sqlite_url(&self) -> String {
        format!("sqlite:{}", self.dir.join("cordon.db").display())
    }

    /// Listens on a fixed free loopback port from now on, so that the gateway
    /// keeps its address across restarts (peers have it in their configs).
    /// Returns the endpoint.
    pub fn fix_listen_port(&self) -> Result<String> {
        let port = fixed_port()?;
        let text = std::fs::read_to_string(self.config())?;
        let replaced = text.replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        );
        if replaced == text {
            bail!(
                "{}: no `listen = \"127.0.0.1:0\"` to replace",
                self.config().display()
            );
        }
        std::fs::write(self.config(), replaced)?;
        Ok(format!("https://127.0.0.1:{port}"))
    }

    /// Listens on `address` (`host:port`) from now on instead of the free loopback port
    /// `cordon init` chose. Returns the endpoint.
    pub fn set_listen(&self, address: &str) -> Result<String> {
        let text = std::fs::read_to_string(self.config())?;
        let replaced = text.replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"{address}\""),
        );
        if replaced == text {
            bail!(
                "{}: no `listen = \"127.0.0.1:0\"` to replace",
                self.config().display()
            );
        }
        std::fs::write(self.config(), replaced)?;
        Ok(format!("https://{address}"))
    }

    /// Sets `[limits] NAME = VALUE` in the config `cordon init` wrote (which lists every limit).
    pub fn set_limit(&self, name: &str, value: u64) -> Result<()> {
        let text = std::fs::read_to_string(self.config())?;
        let mut found = false;
        let replaced: Vec<String> = text
            .lines()
            .map(|line| {
                if line.split('=').next().map(str::trim) == Some(name) {
                    found = true;
                    format!("{name} = {value}")
                } else {
                    line.to_string()
                }
            })
            .collect();
        if !found {
            bail!("{name} is not in {}", self.config().display());
        }
        std::fs::write(self.config(), replaced.join("\n") + "\n")?;
        Ok(())
    }

    /// Lists `other` under `[[members]]` with its signing key (federation data).
    pub fn trust_member(&self, other: &MemberDir) -> Result<()> {
        self.append_config(&format!(
            "\n[[members]]\nid = \"{}\"\nsigning_keys = [\"{}\"]\n",
            other.member,
            other.public_key()?
        ))
    }

    /// Follows `peer` at `endpoint` (a `[[peers]]` entry).
    pub fn follow(&self, peer: &MemberDir, endpoint: &str) -> Result<()> {
        self.append_config(&format!(
            "\n[[peers]]\nid = \"{}\"\nendpoint = \"{endpoint}\"\n",
            peer.member
        ))
    }

    fn append_config(&self, text: &str) -> Result<()> {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(self.config())?;
        file.write_all(text.as_bytes())?;
        Ok(())
    }

    /// Starts `cordon serve` with extra environment (for example `CORDON_DATABASE_URL`).
    pub async fn start(&self, environment: &[(&str, &str)]) -> Result<GatewayProcess> {
        GatewayProcess::start(self, None, environment).await
    }

    /// Starts `cordon serve` inside the network namespace `netns` (`ip netns exec`, which
    /// executes the gateway in its own place: the process id is the gateway's).
    pub async fn start_in(
        &self,
        netns: &NetNs,
        environment: &[(&str, &str)],
    ) -> Result<GatewayProcess> {
        GatewayProcess::start(self, Some(netns), environment).await
    }
}

/// A running `cordon serve` process. Dropping it kills the process (by its own handle).
#[derive(Debug)]
pub struct GatewayProcess {
    child: Child,
    pub endpoint: String,
    /// The admin listener's `host:port` (plain HTTP, `GET /metrics`), when `[admin]` is configured.
    pub admin: Option<String>,
    /// The TAXII listener's `host:port` (HTTPS, mutual TLS), when `[taxii]` is configured.
    pub taxii: Option<String>,
    pub log: PathBuf,
}

impl GatewayProcess {
    async fn start(
        member: &MemberDir,
        netns: Option<&NetNs>,
        environment: &[(&str, &str)],
    ) -> Result<GatewayProcess> {
        let log = member.dir.join(format!("gateway-{}.log", unique_suffix()));
        let log_file = std::fs::File::create(&log)?;
        let mut command = match netns {
            Some(netns) => {
                let mut command = Command::new("ip");
                command
                    .args(["netns", "exec", &netns.name])
                    .arg(cordon_bin());
                command
            }
            None => Command::new(cordon_bin()),
        };
        command
            .args(["serve", "--config"])
            .arg(member.config())
            // Tests read the per-decision lines; a caller may pass its own RUST_LOG.
            .env("RUST_LOG", "info,cordon::decision=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true);
        for (key, value) in environment {
            command.env(key, value);
        }
        let mut child = command.spawn().context("starting cordon serve")?;
        let stdout = child.stdout.take().context("cordon serve stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(patience(), lines.next_line())
            .await
            .context("cordon serve did not report its address in time")??;
        let Some(first) = first else {
            let _ = child.wait().await;
            bail!(
                "cordon serve exited before listening: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        };
        let value: serde_json::Value =
            serde_json::from_str(&first).with_context(|| format!("first line {first:?}"))?;
        let address = value["listening"]
            .as_str()
            .context("no listening address")?;
        let admin = value["admin"].as_str().map(str::to_string);
        let taxii = value["taxii"].as_str().map(str::to_string);
        // Keep draining stdout so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(GatewayProcess {
            child,
            endpoint: format!("https://{address}"),
            admin,
            taxii,
            log,
        })
    }

    /// SIGKILL: no chance to flush or shut down cleanly.
    pub async fn kill(mut self) -> Result<()> {
        self.child.kill().await?;
        Ok(())
    }

    /// SIGTERM (graceful shutdown), then wait.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(pid) = self.child.id() {
            std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()?;
        }
        let status = tokio::time::timeout(patience(), self.child.wait())
            .await
            .context("gateway did not stop")??;
        if !status.success() {
            bail!("gateway exited with {status}: {}", self.log_text());
        }
        Ok(())
    }

    /// The process id, while it runs (for reading its memory use from /proc).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A network namespace the test made, joined to the test's own namespace by a veth pair:
/// a gateway started in it ([`MemberDir::start_in`]) listens on [`NetNs::inside`] and reaches
/// the test's namespace at [`NetNs::outside`]. [`NetNs::partition`] drops every packet
/// between the two sides until [`NetNs::heal`]. Dropping it deletes the namespace and the pair.
#[derive(Debug)]
pub struct NetNs {
    pub name: String,
    /// The address of the test's side of the pair.
    pub outside: std::net::Ipv4Addr,
    /// The address of the namespace's side.
    pub inside: std::net::Ipv4Addr,
}

impl NetNs {
    /// A new namespace, or `None` (saying so on stderr) where this process may not make one
    /// (it needs CAP_SYS_ADMIN and CAP_NET_ADMIN: CI runs as root).
    pub fn create() -> Result<Option<NetNs>> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("cordon-test-{pid}-{count}");
        remove_orphaned_namespaces();
        match std::process::Command::new("ip")
            .args(["netns", "add", &name])
            .output()
        {
            Ok(output) if output.status.success() => {}
            Ok(output) => {
                eprintln!(
                    "skipped: cannot make a network namespace ({}); partitions need root",
                    String::from_utf8_lossy(&output.stderr).trim()
                );
                return Ok(None);
            }
            Err(error) => {
                eprintln!("skipped: cannot run `ip` ({error}); partitions need iproute2");
                return Ok(None);
            }
        }
        // A /30 of 10.231.0.0/16 per pair, from the process id and a counter.
        let block = (pid.wrapping_mul(4).wrapping_add(count)) % (1 << 14);
        let base = u32::from(std::net::Ipv4Addr::new(10, 231, 0, 0)) + block * 4;
        let netns = NetNs {
            name,
            outside: std::net::Ipv4Addr::from(base + 1),
            inside: std::net::Ipv4Addr::from(base + 2),
        };
        let outside_link = netns.outside_link();
        let inside_link = format!("cdn{pid}i{count}");
        let outside = format!("{}/30", netns.outside);
        let inside = format!("{}/30", netns.inside);
        let steps: [&[&str]; 6] = [
            &[
                "link",
                "add",
                &outside_link,
                "type",
                "veth",
                "peer",
                "name",
                &inside_link,
                "netns",
                &netns.name,
            ],
            &["addr", "add", &outside, "dev", &outside_link],
            &["link", "set", &outside_link, "up"],
            &[
                "-n",
                &netns.name,
                "addr",
                "add",
                &inside,
                "dev",
                &inside_link,
            ],
            &["-n", &netns.name, "link", "set", &inside_link, "up"],
            &["-n", &netns.name, "link", "set", "lo", "up"],
        ];
        for step in steps {
            ip(step)?;
        }
        Ok(Some(netns))
    }

    fn outside_link(&self) -> String {
        // Interface names have at most 15 bytes.
        let suffix = self
            .name
            .trim_start_matches("cordon-test-")
            .replace('-', "o");
        format!("cdn{suffix}")
    }

    /// Drops every packet from the namespace to the test's side (a blackhole route), so no
    /// connection between the two sides works, in either direction, until [`NetNs::heal`].
    pub fn partition(&self) -> Result<()> {
        ip(&[
            "-n",
            &self.name,
            "route",
            "add",
            "blackhole",
            &format!("{}/32", self.outside),
        ])
    }

    pub fn heal(&self) -> Result<()> {
        ip(&[
            "-n",
            &self.name,
            "route",
            "del",
            "blackhole",
            &format!("{}/32", self.outside),
        ])
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace deletes its end of the pair, and with it the other end.
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.outside_link()]);
    }
}

/// Deletes the namespaces of earlier test processes that were killed before they could
/// (named `cordon-test-PID-N`, their process gone).
fn remove_orphaned_namespaces() {
    let Ok(output) = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
    else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(owner) = name
            .strip_prefix("cordon-test-")
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if owner.parse::<u32>().is_ok() && !Path::new("/proc").join(owner).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let output = std::process::Command::new("ip")
        .args(args)
        .output()
        .context("running ip")?;
    if !output.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// `cordon circle ARGS[0] --endpoint ENDPOINT --identity <member's gateway identity> ARGS[1..]`,
/// its JSON output.
pub async fn circle(
    member: &MemberDir,
    endpoint: &str,
    args: &[&str],
) -> Result<serde_json::Value> {
    let identity = member.identity();
    let mut all: Vec<String> = vec!["circle".into(), args[0].into()];
    all.extend([
        "--endpoint".into(),
        endpoint.to_string(),
        "--identity".into(),
        identity.to_str().context("path")?.to_string(),
    ]);
    all.extend(args[1..].iter().map(|arg| arg.to_string()));
    let output = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        cordon(&refs)
    })
    .await??;
    Ok(serde_json::from_str(&output)?)
}

/// Reads a non-following subscription to its end.
pub async fn read_all(
    endpoint: &str,
    identity: &Path,
    after: u64,
    limit: u64,
) -> Result<Vec<cordon_proto::v1::Event>> {
    let mut client = indicator_client(endpoint, identity).await?;
    let request = cordon_proto::v1::SubscribeRequest {
        after,
        follow: false,
        kinds: Vec::new(),
        limit,
    };
    let mut stream = client.subscribe(request).await?.into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.message().await? {
        events.push(event);
    }
    Ok(events)
}

/// The published events among `events`: sequence, indicator, redacted paths.
pub fn published(
    events: &[cordon_proto::v1::Event],
) -> Vec<(u64, cordon_proto::v1::Indicator, Vec<String>)> {
    use cordon_proto::v1::event;
    events
        .iter()
        .filter_map(|event| match &event.body {
            Some(event::Body::Published(published)) => Some((
                event.sequence,
                published.indicator.clone()?,
                published.redacted.clone(),
            )),
            _ => None,
        })
        .collect()
}

pub fn pbjson_timestamp(seconds: i64) -> cordon_proto::Timestamp {
    cordon_proto::Timestamp { seconds, nanos: 0 }
}

/// A valid vessel indicator under `tlp`.
pub fn vessel(tlp: cordon_proto::v1::Tlp, narrative: String) -> cordon_proto::v1::Indicator {
    use cordon_proto::v1::{Indicator, Vessel, indicator};
    Indicator {
        tlp: tlp as i32,
        confidence: 50,
        valid_from: Some(pbjson_timestamp(1_790_000_000)),
        narrative,
        kind: Some(indicator::Kind::Vessel(Vessel {
            imo: "9234563".into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// A valid TLP:CLEAR vessel indicator.
pub fn clear_vessel(narrative: String) -> cordon_proto::v1::Indicator {
    vessel(cordon_proto::v1::Tlp::Clear, narrative)
}

/// A valid entity (broker) indicator under `tlp`.
pub fn broker(tlp: cordon_proto::v1::Tlp, narrative: String) -> cordon_proto::v1::Indicator {
    use cordon_proto::v1::{Entity, EntityRole, Indicator, indicator};
    Indicator {
        tlp: tlp as i32,
        confidence: 60,
        valid_from: Some(pbjson_timestamp(1_790_000_000)),
        narrative,
        kind: Some(indicator::Kind::Entity(Entity {
            name: "Example Trading FZE".into(),
            role: EntityRole::Broker as i32,
            country: "AE".into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// Polls `condition` until it holds, at most [`patience`]; the error names `what`
/// and the last state seen.
pub async fn wait_until<F, Fut>(what: &str, mut condition: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(bool, String)>>,
{
    let deadline = tokio::time::Instant::now() + patience();
    loop {
        let (done, state) = condition().await?;
        if done {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "gave up waiting for {what} after {:?}; last state: {state}",
                patience()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The example indicators of ../shared/examples (or the demo's copy).
pub fn example_indicators() -> Result<Vec<cordon_proto::v1::Indicator>> {
    let text = include_str!("../../gateway/demo/indicators.jsonl");
    let (indicators, _) =
        cordon_gateway::cli::read_indicators(text.as_bytes(), "indicators.jsonl")?;
    Ok(indicators)
}

/// A fresh PostgreSQL schema for one test, as a database URL, when
/// `CORDON_TEST_DATABASE_URL` is set; `None` (and a note on stderr) otherwise.
pub async fn postgres_url(test: &str) -> Result<Option<String>> {
    let Ok(base) = std::env::var("CORDON_TEST_DATABASE_URL") else {
        eprintln!("skipped: CORDON_TEST_DATABASE_URL is not set; {test} needs PostgreSQL");
        return Ok(None);
    };
    Ok(Some(
        cordon_storage::testing::fresh_postgres_schema(&base, test).await?,
    ))
}

/// A bare HTTP/1.1 exchange with a loopback listener (the admin listener): (status, headers as
/// `name: value` lines, body).
pub async fn http(address: &str, method: &str, path: &str) -> Result<(u16, String, String)> {
    let mut stream = tokio::net::TcpStream::connect(address)
        .await
        .with_context(|| format!("connecting to the admin listener {address}"))?;
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(
        patience(),
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut response),
    )
    .await
    .context("the admin listener did not answer in time")??;
    let response = String::from_utf8(response)?;
    let (status, headers, body) = split_response(&response)?;
    if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        bail!("unexpected chunked response: {response:?}");
    }
    Ok((status, headers.to_string(), body.to_string()))
}

/// One HTTPS/1.1 exchange with a TAXII listener at `address`, as the identity in
/// `identity` (its `cert.pem`, `key.pem` and the federation's `ca.pem`), on a connection of
/// its own: (status, headers as lower-case `name: value` lines, body). `accept` and
/// `content_type` set those headers when given.
pub async fn taxii_request(
    address: &str,
    identity: &Path,
    method: &str,
    path: &str,
    accept: Option<&str>,
    body: Option<(&str, &[u8])>,
) -> Result<(u16, String, String)> {
    TaxiiConnection::open(address, identity)
        .await?
        .request(method, path, accept, body)
        .await
}

/// A kept-alive HTTPS/1.1 connection to a TAXII listener, as a TAXII client such as Python's
/// `requests.Session` keeps one.
#[derive(Debug)]
pub struct TaxiiConnection {
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    address: String,
}

impl TaxiiConnection {
    /// Connects to `address` as the identity in `identity` (see [`taxii_request`]).
    pub async fn open(address: &str, identity: &Path) -> Result<TaxiiConnection> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
        let chain = CertificateDer::pem_file_iter(identity.join("cert.pem"))?
            .collect::<Result<Vec<_>, _>>()?;
        let key = PrivateKeyDer::from_pem_file(identity.join("key.pem"))?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(identity.join("ca.pem"))? {
            roots.add(ca?)?;
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(address)
            .await
            .with_context(|| format!("connecting to the TAXII listener {address}"))?;
        let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
        let server_name = ServerName::try_from(host.to_string())?;
        Ok(TaxiiConnection {
            stream: connector.connect(server_name, tcp).await?,
            address: address.to_string(),
        })
    }

    /// One exchange on this connection: (status, headers as lower-case lines, body).
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        accept: Option<&str>,
        body: Option<(&str, &[u8])>,
    ) -> Result<(u16, String, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.address);
        if let Some(accept) = accept {
            request.push_str(&format!("Accept: {accept}\r\n"));
        }
        if let Some((content_type, body)) = body {
            request.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        if let Some((_, body)) = body {
            bytes.extend_from_slice(body);
        }
        self.stream.write_all(&bytes).await?;
        // Read the head, then the body by its Content-Length (or to the end of the chunks).
        let mut response = Vec::new();
        let read = async {
            let mut buffer = [0u8; 16 * 1024];
            // Where the head ends and the body's length (None: chunked; usize::MAX: to the end
            // of the connection), once the head is in.
            let mut framing: Option<(usize, Option<usize>)> = None;
            loop {
                if framing.is_none()
                    && let Some(end) = find(&response, b"\r\n\r\n")
                {
                    let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|line| line.strip_prefix("content-length:"))
                        .and_then(|n| n.trim().parse::<usize>().ok());
                    // Neither a length nor chunks: no body (204, 304), else to the end.
                    let chunked = head.contains("transfer-encoding: chunked");
                    let bodiless = [" 204 ", " 304 "].iter().any(|code| head.contains(code));
                    let length = length.or(bodiless.then_some(0));
                    framing = Some((
                        end + 4,
                        length.map(Some).unwrap_or((!chunked).then_some(usize::MAX)),
                    ));
                }
                let complete = match framing {
                    Some((_, Some(usize::MAX))) => false,
                    Some((start, Some(length))) => response.len() >= start + length,
                    Some((start, None)) => response[start..].ends_with(b"0\r\n\r\n"),
                    None => false,
                };
                if complete {
                    return anyhow::Ok(());
                }
                let read = self.stream.read(&mut buffer).await?;
                if read == 0 {
                    return anyhow::Ok(());
                }
                response.extend_from_slice(&buffer[..read]);
            }
        };
        tokio::time::timeout(patience(), read)
            .await
            .context("the TAXII listener did not answer in time")??;
        let response = String::from_utf8(response)?;
        let (status, headers, body) = split_response(&response)?;
        let headers = headers.to_ascii_lowercase();
        let body = if headers.contains("transfer-encoding: chunked") {
            dechunk(body)?
        } else {
            body.to_string()
        };
        Ok((status, headers, body))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// An HTTP/1.1 response's status, header lines and body.
fn split_response(response: &str) -> Result<(u16, &str, &str)> {
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("no end of headers in {response:?}"))?;
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("status line {status_line:?}"))?;
    Ok((status, headers, body))
}

fn dechunk(mut body: &str) -> Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").context("chunk size line")?;
        let size = usize::from_str_radix(size.trim(), 16).context("chunk size")?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).context("chunk shorter than its size")?);
        body = rest.get(size + 2..).context("chunk without its end")?;
    }
}

/// Publishes `indicators` as `identity`; returns the ids the gateway accepted, in order.
pub async fn publish_ids(
    endpoint: &str,
    identity: &std::path::Path,
    indicators: Vec<cordon_proto::v1::Indicator>,
) -> Result<Vec<String>> {
    Ok(indicator_client(endpoint, identity)
        .await?
        .publish(cordon_proto::v1::PublishRequest {
            indicators,
            ..Default::default()
        })
        .await?
        .into_inner()
        .accepted
        .into_iter()
        .map(|accepted| accepted.id)
        .collect())
}

/// `cordon peers --json` of the gateway at `endpoint`, asked as its own identity:
/// peer id -> status object.
pub async fn peer_statuses(
    member: &MemberDir,
    endpoint: &str,
) -> Result<std::collections::BTreeMap<String, serde_json::Value>> {
    let identity = member.identity();
    let endpoint = endpoint.to_string();
    let output = tokio::task::spawn_blocking(move || {
        cordon(&[
            "peers",
            "--endpoint",
            &endpoint,
            "--identity",
            identity.to_str().context("path")?,
            "--json",
        ])
    })
    .await??;
    let list: Vec<serde_json::Value> = serde_json::from_str(&output)?;
    Ok(list
        .into_iter()
        .map(|peer| (peer["id"].as_str().unwrap_or_default().to_string(), peer))
        .collect())
}
