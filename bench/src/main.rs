//! `cordon-bench`: starts real release-build gateways on loopback with mutual
//! TLS and measures them, in the same run and on the same machine, against the
//! limit of their stack (a bare tonic stream of the same messages over the same
//! mutual TLS) and against NATS JetStream. See BENCHMARKS.md.

mod disclosure;
mod engine;
mod scenario;
mod screening;
mod target;
mod taxii;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use cordon_integration_tests::{Federation, GatewayProcess, MemberDir};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::scenario::{Load, memory_mib};
use crate::target::{Target, delete_nats, nats_target, start_bare};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Publish throughput, batches of 1 and of 100, no subscriber.
    Publish,
    /// Fan-out throughput: one publisher as fast as acknowledged, K subscribers.
    Fanout,
    /// Fan-out latency at a fixed offered load (open loop), K subscribers.
    Latency,
    /// A new subscriber reading the stored feed from the start; then memory
    /// with 100 open subscriptions.
    Catchup,
    /// One federation hop: a publisher at GH, a subscriber at NG following GH.
    Federation,
    /// Circles: source-protected indicators through a 10-member circle of gateway processes
    /// (with the ordinary federation of the same gateways as the baseline), then adding and
    /// removing a member at 10, 50 and 200 members in process. Not part of `all`.
    Circle,
    /// Field commitments (selective disclosure): publish and fan-out to 10 subscribers through
    /// the gateway against the same build signing without them, in alternating turns. Not
    /// part of `all`.
    Disclosure,
    /// Screening: a gateway holding 1,000,000 indicators screens declarations (batches of 100
    /// and one at a time) against the matching alone in process; the watchers of new
    /// indicators among 1,000,000 watched declarations, index against scan. Not part of `all`.
    Screening,
    /// TAXII 2.1: adding objects over TAXII against gRPC publish at the same batch size,
    /// paging 100,000 objects back against a gRPC catch-up, and medallion (the OASIS
    /// reference server) doing both in the same run. Not part of `all`.
    Taxii,
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Parser)]
#[command(name = "cordon-bench", about = "Cordon load tool (see BENCHMARKS.md)")]
struct Args {
    #[arg(long, value_enum, default_value = "all")]
    scenario: Scenario,
    /// The gateways' database.
    #[arg(long, value_enum, default_value = "sqlite")]
    backend: Backend,
    /// PostgreSQL server for `--backend postgres` (a fresh schema per gateway).
    #[arg(
        long,
        env = "CORDON_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    database_url: String,
    /// Subscriber counts for the fan-out and latency scenarios.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100")]
    subscribers: Vec<usize>,
    /// Indicators per fan-out throughput run (a tenth of it at 100 subscribers).
    #[arg(long, default_value_t = 20_000)]
    events: u64,
    /// Offered load of the latency scenario, indicators per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Duration of each latency run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Stored events a new subscriber catches up on.
    #[arg(long, default_value_t = 1_000_000)]
    catchup_events: u64,
    /// Indicators per circle delivery run (circle scenario).
    #[arg(long, default_value_t = 5000)]
    circle_events: u64,
    /// Circle sizes at which adding and removing a member is measured in process.
    #[arg(long, value_delimiter = ',', default_value = "10,50,200")]
    circle_sizes: Vec<usize>,
    /// Adds and removes per circle size.
    #[arg(long, default_value_t = 7)]
    circle_repetitions: usize,
    /// Entries of the in-process audit log whose inclusion proofs the publish scenario times.
    #[arg(long, default_value_t = 10_000_000)]
    audit_entries: u64,
    /// Indicators the gateway holds in the screening scenario.
    #[arg(long, default_value_t = 1_000_000)]
    screening_indicators: u64,
    /// Declarations screened in batches of 100 (4 requests in flight).
    #[arg(long, default_value_t = 100_000)]
    screening_declarations: u64,
    /// Declarations screened one per request, one request at a time.
    #[arg(long, default_value_t = 2_000)]
    screening_singles: u64,
    /// Watched declarations among which the watchers of new indicators are found.
    #[arg(long, default_value_t = 1_000_000)]
    screening_watched: u64,
    /// The NATS server (JetStream enabled).
    #[arg(long, default_value = "127.0.0.1:4222")]
    nats: String,
    /// The Python interpreter with medallion (the TAXII scenario's baseline): `.ci/run`'s
    /// virtual environment, or any with `pip install -r .ci/requirements.txt`.
    #[arg(long, env = "CORDON_CI_PYTHON", default_value = "python3")]
    python: String,
    /// Where results.json and results.md are written.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
}

