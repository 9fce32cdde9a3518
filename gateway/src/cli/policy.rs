//! `cordon policy …` and `cordon decisions`: the governance board's tools to
//! check, test, evaluate and compare policies before they go live, and to see
//! a running gateway's policy status and stored decisions.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use cordon_policy::{Channel, DiffInput, InputContext, Policy};
use cordon_proto::v1::policy_service_client::PolicyServiceClient;
use cordon_proto::v1::{DecisionsRequest, PolicyStatusRequest, ReloadRequest};

use super::client::channel;
use super::{Connection, read_indicators, status_error};
use crate::identity::Identity;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Parse and compile a policy (directory or .tar.gz bundle), confirm the
    /// entrypoint, refuse builtins the engine lacks.
    Check {
        source: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Run the policy's `test_*` rules like `opa test`; exits non-zero on any failure.
    Test {
        source: PathBuf,
        /// Only tests whose path (data.pkg.test_name) matches this regular expression.
        #[arg(long)]
        run: Option<String>,
        /// Show line coverage of the policy files.
        #[arg(long)]
        coverage: bool,
        #[arg(long)]
        json: bool,
    },
    /// Build an OPA bundle (.tar.gz with a .manifest) from a policy directory.
    Bundle {
        source: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// The manifest's revision (default: the content hash).
        #[arg(long)]
        revision: Option<String>,
    },
    /// Print the decision for one input (a JSON file with indicator, recipient, context).
    Eval {
        source: PathBuf,
        #[arg(long)]
        input: PathBuf,
    },
    /// Show which decisions and redactions would change from OLD to NEW for
    /// every (indicator, recipient) pair.
    Diff {
        old: PathBuf,
        new: PathBuf,
        /// Indicators, proto3 JSON, one per line.
        #[arg(long)]
        indicators: PathBuf,
        /// Recipients: identities such as NG or GH/customs, one per line (or JSON lines with an "id").
        #[arg(long)]
        recipients: PathBuf,
        /// The member whose gateway decides (`input.context.gateway`).
        #[arg(long)]
        member: String,
        #[arg(long, value_enum, default_value_t = DiffChannel::Subscribe)]
        channel: DiffChannel,
        #[arg(long)]
        json: bool,
    },
    /// The active policy of a running gateway and its last rejection.
    Status {
        #[command(flatten)]
        connection: Connection,
    },
    /// Ask a running gateway to load its policy source again (gateway identity only).
    Reload {
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DiffChannel {
    Subscribe,
    Federation,
    Circle,
}

#[derive(Debug, Args)]
pub struct DecisionsArgs {
    #[command(flatten)]
    connection: Connection,
    #[arg(long)]
    indicator: Option<String>,
    #[arg(long)]
    recipient: Option<String>,
    /// RFC 3339 time, for example 2026-11-25T00:00:00Z.
    #[arg(long)]
    since: Option<String>,
    /// At most this many decisions (all when unset).
    #[arg(long)]
    limit: Option<u64>,
    /// `json` (one decision per line, as stored) or `opa` (OPA decision-log shape).
    #[arg(long, value_enum, default_value_t = DecisionFormat::Json)]
    format: DecisionFormat,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum DecisionFormat {
    Json,
    Opa,
}

pub async fn run(command: PolicyCommand) -> Result<()> {
    match command {
        PolicyCommand::Check { source, json } => {
            let report = cordon_policy::check(&source)
                .with_context(|| format!("checking {}", source.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "ok: {} ({}), revision {}, {} modules, {} rules, {} test modules, {} data files, entrypoint {}, engine {}",
                    report.source,
                    report.kind,
                    report.revision,
                    report.modules,
                    report.rules,
                    report.test_modules,
                    report.data_files,
                    report.entrypoint,
                    report.engine.name()
                );
            }
            Ok(())
        }
        PolicyCommand::Test {
            source,
            run,
            coverage,
            json,
        } => test(&source, run.as_deref(), coverage, json),
        PolicyCommand::Bundle {
            source,
            out,
            revision,
        } => {
            cordon_policy::bundle_from_dir(&source, &out, revision.as_deref())
                .with_context(|| format!("bundling {}", source.display()))?;
            let policy = Policy::load(&out)
                .with_context(|| format!("loading the new bundle {}", out.display()))?;
            println!(
                "bundle {} written, revision {}",
                out.display(),
                policy.revision()
            );
            Ok(())
        }
        PolicyCommand::Eval { source, input } => {
            let policy =
                Policy::load(&source).with_context(|| format!("loading {}", source.display()))?;
            let text = std::fs::read_to_string(&input)
                .with_context(|| format!("reading {}", input.display()))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .with_context(|| format!("{}: not JSON", input.display()))?;
            let decision = policy.decide(&value);
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "revision": policy.revision(),
                    "decision": decision,
                }))?
            );
            Ok(())
        }
        PolicyCommand::Diff {
            old,
            new,
            indicators,
            recipients,
            member,
            channel,
            json,
        } => diff(&old, &new, &indicators, &recipients, &member, channel, json),
        PolicyCommand::Status { connection } => {
            let mut client = policy_client(&connection).await?;
            let status = client
                .status(PolicyStatusRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            println!("{}", serde_json::to_string_pretty(&status)?);
            Ok(())
        }
        PolicyCommand::Reload { connection } => {
            let mut client = policy_client(&connection).await?;
            let response = client
                .reload(ReloadRequest {})
                .await
                .map_err(status_error)?
                .into_inner();
            println!("{}", serde_json::to_string(&response)?);
            if !response.activated && response.message != "unchanged" {
                bail!("policy rejected; {} stays active", response.active_revision);
            }
            Ok(())
        }
    }
}

