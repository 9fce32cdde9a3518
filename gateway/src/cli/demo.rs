//! `cordon demo`: a federation of three members (GH, NG, SN), each with its own
//! gateway on loopback, its own SQLite file and its own policy. NG follows GH;
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

const EXAMPLES: &str = include_str!("../../demo/indicators.jsonl");
/// The two source-protected indicators published into the circle; `{ref}` becomes a
/// marker unique to the run, looked for in every member's feed and database file.
const CIRCLE_EXAMPLES: &str = include_str!("../../demo/circle.jsonl");
/// The members, in start order: each follows only members started before it.
const MEMBERS: [&str; 3] = ["GH", "NG", "SN"];
const FOLLOWS: [(&str, &[&str]); 3] = [("GH", &[]), ("NG", &["GH"]), ("SN", &["GH", "NG"])];
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

#[derive(Debug, Serialize)]
struct DemoReport {
    gateways: Vec<GatewayInfo>,
    published: Vec<PublishedItem>,
    members: Vec<MemberReport>,
    third_party_rule: Option<ThirdParty>,
    retraction: RetractionReport,
    circle: CircleReport,
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
        signing_key: identity.join(crate::signing::SIGNING_KEY_FILE),
        policy_time_limit: Duration::from_millis(100),
        decision_retention: None,
        watch_policy: false,
        federation_keys: keys.clone(),
        peers,
        admin_listen: None,
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

    let circle = circle_part(members, agencies, keys).await?;

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
        circle,
    })
}

/// GH creates the circle and adds NG; GH/customs publishes a source-protected indicator
/// into it; NG's gateway decrypts it and NG/customs sees it; SN, which follows both GH's
/// and NG's feeds, holds nothing of it. GH removes NG and publishes a second one: NG
/// receives nothing new.
async fn circle_part(
    members: &[Member],
    agencies: &Path,
    keys: &FederationKeys,
) -> Result<CircleReport> {
    let member = |id: &str| {
        members
            .iter()
            .find(|member| member.id == id)
            .context(id.to_string())
    };
    let (hub, joining) = (member(CIRCLE_HUB)?, member(CIRCLE_MEMBER)?);
    let publisher = agency_of(CIRCLE_HUB)?;
    let (indicators, _) =
        crate::cli::read_indicators(CIRCLE_EXAMPLES.as_bytes(), "circle indicators")?;
    let [first, second]: [Indicator; 2] = indicators
        .try_into()
        .map_err(|_| anyhow::anyhow!("demo/circle.jsonl holds two indicators"))?;

    // Administration is for the hub's own gateway identity, over the Circles API.
    let mut admin = circle_client(hub).await?;
    admin
        .create(CreateCircleRequest {
            name: CIRCLE.into(),
        })
        .await
        .map_err(crate::cli::status_error)?;
    // The hub fetches NG's KeyPackage, commits the add and hands NG its Welcome before
    // it answers: NG is a member when this returns.
    let added = admin
        .add(AddMemberRequest {
            circle: CIRCLE.into(),
            member: CIRCLE_MEMBER.into(),
        })
        .await
        .map_err(crate::cli::status_error)?
        .into_inner();
    let shared = publish_to_circle(hub, agencies, publisher, first, &added.members).await?;

    // NG's follower of the hub's log decrypts it, checks GH's signature and stores it;
    // NG's policy releases it to NG/customs on channel "circle".
    let joining_agency = agency_dir(agencies, agency_of(CIRCLE_MEMBER)?)?;
    wait_for("NG's agency receiving the circle indicator", || async {
        let feed = agency_feed(&joining.endpoint, &joining_agency).await?;
        Ok(feed.iter().any(|indicator| indicator.id == shared.id))
    })
    .await?;
    // Every feed follower at its peer's head, so past where GH and NG stored the
    // indicator: had either released it to SN, SN would hold it now.
    wait_for("followers catching up after the circle indicator", || {
        settled(members)
    })
    .await?;
    let (_, outsider_follows) = FOLLOWS
        .iter()
        .find(|(id, _)| *id == OUTSIDER)
        .context("the outsider's peers")?;
    let mut withheld_from_outsider = BTreeMap::new();
    for id in outsider_follows.iter() {
        let followed = member(id)?;
        let reasons = followed
            .decisions
            .records()
            .into_iter()
            .rev()
            .find(|record| record.recipient == OUTSIDER && record.indicator_id == shared.id)
            .map(|record| record.reasons)
            .unwrap_or_else(|| vec![format!("{id} made no release decision for {OUTSIDER}")]);
        withheld_from_outsider.insert(id.to_string(), reasons);
    }

    // GH removes NG; NG's follower reads the commit that removed it and stops.
    let removal = admin
        .remove(RemoveMemberRequest {
            circle: CIRCLE.into(),
            member: CIRCLE_MEMBER.into(),
        })
        .await
        .map_err(crate::cli::status_error)?
        .into_inner();
    wait_for("NG processing its removal from the circle", || async {
        Ok(circle_info(joining)
            .await?
            .is_some_and(|info| info.status == crate::circle::STATUS_REMOVED))
    })
    .await?;
    let after = publish_to_circle(hub, agencies, publisher, second, &removal.members).await?;
    wait_for(
        "followers catching up after the second circle indicator",
        || settled(members),
    )
    .await?;

    let items = vec![shared, after];
    let mut views = Vec::new();
    for member in members {
        let info = circle_info(member).await?;
        let agency = agency_of(member.id)?;
        let feed = agency_feed(&member.endpoint, &agency_dir(agencies, agency)?).await?;
        let mut sightings = Vec::new();
        for item in &items {
            let held = member.gateway.state.store.indicator(&item.id).await?;
            let signature_verified = match &held {
                Some(held) => keys
                    .verify_indicator(&Indicator::decode(held.payload.as_slice())?)
                    .is_ok(),
                None => false,
            };
            sightings.push(CircleSighting {
                id: item.id.clone(),
                gateway_holds: held.is_some(),
                via: held.and_then(|held| held.via),
                signature_verified,
                agency_sees: feed.iter().any(|indicator| indicator.id == item.id),
                in_database_file: None,
            });
        }
        views.push(CircleView {
            member: member.id.into(),
            status: info
                .as_ref()
                .map_or("not a member".to_string(), |info| info.status.clone()),
            position: info.map_or(0, |info| info.position),
            agency: agency.into(),
            items: sightings,
        });
    }
    Ok(CircleReport {
        name: CIRCLE.into(),
        hub: CIRCLE_HUB.into(),
        members: added.members,
        outsider: OUTSIDER.into(),
        removed: CIRCLE_MEMBER.into(),
        members_after_removal: removal.members,
        removed_at_position: removal.position,
        items,
        withheld_from_outsider,
        views,
    })
}

