//! Screening's storage: screenings, watches (screened declarations and watchlist entries) and
//! alerts, written once for both backends by `screening_operations!` (see [`crate::feed`] for
//! why a macro).
//!
//! Alerts are numbered gap-safe as the feed is: every writer updates the one `alert_head` row
//! first in its transaction, so alerts become visible in sequence order. One alert per watch
//! and indicator: a writer drops the pairs already stored (under the head lock), so that two
//! replicas raising the same alert store it once.

mod direct;

use crate::error::StorageError;
use crate::model::{
    AlertCursors, AlertRow, DecisionRow, NewAlert, NewWatch, ScreeningRow, WatchKind, WatchRow,
};
use crate::placeholders::push_rows;
use crate::values::{sequence_from_database, sequence_to_database};

/// Screenings inserted per statement (10 binds each).
const SCREENINGS_PER_STATEMENT: usize = 500;
/// Alerts inserted per statement (6 binds each).
const ALERTS_PER_STATEMENT: usize = 500;

const SCREENING_COLUMNS: &str =
    "id, agency, reference, at_micros, policy_revision, level, score, declaration, result";

const WATCH_COLUMNS: &str =
    "kind, agency, reference_id, subject, from_sequence, until_micros, created_micros";

const SELECT_SCREENING: &str = "SELECT id, agency, reference, at_micros, policy_revision, level, \
     score, declaration, result FROM screenings WHERE id = $1";

const INSERT_WATCH: &str = "INSERT INTO watches \
     (kind, agency, reference_id, subject, from_sequence, until_micros, created_micros) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING number";

const DELETE_ENTRY: &str =
    "DELETE FROM watches WHERE kind = 'entry' AND agency = $1 AND reference_id = $2";

/// The columns a watch is read with. A screened declaration's watch stores no subject of its own
/// (an empty one): its subject is the declaration stored with its screening in the same
/// transaction, read from there, so that each screening writes the declaration once.
macro_rules! watch_columns {
    () => {
        "number, kind, agency, reference_id, \
         CASE WHEN kind = 'declaration' AND length(subject) = 0 \
         THEN COALESCE((SELECT s.declaration FROM screenings s \
         WHERE s.id = watches.reference_id), subject) ELSE subject END, \
         from_sequence, until_micros, created_micros"
    };
}

const SELECT_WATCHES_OF: &str = concat!(
    "SELECT ",
    watch_columns!(),
    " FROM watches WHERE agency = $1 AND kind = $2 ORDER BY number"
);

/// Active watches after a number, in number order.
const SELECT_WATCHES_AFTER: &str = concat!(
    "SELECT ",
    watch_columns!(),
    " FROM watches WHERE number > $1 AND (until_micros IS NULL OR until_micros > $2) \
     ORDER BY number LIMIT $3"
);

/// Takes the alert head's row lock (the first statement of an alert write).
const LOCK_ALERT_HEAD: &str = "UPDATE alert_head SET head = head RETURNING head";

/// Moves the head and the cursors; the cursors never move backwards.
const MOVE_ALERT_HEAD: &str = "UPDATE alert_head SET head = $1, \
     feed_cursor = CASE WHEN feed_cursor < $2 THEN $2 ELSE feed_cursor END, \
     watch_cursor = CASE WHEN watch_cursor < $3 THEN $3 ELSE watch_cursor END";

const SELECT_ALERT_HEAD: &str = "SELECT head, feed_cursor, watch_cursor FROM alert_head";

const SELECT_WATCHES_NUMBERED_PREFIX: &str = concat!(
    "SELECT ",
    watch_columns!(),
    " FROM watches WHERE number IN ("
);

const SELECT_ALERTS_AFTER: &str = "SELECT sequence, agency, watch, indicator_id, at_micros, \
     payload FROM alerts WHERE agency = $1 AND sequence > $2 ORDER BY sequence LIMIT $3";

fn insert_screenings_sql(rows: usize) -> String {
    let mut sql = format!("INSERT INTO screenings ({SCREENING_COLUMNS}) VALUES ");
    push_rows(&mut sql, 1, rows, 9, None);
    sql
}

fn insert_watches_sql(rows: usize) -> String {
    let mut sql = format!("INSERT INTO watches ({WATCH_COLUMNS}) VALUES ");
    push_rows(&mut sql, 1, rows, 7, None);
    sql
}

