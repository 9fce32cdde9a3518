//! The SQLite screening transaction in one hand-off: a batch's screenings, their watches and
//! the release decisions the screening made, stored together on the writer connection's own
//! handle ([`crate::direct`]) while sqlx's worker thread for it waits.
//!
//! Before, a batch took two transactions on the one writer connection, the decisions' (through
//! the decision log's writer queue) and the screenings', each statement a round trip between
//! the async task and the connection's worker thread; with the cores busy screening, the writer
//! sat idle between statements waiting for a runtime worker, and the batches queued behind it
//! (issue 13: half of a batch's time at 1,000,000 indicators). One transaction keeps the
//! invariant the two kept in order: a screening's matches are stored, and answered, only with
//! the decisions that let the agency see them.
//!
//! As for the publish (`feed::direct`), the audit log's kept edge must be of the log's size;
//! when it is not (the first append after a start, or after another writer of the file) the
//! transaction is rolled back and the caller stores the batch the ordinary way.

use sqlx::SqlitePool;

use super::{SCREENINGS_PER_STATEMENT, insert_screenings_sql, insert_watches_sql};
use crate::audit::KeptEdge;
use crate::decisions::Encoded;
use crate::direct::{
    OpenTransaction, Values, blob, execute, failed, int, numbered, text, with_writer,
};
use crate::error::StorageError;
use crate::model::{DecisionRow, ScreeningRow, WatchKind};
use crate::values::sequence_to_database;

/// Stores `rows` (each watched as its `watch` says) and `decisions` in one transaction: `true`
/// once committed, `false` (rolled back) if the audit edge was not held (see the module
/// documentation).
pub(crate) async fn record(
    pool: &SqlitePool,
    audit: &KeptEdge,
    rows: &[ScreeningRow],
    decisions: &[DecisionRow],
) -> Result<bool, StorageError> {
    if rows.is_empty() && decisions.is_empty() {
        return Ok(true);
    }
    let encoded = if decisions.is_empty() {
        None
    } else {
        Some(Encoded::of(decisions)?)
    };
    with_writer(pool, |db| {
        db.execute_batch("BEGIN IMMEDIATE")
            .map_err(failed("begin record screenings transaction"))?;
        let _open = OpenTransaction(db);
        let mut edge = audit.begin();
        if let Some(encoded) = &encoded {
            // The decisions' entry in the audit log first, as `sqlite_decisions::record` does.
            let entries = [encoded.entry()];
            let after: i64 = db
                .query_row(
                    &numbered(crate::audit::ADVANCE_AUDIT_HEAD),
                    [crate::audit::entries_to_number(entries.len())],
                    |row| row.get(0),
                )
                .map_err(failed("advance audit head"))?;
            let Some((position, audit_rows)) = crate::audit::plan_kept(&mut edge, &entries, after)?
            else {
                return Ok(false);
            };
            crate::audit::insert_rows(db, &audit_rows)?;
            crate::decisions::write_encoded_direct(db, encoded, position, &[])?;
        }
        insert_screenings(db, rows)?;
        insert_watches(db, rows)?;
        db.execute_batch("COMMIT")
            .map_err(failed("commit record screenings transaction"))?;
        edge.committed();
        Ok(true)
    })
    .await
}

fn insert_screenings(db: &rusqlite::Connection, rows: &[ScreeningRow]) -> Result<(), StorageError> {
    for chunk in rows.chunks(SCREENINGS_PER_STATEMENT) {
        let mut values = Values::with_capacity(chunk.len() * 9);
        for row in chunk {
            values.extend([
                text(&row.id),
                text(&row.agency),
                text(&row.reference),
                int(row.at_micros),
                text(&row.policy_revision),
                text(&row.level),
                int(i64::from(row.score)),
                blob(&row.declaration),
                blob(&row.result),
            ]);
        }
        execute(
            db,
            &insert_screenings_sql(chunk.len()),
            &values,
            "record screenings",
        )?;
    }
    Ok(())
}

fn insert_watches(db: &rusqlite::Connection, rows: &[ScreeningRow]) -> Result<(), StorageError> {
    let watched: Vec<(&ScreeningRow, u64, i64)> = rows
        .iter()
        .filter_map(|row| row.watch.map(|(from, until)| (row, from, until)))
        .collect();
    for chunk in watched.chunks(SCREENINGS_PER_STATEMENT) {
        let mut values = Values::with_capacity(chunk.len() * 7);
        for (row, from_sequence, until_micros) in chunk {
            values.extend([
                text(WatchKind::Declaration.as_str()),
                text(&row.agency),
                text(&row.id),
                // The subject is the screening's declaration (see `watch_columns`).
                blob(&[]),
                int(sequence_to_database(*from_sequence)),
                int(*until_micros),
                int(row.at_micros),
            ]);
        }
        execute(
            db,
            &insert_watches_sql(chunk.len()),
            &values,
            "record watches",
        )?;
    }
    Ok(())
}
