//! `cordon demo`: a federation of three members (GH, NG, SN), each with its own
//! gateway on loopback, its own SQLite file and its own policy. GH and NG follow each other;
//! SN follows GH and NG. GH's customs publishes the example indicators and NG's
//! customs one of its own; the demo waits until every follower has caught up
//! and shows what each member holds (with the originator's verified signature
//! and the gateway it came through), what was withheld from it and why (the
//! third-party rule stopping an AMBER indicator at its first recipient among
//! them), what each member's own agency sees, and a retraction at GH reaching
//! everyone. Then a circle: GH creates an MLS circle, adds NG and publishes a
//! source-protected indicator into it; NG's gateway decrypts it and NG's agency
//! sees it, while SN (which follows both GH and NG) never does; GH removes NG
//! and publishes again, and NG receives nothing new.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cordon_proto::v1::circle_service_client::CircleServiceClient;
use cordon_proto::v1::{
    AddMemberRequest, CircleInfo, CreateCircleRequest, Indicator, ListCirclesRequest,
    PublishRequest, RemoveMemberRequest, RetractRequest, SubscribeRequest, event,
};
use prost::Message;
use serde::Serialize;
use tokio::net::TcpListener;
use tonic::transport::Channel;

use crate::cli::ca;
use crate::cli::client::indicator_client;
use crate::config::{GatewayConfig, PeerConfig};
use crate::identity::Identity;
use crate::release::{DecisionSink, MemoryDecisionSink, handling_label};
use crate::server::RunningGateway;
use crate::signing::{FederationKeys, SigningKey};

const EXAMPLES: &str = include_str!("../../../demo/indicators.jsonl");
/// The two source-protected indicators published into the circle; `{ref}` becomes a
/// marker unique to the run, looked for in every member's feed and database file.
const CIRCLE_EXAMPLES: &str = include_str!("../../../demo/circle.jsonl");
/// The members, in start order. Every listener is bound before any gateway starts, so a
/// member may follow one started after it (GH follows NG).
const MEMBERS: [&str; 3] = ["GH", "NG", "SN"];
const FOLLOWS: [(&str, &[&str]); 3] = [("GH", &["NG"]), ("NG", &["GH"]), ("SN", &["GH", "NG"])];
const AGENCIES: [(&str, &str); 3] = [
    ("GH", "GH/customs"),
    ("NG", "NG/customs"),
    ("SN", "SN/police"),
];
/// The demo circle: its hub, the member the hub adds (and later removes), and the
/// member left outside it.
const CIRCLE: &str = "gulf-of-guinea";
const CIRCLE_HUB: &str = "GH";
const CIRCLE_MEMBER: &str = "NG";
const OUTSIDER: &str = "SN";
/// How long the demo waits for the federation to settle before it gives up.
const PATIENCE: Duration = Duration::from_secs(30);

mod audit;
mod circle;
use circle::circle_part;
mod report;
mod screening;
use report::print_text;
use screening::{ScreeningReport, print_screening, screening_part};
#[cfg(test)]
mod tests;

#[derive(Debug, Serialize)]
struct DemoReport {
    gateways: Vec<GatewayInfo>,
    published: Vec<PublishedItem>,
    members: Vec<MemberReport>,
    third_party_rule: Option<ThirdParty>,
    retraction: RetractionReport,
    screening: ScreeningReport,
    circle: CircleReport,
    /// Each gateway's audit log: its checkpoint, verified with the gateway's public key, and
    /// every entry checked against it.
    audit: Vec<AuditReport>,
}

