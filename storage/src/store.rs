//! The `Store` handle: picks the backend from the URL and dispatches the feed, decision log and
//! circle operations.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use sqlx::postgres::PgConnectOptions;
use tokio::sync::watch;

use crate::audit::{postgres_audit, sqlite_audit};
use crate::backend::{Backend, HeadGate, now_micros, raise_known_head};
use crate::circles::{self, postgres_circles, sqlite_circles};
use crate::decisions::{postgres_decisions, sqlite_decisions};
use crate::error::StorageError;
use crate::feed::{postgres_feed, sqlite_feed};
use crate::model::{
    CircleLogEntry, CircleRow, CircleWrite, CircleWriteOutcome, DecisionQuery, DecisionRow,
    EventBatch, KeyPackageRow, NewIndicator, PeerCursor, PendingWelcome, ReceiveOutcome, Received,
    StoredIndicator,
};
use crate::postgres::{self, PostgresPools};
use crate::sqlite::{self, SqlitePools};

/// A handle on one feed database. Cheap to clone: clones share pools and the head watch.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<StoreInner>,
}

pub(crate) struct StoreInner {
    pub(crate) pools: Pools,
    /// The highest head this process knows to be committed; followers wait on it.
    pub(crate) head: watch::Sender<u64>,
    /// The highest alert sequence this process knows to be committed; alert streams wait on
    /// it.
    pub(crate) alerts: watch::Sender<u64>,
    /// The audit log's right edge as this process last committed it.
    pub(crate) audit: Arc<crate::audit::KeptEdge>,
    /// Publishes, committed in groups ([`crate::group_commit`]).
    publishes: crate::group_commit::PublishQueue,
}

pub(crate) enum Pools {
    Sqlite(SqlitePools),
    Postgres(PostgresPools),
}

impl fmt::Debug for Store {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Store")
            .field("backend", &self.backend())
            .field("known_head", &*self.inner.head.borrow())
            .finish()
    }
}

impl Store {
    /// Opens (and migrates) the feed at `url`: `sqlite:PATH` or `sqlite://PATH` (the file is
    /// created if missing; WAL mode, synchronous FULL, foreign keys on), or
    /// `postgres://…` / `postgresql://…`.
    pub async fn connect(url: &str) -> Result<Store, StorageError> {
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
        {
            let pools = sqlite::connect(path).await?;
            let head = sqlite_feed::head(&pools.read).await?;
            let gate = Arc::new(HeadGate::default());
            return Ok(Store::new(
                Pools::Sqlite(pools),
                watch::Sender::new(head),
                gate,
            ));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // The parser's message names the part that is wrong; the URL itself may hold a
            // password, so it is not repeated.
            let options = PgConnectOptions::from_str(url)
                .map_err(|error| StorageError::InvalidUrl(format!("postgresql url: {error}")))?;
            return Store::connect_postgres_with(options).await;
        }
        let scheme = url.split_once(':').map_or("none", |(scheme, _)| scheme);
        Err(StorageError::InvalidUrl(format!(
            "unsupported database url scheme {scheme:?}: expected sqlite:PATH, sqlite://PATH, postgres://… or postgresql://…"
        )))
    }

    /// Opens (and migrates) a PostgreSQL feed with explicit options, for example a
    /// `search_path` that selects the schema holding the feed.
    pub async fn connect_postgres_with(options: PgConnectOptions) -> Result<Store, StorageError> {
        let head = watch::Sender::new(0);
        let gate = Arc::new(HeadGate::default());
        let pools = postgres::connect(options, head.clone(), gate.clone()).await?;
        Ok(Store::new(Pools::Postgres(pools), head, gate))
    }

    fn new(pools: Pools, head: watch::Sender<u64>, gate: Arc<HeadGate>) -> Store {
        use crate::group_commit::{PublishQueue, Writer};
        let audit = Arc::new(crate::audit::KeptEdge::default());
        let writer = match &pools {
            Pools::Sqlite(pools) => Writer::Sqlite(pools.write.clone()),
            Pools::Postgres(pools) => Writer::Postgres(pools.pool.clone()),
        };
        let publishes = PublishQueue::start(writer, audit.clone(), head.clone(), gate);
        Store {
            inner: Arc::new(StoreInner {
                pools,
                head,
                alerts: watch::Sender::new(0),
                publishes,
                audit,
            }),
        }
    }

