//! The feed operations, written once and expanded for SQLite and PostgreSQL by
//! `feed_operations!`.
//!
//! The SQL uses `$N` placeholders: sqlx's SQLite driver binds `$N` by number as PostgreSQL does,
//! so one text serves both backends. Only the statement that opens a write transaction differs.
//! Lists of rows travel as multi-row `VALUES` lists, whose columns both backends name
//! `column1`, `column2`, ….

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;

use crate::error::StorageError;
use crate::model::{
    EventBatch, EventBody, NewIndicator, PeerCursor, ReceiveOutcome, Received, StoredEvent,
    StoredIndicator,
};

/// Takes `$1` sequence numbers. It must be the first statement of every writing transaction: the
/// row lock it takes serialises writers until they commit, so they commit in sequence order and
/// a reader that sees head `H` also sees every event `<= H` (see the crate documentation). With
/// `$1 = 0` it only takes the lock (and, on PostgreSQL, notifies no one: the trigger fires only
/// when the head moves).
const ADVANCE_HEAD: &str = "UPDATE feed_head SET head = head + $1 RETURNING head";

pub(crate) const READ_HEAD: &str = "SELECT head FROM feed_head";

const PUBLISHED_EVENT_COLUMNS: &str = "sequence, event_type, kind, indicator_id, originator, \
     payload, at_micros";

const RETRACTED_EVENT_COLUMNS: &str = "sequence, event_type, kind, indicator_id, originator, \
     reason, at_micros, signature";

/// Bound per published event row: all of `PUBLISHED_EVENT_COLUMNS` but the literal event type.
const PUBLISHED_EVENT_BINDS: usize = 6;

/// Bound per retracted event row: all of `RETRACTED_EVENT_COLUMNS` but the literal event type.
const RETRACTED_EVENT_BINDS: usize = 7;

/// Rows per multi-row statement: at most 7 binds x 500 rows stays far below the bind limits of
/// both backends (SQLite 32766, PostgreSQL 65535) while a usual batch (100) is one statement.
const ROWS_PER_STATEMENT: usize = 500;

const MARK_RETRACTED: &str = "UPDATE indicators SET retracted = TRUE \
     WHERE id = $1 AND retracted = FALSE \
     RETURNING originator, kind";

const INDICATOR_RETRACTED: &str = "SELECT retracted FROM indicators WHERE id = $1";

const INSERT_RETRACTION: &str = "INSERT INTO events \
     (sequence, event_type, kind, indicator_id, originator, reason, at_micros, signature) \
     VALUES ($1, 'retracted', $2, $3, $4, $5, $6, $7)";

const SELECT_INDICATOR: &str = "SELECT id, originator, kind, payload, sequence, retracted, via, \
     superseded_by, circle FROM indicators WHERE id = $1";

/// Moves the cursor only forwards (`CASE` rather than `GREATEST`/`MAX`, which the two backends
/// spell differently); the time is that of the latest receive whether or not it moved.
const UPSERT_PEER_CURSOR: &str = "INSERT INTO peer_cursors (peer, cursor, updated_micros) \
     VALUES ($1, $2, $3) \
     ON CONFLICT (peer) DO UPDATE SET \
     cursor = CASE WHEN excluded.cursor > peer_cursors.cursor \
     THEN excluded.cursor ELSE peer_cursors.cursor END, \
     updated_micros = excluded.updated_micros";

const SELECT_PEER_CURSOR: &str = "SELECT cursor FROM peer_cursors WHERE peer = $1";

const SELECT_PEER_CURSORS: &str =
    "SELECT peer, cursor, updated_micros FROM peer_cursors ORDER BY peer";

/// Appends `rows` rows of `columns` placeholders each, numbered from `$first`:
/// `($1, $2), ($3, $4)`. If `literal` is set, it is put as the second value of every row (the
/// event type of an event row).
pub(crate) fn push_rows(
    sql: &mut String,
    first: usize,
    rows: usize,
    columns: usize,
    literal: Option<&str>,
) {
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            // Writing into a String cannot fail.
            let _ = write!(sql, "${}", first + row * columns + column);
            if column == 0
                && let Some(literal) = literal
            {
                let _ = write!(sql, ", {literal}");
            }
        }
        sql.push(')');
    }
}

fn insert_published_events_sql(rows: usize) -> String {
    let mut sql = format!("INSERT INTO events ({PUBLISHED_EVENT_COLUMNS}) VALUES ");
    push_rows(
        &mut sql,
        1,
        rows,
        PUBLISHED_EVENT_BINDS,
        Some("'published'"),
    );
    sql
}

fn insert_retracted_events_sql(rows: usize) -> String {
    let mut sql = format!("INSERT INTO events ({RETRACTED_EVENT_COLUMNS}) VALUES ");
    push_rows(
        &mut sql,
        1,
        rows,
        RETRACTED_EVENT_BINDS,
        Some("'retracted'"),
    );
    sql
}

/// Copies indicators from their `published` events on the server, so payloads cross the wire
/// once. Each row of the `VALUES` list is `(sequence, via, circle)`, `via` and `circle` being
/// the columns that the event lacks; `$1..=$2` bound the sequences, so the join reads only that
/// range of events. A conflicting id is skipped and so missing from the returned ids. (SQLite
/// needs the `WHERE` for `ON CONFLICT` to parse after a `SELECT`.)
fn copy_published_indicators_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO indicators (id, originator, kind, payload, sequence, via, circle) \
         SELECT e.indicator_id, e.originator, e.kind, e.payload, e.sequence, v.column2, \
         v.column3 \
         FROM events AS e JOIN (VALUES ",
    );
    push_rows(&mut sql, 1, rows, 3, None);
    // The bounds come last, so that the placeholders run in order (see `placeholders`).
    let _ = write!(
        sql,
        ") AS v ON e.sequence = v.column1 \
         WHERE e.sequence >= ${} AND e.sequence <= ${} \
         ON CONFLICT (id) DO NOTHING \
         RETURNING id",
        rows * 3 + 1,
        rows * 3 + 2
    );
    sql
}