/// One measured figure with its baselines.
#[derive(Debug, Clone, Default, Serialize)]
struct Row {
    scenario: String,
    system: String,
    subscribers: usize,
    batch: usize,
    /// Offered load (open loop), per second.
    offered_per_s: Option<u64>,
    events: u64,
    /// Indicators per second delivered to each subscriber (or published, or read).
    rate_per_s: f64,
    p50_us: Option<u64>,
    p99_us: Option<u64>,
    p999_us: Option<u64>,
    /// Resident and peak resident memory of the gateway(s) at the end, MiB.
    rss_mib: Option<f64>,
    peak_rss_mib: Option<f64>,
    /// rate / the bare tonic baseline's rate (latency scenario: p99 / its p99).
    vs_bare: Option<f64>,
    /// rate / NATS JetStream's rate (latency scenario: p99 / its p99).
    vs_nats: Option<f64>,
    /// Circle rows: indicators acknowledged to the publisher per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    acked_per_s: Option<f64>,
    /// Circle rows: rate / the rate of the ordinary (non-circle) publish of the same
    /// gateways, batch and load.
    #[serde(skip_serializing_if = "Option::is_none")]
    vs_ordinary: Option<f64>,
    /// Publish rows of the gateway: rate / the rate of the same gateway with its audit log
    /// switched off (`CORDON_BENCH_AUDIT_LOG=off`), same batch, same run.
    #[serde(skip_serializing_if = "Option::is_none")]
    vs_no_audit_log: Option<f64>,
    /// `commitments` rows of the gateway: rate / the rate of the same build signing without
    /// field commitments (`CORDON_BENCH_COMMITMENTS=off`), same load, same run.
    #[serde(skip_serializing_if = "Option::is_none")]
    vs_no_commitments: Option<f64>,
    /// TAXII rows of the gateway: rate / the same gateway's gRPC rate (publish at the same
    /// batch size, or catch-up of the same feed), same run.
    #[serde(skip_serializing_if = "Option::is_none")]
    vs_grpc: Option<f64>,
    /// TAXII rows of the gateway: rate / medallion's rate, same run.
    #[serde(skip_serializing_if = "Option::is_none")]
    vs_medallion: Option<f64>,
    note: String,
}

#[derive(Debug, Serialize)]
struct Report {
    machine: Machine,
    command: String,
    rows: Vec<Row>,
    /// The circle scenario's in-process add and remove times.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    circle_engine: Vec<engine::EngineRow>,
    /// The screening scenario's figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    screening: Option<screening::ScreeningReport>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpu: String,
    cores: usize,
    memory_gib: f64,
    kernel: String,
    commit: String,
    date: String,
}

const BARE: &str = "bare tonic";
const NATS: &str = "NATS JetStream";

struct Bench {
    args: Args,
    federation: Federation,
    gateways: u32,
    subscriber_identities: Vec<PathBuf>,
    rows: Vec<Row>,
    engine_rows: Vec<engine::EngineRow>,
    screening: Option<screening::ScreeningReport>,
}

impl Bench {
    fn system(&self) -> String {
        match self.args.backend {
            Backend::Sqlite => "cordon (SQLite)".into(),
            Backend::Postgres => "cordon (PostgreSQL)".into(),
        }
    }

    /// A fresh member gateway (new directory, new database), running.
    async fn gateway(&mut self) -> Result<(MemberDir, GatewayProcess)> {
        self.gateways += 1;
        let member = self.federation.member(&format!("GH-{}", self.gateways))?;
        let gateway = self.start(&member).await?;
        Ok((member, gateway))
    }

    async fn start(&self, member: &MemberDir) -> Result<GatewayProcess> {
        self.start_with(member, &[]).await
    }

    /// [`Self::start`] with more environment (the benchmark switches).
    async fn start_with(
        &self,
        member: &MemberDir,
        extra: &[(&str, &str)],
    ) -> Result<GatewayProcess> {
        // The production default: decisions go to the decision log, not the process log.
        let mut environment: Vec<(&str, &str)> = vec![("RUST_LOG", "info")];
        environment.extend_from_slice(extra);
        match self.args.backend {
            Backend::Sqlite => member.start(&environment).await,
            Backend::Postgres => {
                let url = cordon_storage::testing::fresh_postgres_schema(
                    &self.args.database_url,
                    &format!("bench_{}", member.member.replace('-', "_").to_lowercase()),
                )
                .await?;
                environment.push(("CORDON_DATABASE_URL", &url));
                member.start(&environment).await
            }
        }
    }

    /// A fresh gateway, started with a benchmark switch (`CORDON_BENCH_...`) if one is given,
    /// and the target that publishes to it as its member's customs.
    async fn switched(
        &mut self,
        switch: Option<(&str, &str)>,
    ) -> Result<(Target, MemberDir, GatewayProcess)> {
        self.gateways += 1;
        let member = self.federation.member(&format!("GH-{}", self.gateways))?;
        let gateway = self.start_with(&member, switch.as_slice()).await?;
        let target = self.grpc_target(
            &gateway.endpoint,
            self.federation
                .identity(&format!("{}/customs", member.member))?,
        );
        Ok((target, member, gateway))
    }

    fn grpc_target(&self, endpoint: &str, publisher: PathBuf) -> Target {
        Target::Grpc {
            endpoint: endpoint.to_string(),
            publisher,
            subscribers: self.subscriber_identities.clone(),
            circle: String::new(),
        }
    }

    /// The three systems of one scenario, each started fresh.
    async fn targets(
        &mut self,
    ) -> Result<Vec<(String, Target, Option<(MemberDir, GatewayProcess)>)>> {
        let (member, gateway) = self.gateway().await?;
        let cordon = self.grpc_target(
            &gateway.endpoint,
            self.federation
                .identity(&format!("{}/customs", member.member))?,
        );
        let bare_endpoint = start_bare(&member.identity()).await?;
        let bare = self.grpc_target(&bare_endpoint, self.federation.identity("GH/customs")?);
        self.gateways += 1;
        let nats = Target::Nats(nats_target(&self.args.nats, &self.gateways.to_string()).await?);
        Ok(vec![
            (self.system(), cordon, Some((member, gateway))),
            (BARE.into(), bare, None),
            (NATS.into(), nats, None),
        ])
    }

    fn push(&mut self, row: Row) {
        eprintln!(
            "  {:<10} {:<20} K={:<3} batch={:<3} {:>12.0}/s p50={:?} p99={:?} p99.9={:?} rss={:?}",
            row.scenario,
            row.system,
            row.subscribers,
            row.batch,
            row.rate_per_s,
            row.p50_us,
            row.p99_us,
            row.p999_us,
            row.rss_mib.map(|mib| format!("{mib:.0} MiB"))
        );
        self.rows.push(row);
    }

