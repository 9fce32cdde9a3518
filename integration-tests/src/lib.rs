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

pub use cordon_gateway::client::indicator_client;

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
    // target/<profile>/deps/<test> -> target/<profile>/cordon
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    let binary = profile_dir.join("cordon");
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

    /// `cordon init` for MEMBER in its own directory, listening on a free loopback port.
    pub fn member(&self, member: &str) -> Result<MemberDir> {
        let dir = self.dir.path().join("members").join(member);
        cordon(&[
            "init",
            "--member",
            member,
            "--dir",
            dir.to_str().context("path")?,
            "--ca",
            self.ca_dir().to_str().context("path")?,
            "--listen",
            "127.0.0.1:0",
        ])?;
        Ok(MemberDir {
            dir,
            member: member.to_string(),
        })
    }
}

/// A member's gateway directory (config, identity, policy, SQLite file).
#[derive(Debug, Clone)]
pub struct MemberDir {
    pub dir: PathBuf,
    pub member: String,
}

impl MemberDir {
    pub fn config(&self) -> PathBuf {
        self.dir.join("cordon.toml")
    }

    /// Starts `cordon serve` with extra environment (for example `CORDON_DATABASE_URL`).
    pub async fn start(&self, environment: &[(&str, &str)]) -> Result<GatewayProcess> {
        GatewayProcess::start(self, environment).await
    }
}

/// A running `cordon serve` process. Dropping it kills the process (by its own handle).
#[derive(Debug)]
pub struct GatewayProcess {
    child: Child,
    pub endpoint: String,
    pub log: PathBuf,
}

impl GatewayProcess {
    async fn start(member: &MemberDir, environment: &[(&str, &str)]) -> Result<GatewayProcess> {
        let log = member.dir.join(format!("gateway-{}.log", unique_suffix()));
        let log_file = std::fs::File::create(&log)?;
        let mut command = Command::new(cordon_bin());
        command
            .args(["serve", "--config"])
            .arg(member.config())
            .env("RUST_LOG", "info")
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
        // Keep draining stdout so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(GatewayProcess {
            child,
            endpoint: format!("https://{address}"),
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