/// A Circles API client as the member's own gateway identity.
async fn circle_client(member: &Member) -> Result<CircleServiceClient<Channel>> {
    Ok(CircleServiceClient::new(
        crate::cli::client::channel(&member.endpoint, &member.identity).await?,
    ))
}

/// The demo circle as `member`'s gateway sees it, if it has it.
async fn circle_info(member: &Member) -> Result<Option<CircleInfo>> {
    let circles = circle_client(member)
        .await?
        .list(ListCirclesRequest {})
        .await
        .map_err(crate::cli::status_error)?
        .into_inner()
        .circles;
    Ok(circles.into_iter().find(|circle| circle.name == CIRCLE))
}

/// Publishes one source-protected indicator into the demo circle, its narrative's
/// `{ref}` replaced by a marker unique to this run.
async fn publish_to_circle(
    member: &Member,
    agencies: &Path,
    agency: &str,
    mut indicator: Indicator,
    circle_members: &[String],
) -> Result<CircleItem> {
    let marker = format!(
        "GOG-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12].to_uppercase()
    );
    indicator.narrative = indicator.narrative.replace("{ref}", &marker);
    let mut client = indicator_client(&member.endpoint, &agency_dir(agencies, agency)?).await?;
    let accepted = client
        .publish(PublishRequest {
            indicators: vec![indicator],
            circle: CIRCLE.into(),
        })
        .await
        .map_err(crate::cli::status_error)?
        .into_inner()
        .accepted;
    let [accepted] = &accepted[..] else {
        bail!("the circle accepted {} indicators, not one", accepted.len());
    };
    // As the gateway signed and stored it (it marks circle indicators source-protected).
    let held = member
        .gateway
        .state
        .store
        .indicator(&accepted.id)
        .await?
        .context("the hub holds what it published into its circle")?;
    let stored = Indicator::decode(held.payload.as_slice())?;
    Ok(CircleItem {
        id: accepted.id.clone(),
        publisher: agency.into(),
        kind: kind_of(&stored),
        handling: handling_label(&stored),
        protection: protection_of(&stored),
        narrative: stored.narrative,
        marker,
        sent_to: circle_members
            .iter()
            .filter(|id| *id != member.id)
            .cloned()
            .collect(),
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
    let agency = agency_of(member.id)?;
    let agency_received = agency_feed(&member.endpoint, &agency_dir(agencies, agency)?)
        .await?
        .len();
    Ok(MemberReport {
        member: member.id.into(),
        received,
        withheld,
        agency: agency.into(),
        agency_received,
    })
}

/// The indicators the gateway at `endpoint` releases to the agency.
async fn agency_feed(endpoint: &str, identity: &Path) -> Result<Vec<Indicator>> {
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
            indicators.push(indicator);
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
    print_circle(&report.circle);
}

fn print_circle(circle: &CircleReport) {
    println!();
    println!(
        "circle \"{}\" (MLS, hub {}): members {}; {} outside it, following {}",
        circle.name,
        circle.hub,
        circle.members.join(", "),
        circle.outsider,
        circle
            .withheld_from_outsider
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(" and ")
    );
    for (index, item) in circle.items.iter().enumerate() {
        let when = if index == 0 {
            format!("sent to {}", list_or_none(&item.sent_to))
        } else {
            format!(
                "after {} was removed at log position {}, sent to {}",
                circle.removed,
                circle.removed_at_position,
                list_or_none(&item.sent_to)
            )
        };
        println!(
            "  [C{}] {:<11} {:<19} {:<28} {} — {when}",
            index + 1,
            item.publisher,
            item.kind,
            format!("{}, {}", item.handling, item.protection),
            item.marker,
        );
        println!("       \"{}\"", item.narrative);
    }
    for view in &circle.views {
        let role = if view.member == circle.hub {
            format!("hub, its log at position {}", view.position)
        } else if view.status == "not a member" {
            view.status.clone()
        } else {
            format!(
                "{}, read the hub's log to position {}",
                view.status, view.position
            )
        };
        println!("  {} ({role}):", view.member);
        for (index, sighting) in view.items.iter().enumerate() {
            let gateway = match (&sighting.via, sighting.gateway_holds) {
                (_, false) => "gateway does not hold it".to_string(),
                (None, true) => "published here".to_string(),
                (Some(via), true) => format!(
                    "decrypted from {via}'s circle, signature {}",
                    if sighting.signature_verified {
                        "verified"
                    } else {
                        "NOT VERIFIED"
                    }
                ),
            };
            let agency = format!(
                "{} {}",
                view.agency,
                if sighting.agency_sees {
                    "sees it"
                } else {
                    "does not see it"
                }
            );
            let file = match sighting.in_database_file {
                Some(true) => "marker in its database file",
                Some(false) => "marker not in its database file",
                None => "database file not checked",
            };
            println!("    [C{}] {gateway}; {agency}; {file}", index + 1);
        }
    }
    for (gateway, reasons) in &circle.withheld_from_outsider {
        println!(
            "  {gateway} withheld [C1] from {}: {}",
            circle.outsider,
            reasons.join("; ")
        );
    }
}

fn list_or_none(members: &[String]) -> String {
    if members.is_empty() {
        "no one".into()
    } else {
        members.join(", ")
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

    /// The demo end to end: GREEN reaches everyone with a verified signature,
    /// AMBER stops at NG, source-protected never leaves GH outside a circle, every
    /// withheld indicator has reasons, and the retraction reaches every holder; in
    /// the circle NG decrypts what GH sends while it is a member and nothing after
    /// its removal, and SN never sees any of it.
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

        // The circle: GH and NG in it, SN outside.
        let circle = &report.circle;
        assert_eq!(circle.members, ["GH", "NG"]);
        assert_eq!(circle.members_after_removal, ["GH"]);
        let [shared, after] = &circle.items[..] else {
            panic!("two circle items: {:?}", circle.items)
        };
        assert_eq!(shared.sent_to, ["NG"]);
        assert!(after.sent_to.is_empty(), "{:?}", after.sent_to);
        assert!(
            circle
                .items
                .iter()
                .all(|item| item.protection == "source-protected")
        );
        assert!(shared.narrative.contains(&shared.marker));
        assert!(after.narrative.contains(&after.marker));
        let view = |id: &str| {
            circle
                .views
                .iter()
                .find(|view| view.member == id)
                .unwrap_or_else(|| panic!("a circle view of {id}"))
        };
        let (hub, removed, outsider) = (view("GH"), view("NG"), view("SN"));
        // The hub holds both, and so does its own agency.
        for sighting in &hub.items {
            assert!(
                sighting.gateway_holds && sighting.agency_sees,
                "{sighting:?}"
            );
            assert_eq!(sighting.in_database_file, Some(true), "{sighting:?}");
        }
        // NG decrypted the first (GH's verified signature) and its agency saw it...
        let first = &removed.items[0];
        assert!(first.gateway_holds, "{first:?}");
        assert_eq!(first.via.as_deref(), Some("GH"));
        assert!(first.signature_verified && first.agency_sees, "{first:?}");
        assert_eq!(first.in_database_file, Some(true));
        // ...and after its removal received nothing new: it read the hub's log up to the
        // commit that removed it, and the second is nowhere at NG.
        assert_eq!(removed.status, "removed");
        assert_eq!(removed.position, circle.removed_at_position);
        assert!(hub.position > circle.removed_at_position);
        let second = &removed.items[1];
        assert!(!second.gateway_holds && !second.agency_sees, "{second:?}");
        assert_eq!(second.in_database_file, Some(false));
        // SN, following both GH and NG, never saw either: not its gateway, not its
        // agency, not a byte of the marker in its database file.
        assert_eq!(outsider.status, "not a member");
        for sighting in &outsider.items {
            assert!(
                !sighting.gateway_holds && !sighting.agency_sees,
                "{sighting:?}"
            );
            assert_eq!(sighting.in_database_file, Some(false), "{sighting:?}");
        }
        assert_eq!(
            circle.withheld_from_outsider.keys().collect::<Vec<_>>(),
            ["GH", "NG"]
        );
        for reasons in circle.withheld_from_outsider.values() {
            assert!(
                reasons
                    .iter()
                    .any(|reason| reason.contains("only inside a circle")),
                "{reasons:?}"
            );
        }
    }
}
