//! The feed: the member's event log of published and retracted indicators, with the peer
//! cursors of federation. Its operations are written once and expanded for SQLite and
//! PostgreSQL by `feed_operations!`.
//!
//! Why a macro: code generic over `sqlx::Database` must restate sqlx's executor and encoding
//! bounds (`for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>`, `i64: Encode<DB>`, …)
//! on every function, since Rust does not imply them from a trait. The macro expands the same
//! text for the two concrete types instead, so each statement is type-checked against both.
//! Everything that does not execute a statement lives outside it, as ordinary code that
//! rustfmt formats: the SQL text ([`sql`]), what a write will do and the row shapes read back
//! ([`plan`]). The macro body holds only the statements' execution.
//!
//! The SQL uses `$N` placeholders: sqlx's SQLite driver binds `$N` by number as PostgreSQL does,
//! so one text serves both backends. Only the statement that opens a write transaction differs.
//! Lists of rows travel as multi-row `VALUES` lists, whose columns both backends name
//! `column1`, `column2`, ….

pub(crate) mod direct;
pub(crate) mod direct_read;
pub(crate) mod plan;
mod sql;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use crate::audit::{KeptEdge, TransactionEdge};
use crate::backend::READ_HEAD;
use crate::error::StorageError;
use crate::model::{
    EventBatch, NewIndicator, PeerCursor, ReceiveOutcome, Received, StoredIndicator,
};
use crate::placeholders::ROWS_PER_STATEMENT;
use crate::values::{sequence_from_database, sequence_to_database};
use plan::*;
use sql::*;

/// Expands the feed operations for one sqlx database into module `$module`. Every function
/// takes the pool to use, so SQLite can write through its single-connection pool and read
/// through its reader pool while PostgreSQL uses one pool for both.
/// The log entry of an indicator stored (published here, or received through `via`).
fn stored_entry(item: &NewIndicator) -> cordon_tlog::Entry {
    cordon_tlog::Entry::stored(
        &item.id,
        &item.originator,
        item.via.as_deref(),
        &item.payload,
    )
}

