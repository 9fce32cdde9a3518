//! Circles: MLS (RFC 9420) groups of member gateways for source-protected intelligence.
//!
//! The gateway that creates a circle is its hub (the MIMI hub model): it alone commits
//! membership changes, accepts a handshake message only for the circle's current epoch, and
//! orders every handshake and application message in the circle's log, advancing the epoch
//! and the log in one transaction. Members stream the hub's log from their last position
//! ([`follower`]) and send their own messages to the hub ([`api`]).
//!
//! Every MLS operation runs under one lock with a snapshot of the key-value store before it;
//! the store's changes and the circle's rows (log entry, circle row, indicators, KeyPackages)
//! are written in one database transaction, and the snapshot is put back if it fails.

pub mod api;
pub mod follower;
pub mod mls;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::clock::now_micros;

use cordon_indicator::Limits;
use cordon_proto::v1::circle_service_client::CircleServiceClient;
use cordon_proto::v1::{
    Accepted, CircleInfo, GetKeyPackageRequest, Indicator, MessageKind, Protection,
    PublishResponse, SendRequest, WelcomeRequest,
};
use cordon_storage::{
    CircleLogEntry, CircleRow, CircleWrite, CircleWriteOutcome, KeyPackageRow, NewIndicator,
    PendingWelcome, Store,
};
use openmls::prelude::*;
use prost::Message as _;
use tokio::sync::{Mutex, MutexGuard, watch};
use tonic::Status;
use tonic::transport::Channel;

use crate::config::PeerConfig;
use crate::federation::TlsFiles;
use crate::identity::Identity;
use crate::release::DecisionLog;
use crate::release::Releaser;
use crate::signing::SigningKey;
use crate::status::storage_status;
use cordon_policy::Channel as ReleaseChannel;
use mls::{PinnedKeys, Provider};

/// Single-use KeyPackages one member may take in [`KEY_PACKAGE_WINDOW`]; beyond that it gets
/// the last-resort one, so that a partner cannot drain this gateway's KeyPackages.
pub const KEY_PACKAGES_PER_WINDOW: usize = 4;
pub const KEY_PACKAGE_WINDOW: Duration = Duration::from_secs(3600);
/// A last-resort KeyPackage older than this is replaced when it is next handed out.
pub const LAST_RESORT_ROTATION: Duration = Duration::from_secs(24 * 3600);
/// A single-use KeyPackage not used this long after it was made, or a last-resort one
/// replaced this long ago, is forgotten with its private keys. A hub uses a KeyPackage at
/// once, but the Welcome made from it may wait for an outage of this gateway to end; a
/// Welcome older than this can no longer be opened (the hub removes and adds again).
pub const KEY_PACKAGE_EXPIRY: Duration = Duration::from_secs(30 * 24 * 3600);
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

