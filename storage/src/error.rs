//! Storage errors, and the one place where `sqlx::Error` becomes one of them.

use sqlx::{Database, Transaction};

use crate::backend::Backend;

/// What a storage operation can fail with. Callers tell the cases apart (the gateway maps them
/// to gRPC codes); the messages of the last four carry what failed and the driver's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("indicator {id} is already stored")]
    Duplicate { id: String },
    #[error("indicator {id} not found")]
    NotFound { id: String },
    #[error("indicator {id} is already retracted")]
    AlreadyRetracted { id: String },
    /// A [`crate::CircleWrite`] appended a log entry at a position of the circle's log that
    /// holds one already (another commit of the same epoch got there first).
    #[error("position {position} of the log of circle {circle} is already taken")]
    LogPositionTaken { circle: String, position: u64 },
    #[error("invalid database url: {0}")]
    InvalidUrl(String),
    /// The database could not be reached or was too busy (connection lost, pool time-out,
    /// SQLite lock time-out, server shutting down): worth retrying later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("database migration failed: {0}")]
    Migration(String),
}

impl StorageError {
    /// Classifies a driver error; `action` is a verb phrase naming what failed
    /// ("publish batch"), put in front of the driver's message.
    pub(crate) fn from_sqlx(backend: Backend, action: &str, error: sqlx::Error) -> StorageError {
        let message = format!("{action}: {error}");
        match &error {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StorageError::Unavailable(message),
            sqlx::Error::Database(database_error) => match database_error.code() {
                Some(code) if code_means_unavailable(backend, &code) => {
                    StorageError::Unavailable(message)
                }
                _ => StorageError::Database(message),
            },
            sqlx::Error::Migrate(_) => StorageError::Migration(message),
            _ => StorageError::Database(message),
        }
    }

    /// A value read back from the database that storage itself could not have written.
    pub(crate) fn corrupt(message: String) -> StorageError {
        StorageError::Database(message)
    }
}

/// Whether a database error code says "try again later" rather than "this request is wrong".
fn code_means_unavailable(backend: Backend, code: &str) -> bool {
    match backend {
        // SQLSTATE class 08 is connection exception; 57P01..57P03 are the server shutting down
        // or not yet accepting; 53300 is too many connections.
        Backend::Postgres => {
            code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
        }
        // Extended result codes keep the primary code in the low byte: SQLITE_BUSY (5) and
        // SQLITE_LOCKED (6) mean the busy timeout ran out behind another writer.
        Backend::Sqlite => code
            .parse::<i32>()
            .is_ok_and(|code| matches!(code & 0xff, 5 | 6)),
    }
}

/// Turns a sqlx error of `backend` into a [`StorageError`], naming what was being done.
pub(crate) fn failed(
    backend: Backend,
    action: &str,
) -> impl FnOnce(sqlx::Error) -> StorageError + '_ {
    move |error| StorageError::from_sqlx(backend, action, error)
}

/// Rolls back a transaction that is refused. Dropping it would roll it back anyway; the
/// caller needs its own error, not this one, which is only logged.
pub(crate) async fn roll_back<DB: Database>(transaction: Transaction<'_, DB>, what: &str) {
    if let Err(error) = transaction.rollback().await {
        tracing::warn!(%error, "roll back {what}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(backend: Backend, code: &str, expected_unavailable: bool) {
        assert_eq!(
            code_means_unavailable(backend, code),
            expected_unavailable,
            "{backend:?} code {code}"
        );
    }

    #[test]
    fn codes_that_mean_unavailable() {
        check(Backend::Postgres, "08006", true);
        check(Backend::Postgres, "57P01", true);
        check(Backend::Postgres, "53300", true);
        check(Backend::Postgres, "23505", false);
        check(Backend::Postgres, "42P01", false);
        check(Backend::Sqlite, "5", true);
        check(Backend::Sqlite, "517", true); // SQLITE_BUSY_SNAPSHOT
        check(Backend::Sqlite, "262", true); // SQLITE_LOCKED_SHAREDCACHE
        check(Backend::Sqlite, "2067", false); // SQLITE_CONSTRAINT_UNIQUE
        check(Backend::Sqlite, "1", false);
    }

    #[test]
    fn pool_errors_are_unavailable() {
        let error = StorageError::from_sqlx(Backend::Sqlite, "read head", sqlx::Error::PoolClosed);
        assert!(
            matches!(error, StorageError::Unavailable(ref message) if message.starts_with("read head: "))
        );
        let error =
            StorageError::from_sqlx(Backend::Postgres, "read head", sqlx::Error::RowNotFound);
        assert!(matches!(error, StorageError::Database(_)));
    }
}