    async fn publish(&mut self) -> Result<()> {
        eprintln!("publish throughput");
        for (batch, in_flight, events) in
            [(1usize, 16usize, 10_000u64), (100, 4, self.args.events * 5)]
        {
            let mut targets = self.targets().await?;
            // The same gateway with its audit log switched off: what the log costs. The two
            // take turns ([`PUBLISH_TURNS`] each, alternating which goes first) so that the
            // machine's drift over the run weighs on both alike.
            let (twin, member, gateway) = self
                .switched(Some(("CORDON_BENCH_AUDIT_LOG", "off")))
                .await?;
            let (system, cordon, cordon_gateway) = targets.remove(0);
            let mut pair = [
                (system, cordon, cordon_gateway, Turns::default()),
                (
                    format!("{}, no audit log", self.system()),
                    twin,
                    Some((member, gateway)),
                    Turns::default(),
                ),
            ];
            let per_turn = events.div_ceil(PUBLISH_TURNS as u64);
            for turn in 0..PUBLISH_TURNS {
                let order = if turn % 2 == 0 { [0, 1] } else { [1, 0] };
                for index in order {
                    let (_, target, _, turns) = &mut pair[index];
                    let (rate, latency) =
                        scenario::publish_throughput(target, batch, in_flight, per_turn).await?;
                    turns.add(per_turn, rate, &latency)?;
                }
            }
            let note = format!(
                "{in_flight} requests in flight; latency is per request; {PUBLISH_TURNS} turns \
                 taken with the gateway whose audit log is off"
            );
            for (system, target, gateway, turns) in pair {
                let memory = gateway
                    .as_ref()
                    .and_then(|(_, process)| process.pid())
                    .and_then(memory_mib);
                self.push(publish_row(
                    system,
                    batch,
                    turns.events,
                    turns.rate(),
                    turns.latency.as_ref(),
                    memory,
                    note.clone(),
                ));
                finish(&target, gateway).await?;
            }
            for (system, target, gateway) in targets {
                let (rate, latency) =
                    scenario::publish_throughput(&target, batch, in_flight, events).await?;
                let memory = gateway
                    .as_ref()
                    .and_then(|(_, process)| process.pid())
                    .and_then(memory_mib);
                self.push(publish_row(
                    system,
                    batch,
                    events,
                    rate,
                    Some(&latency),
                    memory,
                    format!("{in_flight} requests in flight; latency is per request"),
                ));
                finish(&target, gateway).await?;
            }
        }
        Ok(())
    }

    /// The cost of an inclusion proof in a log of `--audit-entries` entries (10,000,000),
    /// in process (the tree over its stored hashes in memory), against the publish latency
    /// of the same run (batches of 1).
    fn audit_proofs(&mut self) -> Result<()> {
        let entries = self.args.audit_entries;
        eprintln!("audit log: building a log of {entries} entries in memory");
        let started = std::time::Instant::now();
        let mut log = cordon_tlog::MemoryLog::new();
        for index in 0..entries {
            log.append(&index.to_be_bytes());
        }
        let build_s = started.elapsed().as_secs_f64();
        let size = log.size();
        let root = log.root();
        let proofs = 10_000u64;
        let mut latency = scenario::histogram();
        let started = std::time::Instant::now();
        for _ in 0..proofs {
            let index = fastrand::u64(0..size);
            let begun = std::time::Instant::now();
            let proof = log.inclusion_proof(index, size)?;
            latency.record(begun.elapsed().as_micros().max(1) as u64)?;
            // Checked, outside the timing of the proof itself only by a little.
            cordon_tlog::verify_inclusion(
                index,
                size,
                &cordon_tlog::leaf_hash(&index.to_be_bytes()),
                &proof,
                &root,
            )?;
        }
        let rate = proofs as f64 / started.elapsed().as_secs_f64();
        let publish_p50 = self
            .rows
            .iter()
            .find(|row| row.scenario == "publish" && row.system == self.system() && row.batch == 1)
            .and_then(|row| row.p50_us);
        let p50 = latency.value_at_quantile(0.5);
        let note = match publish_p50 {
            Some(publish) => format!(
                "one proof (p50 {p50} µs) is {:.4} of one publish's p50 latency ({publish} µs, batches of 1, this run); log built in {build_s:.1} s",
                p50 as f64 / publish.max(1) as f64
            ),
            None => format!("log built in {build_s:.1} s; no publish row in this run to compare"),
        };
        self.push(Row {
            scenario: "audit inclusion proof".into(),
            system: format!("in process, {size} entries"),
            subscribers: 0,
            batch: 1,
            events: proofs,
            rate_per_s: rate,
            p50_us: Some(p50),
            p99_us: Some(latency.value_at_quantile(0.99)),
            p999_us: Some(latency.value_at_quantile(0.999)),
            note,
            ..Row::default()
        });
        Ok(())
    }