/// Each row of the `VALUES` list is `(old id, originator, new id)`: the old indicator, if stored
/// and of that originator, is marked superseded by the new one, never by itself. Each
/// `(old id, originator)` must be in the list once (see [`latest_supersedes`]), so that no
/// indicator matches two rows.
fn mark_superseded_sql(rows: usize) -> String {
    let mut sql = String::from("UPDATE indicators SET superseded_by = v.column3 FROM (VALUES ");
    push_rows(&mut sql, 1, rows, 3, None);
    sql.push_str(
        ") AS v WHERE indicators.id = v.column1 AND indicators.originator = v.column2 \
         AND indicators.id <> v.column3",
    );
    sql
}

fn select_known_indicators_sql(count: usize) -> String {
    let mut sql = String::from(
        "SELECT id, originator, kind, retracted, payload FROM indicators WHERE id IN ",
    );
    push_rows(&mut sql, 1, 1, count, None);
    sql
}

fn mark_many_retracted_sql(count: usize) -> String {
    let mut sql =
        String::from("UPDATE indicators SET retracted = TRUE WHERE retracted = FALSE AND id IN ");
    push_rows(&mut sql, 1, 1, count, None);
    sql
}

/// One statement, so the head and the events come from one snapshot: the events are bounded by
/// the head that snapshot saw, and that head is returned (on the left-joined row even when no
/// event matches) to compute `scanned_to`. The inner query is an index range scan on the
/// primary key that stops after `$2` rows; the outer sort only orders those.
fn read_after_sql(kind_count: usize) -> String {
    let mut sql = String::from(
        "SELECT feed_head.head, e.sequence, e.event_type, e.kind, e.indicator_id, e.originator, \
         e.payload, e.reason, e.at_micros, e.signature \
         FROM feed_head LEFT JOIN ( \
         SELECT sequence, event_type, kind, indicator_id, originator, payload, reason, at_micros, \
         signature \
         FROM events \
         WHERE sequence > $1 AND sequence <= (SELECT head FROM feed_head)",
    );
    if kind_count > 0 {
        sql.push_str(" AND kind IN (");
        for index in 0..kind_count {
            if index > 0 {
                sql.push_str(", ");
            }
            let _ = write!(sql, "${}", index + 3);
        }
        sql.push(')');
    }
    sql.push_str(" ORDER BY sequence LIMIT $2) AS e ON TRUE ORDER BY e.sequence");
    sql
}

/// Sorted and without repeats, so that the same filter always produces the same SQL text and
/// hits the prepared-statement cache.
fn distinct_kinds(kinds: &[String]) -> Vec<&str> {
    let mut distinct: Vec<&str> = kinds.iter().map(String::as_str).collect();
    distinct.sort_unstable();
    distinct.dedup();
    distinct
}

/// The database has no unsigned integers; a cursor beyond `i64::MAX` is beyond every event.
fn sequence_to_database(sequence: u64) -> i64 {
    i64::try_from(sequence).unwrap_or(i64::MAX)
}

pub(crate) fn sequence_from_database(value: i64, column: &str) -> Result<u64, StorageError> {
    u64::try_from(value)
        .map_err(|_| StorageError::corrupt(format!("negative {column} {value} in the database")))
}

fn reject_duplicates_within(batch: &[NewIndicator]) -> Result<(), StorageError> {
    let mut seen = HashSet::with_capacity(batch.len());
    for item in batch {
        if !seen.insert(item.id.as_str()) {
            return Err(StorageError::Duplicate {
                id: item.id.clone(),
            });
        }
    }
    Ok(())
}

/// The first id of the batch that the indicator insert skipped, in batch order.
fn first_skipped_id(batch: &[NewIndicator], stored_ids: &[String]) -> String {
    let stored: HashSet<&str> = stored_ids.iter().map(String::as_str).collect();
    batch
        .iter()
        .find(|item| !stored.contains(item.id.as_str()))
        .map(|item| item.id.clone())
        .unwrap_or_default()
}

/// A full batch may stop before the head, so the cursor can only move to its last event;
/// otherwise everything up to the head the query saw has been scanned.
fn batch_scanned_to(after: u64, limit: u32, head: u64, events: Vec<StoredEvent>) -> EventBatch {
    let full = events.len() >= limit as usize;
    let scanned_to = match events.last() {
        Some(last) if full => last.sequence,
        _ => head,
    };
    EventBatch {
        events,
        scanned_to: scanned_to.max(after),
        head,
    }
}

/// The columns of one event row, as read by [`read_after_sql`].
struct EventColumns {
    sequence: i64,
    event_type: String,
    kind: String,
    indicator_id: String,
    originator: String,
    payload: Option<Vec<u8>>,
    reason: Option<String>,
    at_micros: i64,
    signature: Option<Vec<u8>>,
}

impl EventColumns {
    fn into_event(self) -> Result<StoredEvent, StorageError> {
        let sequence = sequence_from_database(self.sequence, "event sequence")?;
        let body = match (self.event_type.as_str(), self.payload, self.reason) {
            ("published", Some(payload), _) => EventBody::Published {
                indicator_id: self.indicator_id,
                originator: self.originator,
                payload,
            },
            ("retracted", _, Some(reason)) => EventBody::Retracted {
                indicator_id: self.indicator_id,
                originator: self.originator,
                reason,
                signature: self.signature,
            },
            (event_type, _, _) => {
                return Err(StorageError::corrupt(format!(
                    "event {sequence} has unknown event type {event_type:?} or lacks its payload or reason"
                )));
            }
        };
        Ok(StoredEvent {
            sequence,
            at_micros: self.at_micros,
            kind: self.kind,
            body,
        })
    }
}

/// One indicator to mark superseded: `old`, if of `originator`, by `new`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Supersede<'a> {
    old: &'a str,
    originator: &'a str,
    new: &'a str,
}

impl<'a> Supersede<'a> {
    fn of(item: &'a NewIndicator) -> Option<Supersede<'a>> {
        item.supersedes.as_deref().map(|old| Supersede {
            old,
            originator: &item.originator,
            new: &item.id,
        })
    }
}

/// The last revision of each `(old id, originator)`, as if each were applied in order: the
/// latest revision wins. (At most one originator of an old id is its own, so only that one's
/// last revision can mark it.)
fn latest_supersedes<'a>(revisions: impl IntoIterator<Item = Supersede<'a>>) -> Vec<Supersede<'a>> {
    let revisions: Vec<Supersede<'a>> = revisions.into_iter().collect();
    let mut seen = HashSet::with_capacity(revisions.len());
    let mut latest: Vec<Supersede<'a>> = revisions
        .into_iter()
        .rev()
        .filter(|revision| seen.insert((revision.old, revision.originator)))
        .collect();
    latest.reverse();
    latest
}

