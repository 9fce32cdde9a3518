//! The verifiable record's storage: the entries of the gateway's Merkle log and the stored
//! hashes of its tree (crate `cordon-tlog`), written once for both backends by
//! `audit_operations!` (see [`crate::feed`] for why a macro).
//!
//! An entry is appended in the transaction that stores what it records (a publish, a receive,
//! a retraction, a circle write), so the log and the feed never disagree after a crash: both
//! commit or neither. Appends are numbered by updating `audit_size` in the feed head's one row,
//! which a feed write has updated already (so numbering its entries writes no other page), and
//! the entry of an indicator published or received is not stored but derived from the
//! indicator's row ([`derived`]): what a publish adds is the hashes of its entries.

use std::collections::HashMap;

use cordon_tlog::Entry;
use cordon_tlog::log::{
    Operation, ReadHashes, RightEdge, append_batch, hashes_written_by, reads, right_edge_indexes,
    stored_hash_location,
};

use crate::backend::Backend;
use crate::error::StorageError;
use crate::placeholders::{ROWS_PER_STATEMENT, push_rows};

/// Off only by [`switch_off_for_benchmarks`].
static SWITCHED_OFF: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Stops every Store of this process from appending to the audit log: for `cordon-bench`,
/// which measures the publish path with and without it (`CORDON_BENCH_AUDIT_LOG=off` on the
/// gateway). Never for production: a gateway without its log cannot prove anything.
pub fn switch_off_for_benchmarks() {
    SWITCHED_OFF.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn switched_off() -> bool {
    SWITCHED_OFF.load(std::sync::atomic::Ordering::Relaxed)
}

/// The right edge of the log (`cordon_tlog::log::RightEdge`) at the size this process last
/// committed, so that an append need not read stored hashes: about log2(n) hashes.
///
/// Sound because the log is append-only: a stored hash's index names one complete subtree,
/// whose hash never changes once committed. An append takes the size from the head row
/// inside its transaction and uses the kept edge only if it is of that size and holds every
/// hash the append reads (another writer of the same database moves the head, and then the
/// hashes are read); a transaction works on its own copy ([`TransactionEdge`]), kept only
/// after the commit, so a rolled-back append is never remembered.
#[derive(Debug, Default)]
pub(crate) struct KeptEdge(std::sync::Mutex<Option<RightEdge>>);

/// A transaction's view of the [`KeptEdge`]: the kept edge as it is when the transaction
/// appends (holding the head row), then moved by each append the transaction makes.
#[derive(Debug)]
pub(crate) struct TransactionEdge<'a> {
    kept: &'a KeptEdge,
    moved: Option<RightEdge>,
}