    async fn fanout(&mut self, scenario: Scenario) -> Result<()> {
        let name = if scenario == Scenario::Fanout {
            "fanout"
        } else {
            "latency"
        };
        eprintln!("{name}");
        for subscribers in self.args.subscribers.clone() {
            let load = if scenario == Scenario::Fanout {
                let events = if subscribers >= 100 {
                    self.args.events / 10
                } else {
                    self.args.events
                };
                Load::Closed {
                    events,
                    batch: 100,
                    in_flight: 2,
                }
            } else {
                Load::Open {
                    rate: self.args.rate,
                    seconds: self.args.seconds,
                }
            };
            for (system, target, gateway) in self.targets().await? {
                let measured = scenario::fanout(&target, subscribers, load).await;
                let memory = gateway
                    .as_ref()
                    .and_then(|(_, process)| process.pid())
                    .and_then(memory_mib);
                let measured = match measured {
                    Ok(measured) => measured,
                    Err(error) => {
                        let log = gateway
                            .as_ref()
                            .map(|(_, process)| process.log_text())
                            .unwrap_or_default();
                        finish(&target, gateway).await?;
                        bail!(
                            "{name} with {subscribers} subscribers on {system}: {error:#}\n{}",
                            tail(&log)
                        );
                    }
                };
                let (batch, offered) = match load {
                    Load::Closed { batch, .. } => (batch, None),
                    Load::Open { rate, .. } => (1, Some(rate)),
                };
                self.push(Row {
                    scenario: name.into(),
                    system,
                    subscribers,
                    batch,
                    offered_per_s: offered,
                    events: measured.events,
                    rate_per_s: measured.per_subscriber_rate(),
                    p50_us: Some(measured.latency.value_at_quantile(0.5)),
                    p99_us: Some(measured.latency.value_at_quantile(0.99)),
                    p999_us: Some(measured.latency.value_at_quantile(0.999)),
                    rss_mib: memory.map(|(rss, _)| rss),
                    peak_rss_mib: memory.map(|(_, peak)| peak),
                    note: match load {
                        Load::Closed { .. } => {
                            "closed loop, batches of 100, 2 in flight; rate per subscriber".into()
                        }
                        Load::Open { seconds, .. } => {
                            format!("open loop for {seconds} s; publish-to-delivery latency")
                        }
                    },
                    ..Row::default()
                });
                finish(&target, gateway).await?;
            }
        }
        Ok(())
    }

    async fn catchup(&mut self) -> Result<()> {
        let events = self.args.catchup_events;
        eprintln!("catch-up of {events} events");
        let targets = self.targets().await?;
        for (system, target, gateway) in targets {
            if system == BARE {
                // No storage: nothing to catch up on.
                continue;
            }
            let preload_rate = scenario::preload(&target, events).await?;
            let rate = scenario::catch_up(&target, events).await?;
            let mut note = format!("preloaded at {preload_rate:.0}/s in batches of 1000");
            let mut memory = gateway
                .as_ref()
                .and_then(|(_, process)| process.pid())
                .and_then(memory_mib);
            if let (Some((member, process)), Target::Grpc { endpoint, .. }) = (&gateway, &target) {
                // The gateway holding the feed, with 100 open (caught-up) subscriptions: the
                // first stalled (never read), the other 99 each reading every one of
                // STALLED_RUN_EVENTS more indicators.
                const STALLED_RUN_EVENTS: usize = 5_000;
                let mut open = Vec::new();
                for index in 0..100 {
                    open.push(target.subscribe(index, events).await?);
                }
                let stalled = open.remove(0);
                let readers: Vec<_> = open
                    .into_iter()
                    .map(|mut stream| {
                        tokio::spawn(async move {
                            use futures::StreamExt;
                            for _ in 0..STALLED_RUN_EVENTS {
                                tokio::time::timeout(Duration::from_secs(120), stream.next())
                                    .await
                                    .context("an open subscription did not deliver")?
                                    .context("subscription ended")??;
                            }
                            anyhow::Ok(())
                        })
                    })
                    .collect();
                let publisher = self
                    .federation
                    .identity(&format!("{}/customs", member.member))?;
                let mut client =
                    cordon_gateway::cli::client::indicator_client(endpoint, &publisher).await?;
                for _ in 0..STALLED_RUN_EVENTS / 100 {
                    client
                        .publish(cordon_proto::v1::PublishRequest {
                            indicators: (0..100)
                                .map(|_| scenario::bench_indicator(std::time::Instant::now()))
                                .collect(),
                            ..Default::default()
                        })
                        .await?;
                }
                for reader in readers {
                    reader.await??;
                }
                memory = process.pid().and_then(memory_mib);
                note.push_str(&format!(
                    "; memory with {events} stored and 100 open subscriptions, one stalled \
                     while the other 99 each received {STALLED_RUN_EVENTS} more"
                ));
                drop(stalled);
            }
            self.push(Row {
                scenario: "catch-up".into(),
                system,
                subscribers: 1,
                batch: 0,
                events,
                rate_per_s: rate,
                rss_mib: memory.map(|(rss, _)| rss),
                peak_rss_mib: memory.map(|(_, peak)| peak),
                note,
                ..Row::default()
            });
            finish(&target, gateway).await?;
        }
        Ok(())
    }

