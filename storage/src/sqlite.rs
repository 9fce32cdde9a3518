//! Opening a SQLite feed: one file in WAL mode, a single-connection writer and a reader pool.

use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::backend::Backend;
use crate::error::StorageError;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a writer waits for another connection's write lock (another Store on the same file,
/// a checkpoint) before failing with `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Readers do not block each other or the writer in WAL mode.
const READ_CONNECTIONS: u32 = 4;

pub(crate) struct SqlitePools {
    /// One connection, so this process's writers queue in the pool instead of contending for
    /// SQLite's write lock.
    pub(crate) write: SqlitePool,
    /// `query_only`, so a read can never take the write lock by mistake.
    pub(crate) read: SqlitePool,
}

impl SqlitePools {
    pub(crate) async fn close(&self) {
        self.read.close().await;
        // Last, so the writer's connection is the one that checkpoints the WAL on close.
        self.write.close().await;
    }
}

/// `path` is the part of the URL after `sqlite:` or `sqlite://`, taken literally as a file path.
pub(crate) async fn connect(path: &str) -> Result<SqlitePools, StorageError> {
    if path.is_empty() {
        return Err(StorageError::InvalidUrl(
            "sqlite url has no file path (expected sqlite:PATH)".to_owned(),
        ));
    }
    if path.starts_with(":memory:") || path.contains("mode=memory") {
        return Err(StorageError::InvalidUrl(
            "in-memory sqlite database is not supported: the writer and the readers use separate connections"
                .to_owned(),
        ));
    }
    let failed = |action: String| {
        move |error: sqlx::Error| StorageError::from_sqlx(Backend::Sqlite, &action, error)
    };

    // secure_delete overwrites deleted content with zeros, so that deleted MLS secrets do not
    // stay in the file (forward secrecy); older copies in the WAL go at a checkpoint.
    let options = SqliteConnectOptions::new()
        .filename(path)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT)
        .pragma("secure_delete", "ON");
    // FULL syncs the WAL at every commit: an acknowledged publish survives a crash of the
    // process or of the machine.
    let write_options = options
        .clone()
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full);
    let write = SqlitePoolOptions::new()
        .max_connections(1)
        .after_connect(|connection, _| Box::pin(crate::direct::stable_plans(connection)))
        .connect_with(write_options)
        .await
        .map_err(failed(format!("open sqlite database {path}")))?;
    MIGRATOR.run(&write).await.map_err(|error| {
        StorageError::Migration(format!("migrate sqlite database {path}: {error}"))
    })?;

    // The journal mode is persistent in the file, set by the writer above; setting it again
    // from a reader could need a lock that busy_timeout does not wait for.
    let read_options = options.pragma("query_only", "ON");
    let read = SqlitePoolOptions::new()
        .max_connections(READ_CONNECTIONS)
        .after_connect(|connection, _| Box::pin(crate::direct::stable_plans(connection)))
        .connect_with(read_options)
        .await
        .map_err(failed(format!("open sqlite database {path} for reading")))?;
    Ok(SqlitePools { write, read })
}
