//! The gateway's Prometheus metrics and the admin listener that serves them.
//!
//! Only aggregate numbers: counts, durations, lags. No metric carries an
//! indicator, an indicator id, a recipient or anything else from the feed; the
//! only label values are fixed words and the member ids of configured peers.
//!
//! The hot path touches atomics only: every labelled counter and histogram is
//! created once here and kept as a handle, so that recording an event is an
//! index and an increment (a histogram observation takes the crate's own small
//! lock). What is cheaper to read than to keep up to date (open subscriptions
//! and their lag, the followers' counts and lag) is read at scrape time.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use cordon_policy::Channel;
use cordon_proto::v1::PeerStatus;

mod admin;
pub use admin::{bind_admin, serve_admin};

/// 10 µs .. 250 ms: a cached decision takes microseconds, the default time limit is 100 ms.
const POLICY_DECISION_BUCKETS: [f64; 14] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1, 0.25,
];
/// 100 µs .. 5 s: an fsync'd SQLite commit takes milliseconds.
const STORAGE_COMMIT_BUCKETS: [f64; 15] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0,
];

fn storage_histogram() -> Histogram {
    Histogram::new(STORAGE_COMMIT_BUCKETS)
}

/// The `Content-Type` of what [`Metrics::encode`] returns (Prometheus text, 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// How a release decision ended, as the `outcome` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    /// The policy said no.
    Denied,
    /// Denied because the policy or redaction failed (undefined, error,
    /// time-out, bad shape, bad redaction path).
    FailedClosed,
    /// Denied by the hard floor before the policy ran.
    HardFloor,
}

impl Outcome {
    pub const ALL: [Outcome; 4] = [
        Outcome::Allowed,
        Outcome::Denied,
        Outcome::FailedClosed,
        Outcome::HardFloor,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::FailedClosed => "failed_closed",
            Outcome::HardFloor => "hard_floor",
        }
    }
}

/// What the metrics read of the followers of partner gateways at scrape time: their counts
/// and lag, as `cordon peers` shows them. The federation's followers provide it.
pub trait FollowerStatuses: Send + Sync + std::fmt::Debug {
    fn statuses(&self) -> Vec<PeerStatus>;
}

/// A storage call timed from the gateway's side, as the `operation` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageOperation {
    /// An agency's batch (Publish).
    Publish,
    /// An agency's retraction (Retract).
    Retract,
    /// A follower's page from a peer, with its cursor.
    Receive,
    /// A group commit of the decision log.
    Decisions,
}

impl StorageOperation {
    pub const ALL: [StorageOperation; 4] = [
        StorageOperation::Publish,
        StorageOperation::Retract,
        StorageOperation::Receive,
        StorageOperation::Decisions,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StorageOperation::Publish => "publish",
            StorageOperation::Retract => "retract",
            StorageOperation::Receive => "receive",
            StorageOperation::Decisions => "decisions",
        }
    }
}

type Labels = [(&'static str, &'static str); 2];

/// The calls limited per identity (see `feed/rates.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitedCall {
    /// A Subscribe call starting behind the feed head.
    SubscribeReread,
    Get,
}

impl RateLimitedCall {
    pub const ALL: [RateLimitedCall; 2] = [RateLimitedCall::SubscribeReread, RateLimitedCall::Get];

    pub fn as_str(self) -> &'static str {
        match self {
            RateLimitedCall::SubscribeReread => "subscribe_reread",
            RateLimitedCall::Get => "get",
        }
    }

    /// For people: `Subscribe calls starting behind the head per minute`.
    pub fn description(self) -> &'static str {
        match self {
            RateLimitedCall::SubscribeReread => {
                "Subscribe calls starting behind the feed head per minute"
            }
            RateLimitedCall::Get => "Get calls per minute",
        }
    }
}

/// The registry and the handles the gateway records into.
pub struct Metrics {
    registry: Registry,
    published: Counter,
    screened: Counter,
    alerts: Counter,
    /// `[outcome][channel]`, in the order of [`Outcome::ALL`] and [`Channel::ALL`].
    decisions: [[Counter; 3]; 4],
    policy_decision: Histogram,
    /// In the order of [`StorageOperation::ALL`].
    storage_commit: [Histogram; 4],
    /// In the order of [`RateLimitedCall::ALL`].
    rate_limited: [Counter; 2],
    sources: Arc<ScrapeSources>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Metrics")
            .field("published", &self.published.get())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let published = Counter::default();
        registry.register(
            "cordon_published_indicators",
            "Indicators accepted by Publish (committed)",
            published.clone(),
        );

