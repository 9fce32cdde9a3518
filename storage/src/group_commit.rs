//! Group commit for publishes: concurrent [`crate::Store::publish`] calls share one
//! transaction, and so one commit (one fsync on SQLite, one WAL flush on PostgreSQL), one move
//! of the feed head and one append to the audit log.
//!
//! One committer task per store takes the publishes queued while the previous transaction
//! committed, up to [`GROUP_ROWS`] indicators, and stores them as one batch in arrival order:
//! the same sequences, supersede marks and log entries as if they had been stored one after
//! another, without waiting for a timer (supersedes within the group are marked as in one
//! batch; the gateway only accepts revisions of indicators already stored). If the shared
//! transaction is refused for a duplicate id (in one of them, or across two callers), nothing of
//! it is stored and each publish of the group is stored again on its own, in order, so each
//! caller gets its own answer: the one it would have had alone. Any other failure (the database
//! unavailable, a commit whose outcome is unknown) is every caller's answer: retrying could
//! store twice what a failed-looking commit stored.
//!
//! The committer raises the store's known head before it answers, so the events of a caller
//! that went away meanwhile still wake this process's subscribers.
//!
//! The task holds only the writer pool, the audit log's kept edge and the head watch, never the
//! store itself:
//! when the last [`crate::Store`] clone is dropped its queue closes and the task ends.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use crate::audit::KeptEdge;
use crate::error::StorageError;
use crate::feed::{postgres_feed, sqlite_feed};
use crate::model::NewIndicator;

/// The most indicators one shared transaction gathers (a single larger publish still goes
/// alone).
pub(crate) const GROUP_ROWS: usize = 1_000;

/// Where the committer writes.
pub(crate) enum Writer {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl Writer {
    async fn publish(
        &self,
        audit: &KeptEdge,
        batch: &[NewIndicator],
    ) -> Result<Vec<u64>, StorageError> {
        match self {
            Writer::Sqlite(pool) => sqlite_feed::publish(pool, audit, batch).await,
            Writer::Postgres(pool) => postgres_feed::publish(pool, audit, batch).await,
        }
    }
}

struct Request {
    batch: Vec<NewIndicator>,
    reply: oneshot::Sender<Result<Vec<u64>, StorageError>>,
}

/// The queue of a store's publishes, served by its committer task.
pub(crate) struct PublishQueue {
    requests: mpsc::UnboundedSender<Request>,
}

impl PublishQueue {
    /// Starts the committer task (on the current tokio runtime).
    pub(crate) fn start(
        writer: Writer,
        audit: Arc<KeptEdge>,
        head: watch::Sender<u64>,
    ) -> PublishQueue {
        let (requests, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(writer, audit, head, queue));
        PublishQueue { requests }
    }

    /// Stores `batch` in the next shared transaction; returns its sequences once committed.
    pub(crate) async fn publish(&self, batch: Vec<NewIndicator>) -> Result<Vec<u64>, StorageError> {
        let stopped = || StorageError::Database("the publish committer stopped".to_string());
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request { batch, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(
    writer: Writer,
    audit: Arc<KeptEdge>,
    head: watch::Sender<u64>,
    mut queue: mpsc::UnboundedReceiver<Request>,
) {
    while let Some(first) = queue.recv().await {
        let mut rows = first.batch.len();
        let mut group = vec![first];
        while rows < GROUP_ROWS {
            match queue.try_recv() {
                Ok(request) => {
                    rows += request.batch.len();
                    group.push(request);
                }
                Err(_) => break,
            }
        }
        commit(&writer, &audit, &head, group).await;
    }
}

/// Stores `batch` in one transaction and raises the known head if it committed.
async fn publish_and_raise(
    writer: &Writer,
    audit: &KeptEdge,
    head: &watch::Sender<u64>,
    batch: &[NewIndicator],
) -> Result<Vec<u64>, StorageError> {
    let result = writer.publish(audit, batch).await;
    if let Ok(sequences) = &result
        && let Some(&last) = sequences.last()
    {
        crate::backend::raise_known_head(head, last);
    }
    result
}

async fn commit(
    writer: &Writer,
    audit: &KeptEdge,
    head: &watch::Sender<u64>,
    mut group: Vec<Request>,
) {
    if group.len() == 1 {
        let request = group.pop().expect("one request");
        let result = publish_and_raise(writer, audit, head, &request.batch).await;
        // A caller that went away still had its publish stored, as after a lost reply.
        let _ = request.reply.send(result);
        return;
    }
    let lengths: Vec<usize> = group.iter().map(|request| request.batch.len()).collect();
    let mut merged = Vec::with_capacity(lengths.iter().sum());
    let mut replies = Vec::with_capacity(group.len());
    for request in group {
        merged.extend(request.batch);
        replies.push(request.reply);
    }
    match publish_and_raise(writer, audit, head, &merged).await {
        Ok(sequences) => {
            let mut sequences = sequences.into_iter();
            for (reply, length) in replies.into_iter().zip(lengths) {
                let _ = reply.send(Ok(sequences.by_ref().take(length).collect()));
            }
        }
        Err(StorageError::Duplicate { .. }) => {
            // Refused before the commit, so nothing was stored: each publish again on its
            // own, for its own answer.
            let mut merged = merged.into_iter();
            for (reply, length) in replies.into_iter().zip(lengths) {
                let batch: Vec<NewIndicator> = merged.by_ref().take(length).collect();
                let _ = reply.send(publish_and_raise(writer, audit, head, &batch).await);
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}