    pub fn backend(&self) -> Backend {
        match self.inner.pools {
            Pools::Sqlite(_) => Backend::Sqlite,
            Pools::Postgres(_) => Backend::Postgres,
        }
    }

    /// Stores the batch atomically: every indicator (with its [`NewIndicator::via`]) and its
    /// `published` event in one transaction, or nothing (a duplicate id, within the batch or
    /// with a stored indicator, fails it with [`StorageError::Duplicate`]). Returns one sequence
    /// per item, in order, consecutive, once committed. Each event's time is the item's
    /// `created_micros`.
    ///
    /// In the same transaction, after the whole batch is stored, each item with
    /// [`NewIndicator::supersedes`] marks the indicator it revises as
    /// [`StoredIndicator::superseded_by`] it, if that one is stored, has the same originator and
    /// is not the item itself; otherwise nothing is marked, silently. The latest revision wins:
    /// it replaces an earlier mark, and of two items of a batch revising the same indicator the
    /// later one marks it. Marking publishes no event.
    ///
    /// Concurrent publishes share a transaction ([`crate::group_commit`]): each batch still
    /// gets its own answer, the one it would have had alone, and its sequences are consecutive.
    pub async fn publish(&self, batch: Vec<NewIndicator>) -> Result<Vec<u64>, StorageError> {
        self.publish_decided(batch, Vec::new(), None).await
    }

    /// [`Store::publish`], storing in the same transaction `decisions`, the release
    /// decisions already made on the batch's indicators (as [`Store::record_page_decisions`]
    /// would, noting the batch's events as their page), and calling `on_commit` with the
    /// sequences once committed and before the feed head moves past them. Decisions that
    /// cannot be stored (a repeated id) fail the whole publish.
    pub async fn publish_decided(
        &self,
        batch: Vec<NewIndicator>,
        decisions: Vec<DecisionRow>,
        on_commit: Option<crate::group_commit::OnCommit>,
    ) -> Result<Vec<u64>, StorageError> {
        // The committer has raised the known head already.
        self.inner
            .publishes
            .publish(crate::group_commit::Publish {
                batch,
                decisions,
                on_commit,
            })
            .await
    }

    /// Appends a `retracted` event (at `at_micros`, with the indicator's kind, `reason` and
    /// `signature`, the originator's signature over the retraction, opaque bytes) and marks the
    /// indicator retracted, atomically. Returns the event's sequence. Fails with
    /// [`StorageError::NotFound`] or [`StorageError::AlreadyRetracted`], and then changes
    /// nothing and takes no sequence.
    pub async fn retract(
        &self,
        indicator_id: &str,
        reason: &str,
        at_micros: i64,
        signature: Option<&[u8]>,
    ) -> Result<u64, StorageError> {
        let sequence = match &self.inner.pools {
            Pools::Sqlite(pools) => {
                sqlite_feed::retract(
                    &pools.write,
                    &self.inner.audit,
                    indicator_id,
                    reason,
                    at_micros,
                    signature,
                )
                .await?
            }
            Pools::Postgres(pools) => {
                postgres_feed::retract(
                    &pools.pool,
                    &self.inner.audit,
                    indicator_id,
                    reason,
                    at_micros,
                    signature,
                )
                .await?
            }
        };
        raise_known_head(&self.inner.head, sequence);
        Ok(sequence)
    }