fn insert_alerts_sql(rows: usize, first_sequence_parameter: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO alerts (sequence, agency, watch, indicator_id, at_micros, payload) VALUES ",
    );
    push_rows(&mut sql, first_sequence_parameter, rows, 6, None);
    sql
}

/// The stored pairs among `(watch, indicator)` `pairs`.
fn stored_pairs_sql(count: usize) -> String {
    let mut sql = String::from("SELECT a.watch, a.indicator_id FROM alerts a JOIN (VALUES ");
    push_rows(&mut sql, 1, count, 2, None);
    sql.push_str(") AS p ON a.watch = p.column1 AND a.indicator_id = p.column2");
    sql
}

fn select_existing_watches_sql(count: usize) -> String {
    numbered_sql("SELECT number FROM watches WHERE number IN (", count)
}

fn select_watches_numbered_sql(count: usize) -> String {
    numbered_sql(SELECT_WATCHES_NUMBERED_PREFIX, count)
}

/// `prefix` followed by `$1, … $count)`.
fn numbered_sql(prefix: &str, count: usize) -> String {
    let mut sql = String::from(prefix);
    for index in 0..count {
        if index > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("${}", index + 1));
    }
    sql.push(')');
    sql
}

type WatchColumns = (i64, String, String, String, Vec<u8>, i64, Option<i64>, i64);

fn watch_row(columns: WatchColumns) -> Result<WatchRow, StorageError> {
    let (number, kind, agency, reference_id, subject, from_sequence, until_micros, created) =
        columns;
    let kind = match kind.as_str() {
        "declaration" => WatchKind::Declaration,
        "entry" => WatchKind::Entry,
        other => {
            return Err(StorageError::corrupt(format!(
                "watch {number} has kind {other:?}"
            )));
        }
    };
    Ok(WatchRow {
        number: sequence_from_database(number, "watch number")?,
        watch: NewWatch {
            kind,
            agency,
            reference_id,
            subject,
            from_sequence: sequence_from_database(from_sequence, "watch from_sequence")?,
            until_micros,
            created_micros: created,
        },
    })
}

type ScreeningColumns = (
    String,
    String,
    String,
    i64,
    String,
    String,
    i64,
    Vec<u8>,
    Vec<u8>,
);

fn screening_row(columns: ScreeningColumns) -> Result<ScreeningRow, StorageError> {
    let (id, agency, reference, at_micros, policy_revision, level, score, declaration, result) =
        columns;
    Ok(ScreeningRow {
        id,
        agency,
        reference,
        at_micros,
        policy_revision,
        level,
        score: u32::try_from(score)
            .map_err(|_| StorageError::corrupt(format!("screening score {score}")))?,
        declaration,
        result,
        watch: None,
    })
}

type AlertColumns = (i64, String, i64, String, i64, Vec<u8>);

fn alert_row(columns: AlertColumns) -> Result<AlertRow, StorageError> {
    let (sequence, agency, watch, indicator_id, at_micros, payload) = columns;
    Ok(AlertRow {
        sequence: sequence_from_database(sequence, "alert sequence")?,
        agency,
        watch: sequence_from_database(watch, "alert watch")?,
        indicator_id,
        at_micros,
        payload,
    })
}

