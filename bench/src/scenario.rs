//! The measurements: publish throughput, fan-out (closed loop for throughput,
//! open loop for latency at a fixed offered load) and catch-up. Every one runs
//! the same client code against every [`Target`].

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cordon_proto::v1::{Indicator, Tlp, Vessel, indicator};
use futures::StreamExt;
use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::target::{Publisher, Target};

/// How long a scenario may take before it is declared stuck.
const STUCK: Duration = Duration::from_secs(600);

static T0: OnceLock<Instant> = OnceLock::new();

fn t0() -> Instant {
    *T0.get_or_init(Instant::now)
}

/// Latencies in microseconds, 1 µs to 10 minutes, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// A valid TLP:CLEAR vessel indicator whose narrative carries the time it was
/// (to be) sent, so that any receiver in this process can measure its latency.
pub fn bench_indicator(scheduled: Instant) -> Indicator {
    let nanos = scheduled.saturating_duration_since(t0()).as_nanos();
    Indicator {
        tlp: Tlp::Clear as i32,
        confidence: 50,
        valid_from: Some(cordon_proto::Timestamp {
            seconds: 1_790_000_000,
            nanos: 0,
        }),
        narrative: format!("bench:{nanos}"),
        kind: Some(indicator::Kind::Vessel(Vessel {
            imo: "9234563".into(),
            name: "BENCH".into(),
            ..Vessel::default()
        })),
        ..Indicator::default()
    }
}

fn warmup_indicator() -> Indicator {
    let mut indicator = bench_indicator(Instant::now());
    indicator.narrative = "warmup".into();
    indicator
}

/// The send time carried by a bench indicator.
fn sent_at(indicator: &Indicator) -> Option<Instant> {
    let nanos: u64 = indicator.narrative.strip_prefix("bench:")?.parse().ok()?;
    Some(t0() + Duration::from_nanos(nanos))
}

/// How the publisher offers load.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// As fast as acknowledgements come back: `events` in batches of `batch`,
    /// `in_flight` requests outstanding.
    Closed {
        events: u64,
        batch: usize,
        in_flight: usize,
    },
    /// One indicator per request at `rate` per second for `seconds`, each sent
    /// at its scheduled time whether or not earlier ones were acknowledged.
    Open { rate: u64, seconds: u64 },
}

impl Load {
    pub fn events(&self) -> u64 {
        match *self {
            Load::Closed { events, .. } => events,
            Load::Open { rate, seconds } => rate * seconds,
        }
    }
}

/// What the subscribers of one fan-out run saw.
#[derive(Debug)]
pub struct Fanout {
    pub events: u64,
    /// From the first send to the last delivery to the slowest subscriber.
    pub seconds: f64,
    /// Publish-to-delivery latency over every delivery, µs.
    pub latency: Histogram<u64>,
    /// Indicators acknowledged to the publisher per second, from the first send to the
    /// last acknowledgement.
    pub acked_rate: f64,
}

impl Fanout {
    pub fn per_subscriber_rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }
}

/// One publisher, `subscribers` subscribers that each must receive every event.
pub async fn fanout(target: &Target, subscribers: usize, load: Load) -> Result<Fanout> {
    fanout_via(target, target, subscribers, load).await
}

/// As [`fanout`], publishing to `publish_to` and subscribing at `target` (for
/// example a gateway that follows `publish_to`).
pub async fn fanout_via(
    publish_to: &Target,
    target: &Target,
    subscribers: usize,
    load: Load,
) -> Result<Fanout> {
    let receivers: Vec<(Target, usize)> = (0..subscribers)
        .map(|index| (target.clone(), index))
        .collect();
    fanout_to(publish_to, &receivers, load).await
}

