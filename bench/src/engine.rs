//! The circle engine in process: adding and removing a member of an MLS group of N members
//! with the gateway's own ciphersuite, provider, credentials and signing keys, persisted as
//! `Circles::apply` persists them (a journal around the operation, the keys it changed and the circle's
//! rows in one `Store::circle_write` transaction on SQLite, a WAL checkpoint after a write
//! that deletes keys). No network: hundreds of gateway processes do not fit on two cores.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cordon_gateway::circle::circle_indicator;
use cordon_gateway::circle::follower::process;
use cordon_gateway::circle::mls::{self, PinnedKeys, Provider};
use cordon_gateway::signing::{FederationKeys, SigningKey, generate_signing_key};
use cordon_storage::{CircleLogEntry, CircleRow, CircleWrite, Store};
use openmls::prelude::*;
use serde::Serialize;
use tls_codec::Serialize as _;

const CIRCLE: &str = "bench";
const HUB: &str = "HUB";
const OBSERVER: &str = "OBS";
/// Application messages timed per circle size.
const MESSAGES: usize = 20;

/// One operation at one group size, over all repetitions.
#[derive(Debug, Clone, Serialize)]
pub struct EngineRow {
    /// Members before an add, members after a remove.
    pub members: usize,
    pub operation: String,
    pub repetitions: usize,
    pub median_us: u64,
    pub min_us: u64,
    pub max_us: u64,
    /// Bytes of the MLS message (median): the commit every member downloads, or the
    /// application message.
    pub commit_bytes: usize,
    /// openmls key-value rows written or deleted in the transaction (median).
    pub kv_changes: usize,
    /// Of the median time, the WAL checkpoint after deleting keys (median over repetitions).
    pub checkpoint_us: u64,
}

/// A member's signing key, made the way `cordon init` makes one.
fn signing_key(dir: &Path, member: &str) -> Result<SigningKey> {
    let path = dir.join(format!("{member}.pem"));
    generate_signing_key(&path)?;
    SigningKey::load(&path, member)
}

/// A member that is not the hub or the observer: only its KeyPackage matters.
struct Candidate {
    member: String,
    key_package: Vec<u8>,
    public_key: Vec<u8>,
}

fn candidate(dir: &Path, provider: &Provider, member: &str) -> Result<Candidate> {
    let key = signing_key(dir, member)?;
    let bundle = KeyPackage::builder()
        .build(
            mls::CIPHERSUITE,
            provider,
            &key,
            mls::own_credential(member, &key),
        )
        .context("making a KeyPackage")?;
    Ok(Candidate {
        member: member.to_string(),
        key_package: bundle.key_package().tls_serialize_detached()?,
        public_key: key.public_key().to_vec(),
    })
}

/// One side of the circle: a provider, its group, its store and its circle row.
struct Side {
    provider: Provider,
    group: MlsGroup,
    store: Store,
    row: CircleRow,
}

impl Side {
    /// Writes what the operation in the open journal changed, with the circle's rows, as
    /// `Circles::apply` does. Returns the key-value changes and the checkpoint's time.
    async fn persist(&mut self, mut write: CircleWrite) -> Result<(usize, Duration)> {
        write.kv = self.provider.storage().changes();
        let changes = write.kv.len();
        let deletes_keys = write.kv.iter().any(|(_, value)| value.is_none());
        self.store.circle_write(write).await?;
        self.provider.storage().commit();
        let started = Instant::now();
        if deletes_keys {
            self.store.checkpoint().await?;
        }
        Ok((changes, started.elapsed()))
    }
}

fn log_entry(position: u64, epoch: u64, message: Vec<u8>) -> CircleLogEntry {
    CircleLogEntry {
        circle: CIRCLE.into(),
        position,
        epoch,
        sender: HUB.into(),
        kind: "commit".into(),
        message,
        at_micros: 0,
    }
}

