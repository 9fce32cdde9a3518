//! The SQLite publish transaction in one hand-off: every statement of it run synchronously on
//! the writer connection's SQLite handle while sqlx's worker thread for that connection waits.
//!
//! Through sqlx each statement is a round trip between the async task and the connection's
//! worker thread, two thread wake-ups; a publish with its decisions is about ten statements,
//! and on a shared two-core machine those wake-ups, not SQLite, were most of a publish's
//! latency (issue 14). Here the whole transaction costs one hand-off and its commit's sync.
//!
//! Same statements, same order, same result as `sqlite_feed::publish`, which still serves the
//! case this path cannot: an audit edge this process does not hold (the first append after
//! start, or after another writer of the file). Then this transaction is rolled back and the
//! caller runs that one instead. The hand-off itself is [`crate::direct`].
use rusqlite::types::{ToSqlOutput, Value};
use sqlx::SqlitePool;

use super::plan::{Supersede, first_skipped_id, latest_supersedes, reject_duplicates_within};
use super::sql::{
    ADVANCE_HEADS, copy_published_indicators_sql, insert_published_events_sql, mark_superseded_sql,
};
use crate::audit::{KeptEdge, TransactionEdge};
use crate::decisions::{Encoded, WithPublish};
use crate::direct::{
    OpenTransaction, Values, blob, execute, failed, int, numbered, optional_text, text, with_writer,
};
use crate::error::StorageError;
use crate::model::NewIndicator;
use crate::placeholders::ROWS_PER_STATEMENT;
use crate::values::sequence_from_database;

/// What [`publish`] did.
pub(crate) enum Published {
    Committed(Vec<u64>),
    /// Rolled back: the audit edge was not held (see the module documentation).
    EdgeNotHeld,
}

/// `sqlite_feed::publish` in one hand-off (see the module documentation).
pub(crate) async fn publish(
    pool: &SqlitePool,
    audit: &KeptEdge,
    batch: &[NewIndicator],
    decided: &WithPublish,
) -> Result<Published, StorageError> {
    if batch.is_empty() {
        return Ok(Published::Committed(Vec::new()));
    }
    reject_duplicates_within(batch)?;
    let decisions = if decided.rows.is_empty() {
        None
    } else {
        Some(Encoded::of(&decided.rows)?)
    };
    with_writer(pool, |db| {
        db.execute_batch("BEGIN IMMEDIATE")
            .map_err(failed("begin publish transaction"))?;
        // However this ends (an error, a failed commit, a panic), the connection goes back to
        // sqlx outside any transaction, as sqlx believes it is.
        let _open = OpenTransaction(db);
        let mut edge = audit.begin();
        match publish_in(db, &mut edge, batch, decided, decisions.as_ref())? {
            Some(sequences) => {
                db.execute_batch("COMMIT")
                    .map_err(failed("commit publish transaction"))?;
                edge.committed();
                Ok(Published::Committed(sequences))
            }
            None => Ok(Published::EdgeNotHeld),
        }
    })
    .await
}

/// The statements of the transaction; `None` if the audit edge is not held.
fn publish_in(
    db: &rusqlite::Connection,
    edge: &mut TransactionEdge<'_>,
    batch: &[NewIndicator],
    decided: &WithPublish,
    decisions: Option<&Encoded<'_>>,
) -> Result<Option<Vec<u64>>, StorageError> {
    let count = i64::try_from(batch.len()).unwrap_or(i64::MAX);
    let entries_count = batch.len() + usize::from(decisions.is_some());
    let (head, audit_after): (i64, i64) = db
        .query_row(
            &numbered(ADVANCE_HEADS),
            [count, crate::audit::entries_to_number(entries_count)],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(failed("advance feed head"))?;
    let first = head - count + 1;
    let rows: Vec<(i64, &NewIndicator)> = (first..).zip(batch).collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let mut values = Values::with_capacity(chunk.len() * 6);
        for (sequence, item) in chunk {
            values.extend([
                int(*sequence),
                text(&item.kind),
                text(&item.id),
                text(&item.originator),
                blob(&item.payload),
                int(item.created_micros),
            ]);
        }
        execute(
            db,
            &insert_published_events_sql(chunk.len()),
            &values,
            "insert published events",
        )?;
    }
    let mut stored_ids = Vec::with_capacity(batch.len());
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let (Some((low, _)), Some((high, _))) = (chunk.first(), chunk.last()) else {
            continue;
        };
        let mut values = Values::with_capacity(chunk.len() * 3 + 2);
        for (sequence, item) in chunk {
            values.extend([
                int(*sequence),
                optional_text(item.via.as_deref()),
                ToSqlOutput::Owned(Value::Null),
            ]);
        }
        values.extend([int(*low), int(*high)]);
        let action = "insert indicators";
        let mut statement = db
            .prepare(&numbered(&copy_published_indicators_sql(chunk.len())))
            .map_err(failed(action))?;
        let ids = statement
            .query_map(rusqlite::params_from_iter(values.iter()), |row| {
                row.get::<_, String>(0)
            })
            .map_err(failed(action))?;
        for id in ids {
            stored_ids.push(id.map_err(failed(action))?);
        }
    }
    if stored_ids.len() != batch.len() {
        return Err(StorageError::Duplicate {
            id: first_skipped_id(batch, &stored_ids),
        });
    }
    let revisions = latest_supersedes(batch.iter().filter_map(Supersede::of));
    for chunk in revisions.chunks(ROWS_PER_STATEMENT) {
        let mut values = Values::with_capacity(chunk.len() * 3);
        for revision in chunk {
            values.extend([
                text(revision.old),
                text(revision.originator),
                text(revision.new),
            ]);
        }
        execute(
            db,
            &mark_superseded_sql(chunk.len()),
            &values,
            "mark superseded indicators",
        )?;
    }
    let mut entries: Vec<cordon_tlog::Entry> = batch.iter().map(super::stored_entry).collect();
    if let Some(decisions) = decisions {
        entries.push(decisions.entry());
    }
    let Some((first_entry, audit_rows)) = crate::audit::plan_kept(edge, &entries, audit_after)?
    else {
        return Ok(None);
    };
    crate::audit::insert_rows(db, &audit_rows)?;
    if let Some(decisions) = decisions {
        let first = sequence_from_database(first, "feed head")?;
        let pages = decided.pages(first);
        let pages = crate::decisions::distinct_pages(&pages);
        let position = first_entry.map(|position| position + batch.len() as u64);
        crate::decisions::write_encoded_direct(db, decisions, position, &pages)?;
    }
    (first..=head)
        .map(|sequence| sequence_from_database(sequence, "feed head"))
        .collect::<Result<Vec<u64>, StorageError>>()
        .map(Some)
}