        let screened = Counter::default();
        registry.register(
            "cordon_screened_declarations",
            "Declarations screened (results stored)",
            screened.clone(),
        );
        let alerts = Counter::default();
        registry.register(
            "cordon_alerts_raised",
            "Alerts raised to agencies (stored)",
            alerts.clone(),
        );

        let decision_family = Family::<Labels, Counter>::default();
        // Decisions inside circles are counted but not served: one per member and indicator,
        // they would tell anyone who can reach the admin listener how large each circle is.
        let decisions = Outcome::ALL.map(|outcome| {
            Channel::ALL.map(|channel| match channel {
                Channel::Circle => Counter::default(),
                Channel::Subscribe | Channel::Federation => decision_family.get_or_create_owned(&[
                    ("outcome", outcome.as_str()),
                    ("channel", channel.as_str()),
                ]),
            })
        });
        registry.register(
            "cordon_release_decisions",
            "Release decisions by outcome (allowed, denied by the policy, failed closed, hard floor) and channel (subscribe, federation; decisions inside circles are not served)",
            decision_family,
        );

        let policy_decision = Histogram::new(POLICY_DECISION_BUCKETS);
        registry.register(
            "cordon_policy_decision_seconds",
            "Time of one release decision: hard floor, policy and redaction",
            policy_decision.clone(),
        );

        let storage_family = Family::<
            [(&'static str, &'static str); 1],
            Histogram,
            fn() -> Histogram,
        >::new_with_constructor(storage_histogram);
        let storage_commit = StorageOperation::ALL.map(|operation| {
            storage_family.get_or_create_owned(&[("operation", operation.as_str())])
        });
        registry.register(
            "cordon_storage_commit_seconds",
            "Time of a storage call as the gateway sees it, by operation",
            storage_family,
        );

        let rate_limited_family = Family::<[(&'static str, &'static str); 1], Counter>::default();
        let rate_limited = RateLimitedCall::ALL
            .map(|call| rate_limited_family.get_or_create_owned(&[("call", call.as_str())]));
        registry.register(
            "cordon_rate_limited_requests",
            "Calls refused with RESOURCE_EXHAUSTED because their identity used its quota, by call",
            rate_limited_family,
        );

        let sources = Arc::new(ScrapeSources::default());
        registry.register_collector(Box::new(ScrapeCollector(sources.clone())));
        Metrics {
            registry,
            published,
            screened,
            alerts,
            decisions,
            policy_decision,
            storage_commit,
            rate_limited,
            sources,
        }
    }

    /// A call of `call` was refused: its identity had used its quota.
    pub fn rate_limited(&self, call: RateLimitedCall) {
        self.rate_limited[call as usize].inc();
    }

    /// The feed head that subscriptions' lag is measured against.
    pub fn attach_feed_head(&self, head: watch::Receiver<u64>) {
        let _ = self.sources.feed_head.set(head);
    }

    /// The followers, whose counts and lag are read at scrape time.
    pub fn attach_followers(&self, followers: Arc<dyn FollowerStatuses>) {
        let _ = self.sources.followers.set(followers);
    }

    /// `count` indicators were committed by Publish.
    pub fn published(&self, count: u64) {
        self.published.inc_by(count);
    }

    /// `count` declarations were screened and their results stored.
    pub fn screened(&self, count: u64) {
        self.screened.inc_by(count);
    }

    /// `count` alerts were raised (offered to storage: those stored before count again).
    pub fn alerts_raised(&self, count: u64) {
        self.alerts.inc_by(count);
    }

    pub fn published_total(&self) -> u64 {
        self.published.get()
    }

    /// One release decision and how long it took.
    pub fn decision(&self, outcome: Outcome, channel: Channel, elapsed: Duration) {
        self.decisions[outcome as usize][channel.index()].inc();
        if channel != Channel::Circle {
            self.policy_decision.observe(elapsed.as_secs_f64());
        }
    }

    /// Decisions counted with `outcome` on `channel`.
    pub fn decisions(&self, outcome: Outcome, channel: Channel) -> u64 {
        self.decisions[outcome as usize][channel.index()].get()
    }

    /// Decisions counted since start, over every outcome and channel.
    pub fn decisions_total(&self) -> u64 {
        self.decisions.iter().flatten().map(Counter::get).sum()
    }

    /// Decisions that failed closed since start, over every channel.
    pub fn failed_closed_total(&self) -> u64 {
        self.decisions[Outcome::FailedClosed as usize]
            .iter()
            .map(Counter::get)
            .sum()
    }

    pub fn storage(&self, operation: StorageOperation, elapsed: Duration) {
        self.storage_commit[operation as usize].observe(elapsed.as_secs_f64());
    }

    /// Runs the storage call `call` and records how long it took, whatever its result.
    pub async fn time_storage<F: Future>(&self, operation: StorageOperation, call: F) -> F::Output {
        let started = Instant::now();
        let output = call.await;
        self.storage(operation, started.elapsed());
        output
    }

    /// Registers an open subscription from `after`; it counts until the handle is dropped.
    pub fn subscription(&self, after: u64) -> SubscriptionCursor {
        let id = self
            .sources
            .next_subscription
            .fetch_add(1, Ordering::Relaxed);
        let cursor = Arc::new(AtomicU64::new(after));
        self.sources
            .cursors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(id, cursor.clone());
        SubscriptionCursor {
            id,
            cursor,
            sources: self.sources.clone(),
        }
    }

    /// Everything in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String does not fail; a collector's error would be a bug.
        if let Err(error) =
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
        {
            tracing::error!(%error, "encoding metrics failed");
        }
        text
    }
}

