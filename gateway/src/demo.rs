//! `cordon demo`: one gateway (member GH) on a temporary directory, an agency
//! publishing the example indicators, and two recipients of different standing
//! subscribing over mutual TLS; shows what each received, what was withheld and
//! redacted, and why.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use cordon_proto::v1::{Indicator, PublishRequest, SubscribeRequest, event};
use serde::Serialize;

use crate::ca;
use crate::client::indicator_client;
use crate::config::GatewayConfig;
use crate::identity::Identity;
use crate::release::{DecisionSink, MemoryDecisionSink, handling_label};

const EXAMPLES: &str = include_str!("../demo/indicators.jsonl");
const MEMBER: &str = "GH";
const PUBLISHER: &str = "GH/customs";
const RECIPIENTS: [&str; 2] = ["NG", "CI"];

#[derive(Debug, Serialize)]
struct DemoReport {
    gateway: String,
    endpoint: String,
    policy_revision: String,
    publisher: String,
    published: Vec<PublishedItem>,
    recipients: Vec<RecipientReport>,
}

#[derive(Debug, Serialize)]
struct PublishedItem {
    sequence: u64,
    id: String,
    kind: String,
    handling: String,
    protection: String,
    narrative: String,
}

#[derive(Debug, Serialize)]
struct RecipientReport {
    id: String,
    standing: serde_json::Value,
    received: Vec<Outcome>,
    withheld: Vec<Outcome>,
}

#[derive(Debug, Serialize)]
struct Outcome {
    sequence: u64,
    id: String,
    kind: String,
    handling: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    redacted: Vec<String>,
    reasons: Vec<String>,
}

pub async fn run(json: bool) -> Result<()> {
    let directory = tempfile::tempdir().context("creating a temporary directory")?;
    let report = run_in(directory.path()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(())
}

async fn run_in(base: &Path) -> Result<DemoReport> {
    let ca_dir = base.join("ca");
    ca::init_ca(&ca_dir, ca::DEFAULT_FEDERATION)?;
    let identities = base.join("identities");
    for name in [MEMBER, PUBLISHER].into_iter().chain(RECIPIENTS) {
        ca::issue(&ca_dir, name, &identity_path(&identities, name))?;
    }
    let policy_dir = base.join("policy");
    for (relative, contents) in cordon_policy::reference_policy_files() {
        let path = policy_dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, contents)?;
    }
    let gateway_identity = identity_path(&identities, MEMBER);
    crate::signing::generate_signing_key(&gateway_identity.join(crate::signing::SIGNING_KEY_FILE))?;
    let config = GatewayConfig {
        member: MEMBER.into(),
        federation: ca::DEFAULT_FEDERATION.into(),
        listen: "127.0.0.1:0".parse()?,
        database_url: format!("sqlite:{}", base.join("cordon.db").display()),
        policy_dir,
        tls_cert: gateway_identity.join(ca::CERT_FILE),
        tls_key: gateway_identity.join(ca::KEY_FILE),
        tls_ca: gateway_identity.join(ca::CA_CERT_FILE),
        signing_key: gateway_identity.join(crate::signing::SIGNING_KEY_FILE),
        policy_time_limit: std::time::Duration::from_millis(100),
        decision_retention: None,
        watch_policy: false,
    };
    let decisions = Arc::new(MemoryDecisionSink::default());
    let gateway =
        crate::server::start(&config, vec![decisions.clone() as Arc<dyn DecisionSink>]).await?;
    let endpoint = format!("https://{}", gateway.address);
    let policy = gateway.state.releaser.policy();

    let (indicators, _) = crate::cli::read_indicators(EXAMPLES.as_bytes(), "demo indicators")?;
    let mut publisher = indicator_client(&endpoint, &identity_path(&identities, PUBLISHER)).await?;
    let accepted = publisher
        .publish(PublishRequest {
            indicators: indicators.clone(),
        })
        .await
        .map_err(crate::cli::status_error)?
        .into_inner()
        .accepted;
    let mut published = Vec::new();
    let mut by_id: HashMap<String, (u64, Indicator)> = HashMap::new();
    for (accepted, mut indicator) in accepted.into_iter().zip(indicators) {
        indicator.id = accepted.id.clone();
        published.push(PublishedItem {
            sequence: accepted.sequence,
            id: accepted.id.clone(),
            kind: kind_of(&indicator),
            handling: handling_label(&indicator),
            protection: protection_of(&indicator),
            narrative: indicator.narrative.clone(),
        });
        by_id.insert(accepted.id, (accepted.sequence, indicator));
    }

    let mut recipients = Vec::new();
    for name in RECIPIENTS {
        let mut client = indicator_client(&endpoint, &identity_path(&identities, name)).await?;
        let mut stream = client
            .subscribe(SubscribeRequest {
                after: 0,
                follow: false,
                kinds: Vec::new(),
                limit: 0,
            })
            .await
            .map_err(crate::cli::status_error)?
            .into_inner();
        let mut received = Vec::new();
        while let Some(event) = stream.message().await.map_err(crate::cli::status_error)? {
            if let Some(event::Body::Published(published_event)) = event.body {
                let indicator = published_event
                    .indicator
                    .context("published event without an indicator")?;
                for path in &published_event.redacted {
                    if path == "source" && indicator.source.is_some() {
                        bail!("redacted field {path} reached {name}");
                    }
                }
                received.push((event.sequence, indicator, published_event.redacted));
            }
        }
        let records: Vec<_> = decisions
            .records()
            .into_iter()
            .filter(|record| record.recipient == name)
            .collect();
        let reasons_for = |id: &str| {
            records
                .iter()
                .rev()
                .find(|record| record.indicator_id == id)
                .map(|record| record.reasons.clone())
                .unwrap_or_default()
        };
        let mut received_outcomes = Vec::new();
        for (sequence, indicator, redacted) in &received {
            received_outcomes.push(Outcome {
                sequence: *sequence,
                id: indicator.id.clone(),
                kind: kind_of(indicator),
                handling: handling_label(indicator),
                redacted: redacted.clone(),
                reasons: reasons_for(&indicator.id),
            });
        }
        let mut withheld = Vec::new();
        for item in &published {
            if received
                .iter()
                .any(|(_, indicator, _)| indicator.id == item.id)
            {
                continue;
            }
            let (sequence, indicator) = &by_id[&item.id];
            withheld.push(Outcome {
                sequence: *sequence,
                id: item.id.clone(),
                kind: kind_of(indicator),
                handling: handling_label(indicator),
                redacted: Vec::new(),
                reasons: reasons_for(&item.id),
            });
        }
        let standing = policy
            .recipient_data(name)
            .map(|data| serde_json::Value::Object(data.clone()))
            .unwrap_or(serde_json::Value::Null);
        recipients.push(RecipientReport {
            id: name.into(),
            standing,
            received: received_outcomes,
            withheld,
        });
    }
    let report = DemoReport {
        gateway: MEMBER.into(),
        endpoint,
        policy_revision: policy.revision().to_string(),
        publisher: PUBLISHER.into(),
        published,
        recipients,
    };
    gateway.stop().await?;
    Ok(report)
}

