//! The circles' operations, written once and expanded for SQLite and PostgreSQL by
//! `circle_operations!`, with `$N` placeholders as in [`crate::operations`]: the openmls
//! key-value store, circles, the hub's logs, KeyPackages and departures, and the one write that
//! changes them together with the feed ([`crate::Store::circle_write`]). Only the statement that
//! opens a write transaction and the checkpoint differ.

use std::collections::HashSet;
use std::hash::Hash;

use crate::error::StorageError;
use crate::model::{
    CircleLogEntry, CircleRow, CircleWrite, CircleWriteOutcome, KeyPackageRow, NewIndicator,
    PendingWelcome, ReceiveOutcome,
};
use crate::operations::{push_rows, sequence_from_database};

/// Rows per multi-row statement: at most 6 binds x 500 rows stays far below the bind limits of
/// both backends (SQLite 32766, PostgreSQL 65535).
const ROWS_PER_STATEMENT: usize = 500;

const KEY_PACKAGE_COLUMNS: usize = 6;

const UPSERT_CIRCLE: &str = "INSERT INTO circles \
     (name, group_id, hub, epoch, position, status, created_micros) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (name) DO UPDATE SET group_id = excluded.group_id, hub = excluded.hub, \
     epoch = excluded.epoch, position = excluded.position, status = excluded.status, \
     created_micros = excluded.created_micros";

/// Inserts nothing, and so affects no row, if the position is taken; on PostgreSQL it first
/// waits for a transaction that inserted the same position to end.
const INSERT_LOG_ENTRY: &str = "INSERT INTO circle_log \
     (circle, position, epoch, sender, kind, message, at_micros) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (circle, position) DO NOTHING";

const ISSUE_KEY_PACKAGE: &str = "UPDATE circle_key_packages \
     SET issued_to = $2, issued_micros = $3 WHERE hash_ref = $1";

const UPSERT_ADMISSION: &str = "INSERT INTO circle_admissions (circle, member, position) \
     VALUES ($1, $2, $3) ON CONFLICT (circle, member) DO UPDATE SET position = excluded.position";

const SELECT_ADMISSION: &str =
    "SELECT position FROM circle_admissions WHERE circle = $1 AND member = $2";

const DELETE_KEY_PACKAGE: &str = "DELETE FROM circle_key_packages WHERE hash_ref = $1";

const SELECT_MLS_VALUES: &str = "SELECT key, value FROM mls_kv ORDER BY key";

const SELECT_CIRCLES: &str = "SELECT name, group_id, hub, epoch, position, status, \
     created_micros FROM circles ORDER BY name";

const SELECT_CIRCLE: &str = "SELECT name, group_id, hub, epoch, position, status, \
     created_micros FROM circles WHERE name = $1";

const SELECT_CIRCLE_LOG: &str = "SELECT circle, position, epoch, sender, kind, message, \
     at_micros FROM circle_log WHERE circle = $1 AND position >= $2 ORDER BY position LIMIT $3";

const SELECT_KEY_PACKAGES: &str = "SELECT hash_ref, key_package, last_resort, issued_to, \
     issued_micros, created_micros FROM circle_key_packages ORDER BY created_micros, hash_ref";

const SELECT_DEPARTURE: &str =
    "SELECT last_position FROM circle_departures WHERE circle = $1 AND member = $2";

const UPSERT_WELCOME: &str = "INSERT INTO circle_welcomes \
     (circle, member, position, welcome, created_micros) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (circle, member) DO UPDATE SET position = excluded.position, \
     welcome = excluded.welcome, created_micros = excluded.created_micros";

const DELETE_WELCOME: &str = "DELETE FROM circle_welcomes WHERE circle = $1 AND member = $2";

const DELETE_DELIVERED_WELCOME: &str =
    "DELETE FROM circle_welcomes WHERE circle = $1 AND member = $2 AND position = $3";