async fn policy_client(
    connection: &Connection,
) -> Result<PolicyServiceClient<tonic::transport::Channel>> {
    Ok(PolicyServiceClient::new(
        channel(&connection.endpoint, &connection.identity).await?,
    ))
}

fn test(source: &Path, filter: Option<&str>, coverage: bool, json: bool) -> Result<()> {
    let report = cordon_policy::run_tests_with(source, filter, coverage)
        .with_context(|| format!("running the tests of {}", source.display()))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for result in &report.results {
            let verdict = if result.passed { "PASS" } else { "FAIL" };
            println!("{verdict}: {}", result.path());
            if let Some(error) = &result.error {
                println!("    error: {error}");
            }
            for line in &result.output {
                println!("    print: {line}");
            }
        }
        println!(
            "--------------------------------------------------------------------------------"
        );
        println!("PASS: {}/{}", report.passed(), report.results.len());
        if report.failed() > 0 {
            println!("FAIL: {}/{}", report.failed(), report.results.len());
        }
        if let Some(coverage) = &report.coverage {
            println!("coverage: {:.2}%", coverage.percent);
            for file in &coverage.files {
                let missed = if file.not_covered.is_empty() {
                    String::new()
                } else {
                    format!(" (not covered: lines {})", compact_lines(&file.not_covered))
                };
                println!("  {:>6.2}%  {}{missed}", file.percent, file.file);
            }
        }
    }
    if report.results.is_empty() {
        bail!("no tests found in {}", source.display());
    }
    if !report.all_passed() {
        bail!(
            "{} of {} policy tests failed",
            report.failed(),
            report.results.len()
        );
    }
    Ok(())
}