/// What planning a receive needs to know of an indicator that is stored (or stored earlier in
/// the same receive).
#[derive(Debug, Clone, PartialEq, Eq)]
struct KnownIndicator {
    originator: String,
    kind: String,
    retracted: bool,
    /// The stored payload: another copy under the same id is a duplicate only if identical.
    payload: Vec<u8>,
}

/// A `retracted` event that a receive appends.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PlannedRetraction<'a> {
    sequence: i64,
    kind: String,
    indicator_id: &'a str,
    originator: &'a str,
    reason: &'a str,
    at_micros: i64,
    signature: Option<&'a [u8]>,
}

/// The writes of one receive, decided in item order against what was stored when the head was
/// locked (nothing else writes indicators until the commit).
#[derive(Debug)]
struct ReceivePlan<'a> {
    /// The published items to store, with their sequences.
    published: Vec<(i64, &'a NewIndicator)>,
    /// Each applies to an indicator of its originator stored before its item.
    supersedes: Vec<Supersede<'a>>,
    retractions: Vec<PlannedRetraction<'a>>,
    outcome: ReceiveOutcome,
    /// The head after the receive: the last sequence used, or the locked head if none.
    head: i64,
}

/// Adds the ids whose stored state storing `indicator` depends on: its own and the one it
/// supersedes.
fn insert_published_ids<'a>(ids: &mut BTreeSet<&'a str>, indicator: &'a NewIndicator) {
    ids.insert(indicator.id.as_str());
    if let Some(old) = &indicator.supersedes {
        ids.insert(old.as_str());
    }
}

/// Every id whose stored state a receive of `items` depends on, without repeats.
fn referenced_ids(items: &[Received]) -> Vec<&str> {
    let mut ids = BTreeSet::new();
    for item in items {
        match item {
            Received::Published(indicator) => insert_published_ids(&mut ids, indicator),
            Received::Retracted { indicator_id, .. } => {
                ids.insert(indicator_id.as_str());
            }
        }
    }
    ids.into_iter().collect()
}

/// Every id whose stored state storing the indicators of a circle write depends on, without
/// repeats.
fn circle_referenced_ids(indicators: &[NewIndicator]) -> Vec<&str> {
    let mut ids = BTreeSet::new();
    for indicator in indicators {
        insert_published_ids(&mut ids, indicator);
    }
    ids.into_iter().collect()
}

impl<'a> ReceivePlan<'a> {
    fn new(head: i64) -> ReceivePlan<'a> {
        ReceivePlan {
            published: Vec::new(),
            supersedes: Vec::new(),
            retractions: Vec::new(),
            outcome: ReceiveOutcome::default(),
            head,
        }
    }

    /// Applies one published item to `known`: skipped as a duplicate or a conflict if its id is
    /// held, otherwise stored with the next sequence, marking what it supersedes if that is
    /// held by its originator.
    fn publish(
        &mut self,
        indicator: &'a NewIndicator,
        known: &mut HashMap<String, KnownIndicator>,
    ) -> Result<(), StorageError> {
        if let Some(held) = known.get(&indicator.id) {
            // The same indicator by another path, or a different one under its id.
            if held.originator == indicator.originator && held.payload == indicator.payload {
                self.outcome.duplicates.push(indicator.id.clone());
            } else {
                self.outcome.conflicts.push(indicator.id.clone());
            }
            return Ok(());
        }
        let (sequence, stored_sequence) = self.next_sequence()?;
        known.insert(
            indicator.id.clone(),
            KnownIndicator {
                originator: indicator.originator.clone(),
                kind: indicator.kind.clone(),
                retracted: false,
                payload: indicator.payload.clone(),
            },
        );
        self.published.push((sequence, indicator));
        self.outcome
            .stored
            .push((indicator.id.clone(), stored_sequence));
        if let Some(revision) = Supersede::of(indicator)
            && revision.old != revision.new
            && known
                .get(revision.old)
                .is_some_and(|old| old.originator == revision.originator)
        {
            self.supersedes.push(revision);
        }
        Ok(())
    }

    /// The next sequence after the ones this plan already used.
    fn next_sequence(&mut self) -> Result<(i64, u64), StorageError> {
        self.head = self
            .head
            .checked_add(1)
            .ok_or_else(|| StorageError::corrupt("feed head at its maximum".to_owned()))?;
        Ok((self.head, sequence_from_database(self.head, "feed head")?))
    }
}

/// Applies `items` in order to `known` (the stored state of [`referenced_ids`]), handing out
/// sequences after `head`. An item sees the items before it.
fn plan_receive(
    items: &[Received],
    mut known: HashMap<String, KnownIndicator>,
    head: i64,
) -> Result<ReceivePlan<'_>, StorageError> {
    let mut plan = ReceivePlan::new(head);
    for item in items {
        match item {
            Received::Published(indicator) => plan.publish(indicator, &mut known)?,
            Received::Retracted {
                indicator_id,
                originator,
                reason,
                at_micros,
                signature,
            } => {
                let Some(target) = known
                    .get_mut(indicator_id)
                    .filter(|target| target.originator == *originator && !target.retracted)
                else {
                    plan.outcome.ignored_retractions.push(indicator_id.clone());
                    continue;
                };
                target.retracted = true;
                let kind = target.kind.clone();
                let (sequence, stored_sequence) = plan.next_sequence()?;
                plan.retractions.push(PlannedRetraction {
                    sequence,
                    kind,
                    indicator_id,
                    originator,
                    reason,
                    at_micros: *at_micros,
                    signature: signature.as_deref(),
                });
                plan.outcome
                    .retracted
                    .push((indicator_id.clone(), stored_sequence));
            }
        }
    }
    Ok(plan)
}