    async fn federation_hop(&mut self) -> Result<()> {
        eprintln!("one federation hop");
        for load in [
            Load::Closed {
                events: self.args.events,
                batch: 100,
                in_flight: 2,
            },
            Load::Open {
                rate: self.args.rate,
                seconds: self.args.seconds,
            },
        ] {
            self.gateways += 1;
            let origin = self.federation.member(&format!("GH-{}", self.gateways))?;
            let follower = self.federation.member(&format!("NG-{}", self.gateways))?;
            origin.trust_member(&follower)?;
            follower.trust_member(&origin)?;
            let origin_endpoint = origin.fix_listen_port()?;
            follower.follow(&origin, &origin_endpoint)?;
            let origin_process = self.start(&origin).await?;
            let follower_process = self.start(&follower).await?;
            // Publish at the origin, subscribe at the follower.
            let target = Target::Grpc {
                endpoint: follower_process.endpoint.clone(),
                publisher: self
                    .federation
                    .identity(&format!("{}/customs", origin.member))?,
                subscribers: self.subscriber_identities.clone(),
                circle: String::new(),
            };
            let publish_target = self.grpc_target(
                &origin_process.endpoint,
                self.federation
                    .identity(&format!("{}/customs", origin.member))?,
            );
            let measured = scenario::fanout_via(&publish_target, &target, 1, load).await?;
            let memory = [&origin_process, &follower_process]
                .iter()
                .filter_map(|process| process.pid().and_then(memory_mib))
                .fold((0.0, 0.0), |(rss, peak), (r, p)| (rss + r, peak + p));
            let (batch, offered, scenario) = match load {
                Load::Closed { batch, .. } => (batch, None, "fanout"),
                Load::Open { rate, .. } => (1, Some(rate), "latency"),
            };
            self.push(Row {
                scenario: format!("federation {scenario}"),
                system: format!("{} GH -> NG", self.system()),
                subscribers: 1,
                batch,
                offered_per_s: offered,
                events: measured.events,
                rate_per_s: measured.per_subscriber_rate(),
                p50_us: Some(measured.latency.value_at_quantile(0.5)),
                p99_us: Some(measured.latency.value_at_quantile(0.99)),
                p999_us: Some(measured.latency.value_at_quantile(0.999)),
                rss_mib: Some(memory.0),
                peak_rss_mib: Some(memory.1),
                note: "published at GH, received by an agency subscribed at NG; memory of both gateways; baselines: one hop of the same scenario".into(),
                ..Row::default()
            });
            follower_process.stop().await?;
            origin_process.stop().await?;
        }
        Ok(())
    }

    /// Ten gateways on loopback, all trusting each other's keys: gateway 0 (the hub) has the
    /// other nine as `[[peers]]` with their endpoints (`follow = false`: it needs to reach
    /// them, not their feeds); each of the nine has the hub as a `[[peers]]` entry and follows
    /// its feed (the ordinary baseline's path). With `circle`, the hub creates circle
    /// [`CIRCLE`] and adds the nine.
    async fn circle_gateways(&mut self, circle: bool) -> Result<Vec<(MemberDir, GatewayProcess)>> {
        self.gateways += 1;
        let ids: Vec<String> = (0..CIRCLE_GATEWAYS)
            .map(|index| format!("C{}-{index}", self.gateways))
            .collect();
        let members = self
            .federation
            .members(&ids.iter().map(String::as_str).collect::<Vec<_>>())?;
        let endpoints = members
            .iter()
            .map(MemberDir::fix_listen_port)
            .collect::<Result<Vec<_>>>()?;
        let hub = &members[0];
        for (member, endpoint) in members.iter().zip(&endpoints).skip(1) {
            append_config(
                hub,
                &format!(
                    "\n[[peers]]\nid = \"{}\"\nendpoint = \"{endpoint}\"\nfollow = false\n",
                    member.member
                ),
            )?;
            member.follow(hub, &endpoints[0])?;
        }
        let mut gateways = Vec::with_capacity(members.len());
        for member in members {
            match self.start(&member).await {
                Ok(process) => gateways.push((member, process)),
                Err(error) => {
                    stop_all(gateways).await?;
                    return Err(error);
                }
            }
        }
        if circle {
            let (hub, process) = &gateways[0];
            let mut commands = vec![vec!["create".to_string(), CIRCLE.to_string()]];
            for (member, _) in &gateways[1..] {
                commands.push(vec!["add".into(), CIRCLE.into(), member.member.clone()]);
            }
            for command in commands {
                let args: Vec<&str> = command.iter().map(String::as_str).collect();
                if let Err(error) = circle_command(hub, &process.endpoint, &args).await {
                    let log = process.log_text();
                    stop_all(gateways).await?;
                    bail!("cordon circle {command:?}: {error:#}\n{}", tail(&log));
                }
            }
        }
        Ok(gateways)
    }

