//! Chaos under load: two real gateways, GH (hub of the circle "alpha") and NG (its member, and
//! GH's federation peer both ways), while agencies publish on both, in the feed and in the
//! circle, and an agency at each follows its feed. Round after round the test kills a gateway
//! (or both) with SIGKILL at a random moment and restarts it, or cuts the network between the
//! two (NG runs in a network namespace the test made; without the rights to make one, the
//! partition rounds say they were skipped and kill instead), then checks the invariants:
//!
//! - no acknowledged indicator is lost: each follower receives every indicator acknowledged
//!   to a publisher that its gateway holds or receives (its own feed, the peer's feed for NG,
//!   the circle on both sides: the circle's members converge);
//! - no gap and no duplicate per cursor: what a follower received across its reconnects is,
//!   event for event, what one read of the same range gives now;
//! - every released event has its decision row, stored before it was sent.
//!
//! `CORDON_CHAOS_ROUNDS` (50) and `CORDON_CHAOS_SEED` (random, printed) repeat a run.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use cordon_integration_tests::{
    Federation, GatewayProcess, MemberDir, NetNs, circle, indicator_client, patience, vessel,
    wait_until,
};
use cordon_proto::v1::{
    DecisionsRequest, PublishRequest, SubscribeRequest, Tlp, event,
    policy_service_client::PolicyServiceClient,
};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Between a failed call and the next attempt while a gateway is down or cut off.
const RETRY: Duration = Duration::from_millis(25);
/// How often each publisher publishes: a steady load, not as fast as possible, so that the
/// feeds grow by about ten indicators a second per publisher whatever the machine (debug
/// builds on two cores included).
const PUBLISH_EVERY: Duration = Duration::from_millis(200);
const CIRCLE_PUBLISH_EVERY: Duration = Duration::from_millis(400);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_killed_and_cut_off_under_load_keep_every_invariant() -> Result<()> {
    let rounds: usize = std::env::var("CORDON_CHAOS_ROUNDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(50);
    let seed: u64 = std::env::var("CORDON_CHAOS_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("chaos: {rounds} rounds, CORDON_CHAOS_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);

    let netns = NetNs::create()?;
    let federation = Federation::new()?;
    // Where each gateway listens: GH on the test's side of the pair and NG inside the
    // namespace, or both on loopback.
    let (gh_host, ng_host) = match &netns {
        Some(netns) => (netns.outside.to_string(), netns.inside.to_string()),
        None => ("127.0.0.1".to_string(), "127.0.0.1".to_string()),
    };
    let ghana = federation.member_reached_at("GH", &[&gh_host])?;
    let nigeria = federation.member_reached_at("NG", &[&ng_host])?;
    ghana.trust_member(&nigeria)?;
    nigeria.trust_member(&ghana)?;
    let gh_endpoint = ghana.set_listen(&format!("{gh_host}:{}", free_port(&gh_host)?))?;
    // Nothing else listens in a fresh namespace: any port is free there.
    let ng_endpoint = nigeria.set_listen(&format!("{ng_host}:{}", free_port("127.0.0.1")?))?;
    ghana.follow(&nigeria, &ng_endpoint)?;
    nigeria.follow(&ghana, &gh_endpoint)?;
    let start_ng = || async {
        match &netns {
            Some(netns) => nigeria.start_in(netns, &[]).await,
            None => nigeria.start(&[]).await,
        }
    };
    let mut gh = Some(ghana.start(&[]).await?);
    let mut ng = Some(start_ng().await?);
    circle(&ghana, &gh_endpoint, &["create", "alpha"]).await?;
    circle(&ghana, &gh_endpoint, &["add", "alpha", "NG"]).await?;

    let gh_customs = federation.identity("GH/customs")?;
    let ng_customs = federation.identity("NG/customs")?;
    let (stop, stopped) = watch::channel(false);
    let gh_feed = Publisher::start(&gh_endpoint, &gh_customs, None, PUBLISH_EVERY, &stopped);
    let ng_feed = Publisher::start(&ng_endpoint, &ng_customs, None, PUBLISH_EVERY, &stopped);
    let gh_circle = Publisher::start(
        &gh_endpoint,
        &gh_customs,
        Some("alpha"),
        CIRCLE_PUBLISH_EVERY,
        &stopped,
    );
    let ng_circle = Publisher::start(
        &ng_endpoint,
        &ng_customs,
        Some("alpha"),
        CIRCLE_PUBLISH_EVERY,
        &stopped,
    );
    let mut gh_follower = Follower::start(&gh_endpoint, &gh_customs, &stopped);
    let mut ng_follower = Follower::start(&ng_endpoint, &ng_customs, &stopped);
    // What each follower must come to hold: GH, its own feed and the circle; NG, its own
    // feed, GH's feed (which GH's policy releases to NG) and the circle.
    let gh_expects = [&gh_feed, &gh_circle, &ng_circle];
    let ng_expects = [&ng_feed, &gh_feed, &gh_circle, &ng_circle];
    let publishers = [&gh_feed, &ng_feed, &gh_circle, &ng_circle];

    let started = std::time::Instant::now();
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    let mut last_acked: Vec<usize> = publishers.iter().map(|p| p.acked().len()).collect();
    for round in 1..=rounds {
        // The load goes on: every publisher has had something acknowledged since the last
        // round (which also shows that the gateways took it up again after the fault).
        wait_until(
            &format!("round {round}: every publisher to progress"),
            || {
                let counts: Vec<usize> = publishers.iter().map(|p| p.acked().len()).collect();
                let last = last_acked.clone();
                let errors: Vec<String> = publishers.iter().map(|p| p.last_error()).collect();
                async move {
                    let moved = counts.iter().zip(&last).all(|(now, then)| now > then);
                    Ok((moved, format!("acknowledged {counts:?}, errors {errors:?}")))
                }
            },
        )
        .await?;
        last_acked = publishers.iter().map(|p| p.acked().len()).collect();

        // A random moment in the middle of the load.
        tokio::time::sleep(Duration::from_millis(rng.u64(0..400))).await;
        let action = match (rng.u8(0..4), &netns) {
            (0, _) => "kill GH (hub)",
            (1, _) => "kill NG (member)",
            (2, _) => "kill both",
            (_, Some(_)) => "partition",
            (_, None) => "kill both (partition skipped: no network namespace)",
        };
        *tally.entry(action).or_default() += 1;
        match action {
            "kill GH (hub)" => {
                kill(&mut gh).await?;
                gh = Some(ghana.start(&[]).await?);
            }
            "kill NG (member)" => {
                kill(&mut ng).await?;
                ng = Some(start_ng().await?);
            }
            "partition" => {
                let netns = netns.as_ref().context("namespace")?;
                netns.partition()?;
                // The cut is real: the test's side cannot reach NG either.
                let reach = indicator_client(&ng_endpoint, &ng_customs);
                let reached = tokio::time::timeout(Duration::from_millis(300), reach).await;
                ensure!(
                    !matches!(reached, Ok(Ok(_))),
                    "NG is still reachable across the partition"
                );
                tokio::time::sleep(Duration::from_millis(rng.u64(200..1500))).await;
                netns.heal()?;
            }
            _ => {
                kill(&mut gh).await?;
                kill(&mut ng).await?;
                gh = Some(ghana.start(&[]).await?);
                ng = Some(start_ng().await?);
            }
        }

        // Every acknowledged indicator reaches each follower that must have it.
        for (follower, expects, who) in [
            (&gh_follower, &gh_expects[..], "GH/customs"),
            (&ng_follower, &ng_expects[..], "NG/customs"),
        ] {
            let expected: HashSet<String> = expects
                .iter()
                .flat_map(|publisher| publisher.acked())
                .collect();
            wait_until(
                &format!("round {round} ({action}): {who} to hold every acknowledged indicator"),
                || {
                    let seen = follower.ids();
                    let missing: Vec<String> = expected.difference(&seen).cloned().collect();
                    let error = follower.last_error();
                    async move {
                        Ok((
                            missing.is_empty(),
                            format!(
                                "{} missing, e.g. {:?}; {error}",
                                missing.len(),
                                missing.first()
                            ),
                        ))
                    }
                },
            )
            .await
            .with_context(|| latest_logs(&[&ghana, &nigeria]))?;
            follower.check_no_duplicate()?;
        }
        // Decisions, then the re-read (which stores decisions of its own).
        let checks = async {
            gh_follower
                .check_decisions_and_range(&gh_endpoint, &ghana, &gh_customs, "GH/customs", round)
                .await?;
            ng_follower
                .check_decisions_and_range(&ng_endpoint, &nigeria, &ng_customs, "NG/customs", round)
                .await
        };
        tokio::time::timeout(patience(), checks)
            .await
            .with_context(|| format!("round {round}: the decision and range checks took too long"))?
            .with_context(|| latest_logs(&[&ghana, &nigeria]))?;
        eprintln!(
            "chaos round {round} ({action}) held after {:.1?}: acknowledged {:?}",
            started.elapsed(),
            publishers
                .iter()
                .map(|p| p.acked().len())
                .collect::<Vec<_>>()
        );
    }
    let _ = stop.send(true);
    for publisher in publishers {
        publisher.task.abort();
    }
    eprintln!(
        "chaos: {rounds} rounds in {:.1?}: {tally:?}",
        started.elapsed()
    );
    // The whole of each follower's stream against one read from the start.
    gh_follower.checked = 0;
    ng_follower.checked = 0;
    let whole = async {
        gh_follower
            .check_range(&gh_endpoint, &gh_customs, "GH/customs")
            .await?;
        ng_follower
            .check_range(&ng_endpoint, &ng_customs, "NG/customs")
            .await
    };
    tokio::time::timeout(patience(), whole)
        .await
        .context("the check of the whole streams took too long")??;
    gh_follower.task.abort();
    ng_follower.task.abort();
    if let Some(gh) = gh.take() {
        gh.stop().await?;
    }
    if let Some(ng) = ng.take() {
        ng.stop().await?;
    }
    Ok(())
}

async fn kill(gateway: &mut Option<GatewayProcess>) -> Result<()> {
    gateway.take().context("a running gateway")?.kill().await
}

/// The last lines of each member's latest gateway log, to show with a failure.
fn latest_logs(members: &[&MemberDir]) -> String {
    let mut text = String::new();
    for member in members {
        let latest = std::fs::read_dir(&member.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().starts_with("gateway-"))
            .max_by_key(|entry| entry.metadata().and_then(|meta| meta.modified()).ok());
        let Some(latest) = latest else { continue };
        let log = std::fs::read_to_string(latest.path()).unwrap_or_default();
        let tail: Vec<&str> = log
            .lines()
            .filter(|line| !line.contains("cordon::decision"))
            .rev()
            .take(15)
            .collect();
        text.push_str(&format!(
            "\n--- {} ({}):\n",
            member.member,
            latest.path().display()
        ));
        for line in tail.into_iter().rev() {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

fn free_port(host: &str) -> Result<u16> {
    Ok(std::net::TcpListener::bind((host, 0))?.local_addr()?.port())
}

/// An agency publishing green vessel indicators at a steady pace, in the feed or in a circle,
/// keeping the ids its gateway acknowledged. A call that fails (the gateway is down or cut
/// off) acknowledged nothing; the publisher reconnects and goes on.
struct Publisher {
    acked: Arc<Mutex<Vec<String>>>,
    error: Arc<Mutex<String>>,
    task: JoinHandle<()>,
}

impl Publisher {
    fn start(
        endpoint: &str,
        agency: &std::path::Path,
        circle: Option<&'static str>,
        every: Duration,
        stopped: &watch::Receiver<bool>,
    ) -> Publisher {
        let acked = Arc::new(Mutex::new(Vec::new()));
        let error = Arc::new(Mutex::new(String::new()));
        let (endpoint, agency, mut stopped) =
            (endpoint.to_string(), agency.to_path_buf(), stopped.clone());
        let (keep, note) = (acked.clone(), error.clone());
        let task = tokio::spawn(async move {
            let mut client = None;
            let mut pace = tokio::time::interval(every);
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for index in 0u64.. {
                tokio::select! {
                    _ = pace.tick() => {}
                    _ = stopped.changed() => return,
                }
                if client.is_none() {
                    match indicator_client(&endpoint, &agency).await {
                        Ok(connected) => client = Some(connected),
                        Err(failure) => {
                            *note.lock().unwrap() = format!("{failure:#}");
                            tokio::time::sleep(RETRY).await;
                            continue;
                        }
                    }
                }
                let Some(connected) = client.as_mut() else {
                    continue;
                };
                let count = if circle.is_some() { 1 } else { 1 + index % 3 };
                let indicators = (0..count)
                    .map(|item| {
                        vessel(
                            Tlp::Green,
                            format!("chaos {} {index}.{item}", agency.display()),
                        )
                    })
                    .collect();
                let request = PublishRequest {
                    indicators,
                    circle: circle.unwrap_or_default().to_string(),
                };
                let call =
                    tokio::time::timeout(Duration::from_secs(10), connected.publish(request));
                match call.await {
                    Ok(Ok(response)) => {
                        let ids = response.into_inner().accepted.into_iter().map(|a| a.id);
                        keep.lock().unwrap().extend(ids);
                    }
                    Ok(Err(status)) => {
                        *note.lock().unwrap() = format!("{status}");
                        client = None;
                    }
                    Err(_) => {
                        *note.lock().unwrap() = "publish timed out".to_string();
                        client = None;
                    }
                }
            }
        });
        Publisher { acked, error, task }
    }

    fn acked(&self) -> Vec<String> {
        self.acked.lock().unwrap().clone()
    }

    fn last_error(&self) -> String {
        self.error.lock().unwrap().clone()
    }
}

/// What a following subscription received across its reconnects.
#[derive(Default)]
struct Received {
    cursor: u64,
    /// Published events, in the order they arrived: (sequence, indicator id).
    published: Vec<(u64, String)>,
    /// An event at or below the cursor it was asked to follow from.
    duplicates: Vec<String>,
    error: String,
    reconnects: u64,
}

/// An agency following its gateway's feed with `follow: true`, resuming from its cursor
/// whenever the stream breaks.
struct Follower {
    received: Arc<Mutex<Received>>,
    task: JoinHandle<()>,
    /// Events up to this sequence were checked against a re-read in an earlier round.
    checked: u64,
    /// How many of `published` had their decisions checked.
    decided: usize,
}

impl Follower {
    fn start(endpoint: &str, agency: &std::path::Path, stopped: &watch::Receiver<bool>) -> Self {
        let received = Arc::new(Mutex::new(Received::default()));
        let (endpoint, agency, mut stopped) =
            (endpoint.to_string(), agency.to_path_buf(), stopped.clone());
        let state = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let after = state.lock().unwrap().cursor;
                let stream = async {
                    let mut client = indicator_client(&endpoint, &agency).await?;
                    let request = SubscribeRequest {
                        after,
                        follow: true,
                        kinds: Vec::new(),
                        limit: 0,
                    };
                    anyhow::Ok(client.subscribe(request).await?.into_inner())
                };
                let mut stream = match tokio::time::timeout(Duration::from_secs(10), stream).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(failure)) => {
                        note(&state, format!("{failure:#}"));
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                    Err(_) => {
                        note(&state, "subscribe timed out".into());
                        continue;
                    }
                };
                loop {
                    // A partition leaves a stream silent rather than broken: a follower that
                    // hears nothing (not even a checkpoint) for long reconnects.
                    let next = tokio::select! {
                        next = tokio::time::timeout(Duration::from_secs(5), stream.message()) => next,
                        _ = stopped.changed() => return,
                    };
                    let event = match next {
                        Ok(Ok(Some(event))) => event,
                        Ok(Ok(None)) => {
                            note(&state, "stream ended".into());
                            break;
                        }
                        Ok(Err(status)) => {
                            note(&state, format!("{status}"));
                            break;
                        }
                        Err(_) => {
                            note(&state, "stream silent for 5 s".into());
                            break;
                        }
                    };
                    let mut received = state.lock().unwrap();
                    if let Some(event::Body::Published(published)) = &event.body {
                        let id = published
                            .indicator
                            .as_ref()
                            .map(|indicator| indicator.id.clone())
                            .unwrap_or_default();
                        if event.sequence <= received.cursor {
                            let cursor = received.cursor;
                            received
                                .duplicates
                                .push(format!("{id} at {} after cursor {cursor}", event.sequence));
                        }
                        received.published.push((event.sequence, id));
                    }
                    received.cursor = received.cursor.max(event.sequence);
                }
                state.lock().unwrap().reconnects += 1;
            }
        });
        Follower {
            received,
            task,
            checked: 0,
            decided: 0,
        }
    }

    fn ids(&self) -> HashSet<String> {
        let received = self.received.lock().unwrap();
        received
            .published
            .iter()
            .map(|(_, id)| id.clone())
            .collect()
    }

    fn last_error(&self) -> String {
        let received = self.received.lock().unwrap();
        format!(
            "cursor {}, {} reconnects, last error {:?}",
            received.cursor, received.reconnects, received.error
        )
    }

    fn check_no_duplicate(&self) -> Result<()> {
        let received = self.received.lock().unwrap();
        ensure!(
            received.duplicates.is_empty(),
            "events at or below the cursor: {:?}",
            received.duplicates
        );
        Ok(())
    }

    /// Every indicator released to `recipient` since the last check has an allowing decision
    /// row for `recipient` (asked of the gateway as its own identity); then the range check.
    async fn check_decisions_and_range(
        &mut self,
        endpoint: &str,
        gateway: &MemberDir,
        agency: &std::path::Path,
        recipient: &str,
        round: usize,
    ) -> Result<()> {
        let fresh: Vec<String> = {
            let received = self.received.lock().unwrap();
            received.published[self.decided..]
                .iter()
                .map(|(_, id)| id.clone())
                .collect()
        };
        let mut admin = PolicyServiceClient::new(
            cordon_gateway::cli::client::channel(endpoint, &gateway.identity()).await?,
        );
        for id in &fresh {
            let request = DecisionsRequest {
                indicator_id: id.clone(),
                recipient: recipient.to_string(),
                ..Default::default()
            };
            let decisions = admin.decisions(request).await?.into_inner().decisions;
            ensure!(
                decisions.iter().any(|decision| decision.allow),
                "round {round}: {id} was released to {recipient} without an allowing decision \
                 row: {decisions:?}"
            );
        }
        self.decided += fresh.len();
        self.check_range(endpoint, agency, recipient).await
    }

    /// What the follower received after `checked` up to its cursor is, event for event, what
    /// one read of that range gives now (no gap, no duplicate, nothing lost after a crash).
    async fn check_range(
        &mut self,
        endpoint: &str,
        agency: &std::path::Path,
        recipient: &str,
    ) -> Result<()> {
        let (cursor, received): (u64, Vec<(u64, String)>) = {
            let received = self.received.lock().unwrap();
            let range = received
                .published
                .iter()
                .filter(|(sequence, _)| *sequence > self.checked)
                .cloned()
                .collect();
            (received.cursor, range)
        };
        let read = read_range(endpoint, agency, self.checked, cursor).await?;
        if read != received {
            let first = read
                .iter()
                .zip(&received)
                .position(|(a, b)| a != b)
                .unwrap_or(read.len().min(received.len()));
            bail!(
                "{recipient}: after {} up to {cursor} the follower received {} events and a \
                 re-read gives {}; first difference at {first}: follower {:?}, re-read {:?}",
                self.checked,
                received.len(),
                read.len(),
                received.get(first),
                read.get(first)
            );
        }
        self.checked = cursor;
        Ok(())
    }
}

/// The published events of one non-following read after `after` up to `until` (the read stops
/// there: the feed goes on growing under the load).
async fn read_range(
    endpoint: &str,
    agency: &std::path::Path,
    after: u64,
    until: u64,
) -> Result<Vec<(u64, String)>> {
    let mut read = Vec::new();
    if until <= after {
        return Ok(read);
    }
    let mut client = indicator_client(endpoint, agency).await?;
    let request = SubscribeRequest {
        after,
        follow: false,
        kinds: Vec::new(),
        limit: 0,
    };
    let mut stream = client.subscribe(request).await?.into_inner();
    while let Some(event) = stream.message().await? {
        if event.sequence > until {
            break;
        }
        if let Some(event::Body::Published(published)) = event.body {
            read.push((event.sequence, published.indicator.context("indicator")?.id));
        }
        if event.sequence == until {
            break;
        }
    }
    Ok(read)
}

fn note(state: &Mutex<Received>, error: String) {
    state.lock().unwrap().error = error;
}