/// Applies the indicators of a circle write in order to `known` (the stored state of
/// [`circle_referenced_ids`]), as [`plan_receive`] applies published items.
fn plan_circle_indicators(
    indicators: &[NewIndicator],
    mut known: HashMap<String, KnownIndicator>,
    head: i64,
) -> Result<ReceivePlan<'_>, StorageError> {
    let mut plan = ReceivePlan::new(head);
    for indicator in indicators {
        plan.publish(indicator, &mut known)?;
    }
    Ok(plan)
}

/// A writer (`action`: "receive", "circle write") found the database other than it planned for,
/// which only a writer that skipped the feed head lock could cause. It is rolled back rather
/// than half applied.
fn unplanned_change(action: &str, what: String) -> StorageError {
    StorageError::corrupt(format!(
        "{action} rolled back: {what}, so something wrote the feed without locking its head"
    ))
}

/// Expands the feed operations for one sqlx database into module `$module`. Every function
/// takes the pool to use, so SQLite can write through its single-connection pool and read
/// through its reader pool while PostgreSQL uses one pool for both.
macro_rules! feed_operations {
    ($module:ident, $database:ty, $backend:expr, begin_write = $begin_write:literal) => {
        pub(crate) mod $module {
            use sqlx::{AssertSqlSafe, Pool, Row, Transaction};

            use super::*;
            use crate::store::Backend;

            type Database = $database;
            type Connection = <Database as sqlx::Database>::Connection;
            const BACKEND: Backend = $backend;

            pub(crate) fn failed(
                action: &str,
            ) -> impl FnOnce(sqlx::Error) -> StorageError + '_ {
                move |error| StorageError::from_sqlx(BACKEND, action, error)
            }

            /// Rolls back a transaction that is refused. Dropping it would roll it back
            /// anyway; the caller needs its own error, not this one, which is only logged.
            pub(crate) async fn roll_back(transaction: Transaction<'_, Database>, what: &str) {
                if let Err(error) = transaction.rollback().await {
                    tracing::warn!(%error, "roll back {what}");
                }
            }

            /// Inserts the `published` events of `rows` (sequence, item), in multi-row
            /// statements.
            async fn insert_published_events(
                connection: &mut Connection,
                rows: &[(i64, &NewIndicator)],
            ) -> Result<(), StorageError> {
                for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                    let mut query = sqlx::query(AssertSqlSafe(crate::placeholders::dialect(BACKEND, insert_published_events_sql(
                        chunk.len(),
                    ))));
                    for (sequence, item) in chunk {
                        query = query
                            .bind(*sequence)
                            .bind(item.kind.as_str())
                            .bind(item.id.as_str())
                            .bind(item.originator.as_str())
                            .bind(item.payload.as_slice())
                            .bind(item.created_micros);
                    }
                    query
                        .execute(&mut *connection)
                        .await
                        .map_err(failed("insert published events"))?;
                }
                Ok(())
            }

            /// Stores the indicators of `rows` (sequence, item) from their events, which must
            /// be inserted, ascending, each in `circle` if one is given; returns the ids
            /// stored. A conflicting id is not.
            async fn copy_published_indicators(
                connection: &mut Connection,
                rows: &[(i64, &NewIndicator)],
                circle: Option<&str>,
            ) -> Result<Vec<String>, StorageError> {
                let mut stored = Vec::with_capacity(rows.len());
                for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                    let (Some((first, _)), Some((last, _))) = (chunk.first(), chunk.last()) else {
                        continue;
                    };
                    let mut query = sqlx::query_scalar(AssertSqlSafe(
                        crate::placeholders::dialect(BACKEND, copy_published_indicators_sql(chunk.len())),
                    ));
                    for (sequence, item) in chunk {
                        query = query
                            .bind(*sequence)
                            .bind(item.via.as_deref())
                            .bind(circle);
                    }
                    query = query.bind(*first).bind(*last);
                    let ids: Vec<String> = query
                        .fetch_all(&mut *connection)
                        .await
                        .map_err(failed("insert indicators"))?;
                    stored.extend(ids);
                }
                Ok(stored)
            }

            /// `revisions` must hold each (old id, originator) once (see `latest_supersedes`).
            async fn mark_superseded(
                connection: &mut Connection,
                revisions: &[Supersede<'_>],
            ) -> Result<(), StorageError> {
                for chunk in revisions.chunks(ROWS_PER_STATEMENT) {
                    let mut query = sqlx::query(AssertSqlSafe(crate::placeholders::dialect(BACKEND, mark_superseded_sql(chunk.len()))));
                    for revision in chunk {
                        query = query
                            .bind(revision.old)
                            .bind(revision.originator)
                            .bind(revision.new);
                    }
                    query
                        .execute(&mut *connection)
                        .await
                        .map_err(failed("mark superseded indicators"))?;
                }
                Ok(())
            }

            /// The stored state of the indicators with these ids (those that are stored).
            async fn known_indicators(
                connection: &mut Connection,
                ids: &[&str],
            ) -> Result<HashMap<String, KnownIndicator>, StorageError> {
                let mut known = HashMap::with_capacity(ids.len());
                for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                    let mut query = sqlx::query_as(AssertSqlSafe(crate::placeholders::dialect(BACKEND, select_known_indicators_sql(
                        chunk.len(),
                    ))));
                    for id in chunk {
                        query = query.bind(*id);
                    }
                    let rows: Vec<(String, String, String, bool, Vec<u8>)> = query
                        .fetch_all(&mut *connection)
                        .await
                        .map_err(failed("read indicators to receive"))?;
                    for (id, originator, kind, retracted, payload) in rows {
                        let state = KnownIndicator {
                            originator,
                            kind,
                            retracted,
                            payload,
                        };
                        known.insert(id, state);
                    }
                }
                Ok(known)
            }

            async fn insert_retracted_events(
                connection: &mut Connection,
                retractions: &[PlannedRetraction<'_>],
            ) -> Result<(), StorageError> {
                for chunk in retractions.chunks(ROWS_PER_STATEMENT) {
                    let mut query = sqlx::query(AssertSqlSafe(crate::placeholders::dialect(BACKEND, insert_retracted_events_sql(
                        chunk.len(),
                    ))));
                    for retraction in chunk {
                        query = query
                            .bind(retraction.sequence)
                            .bind(retraction.kind.as_str())
                            .bind(retraction.indicator_id)
                            .bind(retraction.originator)
                            .bind(retraction.reason)
                            .bind(retraction.at_micros)
                            .bind(retraction.signature);
                    }
                    query
                        .execute(&mut *connection)
                        .await
                        .map_err(failed("insert retraction events"))?;
                }
                Ok(())
            }

            /// Returns how many of the indicators it marked (those not yet retracted).
            async fn mark_many_retracted(
                connection: &mut Connection,
                ids: &[&str],
            ) -> Result<u64, StorageError> {
                let mut marked = 0;
                for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                    let mut query = sqlx::query(AssertSqlSafe(crate::placeholders::dialect(BACKEND, mark_many_retracted_sql(
                        chunk.len(),
                    ))));
                    for id in chunk {
                        query = query.bind(*id);
                    }
                    marked += query
                        .execute(&mut *connection)
                        .await
                        .map_err(failed("mark indicators retracted"))?
                        .rows_affected();
                }
                Ok(marked)
            }

            /// Returns the batch's sequences, consecutive, after the commit.
            pub(crate) async fn publish(
                pool: &Pool<Database>,
                batch: &[NewIndicator],
            ) -> Result<Vec<u64>, StorageError> {
                if batch.is_empty() {
                    return Ok(Vec::new());
                }
                reject_duplicates_within(batch)?;
                let count = i64::try_from(batch.len()).unwrap_or(i64::MAX);

                let mut transaction = pool
                    .begin_with($begin_write)
                    .await
                    .map_err(failed("begin publish transaction"))?;
                let head: i64 = sqlx::query_scalar(ADVANCE_HEAD)
                    .bind(count)
                    .fetch_one(&mut *transaction)
                    .await
                    .map_err(failed("advance feed head"))?;
                let first = head - count + 1;

                let rows: Vec<(i64, &NewIndicator)> = (first..).zip(batch).collect();
                insert_published_events(&mut transaction, &rows).await?;
                let stored_ids = copy_published_indicators(&mut transaction, &rows, None).await?;
                if stored_ids.len() != batch.len() {
                    roll_back(transaction, "publish transaction after duplicate id").await;
                    return Err(StorageError::Duplicate {
                        id: first_skipped_id(batch, &stored_ids),
                    });
                }
                // After every indicator of the batch is stored, so one may revise another.
                let revisions = latest_supersedes(batch.iter().filter_map(Supersede::of));
                mark_superseded(&mut transaction, &revisions).await?;

                transaction
                    .commit()
                    .await
                    .map_err(failed("commit publish transaction"))?;
                (first..=head)
                    .map(|sequence| sequence_from_database(sequence, "feed head"))
                    .collect()
            }

            /// Returns the sequence of the `retracted` event, after the commit.
            pub(crate) async fn retract(
                pool: &Pool<Database>,
                indicator_id: &str,
                reason: &str,
                at_micros: i64,
                signature: Option<&[u8]>,
            ) -> Result<u64, StorageError> {
                let mut transaction = pool
                    .begin_with($begin_write)
                    .await
                    .map_err(failed("begin retract transaction"))?;
                // First, so that this retraction is ordered with every other writer.
                let sequence: i64 = sqlx::query_scalar(ADVANCE_HEAD)
                    .bind(1_i64)
                    .fetch_one(&mut *transaction)
                    .await
                    .map_err(failed("advance feed head"))?;

                let marked: Option<(String, String)> = sqlx::query_as(MARK_RETRACTED)
                    .bind(indicator_id)
                    .fetch_optional(&mut *transaction)
                    .await
                    .map_err(failed("mark indicator retracted"))?;
                let Some((originator, kind)) = marked else {
                    let retracted: Option<bool> = sqlx::query_scalar(INDICATOR_RETRACTED)
                        .bind(indicator_id)
                        .fetch_optional(&mut *transaction)
                        .await
                        .map_err(failed("read indicator to retract"))?;
                    roll_back(transaction, "refused retraction").await;
                    let id = indicator_id.to_owned();
                    return Err(match retracted {
                        Some(_) => StorageError::AlreadyRetracted { id },
                        None => StorageError::NotFound { id },
                    });
                };

                sqlx::query(INSERT_RETRACTION)
                    .bind(sequence)
                    .bind(kind.as_str())
                    .bind(indicator_id)
                    .bind(originator.as_str())
                    .bind(reason)
                    .bind(at_micros)
                    .bind(signature)
                    .execute(&mut *transaction)
                    .await
                    .map_err(failed("insert retraction event"))?;
                transaction
                    .commit()
                    .await
                    .map_err(failed("commit retract transaction"))?;
                sequence_from_database(sequence, "feed head")
            }

            /// Takes the lock on the feed head without moving it and returns the head, for a
            /// writer that knows how far to move it only once it has checked what it stores
            /// against what is stored. It must be the first statement of the transaction that
            /// writes the feed: until the commit nothing else writes indicators, so a plan made
            /// from what is stored after it holds.
            pub(crate) async fn lock_head(
                connection: &mut Connection,
            ) -> Result<i64, StorageError> {
                sqlx::query_scalar(ADVANCE_HEAD)
                    .bind(0_i64)
                    .fetch_one(&mut *connection)
                    .await
                    .map_err(failed("lock feed head"))
            }

            /// Stores the published items of `plan` (events, then indicators, each in
            /// `circle` if one is given) and marks what they supersede. `action` names the
            /// writer in the error if an item turns out to be stored already, and then the
            /// caller's transaction must be rolled back (dropping it does).
            async fn store_planned_published(
                connection: &mut Connection,
                plan: &ReceivePlan<'_>,
                circle: Option<&str>,
                action: &str,
            ) -> Result<(), StorageError> {
                insert_published_events(connection, &plan.published).await?;
                let stored_ids =
                    copy_published_indicators(connection, &plan.published, circle).await?;
                if stored_ids.len() != plan.published.len() {
                    return Err(unplanned_change(
                        action,
                        format!(
                            "{} of {} new indicators were already stored",
                            plan.published.len() - stored_ids.len(),
                            plan.published.len()
                        ),
                    ));
                }
                let revisions = latest_supersedes(plan.supersedes.iter().copied());
                mark_superseded(connection, &revisions).await
            }

            /// Moves the head from `locked_head`, as [`lock_head`] returned it, to `planned`,
            /// and returns whether it moved. Like [`store_planned_published`], an error
            /// requires the caller's transaction to be rolled back.
            async fn advance_head_to(
                connection: &mut Connection,
                locked_head: i64,
                planned: i64,
                action: &str,
            ) -> Result<bool, StorageError> {
                if planned <= locked_head {
                    return Ok(false);
                }
                let head: i64 = sqlx::query_scalar(ADVANCE_HEAD)
                    .bind(planned - locked_head)
                    .fetch_one(&mut *connection)
                    .await
                    .map_err(failed("advance feed head"))?;
                if head != planned {
                    return Err(unplanned_change(
                        action,
                        format!("the feed head became {head} instead of {planned}"),
                    ));
                }
                Ok(true)
            }

            /// Stores the source-protected indicators of a circle write in `circle`, as
            /// [`receive`] stores published items, in the caller's transaction, whose first
            /// statement was [`lock_head`] (which returned `locked_head`). Returns what was done
            /// with each indicator and the head after, moved already. On an error the caller's
            /// transaction must be rolled back (dropping it does).
            pub(crate) async fn store_circle_indicators(
                connection: &mut Connection,
                indicators: &[NewIndicator],
                circle: &str,
                locked_head: i64,
            ) -> Result<(ReceiveOutcome, i64), StorageError> {
                let known =
                    known_indicators(connection, &circle_referenced_ids(indicators)).await?;
                let plan = plan_circle_indicators(indicators, known, locked_head)?;
                store_planned_published(connection, &plan, Some(circle), "circle write").await?;
                advance_head_to(connection, locked_head, plan.head, "circle write").await?;
                Ok((plan.outcome, plan.head))
            }

            /// Applies `items` and moves the peer's cursor in one transaction. Returns what
            /// was done with each item and, if the head moved, the head after the commit.
            pub(crate) async fn receive(
                pool: &Pool<Database>,
                peer: &str,
                cursor: u64,
                items: &[Received],
                now_micros: i64,
            ) -> Result<(ReceiveOutcome, Option<u64>), StorageError> {
                let mut transaction = pool
                    .begin_with($begin_write)
                    .await
                    .map_err(failed("begin receive transaction"))?;
                // First, so that this receive is ordered with every other writer: until the
                // commit nothing else writes indicators, so the plan below, made from what is
                // stored now, holds.
                let locked_head = lock_head(&mut transaction).await?;
                let known = known_indicators(&mut transaction, &referenced_ids(items)).await?;
                let plan = plan_receive(items, known, locked_head)?;

                store_planned_published(&mut transaction, &plan, None, "receive").await?;
                insert_retracted_events(&mut transaction, &plan.retractions).await?;
                let retracted_ids: Vec<&str> = plan
                    .retractions
                    .iter()
                    .map(|retraction| retraction.indicator_id)
                    .collect();
                let marked = mark_many_retracted(&mut transaction, &retracted_ids).await?;
                if marked != retracted_ids.len() as u64 {
                    roll_back(transaction, "receive that found an indicator retracted").await;
                    return Err(unplanned_change(
                        "receive",
                        format!(
                            "{marked} of {} indicators to retract were not yet retracted",
                            retracted_ids.len()
                        ),
                    ));
                }
                let moved = advance_head_to(&mut transaction, locked_head, plan.head, "receive")
                    .await?;
                sqlx::query(UPSERT_PEER_CURSOR)
                    .bind(peer)
                    .bind(sequence_to_database(cursor))
                    .bind(now_micros)
                    .execute(&mut *transaction)
                    .await
                    .map_err(failed("store peer cursor"))?;
                transaction
                    .commit()
                    .await
                    .map_err(failed("commit receive transaction"))?;
                let head = if moved {
                    Some(sequence_from_database(plan.head, "feed head")?)
                } else {
                    None
                };
                Ok((plan.outcome, head))
            }

            pub(crate) async fn peer_cursor(
                pool: &Pool<Database>,
                peer: &str,
            ) -> Result<u64, StorageError> {
                let cursor: Option<i64> = sqlx::query_scalar(SELECT_PEER_CURSOR)
                    .bind(peer)
                    .fetch_optional(pool)
                    .await
                    .map_err(failed("read peer cursor"))?;
                cursor.map_or(Ok(0), |cursor| sequence_from_database(cursor, "peer cursor"))
            }

            pub(crate) async fn peer_cursors(
                pool: &Pool<Database>,
            ) -> Result<Vec<PeerCursor>, StorageError> {
                let rows: Vec<(String, i64, i64)> = sqlx::query_as(SELECT_PEER_CURSORS)
                    .fetch_all(pool)
                    .await
                    .map_err(failed("read peer cursors"))?;
                rows.into_iter()
                    .map(|(peer, cursor, updated_micros)| {
                        Ok(PeerCursor {
                            peer,
                            cursor: sequence_from_database(cursor, "peer cursor")?,
                            updated_micros,
                        })
                    })
                    .collect()
            }

            pub(crate) async fn read_after(
                pool: &Pool<Database>,
                after: u64,
                limit: u32,
                kinds: &[String],
            ) -> Result<EventBatch, StorageError> {
                if limit == 0 {
                    return Ok(EventBatch {
                        events: Vec::new(),
                        scanned_to: after,
                        head: head(pool).await?,
                    });
                }
                let kinds = distinct_kinds(kinds);
                let mut query = sqlx::query(AssertSqlSafe(read_after_sql(kinds.len())))
                    .bind(sequence_to_database(after))
                    .bind(i64::from(limit));
                for kind in kinds {
                    query = query.bind(kind);
                }
                let rows = query
                    .fetch_all(pool)
                    .await
                    .map_err(failed("read events"))?;

                let mut head = None;
                let mut events = Vec::with_capacity(rows.len());
                for row in rows {
                    let (row_head, columns) =
                        decode_read_row(&row).map_err(failed("decode event row"))?;
                    head = Some(row_head);
                    if let Some(columns) = columns {
                        events.push(columns.into_event()?);
                    }
                }
                let head = head.ok_or_else(|| {
                    StorageError::corrupt("table feed_head has no row".to_owned())
                })?;
                let head = sequence_from_database(head, "feed head")?;
                Ok(batch_scanned_to(after, limit, head, events))
            }

            /// The head, and the event unless this is the one row of a left join that
            /// matched no event.
            fn decode_read_row(
                row: &<Database as sqlx::Database>::Row,
            ) -> Result<(i64, Option<EventColumns>), sqlx::Error> {
                let head = row.try_get(0)?;
                let Some(sequence) = row.try_get(1)? else {
                    return Ok((head, None));
                };
                let columns = EventColumns {
                    sequence,
                    event_type: row.try_get(2)?,
                    kind: row.try_get(3)?,
                    indicator_id: row.try_get(4)?,
                    originator: row.try_get(5)?,
                    payload: row.try_get(6)?,
                    reason: row.try_get(7)?,
                    at_micros: row.try_get(8)?,
                    signature: row.try_get(9)?,
                };
                Ok((head, Some(columns)))
            }

            pub(crate) async fn indicator(
                pool: &Pool<Database>,
                id: &str,
            ) -> Result<Option<StoredIndicator>, StorageError> {
                type IndicatorRow = (
                    String,
                    String,
                    String,
                    Vec<u8>,
                    i64,
                    bool,
                    Option<String>,
                    Option<String>,
                    Option<String>,
                );
                let row: Option<IndicatorRow> = sqlx::query_as(SELECT_INDICATOR)
                    .bind(id)
                    .fetch_optional(pool)
                    .await
                    .map_err(failed("read indicator"))?;
                row.map(
                    |(
                        id,
                        originator,
                        kind,
                        payload,
                        sequence,
                        retracted,
                        via,
                        superseded_by,
                        circle,
                    )| {
                        Ok(StoredIndicator {
                            id,
                            originator,
                            kind,
                            payload,
                            sequence: sequence_from_database(sequence, "indicator sequence")?,
                            retracted,
                            via,
                            superseded_by,
                            circle,
                        })
                    },
                )
                .transpose()
            }

            pub(crate) async fn head(pool: &Pool<Database>) -> Result<u64, StorageError> {
                let head: i64 = sqlx::query_scalar(READ_HEAD)
                    .fetch_one(pool)
                    .await
                    .map_err(failed("read feed head"))?;
                sequence_from_database(head, "feed head")
            }
        }
    };
}

