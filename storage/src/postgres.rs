//! Opening a PostgreSQL feed, and the listener that turns other processes' commits into
//! wake-ups of this process's followers.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backend::{Backend, HeadGate, READ_HEAD};
use crate::error::StorageError;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel of the `feed_head` trigger (see the migration). The payload is `schema:head`.
const CHANNEL: &str = "cordon_feed";

const MAX_CONNECTIONS: u32 = 10;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
const LAST_RETRY_DELAY: Duration = Duration::from_secs(10);

/// The schema that holds `feed_head`, resolved through the connection's `search_path` exactly
/// as the feed's queries resolve it; it is what the trigger puts in its payload.
const FEED_SCHEMA: &str = "SELECT n.nspname FROM pg_class c \
     JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.oid = 'feed_head'::regclass";

pub(crate) struct PostgresPools {
    pub(crate) pool: PgPool,
    listener: HeadListener,
}

impl PostgresPools {
    pub(crate) async fn close(&self) {
        self.listener.stop().await;
        self.pool.close().await;
    }
}

fn failed(action: &str) -> impl FnOnce(sqlx::Error) -> StorageError + '_ {
    move |error| StorageError::from_sqlx(Backend::Postgres, action, error)
}

/// Connects, migrates, and starts listening before returning, so that no commit made after
/// this returns can be missed by `head`.
pub(crate) async fn connect(
    options: PgConnectOptions,
    head: watch::Sender<u64>,
    gate: Arc<HeadGate>,
) -> Result<PostgresPools, StorageError> {
    let pool = PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options.clone())
        .await
        .map_err(failed("connect to postgresql"))?;
    MIGRATOR.run(&pool).await.map_err(|error| {
        StorageError::Migration(format!("migrate postgresql database: {error}"))
    })?;
    let schema: String = sqlx::query_scalar(FEED_SCHEMA)
        .fetch_one(&pool)
        .await
        .map_err(failed("find the schema of table feed_head"))?;
    let listener = HeadListener::start(options, schema, head, gate).await?;
    Ok(PostgresPools { pool, listener })
}

/// One task per Store that LISTENs for head changes. It is aborted when the Store is closed or
/// its last clone dropped, so it never outlives the Store nor keeps its connection open.
struct HeadListener {
    pool: PgPool,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl HeadListener {
    async fn start(
        options: PgConnectOptions,
        schema: String,
        head: watch::Sender<u64>,
        gate: Arc<HeadGate>,
    ) -> Result<HeadListener, StorageError> {
        // Its own pool of one, so the listening connection never serves queries and a lost
        // connection is replaced by the pool.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(failed("connect the feed listener to postgresql"))?;
        let listener = subscribe(&pool, &head).await?;
        let task = tokio::spawn(follow_notifications(
            pool.clone(),
            listener,
            schema,
            head,
            gate,
        ));
        Ok(HeadListener {
            pool,
            task: Mutex::new(Some(task)),
        })
    }

    fn take_task(&self) -> Option<JoinHandle<()>> {
        self.task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    async fn stop(&self) {
        if let Some(task) = self.take_task() {
            task.abort();
            // Aborted is the expected outcome; anything else was already logged by the task.
            let _ = task.await;
        }
        self.pool.close().await;
    }
}

impl Drop for HeadListener {
    fn drop(&mut self) {
        if let Some(task) = self.take_task() {
            task.abort();
        }
    }
}

/// LISTENs, then reads the head on the same connection: a commit after that read is notified,
/// one before it is in the value read, so nothing falls between.
async fn subscribe(pool: &PgPool, head: &watch::Sender<u64>) -> Result<PgListener, StorageError> {
    let mut listener = PgListener::connect_with(pool)
        .await
        .map_err(failed("connect the feed listener"))?;
    listener
        .listen(CHANNEL)
        .await
        .map_err(failed("listen on channel cordon_feed"))?;
    let current = read_head(&mut listener)
        .await
        .map_err(failed("read feed head on the listener"))?;
    wake_followers(head, current);
    Ok(listener)
}

async fn read_head(listener: &mut PgListener) -> Result<u64, sqlx::Error> {
    let head: i64 = sqlx::query_scalar(READ_HEAD).fetch_one(listener).await?;
    Ok(u64::try_from(head).unwrap_or(0))
}

/// Notifications may have been lost while the listener was down, so followers are woken even
/// if the head did not move: they re-read from their cursors.
fn wake_followers(head: &watch::Sender<u64>, current: u64) {
    head.send_modify(|known| *known = (*known).max(current));
}

async fn follow_notifications(
    pool: PgPool,
    mut listener: PgListener,
    schema: String,
    head: watch::Sender<u64>,
    gate: Arc<HeadGate>,
) {
    loop {
        let error = receive_until_failure(&mut listener, &schema, &head, &gate).await;
        tracing::warn!(%error, "feed listener failed; reconnecting");
        // Its connection goes back to the pool (which tests it before reuse) before a new one
        // is asked for.
        drop(listener);
        listener = resubscribe(&pool, &head).await;
    }
}

async fn receive_until_failure(
    listener: &mut PgListener,
    schema: &str,
    head: &watch::Sender<u64>,
    gate: &HeadGate,
) -> sqlx::Error {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                if let Some(value) = head_from_payload(notification.payload(), schema) {
                    gate.raise(head, value);
                }
            }
            // The connection was lost and sqlx has already reconnected and listened again.
            Ok(None) => {
                tracing::warn!("feed listener lost its connection; reconnected");
                match read_head(listener).await {
                    Ok(current) => wake_followers(head, current),
                    Err(error) => return error,
                }
            }
            Err(error) => return error,
        }
    }
}

async fn resubscribe(pool: &PgPool, head: &watch::Sender<u64>) -> PgListener {
    let mut delay = FIRST_RETRY_DELAY;
    loop {
        tokio::time::sleep(delay).await;
        match subscribe(pool, head).await {
            Ok(listener) => {
                tracing::info!("feed listener reconnected");
                return listener;
            }
            Err(error) => {
                tracing::warn!(%error, retry_in = ?delay, "feed listener could not reconnect");
                delay = (delay * 2).min(LAST_RETRY_DELAY);
            }
        }
    }
}

/// The head in a `schema:head` payload, if it is about this Store's schema. Other schemas of
/// the same database (other feeds, parallel tests) share the channel.
fn head_from_payload(payload: &str, schema: &str) -> Option<u64> {
    let (payload_schema, head) = payload.rsplit_once(':')?;
    if payload_schema != schema {
        return None;
    }
    head.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(payload: &str, expected: Option<u64>) {
        assert_eq!(head_from_payload(payload, "feed:a"), expected, "{payload}");
    }

    #[test]
    fn payloads_of_other_schemas_are_ignored() {
        check("feed:a:42", Some(42));
        check("feed:b:42", None);
        check("feed:a", None);
        check("feed:a:x", None);
        check("42", None);
    }
}