/// The hub commits a membership change (already staged as `commit` in its group): merges it,
/// appends it to the log and persists. Returns the commit's bytes and the key-value changes.
async fn hub_commit(
    hub: &mut Side,
    commit: &MlsMessageOut,
    departure: (String, Option<u64>),
) -> Result<(Vec<u8>, (usize, Duration))> {
    let epoch = hub.group.epoch().as_u64();
    hub.group.merge_pending_commit(&hub.provider)?;
    let message = mls::serialize(commit).map_err(anyhow::Error::msg)?;
    let position = hub.row.position + 1;
    hub.row = CircleRow {
        epoch: hub.group.epoch().as_u64(),
        position,
        ..hub.row.clone()
    };
    let (member, last) = departure;
    let write = CircleWrite {
        circle: Some(hub.row.clone()),
        log: vec![log_entry(position, epoch, message.clone())],
        departures: vec![(CIRCLE.into(), member, last.map(|_| position))],
        ..CircleWrite::default()
    };
    let changes = hub.persist(write).await?;
    Ok((message, changes))
}

/// A member applies the hub's commit as its follower does: decrypt and verify, check the
/// credentials, merge, and persist the state with its position.
async fn member_applies(member: &mut Side, commit: &[u8]) -> Result<(usize, Duration)> {
    member.provider.storage().begin();
    match process(&member.provider, &mut member.group, commit).map_err(anyhow::Error::msg)? {
        ProcessedMessageContent::StagedCommitMessage(staged) => {
            for credential in staged.credentials_to_verify() {
                mls::credential_member(credential).map_err(anyhow::Error::msg)?;
            }
            member
                .group
                .merge_staged_commit(&member.provider, *staged)?;
        }
        _ => bail!("the hub's message is not a commit"),
    }
    member.row = CircleRow {
        epoch: member.group.epoch().as_u64(),
        position: member.row.position + 1,
        ..member.row.clone()
    };
    let write = CircleWrite {
        circle: Some(member.row.clone()),
        ..CircleWrite::default()
    };
    member.persist(write).await
}

fn circle_row(hub: &str, group: &MlsGroup, position: u64) -> CircleRow {
    CircleRow {
        name: CIRCLE.into(),
        group_id: group.group_id().as_slice().to_vec(),
        hub: hub.into(),
        epoch: group.epoch().as_u64(),
        position,
        status: "active".into(),
        created_micros: 0,
    }
}

struct Samples {
    micros: Vec<u64>,
    bytes: Vec<usize>,
    changes: Vec<usize>,
    checkpoints: Vec<u64>,
}

impl Samples {
    fn new() -> Samples {
        Samples {
            micros: Vec::new(),
            bytes: Vec::new(),
            changes: Vec::new(),
            checkpoints: Vec::new(),
        }
    }

    fn push(&mut self, elapsed: Duration, bytes: usize, (changes, checkpoint): (usize, Duration)) {
        self.micros.push(elapsed.as_micros() as u64);
        self.bytes.push(bytes);
        self.changes.push(changes);
        self.checkpoints.push(checkpoint.as_micros() as u64);
    }

    fn row(&self, members: usize, operation: &str) -> EngineRow {
        fn median<T: Copy + Ord>(values: &[T]) -> T {
            let mut sorted = values.to_vec();
            sorted.sort_unstable();
            sorted[sorted.len() / 2]
        }
        EngineRow {
            members,
            operation: operation.into(),
            repetitions: self.micros.len(),
            median_us: median(&self.micros),
            min_us: self.micros.iter().copied().min().unwrap_or_default(),
            max_us: self.micros.iter().copied().max().unwrap_or_default(),
            commit_bytes: median(&self.bytes),
            kv_changes: median(&self.changes),
            checkpoint_us: median(&self.checkpoints),
        }
    }
}