macro_rules! screening_operations {
    ($module:ident, $database:ty, $backend:expr, begin_write = $begin_write:literal) => {
        pub(crate) mod $module {
            use sqlx::{AssertSqlSafe, Pool};

            use super::*;
            use crate::backend::Backend;
            use crate::placeholders::dialect;

            type Database = $database;
            const BACKEND: Backend = $backend;

            fn failed(action: &str) -> impl FnOnce(sqlx::Error) -> StorageError + '_ {
                crate::error::failed(BACKEND, action)
            }

            pub(crate) async fn record_screenings(
                pool: &Pool<Database>,
                rows: &[ScreeningRow],
            ) -> Result<(), StorageError> {
                if rows.is_empty() {
                    return Ok(());
                }
                let watches: Vec<NewWatch> = rows
                    .iter()
                    .filter_map(|row| {
                        let (from_sequence, until_micros) = row.watch?;
                        Some(NewWatch {
                            kind: WatchKind::Declaration,
                            agency: row.agency.clone(),
                            reference_id: row.id.clone(),
                            // Read from the screening (see `watch_columns`).
                            subject: Vec::new(),
                            from_sequence,
                            until_micros: Some(until_micros),
                            created_micros: row.at_micros,
                        })
                    })
                    .collect();
                let mut transaction = pool
                    .begin_with($begin_write)
                    .await
                    .map_err(failed("begin record screenings transaction"))?;
                for chunk in rows.chunks(SCREENINGS_PER_STATEMENT) {
                    let mut query = sqlx::query(AssertSqlSafe(dialect(
                        BACKEND,
                        insert_screenings_sql(chunk.len()),
                    )));
                    for row in chunk {
                        query = query
                            .bind(row.id.as_str())
                            .bind(row.agency.as_str())
                            .bind(row.reference.as_str())
                            .bind(row.at_micros)
                            .bind(row.policy_revision.as_str())
                            .bind(row.level.as_str())
                            .bind(i64::from(row.score))
                            .bind(row.declaration.as_slice())
                            .bind(row.result.as_slice());
                    }
                    query
                        .execute(&mut *transaction)
                        .await
                        .map_err(failed("record screenings"))?;
                }
                for chunk in watches.chunks(SCREENINGS_PER_STATEMENT) {
                    let mut query = sqlx::query(AssertSqlSafe(dialect(
                        BACKEND,
                        insert_watches_sql(chunk.len()),
                    )));
                    for watch in chunk {
                        query = query
                            .bind(watch.kind.as_str())
                            .bind(watch.agency.as_str())
                            .bind(watch.reference_id.as_str())
                            .bind(watch.subject.as_slice())
                            .bind(sequence_to_database(watch.from_sequence))
                            .bind(watch.until_micros)
                            .bind(watch.created_micros);
                    }
                    query
                        .execute(&mut *transaction)
                        .await
                        .map_err(failed("record watches"))?;
                }
                transaction
                    .commit()
                    .await
                    .map_err(failed("commit record screenings transaction"))
            }

            pub(crate) async fn screening(
                pool: &Pool<Database>,
                id: &str,
            ) -> Result<Option<ScreeningRow>, StorageError> {
                let row: Option<ScreeningColumns> = sqlx::query_as(SELECT_SCREENING)
                    .bind(id)
                    .fetch_optional(pool)
                    .await
                    .map_err(failed("read screening"))?;
                row.map(screening_row).transpose()
            }

            pub(crate) async fn add_watch(
                pool: &Pool<Database>,
                watch: &NewWatch,
            ) -> Result<u64, StorageError> {
                let number: i64 = sqlx::query_scalar(INSERT_WATCH)
                    .bind(watch.kind.as_str())
                    .bind(watch.agency.as_str())
                    .bind(watch.reference_id.as_str())
                    .bind(watch.subject.as_slice())
                    .bind(sequence_to_database(watch.from_sequence))
                    .bind(watch.until_micros)
                    .bind(watch.created_micros)
                    .fetch_one(pool)
                    .await
                    .map_err(failed("add watch"))?;
                sequence_from_database(number, "watch number")
            }

            pub(crate) async fn remove_entry(
                pool: &Pool<Database>,
                agency: &str,
                reference_id: &str,
            ) -> Result<bool, StorageError> {
                let deleted = sqlx::query(DELETE_ENTRY)
                    .bind(agency)
                    .bind(reference_id)
                    .execute(pool)
                    .await
                    .map_err(failed("remove watch"))?
                    .rows_affected();
                Ok(deleted > 0)
            }

            pub(crate) async fn watches_of(
                pool: &Pool<Database>,
                agency: &str,
                kind: WatchKind,
            ) -> Result<Vec<WatchRow>, StorageError> {
                let rows: Vec<WatchColumns> = sqlx::query_as(SELECT_WATCHES_OF)
                    .bind(agency)
                    .bind(kind.as_str())
                    .fetch_all(pool)
                    .await
                    .map_err(failed("read watches"))?;
                rows.into_iter().map(watch_row).collect()
            }

            pub(crate) async fn watches_after(
                pool: &Pool<Database>,
                after: u64,
                now_micros: i64,
                limit: u32,
            ) -> Result<Vec<WatchRow>, StorageError> {
                let rows: Vec<WatchColumns> = sqlx::query_as(SELECT_WATCHES_AFTER)
                    .bind(sequence_to_database(after))
                    .bind(now_micros)
                    .bind(i64::from(limit))
                    .fetch_all(pool)
                    .await
                    .map_err(failed("read watches"))?;
                rows.into_iter().map(watch_row).collect()
            }

            pub(crate) async fn existing_watches(
                pool: &Pool<Database>,
                numbers: &[u64],
            ) -> Result<Vec<u64>, StorageError> {
                let mut existing = Vec::new();
                for chunk in numbers.chunks(ALERTS_PER_STATEMENT) {
                    let mut query = sqlx::query_scalar(AssertSqlSafe(dialect(
                        BACKEND,
                        select_existing_watches_sql(chunk.len()),
                    )));
                    for number in chunk {
                        query = query.bind(sequence_to_database(*number));
                    }
                    let found: Vec<i64> = query
                        .fetch_all(pool)
                        .await
                        .map_err(failed("read watches"))?;
                    for number in found {
                        existing.push(sequence_from_database(number, "watch number")?);
                    }
                }
                Ok(existing)
            }

            pub(crate) async fn watches_numbered(
                pool: &Pool<Database>,
                numbers: &[u64],
            ) -> Result<Vec<WatchRow>, StorageError> {
                let mut found = Vec::new();
                for chunk in numbers.chunks(ALERTS_PER_STATEMENT) {
                    let mut query = sqlx::query_as(AssertSqlSafe(dialect(
                        BACKEND,
                        select_watches_numbered_sql(chunk.len()),
                    )));
                    for number in chunk {
                        query = query.bind(sequence_to_database(*number));
                    }
                    let rows: Vec<WatchColumns> = query
                        .fetch_all(pool)
                        .await
                        .map_err(failed("read watches"))?;
                    for row in rows {
                        found.push(watch_row(row)?);
                    }
                }
                Ok(found)
            }

            /// `(alert head, feed cursor, watch cursor)`.
            pub(crate) async fn alert_head(
                pool: &Pool<Database>,
            ) -> Result<(u64, AlertCursors), StorageError> {
                let (head, feed, watches): (i64, i64, i64) = sqlx::query_as(SELECT_ALERT_HEAD)
                    .fetch_one(pool)
                    .await
                    .map_err(failed("read alert head"))?;
                Ok((
                    sequence_from_database(head, "alert head")?,
                    AlertCursors {
                        feed: sequence_from_database(feed, "alert feed cursor")?,
                        watches: sequence_from_database(watches, "alert watch cursor")?,
                    },
                ))
            }

            /// Stores the alerts not stored already and moves the cursors forward to
            /// `cursors`; returns the stored alerts' sequences (by position in `alerts`,
            /// `None` for a pair stored before) and the head after.
            pub(crate) async fn record_alerts(
                pool: &Pool<Database>,
                alerts: &[NewAlert],
                cursors: AlertCursors,
            ) -> Result<(Vec<Option<u64>>, u64), StorageError> {
                let mut transaction = pool
                    .begin_with($begin_write)
                    .await
                    .map_err(failed("begin record alerts transaction"))?;
                // First: orders this writer with every other, so that alerts become visible
                // in sequence order and the check below holds until the commit.
                let head: i64 = sqlx::query_scalar(LOCK_ALERT_HEAD)
                    .fetch_one(&mut *transaction)
                    .await
                    .map_err(failed("lock alert head"))?;
                let mut stored = std::collections::HashSet::new();
                for chunk in alerts.chunks(ALERTS_PER_STATEMENT) {
                    let mut query = sqlx::query_as(AssertSqlSafe(dialect(
                        BACKEND,
                        stored_pairs_sql(chunk.len()),
                    )));
                    for alert in chunk {
                        query = query
                            .bind(sequence_to_database(alert.watch))
                            .bind(alert.indicator_id.as_str());
                    }
                    let found: Vec<(i64, String)> = query
                        .fetch_all(&mut *transaction)
                        .await
                        .map_err(failed("read stored alerts"))?;
                    stored.extend(found);
                }
                let mut next = head;
                let mut sequences = Vec::with_capacity(alerts.len());
                let mut fresh = Vec::new();
                for alert in alerts {
                    let key = (
                        sequence_to_database(alert.watch),
                        alert.indicator_id.clone(),
                    );
                    if stored.contains(&key) {
                        sequences.push(None);
                        continue;
                    }
                    stored.insert(key);
                    next += 1;
                    sequences.push(Some(sequence_from_database(next, "alert sequence")?));
                    fresh.push((next, alert));
                }
                for chunk in fresh.chunks(ALERTS_PER_STATEMENT) {
                    let mut query = sqlx::query(AssertSqlSafe(dialect(
                        BACKEND,
                        insert_alerts_sql(chunk.len(), 1),
                    )));
                    for (sequence, alert) in chunk {
                        query = query
                            .bind(*sequence)
                            .bind(alert.agency.as_str())
                            .bind(sequence_to_database(alert.watch))
                            .bind(alert.indicator_id.as_str())
                            .bind(alert.at_micros)
                            .bind(alert.payload.as_slice());
                    }
                    query
                        .execute(&mut *transaction)
                        .await
                        .map_err(failed("record alerts"))?;
                }
                sqlx::query(MOVE_ALERT_HEAD)
                    .bind(next)
                    .bind(sequence_to_database(cursors.feed))
                    .bind(sequence_to_database(cursors.watches))
                    .execute(&mut *transaction)
                    .await
                    .map_err(failed("move alert head"))?;
                transaction
                    .commit()
                    .await
                    .map_err(failed("commit record alerts transaction"))?;
                Ok((sequences, sequence_from_database(next, "alert head")?))
            }

            pub(crate) async fn alerts_after(
                pool: &Pool<Database>,
                agency: &str,
                after: u64,
                limit: u32,
            ) -> Result<Vec<AlertRow>, StorageError> {
                let rows: Vec<AlertColumns> = sqlx::query_as(SELECT_ALERTS_AFTER)
                    .bind(agency)
                    .bind(sequence_to_database(after))
                    .bind(i64::from(limit))
                    .fetch_all(pool)
                    .await
                    .map_err(failed("read alerts"))?;
                rows.into_iter().map(alert_row).collect()
            }
        }
    };
}