// SQLite: `BEGIN IMMEDIATE` takes the write lock up front (waiting up to the busy timeout), so a
// transaction never has to upgrade a read lock, which fails at once with SQLITE_BUSY when
// another connection (another Store on the same file) wrote in between.
feed_operations!(
    sqlite_feed,
    sqlx::Sqlite,
    Backend::Sqlite,
    begin_write = "BEGIN IMMEDIATE"
);
feed_operations!(
    postgres_feed,
    sqlx::Postgres,
    Backend::Postgres,
    begin_write = "BEGIN"
);

#[cfg(test)]
mod tests {
    use super::*;

    fn event(sequence: u64) -> StoredEvent {
        StoredEvent {
            sequence,
            at_micros: 0,
            kind: "ip".to_owned(),
            body: EventBody::Retracted {
                indicator_id: "a".to_owned(),
                originator: "GH".to_owned(),
                reason: "test".to_owned(),
                signature: None,
            },
        }
    }

    fn check_scanned_to(after: u64, limit: u32, head: u64, sequences: &[u64], expected: u64) {
        let events = sequences.iter().copied().map(event).collect();
        let batch = batch_scanned_to(after, limit, head, events);
        assert_eq!(
            batch.scanned_to, expected,
            "after {after}, limit {limit}, head {head}, events {sequences:?}"
        );
    }

