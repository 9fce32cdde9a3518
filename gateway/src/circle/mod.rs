//! Circles: MLS (RFC 9420) groups of member gateways for source-protected intelligence.
//!
//! The gateway that creates a circle is its hub (the MIMI hub model): it alone commits
//! membership changes ([`admin`]), accepts a handshake message only for the circle's current
//! epoch, and orders every handshake and application message in the circle's log, advancing
//! the epoch and the log in one transaction ([`hub`]). Members stream the hub's log from their
//! last position ([`follower`]) and send their own messages to the hub ([`publish`],
//! [`rotate`]); a gateway joins from the hub's Welcome ([`join`]) made with one of its
//! KeyPackages ([`key_packages`]). [`api`] is the gRPC face of all of it.
//!
//! Every MLS operation runs under one lock inside a journal of the MLS key-value store
//! (`cordon-mls-store`); the keys it changed and the circle's rows (log entry, circle row,
//! indicators, KeyPackages) are written in one database transaction, and the journal is rolled
//! back if it fails ([`Circles::apply`]).
//!
//! This room never releases an indicator to a recipient outside its circle: what a member
//! decrypts is stored as source-protected, and the release room's hard floor keeps it there.
//! Its errors are [`CircleError`]s; `crate::status` turns them into gRPC codes.

mod admin;
pub mod api;
mod error;
pub mod follower;
mod hub;
mod indicators;
mod join;
mod key_packages;
pub mod mls;
mod publish;
mod rotate;
mod state;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cordon_indicator::Limits;
use cordon_proto::v1::MessageKind;
use cordon_proto::v1::circle_service_client::CircleServiceClient;
use cordon_storage::{CircleWriteOutcome, Store};
use openmls::prelude::*;
use tokio::sync::{Mutex, MutexGuard, watch};
use tonic::transport::Channel;

use crate::config::PeerConfig;
use crate::federation::TlsFiles;
use crate::release::{DecisionLog, Releaser};
use crate::signing::SigningKey;
pub use error::CircleError;
pub use indicators::{check_circle_indicator, circle_indicator};
pub use key_packages::{
    KEY_PACKAGE_EXPIRY, KEY_PACKAGE_WINDOW, KEY_PACKAGES_PER_WINDOW, LAST_RESORT_ROTATION,
};
use mls::PinnedKeys;
pub use state::Inner;

/// Times a publish or rotation is sent again after another message won its epoch.
const MAX_ATTEMPTS: u32 = 8;
/// The longest deleted or overwritten MLS secrets stay in SQLite's WAL (plus one checkpoint).
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);
/// How long a sender waits for its follower to catch up with the hub before retrying.
const CATCH_UP_PATIENCE: Duration = Duration::from_secs(10);

pub const STATUS_ACTIVE: &str = "active";
pub const STATUS_REMOVED: &str = "removed";

/// A circle name: 1 to 32 characters of `a-z`, `0-9` and `-`.
pub fn is_circle_name(text: &str) -> bool {
    (1..=32).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

pub fn kind_name(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Application => "application",
        MessageKind::Proposal => "proposal",
        MessageKind::Commit => "commit",
        MessageKind::Unspecified => "unspecified",
    }
}

pub fn kind_of(name: &str) -> MessageKind {
    match name {
        "application" => MessageKind::Application,
        "proposal" => MessageKind::Proposal,
        "commit" => MessageKind::Commit,
        _ => MessageKind::Unspecified,
    }
}

/// What the circles share with the rest of the gateway.
#[derive(Debug, Clone)]
pub struct CircleContext {
    pub member: String,
    pub federation: String,
    pub store: Store,
    pub pinned: PinnedKeys,
    pub signing_key: Arc<SigningKey>,
    pub peers: Vec<PeerConfig>,
    pub tls: TlsFiles,
    pub releaser: Arc<Releaser>,
    pub decision_log: DecisionLog,
    pub limits: Limits,
}