// SQLite: `BEGIN IMMEDIATE` for the reason given in `crate::feed`.
screening_operations!(
    sqlite_screening,
    sqlx::Sqlite,
    Backend::Sqlite,
    begin_write = "BEGIN IMMEDIATE"
);
screening_operations!(
    postgres_screening,
    sqlx::Postgres,
    Backend::Postgres,
    begin_write = "BEGIN"
);

use crate::backend::raise_known_head;
use crate::model::StoredIndicator;
use crate::store::{Pools, Store};

/// Watches read per call of [`Store::watches_after`] at most.
pub const MAX_WATCHES_PER_READ: u32 = 10_000;

impl Store {
    /// Stores screenings, and a watch for each with [`ScreeningRow::watch`] (a declaration
    /// watch whose `reference_id` is the screening's id), in one transaction: all or none.
    pub async fn record_screenings(&self, rows: &[ScreeningRow]) -> Result<(), StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_screening::record_screenings(&pools.write, rows).await,
            Pools::Postgres(pools) => {
                postgres_screening::record_screenings(&pools.pool, rows).await
            }
        }
    }

    /// Stores `rows` as [`Store::record_screenings`] does together with `decisions`, the release
    /// decisions those screenings made, in one transaction: `true` once committed; `false`, with
    /// nothing stored, where this backend or moment cannot (PostgreSQL, or the audit log's edge
    /// not held on SQLite: see `screening::direct`), and the caller stores the decisions through
    /// the decision log and then the screenings.
    pub async fn record_screenings_with_decisions(
        &self,
        rows: &[ScreeningRow],
        decisions: &[DecisionRow],
    ) -> Result<bool, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => {
                direct::record(&pools.write, &self.inner.audit, rows, decisions).await
            }
            Pools::Postgres(_) => Ok(false),
        }
    }

    /// One stored screening (its `watch` is not read back).
    pub async fn screening(&self, id: &str) -> Result<Option<ScreeningRow>, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_screening::screening(&pools.read, id).await,
            Pools::Postgres(pools) => postgres_screening::screening(&pools.pool, id).await,
        }
    }

    /// Stores a watch and returns its number. A `reference_id` stored already fails.
    pub async fn add_watch(&self, watch: &NewWatch) -> Result<u64, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_screening::add_watch(&pools.write, watch).await,
            Pools::Postgres(pools) => postgres_screening::add_watch(&pools.pool, watch).await,
        }
    }

    /// Deletes `agency`'s watchlist entry `reference_id`; whether there was one.
    pub async fn remove_watch_entry(
        &self,
        agency: &str,
        reference_id: &str,
    ) -> Result<bool, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => {
                sqlite_screening::remove_entry(&pools.write, agency, reference_id).await
            }
            Pools::Postgres(pools) => {
                postgres_screening::remove_entry(&pools.pool, agency, reference_id).await
            }
        }
    }

    /// `agency`'s watches of `kind`, in number order.
    pub async fn watches_of(
        &self,
        agency: &str,
        kind: WatchKind,
    ) -> Result<Vec<WatchRow>, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_screening::watches_of(&pools.read, agency, kind).await,
            Pools::Postgres(pools) => {
                postgres_screening::watches_of(&pools.pool, agency, kind).await
            }
        }
    }

    /// The watches numbered after `after` that have not ended by `now_micros`, in number
    /// order, at most `limit` (and [`MAX_WATCHES_PER_READ`]).
    pub async fn watches_after(
        &self,
        after: u64,
        now_micros: i64,
        limit: u32,
    ) -> Result<Vec<WatchRow>, StorageError> {
        let limit = limit.min(MAX_WATCHES_PER_READ);
        match &self.inner.pools {
            Pools::Sqlite(pools) => {
                sqlite_screening::watches_after(&pools.read, after, now_micros, limit).await
            }
            Pools::Postgres(pools) => {
                postgres_screening::watches_after(&pools.pool, after, now_micros, limit).await
            }
        }
    }

    /// Which of `numbers` are stored watches.
    pub async fn existing_watches(&self, numbers: &[u64]) -> Result<Vec<u64>, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_screening::existing_watches(&pools.read, numbers).await,
            Pools::Postgres(pools) => {
                postgres_screening::existing_watches(&pools.pool, numbers).await
            }
        }
    }

    /// The watches numbered `numbers` that are stored, in no particular order.
    pub async fn watches_numbered(&self, numbers: &[u64]) -> Result<Vec<WatchRow>, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_screening::watches_numbered(&pools.read, numbers).await,
            Pools::Postgres(pools) => {
                postgres_screening::watches_numbered(&pools.pool, numbers).await
            }
        }
    }

    /// How far alerts have been raised (see [`AlertCursors`]).
    pub async fn alert_cursors(&self) -> Result<AlertCursors, StorageError> {
        let (head, cursors) = match &self.inner.pools {
            Pools::Sqlite(pools) => sqlite_screening::alert_head(&pools.read).await?,
            Pools::Postgres(pools) => postgres_screening::alert_head(&pools.pool).await?,
        };
        raise_known_head(&self.inner.alerts, head);
        Ok(cursors)
    }

    /// Stores the alerts whose `(watch, indicator_id)` is not stored yet, numbered in order
    /// after the alert head, and moves the cursors forward to `cursors` (never backwards), in
    /// one transaction. Returns the sequence of each alert stored, `None` for
    /// one stored before (by this or another process). Wakes alert streams after the commit.
    pub async fn record_alerts(
        &self,
        alerts: &[NewAlert],
        cursors: AlertCursors,
    ) -> Result<Vec<Option<u64>>, StorageError> {
        let (sequences, head) = match &self.inner.pools {
            Pools::Sqlite(pools) => {
                sqlite_screening::record_alerts(&pools.write, alerts, cursors).await?
            }
            Pools::Postgres(pools) => {
                postgres_screening::record_alerts(&pools.pool, alerts, cursors).await?
            }
        };
        raise_known_head(&self.inner.alerts, head);
        Ok(sequences)
    }

    /// `agency`'s alerts after `after`, in order, at most `limit`.
    pub async fn alerts_after(
        &self,
        agency: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<AlertRow>, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => {
                sqlite_screening::alerts_after(&pools.read, agency, after, limit).await
            }
            Pools::Postgres(pools) => {
                postgres_screening::alerts_after(&pools.pool, agency, after, limit).await
            }
        }
    }

    /// A watch of the highest alert sequence this process knows to be committed.
    pub fn watch_alerts(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.alerts.subscribe()
    }

    /// The indicators published by the events at `sequences` (those that are such events), in
    /// no particular order.
    pub async fn indicators_at(
        &self,
        sequences: &[u64],
    ) -> Result<Vec<StoredIndicator>, StorageError> {
        match &self.inner.pools {
            Pools::Sqlite(pools) => {
                crate::feed::sqlite_feed::indicators_at(&pools.read, sequences).await
            }
            Pools::Postgres(pools) => {
                crate::feed::postgres_feed::indicators_at(&pools.pool, sequences).await
            }
        }
    }
}