/// Adds and removes one member `repetitions` times in a circle of `size` members (the hub,
/// one observing member, and `size - 2` others).
pub async fn measure(size: usize, repetitions: usize) -> Result<Vec<EngineRow>> {
    if size < 2 || repetitions == 0 {
        bail!("a circle of {size} members, {repetitions} repetitions: need at least 2 and 1");
    }
    let dir = tempfile::tempdir()?;
    let url = |name: &str| format!("sqlite:{}", dir.path().join(name).display());
    let hub_key = signing_key(dir.path(), HUB)?;
    let observer_key = signing_key(dir.path(), OBSERVER)?;
    // The others' private keys live in one provider: only their KeyPackages are used.
    let others = Provider::default();
    let mut candidates = Vec::new();
    for index in 0..size - 2 {
        candidates.push(candidate(dir.path(), &others, &format!("M{index:04}"))?);
    }
    let joiners = (0..repetitions)
        .map(|index| candidate(dir.path(), &others, &format!("NEW-{index}")))
        .collect::<Result<Vec<_>>>()?;
    let mut keys = FederationKeys::default();
    keys.insert(OBSERVER, observer_key.public_key().to_vec());
    for other in candidates.iter().chain(&joiners) {
        keys.insert(&other.member, other.public_key.clone());
    }
    let pinned = PinnedKeys {
        own_member: HUB.into(),
        own_key: hub_key.public_key().to_vec(),
        keys: Arc::new(keys),
    };

    // The hub creates the circle and adds everyone but the joiners in one commit.
    let provider = Provider::default();
    provider.storage().begin();
    let group = MlsGroup::builder()
        .with_group_id(GroupId::from_slice(format!("{HUB}/{CIRCLE}").as_bytes()))
        .ciphersuite(mls::CIPHERSUITE)
        .use_ratchet_tree_extension(true)
        .build(&provider, &hub_key, mls::own_credential(HUB, &hub_key))?;
    let row = circle_row(HUB, &group, 0);
    let mut hub = Side {
        provider,
        group,
        store: Store::connect(&url("hub.db")).await?,
        row,
    };
    hub.persist(CircleWrite {
        circle: Some(hub.row.clone()),
        ..CircleWrite::default()
    })
    .await?;
    let observer_provider = Provider::default();
    let observer_package = KeyPackage::builder()
        .build(
            mls::CIPHERSUITE,
            &observer_provider,
            &observer_key,
            mls::own_credential(OBSERVER, &observer_key),
        )?
        .key_package()
        .tls_serialize_detached()?;
    let mut initial = vec![
        mls::check_key_package(&hub.provider, &observer_package, OBSERVER, &pinned)
            .map_err(anyhow::Error::msg)?,
    ];
    for other in &candidates {
        initial.push(
            mls::check_key_package(&hub.provider, &other.key_package, &other.member, &pinned)
                .map_err(anyhow::Error::msg)?,
        );
    }
    hub.provider.storage().begin();
    let (commit, welcome, _) = hub.group.add_members(&hub.provider, &hub_key, &initial)?;
    hub_commit(&mut hub, &commit, (OBSERVER.into(), None)).await?;

    // The observer joins from the Welcome at the hub's position.
    let welcome = mls::deserialize(&mls::serialize(&welcome).map_err(anyhow::Error::msg)?)
        .map_err(anyhow::Error::msg)?;
    let MlsMessageBodyIn::Welcome(welcome) = welcome.extract() else {
        bail!("not a Welcome");
    };
    observer_provider.storage().begin();
    let join_config = MlsGroupJoinConfig::builder()
        .use_ratchet_tree_extension(true)
        .build();
    let group = StagedWelcome::new_from_welcome(&observer_provider, &join_config, welcome, None)?
        .into_group(&observer_provider)?;
    let row = circle_row(HUB, &group, hub.row.position);
    let mut observer = Side {
        provider: observer_provider,
        group,
        store: Store::connect(&url("observer.db")).await?,
        row,
    };
    observer
        .persist(CircleWrite {
            circle: Some(observer.row.clone()),
            ..CircleWrite::default()
        })
        .await?;
    if hub.group.members().count() != size || observer.group.members().count() != size {
        bail!("the circle does not have {size} members");
    }

    let mut hub_add = Samples::new();
    let mut member_add = Samples::new();
    let mut hub_remove = Samples::new();
    let mut member_remove = Samples::new();
    for joiner in &joiners {
        // (a) The hub adds a member: the KeyPackage checked against the pinned keys, the
        // commit made, merged, encoded and persisted with the log entry.
        let started = Instant::now();
        hub.provider.storage().begin();
        let key_package =
            mls::check_key_package(&hub.provider, &joiner.key_package, &joiner.member, &pinned)
                .map_err(anyhow::Error::msg)?;
        let (commit, welcome, _) =
            hub.group
                .add_members(&hub.provider, &hub_key, &[key_package])?;
        let welcome = mls::serialize(&welcome).map_err(anyhow::Error::msg)?;
        let (commit, changes) =
            hub_commit(&mut hub, &commit, (joiner.member.clone(), None)).await?;
        hub_add.push(started.elapsed(), commit.len(), changes);
        drop(welcome);

        // (b) A member applies it.
        let started = Instant::now();
        let changes = member_applies(&mut observer, &commit).await?;
        member_add.push(started.elapsed(), commit.len(), changes);

        // (c) The hub removes it again, and the member applies the removal.
        let started = Instant::now();
        hub.provider.storage().begin();
        let leaf = mls::leaf_of(&hub.group, &joiner.member).context("the joiner's leaf")?;
        let (commit, _, _) = hub.group.remove_members(&hub.provider, &hub_key, &[leaf])?;
        let (commit, changes) =
            hub_commit(&mut hub, &commit, (joiner.member.clone(), Some(0))).await?;
        hub_remove.push(started.elapsed(), commit.len(), changes);
        let started = Instant::now();
        let changes = member_applies(&mut observer, &commit).await?;
        member_remove.push(started.elapsed(), commit.len(), changes);
    }
    if observer.group.epoch() != hub.group.epoch() || observer.group.members().count() != size {
        bail!("the observing member fell out of step with the hub");
    }

    // For comparison, one indicator as an application message: the hub encrypts it and
    // stores it with its log entry; a member decrypts it and stores it with its position.
    let mut hub_message = Samples::new();
    let mut member_message = Samples::new();
    for _ in 0..MESSAGES {
        let mut indicator = crate::scenario::bench_indicator(Instant::now());
        indicator.id = uuid::Uuid::now_v7().to_string();
        indicator.originator = HUB.into();
        indicator.publisher = format!("{HUB}/customs");
        indicator.created = Some(cordon_proto::Timestamp {
            seconds: 1_790_000_000,
            nanos: 0,
        });
        indicator.protection = cordon_proto::v1::Protection::SourceProtected as i32;
        hub_key.sign(&mut indicator)?;
        let payload = prost::Message::encode_to_vec(&indicator);
        let started = Instant::now();
        hub.provider.storage().begin();
        let epoch = hub.group.epoch().as_u64();
        let message = hub
            .group
            .create_message(&hub.provider, &hub_key, &payload)?;
        let message = mls::serialize(&message).map_err(anyhow::Error::msg)?;
        hub.row.position += 1;
        let mut entry = log_entry(hub.row.position, epoch, message.clone());
        entry.kind = "application".into();
        let write = CircleWrite {
            circle: Some(hub.row.clone()),
            log: vec![entry],
            indicators: vec![circle_indicator(&indicator, None)?],
            indicators_circle: Some(CIRCLE.into()),
            ..CircleWrite::default()
        };
        let persisted = hub.persist(write).await?;
        hub_message.push(started.elapsed(), message.len(), persisted);

        let started = Instant::now();
        observer.provider.storage().begin();
        let ProcessedMessageContent::ApplicationMessage(application) =
            process(&observer.provider, &mut observer.group, &message)
                .map_err(anyhow::Error::msg)?
        else {
            bail!("not an application message");
        };
        let received: cordon_proto::v1::Indicator =
            prost::Message::decode(application.into_bytes().as_slice())?;
        observer.row.position += 1;
        let write = CircleWrite {
            circle: Some(observer.row.clone()),
            indicators: vec![circle_indicator(&received, Some(HUB))?],
            indicators_circle: Some(CIRCLE.into()),
            ..CircleWrite::default()
        };
        let persisted = observer.persist(write).await?;
        member_message.push(started.elapsed(), message.len(), persisted);
    }
    Ok(vec![
        hub_add.row(size, "add: hub commit + persist"),
        member_add.row(size, "add: a member applies it + persist"),
        hub_remove.row(size, "remove: hub commit + persist"),
        member_remove.row(size, "remove: a member applies it + persist"),
        hub_message.row(size, "one indicator: hub encrypts + persists"),
        member_message.row(size, "one indicator: a member decrypts + persists"),
    ])
}