/// The circles of this gateway.
pub struct Circles {
    pub context: CircleContext,
    inner: Mutex<Inner>,
    /// Bumped after every committed change: log streams and senders waiting to catch up
    /// wake on it.
    changed: watch::Sender<u64>,
    shutdown: watch::Receiver<bool>,
    /// The followers of circles this gateway is a member of, and the hub's deliveries of
    /// pending Welcomes (`welcome/<circle>/<member>`).
    followers: std::sync::Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    /// One rotation at a time: a rotation's pending commit is never replaced by another's
    /// while the hub may still take it.
    rotating: Mutex<()>,
    /// Wakes the checkpointer after a write that deleted or overwrote MLS secrets.
    checkpoint: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Circles {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Circles")
            .field("member", &self.context.member)
            .finish_non_exhaustive()
    }
}

/// Runs circle work on a task of its own and waits for it. A caller that goes away (a
/// cancelled or timed-out RPC, an aborted follower) then leaves the work to finish instead of
/// stopping it between an MLS operation and the write of what the operation changed, which
/// would leave memory ahead of the database with no rollback.
pub(crate) async fn uncancelled<T: Send + 'static>(
    work: impl std::future::Future<Output = Result<T, CircleError>> + Send + 'static,
) -> Result<T, CircleError> {
    tokio::spawn(work).await.map_err(|error| {
        // A panic's text stays in this gateway's log; callers (partners among them) get none.
        tracing::error!(%error, "a circle operation stopped unexpectedly");
        CircleError::internal("a circle operation stopped unexpectedly")
    })?
}

/// The result of one MLS operation: what to return and what to write.
type OpResult<T> = Result<(T, cordon_storage::CircleWrite), CircleError>;

impl Circles {
    /// Loads every circle's MLS state from the database and starts a follower for each
    /// circle this gateway is an active member (not the hub) of.
    pub async fn start(
        context: CircleContext,
        shutdown: watch::Receiver<bool>,
    ) -> anyhow::Result<Arc<Circles>> {
        let values = context.store.mls_values().await?;
        let rows = context.store.circles().await?;
        let welcomes = context.store.pending_welcomes().await?;
        let mut inner = Inner {
            provider: mls::Provider::with_values(values),
            groups: HashMap::new(),
            rows: rows
                .into_iter()
                .map(|row| (row.name.clone(), row))
                .collect(),
            awaiting: welcomes
                .iter()
                .map(|welcome| {
                    (
                        (welcome.circle.clone(), welcome.member.clone()),
                        welcome.position,
                    )
                })
                .collect(),
        };
        inner.reload_groups();
        let followed: Vec<String> = inner
            .rows
            .values()
            .filter(|row| row.hub != context.member && row.status == STATUS_ACTIVE)
            .map(|row| row.name.clone())
            .collect();
        let circles = Arc::new(Circles {
            context,
            inner: Mutex::new(inner),
            changed: watch::channel(0).0,
            shutdown,
            followers: Default::default(),
            rotating: Mutex::new(()),
            checkpoint: Arc::new(tokio::sync::Notify::new()),
        });
        circles.start_checkpointer();
        for name in followed {
            circles.follow(&name);
        }
        for welcome in welcomes {
            circles.redeliver(welcome);
        }
        Ok(circles)
    }

    pub fn member(&self) -> &str {
        &self.context.member
    }

    /// Truncates the database's WAL (SQLite) after writes that deleted or overwrote MLS
    /// secrets: at once after the first, then at most once per [`CHECKPOINT_INTERVAL`], so
    /// that old secrets stay in the WAL no longer than that, outside the circles lock. Once
    /// more on shutdown.
    fn start_checkpointer(self: &Arc<Self>) {
        let store = self.context.store.clone();
        let wake = self.checkpoint.clone();
        let mut shutdown = self.shutdown.clone();
        let task = tokio::spawn(async move {
            loop {
                let stopping = tokio::select! {
                    () = wake.notified() => false,
                    _ = shutdown.wait_for(|stopping| *stopping) => true,
                };
                if let Err(error) = store.checkpoint().await {
                    tracing::warn!(%error, "checkpointing the database after changing MLS secrets");
                    // Try again at the next interval.
                    wake.notify_one();
                }
                if stopping {
                    return;
                }
                tokio::select! {
                    () = tokio::time::sleep(CHECKPOINT_INTERVAL) => {}
                    _ = shutdown.wait_for(|stopping| *stopping) => {}
                }
            }
        });
        self.keep_task("checkpoint/".into(), task);
    }