/// As [`fanout`], publishing to `publish_to`, with one subscriber per entry of
/// `receivers`: subscriber `index` of that target (for example one agency at each of
/// several gateways).
pub async fn fanout_to(
    publish_to: &Target,
    receivers: &[(Target, usize)],
    load: Load,
) -> Result<Fanout> {
    let subscribers = receivers.len();
    let expected = load.events();
    let (ready_tx, mut ready_rx) = mpsc::channel::<usize>(subscribers.max(1));
    let mut consumers = JoinSet::new();
    for (target, index) in receivers.iter().cloned() {
        let ready = ready_tx.clone();
        consumers.spawn(async move {
            let mut stream = target.subscribe(index, 0).await?;
            let mut latency = histogram();
            let mut count = 0u64;
            let mut announced = false;
            let mut last = Instant::now();
            while count < expected {
                let indicator = stream.next().await.context("subscription ended early")??;
                let now = Instant::now();
                match sent_at(&indicator) {
                    Some(sent) => {
                        count += 1;
                        last = now;
                        let micros = now.saturating_duration_since(sent).as_micros() as u64;
                        latency.saturating_record(micros.max(1));
                    }
                    None if !announced => {
                        announced = true;
                        let _ = ready.send(index).await;
                    }
                    None => {}
                }
            }
            anyhow::Ok((latency, last))
        });
    }
    drop(ready_tx);

    // Warm up until every subscriber is connected and has seen a warm-up event
    // (the bare baseline only streams what is sent after a subscriber joined).
    let mut publisher = publish_to.publisher().await?;
    let mut ready = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while ready < subscribers {
        publisher.publish(vec![warmup_indicator()]).await?;
        let wait = tokio::time::sleep(Duration::from_millis(200));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                got = ready_rx.recv() => match got {
                    Some(_) => { ready += 1; if ready == subscribers { break; } }
                    None => break,
                },
                () = &mut wait => break,
            }
        }
        if Instant::now() > deadline {
            bail!("only {ready} of {subscribers} subscribers were ready after 120 s");
        }
        if let Some(result) = consumers.try_join_next() {
            result??;
            bail!("a subscriber ended during warm-up");
        }
    }

    let start = Instant::now();
    let publishing = tokio::spawn(offer(publisher, load, start));
    let mut latency = histogram();
    let mut last = start;
    let collect = async {
        while let Some(result) = consumers.join_next().await {
            let (seen, at) = result??;
            latency.add(seen).context("merging latencies")?;
            last = last.max(at);
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(STUCK, collect)
        .await
        .context("subscribers did not receive everything in time")??;
    let (requests, acked_rate) = publishing.await??;
    eprintln!(
        "    publish requests: p50 {} µs, p99 {} µs; {acked_rate:.0} acknowledged/s",
        requests.value_at_quantile(0.5),
        requests.value_at_quantile(0.99)
    );
    Ok(Fanout {
        events: expected,
        seconds: last.duration_since(start).as_secs_f64(),
        latency,
        acked_rate,
    })
}

/// Publishes `load`; returns the request latencies (µs) and the send rate.
async fn offer(publisher: Publisher, load: Load, start: Instant) -> Result<(Histogram<u64>, f64)> {
    match load {
        Load::Closed {
            events,
            batch,
            in_flight,
        } => {
            let next = std::sync::Arc::new(AtomicU64::new(0));
            let mut workers = JoinSet::new();
            for _ in 0..in_flight.max(1) {
                let mut publisher = publisher.clone();
                let next = next.clone();
                workers.spawn(async move {
                    let mut latency = histogram();
                    loop {
                        let first = next.fetch_add(batch as u64, Ordering::Relaxed);
                        if first >= events {
                            break;
                        }
                        let count = (events - first).min(batch as u64) as usize;
                        let sent = Instant::now();
                        let indicators = (0..count).map(|_| bench_indicator(sent)).collect();
                        publisher.publish(indicators).await?;
                        latency.saturating_record(sent.elapsed().as_micros() as u64);
                    }
                    anyhow::Ok(latency)
                });
            }
            let mut latency = histogram();
            while let Some(result) = workers.join_next().await {
                latency.add(result??)?;
            }
            Ok((latency, events as f64 / start.elapsed().as_secs_f64()))
        }
        Load::Open { rate, seconds } => {
            let total = rate * seconds;
            let interval = Duration::from_secs_f64(1.0 / rate as f64);
            let mut requests = JoinSet::new();
            let mut latency = histogram();
            for index in 0..total {
                let scheduled = start + interval.mul_f64(index as f64);
                tokio::time::sleep_until(scheduled.into()).await;
                let mut publisher = publisher.clone();
                requests.spawn(async move {
                    publisher.publish(vec![bench_indicator(scheduled)]).await?;
                    anyhow::Ok(scheduled.elapsed().as_micros() as u64)
                });
                // Reap finished requests so the set stays small.
                while let Some(done) = requests.try_join_next() {
                    latency.saturating_record(done??);
                }
            }
            while let Some(result) = requests.join_next().await {
                latency.saturating_record(result??);
            }
            Ok((latency, total as f64 / start.elapsed().as_secs_f64()))
        }
    }
}

/// Publish throughput with no subscriber: indicators per second and request latency.
pub async fn publish_throughput(
    target: &Target,
    batch: usize,
    in_flight: usize,
    events: u64,
) -> Result<(f64, Histogram<u64>)> {
    let publisher = target.publisher().await?;
    let start = Instant::now();
    let (latency, rate) = offer(
        publisher,
        Load::Closed {
            events,
            batch,
            in_flight,
        },
        start,
    )
    .await?;
    Ok((rate, latency))
}

/// Stores `events` indicators (batches of 1000) for a later catch-up.
pub async fn preload(target: &Target, events: u64) -> Result<f64> {
    let (rate, _) = publish_throughput(target, 1000, 2, events).await?;
    Ok(rate)
}

/// A new subscriber reads `events` stored events from the start: events per second.
pub async fn catch_up(target: &Target, events: u64) -> Result<f64> {
    let mut stream = target.subscribe(0, 0).await?;
    let start = Instant::now();
    let mut count = 0u64;
    let read = async {
        while count < events {
            stream
                .next()
                .await
                .context("the catch-up stream ended early")??;
            count += 1;
        }
        anyhow::Ok(())
    };
    tokio::time::timeout(STUCK, read)
        .await
        .context("catch-up did not finish in time")??;
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

/// Resident and peak resident memory of process `pid`, MiB, from /proc.
pub fn memory_mib(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<f64> {
        let line = status.lines().find(|line| line.starts_with(name))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// User plus system CPU time of process `pid` (`self` for this process), seconds, from /proc.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on Linux.
    Some((utime + stime) / 100.0)
}
