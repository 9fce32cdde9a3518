//! The circles' SQL, written once with `$N` placeholders for both backends.

use crate::placeholders::push_rows;

pub(super) const KEY_PACKAGE_COLUMNS: usize = 6;

pub(super) const UPSERT_CIRCLE: &str = "INSERT INTO circles \
     (name, group_id, hub, epoch, position, status, created_micros) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (name) DO UPDATE SET group_id = excluded.group_id, hub = excluded.hub, \
     epoch = excluded.epoch, position = excluded.position, status = excluded.status, \
     created_micros = excluded.created_micros";

/// Inserts nothing, and so affects no row, if the position is taken; on PostgreSQL it first
/// waits for a transaction that inserted the same position to end.
pub(super) const INSERT_LOG_ENTRY: &str = "INSERT INTO circle_log \
     (circle, position, epoch, sender, kind, message, at_micros) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (circle, position) DO NOTHING";

pub(super) const ISSUE_KEY_PACKAGE: &str = "UPDATE circle_key_packages \
     SET issued_to = $2, issued_micros = $3 WHERE hash_ref = $1";

pub(super) const UPSERT_ADMISSION: &str = "INSERT INTO circle_admissions (circle, member, position) \
     VALUES ($1, $2, $3) ON CONFLICT (circle, member) DO UPDATE SET position = excluded.position";

pub(super) const SELECT_ADMISSION: &str =
    "SELECT position FROM circle_admissions WHERE circle = $1 AND member = $2";

pub(super) const DELETE_KEY_PACKAGE: &str = "DELETE FROM circle_key_packages WHERE hash_ref = $1";

pub(super) const SELECT_MLS_VALUES: &str = "SELECT key, value FROM mls_kv ORDER BY key";

pub(super) const SELECT_CIRCLES: &str = "SELECT name, group_id, hub, epoch, position, status, \
     created_micros FROM circles ORDER BY name";

pub(super) const SELECT_CIRCLE: &str = "SELECT name, group_id, hub, epoch, position, status, \
     created_micros FROM circles WHERE name = $1";

pub(super) const SELECT_CIRCLE_LOG: &str = "SELECT circle, position, epoch, sender, kind, message, \
     at_micros FROM circle_log WHERE circle = $1 AND position >= $2 ORDER BY position LIMIT $3";

pub(super) const SELECT_KEY_PACKAGES: &str = "SELECT hash_ref, key_package, last_resort, issued_to, \
     issued_micros, created_micros FROM circle_key_packages ORDER BY created_micros, hash_ref";

pub(super) const SELECT_DEPARTURE: &str =
    "SELECT last_position FROM circle_departures WHERE circle = $1 AND member = $2";

pub(super) const UPSERT_WELCOME: &str = "INSERT INTO circle_welcomes \
     (circle, member, position, welcome, created_micros) VALUES ($1, $2, $3, $4, $5) \
     ON CONFLICT (circle, member) DO UPDATE SET position = excluded.position, \
     welcome = excluded.welcome, created_micros = excluded.created_micros";

pub(super) const DELETE_WELCOME: &str =
    "DELETE FROM circle_welcomes WHERE circle = $1 AND member = $2";

pub(super) const DELETE_DELIVERED_WELCOME: &str =
    "DELETE FROM circle_welcomes WHERE circle = $1 AND member = $2 AND position = $3";

pub(super) const UPSERT_OUTBOX: &str = "INSERT INTO circle_outbox (circle, digest, indicator, created_micros) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (circle, digest) DO UPDATE SET \
     indicator = excluded.indicator, created_micros = excluded.created_micros";

pub(super) const DELETE_OUTBOX: &str =
    "DELETE FROM circle_outbox WHERE circle = $1 AND digest = $2";

pub(super) const SELECT_OUTBOX: &str =
    "SELECT indicator FROM circle_outbox WHERE circle = $1 AND digest = $2";

pub(super) const SELECT_WELCOMES: &str = "SELECT circle, member, position, welcome, created_micros \
     FROM circle_welcomes ORDER BY circle, member";

/// SQLite: copies every frame of the WAL into the database file and truncates the WAL to zero
/// bytes. Waits (up to the busy timeout) for readers of older frames; its first column says
/// whether it had to give up.
pub(crate) const SQLITE_CHECKPOINT: &str = "PRAGMA wal_checkpoint(TRUNCATE)";

pub(super) fn upsert_values_sql(rows: usize) -> String {
    let mut sql = String::from("INSERT INTO mls_kv (key, value) VALUES ");
    push_rows(&mut sql, 1, rows, 2, None);
    sql.push_str(" ON CONFLICT (key) DO UPDATE SET value = excluded.value");
    sql
}

pub(super) fn delete_values_sql(count: usize) -> String {
    let mut sql = String::from("DELETE FROM mls_kv WHERE key IN ");
    push_rows(&mut sql, 1, 1, count, None);
    sql
}

pub(super) fn insert_key_packages_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO circle_key_packages (hash_ref, key_package, last_resort, issued_to, \
         issued_micros, created_micros) VALUES ",
    );
    push_rows(&mut sql, 1, rows, KEY_PACKAGE_COLUMNS, None);
    sql
}

pub(super) fn upsert_departures_sql(rows: usize) -> String {
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
pub(super) fn delete_departures_sql(rows: usize) -> String {
    let mut sql = String::from("DELETE FROM circle_departures WHERE (circle, member) IN (VALUES ");
    push_rows(&mut sql, 1, rows, 2, None);
    sql.push(')');
    sql
}