    /// One circle delivery run on fresh gateways: `from` publishes (one of its agencies, in
    /// the circle or in the ordinary feed) and one agency of each other gateway must see every
    /// indicator.
    async fn circle_run(&mut self, circle: bool, from: usize, load: Load) -> Result<Row> {
        let gateways = self.circle_gateways(circle).await?;
        let mut receivers = Vec::new();
        let mut publisher = None;
        for (index, (member, process)) in gateways.iter().enumerate() {
            let agency = self
                .federation
                .identity(&format!("{}/customs", member.member))?;
            let target = Target::Grpc {
                endpoint: process.endpoint.clone(),
                publisher: agency.clone(),
                subscribers: vec![agency],
                circle: if circle {
                    CIRCLE.to_string()
                } else {
                    String::new()
                },
            };
            if index == from {
                publisher = Some(target);
            } else {
                receivers.push((target, 0));
            }
        }
        let publisher = publisher.context("no publishing gateway")?;
        let cpu = |gateways: &[(MemberDir, GatewayProcess)]| -> Vec<f64> {
            let mut seconds: Vec<f64> = gateways
                .iter()
                .map(|(_, process)| {
                    process
                        .pid()
                        .and_then(|pid| scenario::cpu_seconds(&pid.to_string()))
                        .unwrap_or_default()
                })
                .collect();
            seconds.push(scenario::cpu_seconds("self").unwrap_or_default());
            seconds
        };
        let cpu_before = cpu(&gateways);
        let started = std::time::Instant::now();
        let measured = scenario::fanout_to(&publisher, &receivers, load).await;
        let wall = started.elapsed().as_secs_f64();
        let cpu_used: Vec<f64> = cpu(&gateways)
            .iter()
            .zip(&cpu_before)
            .map(|(after, before)| after - before)
            .collect();
        let memory = gateways
            .iter()
            .filter_map(|(_, process)| process.pid().and_then(memory_mib))
            .collect::<Vec<_>>();
        let measured = match measured {
            Ok(measured) => measured,
            Err(error) => {
                let logs: Vec<String> = gateways
                    .iter()
                    .map(|(member, process)| {
                        format!("--- {}\n{}", member.member, tail(&process.log_text()))
                    })
                    .collect();
                stop_all(gateways).await?;
                bail!("circle run: {error:#}\n{}", logs.join("\n"));
            }
        };
        stop_all(gateways).await?;
        let Load::Closed {
            batch, in_flight, ..
        } = load
        else {
            bail!("the circle runs are closed-loop");
        };
        let others = CIRCLE_GATEWAYS - 1;
        let system = match (circle, from) {
            (true, 0) => format!("{} hub -> {others} members, circle", self.system()),
            (true, _) => format!(
                "{} member -> hub + {} members, circle",
                self.system(),
                others - 1
            ),
            (false, _) => format!("{} hub -> {others} followers, ordinary", self.system()),
        };
        let max_member = memory
            .iter()
            .skip(1)
            .fold((0.0f64, 0.0f64), |(rss, peak), (r, p)| {
                (rss.max(*r), peak.max(*p))
            });
        let others_cpu: Vec<f64> = cpu_used[..CIRCLE_GATEWAYS]
            .iter()
            .enumerate()
            .filter(|(index, _)| *index != from)
            .map(|(_, seconds)| *seconds)
            .collect();
        Ok(Row {
            scenario: "circle".into(),
            system,
            subscribers: others,
            batch,
            events: measured.events,
            rate_per_s: measured.per_subscriber_rate(),
            p50_us: Some(measured.latency.value_at_quantile(0.5)),
            p99_us: Some(measured.latency.value_at_quantile(0.99)),
            p999_us: Some(measured.latency.value_at_quantile(0.999)),
            rss_mib: memory.first().map(|(rss, _)| *rss),
            peak_rss_mib: memory.first().map(|(_, peak)| *peak),
            acked_per_s: Some(measured.acked_rate),
            note: format!(
                "closed loop, batches of {batch}, {in_flight} in flight; rate: indicators per \
                 second seen by one agency subscribed at each of the {others} receiving \
                 gateways, from the first send to the last delivery at the slowest; latency: \
                 publish to delivery; memory: hub (largest other gateway {:.0} MiB, peak {:.0}); \
                 CPU seconds over {wall:.1} s of warm-up and run: publishing gateway {:.1}, \
                 the other nine {:.1} (largest {:.1}), load tool {:.1}",
                max_member.0,
                max_member.1,
                cpu_used[from],
                others_cpu.iter().sum::<f64>(),
                others_cpu.iter().copied().fold(0.0, f64::max),
                cpu_used[CIRCLE_GATEWAYS],
            ),
            ..Row::default()
        })
    }

    async fn circle(&mut self) -> Result<()> {
        let events = self.args.circle_events;
        eprintln!(
            "circle: {CIRCLE_GATEWAYS} gateways, {events} indicators per run, fresh gateways per run"
        );
        let runs = [
            (100usize, 4usize, false, 0usize),
            (100, 4, true, 0),
            (1, 16, false, 0),
            (1, 16, true, 0),
            // A member publishing: its message goes to the hub, which orders it in the log.
            // No ordinary counterpart (the gateways follow only the hub's feed); its ratio is
            // to the hub's ordinary publish of the same batch.
            (100, 4, true, 1),
        ];
        for (batch, in_flight, circle, from) in runs {
            let load = Load::Closed {
                events,
                batch,
                in_flight,
            };
            let row = self.circle_run(circle, from, load).await?;
            self.push(row);
        }
        for row in self.rows.iter().filter(|row| row.scenario == "circle") {
            eprintln!("    {}: {}", row.system, row.note);
        }
        let rows = self.rows.clone();
        for row in self
            .rows
            .iter_mut()
            .filter(|row| row.scenario == "circle" && row.system.ends_with(", circle"))
        {
            let ordinary = rows.iter().find(|other| {
                other.scenario == "circle"
                    && other.system.ends_with(", ordinary")
                    && other.batch == row.batch
            });
            row.vs_ordinary = ordinary.map(|ordinary| row.rate_per_s / ordinary.rate_per_s);
        }

        eprintln!("circle engine, in process: add and remove one member");
        for size in self.args.circle_sizes.clone() {
            let rows = engine::measure(size, self.args.circle_repetitions).await?;
            for row in &rows {
                eprintln!(
                    "  N={:<4} {:<44} median {:>8} µs (min {}, max {}; checkpoint {} µs), {} B, {} kv rows",
                    row.members,
                    row.operation,
                    row.median_us,
                    row.min_us,
                    row.max_us,
                    row.checkpoint_us,
                    row.commit_bytes,
                    row.kv_changes
                );
            }
            self.engine_rows.extend(rows);
        }
        Ok(())
    }

