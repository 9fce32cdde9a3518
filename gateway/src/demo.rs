//! `cordon demo`: a federation of three members (GH, NG, SN), each with its own
//! gateway on loopback, its own SQLite file and its own policy. NG follows GH;
//! SN follows GH and NG. GH's customs publishes the example indicators and NG's
//! customs one of its own; the demo waits until every follower has caught up
//! and shows what each member holds (with the originator's verified signature
//! and the gateway it came through), what was withheld from it and why (the
//! third-party rule stopping an AMBER indicator at its first recipient among
//! them), what each member's own agency sees, and a retraction at GH reaching
//! everyone.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cordon_proto::v1::{Indicator, PublishRequest, RetractRequest, SubscribeRequest, event};
use prost::Message;
use serde::Serialize;

use crate::ca;
use crate::client::indicator_client;
use crate::config::{GatewayConfig, PeerConfig};
use crate::identity::Identity;
use crate::release::{DecisionSink, MemoryDecisionSink, handling_label};
use crate::server::RunningGateway;
use crate::signing::{FederationKeys, SigningKey};

const EXAMPLES: &str = include_str!("../demo/indicators.jsonl");
/// The members, in start order: each follows only members started before it.
const MEMBERS: [&str; 3] = ["GH", "NG", "SN"];
const FOLLOWS: [(&str, &[&str]); 3] = [("GH", &[]), ("NG", &["GH"]), ("SN", &["GH", "NG"])];
const AGENCIES: [(&str, &str); 3] = [
    ("GH", "GH/customs"),
    ("NG", "NG/customs"),
    ("SN", "SN/police"),
];
/// How long the demo waits for the federation to settle before it gives up.
const PATIENCE: Duration = Duration::from_secs(30);

#[derive(Debug, Serialize)]
struct DemoReport {
    gateways: Vec<GatewayInfo>,
    published: Vec<PublishedItem>,
    members: Vec<MemberReport>,
    third_party_rule: Option<ThirdParty>,
    retraction: RetractionReport,
}

#[derive(Debug, Serialize)]
struct GatewayInfo {
    member: String,
    endpoint: String,
    policy_revision: String,
    follows: Vec<String>,
    database: String,
}

#[derive(Debug, Serialize, Clone)]
struct PublishedItem {
    id: String,
    originator: String,
    publisher: String,
    kind: String,
    handling: String,
    protection: String,
    narrative: String,
}

#[derive(Debug, Serialize)]
struct MemberReport {
    member: String,
    /// Indicators of other members this gateway holds.
    received: Vec<Held>,
    /// Indicators of other members it does not hold, with the reasons of
    /// every gateway it follows.
    withheld: Vec<Withheld>,
    /// The member's own agency: how many indicators its gateway released to it.
    agency: String,
    agency_received: usize,
}

#[derive(Debug, Serialize)]
struct Held {
    id: String,
    kind: String,
    handling: String,
    originator: String,
    /// The peer gateway it was stored from (the first path that brought it).
    via: String,
    /// The originator's signature, checked here again against the federation's keys.
    signature_verified: bool,
}

#[derive(Debug, Serialize)]
struct Withheld {
    id: String,
    kind: String,
    handling: String,
    originator: String,
    /// Per gateway followed: why it did not release the indicator.
    reasons: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Serialize)]
struct ThirdParty {
    id: String,
    handling: String,
    originator: String,
    reached: String,
    stopped_at: String,
    not_passed_to: String,
    reason: String,
}