/// The MLS state of all circles, behind the one lock every MLS operation takes.
pub struct Inner {
    pub provider: Provider,
    pub groups: HashMap<String, MlsGroup>,
    pub rows: HashMap<String, CircleRow>,
    /// Hub: `(circle, member)` added whose Welcome is not yet delivered, with the log
    /// position of the add (as in the database's pending Welcomes).
    pub awaiting: BTreeMap<(String, String), u64>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Inner")
            .field("circles", &self.rows.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Inner {
    fn reload_groups(&mut self) {
        self.groups.clear();
        for row in self.rows.values() {
            let group_id = GroupId::from_slice(&row.group_id);
            match MlsGroup::load(self.provider.storage(), &group_id) {
                Ok(Some(group)) => {
                    self.groups.insert(row.name.clone(), group);
                }
                Ok(None) => {
                    tracing::error!(circle = %row.name, "circle has no MLS group state");
                }
                Err(error) => {
                    tracing::error!(circle = %row.name, ?error, "loading the circle's MLS group");
                }
            }
        }
    }

    /// Puts a new (or joined again) circle's group and row in place; returns the write that
    /// stores the row.
    fn install(&mut self, group: MlsGroup, row: CircleRow) -> CircleWrite {
        self.groups.insert(row.name.clone(), group);
        self.rows.insert(row.name.clone(), row.clone());
        CircleWrite {
            circle: Some(row),
            ..CircleWrite::default()
        }
    }

    /// A circle's row (a copy, to update and write back), its group to change, and the
    /// provider to change it with.
    pub fn circle_mut(
        &mut self,
        name: &str,
    ) -> Result<(CircleRow, &mut MlsGroup, &Provider), Status> {
        let row = self
            .rows
            .get(name)
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no circle {name:?}")))?;
        let group = self
            .groups
            .get_mut(name)
            .ok_or_else(|| Status::internal(format!("circle {name:?} has no MLS state")))?;
        Ok((row, group, &self.provider))
    }

    pub fn circle(&self, name: &str) -> Result<(&CircleRow, &MlsGroup), Status> {
        let row = self
            .rows
            .get(name)
            .ok_or_else(|| Status::not_found(format!("no circle {name:?}")))?;
        let group = self
            .groups
            .get(name)
            .ok_or_else(|| Status::internal(format!("circle {name:?} has no MLS state")))?;
        Ok((row, group))
    }

    fn info(&self, name: &str) -> Result<CircleInfo, Status> {
        let (row, group) = self.circle(name)?;
        Ok(CircleInfo {
            name: row.name.clone(),
            hub: row.hub.clone(),
            epoch: row.epoch,
            members: if row.status == STATUS_ACTIVE {
                mls::member_ids(group)
            } else {
                Vec::new()
            },
            status: row.status.clone(),
            position: row.position,
            awaiting_welcome: self
                .awaiting
                .keys()
                .filter(|(circle, _)| circle == name)
                .map(|(_, member)| member.clone())
                .collect(),
        })
    }
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

/// The result of one MLS operation: what to return and what to write.
type OpResult<T> = Result<(T, CircleWrite), Status>;

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
            provider: mls::provider_with(values),
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
        self.followers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            // Not a circle name (those have no '/'), so no follower replaces it.
            .insert("checkpoint/".into(), task);
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

    /// Runs one MLS operation and writes what it changed in one transaction; on any failure
    /// the in-memory state is put back as it was.
    pub(crate) async fn apply<T>(
        &self,
        inner: &mut MutexGuard<'_, Inner>,
        operation: impl FnOnce(&mut Inner) -> OpResult<T>,
    ) -> Result<(T, CircleWriteOutcome), Status> {
        let before = mls::snapshot(&inner.provider);
        let rows_before = inner.rows.clone();
        let (value, mut write) = match operation(inner) {
            Ok(done) => done,
            Err(status) => {
                mls::restore(&inner.provider, before);
                inner.rows = rows_before;
                inner.reload_groups();
                return Err(status);
            }
        };
        write.kv = mls::diff(&before, &inner.provider);
        let replaces_keys = !write.kv.is_empty();
        match self.context.store.circle_write(write).await {
            Ok(outcome) => {
                self.changed.send_modify(|count| *count += 1);
                if replaces_keys {
                    // Deleted and overwritten MLS secrets must not linger in the WAL.
                    self.checkpoint.notify_one();
                }
                Ok((value, outcome))
            }
            Err(error) => {
                mls::restore(&inner.provider, before);
                inner.rows = rows_before;
                inner.reload_groups();
                Err(storage_status(error))
            }
        }
    }

    fn credential(&self) -> CredentialWithKey {
        mls::own_credential(&self.context.member, &self.context.signing_key)
    }

    fn peer(&self, member: &str) -> Result<&PeerConfig, Status> {
        self.context
            .peers
            .iter()
            .find(|peer| peer.id == member)
            .ok_or_else(|| {
                Status::failed_precondition(format!(
                    "{member} has no gateway endpoint: add it under [[peers]] (follow = false \
                     if its feed is not to be followed)"
                ))
            })
    }

    pub(crate) async fn connect(
        &self,
        member: &str,
    ) -> Result<CircleServiceClient<Channel>, Status> {
        let peer = self.peer(member)?;
        let channel =
            crate::federation::peer_tls::connect(peer, &self.context.federation, &self.context.tls)
                .await
                .map_err(|error| Status::unavailable(format!("{error:#}")))?;
        let limit = self.context.limits.max_message_bytes * 2;
        Ok(CircleServiceClient::new(channel)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit))
    }

    // ----- administration -----------------------------------------------------------------

    /// Creates a circle with this gateway as its hub and only member.
    pub async fn create(&self, name: &str) -> Result<CircleInfo, Status> {
        if !is_circle_name(name) {
            return Err(crate::status::invalid_field(
                "name",
                "a circle name is 1 to 32 characters of a-z, 0-9 and -",
            ));
        }
        let mut inner = self.inner.lock().await;
        if inner.rows.contains_key(name) {
            return Err(Status::already_exists(format!("circle {name:?} exists")));
        }
        let group_id = format!("{}/{name}", self.context.member).into_bytes();
        let credential = self.credential();
        let signer = self.context.signing_key.clone();
        let member = self.context.member.clone();
        let name = name.to_string();
        self.apply(&mut inner, |inner| {
            let group = MlsGroup::builder()
                .with_group_id(GroupId::from_slice(&group_id))
                .ciphersuite(mls::CIPHERSUITE)
                .use_ratchet_tree_extension(true)
                .build(&inner.provider, signer.as_ref(), credential)
                .map_err(|error| Status::internal(format!("creating the MLS group: {error}")))?;
            let row = CircleRow {
                name: name.clone(),
                group_id,
                hub: member,
                epoch: group.epoch().as_u64(),
                position: 0,
                status: STATUS_ACTIVE.into(),
                created_micros: now_micros(),
            };
            Ok(((), inner.install(group, row)))
        })
        .await?;
        tracing::info!(circle = %name, "circle created; this gateway is its hub");
        inner.info(&name)
    }

    pub async fn list(&self) -> Vec<CircleInfo> {
        let inner = self.inner.lock().await;
        let mut names: Vec<&String> = inner.rows.keys().collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|name| inner.info(name).ok())
            .collect()
    }

    pub async fn info(&self, name: &str) -> Result<CircleInfo, Status> {
        self.inner.lock().await.info(name)
    }

    fn require_hub(&self, row: &CircleRow) -> Result<(), Status> {
        if row.hub != self.context.member {
            return Err(Status::failed_precondition(format!(
                "circle {:?} is hubbed by {}; only its hub changes its membership",
                row.name, row.hub
            )));
        }
        if row.status != STATUS_ACTIVE {
            return Err(Status::failed_precondition(format!(
                "circle {:?} is {}",
                row.name, row.status
            )));
        }
        Ok(())
    }