    #[test]
    fn scanned_to_stops_at_the_last_event_of_a_full_batch() {
        check_scanned_to(0, 2, 10, &[3, 7], 7);
        check_scanned_to(0, 3, 10, &[3, 7], 10);
        check_scanned_to(4, 3, 10, &[], 10);
        check_scanned_to(12, 3, 10, &[], 12);
        check_scanned_to(0, 1, 0, &[], 0);
    }

    #[test]
    fn insert_sql_numbers_every_column() {
        assert_eq!(
            insert_published_events_sql(2),
            "INSERT INTO events (sequence, event_type, kind, indicator_id, originator, payload, at_micros) VALUES \
             ($1, 'published', $2, $3, $4, $5, $6), ($7, 'published', $8, $9, $10, $11, $12)"
        );
    }

    #[test]
    fn retraction_insert_sql_numbers_every_column() {
        assert_eq!(
            insert_retracted_events_sql(2),
            "INSERT INTO events (sequence, event_type, kind, indicator_id, originator, reason, at_micros, signature) VALUES \
             ($1, 'retracted', $2, $3, $4, $5, $6, $7), ($8, 'retracted', $9, $10, $11, $12, $13, $14)"
        );
    }

    #[test]
    fn value_lists_number_from_their_first_parameter() {
        let copy = copy_published_indicators_sql(2);
        assert!(
            copy.contains("JOIN (VALUES ($1, $2, $3), ($4, $5, $6)) AS v"),
            "{copy}"
        );
        assert!(
            copy.contains("WHERE e.sequence >= $7 AND e.sequence <= $8"),
            "{copy}"
        );
        let mark = mark_superseded_sql(2);
        assert!(
            mark.contains("(VALUES ($1, $2, $3), ($4, $5, $6)) AS v"),
            "{mark}"
        );
        assert!(select_known_indicators_sql(3).ends_with("WHERE id IN ($1, $2, $3)"));
        assert!(mark_many_retracted_sql(1).ends_with("AND id IN ($1)"));
    }

