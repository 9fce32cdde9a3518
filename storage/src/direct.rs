//! Running statements on a SQLite connection's own handle, synchronously, while sqlx's worker
//! thread for that connection waits: one hand-off for a whole transaction (on the writer) or a
//! whole page of rows (on a reader) instead of two thread wake-ups per statement and a copy of
//! every value of every row (see `feed::direct`). The one use of `unsafe` in the project:
//! borrowing the handle sqlx hands out for this (`LockedSqliteHandle`).
#![allow(unsafe_code)]

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use sqlx::SqlitePool;

use crate::error::StorageError;

/// A statement's parameters.
pub(crate) type Values<'a> = Vec<ToSqlOutput<'a>>;

pub(crate) fn int<'a>(value: i64) -> ToSqlOutput<'a> {
    ToSqlOutput::Owned(Value::Integer(value))
}

pub(crate) fn text(value: &str) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(ValueRef::Text(value.as_bytes()))
}

pub(crate) fn optional_text(value: Option<&str>) -> ToSqlOutput<'_> {
    value.map_or(ToSqlOutput::Owned(Value::Null), text)
}

pub(crate) fn blob(value: &[u8]) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(ValueRef::Blob(value))
}

pub(crate) fn optional_blob(value: Option<&[u8]>) -> ToSqlOutput<'_> {
    value.map_or(ToSqlOutput::Owned(Value::Null), blob)
}

/// The SQL of the shared text with its `$N` placeholders as SQLite's numbered `?N`.
pub(crate) fn numbered(sql: &str) -> String {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    for (index, character) in sql.char_indices() {
        if character == '$' && bytes.get(index + 1).is_some_and(u8::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(character);
        }
    }
    out
}

pub(crate) fn failed(action: &str) -> impl FnOnce(rusqlite::Error) -> StorageError + '_ {
    move |error| {
        let message = format!("{action}: {error}");
        match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                StorageError::Unavailable(message)
            }
            _ => StorageError::Database(message),
        }
    }
}

/// Runs `statement` with `values`; returns how many rows it changed.
pub(crate) fn execute(
    db: &rusqlite::Connection,
    statement: &str,
    values: &Values<'_>,
    action: &str,
) -> Result<usize, StorageError> {
    let mut prepared = db.prepare(&numbered(statement)).map_err(failed(action))?;
    prepared
        .execute(rusqlite::params_from_iter(values.iter()))
        .map_err(failed(action))
}

/// Runs `work` with the writer connection's SQLite handle, synchronously, while sqlx's worker
/// for it waits (it is locked for this caller meanwhile).
pub(crate) async fn with_writer<T>(
    pool: &SqlitePool,
    work: impl FnOnce(&rusqlite::Connection) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    with_connection(pool, work).await
}

/// Runs `work` with the SQLite handle of a connection of `pool` (the writer's, or one of the
/// readers'), synchronously, while sqlx's worker for it waits (it is locked for this caller
/// meanwhile).
pub(crate) async fn with_connection<T>(
    pool: &SqlitePool,
    work: impl FnOnce(&rusqlite::Connection) -> Result<T, StorageError>,
) -> Result<T, StorageError> {
    let sqlx_failed = |action: &'static str| {
        move |error| StorageError::from_sqlx(crate::Backend::Sqlite, action, error)
    };
    let mut connection = pool
        .acquire()
        .await
        .map_err(sqlx_failed("take a connection"))?;
    let mut locked = connection
        .lock_handle()
        .await
        .map_err(sqlx_failed("lock the connection"))?;
    let handle = locked.as_raw_handle();
    let run = move || {
        // SAFETY: `handle` is the open SQLite connection of `locked`, which sqlx keeps locked
        // for this caller until `locked` drops, after this closure has returned: no other
        // thread uses the connection meanwhile. `from_handle` borrows it (it does not close it
        // on drop), and `db` drops, finalizing the statements it prepared, before this returns.
        let db = unsafe { rusqlite::Connection::from_handle(handle.as_ptr()) }
            .map_err(failed("borrow the connection"))?;
        work(&db)
    };
    // Blocking for one transaction: on the multi-threaded runtime the other tasks of this
    // worker move elsewhere meanwhile.
    match tokio::runtime::Handle::try_current().map(|runtime| runtime.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(run),
        _ => run(),
    }
}

/// Rolls back the transaction still open on its connection when dropped (none after a commit,
/// or after SQLite rolled back on its own): however a transaction on the borrowed handle ends
/// (an error, a failed commit, a panic), the connection goes back to sqlx outside any
/// transaction, as sqlx believes it is.
pub(crate) struct OpenTransaction<'a>(pub(crate) &'a rusqlite::Connection);

impl Drop for OpenTransaction<'_> {
    fn drop(&mut self) {
        if !self.0.is_autocommit()
            && let Err(error) = self.0.execute_batch("ROLLBACK")
        {
            tracing::warn!(%error, "rolling back a transaction on the writer's handle failed");
        }
    }
}

/// Turns on SQLite's query planner stability guarantee for `connection`: a statement's plan
/// no longer depends on the values bound to it. Without it, a statement with a bound
/// `LIMIT` (most reads of the feed and the logs) is marked to be prepared again whenever a
/// value is bound, which was a tenth of the gateway's CPU at 1,000 publishes per second.
pub(crate) async fn stable_plans(
    connection: &mut sqlx::SqliteConnection,
) -> Result<(), sqlx::Error> {
    let mut locked = connection.lock_handle().await?;
    let handle = locked.as_raw_handle();
    // SAFETY: as in `with_writer`: the handle is locked for this caller until `locked` drops,
    // after `db`, which borrows it without closing it.
    let db = unsafe { rusqlite::Connection::from_handle(handle.as_ptr()) }
        .map_err(|error| sqlx::Error::Configuration(error.into()))?;
    db.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map_err(|error| sqlx::Error::Configuration(error.into()))?;
    Ok(())
}

/// Whether [`stable_plans`] is in force on `connection`.
#[cfg(test)]
pub(crate) async fn stable_plans_on(
    connection: &mut sqlx::SqliteConnection,
) -> Result<bool, sqlx::Error> {
    let mut locked = connection.lock_handle().await?;
    let handle = locked.as_raw_handle();
    // SAFETY: as in `stable_plans`.
    let db = unsafe { rusqlite::Connection::from_handle(handle.as_ptr()) }
        .map_err(|error| sqlx::Error::Configuration(error.into()))?;
    db.db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG)
        .map_err(|error| sqlx::Error::Configuration(error.into()))
}