    /// Adds `member`: fetches a KeyPackage from its gateway (TLS pins its identity), checks
    /// the KeyPackage's credential names it with its pinned key, commits the add (log and
    /// epoch in one transaction) and gives it the Welcome.
    pub async fn add(self: &Arc<Self>, name: &str, member: &str) -> Result<CircleInfo, Status> {
        if !crate::identity::is_member_id(member) || member == self.context.member {
            return Err(crate::status::invalid_field(
                "member",
                format!("{member:?} is not another member's id"),
            ));
        }
        {
            let inner = self.inner.lock().await;
            let (row, group) = inner.circle(name)?;
            self.require_hub(row)?;
            if mls::leaf_of(group, member).is_some() {
                return Err(Status::already_exists(format!(
                    "{member} is already in circle {name:?}"
                )));
            }
        }
        let mut client = self.connect(member).await?;
        let served = client
            .get_key_package(GetKeyPackageRequest {})
            .await
            .map_err(|status| {
                Status::unavailable(format!(
                    "fetching {member}'s KeyPackage: {}",
                    status.message()
                ))
            })?
            .into_inner();
        let mut inner = self.inner.lock().await;
        let key_package = mls::check_key_package(
            &inner.provider,
            &served.key_package,
            member,
            &self.context.pinned,
        )
        .map_err(|reason| {
            tracing::warn!(circle = %name, %member, %reason, "refused a KeyPackage");
            Status::permission_denied(format!("{member}'s KeyPackage refused: {reason}"))
        })?;
        let signer = self.context.signing_key.clone();
        let own = self.context.member.clone();
        let circle = name.to_string();
        let joining = member.to_string();
        let (welcome, _) = self
            .apply(&mut inner, |inner| {
                let (row, group, provider) = inner.circle_mut(&circle)?;
                self.require_hub(&row)?;
                if mls::leaf_of(group, &joining).is_some() {
                    return Err(Status::already_exists(format!(
                        "{joining} is already in circle {circle:?}"
                    )));
                }
                let epoch = group.epoch().as_u64();
                let (commit, welcome, _) = group
                    .add_members(provider, signer.as_ref(), &[key_package])
                    .map_err(|error| Status::internal(format!("adding {joining}: {error}")))?;
                group
                    .merge_pending_commit(provider)
                    .map_err(|error| Status::internal(format!("merging the add: {error}")))?;
                let position = row.position + 1;
                let updated = CircleRow {
                    epoch: group.epoch().as_u64(),
                    position,
                    ..row
                };
                let entry = CircleLogEntry {
                    circle: circle.clone(),
                    position,
                    epoch,
                    sender: own.clone(),
                    kind: "commit".into(),
                    message: mls::serialize(&commit).map_err(Status::internal)?,
                    at_micros: now_micros(),
                };
                let pending = PendingWelcome {
                    circle: circle.clone(),
                    member: joining.clone(),
                    position,
                    welcome: mls::serialize(&welcome).map_err(Status::internal)?,
                    created_micros: now_micros(),
                };
                inner.rows.insert(circle.clone(), updated.clone());
                Ok((
                    pending.clone(),
                    CircleWrite {
                        circle: Some(updated),
                        log: vec![entry],
                        departures: vec![(circle.clone(), joining.clone(), None)],
                        admissions: vec![(circle.clone(), joining.clone(), position)],
                        // Kept with the commit: a crash before delivery loses no Welcome.
                        welcome: Some(pending),
                        ..CircleWrite::default()
                    },
                ))
            })
            .await?;
        let pending = welcome;
        let position = pending.position;
        inner
            .awaiting
            .insert((name.to_string(), member.to_string()), position);
        drop(inner);
        tracing::info!(circle = %name, %member, position, "member added to circle");
        if let Err(status) = self.deliver_welcome(&pending, Some(client)).await {
            tracing::warn!(circle = %name, %member, position, reason = %status.message(), "the new member did not take its Welcome; delivering it again with backoff");
            self.redeliver(pending);
        }
        self.info(name).await
    }

    /// Gives a pending Welcome to its member's gateway once; forgets it when taken.
    async fn deliver_welcome(
        &self,
        pending: &PendingWelcome,
        client: Option<CircleServiceClient<Channel>>,
    ) -> Result<(), Status> {
        let mut client = match client {
            Some(client) => client,
            None => self.connect(&pending.member).await?,
        };
        client
            .welcome(WelcomeRequest {
                circle: pending.circle.clone(),
                welcome: pending.welcome.clone(),
                position: pending.position,
            })
            .await?;
        let mut inner = self.inner.lock().await;
        let key = (pending.circle.clone(), pending.member.clone());
        if inner.awaiting.get(&key) == Some(&pending.position) {
            inner.awaiting.remove(&key);
        }
        self.context
            .store
            .welcome_delivered(&pending.circle, &pending.member, pending.position)
            .await
            .map_err(storage_status)?;
        tracing::info!(circle = %pending.circle, member = %pending.member, position = pending.position, "Welcome taken");
        Ok(())
    }

    /// Delivers a pending Welcome in the background, with backoff, until it is taken, the
    /// member is removed (or added again), or the gateway stops.
    fn redeliver(self: &Arc<Self>, pending: PendingWelcome) {
        let circles = self.clone();
        let key = format!("welcome/{}/{}", pending.circle, pending.member);
        let task = tokio::spawn(async move {
            let mut shutdown = circles.shutdown_signal();
            let mut attempt = 0u32;
            loop {
                attempt = attempt.saturating_add(1);
                tokio::select! {
                    () = tokio::time::sleep(crate::federation::backoff(attempt)) => {}
                    _ = shutdown.wait_for(|stopping| *stopping) => return,
                }
                let still_awaited = circles
                    .inner
                    .lock()
                    .await
                    .awaiting
                    .get(&(pending.circle.clone(), pending.member.clone()))
                    == Some(&pending.position);
                if !still_awaited {
                    return;
                }
                match circles.deliver_welcome(&pending, None).await {
                    Ok(()) => return,
                    Err(status) => {
                        tracing::warn!(circle = %pending.circle, member = %pending.member, attempt, code = ?status.code(), reason = %status.message(), "delivering a Welcome");
                    }
                }
            }
        });
        let mut followers = self
            .followers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(old) = followers.insert(key, task) {
            old.abort();
        }
    }

