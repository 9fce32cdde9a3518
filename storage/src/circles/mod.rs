//! The circles' operations, written once and expanded for SQLite and PostgreSQL by
//! `circle_operations!`, with `$N` placeholders as in [`crate::feed`]: the openmls
//! key-value store, circles, the hub's logs, KeyPackages and departures, and the one write that
//! changes them together with the feed ([`crate::Store::circle_write`]). Only the statement that
//! opens a write transaction and the checkpoint differ.

mod prepare;
mod sql;
#[cfg(test)]
mod tests;

use crate::error::StorageError;
use crate::model::{
    CircleLogEntry, CircleRow, CircleWrite, CircleWriteOutcome, KeyPackageRow, PendingWelcome,
};
use crate::placeholders::ROWS_PER_STATEMENT;
use crate::values::sequence_from_database;
use prepare::*;
use sql::*;

/// Expands the circle operations for one sqlx database into module `$module`; `$feed` is the
/// feed operations' module of the same database, which stores a write's indicators. Writes take
/// the pool they are given (SQLite's single writer), reads theirs (SQLite's readers).
macro_rules! circle_operations {
    (
        $module:ident,
        $database:ty,
        $backend:expr,
        begin_write = $begin_write:literal,
        feed = $feed:ident,
        audit = $audit:ident $(,)?
    ) => {
        pub(crate) mod $module {
            use sqlx::{AssertSqlSafe, Pool};

            use super::*;
            use crate::backend::Backend;
            use crate::error::roll_back;
            use crate::feed::$feed as feed;
            use crate::placeholders::dialect;

            type Database = $database;
            type Connection = <Database as sqlx::Database>::Connection;
            const BACKEND: Backend = $backend;

            fn failed(action: &str) -> impl FnOnce(sqlx::Error) -> StorageError + '_ {
                crate::error::failed(BACKEND, action)
            }

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
                audit: &crate::audit::KeptEdge,
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
                // Audit entries are numbered in the same row (`audit_size`).
                let locked_head = if prepared.indicators.is_some() || !write.audit.is_empty() {
                    Some(feed::lock_head(&mut transaction).await?)
                } else {
                    None
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
                let mut edge = audit.begin();
                if let (Some((circle, indicators)), Some(locked_head)) =
                    (prepared.indicators, locked_head)
                {
                    let (stored, head) = feed::store_circle_indicators(
                        &mut transaction,
                        &mut edge,
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
                crate::audit::$audit::append(&mut transaction, &mut edge, &write.audit).await?;
                // On an error above, the transaction is dropped, which rolls it back.
                transaction
                    .commit()
                    .await
                    .map_err(failed("commit circle write transaction"))?;
                edge.committed();
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

// SQLite: `BEGIN IMMEDIATE` for the reason given in `crate::feed`.
circle_operations!(
    sqlite_circles,
    sqlx::Sqlite,
    Backend::Sqlite,
    begin_write = "BEGIN IMMEDIATE",
    feed = sqlite_feed,
    audit = sqlite_audit,
);
circle_operations!(
    postgres_circles,
    sqlx::Postgres,
    Backend::Postgres,
    begin_write = "BEGIN",
    feed = postgres_feed,
    audit = postgres_audit,
);

/// Checkpoints SQLite's WAL (see [`SQLITE_CHECKPOINT`]) through `pool`, the writer, so that it
/// waits for the writes queued before it.
pub(crate) async fn sqlite_checkpoint(pool: &sqlx::SqlitePool) -> Result<(), StorageError> {
    let (busy, _, _): (i64, i64, i64) = sqlx::query_as(SQLITE_CHECKPOINT)
        .fetch_one(pool)
        .await
        .map_err(|error| {
            StorageError::from_sqlx(crate::backend::Backend::Sqlite, "checkpoint wal", error)
        })?;
    if busy != 0 {
        return Err(StorageError::Unavailable(
            "checkpoint wal: readers of older pages kept it from completing".to_owned(),
        ));
    }
    Ok(())
}
