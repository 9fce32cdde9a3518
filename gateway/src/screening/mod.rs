//! Screening and alerts: a member's agencies check declarations against every indicator the
//! gateway holds and may show them, with an explainable risk score from the board's risk
//! policy; declarations they screened and entries they watch raise alerts when intelligence
//! arriving later matches them.
//!
//! - [`subjects`]: declarations, indicators and watchlist entries as matching sees them;
//!   [`check`]: whether declarations can be read at all.
//! - [`screen`]: one screening: candidates from the index, only those valid now, not
//!   retracted or superseded, and released to the agency by the release room (each decision
//!   logged); explained matches (`cordon_matching::compare` on the released form); the risk
//!   policy's assessment; the screening stored with its watch.
//! - [`follower`]: one task keeps the candidate index current with the feed (published,
//!   received, decrypted from a circle, retracted, superseded), loads watches as they are
//!   stored, and raises alerts, durably and at least once ([`alerts`]).
//! - [`service`]: `ScreeningService` and `AlertService`.
//!
//! This room decides no release itself: it asks the release room, as Subscribe does. The
//! matching crate holds the indexes; storage holds screenings, watches and alerts.

mod alerts;
pub(crate) mod check;
mod follower;
mod screen;
pub(crate) mod service;
pub mod subjects;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use cordon_matching::{Index, Prepared};
use cordon_policy::Policy;
use cordon_storage::Store;
use tokio::sync::{Notify, watch};

use crate::metrics::Metrics;
use crate::release::{DecisionLog, Releaser};

/// Similarity at or above which two names match, unless the board's data sets
/// `screening.name_threshold`.
pub const DEFAULT_NAME_THRESHOLD: f64 = 0.9;

/// What screening shares with the rest of the gateway.
#[derive(Debug, Clone)]
pub struct ScreeningContext {
    pub member: String,
    pub store: Store,
    pub releaser: Arc<Releaser>,
    pub decision_log: DecisionLog,
    pub metrics: Arc<Metrics>,
    /// How long a screened declaration stays watched (`[screening] watch_days`).
    pub watch_for: Duration,
}

/// A watch as the follower knows it; its agency and subject stay in the database.
#[derive(Debug, Clone, Copy)]
struct WatchInfo {
    from_sequence: u64,
    until_micros: Option<i64>,
}

/// The watches: screened declarations and entries, by number, in their own index and lock, so
/// that loading watches never holds up a screening reading the candidates.
#[derive(Debug, Default)]
struct Watches {
    index: Index,
    watched: HashMap<u64, WatchInfo>,
    /// Watches with an end, by when they end.
    ending: BTreeMap<i64, Vec<u64>>,
}

impl Watches {
    fn add(&mut self, number: u64, info: WatchInfo, subject: &Prepared) {
        if self.watched.contains_key(&number) {
            return;
        }
        if let Some(until) = info.until_micros {
            self.ending.entry(until).or_default().push(number);
        }
        self.index.insert(number, subject);
        self.watched.insert(number, info);
    }

    fn remove(&mut self, number: u64, subject: &Prepared) {
        if self.watched.remove(&number).is_some() {
            self.index.remove(number, subject);
        }
    }
}

/// Screening of this gateway: the indexes, and the position of the candidate index in the feed.
#[derive(Debug)]
pub struct Screening {
    context: ScreeningContext,
    /// Indicators held, by the feed sequence that published them.
    candidates: RwLock<Index>,
    watches: RwLock<Watches>,
    /// The feed sequence up to which the candidate index is current.
    position: watch::Sender<u64>,
    /// Wakes the follower when watches were stored.
    watches_added: Notify,
    /// Declarations screened here, prepared, by screening id: the follower takes a watch's
    /// subject from here instead of decoding and preparing the stored declaration again.
    /// Bounded: past [`MAX_HANDED_OVER`] the follower decodes, as it does for other replicas'.
    handed_over: Mutex<HashMap<String, Prepared>>,
    shutdown: watch::Receiver<bool>,
}

/// Prepared declarations waiting for the follower at most.
const MAX_HANDED_OVER: usize = 20_000;

impl Screening {
    /// Starts the follower that builds the candidate index from the feed and raises alerts.
    pub fn start(
        context: ScreeningContext,
        shutdown: watch::Receiver<bool>,
    ) -> (Arc<Screening>, tokio::task::JoinHandle<()>) {
        let screening = Arc::new(Screening {
            context,
            candidates: RwLock::new(Index::default()),
            watches: RwLock::new(Watches::default()),
            position: watch::Sender::new(0),
            watches_added: Notify::new(),
            handed_over: Mutex::new(HashMap::new()),
            shutdown,
        });
        let task = tokio::spawn(follower::run(screening.clone()));
        (screening, task)
    }

    /// Keeps the prepared declarations of stored screenings for the follower.
    fn hand_over(&self, prepared: impl Iterator<Item = (String, Prepared)>) {
        let mut held = self
            .handed_over
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for (id, subject) in prepared {
            if held.len() >= MAX_HANDED_OVER {
                break;
            }
            held.insert(id, subject);
        }
    }

    /// The prepared declaration of screening `id`, if it was screened here.
    fn take_handed_over(&self, id: &str) -> Option<Prepared> {
        self.handed_over
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(id)
    }

    /// Forgets what was handed over for screenings that were not stored.
    fn withdraw(&self, ids: &[&str]) {
        let mut held = self
            .handed_over
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for id in ids {
            held.remove(*id);
        }
    }

    /// The candidate index; lock it before [`Screening::watches`] when both are needed.
    fn candidates(&self) -> RwLockReadGuard<'_, Index> {
        self.candidates
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn candidates_mut(&self) -> RwLockWriteGuard<'_, Index> {
        self.candidates
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn watches(&self) -> RwLockReadGuard<'_, Watches> {
        self.watches
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn watches_mut(&self) -> RwLockWriteGuard<'_, Watches> {
        self.watches
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The feed sequence up to which the candidate index is current.
    pub fn position(&self) -> u64 {
        *self.position.borrow()
    }

    /// Waits until the candidate index has applied the feed up to `sequence`, so that a
    /// screening sees every indicator acknowledged before it; `false` if that takes longer
    /// than `patience` or the gateway stops.
    async fn caught_up_to(&self, sequence: u64, patience: Duration) -> bool {
        let mut position = self.position.subscribe();
        let mut shutdown = self.shutdown.clone();
        tokio::time::timeout(patience, async {
            tokio::select! {
                reached = position.wait_for(|position| *position >= sequence) => reached.is_ok(),
                _ = shutdown.wait_for(|stopping| *stopping) => false,
            }
        })
        .await
        .unwrap_or(false)
    }
}

/// The board's name threshold: `data.screening.name_threshold`, between 0.5 and 1, else the
/// default.
pub fn name_threshold(policy: &Policy) -> f64 {
    policy
        .data()
        .get("screening")
        .and_then(|screening| screening.get("name_threshold"))
        .and_then(serde_json::Value::as_f64)
        .filter(|threshold| (0.5..=1.0).contains(threshold))
        .unwrap_or(DEFAULT_NAME_THRESHOLD)
}