    /// Applies a page of `peer`'s feed and moves this gateway's cursor on that feed to
    /// `cursor`, in one transaction: either every item is applied and the cursor stored, or
    /// nothing is (an error). So a cursor read back by [`Store::peer_cursor`] never claims
    /// items that were not stored. The transaction first locks the feed head, as every writer
    /// does, so a receive is ordered with publishes and retractions and followers see its
    /// events gap-free.
    ///
    /// Items are applied in order, each seeing the ones before it (a publish then its
    /// retraction in one call works):
    /// - [`Received::Published`]: if an indicator with its id is stored (before the call or
    ///   earlier in it, whatever its originator), it is a duplicate: skipped, no event.
    ///   Otherwise it is stored as [`Store::publish`] stores it (with its `via`, as given), with
    ///   the next sequence and a `published` event, and marks the indicator it supersedes as
    ///   `publish` does, if that one is stored by then.
    /// - [`Received::Retracted`]: applied only if an indicator with that id *and* that
    ///   originator is stored and not yet retracted: it is marked retracted with a `retracted`
    ///   event (the indicator's kind, the given reason, time and signature) at the next
    ///   sequence. Otherwise it is ignored, with no event.
    ///
    /// Sequences are consecutive over the applied items, in item order. The stored cursor
    /// becomes the greater of the stored one and `cursor` (it never moves backwards; beyond
    /// `i64::MAX` it is stored as `i64::MAX`), and its `updated_micros` the current time, even
    /// when `items` is empty (a checkpoint) or nothing was applied. Followers are woken after
    /// the commit if the head moved.
    ///
    /// On SQLite this holds the single writer connection for the whole page, so keep pages to
    /// hundreds of items. The statements per call do not grow with the items, except by one
    /// per 500 rows of a kind.
    pub async fn receive(
        &self,
        peer: &str,
        cursor: u64,
        items: Vec<Received>,
    ) -> Result<ReceiveOutcome, StorageError> {
        let now_micros = now_micros();
        let (outcome, head) = match &self.inner.pools {
            Pools::Sqlite(pools) => {
                sqlite_feed::receive(
                    &pools.write,
                    &self.inner.audit,
                    peer,
                    cursor,
                    &items,
                    now_micros,
                )
                .await?
            }
            Pools::Postgres(pools) => {
                postgres_feed::receive(
                    &pools.pool,
                    &self.inner.audit,
                    peer,
                    cursor,
                    &items,
                    now_micros,
                )
                .await?
            }
        };
        if let Some(head) = head {
            raise_known_head(&self.inner.head, head);
        }
        Ok(outcome)
    }