    #[test]
    fn read_sql_filters_kinds_from_the_third_parameter() {
        let sql = read_after_sql(2);
        assert!(
            sql.contains("AND kind IN ($3, $4) ORDER BY sequence LIMIT $2"),
            "{sql}"
        );
        assert!(!read_after_sql(0).contains("kind IN"));
    }

    #[test]
    fn kinds_are_sorted_without_repeats() {
        let kinds = ["url", "ip", "url"].map(String::from);
        assert_eq!(distinct_kinds(&kinds), ["ip", "url"]);
    }

    #[test]
    fn cursors_beyond_the_database_range_saturate() {
        assert_eq!(sequence_to_database(u64::MAX), i64::MAX);
        assert_eq!(sequence_to_database(42), 42);
        assert!(sequence_from_database(-1, "feed head").is_err());
    }

    fn published(id: &str, originator: &str, supersedes: Option<&str>) -> Received {
        Received::Published(NewIndicator {
            id: id.to_owned(),
            originator: originator.to_owned(),
            kind: "ip".to_owned(),
            created_micros: 1,
            payload: Vec::new(),
            supersedes: supersedes.map(str::to_owned),
            via: Some("peer".to_owned()),
        })
    }

    fn retracted(id: &str, originator: &str) -> Received {
        Received::Retracted {
            indicator_id: id.to_owned(),
            originator: originator.to_owned(),
            reason: "withdrawn".to_owned(),
            at_micros: 2,
            signature: None,
        }
    }