macro_rules! feed_operations {
    ($module:ident, $database:ty, $backend:expr, audit = $audit:ident, decisions = $decisions:ident, begin_write = $begin_write:literal) => {
        pub(crate) mod $module {
            use sqlx::{AssertSqlSafe, Pool, Row};

            use super::*;
            use crate::backend::Backend;
            use crate::error::roll_back;

            type Database = $database;
            type Connection = <Database as sqlx::Database>::Connection;
            const BACKEND: Backend = $backend;

            fn failed(action: &str) -> impl FnOnce(sqlx::Error) -> StorageError + '_ {
                crate::error::failed(BACKEND, action)
            }

            /// Inserts the `published` events of `rows` (sequence, item), in multi-row
            /// statements.
            async fn insert_published_events(
                connection: &mut Connection,
                rows: &[(i64, &NewIndicator)],
            ) -> Result<(), StorageError> {
                for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                    let mut query = sqlx::query(AssertSqlSafe(crate::placeholders::dialect(
                        BACKEND,
                        insert_published_events_sql(chunk.len()),
                    )));
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
                    let mut query =
                        sqlx::query_scalar(AssertSqlSafe(crate::placeholders::dialect(
                            BACKEND,
                            copy_published_indicators_sql(chunk.len()),
                        )));
                    for (sequence, item) in chunk {
                        query = query.bind(*sequence).bind(item.via.as_deref()).bind(circle);
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
                    let mut query = sqlx::query(AssertSqlSafe(crate::placeholders::dialect(
                        BACKEND,
                        mark_superseded_sql(chunk.len()),
                    )));
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
                    let mut query = sqlx::query_as(AssertSqlSafe(crate::placeholders::dialect(
                        BACKEND,
                        select_known_indicators_sql(chunk.len()),
                    )));
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
                    let mut query = sqlx::query(AssertSqlSafe(crate::placeholders::dialect(
                        BACKEND,
                        insert_retracted_events_sql(chunk.len()),
                    )));
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
                    let mut query = sqlx::query(AssertSqlSafe(crate::placeholders::dialect(
                        BACKEND,
                        mark_many_retracted_sql(chunk.len()),
                    )));
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

            /// Returns the batch's sequences, consecutive, after the commit. The release
            /// decisions in `decided` are stored in the same transaction, under one audit entry
            /// after the indicators' own.
            pub(crate) async fn publish(
                pool: &Pool<Database>,
                audit: &KeptEdge,
                batch: &[NewIndicator],
                decided: &crate::decisions::WithPublish,
            ) -> Result<Vec<u64>, StorageError> {
                if batch.is_empty() {
                    return Ok(Vec::new());
                }
                reject_duplicates_within(batch)?;
                let count = i64::try_from(batch.len()).unwrap_or(i64::MAX);
                let decisions = if decided.rows.is_empty() {
                    None
                } else {
                    Some(crate::decisions::Encoded::of(&decided.rows)?)
                };
                let entries_count = batch.len() + usize::from(decisions.is_some());

                let mut transaction = pool
                    .begin_with($begin_write)
                    .await
                    .map_err(failed("begin publish transaction"))?;
                // The feed head and the audit log's size in one statement: one entry per
                // indicator.
                let (head, audit_after): (i64, i64) = sqlx::query_as(ADVANCE_HEADS)
                    .bind(count)
                    .bind(crate::audit::entries_to_number(entries_count))
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
                let mut entries: Vec<cordon_tlog::Entry> = batch.iter().map(stored_entry).collect();
                if let Some(decisions) = &decisions {
                    entries.push(decisions.entry());
                }
                let mut edge = audit.begin();
                let first_entry = crate::audit::$audit::append_numbered(
                    &mut transaction,
                    &mut edge,
                    &entries,
                    audit_after,
                )
                .await?;
                if let Some(decisions) = &decisions {
                    let first = sequence_from_database(first, "feed head")?;
                    let pages = decided.pages(first);
                    let pages = crate::decisions::distinct_pages(&pages);
                    let position = first_entry.map(|position| position + batch.len() as u64);
                    crate::decisions::$decisions::write_encoded(
                        &mut transaction,
                        decisions,
                        position,
                        &pages,
                    )
                    .await?;
                }

                transaction
                    .commit()
                    .await
                    .map_err(failed("commit publish transaction"))?;
                edge.committed();
                (first..=head)
                    .map(|sequence| sequence_from_database(sequence, "feed head"))
                    .collect()
            }

            /// Returns the sequence of the `retracted` event, after the commit.
            pub(crate) async fn retract(
                pool: &Pool<Database>,
                audit: &KeptEdge,
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
                let (sequence, audit_after): (i64, i64) = sqlx::query_as(ADVANCE_HEADS)
                    .bind(1_i64)
                    .bind(crate::audit::entries_to_number(1))
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
                let entry = cordon_tlog::Entry::retraction(
                    indicator_id,
                    &originator,
                    reason,
                    at_micros,
                    signature,
                );
                let mut edge = audit.begin();
                crate::audit::$audit::append_numbered(
                    &mut transaction,
                    &mut edge,
                    &[entry],
                    audit_after,
                )
                .await?;
                transaction
                    .commit()
                    .await
                    .map_err(failed("commit retract transaction"))?;
                edge.committed();
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
                edge: &mut TransactionEdge<'_>,
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
                mark_superseded(connection, &revisions).await?;
                let entries: Vec<cordon_tlog::Entry> = plan
                    .published
                    .iter()
                    .map(|(_, item)| stored_entry(item))
                    .collect();
                crate::audit::$audit::append(connection, edge, &entries).await?;
                Ok(())
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
                edge: &mut TransactionEdge<'_>,
                indicators: &[NewIndicator],
                circle: &str,
                locked_head: i64,
            ) -> Result<(ReceiveOutcome, i64), StorageError> {
                let known =
                    known_indicators(connection, &circle_referenced_ids(indicators)).await?;
                let plan = plan_circle_indicators(indicators, known, locked_head)?;
                store_planned_published(connection, edge, &plan, Some(circle), "circle write")
                    .await?;
                advance_head_to(connection, locked_head, plan.head, "circle write").await?;
                Ok((plan.outcome, plan.head))
            }

            /// Applies `items` and moves the peer's cursor in one transaction. Returns what
            /// was done with each item and, if the head moved, the head after the commit.
            pub(crate) async fn receive(
                pool: &Pool<Database>,
                audit: &KeptEdge,
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

                let mut edge = audit.begin();
                store_planned_published(&mut transaction, &mut edge, &plan, None, "receive")
                    .await?;
                insert_retracted_events(&mut transaction, &plan.retractions).await?;
                let entries: Vec<cordon_tlog::Entry> = plan
                    .retractions
                    .iter()
                    .map(|retraction| {
                        cordon_tlog::Entry::retraction(
                            retraction.indicator_id,
                            retraction.originator,
                            retraction.reason,
                            retraction.at_micros,
                            retraction.signature,
                        )
                    })
                    .collect();
                crate::audit::$audit::append(&mut transaction, &mut edge, &entries).await?;
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
                let moved =
                    advance_head_to(&mut transaction, locked_head, plan.head, "receive").await?;
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
                edge.committed();
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
                cursor.map_or(Ok(0), |cursor| {
                    sequence_from_database(cursor, "peer cursor")
                })
            }

            pub(crate) async fn peer_cursors(
                pool: &Pool<Database>,
            ) -> Result<Vec<PeerCursor>, StorageError> {
                let rows: Vec<(String, i64, i64)> = sqlx::query_as(SELECT_PEER_CURSORS)
                    .fetch_all(pool)
                    .await
                    .map_err(failed("read peer cursors"))?;
                rows.into_iter().map(peer_cursor_of).collect()
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
                let rows = query.fetch_all(pool).await.map_err(failed("read events"))?;

                let mut head = None;
                let mut events = Vec::with_capacity(rows.len());
                for row in rows {
                    match decode_read_row(&row).map_err(failed("decode event row"))? {
                        ReadRow::Head(row_head) => head = Some(row_head),
                        ReadRow::Event(columns) => events.push(columns.into_event()?),
                    }
                }
                // In order whatever order the two parts of the union arrived in (they come
                // sorted: this only checks).
                events.sort_by_key(|event| event.sequence);
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
            ) -> Result<ReadRow, sqlx::Error> {
                let Some(sequence) = row.try_get(1)? else {
                    return Ok(ReadRow::Head(row.try_get(0)?));
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
                Ok(ReadRow::Event(columns))
            }

            pub(crate) async fn indicator(
                pool: &Pool<Database>,
                id: &str,
            ) -> Result<Option<StoredIndicator>, StorageError> {
                let row: Option<IndicatorColumns> = sqlx::query_as(SELECT_INDICATOR)
                    .bind(id)
                    .fetch_optional(pool)
                    .await
                    .map_err(failed("read indicator"))?;
                row.map(stored_indicator).transpose()
            }

            pub(crate) async fn indicators_at(
                pool: &Pool<Database>,
                sequences: &[u64],
            ) -> Result<Vec<StoredIndicator>, StorageError> {
                let mut found = Vec::with_capacity(sequences.len());
                for chunk in sequences.chunks(ROWS_PER_STATEMENT) {
                    let mut query = sqlx::query_as(AssertSqlSafe(crate::placeholders::dialect(
                        BACKEND,
                        select_indicators_at_sql(chunk.len()),
                    )));
                    for sequence in chunk {
                        query = query.bind(sequence_to_database(*sequence));
                    }
                    let rows: Vec<IndicatorColumns> = query
                        .fetch_all(pool)
                        .await
                        .map_err(failed("read indicators by sequence"))?;
                    for row in rows {
                        found.push(stored_indicator(row)?);
                    }
                }
                Ok(found)
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
    audit = sqlite_audit,
    decisions = sqlite_decisions,
    begin_write = "BEGIN IMMEDIATE"
);
feed_operations!(
    postgres_feed,
    sqlx::Postgres,
    Backend::Postgres,
    audit = postgres_audit,
    decisions = postgres_decisions,
    begin_write = "BEGIN"
);