const UPSERT_OUTBOX: &str = "INSERT INTO circle_outbox (circle, digest, indicator, created_micros) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (circle, digest) DO UPDATE SET \
     indicator = excluded.indicator, created_micros = excluded.created_micros";

const DELETE_OUTBOX: &str = "DELETE FROM circle_outbox WHERE circle = $1 AND digest = $2";

const SELECT_OUTBOX: &str = "SELECT indicator FROM circle_outbox WHERE circle = $1 AND digest = $2";

const SELECT_WELCOMES: &str = "SELECT circle, member, position, welcome, created_micros \
     FROM circle_welcomes ORDER BY circle, member";

/// SQLite: copies every frame of the WAL into the database file and truncates the WAL to zero
/// bytes. Waits (up to the busy timeout) for readers of older frames; its first column says
/// whether it had to give up.
pub(crate) const SQLITE_CHECKPOINT: &str = "PRAGMA wal_checkpoint(TRUNCATE)";

fn upsert_values_sql(rows: usize) -> String {
    let mut sql = String::from("INSERT INTO mls_kv (key, value) VALUES ");
    push_rows(&mut sql, 1, rows, 2, None);
    sql.push_str(" ON CONFLICT (key) DO UPDATE SET value = excluded.value");
    sql
}

fn delete_values_sql(count: usize) -> String {
    let mut sql = String::from("DELETE FROM mls_kv WHERE key IN ");
    push_rows(&mut sql, 1, 1, count, None);
    sql
}

fn insert_key_packages_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO circle_key_packages (hash_ref, key_package, last_resort, issued_to, \
         issued_micros, created_micros) VALUES ",
    );
    push_rows(&mut sql, 1, rows, KEY_PACKAGE_COLUMNS, None);
    sql
}

fn upsert_departures_sql(rows: usize) -> String {
    let mut sql =
        String::from("INSERT INTO circle_departures (circle, member, last_position) VALUES ");
    push_rows(&mut sql, 1, rows, 3, None);
    sql.push_str(
        " ON CONFLICT (circle, member) DO UPDATE SET last_position = excluded.last_position",
    );
    sql
}

/// A row value against a `VALUES` list, which both backends accept (SQLite has no row values
/// in a plain `IN` list).
fn delete_departures_sql(rows: usize) -> String {
    let mut sql = String::from("DELETE FROM circle_departures WHERE (circle, member) IN (VALUES ");
    push_rows(&mut sql, 1, rows, 2, None);
    sql.push(')');
    sql
}

/// The last change of each key, as if the changes were applied in order: the keys to set with
/// their values, and the keys to delete, each key in one of the two lists once (a multi-row
/// upsert may not touch a row twice), in the order of their last changes.
fn last_changes<K: Copy + Eq + Hash, V>(
    changes: impl DoubleEndedIterator<Item = (K, Option<V>)>,
) -> (Vec<(K, V)>, Vec<K>) {
    let mut seen = HashSet::new();
    let mut sets = Vec::new();
    let mut deletes = Vec::new();
    for (key, change) in changes.rev() {
        if !seen.insert(key) {
            continue;
        }
        match change {
            Some(value) => sets.push((key, value)),
            None => deletes.push(key),
        }
    }
    sets.reverse();
    deletes.reverse();
    (sets, deletes)
}

/// The database has no unsigned integers; an epoch or a position beyond `i64::MAX` cannot be
/// stored (`what` names it in the error).
fn to_database(value: u64, what: &str) -> Result<i64, StorageError> {
    i64::try_from(value).map_err(|_| {
        StorageError::Database(format!(
            "circle write: {what} {value} is beyond the database's range"
        ))
    })
}