fn identity_path(base: &Path, name: &str) -> std::path::PathBuf {
    match Identity::parse(name) {
        Ok(identity) => crate::cli::identity_dir(base, &identity),
        Err(_) => base.join(name),
    }
}

fn kind_of(indicator: &Indicator) -> String {
    cordon_indicator::kind_name(indicator)
        .unwrap_or("none")
        .to_string()
}

fn protection_of(indicator: &Indicator) -> String {
    if indicator.protection == cordon_proto::v1::Protection::SourceProtected as i32 {
        "source-protected".into()
    } else {
        "standard".into()
    }
}

fn print_text(report: &DemoReport) {
    println!(
        "Cordon demo: gateway {} at {} (mutual TLS)",
        report.gateway, report.endpoint
    );
    println!("policy revision {}", report.policy_revision);
    println!();
    println!(
        "{} published {} indicators:",
        report.publisher,
        report.published.len()
    );
    for item in &report.published {
        let protection = if item.protection == "standard" {
            String::new()
        } else {
            format!(", {}", item.protection)
        };
        println!(
            "  #{:<3} {:<19} {:<22} {}",
            item.sequence,
            item.kind,
            format!("{}{protection}", item.handling),
            shorten(&item.narrative, 60)
        );
    }
    for recipient in &report.recipients {
        println!();
        println!(
            "recipient {} ({})",
            recipient.id,
            describe_standing(&recipient.standing)
        );
        println!("  received {}:", recipient.received.len());
        for outcome in &recipient.received {
            let redacted = if outcome.redacted.is_empty() {
                String::new()
            } else {
                format!(" [redacted: {}]", outcome.redacted.join(", "))
            };
            println!(
                "    #{:<3} {:<19} {:<17}{redacted} — {}",
                outcome.sequence,
                outcome.kind,
                outcome.handling,
                outcome.reasons.join("; ")
            );
        }
        println!("  withheld {}:", recipient.withheld.len());
        for outcome in &recipient.withheld {
            println!(
                "    #{:<3} {:<19} {:<17} — {}",
                outcome.sequence,
                outcome.kind,
                outcome.handling,
                outcome.reasons.join("; ")
            );
        }
    }
}

fn describe_standing(standing: &serde_json::Value) -> String {
    match standing.as_object() {
        Some(object) if !object.is_empty() => object
            .iter()
            .map(|(key, value)| {
                format!(
                    "{key}: {}",
                    value
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| value.to_string())
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        _ => "no data in the policy".into(),
    }
}

fn shorten(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(limit).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo end to end: the two recipients must differ, and every
    /// withheld indicator must carry a reason.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn demo_shows_different_outcomes_with_reasons() {
        let directory = tempfile::tempdir().unwrap();
        let report = run_in(directory.path()).await.unwrap();
        assert_eq!(
            report.published.len(),
            EXAMPLES
                .lines()
                .filter(|line| !line.trim().is_empty())
                .count()
        );
        let [partner, low_trust] = &report.recipients[..] else {
            panic!("two recipients")
        };
        assert!(
            partner.received.len() > low_trust.received.len(),
            "NG should receive more than CI"
        );
        for recipient in &report.recipients {
            assert_eq!(
                recipient.received.len() + recipient.withheld.len(),
                report.published.len()
            );
            for outcome in recipient.withheld.iter().chain(&recipient.received) {
                assert!(
                    !outcome.reasons.is_empty(),
                    "{} #{} has no reason",
                    recipient.id,
                    outcome.sequence
                );
            }
            // The source-protected example never leaves on Subscribe.
            assert!(recipient.received.iter().all(|outcome| {
                report
                    .published
                    .iter()
                    .any(|item| item.id == outcome.id && item.protection == "standard")
            }));
        }
        assert!(
            low_trust
                .received
                .iter()
                .any(|outcome| outcome.redacted.contains(&"source".to_string()))
        );
    }
}
