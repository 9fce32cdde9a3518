//! The feed's SQL, written once with `$N` placeholders for both backends.

use std::fmt::Write as _;

use crate::placeholders::push_rows;

/// Takes `$1` sequence numbers. It must be the first statement of every writing transaction: the
/// row lock it takes serialises writers until they commit, so they commit in sequence order and
/// a reader that sees head `H` also sees every event `<= H` (see the crate documentation). With
/// `$1 = 0` it only takes the lock (and, on PostgreSQL, notifies no one: the trigger fires only
/// when the head moves).
pub(super) const ADVANCE_HEAD: &str = "UPDATE feed_head SET head = head + $1 RETURNING head";
/// Moves the feed head by `$1` and the audit log's size by `$2` (the entries the write appends,
/// see `audit::append_numbered`); returns both after.
pub(super) const ADVANCE_HEADS: &str = "UPDATE feed_head SET head = head + $1, \
     audit_size = audit_size + $2 RETURNING head, audit_size";

pub(super) const PUBLISHED_EVENT_COLUMNS: &str = "sequence, event_type, kind, indicator_id, originator, \
     payload, at_micros";

pub(super) const RETRACTED_EVENT_COLUMNS: &str = "sequence, event_type, kind, indicator_id, originator, \
     reason, at_micros, signature";

/// Bound per published event row: all of `PUBLISHED_EVENT_COLUMNS` but the literal event type.
pub(super) const PUBLISHED_EVENT_BINDS: usize = 6;

/// Bound per retracted event row: all of `RETRACTED_EVENT_COLUMNS` but the literal event type.
pub(super) const RETRACTED_EVENT_BINDS: usize = 7;

pub(super) const MARK_RETRACTED: &str = "UPDATE indicators SET retracted = TRUE \
     WHERE id = $1 AND retracted = FALSE \
     RETURNING originator, kind";

pub(super) const INDICATOR_RETRACTED: &str = "SELECT retracted FROM indicators WHERE id = $1";

pub(super) const INSERT_RETRACTION: &str = "INSERT INTO events \
     (sequence, event_type, kind, indicator_id, originator, reason, at_micros, signature) \
     VALUES ($1, 'retracted', $2, $3, $4, $5, $6, $7)";

pub(super) const SELECT_INDICATOR: &str = "SELECT id, originator, kind, payload, sequence, retracted, via, \
     superseded_by, circle FROM indicators WHERE id = $1";

/// Moves the cursor only forwards (`CASE` rather than `GREATEST`/`MAX`, which the two backends
/// spell differently); the time is that of the latest receive whether or not it moved.
pub(super) const UPSERT_PEER_CURSOR: &str = "INSERT INTO peer_cursors (peer, cursor, updated_micros) \
     VALUES ($1, $2, $3) \
     ON CONFLICT (peer) DO UPDATE SET \
     cursor = CASE WHEN excluded.cursor > peer_cursors.cursor \
     THEN excluded.cursor ELSE peer_cursors.cursor END, \
     updated_micros = excluded.updated_micros";

pub(super) const SELECT_PEER_CURSOR: &str = "SELECT cursor FROM peer_cursors WHERE peer = $1";

pub(super) const SELECT_PEER_CURSORS: &str =
    "SELECT peer, cursor, updated_micros FROM peer_cursors ORDER BY peer";

pub(super) fn insert_published_events_sql(rows: usize) -> String {
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

pub(super) fn insert_retracted_events_sql(rows: usize) -> String {
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
pub(super) fn copy_published_indicators_sql(rows: usize) -> String {
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
pub(super) fn mark_superseded_sql(rows: usize) -> String {
    let mut sql = String::from("UPDATE indicators SET superseded_by = v.column3 FROM (VALUES ");
    push_rows(&mut sql, 1, rows, 3, None);
    sql.push_str(
        ") AS v WHERE indicators.id = v.column1 AND indicators.originator = v.column2 \
         AND indicators.id <> v.column3",
    );
    sql
}

pub(super) fn select_known_indicators_sql(count: usize) -> String {
    let mut sql = String::from(
        "SELECT id, originator, kind, retracted, payload FROM indicators WHERE id IN ",
    );
    push_rows(&mut sql, 1, 1, count, None);
    sql
}

pub(super) fn mark_many_retracted_sql(count: usize) -> String {
    let mut sql =
        String::from("UPDATE indicators SET retracted = TRUE WHERE retracted = FALSE AND id IN ");
    push_rows(&mut sql, 1, 1, count, None);
    sql
}

/// One statement, so the head and the events come from one snapshot: the events are bounded by
/// the head that snapshot saw, and that head is returned (on a row of its own, the first, whose
/// sequence is NULL, and so even when no event matches) to compute `scanned_to`. The events
/// are an index range scan on the primary key that stops after `$2` rows, streamed as they are
/// found: a `UNION ALL` rather than a join, which SQLite answered by copying every row, its
/// payload included, into a temporary table and again into a sorter.
pub(super) fn read_after_sql(kind_count: usize) -> String {
    let mut sql = String::from(
        "SELECT head, NULL AS sequence, NULL AS event_type, NULL AS kind, NULL AS indicator_id, \
         NULL AS originator, NULL AS payload, NULL AS reason, NULL AS at_micros, \
         NULL AS signature FROM feed_head \
         UNION ALL SELECT * FROM ( \
         SELECT CAST(NULL AS BIGINT) AS head, sequence, event_type, kind, indicator_id, \
         originator, payload, reason, at_micros, signature \
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
    sql.push_str(" ORDER BY sequence LIMIT $2) AS e");
    sql
}

/// The indicators published by the events at `count` sequences (`$1…`), as
/// `SELECT_INDICATOR` reads one.
pub(super) fn select_indicators_at_sql(count: usize) -> String {
    let mut sql = String::from(
        "SELECT i.id, i.originator, i.kind, i.payload, i.sequence, i.retracted, i.via, \
         i.superseded_by, i.circle FROM events e JOIN indicators i \
         ON i.id = e.indicator_id AND i.sequence = e.sequence WHERE e.sequence IN (",
    );
    for index in 0..count {
        if index > 0 {
            sql.push_str(", ");
        }
        let _ = write!(sql, "${}", index + 1);
    }
    sql.push(')');
    sql
}