    /// Keeps a background task under `key` (a circle name for its follower, or a key with
    /// a `/`, which no circle name has), ending the one it replaces.
    fn keep_task(&self, key: String, task: tokio::task::JoinHandle<()>) {
        let mut followers = self
            .followers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(old) = followers.insert(key, task) {
            old.abort();
        }
    }

    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.clone()
    }

    pub async fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().await
    }

    /// Runs one MLS operation and writes what it changed in one transaction; on any failure,
    /// a panic of the operation included, the in-memory state is put back as it was.
    pub(crate) async fn apply<T>(
        &self,
        inner: &mut MutexGuard<'_, Inner>,
        operation: impl FnOnce(&mut Inner) -> OpResult<T>,
    ) -> Result<(T, CircleWriteOutcome), CircleError> {
        inner.provider.storage().begin();
        let rows_before = inner.rows.clone();
        let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| operation(inner)))
            .unwrap_or_else(|_| {
                tracing::error!("an MLS operation panicked; its changes are rolled back");
                Err(CircleError::internal(
                    "an MLS operation stopped unexpectedly",
                ))
            });
        let (value, mut write) = match ran {
            Ok(done) => done,
            Err(error) => {
                inner.provider.storage().rollback();
                inner.rows = rows_before;
                inner.reload_groups();
                return Err(error);
            }
        };
        write.kv = inner.provider.storage().changes();
        let replaces_keys = !write.kv.is_empty();
        match self.context.store.circle_write(write).await {
            Ok(outcome) => {
                inner.provider.storage().commit();
                self.changed.send_modify(|count| *count += 1);
                if replaces_keys {
                    // Deleted and overwritten MLS secrets must not linger in the WAL.
                    self.checkpoint.notify_one();
                }
                Ok((value, outcome))
            }
            Err(error) => {
                inner.provider.storage().rollback();
                inner.rows = rows_before;
                inner.reload_groups();
                Err(error.into())
            }
        }
    }

    fn credential(&self) -> CredentialWithKey {
        mls::own_credential(&self.context.member, &self.context.signing_key)
    }

    fn peer(&self, member: &str) -> Result<&PeerConfig, CircleError> {
        self.context
            .peers
            .iter()
            .find(|peer| peer.id == member)
            .ok_or_else(|| {
                CircleError::FailedPrecondition(format!(
                    "{member} has no gateway endpoint: add it under [[peers]] (follow = false \
                     if its feed is not to be followed)"
                ))
            })
    }

    pub(crate) async fn connect(
        &self,
        member: &str,
    ) -> Result<CircleServiceClient<Channel>, CircleError> {
        let peer = self.peer(member)?;
        let channel =
            crate::federation::peer_tls::connect(peer, &self.context.federation, &self.context.tls)
                .await
                .map_err(|error| CircleError::Unavailable(format!("{error:#}")))?;
        let limit = self.context.limits.max_message_bytes * 2;
        Ok(CircleServiceClient::new(channel)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit))
    }

    /// Starts (or restarts) the follower of a circle's hub log.
    pub fn follow(self: &Arc<Self>, name: &str) {
        let task = tokio::spawn(follower::run(self.clone(), name.to_string()));
        self.keep_task(name.to_string(), task);
    }

    /// Waits for the followers to end (they end on shutdown).
    pub async fn stopped(&self) {
        let tasks: Vec<_> = self
            .followers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .drain()
            .map(|(_, task)| task)
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Waits until the circle's local epoch passes `epoch`, or patience runs out.
    async fn wait_for_epoch_after(&self, name: &str, epoch: u64) {
        let mut changes = self.changed.subscribe();
        let mut shutdown = self.shutdown.clone();
        let stopping = async move {
            let _ = shutdown.wait_for(|stopping| *stopping).await;
        };
        let caught_up = tokio::time::timeout(CATCH_UP_PATIENCE, async {
            loop {
                {
                    let inner = self.inner.lock().await;
                    match inner.rows.get(name) {
                        Some(row) if row.epoch > epoch && row.status == STATUS_ACTIVE => return,
                        Some(row) if row.status != STATUS_ACTIVE => return,
                        None => return,
                        _ => {}
                    }
                }
                if changes.changed().await.is_err() {
                    return;
                }
            }
        });
        // Work no caller can cancel (`uncancelled`) must not hold up this gateway's stop.
        tokio::select! {
            _ = caught_up => {}
            () = stopping => {}
        }
    }
}