    /// Removes `member`: a remove commit in the log and epoch, and a departure row so that it
    /// may read the log up to that commit and no further.
    pub async fn remove(&self, name: &str, member: &str) -> Result<CircleInfo, Status> {
        let mut inner = self.inner.lock().await;
        let signer = self.context.signing_key.clone();
        let own = self.context.member.clone();
        let circle = name.to_string();
        let leaving = member.to_string();
        if leaving == own {
            return Err(crate::status::invalid_field(
                "member",
                "the hub cannot remove itself from its circle",
            ));
        }
        self.apply(&mut inner, |inner| {
            let (row, group, provider) = inner.circle_mut(&circle)?;
            self.require_hub(&row)?;
            let leaf = mls::leaf_of(group, &leaving).ok_or_else(|| {
                Status::not_found(format!("{leaving} is not in circle {circle:?}"))
            })?;
            let epoch = group.epoch().as_u64();
            let (commit, _, _) = group
                .remove_members(provider, signer.as_ref(), &[leaf])
                .map_err(|error| Status::internal(format!("removing {leaving}: {error}")))?;
            group
                .merge_pending_commit(provider)
                .map_err(|error| Status::internal(format!("merging the removal: {error}")))?;
            let position = row.position + 1;
            let updated = CircleRow {
                epoch: group.epoch().as_u64(),
                position,
                ..row
            };
            inner.rows.insert(circle.clone(), updated.clone());
            Ok((
                (),
                CircleWrite {
                    circle: Some(updated),
                    log: vec![CircleLogEntry {
                        circle: circle.clone(),
                        position,
                        epoch,
                        sender: own.clone(),
                        kind: "commit".into(),
                        message: mls::serialize(&commit).map_err(Status::internal)?,
                        at_micros: now_micros(),
                    }],
                    departures: vec![(circle.clone(), leaving.clone(), Some(position))],
                    welcomes_dropped: vec![(circle.clone(), leaving.clone())],
                    ..CircleWrite::default()
                },
            ))
        })
        .await?;
        inner
            .awaiting
            .remove(&(name.to_string(), member.to_string()));
        tracing::info!(circle = %name, %member, "member removed from circle");
        inner.info(name)
    }

    // ----- KeyPackages ------------------------------------------------------------------

    /// A KeyPackage for `requester`: a fresh single-use one while it has taken fewer than
    /// [`KEY_PACKAGES_PER_WINDOW`] in the window, else the last-resort one (rotated daily).
    pub async fn key_package_for(&self, requester: &str) -> Result<(Vec<u8>, bool), Status> {
        // Counted under the lock, so that concurrent requests cannot all see a free slot.
        let mut inner = self.inner.lock().await;
        let rows = self
            .context
            .store
            .key_packages()
            .await
            .map_err(storage_status)?;
        let now = now_micros();
        let window_start = now - KEY_PACKAGE_WINDOW.as_micros() as i64;
        let recent = rows
            .iter()
            .filter(|row| {
                !row.last_resort
                    && row.issued_to.as_deref() == Some(requester)
                    && row.issued_micros.unwrap_or_default() >= window_start
            })
            .count();
        let current_last_resort = rows
            .iter()
            .filter(|row| row.last_resort)
            .max_by_key(|row| row.created_micros)
            .filter(|row| now - row.created_micros < LAST_RESORT_ROTATION.as_micros() as i64)
            .cloned();
        let single_use = recent < KEY_PACKAGES_PER_WINDOW;
        // Expired: single-use ones made before the expiry, last-resort ones made before the
        // current one's rotation period and the expiry.
        let expired = expired_key_packages(&rows, now);
        if !single_use && let Some(row) = current_last_resort {
            return Ok((row.key_package, true));
        }
        let credential = self.credential();
        let signer = self.context.signing_key.clone();
        let requester = requester.to_string();
        let (bytes, _) = self
            .apply(&mut inner, |inner| {
                let mut builder = KeyPackage::builder();
                if !single_use {
                    builder = builder.mark_as_last_resort();
                }
                let bundle = builder
                    .build(
                        mls::CIPHERSUITE,
                        &inner.provider,
                        signer.as_ref(),
                        credential,
                    )
                    .map_err(|error| Status::internal(format!("making a KeyPackage: {error}")))?;
                let key_package = bundle.key_package();
                let hash_ref = key_package
                    .hash_ref(inner.provider.crypto())
                    .map_err(|error| Status::internal(format!("hashing a KeyPackage: {error}")))?;
                use tls_codec::Serialize as _;
                let bytes = key_package
                    .tls_serialize_detached()
                    .map_err(|error| Status::internal(format!("encoding a KeyPackage: {error}")))?;
                // The private keys of expired ones (gone already for those that were used).
                for hash_ref in &expired {
                    mls::forget_key_package(&inner.provider, hash_ref).map_err(Status::internal)?;
                }
                Ok((
                    bytes.clone(),
                    CircleWrite {
                        key_packages: vec![KeyPackageRow {
                            hash_ref: hash_ref.as_slice().to_vec(),
                            key_package: bytes,
                            last_resort: !single_use,
                            issued_to: Some(requester.clone()),
                            issued_micros: Some(now),
                            created_micros: now,
                        }],
                        key_packages_dropped: expired.clone(),
                        ..CircleWrite::default()
                    },
                ))
            })
            .await?;
        Ok((bytes, !single_use))
    }

    // ----- joining ----------------------------------------------------------------------