impl KeptEdge {
    pub(crate) fn begin(&self) -> TransactionEdge<'_> {
        TransactionEdge {
            kept: self,
            moved: None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<RightEdge>> {
        // The edge is replaced whole, so a panic elsewhere cannot leave it half-written.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl TransactionEdge<'_> {
    /// The edge of a log of `size` entries, if this transaction or the kept edge has it.
    fn take(&mut self, size: u64) -> Option<RightEdge> {
        self.moved
            .take()
            .or_else(|| self.kept.lock().clone())
            .filter(|edge| edge.size() == size)
    }

    /// Keeps the edge once the transaction committed, unless a later one was kept already.
    pub(crate) fn committed(self) {
        let Some(edge) = self.moved else { return };
        let mut kept = self.kept.lock();
        if kept.as_ref().is_none_or(|kept| kept.size() < edge.size()) {
            *kept = Some(edge);
        }
    }
}

/// How many positions a feed write that appends `entries` takes (none while the log is
/// switched off for benchmarks).
pub(crate) fn entries_to_number(entries: usize) -> i64 {
    if switched_off() {
        0
    } else {
        i64::try_from(entries).unwrap_or(i64::MAX)
    }
}

/// Takes `$1` positions (0 only takes the lock) and returns the size after.
pub(crate) const ADVANCE_AUDIT_HEAD: &str =
    "UPDATE feed_head SET audit_size = audit_size + $1 RETURNING audit_size";

const SELECT_AUDIT_SIZE: &str = "SELECT audit_size FROM feed_head";

/// An entry without stored bytes is derived from its indicator's row (see [`derived`]).
const SELECT_ENTRIES: &str = "SELECT a.position, a.entry, a.indicator_id, i.originator, i.via, \
     i.payload FROM audit_entries a LEFT JOIN indicators i \
     ON a.entry IS NULL AND i.id = a.indicator_id \
     WHERE a.position >= $1 ORDER BY a.position LIMIT $2";

type EntryRow = (
    i64,
    Option<Vec<u8>>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
);

/// Whether an entry's bytes are left out of its row: those of an indicator published or
/// received, which [`derived`] rebuilds from the indicator's row stored with it.
fn derivable(entry: &Entry) -> bool {
    matches!(entry, Entry::Published { .. } | Entry::Received { .. })
}

/// An entry's canonical bytes: stored, or derived from the indicator's row (empty when that
/// row is gone, which no leaf hash matches, so a verifier names the entry).
fn derived(row: EntryRow) -> Result<(u64, Vec<u8>), StorageError> {
    let (position, entry, indicator_id, originator, via, payload) = row;
    let position = from_database(position, "audit position")?;
    let bytes = match (entry, indicator_id, originator, payload) {
        (Some(entry), ..) => entry,
        (None, Some(id), Some(originator), Some(payload)) => {
            Entry::stored(&id, &originator, via.as_deref(), &payload).canonical_bytes()
        }
        (None, ..) => Vec::new(),
    };
    Ok((position, bytes))
}

const SELECT_POSITIONS_OF: &str =
    "SELECT position FROM audit_entries WHERE indicator_id = $1 ORDER BY position";

const SELECT_RETRACTION: &str = "SELECT originator, reason, at_micros, signature FROM events \
     WHERE event_type = 'retracted' AND indicator_id = $1 ORDER BY sequence LIMIT 1";

const SELECT_PEER_CHECKPOINT: &str =
    "SELECT size, root, note, at_micros FROM peer_checkpoints WHERE peer = $1";

const UPSERT_PEER_CHECKPOINT: &str = "INSERT INTO peer_checkpoints (peer, size, root, note, at_micros) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (peer) DO UPDATE SET size = excluded.size, \
     root = excluded.root, note = excluded.note, at_micros = excluded.at_micros \
     WHERE peer_checkpoints.size <= excluded.size";

fn insert_entries_sql(rows: usize) -> String {
    let mut sql =
        String::from("INSERT INTO audit_entries (position, indicator_id, entry, hashes) VALUES ");
    push_rows(&mut sql, 1, rows, 4, None);
    sql
}

/// The hash lists of the entries at `count` positions.
fn select_hashes_sql(count: usize) -> String {
    let mut sql = String::from("SELECT position, hashes FROM audit_entries WHERE position IN (");
    for index in 0..count {
        if index > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("${}", index + 1));
    }
    sql.push(')');
    sql
}

fn to_database(value: u64, what: &str) -> Result<i64, StorageError> {
    i64::try_from(value).map_err(|_| StorageError::corrupt(format!("{what} {value} is too large")))
}

fn from_database(value: i64, what: &str) -> Result<u64, StorageError> {
    u64::try_from(value).map_err(|_| StorageError::corrupt(format!("{what} {value} is negative")))
}

fn log_error(error: cordon_tlog::LogError) -> StorageError {
    StorageError::corrupt(format!("audit log: {error}"))
}

/// The stored hashes at `indexes`, taken from the hash lists of the entries that hold them
/// (`rows`: position, hashes).
fn read_hashes(indexes: &[u64], rows: Vec<(i64, Vec<u8>)>) -> Result<ReadHashes, StorageError> {
    let lists: HashMap<u64, Vec<u8>> = rows
        .into_iter()
        .map(|(position, hashes)| Ok((from_database(position, "audit position")?, hashes)))
        .collect::<Result<_, StorageError>>()?;
    let mut hashes = HashMap::with_capacity(indexes.len());
    for &index in indexes {
        let (position, offset) = stored_hash_location(index);
        let hash: [u8; 32] = lists
            .get(&position)
            .and_then(|list| list.get(offset * 32..offset * 32 + 32))
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| {
                StorageError::corrupt(format!(
                    "audit hash {index} is missing from the entry at {position}"
                ))
            })?;
        hashes.insert(index, hash);
    }
    Ok(ReadHashes(hashes))
}

/// The positions whose rows hold the stored hashes at `indexes`, ascending, once each.
fn positions_holding(indexes: &[u64]) -> Vec<u64> {
    let mut positions: Vec<u64> = indexes
        .iter()
        .map(|&index| stored_hash_location(index).0)
        .collect();
    positions.sort_unstable();
    positions.dedup();
    positions
}

/// One entry's row in `audit_entries`, as an append writes it.
pub(crate) struct AuditRow<'e> {
    pub position: i64,
    pub indicator_id: Option<&'e str>,
    /// The entry's canonical bytes, unless they can be derived from the feed.
    pub entry: Option<Vec<u8>>,
    /// The hashes its append wrote, in index order.
    pub hashes: Vec<u8>,
}