    /// Fills in the ratios of each row to the baselines of the same scenario and parameters.
    fn ratios(&mut self) {
        let rows = self.rows.clone();
        for row in &mut self.rows {
            let base_scenario = row.scenario.trim_start_matches("federation ").to_string();
            let find = |system: &str| {
                rows.iter().find(|other| {
                    other.system == system
                        && other.scenario == base_scenario
                        && other.subscribers == row.subscribers
                        && other.batch == row.batch
                        && other.offered_per_s == row.offered_per_s
                })
            };
            let ratio = |base: Option<&Row>| {
                let base = base?;
                if row.scenario.ends_with("latency") {
                    Some(row.p99_us? as f64 / base.p99_us?.max(1) as f64)
                } else {
                    Some(row.rate_per_s / base.rate_per_s)
                }
            };
            row.vs_bare = ratio(find(BARE));
            row.vs_nats = ratio(find(NATS));
            if row.scenario == "publish" && !row.system.ends_with("no audit log") {
                let without = format!("{}, no audit log", row.system);
                if find(&without).is_some() {
                    row.vs_no_audit_log = ratio(find(&without));
                }
            }
            if row.scenario.starts_with("taxii ") && row.system.ends_with(", TAXII") {
                let grpc = row.system.replace(", TAXII", ", gRPC");
                let of = |system: &dyn Fn(&str) -> bool| {
                    rows.iter()
                        .find(|other| other.scenario == row.scenario && system(&other.system))
                        .map(|base| row.rate_per_s / base.rate_per_s)
                };
                row.vs_grpc = of(&|system| system == grpc);
                row.vs_medallion = of(&|system| system.starts_with("medallion"));
            }
            if row.scenario.starts_with("commitments ")
                && !row.system.ends_with("no field commitments")
            {
                row.vs_no_commitments =
                    ratio(find(&format!("{}, no field commitments", row.system)));
            }
        }
    }
}

/// Stops what a target started.
async fn finish(target: &Target, gateway: Option<(MemberDir, GatewayProcess)>) -> Result<()> {
    if let Target::Nats(nats) = target {
        delete_nats(nats).await;
    }
    if let Some((_, process)) = gateway {
        process.stop().await?;
    }
    Ok(())
}

/// The circle of the circle scenario, and how many gateways are in it (the hub and nine).
const CIRCLE: &str = "bench";
const CIRCLE_GATEWAYS: usize = 10;

/// Stops the given gateways (each by its own process handle).
async fn stop_all(gateways: Vec<(MemberDir, GatewayProcess)>) -> Result<()> {
    let mut first_error = None;
    for (_, process) in gateways {
        if let Err(error) = process.stop().await {
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}

fn append_config(member: &MemberDir, text: &str) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(member.config())?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

/// `cordon circle ARGS[0] --endpoint E --identity (member's gateway identity) ARGS[1..]`.
async fn circle_command(
    member: &MemberDir,
    endpoint: &str,
    args: &[&str],
) -> Result<serde_json::Value> {
    let mut all: Vec<String> = vec!["circle".into(), args[0].into()];
    all.extend([
        "--endpoint".into(),
        endpoint.to_string(),
        "--identity".into(),
        member.identity().to_str().context("path")?.to_string(),
    ]);
    all.extend(args[1..].iter().map(|arg| arg.to_string()));
    let output = tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        cordon_integration_tests::cordon(&refs)
    })
    .await??;
    Ok(serde_json::from_str(&output)?)
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn machine() -> Machine {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    let memory_gib = read("/proc/meminfo")
        .lines()
        .find(|line| line.starts_with("MemTotal:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let command = |program: &str, args: &[&str]| {
        std::process::Command::new(program)
            .args(args)
            .output()
            .ok()
            .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
            .unwrap_or_default()
    };
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(0, usize::from),
        memory_gib,
        kernel: command("uname", &["-r"]),
        commit: command("git", &["rev-parse", "--short", "HEAD"]),
        date: command("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
    }
}

fn markdown(report: &Report) -> String {
    let mut text = format!(
        "Machine: {} ({} cores, {:.0} GiB), Linux {}, commit {}, {}.\n\nCommand: `{}`\n\n",
        report.machine.cpu,
        report.machine.cores,
        report.machine.memory_gib,
        report.machine.kernel,
        report.machine.commit,
        report.machine.date,
        report.command
    );
    text.push_str("| scenario | system | K | batch | offered/s | events | rate/s | p50 µs | p99 µs | p99.9 µs | RSS MiB (peak) | vs bare | vs NATS |\n");
    text.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    let number = |value: Option<u64>| value.map_or("–".to_string(), |value| value.to_string());
    let ratio = |value: Option<f64>| value.map_or("–".to_string(), |value| format!("{value:.2}"));
    for row in report
        .rows
        .iter()
        .filter(|row| !row.scenario.starts_with("circle"))
    {
        text.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |\n",
            row.scenario,
            row.system,
            row.subscribers,
            row.batch,
            number(row.offered_per_s),
            row.events,
            row.rate_per_s,
            number(row.p50_us),
            number(row.p99_us),
            number(row.p999_us),
            match (row.rss_mib, row.peak_rss_mib) {
                (Some(rss), Some(peak)) => format!("{rss:.0} ({peak:.0})"),
                _ => "–".into(),
            },
            ratio(row.vs_bare),
            ratio(row.vs_nats),
        ));
    }
    text.push_str("\nrate/s: per subscriber (fanout, latency, federation), published (publish) or read (catch-up). vs bare / vs NATS: rate ÷ baseline rate, except latency rows: p99 ÷ baseline p99 (lower is better).\n");
    circle_markdown(report, &mut text);
    if let Some(screening) = &report.screening {
        screening::markdown(screening, &mut text);
    }
    text
}