#[derive(Debug, Serialize)]
struct RetractionReport {
    id: String,
    narrative: String,
    /// Member -> whether its gateway now marks the indicator retracted.
    retracted_at: BTreeMap<String, bool>,
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

/// One member's running gateway and what the demo keeps of it.
struct Member {
    id: &'static str,
    gateway: RunningGateway,
    endpoint: String,
    decisions: Arc<MemoryDecisionSink>,
    database: String,
}

/// The demo policy data of each member: the reference data, with the other
/// members of the demo as recipients.
fn member_data(member: &str) -> Result<String> {
    let reference = cordon_policy::reference_policy_files()
        .into_iter()
        .find(|(path, _)| *path == "data.json")
        .context("reference data.json")?
        .1;
    let mut data: serde_json::Value = serde_json::from_str(reference)?;
    let recipients = data["recipients"]
        .as_object_mut()
        .context("reference data has recipients")?;
    let standing = |name: &str, country: &str, trust: u32| serde_json::json!({"name": name, "kind": "member", "country": country, "trust": trust});
    let (ghana, nigeria, senegal) = (
        standing("Ghana national focal point", "GH", 4),
        standing("Nigeria national focal point", "NG", 4),
        standing("Senegal national focal point", "SN", 3),
    );
    for (id, entry) in [("GH", ghana), ("NG", nigeria), ("SN", senegal)] {
        if id != member {
            recipients.insert(id.into(), entry);
        }
    }
    if member != "GH" {
        // Only GH has a bilateral AMBER agreement (with NG).
        data["agreements"] = serde_json::json!({});
    }
    Ok(serde_json::to_string_pretty(&data)?)
}

async fn start_member(
    base: &Path,
    ca_dir: &Path,
    id: &'static str,
    keys: &FederationKeys,
    peers: Vec<PeerConfig>,
) -> Result<Member> {
    let dir = base.join(id);
    let identity = dir.join("identity");
    ca::issue(ca_dir, id, &identity)?;
    let policy_dir = dir.join("policy");
    for (relative, contents) in cordon_policy::reference_policy_files() {
        let path = policy_dir.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        if relative == "data.json" {
            std::fs::write(&path, member_data(id)?)?;
        } else {
            std::fs::write(&path, contents)?;
        }
    }
    let database = dir.join("cordon.db");
    let config = GatewayConfig {
        member: id.into(),
        federation: ca::DEFAULT_FEDERATION.into(),
        listen: "127.0.0.1:0".parse()?,
        database_url: format!("sqlite:{}", database.display()),
        policy_dir,
        tls_cert: identity.join(ca::CERT_FILE),
        tls_key: identity.join(ca::KEY_FILE),
        tls_ca: identity.join(ca::CA_CERT_FILE),
        signing_key: identity.join(crate::signing::SIGNING_KEY_FILE),
        policy_time_limit: Duration::from_millis(100),
        decision_retention: None,
        watch_policy: false,
        federation_keys: keys.clone(),
        peers,
        admin_listen: None,
    };
    let decisions = Arc::new(MemoryDecisionSink::default());
    let gateway =
        crate::server::start(&config, vec![decisions.clone() as Arc<dyn DecisionSink>]).await?;
    let endpoint = format!("https://{}", gateway.address);
    Ok(Member {
        id,
        gateway,
        endpoint,
        decisions,
        database: database.display().to_string(),
    })
}

/// Polls `condition` until it holds or [`PATIENCE`] runs out.
async fn wait_for<F, Fut>(what: &str, mut condition: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition().await? {
        if tokio::time::Instant::now() >= deadline {
            bail!("the demo federation did not settle: {what} after {PATIENCE:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Every follower connected with its cursor at its peer's current head.
async fn settled(members: &[Member]) -> Result<bool> {
    for member in members {
        for tracker in &member.gateway.federation.trackers {
            let status = tracker.status();
            let peer = members
                .iter()
                .find(|other| other.id == status.id)
                .context("peer among the demo members")?;
            let head = peer.gateway.state.store.head().await?;
            if status.state != "connected" || status.cursor < head {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

async fn run_in(base: &Path) -> Result<DemoReport> {
    let ca_dir = base.join("ca");
    ca::init_ca(&ca_dir, ca::DEFAULT_FEDERATION)?;
    // Every member's signing key is federation data that every member holds.
    let mut keys = FederationKeys::default();
    for id in MEMBERS {
        let path = base
            .join(id)
            .join("identity")
            .join(crate::signing::SIGNING_KEY_FILE);
        std::fs::create_dir_all(path.parent().context("identity directory")?)?;
        crate::signing::generate_signing_key(&path)?;
        keys.insert(id, SigningKey::load(&path, id)?.public_key().to_vec());
    }
    let agencies = base.join("agencies");
    for (_, agency) in AGENCIES {
        ca::issue(&ca_dir, agency, &agency_dir(&agencies, agency)?)?;
    }

    let mut members: Vec<Member> = Vec::new();
    for (id, follows) in FOLLOWS {
        let peers = follows
            .iter()
            .map(|peer| {
                let endpoint = &members
                    .iter()
                    .find(|member| member.id == *peer)
                    .context("peers start first")?
                    .endpoint;
                let authority = endpoint.trim_start_matches("https://").to_string();
                Ok(PeerConfig {
                    id: (*peer).into(),
                    endpoint: endpoint.clone(),
                    host: "127.0.0.1".into(),
                    authority,
                    follow: true,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        members.push(start_member(base, &ca_dir, id, &keys, peers).await?);
    }
    let result = exercise(&members, &agencies, &keys).await;
    for member in members {
        member.gateway.stop().await?;
    }
    result
}

async fn exercise(
    members: &[Member],
    agencies: &Path,
    keys: &FederationKeys,
) -> Result<DemoReport> {
    let member = |id: &str| {
        members
            .iter()
            .find(|member| member.id == id)
            .context(id.to_string())
    };
    let ghana = member("GH")?;
    let nigeria = member("NG")?;

    // GH publishes the examples; NG publishes one indicator of its own.
    let (indicators, _) = crate::cli::read_indicators(EXAMPLES.as_bytes(), "demo indicators")?;
    let mut published = publish(ghana, agencies, "GH/customs", indicators).await?;
    let (own, _) = crate::cli::read_indicators(
        r#"{"tlp":"TLP_GREEN","severity":"SEVERITY_MEDIUM","confidence":60,"validFrom":"2026-11-20T00:00:00Z","narrative":"Vessel loitering off Lagos with its AIS off; same IMO as a 2025 seizure.","vessel":{"imo":"9074729","name":"OCEAN TRADER"}}"#.as_bytes(),
        "NG's indicator",
    )?;
    published.extend(publish(nigeria, agencies, "NG/customs", own).await?);

    wait_for("followers catching up", || settled(members)).await?;

    let mut reports = Vec::new();
    for member in members {
        reports.push(member_report(member, members, &published, agencies, keys).await?);
    }
    let third_party_rule = third_party(&published, members);

    // GH retracts its first GREEN example; the retraction follows the indicator.
    let retracted = published
        .iter()
        .find(|item| item.originator == "GH" && item.handling == "TLP:GREEN")
        .context("a GREEN example")?
        .clone();
    let mut client =
        indicator_client(&ghana.endpoint, &agency_dir(agencies, "GH/customs")?).await?;
    client
        .retract(RetractRequest {
            id: retracted.id.clone(),
            reason: "the consignment was cleared on inspection".into(),
        })
        .await
        .map_err(crate::cli::status_error)?;
    wait_for("the retraction reaching every holder", || async {
        for member in members {
            match member.gateway.state.store.indicator(&retracted.id).await? {
                Some(held) if !held.retracted => return Ok(false),
                _ => {}
            }
        }
        settled(members).await
    })
    .await?;
    let mut retracted_at = BTreeMap::new();
    for member in members {
        let held = member.gateway.state.store.indicator(&retracted.id).await?;
        retracted_at.insert(
            member.id.to_string(),
            held.is_some_and(|held| held.retracted),
        );
    }

    let mut gateways = Vec::new();
    for (member, (_, follows)) in members.iter().zip(FOLLOWS) {
        gateways.push(GatewayInfo {
            member: member.id.into(),
            endpoint: member.endpoint.clone(),
            policy_revision: member
                .gateway
                .state
                .releaser
                .policy()
                .revision()
                .to_string(),
            follows: follows.iter().map(|peer| peer.to_string()).collect(),
            database: member.database.clone(),
        });
    }
    Ok(DemoReport {
        gateways,
        published,
        members: reports,
        third_party_rule,
        retraction: RetractionReport {
            id: retracted.id,
            narrative: retracted.narrative,
            retracted_at,
        },
    })
}

async fn publish(
    member: &Member,
    agencies: &Path,
    agency: &str,
    indicators: Vec<Indicator>,
) -> Result<Vec<PublishedItem>> {
    let mut client = indicator_client(&member.endpoint, &agency_dir(agencies, agency)?).await?;
    let accepted = client
        .publish(PublishRequest {
            indicators: indicators.clone(),
            ..Default::default()
        })
        .await
        .map_err(crate::cli::status_error)?
        .into_inner()
        .accepted;
    Ok(accepted
        .into_iter()
        .zip(indicators)
        .map(|(accepted, indicator)| PublishedItem {
            id: accepted.id,
            originator: member.id.into(),
            publisher: agency.into(),
            kind: kind_of(&indicator),
            handling: handling_label(&indicator),
            protection: protection_of(&indicator),
            narrative: indicator.narrative.clone(),
        })
        .collect())
}

async fn member_report(
    member: &Member,
    members: &[Member],
    published: &[PublishedItem],
    agencies: &Path,
    keys: &FederationKeys,
) -> Result<MemberReport> {
    let store = &member.gateway.state.store;
    let mut received = Vec::new();
    let mut withheld = Vec::new();
    let followed: Vec<&Member> = FOLLOWS
        .iter()
        .find(|(id, _)| *id == member.id)
        .map(|(_, follows)| {
            members
                .iter()
                .filter(|other| follows.contains(&other.id))
                .collect()
        })
        .unwrap_or_default();
    for item in published.iter().filter(|item| item.originator != member.id) {
        match store.indicator(&item.id).await? {
            Some(held) => {
                let indicator = Indicator::decode(held.payload.as_slice())?;
                received.push(Held {
                    id: item.id.clone(),
                    kind: item.kind.clone(),
                    handling: item.handling.clone(),
                    originator: held.originator.clone(),
                    via: held.via.clone().unwrap_or_default(),
                    signature_verified: keys.verify_indicator(&indicator).is_ok(),
                });
            }
            // A member that follows no one holds only its own indicators.
            None if followed.is_empty() => {}
            None => {
                let mut reasons = BTreeMap::new();
                for peer in &followed {
                    let said: Vec<String> = peer
                        .decisions
                        .records()
                        .into_iter()
                        .rev()
                        .find(|record| {
                            record.recipient == member.id && record.indicator_id == item.id
                        })
                        .map(|record| record.reasons)
                        .unwrap_or_else(|| vec![format!("{} does not hold it", peer.id)]);
                    reasons.insert(peer.id.to_string(), said);
                }
                withheld.push(Withheld {
                    id: item.id.clone(),
                    kind: item.kind.clone(),
                    handling: item.handling.clone(),
                    originator: item.originator.clone(),
                    reasons,
                });
            }
        }
    }
    let agency = AGENCIES
        .iter()
        .find(|(id, _)| *id == member.id)
        .map(|(_, agency)| *agency)
        .context("agency of the member")?;
    let agency_received = agency_view(&member.endpoint, &agency_dir(agencies, agency)?).await?;
    Ok(MemberReport {
        member: member.id.into(),
        received,
        withheld,
        agency: agency.into(),
        agency_received,
    })
}

/// How many indicators the gateway at `endpoint` releases to the agency.
async fn agency_view(endpoint: &str, identity: &Path) -> Result<usize> {
    let mut client = indicator_client(endpoint, identity).await?;
    let mut stream = client
        .subscribe(SubscribeRequest::default())
        .await
        .map_err(crate::cli::status_error)?
        .into_inner();
    let mut count = 0;
    while let Some(event) = stream.message().await.map_err(crate::cli::status_error)? {
        if matches!(event.body, Some(event::Body::Published(_))) {
            count += 1;
        }
    }
    Ok(count)
}

/// An AMBER indicator that NG received from GH and did not pass on to SN, with
/// NG's reason.
fn third_party(published: &[PublishedItem], members: &[Member]) -> Option<ThirdParty> {
    let nigeria = members.iter().find(|member| member.id == "NG")?;
    let records = nigeria.decisions.records();
    published
        .iter()
        .filter(|item| item.originator == "GH" && item.handling.starts_with("TLP:AMBER"))
        .find_map(|item| {
            let record = records.iter().find(|record| {
                record.recipient == "SN"
                    && record.indicator_id == item.id
                    && !record.allow
                    && record
                        .reasons
                        .iter()
                        .any(|reason| reason.contains("third-party"))
            })?;
            Some(ThirdParty {
                id: item.id.clone(),
                handling: item.handling.clone(),
                originator: item.originator.clone(),
                reached: "NG".into(),
                stopped_at: "NG".into(),
                not_passed_to: "SN".into(),
                reason: record.reasons.join("; "),
            })
        })
}

fn agency_dir(base: &Path, name: &str) -> Result<PathBuf> {
    Ok(crate::cli::identity_dir(base, &Identity::parse(name)?))
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
    println!("Cordon demo: a federation of three gateways on loopback (mutual TLS)");
    for gateway in &report.gateways {
        let follows = if gateway.follows.is_empty() {
            "follows no one".to_string()
        } else {
            format!("follows {}", gateway.follows.join(" and "))
        };
        println!(
            "  {} at {}, {follows}, policy {}",
            gateway.member,
            gateway.endpoint,
            shorten(&gateway.policy_revision, 19)
        );
    }
    println!();
    println!("published:");
    let labels: HashMap<&str, usize> = report
        .published
        .iter()
        .enumerate()
        .map(|(index, item)| (item.id.as_str(), index + 1))
        .collect();
    for (index, item) in report.published.iter().enumerate() {
        let protection = if item.protection == "standard" {
            String::new()
        } else {
            format!(", {}", item.protection)
        };
        println!(
            "  [{:>2}] {:<11} {:<19} {:<28} {}",
            index + 1,
            item.publisher,
            item.kind,
            format!("{}{protection}", item.handling),
            shorten(&item.narrative, 50)
        );
    }
    for member in &report.members {
        println!();
        println!(
            "{}: holds {} indicators of other members; its agency {} sees {}",
            member.member,
            member.received.len(),
            member.agency,
            member.agency_received
        );
        for held in &member.received {
            println!(
                "  received [{:>2}] {:<19} {:<28} from {} via {}, signature {}",
                labels.get(held.id.as_str()).copied().unwrap_or(0),
                held.kind,
                held.handling,
                held.originator,
                held.via,
                if held.signature_verified {
                    "verified"
                } else {
                    "NOT VERIFIED"
                }
            );
        }
        for item in &member.withheld {
            let reasons: Vec<String> = item
                .reasons
                .iter()
                .map(|(gateway, reasons)| format!("{gateway}: {}", reasons.join("; ")))
                .collect();
            println!(
                "  withheld [{:>2}] {:<19} {:<28} — {}",
                labels.get(item.id.as_str()).copied().unwrap_or(0),
                item.kind,
                item.handling,
                reasons.join(" | ")
            );
        }
    }
    println!();
    match &report.third_party_rule {
        Some(rule) => println!(
            "third-party rule: [{}] {} from {} reached {} and stopped there: {}",
            labels.get(rule.id.as_str()).copied().unwrap_or(0),
            rule.handling,
            rule.originator,
            rule.reached,
            rule.reason
        ),
        None => println!("third-party rule: no AMBER indicator reached NG"),
    }
    let reached: Vec<String> = report
        .retraction
        .retracted_at
        .iter()
        .map(|(member, retracted)| {
            format!(
                "{member} {}",
                if *retracted {
                    "retracted"
                } else {
                    "NOT retracted"
                }
            )
        })
        .collect();
    println!(
        "retraction: GH withdrew [{}] \"{}\": {}",
        labels
            .get(report.retraction.id.as_str())
            .copied()
            .unwrap_or(0),
        shorten(&report.retraction.narrative, 40),
        reached.join(", ")
    );
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

    /// The demo end to end: GREEN reaches everyone with a verified signature,
    /// AMBER stops at NG, source-protected never leaves GH, every withheld
    /// indicator has reasons, and the retraction reaches every holder.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn demo_federation_shares_withholds_and_retracts() {
        let directory = tempfile::tempdir().unwrap();
        let report = run_in(directory.path()).await.unwrap();
        let examples = EXAMPLES
            .lines()
            .filter(|line| !line.trim().is_empty())
            .count();
        assert_eq!(report.published.len(), examples + 1);
        let member = |id: &str| {
            report
                .members
                .iter()
                .find(|member| member.member == id)
                .unwrap()
        };
        let (ghana, nigeria, senegal) = (member("GH"), member("NG"), member("SN"));
        assert!(nigeria.received.len() > senegal.received.len());
        for member in &report.members {
            assert!(member.received.iter().all(|held| held.signature_verified));
            for item in &member.withheld {
                assert!(
                    item.reasons.values().all(|reasons| !reasons.is_empty()),
                    "{} {} has no reason",
                    member.member,
                    item.id
                );
            }
            // Source-protected intelligence is held by its originator only.
            assert!(member.received.iter().all(|held| {
                report
                    .published
                    .iter()
                    .any(|item| item.id == held.id && item.protection == "standard")
            }));
        }
        // GH receives NG's own indicator; SN has it too, relayed or direct.
        assert_eq!(ghana.received.len(), 0, "GH follows no one");
        assert!(senegal.received.iter().any(|held| held.originator == "NG"));
        // GREEN from GH reached SN; AMBER from GH reached NG and stopped there.
        assert!(
            senegal
                .received
                .iter()
                .any(|held| held.handling == "TLP:GREEN" && held.originator == "GH")
        );
        assert!(
            senegal
                .received
                .iter()
                .all(|held| !held.handling.starts_with("TLP:AMBER"))
        );
        let rule = report
            .third_party_rule
            .as_ref()
            .expect("an AMBER indicator stopped at NG");
        assert!(nigeria.received.iter().any(|held| held.id == rule.id));
        assert!(senegal.withheld.iter().any(|item| item.id == rule.id));
        assert!(rule.reason.contains("third-party"), "{}", rule.reason);
        assert_eq!(report.retraction.retracted_at.len(), 3);
        assert!(
            report
                .retraction
                .retracted_at
                .values()
                .all(|retracted| *retracted)
        );
    }
}