/// Plans the append of `entries` to a log of `size` entries whose right edge is `before` and
/// whose stored hashes the append reads are `known`: moves `edge` past them and returns their
/// rows.
fn plan_rows<'e>(
    edge: &mut TransactionEdge<'_>,
    entries: &'e [Entry],
    size: u64,
    known: &ReadHashes,
    before: &RightEdge,
) -> Result<Vec<AuditRow<'e>>, StorageError> {
    let count = entries.len() as u64;
    let encoded: Vec<Vec<u8>> = entries.iter().map(Entry::canonical_bytes).collect();
    let leaves: Vec<[u8; 32]> = encoded
        .iter()
        .map(|bytes| cordon_tlog::leaf_hash(bytes))
        .collect();
    let written = append_batch(size, &leaves, known).map_err(log_error)?;
    edge.moved = before.after(size + count, &written);
    // Each entry's row holds the hashes its append wrote, in index order.
    let mut written = written.into_iter().map(|(_, hash)| hash);
    let mut rows = Vec::with_capacity(entries.len());
    for ((position, entry), bytes) in (size..).zip(entries).zip(encoded) {
        let count = hashes_written_by(position);
        let hashes: Vec<u8> = written.by_ref().take(count).flatten().collect();
        if hashes.len() != count * 32 {
            return Err(StorageError::corrupt(format!(
                "audit log: the append of {position} wrote fewer hashes than {count}"
            )));
        }
        rows.push(AuditRow {
            position: to_database(position, "audit position")?,
            indicator_id: entry.indicator_id(),
            entry: (!derivable(entry)).then_some(bytes),
            hashes,
        });
    }
    Ok(rows)
}

/// The position of an append's first entry (none with the log switched off) and its rows.
pub(crate) type PlannedAppend<'e> = (Option<u64>, Vec<AuditRow<'e>>);

/// [`plan_rows`] for an append of `entries` that moved the log's size to `after`, from the
/// kept edge alone: the first entry's position (none, and no rows, with the log switched
/// off) and the rows; `Ok(None)` if the kept edge is not of the log's size or lacks a hash the
/// append reads (the caller then appends with the reads, `sqlite_audit::append_numbered`).
pub(crate) fn plan_kept<'e>(
    edge: &mut TransactionEdge<'_>,
    entries: &'e [Entry],
    after: i64,
) -> Result<Option<PlannedAppend<'e>>, StorageError> {
    if entries.is_empty() || switched_off() {
        return Ok(Some((None, Vec::new())));
    }
    let count = entries.len() as u64;
    let size = from_database(after, "audit size")?
        .checked_sub(count)
        .ok_or_else(|| StorageError::corrupt("audit head below its entries".into()))?;
    let needed = reads(Operation::Append { size, count }).map_err(log_error)?;
    let Some((known, before)) = edge
        .take(size)
        .and_then(|edge| Some((edge.read(&needed)?, edge)))
    else {
        return Ok(None);
    };
    let rows = plan_rows(edge, entries, size, &known, &before)?;
    Ok(Some((Some(size), rows)))
}

/// Inserts `rows` on the writer's own handle ([`crate::direct`]).
pub(crate) fn insert_rows(
    db: &rusqlite::Connection,
    rows: &[AuditRow<'_>],
) -> Result<(), StorageError> {
    use crate::direct::{Values, blob, execute, int, optional_blob, optional_text};
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut values = Values::with_capacity(chunk.len() * 4);
        for row in chunk {
            values.extend([
                int(row.position),
                optional_text(row.indicator_id),
                optional_blob(row.entry.as_deref()),
                blob(&row.hashes),
            ]);
        }
        execute(
            db,
            &insert_entries_sql(chunk.len()),
            &values,
            "insert audit entries",
        )?;
    }
    Ok(())
}

/// Takes the feed head's row lock without moving it: an append of its own takes it first, as
/// the feed's writers do (decision batches take the same row, for its `audit_size` only).
const LOCK_FEED_HEAD: &str = "UPDATE feed_head SET head = head + $1 RETURNING head";