    /// The number of entries in the audit log (the verifiable record, `cordon-tlog`): every
    /// publish, receive, retraction and circle write appends its entries in its own
    /// transaction.
    pub async fn audit_size(&self) -> Result<u64, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_audit::size(&pools.read).await,
            Pools::Postgres(pools) => postgres_audit::size(&pools.pool).await,
        }
    }

    /// Appends `entries` to the audit log in a transaction of their own (for events that are
    /// not themselves database writes, such as a policy becoming active).
    pub async fn audit_append(&self, entries: &[cordon_tlog::Entry]) -> Result<(), StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => {
                sqlite_audit::append_alone(&pools.write, &self.inner.audit, entries).await
            }
            Pools::Postgres(pools) => {
                postgres_audit::append_alone(&pools.pool, &self.inner.audit, entries).await
            }
        }
    }

    async fn audit_hashes(
        &self,
        operation: cordon_tlog::log::Operation,
    ) -> Result<cordon_tlog::log::ReadHashes, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_audit::hashes_for(&pools.read, operation).await,
            Pools::Postgres(pools) => postgres_audit::hashes_for(&pools.pool, operation).await,
        }
    }

    /// The root of the audit log's first `size` entries (`size` at most [`Store::audit_size`]).
    pub async fn audit_root(&self, size: u64) -> Result<cordon_tlog::Digest, StorageError> {
        let hashes = self
            .audit_hashes(cordon_tlog::log::Operation::Root { size })
            .await?;
        cordon_tlog::log::root(size, &hashes).map_err(audit_error)
    }

    /// The proof that entry `index` is in the tree of the first `size` entries.
    pub async fn audit_inclusion_proof(
        &self,
        index: u64,
        size: u64,
    ) -> Result<Vec<cordon_tlog::Digest>, StorageError> {
        let hashes = self
            .audit_hashes(cordon_tlog::log::Operation::Inclusion { index, size })
            .await?;
        cordon_tlog::log::inclusion_proof(index, size, &hashes).map_err(audit_error)
    }

    /// The proof that the first `first` entries are a prefix of the first `second`.
    pub async fn audit_consistency_proof(
        &self,
        first: u64,
        second: u64,
    ) -> Result<Vec<cordon_tlog::Digest>, StorageError> {
        let hashes = self
            .audit_hashes(cordon_tlog::log::Operation::Consistency { first, second })
            .await?;
        cordon_tlog::log::consistency_proof(first, second, &hashes).map_err(audit_error)
    }

    /// Entries from position `from`, at most `limit`: (position, canonical bytes).
    pub async fn audit_entries(
        &self,
        from: u64,
        limit: u32,
    ) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_audit::entries(&pools.read, from, limit).await,
            Pools::Postgres(pools) => postgres_audit::entries(&pools.pool, from, limit).await,
        }
    }

    /// The retraction of `indicator_id` as the feed holds it, if it was retracted.
    pub async fn audit_retraction(
        &self,
        indicator_id: &str,
    ) -> Result<Option<crate::model::RetractionRecord>, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_audit::retraction(&pools.read, indicator_id).await,
            Pools::Postgres(pools) => postgres_audit::retraction(&pools.pool, indicator_id).await,
        }
    }

    /// The release decisions covered by the audit log's entry at `position`, by decision id
    /// (bytewise): the order the entry's digest covers.
    pub async fn audit_decisions(
        &self,
        position: u64,
    ) -> Result<Vec<crate::model::DecisionRow>, StorageError> {
        let mut rows = match &self.inner.pools {
            Pools::Sqlite(pools) => {
                sqlite_decisions::at_audit_position(&pools.read, position).await
            }
            Pools::Postgres(pools) => {
                postgres_decisions::at_audit_position(&pools.pool, position).await
            }
        }?;
        rows.sort_by(|a, b| a.decision_id.as_bytes().cmp(b.decision_id.as_bytes()));
        Ok(rows)
    }

    /// The latest checkpoint of `peer`'s audit log checked here, if any.
    pub async fn peer_checkpoint(
        &self,
        peer: &str,
    ) -> Result<Option<crate::model::PeerCheckpoint>, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_audit::peer_checkpoint(&pools.read, peer).await,
            Pools::Postgres(pools) => postgres_audit::peer_checkpoint(&pools.pool, peer).await,
        }
    }

    /// Keeps `checkpoint` as the latest of its peer's log (the caller proved it extends the
    /// one kept before).
    pub async fn store_peer_checkpoint(
        &self,
        checkpoint: &crate::model::PeerCheckpoint,
    ) -> Result<(), StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => {
                sqlite_audit::store_peer_checkpoint(&pools.write, checkpoint).await
            }
            Pools::Postgres(pools) => {
                postgres_audit::store_peer_checkpoint(&pools.pool, checkpoint).await
            }
        }
    }

    /// The positions of the entries about `indicator_id` (its publication or receipt, its
    /// retraction), ascending.
    pub async fn audit_positions_of(&self, indicator_id: &str) -> Result<Vec<u64>, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_audit::positions_of(&pools.read, indicator_id).await,
            Pools::Postgres(pools) => postgres_audit::positions_of(&pools.pool, indicator_id).await,
        }
    }

    /// The cursor stored for `peer` by [`Store::receive`]: the peer's sequence up to which its
    /// feed has been stored here. 0 if nothing was ever received from it.
    pub async fn peer_cursor(&self, peer: &str) -> Result<u64, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_feed::peer_cursor(&pools.read, peer).await,
            Pools::Postgres(pools) => postgres_feed::peer_cursor(&pools.pool, peer).await,
        }
    }

    /// Every stored peer cursor, ordered by peer (compared bytewise on both backends).
    pub async fn peer_cursors(&self) -> Result<Vec<PeerCursor>, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_feed::peer_cursors(&pools.read).await,
            Pools::Postgres(pools) => postgres_feed::peer_cursors(&pools.pool).await,
        }
    }

    /// Events with sequence `> after` (and, if `kinds` is not empty, whose kind is one of
    /// `kinds`), at most `limit`, ascending. Never returns an event above a head that some
    /// transaction has not committed yet; [`EventBatch::scanned_to`] says how far the cursor
    /// may move, and [`EventBatch::head`] is the head the read saw (with `limit` 0, read on its
    /// own). Each distinct kind is one bind parameter, so keep `kinds` short (tens, not
    /// thousands); repeats are ignored.
    pub async fn read_after(
        &self,
        after: u64,
        limit: u32,
        kinds: &[String],
    ) -> Result<EventBatch, StorageError> {
        match &self.inner.pools {
            // A page in one hand-off, each payload copied once (`feed::direct_read`).
            Pools::Sqlite(pools) if limit > 0 => {
                crate::feed::direct_read::read_after(&pools.read, after, limit, kinds).await
            }
            Pools::Sqlite(pools) => sqlite_feed::read_after(&pools.read, after, limit, kinds).await,
            Pools::Postgres(pools) => {
                postgres_feed::read_after(&pools.pool, after, limit, kinds).await
            }
        }
    }

    pub async fn indicator(&self, id: &str) -> Result<Option<StoredIndicator>, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_feed::indicator(&pools.read, id).await,
            Pools::Postgres(pools) => postgres_feed::indicator(&pools.pool, id).await,
        }
    }

    /// The highest committed sequence, 0 if none.
    pub async fn head(&self) -> Result<u64, StorageError> {
        let head = match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_feed::head(&pools.read).await?,
            Pools::Postgres(pools) => postgres_feed::head(&pools.pool).await?,
        };
        raise_known_head(&self.inner.head, head);
        Ok(head)
    }

    /// Appends decisions in one transaction: all of them, or none if any `decision_id` is
    /// repeated within `rows` (then [`StorageError::Database`]; ids are not checked against
    /// earlier writes: the gateway makes them unique). Does not
    /// move the feed head. The gateway buffers decisions and writes them in batches.
    ///
    /// On SQLite this goes through the same single writer connection as [`Store::publish`],
    /// which waits meanwhile: the lists are encoded before the transaction starts and the
    /// transaction only inserts, but keep batches to hundreds or a few thousand rows.
    pub async fn record_decisions(&self, rows: &[DecisionRow]) -> Result<(), StorageError> {
        self.record_page_decisions(rows, &[]).await
    }

    /// Like [`Store::record_decisions`], noting that the write holds decisions on the events
    /// of `pages` (for their recipients, under their revisions), so that
    /// [`Store::page_decisions`] finds them when those events are read again.
    pub async fn record_page_decisions(
        &self,
        rows: &[DecisionRow],
        pages: &[crate::model::DecidedPage],
    ) -> Result<(), StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => {
                sqlite_decisions::record(&pools.write, &self.inner.audit, rows, pages).await
            }
            Pools::Postgres(pools) => {
                postgres_decisions::record(&pools.pool, &self.inner.audit, rows, pages).await
            }
        }
    }

    /// The stored decisions of `recipient` under `policy_revision`, made at or after
    /// `since_micros`, on the events after `after` up to `to`, as far as
    /// [`Store::record_page_decisions`] noted them (pages wider than 65,536 sequences are not
    /// noted), in no order. A purge may have removed some.
    pub async fn page_decisions(
        &self,
        recipient: &str,
        policy_revision: &str,
        (after, to): (u64, u64),
        since_micros: i64,
    ) -> Result<Vec<DecisionRow>, StorageError> {
        let page = (after, to);
        match &self.inner.pools {
            Pools::Sqlite(pools) => {
                sqlite_decisions::page_decisions(
                    &pools.read,
                    recipient,
                    policy_revision,
                    page,
                    since_micros,
                )
                .await
            }
            Pools::Postgres(pools) => {
                postgres_decisions::page_decisions(
                    &pools.pool,
                    recipient,
                    policy_revision,
                    page,
                    since_micros,
                )
                .await
            }
        }
    }

    /// The decisions that match every filter set in `query`, oldest first in the keyset order
    /// `(at_micros, decision_id)` (ids compared bytewise), at most `query.limit` of them and
    /// never more than [`MAX_DECISIONS_PER_QUERY`](crate::MAX_DECISIONS_PER_QUERY). For the
    /// next page, set [`DecisionQuery::after_decision`] to the last row's
    /// `(at_micros, decision_id)`; a short page is the last one.
    pub async fn decisions(&self, query: &DecisionQuery) -> Result<Vec<DecisionRow>, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_decisions::select(&pools.read, query).await,
            Pools::Postgres(pools) => postgres_decisions::select(&pools.pool, query).await,
        }
    }

    /// Deletes the decisions with `at_micros < cutoff_micros` and returns how many it deleted.
    /// It deletes the oldest first, in short transactions of at most a thousand rows, so that
    /// publishes (on SQLite, queued for the one writer connection) get through between them; a
    /// failure part-way leaves the older part purged.
    pub async fn purge_decisions_before(&self, cutoff_micros: i64) -> Result<u64, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => {
                sqlite_decisions::purge_before(&pools.write, cutoff_micros).await
            }
            Pools::Postgres(pools) => {
                postgres_decisions::purge_before(&pools.pool, cutoff_micros).await
            }
        }
    }

    /// Writes everything one MLS operation changes ([`CircleWrite`]) in one transaction: all of
    /// it, or nothing (an error). In that transaction:
    /// - the key-value changes of openmls (the last change of each key wins), the circle's row
    ///   (an upsert by name, every column replaced), the KeyPackages (inserted: a `hash_ref`
    ///   already stored fails the write), the KeyPackage issued (a `hash_ref` that is not
    ///   stored fails the write) and the departures (the last change of each wins);
    /// - the log entry, appended; if its `(circle, position)` holds one already the write fails
    ///   with [`StorageError::LogPositionTaken`] and writes nothing. On PostgreSQL a write
    ///   racing for the same position waits for the first one to commit or roll back;
    /// - the indicators, if any (then [`CircleWrite::indicators_circle`] is required, or the
    ///   write fails with [`StorageError::Database`] before it starts): stored in order as
    ///   [`Store::receive`] stores published items, with
    ///   [`StoredIndicator::circle`] set. Such a write locks the feed head first, as every
    ///   writer of the feed does, so its events are numbered gap-free among the others;
    ///   followers are woken after the commit if the head moved. An id already stored, before
    ///   the write or earlier in it, is skipped: a duplicate if the same originator and payload,
    ///   a conflict otherwise ([`CircleWriteOutcome`]).
    ///
    /// The outcome is empty when the write has no indicators. A write without indicators does
    /// not touch the feed head. On SQLite this holds the single writer connection, as
    /// [`Store::receive`] does.
    pub async fn circle_write(
        &self,
        write: CircleWrite,
    ) -> Result<CircleWriteOutcome, StorageError> {
        let (outcome, head) = match &self.inner.pools {
            Pools::Sqlite(pools) => {
                sqlite_circles::write(&pools.write, &self.inner.audit, &write).await?
            }
            Pools::Postgres(pools) => {
                postgres_circles::write(&pools.pool, &self.inner.audit, &write).await?
            }
        };
        if let Some(head) = head {
            raise_known_head(&self.inner.head, head);
        }
        Ok(outcome)
    }

    /// The whole openmls key-value store, ordered by key (bytewise), as
    /// [`Store::circle_write`] left it.
    pub async fn mls_values(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_circles::mls_values(&pools.read).await,
            Pools::Postgres(pools) => postgres_circles::mls_values(&pools.pool).await,
        }
    }

    /// Every circle, ordered by name (compared bytewise on both backends).
    pub async fn circles(&self) -> Result<Vec<CircleRow>, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_circles::circles(&pools.read).await,
            Pools::Postgres(pools) => postgres_circles::circles(&pools.pool).await,
        }
    }

    pub async fn circle(&self, name: &str) -> Result<Option<CircleRow>, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_circles::circle(&pools.read, name).await,
            Pools::Postgres(pools) => postgres_circles::circle(&pools.pool, name).await,
        }
    }

    /// The entries of `circle`'s log with position `>= from_position`, ascending, at most
    /// `limit`.
    pub async fn circle_log(
        &self,
        circle: &str,
        from_position: u64,
        limit: u32,
    ) -> Result<Vec<CircleLogEntry>, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => {
                sqlite_circles::log(&pools.read, circle, from_position, limit).await
            }
            Pools::Postgres(pools) => {
                postgres_circles::log(&pools.pool, circle, from_position, limit).await
            }
        }
    }

    /// Every stored KeyPackage, oldest first (by `created_micros`, then `hash_ref`).
    pub async fn key_packages(&self) -> Result<Vec<KeyPackageRow>, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_circles::key_packages(&pools.read).await,
            Pools::Postgres(pools) => postgres_circles::key_packages(&pools.pool).await,
        }
    }

    /// The indicator kept in the outbox for the own message with SHA-256 `digest`, if any.
    pub async fn outbox_entry(
        &self,
        circle: &str,
        digest: &[u8],
    ) -> Result<Option<Vec<u8>>, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_circles::outbox_entry(&pools.read, circle, digest).await,
            Pools::Postgres(pools) => {
                postgres_circles::outbox_entry(&pools.pool, circle, digest).await
            }
        }
    }

    /// The Welcomes this hub committed to and has not yet delivered, by circle and member.
    pub async fn pending_welcomes(&self) -> Result<Vec<PendingWelcome>, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_circles::pending_welcomes(&pools.read).await,
            Pools::Postgres(pools) => postgres_circles::pending_welcomes(&pools.pool).await,
        }
    }

    /// Forgets the pending Welcome of `member` in `circle` for the add at log `position`;
    /// `false` if there was none (already delivered, dropped, or replaced by a later add).
    pub async fn welcome_delivered(
        &self,
        circle: &str,
        member: &str,
        position: u64,
    ) -> Result<bool, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => {
                sqlite_circles::welcome_delivered(&pools.write, circle, member, position).await
            }
            Pools::Postgres(pools) => {
                postgres_circles::welcome_delivered(&pools.pool, circle, member, position).await
            }
        }
    }

    /// The log position of the commit that last added `member` to `circle`, if any.
    pub async fn admission(&self, circle: &str, member: &str) -> Result<Option<u64>, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_circles::admission(&pools.read, circle, member).await,
            Pools::Postgres(pools) => {
                postgres_circles::admission(&pools.pool, circle, member).await
            }
        }
    }

    /// The last log position `member`, removed from `circle`, may still read; `None` if no
    /// departure is stored.
    pub async fn departure(&self, circle: &str, member: &str) -> Result<Option<u64>, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_circles::departure(&pools.read, circle, member).await,
            Pools::Postgres(pools) => {
                postgres_circles::departure(&pools.pool, circle, member).await
            }
        }
    }

    /// Pushes what was deleted out of the database's files, as far as the backend allows, so
    /// that deleted MLS secrets do not stay on disk (forward secrecy).
    ///
    /// On SQLite, whose connections overwrite deleted content with zeros (`secure_delete`),
    /// older copies of the pages remain in the WAL: this checkpoints it with `TRUNCATE`, after
    /// the writes queued before it, copying every page into the database file and truncating
    /// the WAL to nothing. It waits up to the busy timeout for readers of older pages and then
    /// fails with [`StorageError::Unavailable`].
    ///
    /// On PostgreSQL it does nothing: a deleted or updated row stays in the table's files as a
    /// dead tuple until VACUUM (or autovacuum) reclaims its space, and even then its bytes are
    /// not overwritten until the space is reused; the WAL and its archive keep copies too.
    /// Forward secrecy on PostgreSQL rests on the storage's encryption and retention.
    pub async fn checkpoint(&self) -> Result<(), StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => circles::sqlite_checkpoint(&pools.write).await,
            Pools::Postgres(_) => Ok(()),
        }
    }

    /// Wakes followers. The value is at least the latest head this process knows of; it moves
    /// after every commit through this Store (and its clones) and, on PostgreSQL, after every
    /// commit by any process on the same schema (LISTEN/NOTIFY). After the listener loses its
    /// connection it reconnects and wakes followers even if the value did not move, since
    /// notifications may have been lost: a woken follower re-reads from its cursor.
    ///
    /// On SQLite only this Store's own commits are seen: another process or Store writing the
    /// same file does not wake it.
    pub fn watch_head(&self) -> watch::Receiver<u64> {
        self.inner.head.subscribe()
    }

    /// Closes the pools (for every clone) and stops the PostgreSQL listener. Operations after
    /// this fail with [`StorageError::Unavailable`].
    /// Published events of the feed at large (not held in a circle) after sequence `after`,
    /// at most `limit`, for the oversight page's tallies; a page's `scanned_to` is where the
    /// next one starts.
    pub async fn oversight_indicators(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<crate::oversight::OversightPage, StorageError> {
        use crate::oversight::{postgres_oversight, sqlite_oversight};
        match &self.inner.pools {
            Pools::Sqlite(pools) => {
                sqlite_oversight::indicators_after(&pools.read, after, limit).await
            }
            Pools::Postgres(pools) => {
                postgres_oversight::indicators_after(&pools.pool, after, limit).await
            }
        }
    }

    /// `(sequence, at_micros)` of the alerts after `after`, at most `limit`.
    pub async fn oversight_alert_times(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, i64)>, StorageError> {
        use crate::oversight::{postgres_oversight, sqlite_oversight};
        match &self.inner.pools {
            Pools::Sqlite(pools) => {
                sqlite_oversight::alert_times_after(&pools.read, after, limit).await
            }
            Pools::Postgres(pools) => {
                postgres_oversight::alert_times_after(&pools.pool, after, limit).await
            }
        }
    }

    /// The decision log counted by recipient, channel, policy revision and outcome (circle
    /// decisions left out), with the first and last decision time of each group.
    pub async fn oversight_decision_groups(
        &self,
    ) -> Result<Vec<crate::oversight::DecisionGroup>, StorageError> {
        use crate::oversight::{postgres_oversight, sqlite_oversight};
        match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_oversight::decision_groups(&pools.read).await,
            Pools::Postgres(pools) => postgres_oversight::decision_groups(&pools.pool).await,
        }
    }

    pub async fn close(&self) {
        match &self.inner.pools {
            Pools::Sqlite(pools) => pools.close().await,
            Pools::Postgres(pools) => pools.close().await,
        }
    }
}