/// `3,4,5,9` -> `3-5, 9`.
fn compact_lines(lines: &[u32]) -> String {
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    for &line in lines {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == line => *end = line,
            _ => ranges.push((line, line)),
        }
    }
    ranges
        .iter()
        .map(|(start, end)| {
            if start == end {
                start.to_string()
            } else {
                format!("{start}-{end}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn read_recipients(path: &Path) -> Result<Vec<Identity>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut recipients = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name = if line.starts_with('{') {
            let value: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{} line {}: not JSON", path.display(), index + 1))?;
            value["id"]
                .as_str()
                .with_context(|| format!("{} line {}: no \"id\"", path.display(), index + 1))?
                .to_string()
        } else {
            line.to_string()
        };
        recipients.push(
            Identity::parse(&name)
                .with_context(|| format!("{} line {}", path.display(), index + 1))?,
        );
    }
    Ok(recipients)
}

#[allow(clippy::too_many_arguments)] // one per command-line option
fn diff(
    old: &Path,
    new: &Path,
    indicators_path: &Path,
    recipients_path: &Path,
    member: &str,
    channel: DiffChannel,
    json: bool,
) -> Result<()> {
    let old_policy = Policy::load(old).with_context(|| format!("loading {}", old.display()))?;
    let new_policy = Policy::load(new).with_context(|| format!("loading {}", new.display()))?;
    let file = std::fs::File::open(indicators_path)
        .with_context(|| format!("opening {}", indicators_path.display()))?;
    let (indicators, lines) = read_indicators(
        std::io::BufReader::new(file),
        &indicators_path.display().to_string(),
    )?;
    let recipients = read_recipients(recipients_path)?;
    let channel = match channel {
        DiffChannel::Subscribe => Channel::Subscribe,
        DiffChannel::Federation => Channel::Federation,
        DiffChannel::Circle => Channel::Circle,
    };
    let now = crate::clock::now_rfc3339();
    let mut old_inputs = Vec::new();
    let mut new_inputs = Vec::new();
    for (indicator, line) in indicators.into_iter().zip(lines) {
        let mut indicator = indicator;
        if indicator.originator.is_empty() {
            indicator.originator = member.to_string();
        }
        let label = if indicator.id.is_empty() {
            format!("line {line}")
        } else {
            indicator.id.clone()
        };
        let indicator_json = serde_json::to_value(&indicator)?;
        for recipient in &recipients {
            // Each policy sees the recipient as its own data describes it.
            for (policy, inputs) in [
                (&old_policy, &mut old_inputs),
                (&new_policy, &mut new_inputs),
            ] {
                inputs.push(DiffInput {
                    indicator: label.clone(),
                    recipient: recipient.to_string(),
                    input: policy.decision_input(
                        indicator_json.clone(),
                        &recipient.to_string(),
                        InputContext {
                            gateway: member,
                            channel,
                            now: &now,
                        },
                    ),
                });
            }
        }
    }
    let report =
        cordon_policy::diff_with_inputs(&old_policy, &new_policy, &old_inputs, &new_inputs);
    let mut stdout = std::io::stdout().lock();
    if json {
        writeln!(stdout, "{}", serde_json::to_string_pretty(&report)?)?;
        return Ok(());
    }
    writeln!(
        stdout,
        "policy diff {} -> {}",
        report.old_revision, report.new_revision
    )?;
    for change in &report.changes {
        writeln!(
            stdout,
            "  {:<18} {} -> {}: allow {} -> {}, redact {:?} -> {:?}",
            format!("{:?}", change.change),
            change.indicator,
            change.recipient,
            change.old.allow,
            change.new.allow,
            change.old.redact,
            change.new.redact
        )?;
        writeln!(stdout, "      was: {}", change.old.reasons.join("; "))?;
        writeln!(stdout, "      now: {}", change.new.reasons.join("; "))?;
    }
    let summary = &report.summary;
    writeln!(
        stdout,
        "summary: {} pairs: {} newly allowed, {} newly denied, {} redaction changes, {} reason-only changes, {} unchanged; failed closed: {} before, {} after",
        summary.pairs,
        summary.newly_allowed,
        summary.newly_denied,
        summary.redaction_changes,
        summary.reason_changes,
        summary.unchanged,
        summary.old_errors,
        summary.new_errors
    )?;
    Ok(())
}

pub async fn decisions(args: DecisionsArgs) -> Result<()> {
    let mut client = policy_client(&args.connection).await?;
    let since = args
        .since
        .as_deref()
        .map(|text| {
            crate::clock::parse_rfc3339(text)
                .with_context(|| format!("--since: {text:?} is not an RFC 3339 time"))
        })
        .transpose()?;
    let gateway = args.connection.endpoint.clone();
    let mut printed: u64 = 0;
    let mut after: Option<(pbjson_types::Timestamp, String)> = None;
    let mut stdout = std::io::stdout().lock();
    loop {
        let remaining = args.limit.map(|limit| limit.saturating_sub(printed));
        if remaining == Some(0) {
            break;
        }
        let page = remaining.unwrap_or(1000).min(1000) as u32;
        let request = DecisionsRequest {
            indicator_id: args.indicator.clone().unwrap_or_default(),
            recipient: args.recipient.clone().unwrap_or_default(),
            since,
            after_decision_id: after.as_ref().map(|(_, id)| id.clone()).unwrap_or_default(),
            after_time: after.as_ref().map(|(at, _)| *at),
            limit: page,
        };
        let decisions = client
            .decisions(request)
            .await
            .map_err(status_error)?
            .into_inner()
            .decisions;
        let count = decisions.len();
        for entry in decisions {
            after = entry.at.map(|at| (at, entry.decision_id.clone()));
            let line = match args.format {
                DecisionFormat::Json => serde_json::to_string(&entry)?,
                DecisionFormat::Opa => {
                    let row = cordon_storage::DecisionRow {
                        decision_id: entry.decision_id,
                        at_micros: entry
                            .at
                            .map(|at| at.seconds * 1_000_000 + i64::from(at.nanos / 1000))
                            .unwrap_or(0),
                        recipient: entry.recipient,
                        indicator_id: entry.indicator_id,
                        channel: entry.channel,
                        policy_revision: entry.policy_revision,
                        allow: entry.allow,
                        redact: entry.redact,
                        reasons: entry.reasons,
                        error: Some(entry.error).filter(|error| !error.is_empty()),
                    };
                    serde_json::to_string(&crate::release::decision_log::opa_decision_log_entry(
                        &row, &gateway,
                    ))?
                }
            };
            writeln!(stdout, "{line}")?;
            printed += 1;
        }
        if count < page as usize {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ranges_are_compact() {
        assert_eq!(compact_lines(&[3, 4, 5, 9, 11, 12]), "3-5, 9, 11-12");
        assert_eq!(compact_lines(&[]), "");
    }
}
