//! The feed operations, written once and expanded for SQLite and PostgreSQL by
//! `feed_operations!`.
//!
//! The SQL uses `$N` placeholders: sqlx's SQLite driver binds `$N` by number as PostgreSQL does,
//! so one text serves both backends. Only the statement that opens a write transaction differs.

use std::collections::HashSet;
use std::fmt::Write as _;

use crate::error::StorageError;
use crate::model::{EventBatch, EventBody, NewIndicator, StoredEvent, StoredIndicator};

/// Takes `$1` sequence numbers. It must be the first statement of every writing transaction: the
/// row lock it takes serialises writers until they commit, so they commit in sequence order and
/// a reader that sees head `H` also sees every event `<= H` (see the crate documentation).
const ADVANCE_HEAD: &str = "UPDATE feed_head SET head = head + $1 RETURNING head";

pub(crate) const READ_HEAD: &str = "SELECT head FROM feed_head";

const PUBLISHED_EVENT_COLUMNS: usize = 6;

/// Rows per multi-row insert: 6 columns x 500 rows stays far below the bind limits of both
/// backends (SQLite 32766, PostgreSQL 65535) while a usual batch (100) is one statement.
const EVENT_ROWS_PER_INSERT: usize = 500;

/// Copies the batch's indicators from its events on the server, so payloads cross the wire
/// once. A conflicting id is skipped and so missing from the returned ids; the caller then
/// rolls the whole batch back. (SQLite needs the `WHERE` for `ON CONFLICT` to parse after a
/// `SELECT`.)
const COPY_PUBLISHED_INDICATORS: &str = "INSERT INTO indicators (id, originator, kind, payload, sequence) \
     SELECT indicator_id, originator, kind, payload, sequence FROM events \
     WHERE sequence >= $1 AND sequence <= $2 \
     ON CONFLICT (id) DO NOTHING \
     RETURNING id";

const MARK_RETRACTED: &str = "UPDATE indicators SET retracted = TRUE \
     WHERE id = $1 AND retracted = FALSE \
     RETURNING originator, kind";

const INDICATOR_RETRACTED: &str = "SELECT retracted FROM indicators WHERE id = $1";

const INSERT_RETRACTION: &str = "INSERT INTO events \
     (sequence, event_type, kind, indicator_id, originator, reason, at_micros) \
     VALUES ($1, 'retracted', $2, $3, $4, $5, $6)";

const SELECT_INDICATOR: &str =
    "SELECT id, originator, kind, payload, sequence, retracted FROM indicators WHERE id = $1";

fn insert_published_events_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO events (sequence, event_type, kind, indicator_id, originator, payload, at_micros) VALUES ",
    );
    for row in 0..rows {
        let base = row * PUBLISHED_EVENT_COLUMNS;
        if row > 0 {
            sql.push_str(", ");
        }
        // Writing into a String cannot fail.
        let _ = write!(
            sql,
            "(${}, 'published', ${}, ${}, ${}, ${}, ${})",
            base + 1,
            base + 2,
            base + 3,
            base + 4,
            base + 5,
            base + 6
        );
    }
    sql
}

/// One statement, so the head and the events come from one snapshot: the events are bounded by
/// the head that snapshot saw, and that head is returned (on the left-joined row even when no
/// event matches) to compute `scanned_to`. The inner query is an index range scan on the
/// primary key that stops after `$2` rows; the outer sort only orders those.
fn read_after_sql(kind_count: usize) -> String {
    let mut sql = String::from(
        "SELECT feed_head.head, e.sequence, e.event_type, e.kind, e.indicator_id, e.originator, \
         e.payload, e.reason, e.at_micros \
         FROM feed_head LEFT JOIN ( \
         SELECT sequence, event_type, kind, indicator_id, originator, payload, reason, at_micros \
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

fn sequence_from_database(value: i64, column: &str) -> Result<u64, StorageError> {
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

/// Expands the feed operations for one sqlx database into module `$module`. Every function
/// takes the pool to use, so SQLite can write through its single-connection pool and read
/// through its reader pool while PostgreSQL uses one pool for both.
macro_rules! feed_operations {
    ($module:ident, $database:ty, $backend:expr, begin_write = $begin_write:literal) => {
        pub(crate) mod $module {
            use sqlx::{AssertSqlSafe, Pool, Row};

            use super::*;
            use crate::store::Backend;

            type Database = $database;
            const BACKEND: Backend = $backend;

            fn failed(action: &str) -> impl FnOnce(sqlx::Error) -> StorageError + '_ {
                move |error| StorageError::from_sqlx(BACKEND, action, error)
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

                let mut sequence = first;
                for chunk in batch.chunks(EVENT_ROWS_PER_INSERT) {
                    let mut query = sqlx::query(AssertSqlSafe(insert_published_events_sql(
                        chunk.len(),
                    )));
                    for item in chunk {
                        query = query
                            .bind(sequence)
                            .bind(item.kind.as_str())
                            .bind(item.id.as_str())
                            .bind(item.originator.as_str())
                            .bind(item.payload.as_slice())
                            .bind(item.created_micros);
                        sequence += 1;
                    }
                    query
                        .execute(&mut *transaction)
                        .await
                        .map_err(failed("insert published events"))?;
                }

                let stored_ids: Vec<String> = sqlx::query_scalar(COPY_PUBLISHED_INDICATORS)
                    .bind(first)
                    .bind(head)
                    .fetch_all(&mut *transaction)
                    .await
                    .map_err(failed("insert indicators"))?;
                if stored_ids.len() != batch.len() {
                    if let Err(error) = transaction.rollback().await {
                        // Dropping the connection's transaction rolls it back anyway; the
                        // caller needs the duplicate, not this.
                        tracing::warn!(%error, "roll back publish transaction after duplicate id");
                    }
                    return Err(StorageError::Duplicate {
                        id: first_skipped_id(batch, &stored_ids),
                    });
                }

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
                    if let Err(error) = transaction.rollback().await {
                        tracing::warn!(%error, "roll back refused retraction");
                    }
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
                    .execute(&mut *transaction)
                    .await
                    .map_err(failed("insert retraction event"))?;
                transaction
                    .commit()
                    .await
                    .map_err(failed("commit retract transaction"))?;
                sequence_from_database(sequence, "feed head")
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
                };
                Ok((head, Some(columns)))
            }

            pub(crate) async fn indicator(
                pool: &Pool<Database>,
                id: &str,
            ) -> Result<Option<StoredIndicator>, StorageError> {
                let row: Option<(String, String, String, Vec<u8>, i64, bool)> =
                    sqlx::query_as(SELECT_INDICATOR)
                        .bind(id)
                        .fetch_optional(pool)
                        .await
                        .map_err(failed("read indicator"))?;
                row.map(|(id, originator, kind, payload, sequence, retracted)| {
                    Ok(StoredIndicator {
                        id,
                        originator,
                        kind,
                        payload,
                        sequence: sequence_from_database(sequence, "indicator sequence")?,
                        retracted,
                    })
                })
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
}