    /// Joins a circle from the hub's Welcome, after checking every member's credential
    /// against the pinned keys and that the Welcome comes from the hub itself.
    pub async fn join(
        self: &Arc<Self>,
        hub: &str,
        name: &str,
        welcome: &[u8],
        position: u64,
    ) -> Result<(), Status> {
        if !is_circle_name(name) {
            return Err(crate::status::invalid_field("circle", "not a circle name"));
        }
        let message = mls::deserialize(welcome)
            .map_err(|error| crate::status::invalid_field("welcome", error))?;
        let MlsMessageBodyIn::Welcome(welcome) = message.extract() else {
            return Err(crate::status::invalid_field(
                "welcome",
                "not an MLS Welcome",
            ));
        };
        let expected_group = format!("{hub}/{name}").into_bytes();
        // Consent: only a hub this gateway lists under [[peers]] (which it must reach to
        // follow the circle anyway) may bring it into a circle.
        if self.peer(hub).is_err() {
            return Err(Status::failed_precondition(format!(
                "{hub} is not under [[peers]]: this gateway joins only circles of hubs it lists"
            )));
        }
        let mut inner = self.inner.lock().await;
        if let Some(row) = inner.rows.get(name) {
            if row.hub == hub && row.status == STATUS_ACTIVE && row.position >= position {
                // Taken before; the hub did not hear so and delivers it again.
                return Ok(());
            }
            if row.status == STATUS_ACTIVE || row.hub != hub {
                return Err(Status::already_exists(format!(
                    "this gateway already has a circle {name:?} (hub {})",
                    row.hub
                )));
            }
        }
        let pinned = self.context.pinned.clone();
        let circle = name.to_string();
        let hub_id = hub.to_string();
        self.apply(&mut inner, |inner| {
            if let Some(old) = inner.groups.remove(&circle) {
                let mut old = old;
                old.delete(inner.provider.storage()).map_err(|error| {
                    Status::internal(format!("deleting the old group: {error:?}"))
                })?;
            }
            let join_config = MlsGroupJoinConfig::builder()
                .use_ratchet_tree_extension(true)
                .build();
            let staged =
                StagedWelcome::new_from_welcome(&inner.provider, &join_config, welcome, None)
                    .map_err(|error| {
                        Status::invalid_argument(format!("Welcome refused: {error}"))
                    })?;
            let sender = staged
                .welcome_sender()
                .map_err(|error| Status::invalid_argument(format!("Welcome sender: {error}")))?;
            let sender_id = pinned
                .check(sender.credential(), sender.signature_key().as_slice())
                .map_err(|reason| Status::permission_denied(format!("Welcome sender: {reason}")))?;
            if sender_id != hub_id {
                return Err(Status::permission_denied(format!(
                    "the Welcome was made by {sender_id}, not by the hub {hub_id} that sent it"
                )));
            }
            pinned
                .check_members(staged.members())
                .map_err(|reason| Status::permission_denied(format!("circle member: {reason}")))?;
            let group = staged
                .into_group(&inner.provider)
                .map_err(|error| Status::invalid_argument(format!("joining: {error}")))?;
            if group.group_id().as_slice() != expected_group.as_slice() {
                return Err(Status::permission_denied(format!(
                    "the Welcome is for group {:?}, not {hub_id}'s circle {circle:?}",
                    String::from_utf8_lossy(group.group_id().as_slice())
                )));
            }
            let row = CircleRow {
                name: circle.clone(),
                group_id: expected_group.clone(),
                hub: hub_id.clone(),
                epoch: group.epoch().as_u64(),
                position,
                status: STATUS_ACTIVE.into(),
                created_micros: now_micros(),
            };
            Ok(((), inner.install(group, row)))
        })
        .await?;
        drop(inner);
        tracing::info!(circle = %name, %hub, position, "joined circle");
        self.follow(name);
        Ok(())
    }

    /// Starts (or restarts) the follower of a circle's hub log.
    pub fn follow(self: &Arc<Self>, name: &str) {
        let task = tokio::spawn(follower::run(self.clone(), name.to_string()));
        let mut followers = self
            .followers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(old) = followers.insert(name.to_string(), task) {
            old.abort();
        }
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
        let _ = tokio::time::timeout(CATCH_UP_PATIENCE, async {
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
        })
        .await;
    }

    // ----- sending ----------------------------------------------------------------------

    /// Rotates this gateway's keys in the circle: a self-update commit, sent to the hub.
    /// When another commit won the epoch, the pending commit is dropped, the follower catches
    /// up, and the rotation is made again on the new epoch.
    pub async fn rotate(&self, name: &str) -> Result<(u64, u32), Status> {
        let _one_at_a_time = self.rotating.lock().await;
        for attempt in 1..=MAX_ATTEMPTS {
            // A commit left pending by an earlier rotation whose answer was lost may still be
            // in the hub's log: let the follower settle it (merge it, or drop it for the
            // commit that won) before making another.
            let unsettled = {
                let inner = self.inner.lock().await;
                let (row, group) = inner.circle(name)?;
                (row.hub != self.context.member && group.pending_commit().is_some())
                    .then(|| group.epoch().as_u64())
            };
            if let Some(epoch) = unsettled {
                self.wait_for_epoch_after(name, epoch).await;
            }
            let mut inner = self.inner.lock().await;
            let signer = self.context.signing_key.clone();
            let circle = name.to_string();
            let own = self.context.member.clone();
            let ((commit, epoch, hub), _) = self
                .apply(&mut inner, |inner| {
                    let (row, group, provider) = inner.circle_mut(&circle)?;
                    if row.status != STATUS_ACTIVE {
                        return Err(Status::failed_precondition(format!(
                            "circle {circle:?} is {}",
                            row.status
                        )));
                    }
                    if group.pending_commit().is_some() {
                        group
                            .clear_pending_commit(provider.storage())
                            .map_err(|error| Status::internal(format!("{error:?}")))?;
                    }
                    let epoch = group.epoch().as_u64();
                    let bundle = group
                        .self_update(provider, signer.as_ref(), LeafNodeParameters::default())
                        .map_err(|error| Status::internal(format!("self-update: {error}")))?;
                    let (commit, _, _) = bundle.into_contents();
                    let commit = mls::serialize(&commit).map_err(Status::internal)?;
                    if row.hub == own {
                        // The hub orders its own commit directly.
                        group
                            .merge_pending_commit(provider)
                            .map_err(|error| Status::internal(format!("merging: {error}")))?;
                        let position = row.position + 1;
                        let updated = CircleRow {
                            epoch: group.epoch().as_u64(),
                            position,
                            ..row.clone()
                        };
                        inner.rows.insert(circle.clone(), updated.clone());
                        return Ok((
                            (None, updated.epoch, row.hub),
                            CircleWrite {
                                circle: Some(updated),
                                log: vec![CircleLogEntry {
                                    circle: circle.clone(),
                                    position,
                                    epoch,
                                    sender: own.clone(),
                                    kind: "commit".into(),
                                    message: commit,
                                    at_micros: now_micros(),
                                }],
                                ..CircleWrite::default()
                            },
                        ));
                    }
                    // Written ahead: the pending commit survives a crash before the hub answers.
                    Ok(((Some(commit), epoch, row.hub), CircleWrite::default()))
                })
                .await?;
            drop(inner);
            let Some(commit) = commit else {
                return Ok((epoch, attempt));
            };
            let sent = self
                .send_to_hub(&hub, name, MessageKind::Commit, vec![commit])
                .await;
            let mut inner = self.inner.lock().await;
            let circle = name.to_string();
            match sent {
                Ok(_) => {
                    let (new_epoch, _) = self
                        .apply(&mut inner, |inner| {
                            let (row, group, provider) = inner.circle_mut(&circle)?;
                            if group.epoch().as_u64() == epoch && group.pending_commit().is_some() {
                                group.merge_pending_commit(provider).map_err(|error| {
                                    Status::internal(format!("merging: {error}"))
                                })?;
                            }
                            let updated = CircleRow {
                                epoch: group.epoch().as_u64(),
                                ..row
                            };
                            inner.rows.insert(circle.clone(), updated.clone());
                            Ok((
                                updated.epoch,
                                CircleWrite {
                                    circle: Some(updated),
                                    ..CircleWrite::default()
                                },
                            ))
                        })
                        .await?;
                    tracing::info!(circle = %name, epoch = new_epoch, attempt, "rotated own keys");
                    return Ok((new_epoch, attempt));
                }
                Err(status) if status.code() == tonic::Code::Aborted => {
                    // Another commit won this epoch: drop ours and catch up.
                    self.apply(&mut inner, |inner| {
                        if let Some(group) = inner.groups.get_mut(&circle)
                            && group.pending_commit().is_some()
                        {
                            group
                                .clear_pending_commit(inner.provider.storage())
                                .map_err(|error| Status::internal(format!("{error:?}")))?;
                        }
                        Ok(((), CircleWrite::default()))
                    })
                    .await?;
                    drop(inner);
                    tracing::info!(circle = %name, epoch, attempt, reason = %status.message(), "commit lost its epoch; catching up to retry");
                    self.wait_for_epoch_after(name, epoch).await;
                }
                Err(status) => return Err(status),
            }
        }
        Err(Status::aborted(format!(
            "circle {name:?}: rotation lost its epoch {MAX_ATTEMPTS} times"
        )))
    }