fn audit_error(error: cordon_tlog::LogError) -> StorageError {
    StorageError::Database(format!("audit log: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn check_invalid(url: &str, expected_fragment: &str) {
        match Store::connect(url).await {
            Err(StorageError::InvalidUrl(message)) => assert!(
                message.contains(expected_fragment),
                "{url}: {message} lacks {expected_fragment}"
            ),
            other => panic!("{url}: expected InvalidUrl, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn urls_that_are_refused() {
        check_invalid("mysql://localhost/feed", "\"mysql\"").await;
        check_invalid("feed.db", "scheme \"none\"").await;
        check_invalid("sqlite:", "no file path").await;
        check_invalid("sqlite://", "no file path").await;
        check_invalid("sqlite::memory:", "in-memory").await;
        check_invalid("postgres://user:secret@[::1", "postgresql url").await;
    }

    #[tokio::test]
    async fn password_is_not_repeated_in_errors() {
        let Err(error) = Store::connect("postgres://user:secret@[::1").await else {
            panic!("a malformed url connected");
        };
        assert!(!error.to_string().contains("secret"), "{error}");
    }

    #[tokio::test]
    async fn sqlite_file_is_created_in_wal_mode() {
        let directory = tempfile::tempdir().expect("create temporary directory");
        let path = directory.path().join("feed.db");
        let store = Store::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("open sqlite store");
        assert_eq!(store.backend(), Backend::Sqlite);
        assert_eq!(store.head().await, Ok(0));
        let Pools::Sqlite(pools) = &store.inner.pools else {
            unreachable!("sqlite url opened another backend");
        };
        let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&pools.write)
            .await
            .expect("read journal mode");
        assert_eq!(journal_mode, "wal");
        // 2 is FULL.
        let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&pools.write)
            .await
            .expect("read synchronous");
        assert_eq!(synchronous, 2);
        // Plans stay the same whatever is bound (no re-preparing at every bind).
        for pool in [&pools.write, &pools.read] {
            let mut connection = pool.acquire().await.expect("a connection");
            let stable = crate::direct::stable_plans_on(&mut connection)
                .await
                .expect("read the planner setting");
            assert!(stable, "query planner stability is off");
        }
        let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&pools.read)
            .await
            .expect("read foreign keys");
        assert_eq!(foreign_keys, 1);
        let secure_delete: i64 = sqlx::query_scalar("PRAGMA secure_delete")
            .fetch_one(&pools.write)
            .await
            .expect("read secure delete");
        assert_eq!(secure_delete, 1);
        let write_refused = sqlx::query("UPDATE feed_head SET head = head + 1")
            .execute(&pools.read)
            .await;
        assert!(write_refused.is_err(), "reader pool accepted a write");
        store.close().await;
        assert!(path.exists());
    }
}