fn circle_markdown(report: &Report, text: &mut String) {
    let rows: Vec<&Row> = report
        .rows
        .iter()
        .filter(|row| row.scenario.starts_with("circle"))
        .collect();
    let number = |value: Option<u64>| value.map_or("–".to_string(), |value| value.to_string());
    if !rows.is_empty() {
        text.push_str("\n#### Circles: delivery through 10 gateway processes\n\n");
        text.push_str("| system | receivers | batch | events | delivered/s each | acknowledged/s | p50 µs | p99 µs | p99.9 µs | hub RSS MiB (peak) | vs ordinary |\n");
        text.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        for row in rows {
            text.push_str(&format!(
                "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} |\n",
                row.system,
                row.subscribers,
                row.batch,
                row.events,
                row.rate_per_s,
                row.acked_per_s
                    .map_or("–".to_string(), |rate| format!("{rate:.0}")),
                number(row.p50_us),
                number(row.p99_us),
                number(row.p999_us),
                match (row.rss_mib, row.peak_rss_mib) {
                    (Some(rss), Some(peak)) => format!("{rss:.0} ({peak:.0})"),
                    _ => "–".into(),
                },
                row.vs_ordinary
                    .map_or("–".to_string(), |ratio| format!("{ratio:.2}")),
            ));
        }
        text.push_str("\ndelivered/s each: indicators per second seen by one agency subscribed at each receiving gateway, from the first send to the last delivery at the slowest one. acknowledged/s: the publisher's acknowledgements. vs ordinary: delivered/s ÷ that of the ordinary (non-circle) publish through the same ten gateways (the members follow the hub's feed), same batch.\n");
    }
    if !report.circle_engine.is_empty() {
        text.push_str("\n#### Circles: adding and removing a member, in process (no network)\n\n");
        text.push_str("| members | operation | repetitions | median µs | min µs | max µs | of which checkpoint µs | message bytes | kv rows written |\n");
        text.push_str("|---:|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for row in &report.circle_engine {
            text.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
                row.members,
                row.operation,
                row.repetitions,
                row.median_us,
                row.min_us,
                row.max_us,
                row.checkpoint_us,
                row.commit_bytes,
                row.kv_changes
            ));
        }
        text.push_str("\nmembers: before the add and after the remove. Each time is one MLS operation as `Circles::apply` runs it: a journal of the MLS store around the operation, the keys it changed and the circle's rows in one SQLite transaction, a WAL checkpoint when keys were deleted.\n");
    }
}

async fn issue_subscribers(federation: &Federation, count: usize) -> Result<Vec<PathBuf>> {
    let mut identities = Vec::with_capacity(count);
    for index in 0..count {
        identities.push(federation.identity(&format!("NG/b{index}"))?);
    }
    Ok(identities)
}

fn write(out: &Path, report: &Report) -> Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(report)?,
    )?;
    std::fs::write(out.join("results.md"), markdown(report))?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let federation = Federation::new()?;
    let max_subscribers = args.subscribers.iter().copied().max().unwrap_or(1).max(100);
    let subscriber_identities = issue_subscribers(&federation, max_subscribers).await?;
    federation.identity("GH/customs")?;
    let scenario = args.scenario;
    let mut bench = Bench {
        args,
        federation,
        gateways: 0,
        subscriber_identities,
        rows: Vec::new(),
        engine_rows: Vec::new(),
        screening: None,
    };
    let all = scenario == Scenario::All;
    if all || scenario == Scenario::Publish {
        bench.publish().await?;
        bench.audit_proofs()?;
    }
    if all || scenario == Scenario::Fanout {
        bench.fanout(Scenario::Fanout).await?;
    }
    if all || scenario == Scenario::Latency {
        bench.fanout(Scenario::Latency).await?;
    }
    if all || scenario == Scenario::Federation {
        if !all {
            // The ratios need the one-hop baselines of the same loads.
            let subscribers = std::mem::replace(&mut bench.args.subscribers, vec![1]);
            bench.fanout(Scenario::Fanout).await?;
            bench.fanout(Scenario::Latency).await?;
            bench.args.subscribers = subscribers;
        }
        bench.federation_hop().await?;
    }
    if all || scenario == Scenario::Catchup {
        bench.catchup().await?;
    }
    if scenario == Scenario::Circle {
        bench.circle().await?;
    }
    if scenario == Scenario::Disclosure {
        bench.disclosure().await?;
    }
    if scenario == Scenario::Screening {
        bench.screening().await?;
    }
    if scenario == Scenario::Taxii {
        bench.taxii().await?;
    }
    bench.ratios();
    let report = Report {
        machine: machine(),
        command,
        rows: bench.rows,
        circle_engine: bench.engine_rows,
        screening: bench.screening,
    };
    write(&bench.args.out, &report)?;
    println!("{}", markdown(&report));
    Ok(())
}

/// Turns each of the cordon gateway and its twin without an audit log take in the publish
/// scenario.
const PUBLISH_TURNS: usize = 6;

/// What one system did over its turns: events, seconds and every request's latency.
#[derive(Default)]
struct Turns {
    events: u64,
    seconds: f64,
    latency: Option<Histogram<u64>>,
}

impl Turns {
    fn add(&mut self, events: u64, rate: f64, latency: &Histogram<u64>) -> Result<()> {
        self.events += events;
        self.seconds += events as f64 / rate.max(f64::MIN_POSITIVE);
        match &mut self.latency {
            Some(all) => all.add(latency).context("merging latency histograms")?,
            None => self.latency = Some(latency.clone()),
        }
        Ok(())
    }

    fn rate(&self) -> f64 {
        self.events as f64 / self.seconds.max(f64::MIN_POSITIVE)
    }
}

fn publish_row(
    system: String,
    batch: usize,
    events: u64,
    rate: f64,
    latency: Option<&Histogram<u64>>,
    memory: Option<(f64, f64)>,
    note: String,
) -> Row {
    let quantile = |q: f64| latency.map(|latency| latency.value_at_quantile(q));
    Row {
        scenario: "publish".into(),
        system,
        subscribers: 0,
        batch,
        events,
        rate_per_s: rate,
        p50_us: quantile(0.5),
        p99_us: quantile(0.99),
        p999_us: quantile(0.999),
        rss_mib: memory.map(|(rss, _)| rss),
        peak_rss_mib: memory.map(|(_, peak)| peak),
        note,
        ..Row::default()
    }
}
