//! Following partner gateways: one follower task per `[[peers]]` entry.
//!
//! A follower subscribes to its peer as this gateway (mutual TLS, the peer's
//! certificate must name the peer), from the durable cursor it keeps for that
//! peer, with `follow` set. For each page of events it receives it checks every
//! item (the originator's signature over the canonical encoding, the
//! originator being a known member, the indicator's validity) and then stores
//! the accepted items and the new cursor in one transaction
//! ([`cordon_storage::Store::receive`]). So after a crash on either side the
//! follower resumes exactly after the last page it stored: nothing is lost and,
//! since an id already held is skipped, nothing is stored twice, whichever
//! path it came by.
//!
//! Refused items (forged, altered, unknown originator, invalid) are logged
//! with the reason and counted; the cursor moves past them, since asking again
//! would only bring the same bytes. Indicators this gateway originated are
//! dropped when they come back (cycles end there). Retractions carry the
//! originator's own signature, so a relayed one is as verifiable as the
//! indicator; one is applied only to an indicator held from the same
//! originator, and then travels on to whoever received it here.
//!
//! On any error the follower reconnects with exponential backoff and jitter.
//!
//! This room owns the links to partner gateways: the followers ([`follower`]), their mutual
//! TLS ([`peer_tls`]) and `cordon peers` ([`service`]). It stores what it accepted through
//! storage and never decides a release: what it stored joins the feed like any indicator.

mod follower;
pub mod peer_tls;
mod service;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cordon_indicator::Limits;
use cordon_proto::v1::PeerStatus;
use cordon_storage::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::timestamp_of;
use crate::config::PeerConfig;
use crate::metrics::{FollowerStatuses, Metrics};
use crate::signing::FederationKeys;
use follower::Follower;
pub use peer_tls::TlsFiles;
pub use service::FederationApi;

/// First reconnection delay; doubles per failed attempt up to [`BACKOFF_MAX`].
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// What every follower of this gateway needs.
#[derive(Debug, Clone)]
pub struct FollowerContext {
    pub member: String,
    pub federation: String,
    pub store: Store,
    pub keys: Arc<FederationKeys>,
    pub limits: Limits,
    pub tls: TlsFiles,
    /// Times the follower's storage calls; its counts and lag are read from
    /// the [`PeerTracker`]s at scrape time.
    pub metrics: Arc<Metrics>,
}

/// The live state of one follower, for `cordon peers`.
#[derive(Debug)]
pub struct PeerTracker {
    pub peer: PeerConfig,
    state: Mutex<TrackerState>,
}

#[derive(Debug, Clone, Default)]
struct TrackerState {
    state: &'static str,
    cursor: u64,
    peer_head: u64,
    last_error: String,
    last_error_at: Option<SystemTime>,
    connected_since: Option<SystemTime>,
    stored: u64,
    duplicates: u64,
    refused: u64,
    retractions: u64,
    reconnects: u64,
    log_size: u64,
    log_alarm: String,
    log_alarms: u64,
}

impl PeerTracker {
    fn new(peer: PeerConfig) -> PeerTracker {
        PeerTracker {
            peer,
            state: Mutex::new(TrackerState {
                state: "connecting",
                ..TrackerState::default()
            }),
        }
    }

    fn update(&self, change: impl FnOnce(&mut TrackerState)) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        change(&mut state);
    }

    fn error(&self, message: String) {
        self.update(|state| {
            state.last_error = message;
            state.last_error_at = Some(SystemTime::now());
        });
    }

    /// The follower's state as the `cordon.v1.PeerStatus` message.
    pub fn status(&self) -> PeerStatus {
        let state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        PeerStatus {
            id: self.peer.id.clone(),
            endpoint: self.peer.endpoint.clone(),
            state: state.state.to_string(),
            cursor: state.cursor,
            peer_head: state.peer_head,
            lag: state.peer_head.saturating_sub(state.cursor),
            last_error: state.last_error,
            last_error_at: state.last_error_at.map(timestamp_of),
            connected_since: state.connected_since.map(timestamp_of),
            stored: state.stored,
            duplicates: state.duplicates,
            refused: state.refused,
            retractions: state.retractions,
            reconnects: state.reconnects,
            log_size: state.log_size,
            log_alarm: state.log_alarm,
            log_alarms: state.log_alarms,
        }
    }
}

/// The followers of one gateway.
#[derive(Debug, Default)]
pub struct Federation {
    pub trackers: Vec<Arc<PeerTracker>>,
}

impl FollowerStatuses for Federation {
    fn statuses(&self) -> Vec<PeerStatus> {
        self.trackers
            .iter()
            .map(|tracker| tracker.status())
            .collect()
    }
}

/// Starts one follower per peer; they end when `shutdown` turns true.
pub fn start(
    context: FollowerContext,
    peers: &[PeerConfig],
    shutdown: watch::Receiver<bool>,
) -> (Arc<Federation>, Vec<JoinHandle<()>>) {
    let mut federation = Federation::default();
    let mut tasks = Vec::new();
    for peer in peers.iter().filter(|peer| peer.follow) {
        let tracker = Arc::new(PeerTracker::new(peer.clone()));
        federation.trackers.push(tracker.clone());
        let follower = Follower {
            context: context.clone(),
            tracker,
        };
        tasks.push(tokio::spawn(follower.run(shutdown.clone())));
    }
    (Arc::new(federation), tasks)
}

/// The delay before reconnection attempt `attempt` (0 first): exponential from
/// [`BACKOFF_BASE`] up to [`BACKOFF_MAX`], with "equal jitter" (half fixed, half
/// random) so that the followers of a restarted peer do not all come back at once.
pub fn backoff(attempt: u32) -> Duration {
    let ceiling = BACKOFF_BASE
        .saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX))
        .min(BACKOFF_MAX);
    let half = ceiling / 2;
    let random = random_u64();
    let jitter_nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(if jitter_nanos == 0 {
        0
    } else {
        random % jitter_nanos
    })
}

fn random_u64() -> u64 {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    // A failure leaves zeros: no jitter this once, still a valid delay.
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_ceiling_with_jitter() {
        for attempt in 0..40 {
            let delay = backoff(attempt);
            let ceiling = BACKOFF_BASE
                .saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX))
                .min(BACKOFF_MAX);
            assert!(
                delay >= ceiling / 2 && delay <= ceiling,
                "attempt {attempt}: {delay:?}"
            );
        }
        assert!(backoff(0) <= BACKOFF_BASE);
        assert!(backoff(30) >= BACKOFF_MAX / 2);
        // Jitter: twenty draws at the ceiling are not all equal.
        let draws: std::collections::HashSet<Duration> = (0..20).map(|_| backoff(30)).collect();
        assert!(draws.len() > 1);
    }
}