macro_rules! audit_operations {
    ($module:ident, $database:ty, $backend:expr, begin_write = $begin_write:literal) => {
        pub(crate) mod $module {
            use sqlx::{AssertSqlSafe, Pool};

            use super::*;

            type Database = $database;
            type Connection = <Database as sqlx::Database>::Connection;
            const BACKEND: Backend = $backend;

            fn failed(action: &str) -> impl FnOnce(sqlx::Error) -> StorageError + '_ {
                crate::error::failed(BACKEND, action)
            }

            /// The stored hashes at `indexes`.
            async fn hashes(
                connection: &mut Connection,
                indexes: &[u64],
            ) -> Result<ReadHashes, StorageError> {
                let positions = positions_holding(indexes);
                let mut rows = Vec::with_capacity(positions.len());
                for chunk in positions.chunks(ROWS_PER_STATEMENT) {
                    let mut query = sqlx::query_as::<_, (i64, Vec<u8>)>(AssertSqlSafe(
                        crate::placeholders::dialect(BACKEND, select_hashes_sql(chunk.len())),
                    ));
                    for position in chunk {
                        query = query.bind(to_database(*position, "audit position")?);
                    }
                    rows.extend(
                        query
                            .fetch_all(&mut *connection)
                            .await
                            .map_err(failed("read audit hashes"))?,
                    );
                }
                read_hashes(indexes, rows)
            }

            /// Appends `entries` to the log in the caller's transaction (which, if it writes
            /// the feed, has taken the feed head already), from `edge` when it is of the log's
            /// size, and moves `edge` past them (keep it once the transaction commits).
            /// Returns the position of the first entry (`None` when nothing was appended).
            pub(crate) async fn append(
                connection: &mut Connection,
                edge: &mut TransactionEdge<'_>,
                entries: &[Entry],
            ) -> Result<Option<u64>, StorageError> {
                if entries.is_empty() || switched_off() {
                    return Ok(None);
                }
                let count = entries.len() as u64;
                let after: i64 = sqlx::query_scalar(ADVANCE_AUDIT_HEAD)
                    .bind(to_database(count, "audit entries")?)
                    .fetch_one(&mut *connection)
                    .await
                    .map_err(failed("advance audit head"))?;
                append_numbered(connection, edge, entries, after).await
            }

            /// [`append`] for a caller that moved `feed_head.audit_size` by `entries.len()`
            /// itself ([`entries_to_number`]), in the statement that moved the feed head, and
            /// got `after` back.
            pub(crate) async fn append_numbered(
                connection: &mut Connection,
                edge: &mut TransactionEdge<'_>,
                entries: &[Entry],
                after: i64,
            ) -> Result<Option<u64>, StorageError> {
                if entries.is_empty() || switched_off() {
                    return Ok(None);
                }
                let count = entries.len() as u64;
                let size = from_database(after, "audit size")?
                    .checked_sub(count)
                    .ok_or_else(|| StorageError::corrupt("audit head below its entries".into()))?;
                let needed = reads(Operation::Append { size, count }).map_err(log_error)?;
                let kept = edge
                    .take(size)
                    .and_then(|edge| Some((edge.read(&needed)?, edge)));
                let (known, before) = match kept {
                    Some(kept) => kept,
                    None => {
                        // Read the whole edge with what this append needs, to keep it.
                        let mut indexes = right_edge_indexes(size);
                        indexes.extend_from_slice(&needed);
                        indexes.sort_unstable();
                        indexes.dedup();
                        let read = hashes(connection, &indexes).await?;
                        let before = RightEdge::of(size, &read.0).ok_or_else(|| {
                            StorageError::corrupt("audit log: its right edge was not read".into())
                        })?;
                        (read, before)
                    }
                };
                let rows = plan_rows(edge, entries, size, &known, &before)?;
                for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                    let mut query = sqlx::query(AssertSqlSafe(crate::placeholders::dialect(
                        BACKEND,
                        insert_entries_sql(chunk.len()),
                    )));
                    for row in chunk {
                        query = query
                            .bind(row.position)
                            .bind(row.indicator_id)
                            .bind(row.entry.as_deref())
                            .bind(row.hashes.as_slice());
                    }
                    query
                        .execute(&mut *connection)
                        .await
                        .map_err(failed("insert audit entries"))?;
                }
                Ok(Some(size))
            }

            /// Appends `entries` in a transaction of their own (what they record is not a
            /// database write: a policy activation), under the feed head as every append.
            pub(crate) async fn append_alone(
                pool: &Pool<Database>,
                kept: &KeptEdge,
                entries: &[Entry],
            ) -> Result<(), StorageError> {
                let mut edge = kept.begin();
                let mut transaction = pool
                    .begin_with($begin_write)
                    .await
                    .map_err(failed("begin audit append"))?;
                let _: i64 = sqlx::query_scalar(LOCK_FEED_HEAD)
                    .bind(0_i64)
                    .fetch_one(&mut *transaction)
                    .await
                    .map_err(failed("lock feed head"))?;
                append(&mut transaction, &mut edge, entries).await?;
                transaction
                    .commit()
                    .await
                    .map_err(failed("commit audit append"))?;
                edge.committed();
                Ok(())
            }

            pub(crate) async fn size(pool: &Pool<Database>) -> Result<u64, StorageError> {
                let size: i64 = sqlx::query_scalar(SELECT_AUDIT_SIZE)
                    .fetch_one(pool)
                    .await
                    .map_err(failed("read audit size"))?;
                from_database(size, "audit size")
            }

            /// The hashes `operation` reads, read in one snapshot-consistent pass (the hashes
            /// of a size never change once written).
            pub(crate) async fn hashes_for(
                pool: &Pool<Database>,
                operation: Operation,
            ) -> Result<ReadHashes, StorageError> {
                let needed = reads(operation).map_err(log_error)?;
                let mut connection = pool
                    .acquire()
                    .await
                    .map_err(failed("connect to read audit hashes"))?;
                hashes(&mut connection, &needed).await
            }

            pub(crate) async fn entries(
                pool: &Pool<Database>,
                from: u64,
                limit: u32,
            ) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
                let rows: Vec<EntryRow> = sqlx::query_as(SELECT_ENTRIES)
                    .bind(to_database(from, "audit position")?)
                    .bind(i64::from(limit))
                    .fetch_all(pool)
                    .await
                    .map_err(failed("read audit entries"))?;
                rows.into_iter().map(derived).collect()
            }

            pub(crate) async fn retraction(
                pool: &Pool<Database>,
                indicator_id: &str,
            ) -> Result<Option<crate::model::RetractionRecord>, StorageError> {
                let row: Option<(String, Option<String>, i64, Option<Vec<u8>>)> =
                    sqlx::query_as(SELECT_RETRACTION)
                        .bind(indicator_id)
                        .fetch_optional(pool)
                        .await
                        .map_err(failed("read a retraction"))?;
                Ok(row.map(|(originator, reason, at_micros, signature)| {
                    crate::model::RetractionRecord {
                        indicator_id: indicator_id.to_string(),
                        originator,
                        reason: reason.unwrap_or_default(),
                        at_micros,
                        signature,
                    }
                }))
            }

            pub(crate) async fn peer_checkpoint(
                pool: &Pool<Database>,
                peer: &str,
            ) -> Result<Option<crate::model::PeerCheckpoint>, StorageError> {
                let row: Option<(i64, Vec<u8>, String, i64)> =
                    sqlx::query_as(SELECT_PEER_CHECKPOINT)
                        .bind(peer)
                        .fetch_optional(pool)
                        .await
                        .map_err(failed("read a peer's checkpoint"))?;
                row.map(|(size, root, note, at_micros)| {
                    Ok(crate::model::PeerCheckpoint {
                        peer: peer.to_string(),
                        size: from_database(size, "checkpoint size")?,
                        root: root.try_into().map_err(|_| {
                            StorageError::corrupt(format!(
                                "{peer}'s checkpoint root is not 32 bytes"
                            ))
                        })?,
                        note,
                        at_micros,
                    })
                })
                .transpose()
            }

            pub(crate) async fn store_peer_checkpoint(
                pool: &Pool<Database>,
                checkpoint: &crate::model::PeerCheckpoint,
            ) -> Result<(), StorageError> {
                sqlx::query(UPSERT_PEER_CHECKPOINT)
                    .bind(checkpoint.peer.as_str())
                    .bind(to_database(checkpoint.size, "checkpoint size")?)
                    .bind(checkpoint.root.as_slice())
                    .bind(checkpoint.note.as_str())
                    .bind(checkpoint.at_micros)
                    .execute(pool)
                    .await
                    .map_err(failed("store a peer's checkpoint"))?;
                Ok(())
            }

            pub(crate) async fn positions_of(
                pool: &Pool<Database>,
                indicator_id: &str,
            ) -> Result<Vec<u64>, StorageError> {
                let rows: Vec<i64> = sqlx::query_scalar(SELECT_POSITIONS_OF)
                    .bind(indicator_id)
                    .fetch_all(pool)
                    .await
                    .map_err(failed("find audit entries of an indicator"))?;
                rows.into_iter()
                    .map(|position| from_database(position, "audit position"))
                    .collect()
            }
        }
    };
}

audit_operations!(
    sqlite_audit,
    sqlx::Sqlite,
    Backend::Sqlite,
    begin_write = "BEGIN IMMEDIATE"
);
audit_operations!(
    postgres_audit,
    sqlx::Postgres,
    Backend::Postgres,
    begin_write = "BEGIN"
);