    fn stored(originator: &str, retracted: bool) -> KnownIndicator {
        KnownIndicator {
            originator: originator.to_owned(),
            kind: "url".to_owned(),
            retracted,
            payload: Vec::new(),
        }
    }

    fn strings(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| (*id).to_owned()).collect()
    }

    #[test]
    fn receive_plan_applies_items_in_order() {
        let items = [
            published("old", "A", None),
            published("new", "A", Some("old")),
            published("new", "A", None),
            published("later", "A", Some("after")),
            published("after", "A", None),
            published("foreign", "B", Some("kept")),
            published("itself", "A", Some("itself")),
            retracted("new", "A"),
            retracted("new", "A"),
            retracted("kept", "B"),
            retracted("gone", "A"),
            retracted("kept", "A"),
        ];
        let known = HashMap::from([
            ("kept".to_owned(), stored("A", false)),
            ("gone".to_owned(), stored("A", true)),
        ]);
        let plan = plan_receive(&items, known, 10).expect("plan");
        assert_eq!(
            plan.outcome,
            ReceiveOutcome {
                stored: vec![
                    ("old".to_owned(), 11),
                    ("new".to_owned(), 12),
                    ("later".to_owned(), 13),
                    ("after".to_owned(), 14),
                    ("foreign".to_owned(), 15),
                    ("itself".to_owned(), 16),
                ],
                duplicates: strings(&["new"]),
                conflicts: Vec::new(),
                retracted: vec![("new".to_owned(), 17), ("kept".to_owned(), 18)],
                ignored_retractions: strings(&["new", "kept", "gone"]),
            }
        );
        assert_eq!(plan.head, 18);
        let published: Vec<(i64, &str)> = plan
            .published
            .iter()
            .map(|(sequence, item)| (*sequence, item.id.as_str()))
            .collect();
        assert_eq!(
            published,
            [
                (11, "old"),
                (12, "new"),
                (13, "later"),
                (14, "after"),
                (15, "foreign"),
                (16, "itself")
            ]
        );
        // Only "old": "after" was not stored yet when "later" revised it, "kept" is of another
        // originator, and an indicator never supersedes itself.
        assert_eq!(
            plan.supersedes,
            [Supersede {
                old: "old",
                originator: "A",
                new: "new"
            }]
        );
        let retractions: Vec<(i64, &str, &str)> = plan
            .retractions
            .iter()
            .map(|retraction| {
                (
                    retraction.sequence,
                    retraction.indicator_id,
                    retraction.kind.as_str(),
                )
            })
            .collect();
        assert_eq!(retractions, [(17, "new", "ip"), (18, "kept", "url")]);
    }

    #[test]
    fn a_different_indicator_under_a_held_id_is_a_conflict_not_a_duplicate() {
        let with = |id: &str, originator: &str, payload: &[u8]| {
            Received::Published(NewIndicator {
                id: id.to_owned(),
                originator: originator.to_owned(),
                kind: "ip".to_owned(),
                created_micros: 1,
                payload: payload.to_vec(),
                supersedes: None,
                via: Some("peer".to_owned()),
            })
        };
        let mut held = stored("A", false);
        held.payload = b"original".to_vec();
        let known = HashMap::from([("x".to_owned(), held)]);
        let items = [
            with("x", "A", b"original"),
            with("x", "B", b"original"),
            with("x", "A", b"altered"),
            with("y", "A", b"first"),
            with("y", "A", b"second"),
        ];
        let plan = plan_receive(&items, known, 0).expect("plan");
        assert_eq!(plan.outcome.duplicates, strings(&["x"]));
        assert_eq!(plan.outcome.conflicts, strings(&["x", "x", "y"]));
        assert_eq!(plan.outcome.stored, vec![("y".to_owned(), 1)]);
    }

    #[test]
    fn receive_plan_of_nothing_keeps_the_head() {
        let plan = plan_receive(&[], HashMap::new(), 7).expect("plan");
        assert_eq!(plan.head, 7);
        assert_eq!(plan.outcome, ReceiveOutcome::default());
        let duplicates = [published("a", "A", None)];
        let plan = plan_receive(
            &duplicates,
            HashMap::from([("a".to_owned(), stored("A", false))]),
            7,
        )
        .expect("plan");
        assert_eq!(plan.head, 7);
        assert_eq!(plan.outcome.duplicates, strings(&["a"]));
    }

    #[test]
    fn referenced_ids_cover_revised_and_retracted_ids_once() {
        let items = [
            published("b", "A", Some("a")),
            retracted("c", "A"),
            published("a", "A", None),
        ];
        assert_eq!(referenced_ids(&items), ["a", "b", "c"]);
    }

    #[test]
    fn the_latest_revision_of_each_originator_wins() {
        let revision = |old, originator, new| Supersede {
            old,
            originator,
            new,
        };
        let latest = latest_supersedes([
            revision("x", "A", "x2"),
            revision("x", "B", "y"),
            revision("z", "A", "z2"),
            revision("x", "A", "x3"),
        ]);
        assert_eq!(
            latest,
            [
                revision("x", "B", "y"),
                revision("z", "A", "z2"),
                revision("x", "A", "x3"),
            ]
        );
    }
}