/// A [`CircleWrite`] checked, converted and with its changes reduced to one per key, ready to
/// bind; made before the write transaction starts so that the transaction does nothing but
/// write.
struct PreparedWrite<'a> {
    value_sets: Vec<(&'a [u8], &'a [u8])>,
    value_deletes: Vec<&'a [u8]>,
    /// The row, its epoch and its position.
    circle: Option<(&'a CircleRow, i64, i64)>,
    /// The entry, its position and its epoch.
    log: Vec<(&'a CircleLogEntry, i64, i64)>,
    /// The circle, and its indicators (not empty).
    indicators: Option<(&'a str, &'a [NewIndicator])>,
    key_packages: &'a [KeyPackageRow],
    issue_key_package: Option<(&'a [u8], &'a str, i64)>,
    departure_sets: Vec<((&'a str, &'a str), i64)>,
    departure_deletes: Vec<(&'a str, &'a str)>,
    /// The Welcome to keep and its position.
    welcome: Option<(&'a PendingWelcome, i64)>,
    /// When the write was prepared (outbox rows), Unix microseconds.
    now_micros: i64,
    admissions: Vec<(&'a str, &'a str, i64)>,
}

fn prepare(write: &CircleWrite) -> Result<PreparedWrite<'_>, StorageError> {
    let (value_sets, value_deletes) = last_changes(
        write
            .kv
            .iter()
            .map(|(key, value)| (key.as_slice(), value.as_deref())),
    );
    let circle = write
        .circle
        .as_ref()
        .map(|row| {
            Ok::<_, StorageError>((
                row,
                to_database(row.epoch, "circle epoch")?,
                to_database(row.position, "circle position")?,
            ))
        })
        .transpose()?;
    let log = write
        .log
        .iter()
        .map(|entry| {
            Ok::<_, StorageError>((
                entry,
                to_database(entry.position, "log position")?,
                to_database(entry.epoch, "log epoch")?,
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let indicators = match (
        write.indicators.is_empty(),
        write.indicators_circle.as_deref(),
    ) {
        (true, _) => None,
        (false, Some(circle)) => Some((circle, write.indicators.as_slice())),
        (false, None) => {
            return Err(StorageError::Database(
                "circle write: indicators without indicators_circle".to_owned(),
            ));
        }
    };
    let departures = write
        .departures
        .iter()
        .map(|(circle, member, last_position)| {
            let last_position = last_position
                .map(|position| to_database(position, "departure last position"))
                .transpose()?;
            Ok(((circle.as_str(), member.as_str()), last_position))
        })
        .collect::<Result<Vec<_>, StorageError>>()?;
    let (departure_sets, departure_deletes) = last_changes(departures.into_iter());
    let welcome = write
        .welcome
        .as_ref()
        .map(|welcome| {
            Ok::<_, StorageError>((welcome, to_database(welcome.position, "welcome position")?))
        })
        .transpose()?;
    let admissions = write
        .admissions
        .iter()
        .map(|(circle, member, position)| {
            Ok::<_, StorageError>((
                circle.as_str(),
                member.as_str(),
                to_database(*position, "admission position")?,
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PreparedWrite {
        admissions,
        welcome,
        now_micros: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or_default(),
        value_sets,
        value_deletes,
        circle,
        log,
        indicators,
        key_packages: &write.key_packages,
        issue_key_package: write
            .issue_key_package
            .as_ref()
            .map(|(hash_ref, issued_to, at)| (hash_ref.as_slice(), issued_to.as_str(), *at)),
        departure_sets,
        departure_deletes,
    })
}

fn circle_outcome(outcome: ReceiveOutcome) -> CircleWriteOutcome {
    CircleWriteOutcome {
        stored: outcome.stored,
        duplicates: outcome.duplicates,
        conflicts: outcome.conflicts,
    }
}

/// The columns of a circle row, in the order of [`SELECT_CIRCLES`].
type CircleColumns = (String, Vec<u8>, String, i64, i64, String, i64);

fn decode_circle(columns: CircleColumns) -> Result<CircleRow, StorageError> {
    let (name, group_id, hub, epoch, position, status, created_micros) = columns;
    Ok(CircleRow {
        name,
        group_id,
        hub,
        epoch: sequence_from_database(epoch, "circle epoch")?,
        position: sequence_from_database(position, "circle position")?,
        status,
        created_micros,
    })
}

/// The columns of a log entry, in the order of [`SELECT_CIRCLE_LOG`].
type LogColumns = (String, i64, i64, String, String, Vec<u8>, i64);

fn decode_log_entry(columns: LogColumns) -> Result<CircleLogEntry, StorageError> {
    let (circle, position, epoch, sender, kind, message, at_micros) = columns;
    Ok(CircleLogEntry {
        circle,
        position: sequence_from_database(position, "log position")?,
        epoch: sequence_from_database(epoch, "log epoch")?,
        sender,
        kind,
        message,
        at_micros,
    })
}

/// The columns of a KeyPackage row, in the order of [`SELECT_KEY_PACKAGES`].
type KeyPackageColumns = (Vec<u8>, Vec<u8>, bool, Option<String>, Option<i64>, i64);

fn decode_key_package(columns: KeyPackageColumns) -> KeyPackageRow {
    let (hash_ref, key_package, last_resort, issued_to, issued_micros, created_micros) = columns;
    KeyPackageRow {
        hash_ref,
        key_package,
        last_resort,
        issued_to,
        issued_micros,
        created_micros,
    }
}

/// Expands the circle operations for one sqlx database into module `$module`; `$feed` is the
/// feed operations' module of the same database, which stores a write's indicators. Writes take
/// the pool they are given (SQLite's single writer), reads theirs (SQLite's readers).
macro_rules! circle_operations {
    (
        $module:ident,
        $database:ty,
        $backend:expr,
        begin_write = $begin_write:literal,
        feed = $feed:ident $(,)?
    ) => {
        pub(crate) mod $module {
            use sqlx::{AssertSqlSafe, Pool};

            use super::*;
            use crate::operations::$feed as feed;
            use crate::placeholders::dialect;
            use crate::store::Backend;
            use feed::{failed, roll_back};

            type Database = $database;
            type Connection = <Database as sqlx::Database>::Connection;
            const BACKEND: Backend = $backend;

            /// Returns whether the entry was appended: false if its position is taken.
            async fn append_log_entry(
                connection: &mut Connection,
                (entry, position, epoch): (&CircleLogEntry, i64, i64),
            ) -> Result<bool, StorageError> {
                let appended = sqlx::query(INSERT_LOG_ENTRY)
                    .bind(entry.circle.as_str())
                    .bind(position)
                    .bind(epoch)
                    .bind(entry.sender.as_str())
                    .bind(entry.kind.as_str())
                    .bind(entry.message.as_slice())
                    .bind(entry.at_micros)
                    .execute(&mut *connection)
                    .await
                    .map_err(failed("append circle log entry"))?
                    .rows_affected();
                Ok(appended > 0)
            }

            async fn write_values(
                connection: &mut Connection,
                sets: &[(&[u8], &[u8])],
                deletes: &[&[u8]],
            ) -> Result<(), StorageError> {
                for chunk in sets.chunks(ROWS_PER_STATEMENT) {
                    let mut query = sqlx::query(AssertSqlSafe(dialect(
                        BACKEND,
                        upsert_values_sql(chunk.len()),
                    )));
                    for (key, value) in chunk {
                        query = query.bind(*key).bind(*value);
                    }
                    query
                        .execute(&mut *connection)
                        .await
                        .map_err(failed("store mls values"))?;
                }
                for chunk in deletes.chunks(ROWS_PER_STATEMENT) {
                    let mut query = sqlx::query(AssertSqlSafe(dialect(
                        BACKEND,
                        delete_values_sql(chunk.len()),
                    )));
                    for key in chunk {
                        query = query.bind(*key);
                    }
                    query
                        .execute(&mut *connection)
                        .await
                        .map_err(failed("delete mls values"))?;
                }
                Ok(())
            }

            async fn upsert_circle(
                connection: &mut Connection,
                (row, epoch, position): (&CircleRow, i64, i64),
            ) -> Result<(), StorageError> {
                sqlx::query(UPSERT_CIRCLE)
                    .bind(row.name.as_str())
                    .bind(row.group_id.as_slice())
                    .bind(row.hub.as_str())
                    .bind(epoch)
                    .bind(position)
                    .bind(row.status.as_str())
                    .bind(row.created_micros)
                    .execute(&mut *connection)
                    .await
                    .map_err(failed("store circle"))?;
                Ok(())
            }

            async fn insert_key_packages(
                connection: &mut Connection,
                rows: &[KeyPackageRow],
            ) -> Result<(), StorageError> {
                for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                    let mut query = sqlx::query(AssertSqlSafe(dialect(
                        BACKEND,
                        insert_key_packages_sql(chunk.len()),
                    )));
                    for row in chunk {
                        query = query
                            .bind(row.hash_ref.as_slice())
                            .bind(row.key_package.as_slice())
                            .bind(row.last_resort)
                            .bind(row.issued_to.as_deref())
                            .bind(row.issued_micros)
                            .bind(row.created_micros);
                    }
                    query
                        .execute(&mut *connection)
                        .await
                        .map_err(failed("insert key packages"))?;
                }
                Ok(())
            }

            /// Fails if no KeyPackage has this `hash_ref`.
            async fn issue_key_package(
                connection: &mut Connection,
                (hash_ref, issued_to, issued_micros): (&[u8], &str, i64),
            ) -> Result<(), StorageError> {
                let updated = sqlx::query(ISSUE_KEY_PACKAGE)
                    .bind(hash_ref)
                    .bind(issued_to)
                    .bind(issued_micros)
                    .execute(&mut *connection)
                    .await
                    .map_err(failed("issue key package"))?
                    .rows_affected();
                if updated == 0 {
                    return Err(StorageError::Database(format!(
                        "circle write: no key package with hash_ref {} to issue",
                        hex(hash_ref)
                    )));
                }
                Ok(())
            }

            async fn write_departures(
                connection: &mut Connection,
                sets: &[((&str, &str), i64)],
                deletes: &[(&str, &str)],
            ) -> Result<(), StorageError> {
                for chunk in sets.chunks(ROWS_PER_STATEMENT) {
                    let mut query = sqlx::query(AssertSqlSafe(dialect(
                        BACKEND,
                        upsert_departures_sql(chunk.len()),
                    )));
                    for ((circle, member), last_position) in chunk {
                        query = query.bind(*circle).bind(*member).bind(*last_position);
                    }
                    query
                        .execute(&mut *connection)
                        .await
                        .map_err(failed("store circle departures"))?;
                }
                for chunk in deletes.chunks(ROWS_PER_STATEMENT) {
                    let mut query = sqlx::query(AssertSqlSafe(dialect(
                        BACKEND,
                        delete_departures_sql(chunk.len()),
                    )));
                    for (circle, member) in chunk {
                        query = query.bind(*circle).bind(*member);
                    }
                    query
                        .execute(&mut *connection)
                        .await
                        .map_err(failed("delete circle departures"))?;
                }
                Ok(())
            }

            /// Writes everything in one transaction. Returns what was done with the
            /// indicators and, if the feed head moved, the head after the commit.
            pub(crate) async fn write(
                pool: &Pool<Database>,
                write: &CircleWrite,
            ) -> Result<(CircleWriteOutcome, Option<u64>), StorageError> {
                let prepared = prepare(write)?;
                let mut transaction = pool
                    .begin_with($begin_write)
                    .await
                    .map_err(failed("begin circle write transaction"))?;
                // The feed head first, as every writer of the feed takes it: this orders the
                // write with the others, and always before the log entry, so that two writes
                // racing for a log position never wait for each other's locks in opposite
                // orders.
                let locked_head = match prepared.indicators {
                    Some(_) => Some(feed::lock_head(&mut transaction).await?),
                    None => None,
                };
                for log in prepared.log {
                    if !append_log_entry(&mut transaction, log).await? {
                        roll_back(transaction, "circle write at a taken log position").await;
                        return Err(StorageError::LogPositionTaken {
                            circle: log.0.circle.clone(),
                            position: log.0.position,
                        });
                    }
                }
                write_values(
                    &mut transaction,
                    &prepared.value_sets,
                    &prepared.value_deletes,
                )
                .await?;
                if let Some(circle) = prepared.circle {
                    upsert_circle(&mut transaction, circle).await?;
                }
                insert_key_packages(&mut transaction, prepared.key_packages).await?;
                if let Some(issue) = prepared.issue_key_package {
                    issue_key_package(&mut transaction, issue).await?;
                }
                write_departures(
                    &mut transaction,
                    &prepared.departure_sets,
                    &prepared.departure_deletes,
                )
                .await?;
                for (circle, member, position) in &prepared.admissions {
                    sqlx::query(UPSERT_ADMISSION)
                        .bind(*circle)
                        .bind(*member)
                        .bind(*position)
                        .execute(&mut *transaction)
                        .await
                        .map_err(failed("store an admission"))?;
                }
                for hash_ref in &write.key_packages_dropped {
                    sqlx::query(DELETE_KEY_PACKAGE)
                        .bind(hash_ref.as_slice())
                        .execute(&mut *transaction)
                        .await
                        .map_err(failed("drop a key package"))?;
                }
                for (circle, member) in &write.welcomes_dropped {
                    sqlx::query(DELETE_WELCOME)
                        .bind(circle.as_str())
                        .bind(member.as_str())
                        .execute(&mut *transaction)
                        .await
                        .map_err(failed("drop pending welcome"))?;
                }
                for (circle, digest, indicator) in &write.outbox {
                    match indicator {
                        Some(indicator) => sqlx::query(UPSERT_OUTBOX)
                            .bind(circle.as_str())
                            .bind(digest.as_slice())
                            .bind(indicator.as_slice())
                            .bind(prepared.now_micros)
                            .execute(&mut *transaction)
                            .await
                            .map_err(failed("keep an outbox entry"))?,
                        None => sqlx::query(DELETE_OUTBOX)
                            .bind(circle.as_str())
                            .bind(digest.as_slice())
                            .execute(&mut *transaction)
                            .await
                            .map_err(failed("forget an outbox entry"))?,
                    };
                }
                if let Some((welcome, position)) = prepared.welcome {
                    sqlx::query(UPSERT_WELCOME)
                        .bind(welcome.circle.as_str())
                        .bind(welcome.member.as_str())
                        .bind(position)
                        .bind(welcome.welcome.as_slice())
                        .bind(welcome.created_micros)
                        .execute(&mut *transaction)
                        .await
                        .map_err(failed("keep pending welcome"))?;
                }
                let mut outcome = CircleWriteOutcome::default();
                let mut moved_head = None;
                if let (Some((circle, indicators)), Some(locked_head)) =
                    (prepared.indicators, locked_head)
                {
                    let (stored, head) = feed::store_circle_indicators(
                        &mut transaction,
                        indicators,
                        circle,
                        locked_head,
                    )
                    .await?;
                    outcome = circle_outcome(stored);
                    if head > locked_head {
                        moved_head = Some(sequence_from_database(head, "feed head")?);
                    }
                }
                // On an error above, the transaction is dropped, which rolls it back.
                transaction
                    .commit()
                    .await
                    .map_err(failed("commit circle write transaction"))?;
                Ok((outcome, moved_head))
            }

            pub(crate) async fn mls_values(
                pool: &Pool<Database>,
            ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageError> {
                sqlx::query_as(SELECT_MLS_VALUES)
                    .fetch_all(pool)
                    .await
                    .map_err(failed("read mls values"))
            }

            pub(crate) async fn circles(
                pool: &Pool<Database>,
            ) -> Result<Vec<CircleRow>, StorageError> {
                let rows: Vec<CircleColumns> = sqlx::query_as(SELECT_CIRCLES)
                    .fetch_all(pool)
                    .await
                    .map_err(failed("read circles"))?;
                rows.into_iter().map(decode_circle).collect()
            }

            pub(crate) async fn circle(
                pool: &Pool<Database>,
                name: &str,
            ) -> Result<Option<CircleRow>, StorageError> {
                let row: Option<CircleColumns> = sqlx::query_as(SELECT_CIRCLE)
                    .bind(name)
                    .fetch_optional(pool)
                    .await
                    .map_err(failed("read circle"))?;
                row.map(decode_circle).transpose()
            }

            pub(crate) async fn log(
                pool: &Pool<Database>,
                circle: &str,
                from_position: u64,
                limit: u32,
            ) -> Result<Vec<CircleLogEntry>, StorageError> {
                if limit == 0 {
                    return Ok(Vec::new());
                }
                // Beyond the database's range is beyond every entry.
                let Ok(from_position) = i64::try_from(from_position) else {
                    return Ok(Vec::new());
                };
                let rows: Vec<LogColumns> = sqlx::query_as(SELECT_CIRCLE_LOG)
                    .bind(circle)
                    .bind(from_position)
                    .bind(i64::from(limit))
                    .fetch_all(pool)
                    .await
                    .map_err(failed("read circle log"))?;
                rows.into_iter().map(decode_log_entry).collect()
            }

            pub(crate) async fn key_packages(
                pool: &Pool<Database>,
            ) -> Result<Vec<KeyPackageRow>, StorageError> {
                let rows: Vec<KeyPackageColumns> = sqlx::query_as(SELECT_KEY_PACKAGES)
                    .fetch_all(pool)
                    .await
                    .map_err(failed("read key packages"))?;
                Ok(rows.into_iter().map(decode_key_package).collect())
            }

            pub(crate) async fn outbox_entry(
                pool: &Pool<Database>,
                circle: &str,
                digest: &[u8],
            ) -> Result<Option<Vec<u8>>, StorageError> {
                sqlx::query_scalar(SELECT_OUTBOX)
                    .bind(circle)
                    .bind(digest)
                    .fetch_optional(pool)
                    .await
                    .map_err(failed("read an outbox entry"))
            }

            pub(crate) async fn pending_welcomes(
                pool: &Pool<Database>,
            ) -> Result<Vec<PendingWelcome>, StorageError> {
                let rows: Vec<(String, String, i64, Vec<u8>, i64)> =
                    sqlx::query_as(SELECT_WELCOMES)
                        .fetch_all(pool)
                        .await
                        .map_err(failed("read pending welcomes"))?;
                rows.into_iter()
                    .map(|(circle, member, position, welcome, created_micros)| {
                        Ok(PendingWelcome {
                            circle,
                            member,
                            position: sequence_from_database(position, "welcome position")?,
                            welcome,
                            created_micros,
                        })
                    })
                    .collect()
            }

            /// Deletes the pending Welcome of `member` for the add at `position`; `false`
            /// if there was none (delivered before, or replaced by a later add).
            pub(crate) async fn welcome_delivered(
                pool: &Pool<Database>,
                circle: &str,
                member: &str,
                position: u64,
            ) -> Result<bool, StorageError> {
                let Ok(position) = i64::try_from(position) else {
                    return Ok(false);
                };
                let deleted = sqlx::query(DELETE_DELIVERED_WELCOME)
                    .bind(circle)
                    .bind(member)
                    .bind(position)
                    .execute(pool)
                    .await
                    .map_err(failed("delete delivered welcome"))?
                    .rows_affected();
                Ok(deleted > 0)
            }

            pub(crate) async fn admission(
                pool: &Pool<Database>,
                circle: &str,
                member: &str,
            ) -> Result<Option<u64>, StorageError> {
                let position: Option<i64> = sqlx::query_scalar(SELECT_ADMISSION)
                    .bind(circle)
                    .bind(member)
                    .fetch_optional(pool)
                    .await
                    .map_err(failed("read circle admission"))?;
                position
                    .map(|position| sequence_from_database(position, "admission position"))
                    .transpose()
            }

            pub(crate) async fn departure(
                pool: &Pool<Database>,
                circle: &str,
                member: &str,
            ) -> Result<Option<u64>, StorageError> {
                let last_position: Option<i64> = sqlx::query_scalar(SELECT_DEPARTURE)
                    .bind(circle)
                    .bind(member)
                    .fetch_optional(pool)
                    .await
                    .map_err(failed("read circle departure"))?;
                last_position
                    .map(|position| sequence_from_database(position, "departure last position"))
                    .transpose()
            }
        }
    };
}

/// Lower-case hex, to name a binary key in an error.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

// SQLite: `BEGIN IMMEDIATE` for the reason given in `crate::operations`.
circle_operations!(
    sqlite_circles,
    sqlx::Sqlite,
    Backend::Sqlite,
    begin_write = "BEGIN IMMEDIATE",
    feed = sqlite_feed,
);
circle_operations!(
    postgres_circles,
    sqlx::Postgres,
    Backend::Postgres,
    begin_write = "BEGIN",
    feed = postgres_feed,
);

/// Checkpoints SQLite's WAL (see [`SQLITE_CHECKPOINT`]) through `pool`, the writer, so that it
/// waits for the writes queued before it.
pub(crate) async fn sqlite_checkpoint(pool: &sqlx::SqlitePool) -> Result<(), StorageError> {
    let (busy, _, _): (i64, i64, i64) = sqlx::query_as(SQLITE_CHECKPOINT)
        .fetch_one(pool)
        .await
        .map_err(|error| {
            StorageError::from_sqlx(crate::store::Backend::Sqlite, "checkpoint wal", error)
        })?;
    if busy != 0 {
        return Err(StorageError::Unavailable(
            "checkpoint wal: readers of older pages kept it from completing".to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_change_of_each_key_wins() {
        let changes = [
            ("a", Some(1)),
            ("b", Some(2)),
            ("a", None),
            ("c", None),
            ("c", Some(3)),
            ("d", None),
        ];
        let (sets, deletes) = last_changes(changes.into_iter());
        assert_eq!(sets, [("b", 2), ("c", 3)]);
        assert_eq!(deletes, ["a", "d"]);
    }

    #[test]
    fn statements_number_every_column() {
        assert_eq!(
            upsert_values_sql(2),
            "INSERT INTO mls_kv (key, value) VALUES ($1, $2), ($3, $4) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        );
        assert_eq!(
            delete_values_sql(3),
            "DELETE FROM mls_kv WHERE key IN ($1, $2, $3)"
        );
        assert!(
            insert_key_packages_sql(2)
                .ends_with("VALUES ($1, $2, $3, $4, $5, $6), ($7, $8, $9, $10, $11, $12)")
        );
        assert!(upsert_departures_sql(2).contains("VALUES ($1, $2, $3), ($4, $5, $6) ON CONFLICT"));
        assert_eq!(
            delete_departures_sql(2),
            "DELETE FROM circle_departures WHERE (circle, member) IN (VALUES ($1, $2), ($3, $4))"
        );
    }

    #[test]
    fn a_write_is_checked_before_its_transaction() {
        let orphans = CircleWrite {
            indicators: vec![NewIndicator {
                id: "a".to_owned(),
                originator: "A".to_owned(),
                kind: "ip".to_owned(),
                created_micros: 1,
                payload: Vec::new(),
                supersedes: None,
                via: None,
            }],
            ..CircleWrite::default()
        };
        assert!(matches!(
            prepare(&orphans),
            Err(StorageError::Database(message)) if message.contains("indicators_circle")
        ));
        let huge = CircleWrite {
            departures: vec![("c".to_owned(), "m".to_owned(), Some(u64::MAX))],
            ..CircleWrite::default()
        };
        assert!(prepare(&huge).is_err());
        assert!(prepare(&CircleWrite::default()).is_ok());
    }
}
