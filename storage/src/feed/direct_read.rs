//! A page of the feed read on a SQLite reader's own handle: the statement of
//! `sqlite_feed::read_after`, its rows decoded as SQLite steps through them.
//!
//! Through sqlx every row is copied value by value (`sqlite3_value_dup`, a payload included)
//! on the connection's worker thread and handed to the async side one at a time; a catch-up
//! reads a thousand rows of a kilobyte or more per page, and that copying and hand-off was
//! most of the worker's time. Here each payload is copied once, into the event, and the
//! whole page costs one hand-off.

use sqlx::SqlitePool;

use super::plan::{EventColumns, ReadRow, batch_scanned_to, distinct_kinds};
use super::sql::read_after_sql;
use crate::direct::{Values, failed, int, numbered, text, with_connection};
use crate::error::StorageError;
use crate::model::EventBatch;
use crate::values::{sequence_from_database, sequence_to_database};

/// The events after `after` (at most `limit`, of `kinds` if any) and the head, as
/// `sqlite_feed::read_after` reads them; `limit` is at least 1.
pub(crate) async fn read_after(
    pool: &SqlitePool,
    after: u64,
    limit: u32,
    kinds: &[String],
) -> Result<EventBatch, StorageError> {
    let kinds = distinct_kinds(kinds);
    let sql = numbered(&read_after_sql(kinds.len()));
    with_connection(pool, |db| {
        let mut statement = db.prepare(&sql).map_err(failed("read events"))?;
        let mut values: Values<'_> = vec![int(sequence_to_database(after)), int(i64::from(limit))];
        values.extend(kinds.iter().map(|kind| text(kind)));
        let mut rows = statement
            .query(rusqlite::params_from_iter(values.iter()))
            .map_err(failed("read events"))?;
        let mut head = None;
        let mut events = Vec::with_capacity(limit as usize);
        while let Some(row) = rows.next().map_err(failed("read events"))? {
            match read_row(row).map_err(failed("decode event row"))? {
                ReadRow::Head(row_head) => head = Some(row_head),
                ReadRow::Event(columns) => events.push(columns.into_event()?),
            }
        }
        // In order whatever order the two parts of the union arrived in (they come sorted:
        // this only checks).
        events.sort_by_key(|event| event.sequence);
        let head =
            head.ok_or_else(|| StorageError::corrupt("table feed_head has no row".to_owned()))?;
        let head = sequence_from_database(head, "feed head")?;
        Ok(batch_scanned_to(after, limit, head, events))
    })
    .await
}

fn read_row(row: &rusqlite::Row<'_>) -> Result<ReadRow, rusqlite::Error> {
    let Some(sequence) = row.get(1)? else {
        return Ok(ReadRow::Head(row.get(0)?));
    };
    let blob = |index: usize| -> Result<Option<Vec<u8>>, rusqlite::Error> {
        Ok(row.get_ref(index)?.as_blob_or_null()?.map(<[u8]>::to_vec))
    };
    Ok(ReadRow::Event(EventColumns {
        sequence,
        event_type: row.get(2)?,
        kind: row.get(3)?,
        indicator_id: row.get(4)?,
        originator: row.get(5)?,
        payload: blob(6)?,
        reason: row.get(7)?,
        at_micros: row.get(8)?,
        signature: blob(9)?,
    }))
}