#[derive(Debug, Serialize)]
struct AuditReport {
    member: String,
    origin: String,
    size: u64,
    /// Base64 root hash.
    root: String,
    /// The signed note.
    checkpoint: String,
    /// Whether the checkpoint's signature verified with the member's public key.
    signature_verified: bool,
    /// Entries whose inclusion proof verified against the checkpoint's root.
    entries_verified: u64,
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
    /// Fields withheld from this member's copy (by path; the signature still covers them).
    withheld_fields: Vec<String>,
    /// Whether the member's own agency received it, and with which fields withheld.
    agency_received: bool,
    agency_told_withheld: Vec<String>,
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

#[derive(Debug, Serialize)]
struct CircleReport {
    name: String,
    hub: String,
    /// The circle's members after the hub added NG.
    members: Vec<String>,
    /// The member left outside the circle (it follows the feeds of both members).
    outsider: String,
    /// The member the hub removed, and the circle's members after that.
    removed: String,
    members_after_removal: Vec<String>,
    /// The hub's log position of the commit that removed it.
    removed_at_position: u64,
    /// [0] published while NG was a member, [1] after its removal.
    items: Vec<CircleItem>,
    /// Per gateway that followed the outsider's feed: why it did not release [0] to it.
    withheld_from_outsider: BTreeMap<String, Vec<String>>,
    /// What each member's gateway, agency and database file hold of the items.
    views: Vec<CircleView>,
}

#[derive(Debug, Serialize)]
struct CircleItem {
    id: String,
    publisher: String,
    kind: String,
    handling: String,
    protection: String,
    narrative: String,
    /// A string unique to this run, inside the narrative.
    marker: String,
    /// The circle's members other than the hub when it was published.
    sent_to: Vec<String>,
}

#[derive(Debug, Serialize)]
struct CircleView {
    member: String,
    /// The circle as this gateway sees it: "active", "removed", or "not a member".
    status: String,
    /// Entries of the hub's log this gateway holds (the hub: all of them).
    position: u64,
    agency: String,
    items: Vec<CircleSighting>,
}

#[derive(Debug, Serialize)]
struct CircleSighting {
    id: String,
    /// The gateway holds it, and from whom (None: published here).
    gateway_holds: bool,
    via: Option<String>,
    /// The originator's signature, checked here again (false when not held).
    signature_verified: bool,
    /// The member's agency receives it from its gateway.
    agency_sees: bool,
    /// The marker is in the member's database file (and its WAL) after the gateway stopped.
    in_database_file: Option<bool>,
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
    /// The gateway's own identity (for circle administration).
    identity: PathBuf,
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
    // GH's board trusts NG below the source threshold (3): GH shares its indicators with NG
    // with `source` withheld, and NG still verifies GH's signature over the rest.
    let nigeria_trust = if member == "GH" { 2 } else { 4 };
    let (ghana, nigeria, senegal) = (
        standing("Ghana national focal point", "GH", 4),
        standing("Nigeria national focal point", "NG", nigeria_trust),
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
    listener: TcpListener,
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
        listen: listener.local_addr()?,
        database_url: format!("sqlite:{}", database.display()),
        policy_dir,
        tls_cert: identity.join(ca::CERT_FILE),
        tls_key: identity.join(ca::KEY_FILE),
        tls_ca: identity.join(ca::CA_CERT_FILE),
        tls_crl: None,
        signing_key: identity.join(crate::signing::SIGNING_KEY_FILE),
        policy_time_limit: Duration::from_millis(100),
        decision_retention: None,
        watch_policy: false,
        federation_keys: keys.clone(),
        peers,
        watch_for: Duration::from_secs(90 * 86_400),
        administrators: Default::default(),
        rate_limits: Default::default(),
        suspended: Default::default(),
        oversight_suppress_below: 5,
        admin_listen: None,
        taxii_listen: None,
        members: Vec::new(),
    };
    let decisions = Arc::new(MemoryDecisionSink::default());
    let gateway = crate::server::start_on(
        &config,
        listener,
        vec![decisions.clone() as Arc<dyn DecisionSink>],
    )
    .await?;
    let endpoint = format!("https://{}", gateway.address);
    Ok(Member {
        id,
        gateway,
        endpoint,
        identity,
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

    // Every listener is bound before any gateway starts, so that each gateway's peers
    // can name the others: the circle's hub (GH) needs the endpoint of NG, which starts
    // after it, and NG follows GH.
    let mut listeners = HashMap::new();
    for id in MEMBERS {
        listeners.insert(id, TcpListener::bind("127.0.0.1:0").await?);
    }
    let mut endpoints = HashMap::new();
    for (id, listener) in &listeners {
        endpoints.insert(*id, format!("https://{}", listener.local_addr()?));
    }
    let peer = |id: &str, follow: bool| -> Result<PeerConfig> {
        let endpoint = endpoints.get(id).context("a demo member")?.clone();
        let authority = endpoint.trim_start_matches("https://").to_string();
        Ok(PeerConfig {
            id: id.into(),
            endpoint,
            host: "127.0.0.1".into(),
            authority,
            follow,
        })
    };
    let mut members: Vec<Member> = Vec::new();
    for (id, follows) in FOLLOWS {
        let mut peers = follows
            .iter()
            .map(|followed| peer(followed, true))
            .collect::<Result<Vec<_>>>()?;
        // The circle's hub and member reach each other's gateways through [[peers]];
        // a peer not otherwise followed is listed with `follow = false`.
        let circle_partner = match id {
            CIRCLE_HUB => Some(CIRCLE_MEMBER),
            CIRCLE_MEMBER => Some(CIRCLE_HUB),
            _ => None,
        };
        if let Some(partner) = circle_partner.filter(|partner| !follows.contains(partner)) {
            peers.push(peer(partner, false)?);
        }
        let listener = listeners.remove(id).context("a listener per member")?;
        members.push(start_member(base, &ca_dir, id, &keys, listener, peers).await?);
    }
    let result = exercise(&members, &agencies, &keys).await;
    let databases: Vec<(&str, PathBuf)> = members
        .iter()
        .map(|member| (member.id, PathBuf::from(&member.database)))
        .collect();
    for member in members {
        member.gateway.stop().await?;
    }
    let mut report = result?;
    // With every gateway stopped: is a circle marker anywhere in a member's database?
    for view in &mut report.circle.views {
        let path = databases
            .iter()
            .find(|(id, _)| *id == view.member)
            .map(|(_, path)| path)
            .context("database of the member")?;
        for (sighting, item) in view.items.iter_mut().zip(&report.circle.items) {
            sighting.in_database_file = Some(file_contains(path, &item.marker)?);
        }
    }
    Ok(report)
}

/// Whether `marker` is in the SQLite database at `path` or its write-ahead log.
fn file_contains(path: &Path, marker: &str) -> Result<bool> {
    let mut found = false;
    for suffix in ["", "-wal"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::read(&file) {
            Ok(bytes) => {
                found |= bytes
                    .windows(marker.len())
                    .any(|window| window == marker.as_bytes());
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error).context(format!("reading {}", file.display())),
        }
    }
    Ok(found)
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

    let screening = screening_part(members, agencies, &published).await?;
    let circle = circle_part(members, agencies, keys).await?;
    let mut audit = Vec::new();
    for member in members {
        audit.push(audit::audit_part(member, keys).await?);
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
        screening,
        circle,
        audit,
    })
}

fn agency_of(member: &str) -> Result<&'static str> {
    AGENCIES
        .iter()
        .find(|(id, _)| *id == member)
        .map(|(_, agency)| *agency)
        .context("agency of the member")
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
    let agency = agency_of(member.id)?;
    let agency_saw = agency_feed(&member.endpoint, &agency_dir(agencies, agency)?).await?;
    for item in published.iter().filter(|item| item.originator != member.id) {
        match store.indicator(&item.id).await? {
            Some(held) => {
                let indicator = Indicator::decode(held.payload.as_slice())?;
                let at_agency = agency_saw
                    .iter()
                    .find(|(seen, _)| seen.id == item.id && keys.verify_indicator(seen).is_ok());
                received.push(Held {
                    id: item.id.clone(),
                    kind: item.kind.clone(),
                    handling: item.handling.clone(),
                    originator: held.originator.clone(),
                    via: held.via.clone().unwrap_or_default(),
                    signature_verified: keys.verify_indicator(&indicator).is_ok(),
                    withheld_fields: cordon_indicator::disclosure::withheld_paths(&indicator),
                    agency_received: at_agency.is_some(),
                    agency_told_withheld: at_agency
                        .map(|(_, withheld)| withheld.clone())
                        .unwrap_or_default(),
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
    let agency_received = agency_saw.len();
    Ok(MemberReport {
        member: member.id.into(),
        received,
        withheld,
        agency: agency.into(),
        agency_received,
    })
}

/// The indicators the gateway at `endpoint` releases to the agency.
/// What an agency receives: each indicator with the paths it is told were withheld.
async fn agency_feed(endpoint: &str, identity: &Path) -> Result<Vec<(Indicator, Vec<String>)>> {
    let mut client = indicator_client(endpoint, identity).await?;
    let mut stream = client
        .subscribe(SubscribeRequest::default())
        .await
        .map_err(crate::cli::status_error)?
        .into_inner();
    let mut indicators = Vec::new();
    while let Some(event) = stream.message().await.map_err(crate::cli::status_error)? {
        if let Some(event::Body::Published(published)) = event.body
            && let Some(indicator) = published.indicator
        {
            indicators.push((indicator, published.redacted));
        }
    }
    Ok(indicators)
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