/// One open subscription's position in the feed, for the lag gauges.
#[derive(Debug)]
pub struct SubscriptionCursor {
    id: u64,
    cursor: Arc<AtomicU64>,
    sources: Arc<ScrapeSources>,
}

impl SubscriptionCursor {
    /// The subscription has been sent (or moved past) everything up to `sequence`.
    pub fn advance(&self, sequence: u64) {
        self.cursor.store(sequence, Ordering::Relaxed);
    }
}

impl Drop for SubscriptionCursor {
    fn drop(&mut self) {
        self.sources
            .cursors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&self.id);
    }
}

/// What is read at scrape time.
#[derive(Debug, Default)]
struct ScrapeSources {
    feed_head: OnceLock<watch::Receiver<u64>>,
    followers: OnceLock<Arc<dyn FollowerStatuses>>,
    /// Open subscriptions' cursors; the lock is taken when one opens or ends
    /// and at scrape time, never per event.
    cursors: Mutex<HashMap<u64, Arc<AtomicU64>>>,
    next_subscription: AtomicU64,
}

#[derive(Debug)]
struct ScrapeCollector(Arc<ScrapeSources>);

impl ScrapeCollector {
    /// (open subscriptions, sum of their lags, the largest lag).
    fn subscriptions(&self) -> (u64, u64, u64) {
        let head = self
            .0
            .feed_head
            .get()
            .map(|head| *head.borrow())
            .unwrap_or(0);
        let cursors = self
            .0
            .cursors
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut sum = 0u64;
        let mut max = 0u64;
        for cursor in cursors.values() {
            let lag = head.saturating_sub(cursor.load(Ordering::Relaxed));
            sum = sum.saturating_add(lag);
            max = max.max(lag);
        }
        (cursors.len() as u64, sum, max)
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
    gauge.encode(metric)
}

impl Collector for ScrapeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (open, lag_sum, lag_max) = self.subscriptions();
        gauge(
            &mut encoder,
            "cordon_open_subscriptions",
            "Open Subscribe streams",
            open,
        )?;
        gauge(
            &mut encoder,
            "cordon_subscriber_lag_events",
            "Sum over open subscriptions of the feed head minus the subscription's cursor",
            lag_sum,
        )?;
        gauge(
            &mut encoder,
            "cordon_subscriber_max_lag_events",
            "Largest feed head minus cursor of an open subscription",
            lag_max,
        )?;
        let Some(followers) = self.0.followers.get() else {
            return Ok(());
        };
        let statuses = followers.statuses();
        if statuses.is_empty() {
            return Ok(());
        }
        {
            let mut metric = encoder.encode_descriptor(
                "cordon_peer_lag_events",
                "A follower's lag behind its peer: the peer's last known head minus the stored cursor",
                None,
                MetricType::Gauge,
            )?;
            for status in &statuses {
                let labels = [("peer", status.id.as_str())];
                ConstGauge::new(status.lag).encode(metric.encode_family(&labels)?)?;
            }
        }
        {
            let mut metric = encoder.encode_descriptor(
                "cordon_peer_log_alarms",
                "Checks of a peer's audit log that found it rewritten or forked (a checkpoint that does not extend the one checked before)",
                None,
                MetricType::Counter,
            )?;
            for status in &statuses {
                let labels = [("peer", status.id.as_str())];
                ConstCounter::new(status.log_alarms).encode(metric.encode_family(&labels)?)?;
            }
        }
        let mut metric = encoder.encode_descriptor(
            "cordon_peer_received",
            "Items a follower received from its peer, by result (stored, duplicate, refused, retraction applied)",
            None,
            MetricType::Counter,
        )?;
        for status in &statuses {
            for (result, value) in [
                ("stored", status.stored),
                ("duplicate", status.duplicates),
                ("refused", status.refused),
                ("retraction", status.retractions),
            ] {
                let labels = [("peer", status.id.as_str()), ("result", result)];
                ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
    }

    #[test]
    fn names_labels_and_values() {
        let metrics = Metrics::new();
        metrics.published(3);
        metrics.decision(
            Outcome::Allowed,
            Channel::Subscribe,
            Duration::from_micros(50),
        );
        metrics.decision(
            Outcome::HardFloor,
            Channel::Federation,
            Duration::from_micros(5),
        );
        metrics.storage(StorageOperation::Publish, Duration::from_millis(2));
        let text = metrics.encode();
        assert_eq!(
            sample(&text, "cordon_published_indicators_total"),
            Some("3")
        );
        assert_eq!(
            sample(
                &text,
                r#"cordon_release_decisions_total{outcome="allowed",channel="subscribe"}"#
            ),
            Some("1")
        );
        assert_eq!(
            sample(
                &text,
                r#"cordon_release_decisions_total{outcome="hard_floor",channel="federation"}"#
            ),
            Some("1")
        );
        // Every served combination is there from the start, at zero; circles are not served.
        assert_eq!(
            sample(
                &text,
                r#"cordon_release_decisions_total{outcome="failed_closed",channel="subscribe"}"#
            ),
            Some("0")
        );
        assert!(!text.contains(r#"channel="circle""#), "{text}");
        assert_eq!(
            sample(&text, "cordon_policy_decision_seconds_count"),
            Some("2")
        );
        assert_eq!(
            sample(&text, r#"cordon_policy_decision_seconds_bucket{le="+Inf"}"#),
            Some("2")
        );
        assert_eq!(
            sample(
                &text,
                r#"cordon_storage_commit_seconds_count{operation="publish"}"#
            ),
            Some("1")
        );
        assert_eq!(
            sample(
                &text,
                r#"cordon_storage_commit_seconds_count{operation="decisions"}"#
            ),
            Some("0")
        );
        assert!(text.contains("# TYPE cordon_policy_decision_seconds histogram"));
        assert!(text.contains("# TYPE cordon_published_indicators_total counter"));
        assert_eq!(metrics.decisions(Outcome::Allowed, Channel::Subscribe), 1);
        assert_eq!(metrics.decisions(Outcome::Denied, Channel::Subscribe), 0);
    }

    #[test]
    fn subscription_lag_is_read_at_scrape_time() {
        let metrics = Metrics::new();
        let (head, receiver) = watch::channel(10u64);
        metrics.attach_feed_head(receiver);
        let first = metrics.subscription(0);
        let second = metrics.subscription(4);
        let text = metrics.encode();
        assert_eq!(sample(&text, "cordon_open_subscriptions"), Some("2"));
        assert_eq!(sample(&text, "cordon_subscriber_lag_events"), Some("16"));
        assert_eq!(
            sample(&text, "cordon_subscriber_max_lag_events"),
            Some("10")
        );
        first.advance(10);
        head.send(12).unwrap();
        drop(second);
        let text = metrics.encode();
        assert_eq!(sample(&text, "cordon_open_subscriptions"), Some("1"));
        assert_eq!(sample(&text, "cordon_subscriber_lag_events"), Some("2"));
        assert_eq!(sample(&text, "cordon_subscriber_max_lag_events"), Some("2"));
        drop(first);
        let text = metrics.encode();
        assert_eq!(sample(&text, "cordon_open_subscriptions"), Some("0"));
        assert_eq!(sample(&text, "cordon_subscriber_lag_events"), Some("0"));
    }
}