    pub(crate) async fn send_to_hub(
        &self,
        hub: &str,
        name: &str,
        kind: MessageKind,
        mut messages: Vec<Vec<u8>>,
    ) -> Result<cordon_proto::v1::SendResponse, Status> {
        if messages.is_empty() {
            return Err(Status::internal("nothing to send"));
        }
        let message = messages.remove(0);
        let mut client = self.connect(hub).await?;
        client
            .send(SendRequest {
                circle: name.to_string(),
                kind: kind as i32,
                message,
                messages,
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// Publishes source-protected indicators into a circle: the origin's policy must allow
    /// every current member (channel "circle", no redaction), else nothing is sent. Each
    /// indicator becomes one MLS application message, ordered by the hub.
    pub async fn publish(
        &self,
        publisher: &Identity,
        name: &str,
        indicators: Vec<Indicator>,
        now_rfc3339: &str,
        created: pbjson_types::Timestamp,
        warnings: Vec<Vec<String>>,
    ) -> Result<PublishResponse, Status> {
        let (members, hub) = {
            let inner = self.inner.lock().await;
            let (row, group) = inner.circle(name)?;
            if row.status != STATUS_ACTIVE {
                return Err(Status::failed_precondition(format!(
                    "circle {name:?} is {}",
                    row.status
                )));
            }
            let members: Vec<String> = mls::member_ids(group)
                .into_iter()
                .filter(|member| *member != self.context.member)
                .collect();
            (members, row.hub.clone())
        };
        let mut signed = Vec::with_capacity(indicators.len());
        for mut indicator in indicators {
            if indicator.id.is_empty() {
                indicator.id = uuid::Uuid::now_v7().to_string();
            }
            indicator.originator = self.context.member.clone();
            indicator.publisher = publisher.to_string();
            indicator.created = Some(created);
            indicator.protection = Protection::SourceProtected as i32;
            self.context.signing_key.sign(&mut indicator);
            signed.push(indicator);
        }
        // Every member, every indicator: one refusal stops the whole call.
        let mut refused = Vec::new();
        let mut records = Vec::new();
        for indicator in &signed {
            for member in &members {
                let recipient = Identity::Member {
                    member: member.clone(),
                };
                let release = self.context.releaser.release(
                    indicator,
                    &recipient,
                    ReleaseChannel::Circle,
                    now_rfc3339,
                );
                self.context.releaser.record(&release.record);
                let record = release.record;
                if !record.allow {
                    refused.push(format!("{member} ({})", record.reasons.join("; ")));
                } else if !record.redact.is_empty() {
                    refused.push(format!(
                        "{member} (the policy would redact {}; a circle message is the same \
                         for every member)",
                        record.redact.join(", ")
                    ));
                }
                records.push(record);
            }
        }
        if let Err(error) = self.context.decision_log.write(&records).await {
            return Err(storage_status(error));
        }
        if !refused.is_empty() {
            refused.dedup();
            return Err(Status::failed_precondition(format!(
                "circle {name:?}: the policy refuses {}; nothing was sent",
                refused.join(", ")
            )));
        }
        let mut accepted = Vec::with_capacity(signed.len());
        if hub == self.context.member {
            // The hub orders its own messages: the whole call in one transaction.
            let outcome = self.hub_publish(name, &signed, &members).await?;
            for (indicator, warnings) in signed.iter().zip(warnings) {
                accepted.push(Accepted {
                    id: indicator.id.clone(),
                    sequence: sequence_of(&outcome, &indicator.id)?,
                    warnings,
                });
            }
            tracing::info!(publisher = %publisher, circle = %name, count = accepted.len(), "published into circle");
            return Ok(PublishResponse { accepted });
        }
        // A member sends the whole call to the hub in one request, logged there in one
        // transaction.
        self.refuse_held(&signed).await?;
        let sequences = self.send_indicators(name, &hub, &signed, &members).await?;
        for ((indicator, warnings), sequence) in signed.iter().zip(warnings).zip(sequences) {
            accepted.push(Accepted {
                id: indicator.id.clone(),
                sequence,
                warnings,
            });
        }
        tracing::info!(publisher = %publisher, circle = %name, count = accepted.len(), "published into circle");
        Ok(PublishResponse { accepted })
    }

    /// An id already held here is refused before anything is encrypted.
    async fn refuse_held(&self, indicators: &[Indicator]) -> Result<(), Status> {
        for indicator in indicators {
            if self
                .context
                .store
                .indicator(&indicator.id)
                .await
                .map_err(storage_status)?
                .is_some()
            {
                return Err(Status::already_exists(format!(
                    "indicator id {} is already held; nothing was sent",
                    indicator.id
                )));
            }
        }
        Ok(())
    }

    /// The hub's own indicators: one application message each, appended to the log with the
    /// indicators in one transaction.
    async fn hub_publish(
        &self,
        name: &str,
        signed: &[Indicator],
        checked: &[String],
    ) -> Result<CircleWriteOutcome, Status> {
        let mut inner = self.inner.lock().await;
        // Under the lock, so that a concurrent publish of the same id cannot be stored
        // between the check and this call's messages going out.
        self.refuse_held(signed).await?;
        let signer = self.context.signing_key.clone();
        let own = self.context.member.clone();
        let circle = name.to_string();
        let ((), outcome) = self
            .apply(&mut inner, |inner| {
                let (row, group, provider) = inner.circle_mut(&circle)?;
                self.require_hub(&row)?;
                same_members(group, &own, checked, &circle)?;
                let epoch = group.epoch().as_u64();
                let mut position = row.position;
                let mut log = Vec::with_capacity(signed.len());
                let mut indicators = Vec::with_capacity(signed.len());
                for indicator in signed {
                    let message = group
                        .create_message(provider, signer.as_ref(), &indicator.encode_to_vec())
                        .map_err(|error| Status::internal(format!("encrypting: {error}")))?;
                    position += 1;
                    log.push(CircleLogEntry {
                        circle: circle.clone(),
                        position,
                        epoch,
                        sender: own.clone(),
                        kind: "application".into(),
                        message: mls::serialize(&message).map_err(Status::internal)?,
                        at_micros: now_micros(),
                    });
                    indicators.push(circle_indicator(indicator, None)?);
                }
                let updated = CircleRow { position, ..row };
                inner.rows.insert(circle.clone(), updated.clone());
                Ok((
                    (),
                    CircleWrite {
                        circle: Some(updated),
                        log,
                        indicators,
                        indicators_circle: Some(circle.clone()),
                        ..CircleWrite::default()
                    },
                ))
            })
            .await?;
        Ok(outcome)
    }

    /// A member's indicators, one application message each, sent to the hub in one request;
    /// returns their sequences in the local feed. The sender's ratchet and the indicators (in
    /// the outbox) are written before the ciphertexts leave.
    async fn send_indicators(
        &self,
        name: &str,
        hub: &str,
        indicators: &[Indicator],
        checked: &[String],
    ) -> Result<Vec<u64>, Status> {
        let payloads: Vec<Vec<u8>> = indicators
            .iter()
            .map(prost::Message::encode_to_vec)
            .collect();
        let stored: Vec<NewIndicator> = indicators
            .iter()
            .map(|indicator| circle_indicator(indicator, None))
            .collect::<Result<_, _>>()?;
        for _attempt in 1..=MAX_ATTEMPTS {
            let mut inner = self.inner.lock().await;
            let signer = self.context.signing_key.clone();
            let circle = name.to_string();
            let own = self.context.member.clone();
            let ((messages, epoch), _) = self
                .apply(&mut inner, |inner| {
                    let (row, group, provider) = inner.circle_mut(&circle)?;
                    if row.hub == own {
                        // The hub's own indicators go through `hub_publish`.
                        return Err(Status::internal("the hub does not send to itself"));
                    }
                    same_members(group, &own, checked, &circle)?;
                    let epoch = group.epoch().as_u64();
                    let mut messages = Vec::with_capacity(payloads.len());
                    let mut outbox = Vec::with_capacity(payloads.len());
                    for payload in &payloads {
                        let message = group
                            .create_message(provider, signer.as_ref(), payload)
                            .map_err(|error| Status::internal(format!("encrypting: {error}")))?;
                        let message = mls::serialize(&message).map_err(Status::internal)?;
                        // Written ahead: no key is ever used twice, and the indicator waits
                        // in the outbox until the hub's answer or its log says what became
                        // of it.
                        outbox.push((circle.clone(), digest(&message), Some(payload.to_vec())));
                        messages.push(message);
                    }
                    Ok((
                        (messages, epoch),
                        CircleWrite {
                            outbox,
                            ..CircleWrite::default()
                        },
                    ))
                })
                .await?;
            drop(inner);
            let sent: Vec<(String, Vec<u8>, Option<Vec<u8>>)> = messages
                .iter()
                .map(|message| (name.to_string(), digest(message), None))
                .collect();
            match self
                .send_to_hub(hub, name, MessageKind::Application, messages)
                .await
            {
                Ok(_) => {
                    let outcome = self
                        .context
                        .store
                        .circle_write(CircleWrite {
                            indicators: stored.clone(),
                            indicators_circle: Some(name.to_string()),
                            outbox: sent,
                            ..CircleWrite::default()
                        })
                        .await
                        .map_err(storage_status)?;
                    let mut sequences = Vec::with_capacity(stored.len());
                    for item in &stored {
                        if outcome.duplicates.contains(&item.id) {
                            // The follower stored it first, from the outbox.
                            let held = self
                                .context
                                .store
                                .indicator(&item.id)
                                .await
                                .map_err(storage_status)?;
                            if let Some(held) = held.filter(|held| held.payload == item.payload) {
                                sequences.push(held.sequence);
                                continue;
                            }
                        }
                        sequences.push(sequence_of(&outcome, &item.id)?);
                    }
                    return Ok(sequences);
                }
                Err(status) if status.code() == tonic::Code::Aborted => {
                    // Refused before any was processed: none is in the hub's log.
                    self.context
                        .store
                        .circle_write(CircleWrite {
                            outbox: sent,
                            ..CircleWrite::default()
                        })
                        .await
                        .map_err(storage_status)?;
                    tracing::info!(circle = %name, epoch, reason = %status.message(), "messages lost their epoch; catching up to retry");
                    self.wait_for_epoch_after(name, epoch).await;
                }
                Err(status) => return Err(status),
            }
        }
        Err(Status::aborted(format!(
            "circle {name:?}: the messages lost their epoch {MAX_ATTEMPTS} times"
        )))
    }
}

/// The KeyPackages to forget at `now`: single-use ones made more than [`KEY_PACKAGE_EXPIRY`]
/// ago, last-resort ones made more than [`LAST_RESORT_ROTATION`] plus that ago.
fn expired_key_packages(rows: &[KeyPackageRow], now: i64) -> Vec<Vec<u8>> {
    let expiry = KEY_PACKAGE_EXPIRY.as_micros() as i64;
    let rotation = LAST_RESORT_ROTATION.as_micros() as i64;
    rows.iter()
        .filter(|row| {
            let age = now.saturating_sub(row.created_micros);
            if row.last_resort {
                age > rotation + expiry
            } else {
                age > expiry
            }
        })
        .map(|row| row.hash_ref.clone())
        .collect()
}

/// The outbox key of an MLS message: its SHA-256.
pub fn digest(message: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(message).to_vec()
}

/// Encryption only for the members the policy was asked about: a member added since (while
/// a sender caught up, or by a concurrent add at the hub) must not read it.
fn same_members(group: &MlsGroup, own: &str, asked: &[String], circle: &str) -> Result<(), Status> {
    let mut now: Vec<String> = mls::member_ids(group)
        .into_iter()
        .filter(|member| member != own)
        .collect();
    let mut asked = asked.to_vec();
    now.sort();
    asked.sort();
    if now != asked {
        return Err(Status::failed_precondition(format!(
            "circle {circle:?}: its members changed since the policy was asked (asked for {}; \
             now {}); this indicator was not sent: publish it again",
            asked.join(", "),
            now.join(", ")
        )));
    }
    Ok(())
}

fn sequence_of(outcome: &CircleWriteOutcome, id: &str) -> Result<u64, Status> {
    if let Some((_, sequence)) = outcome.stored.iter().find(|(stored, _)| stored == id) {
        return Ok(*sequence);
    }
    if outcome.conflicts.iter().any(|conflict| conflict == id)
        || outcome.duplicates.iter().any(|duplicate| duplicate == id)
    {
        return Err(Status::already_exists(format!(
            "indicator id {id} is already held"
        )));
    }
    Err(Status::internal(format!("indicator {id} was not stored")))
}

/// The feed row of a source-protected indicator held in a circle.
pub fn circle_indicator(indicator: &Indicator, via: Option<&str>) -> Result<NewIndicator, Status> {
    let kind = cordon_indicator::kind_name(indicator)
        .ok_or_else(|| Status::invalid_argument("indicator has no kind"))?;
    let created = indicator
        .created
        .as_ref()
        .ok_or_else(|| Status::invalid_argument("indicator has no creation time"))?;
    Ok(NewIndicator {
        id: indicator.id.clone(),
        originator: indicator.originator.clone(),
        kind: kind.to_string(),
        created_micros: crate::clock::micros_of(created),
        supersedes: (!indicator.supersedes.is_empty()).then(|| indicator.supersedes.clone()),
        via: via.map(str::to_string),
        payload: indicator.encode_to_vec(),
    })
}

/// Checks a decrypted circle indicator: the MLS sender is its originator, it carries the
/// originator's valid signature, it is source-protected and valid.
pub fn check_circle_indicator(
    context: &CircleContext,
    sender: &str,
    plaintext: &[u8],
) -> Result<Indicator, String> {
    let indicator =
        Indicator::decode(plaintext).map_err(|error| format!("not an indicator: {error}"))?;
    if indicator.originator != sender {
        return Err(format!(
            "sent by {sender} but claims originator {:?}",
            indicator.originator
        ));
    }
    if indicator.protection != Protection::SourceProtected as i32 {
        return Err("a circle indicator must be source-protected".into());
    }
    if sender == context.member {
        crate::signing::verify(&indicator, sender, context.signing_key.public_key())
            .map_err(|error| format!("signature: {error}"))?;
    } else {
        context
            .pinned
            .keys
            .verify_indicator(&indicator)
            .map_err(|error| format!("signature: {error}"))?;
    }
    if let Err(errors) = cordon_indicator::validate_indicator(&indicator, &context.limits) {
        let details: Vec<String> = errors
            .iter()
            .map(|error| format!("{}: {}", error.path, error.message))
            .collect();
        return Err(format!("invalid: {}", details.join("; ")));
    }
    if indicator.created.is_none() || cordon_indicator::kind_name(&indicator).is_none() {
        return Err("indicator has no kind or creation time".into());
    }
    Ok(indicator)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(tag: u8, last_resort: bool, created_micros: i64) -> KeyPackageRow {
        KeyPackageRow {
            hash_ref: vec![tag],
            key_package: Vec::new(),
            last_resort,
            issued_to: None,
            issued_micros: None,
            created_micros,
        }
    }

    #[test]
    fn key_packages_expire_after_30_days_last_resort_ones_30_days_after_rotation() {
        let day = 24 * 3_600_000_000i64;
        let now = 1_000 * day;
        let rows = [
            row(1, false, now - 29 * day),
            row(2, false, now - 31 * day),
            row(3, true, now - 30 * day),
            row(4, true, now - 32 * day),
        ];
        assert_eq!(expired_key_packages(&rows, now), [vec![2], vec![4]]);
    }
}
