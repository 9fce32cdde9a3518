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
use crate::backend::HeadGate;
use crate::decisions::WithPublish;
use crate::error::StorageError;
use crate::feed::{direct, postgres_feed, sqlite_feed};
use crate::model::{DecisionRow, NewIndicator};

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
        decided: &WithPublish,
    ) -> Result<Vec<u64>, StorageError> {
        match self {
            // In one hand-off, unless the audit edge must be read first.
            Writer::Sqlite(pool) => match direct::publish(pool, audit, batch, decided).await? {
                direct::Published::Committed(sequences) => Ok(sequences),
                direct::Published::EdgeNotHeld => {
                    sqlite_feed::publish(pool, audit, batch, decided).await
                }
            },
            Writer::Postgres(pool) => postgres_feed::publish(pool, audit, batch, decided).await,
        }
    }
}

/// Called with a publish's sequences once it has committed, before the feed head moves past
/// them (so before any reader of the feed can see them).
pub type OnCommit = Box<dyn FnOnce(&[u64]) + Send>;

/// One caller's publish: its indicators, the release decisions to store with them, and what to
/// do on commit.
pub(crate) struct Publish {
    pub batch: Vec<NewIndicator>,
    pub decisions: Vec<DecisionRow>,
    pub on_commit: Option<OnCommit>,
}

struct Request {
    publish: Publish,
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
        gate: Arc<HeadGate>,
    ) -> PublishQueue {
        let (requests, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(writer, audit, head, gate, queue));
        PublishQueue { requests }
    }

    /// Stores `publish` in the next shared transaction; returns its sequences once committed.
    pub(crate) async fn publish(&self, publish: Publish) -> Result<Vec<u64>, StorageError> {
        let stopped = || StorageError::Database("the publish committer stopped".to_string());
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request { publish, reply })
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(
    writer: Writer,
    audit: Arc<KeptEdge>,
    head: watch::Sender<u64>,
    gate: Arc<HeadGate>,
    mut queue: mpsc::UnboundedReceiver<Request>,
) {
    while let Some(first) = queue.recv().await {
        let mut rows = first.publish.batch.len();
        let mut group = vec![first];
        while rows < GROUP_ROWS {
            match queue.try_recv() {
                Ok(request) => {
                    rows += request.publish.batch.len();
                    group.push(request);
                }
                Err(_) => break,
            }
        }
        let _held = gate.hold(&head);
        commit(&writer, &audit, &head, group).await;
    }
}

/// Stores one caller's publish in a transaction of its own and answers it.
async fn commit_alone(
    writer: &Writer,
    audit: &KeptEdge,
    head: &watch::Sender<u64>,
    request: Request,
) {
    let Publish {
        batch,
        decisions,
        on_commit,
    } = request.publish;
    let decided = WithPublish::single(batch.len(), decisions);
    let result = writer.publish(audit, &batch, &decided).await;
    if let Ok(sequences) = &result {
        if let Some(on_commit) = on_commit {
            on_commit(sequences);
        }
        if let Some(&last) = sequences.last() {
            crate::backend::raise_known_head(head, last);
        }
    }
    // A caller that went away still had its publish stored, as after a lost reply.
    let _ = request.reply.send(result);
}

async fn commit(
    writer: &Writer,
    audit: &KeptEdge,
    head: &watch::Sender<u64>,
    mut group: Vec<Request>,
) {
    if group.len() == 1 {
        let request = group.pop().expect("one request");
        commit_alone(writer, audit, head, request).await;
        return;
    }
    let mut merged = Vec::with_capacity(group.iter().map(|r| r.publish.batch.len()).sum());
    let mut decided = WithPublish::default();
    let mut waiting = Vec::with_capacity(group.len());
    for request in group {
        let Publish {
            batch,
            decisions,
            on_commit,
        } = request.publish;
        let length = batch.len();
        decided.push(length, decisions);
        merged.extend(batch);
        waiting.push((length, on_commit, request.reply));
    }
    match writer.publish(audit, &merged, &decided).await {
        Ok(sequences) => {
            let mut replies = Vec::with_capacity(waiting.len());
            let mut rest = sequences.as_slice();
            for (length, on_commit, reply) in waiting {
                let (own, after) = rest.split_at(length.min(rest.len()));
                rest = after;
                if let Some(on_commit) = on_commit {
                    on_commit(own);
                }
                replies.push((reply, own.to_vec()));
            }
            if let Some(&last) = sequences.last() {
                crate::backend::raise_known_head(head, last);
            }
            for (reply, own) in replies {
                let _ = reply.send(Ok(own));
            }
        }
        Err(StorageError::Duplicate { .. }) => {
            // Refused before the commit, so nothing was stored: each publish again on its
            // own, for its own answer.
            let mut merged = merged.into_iter();
            let mut rows = decided.rows.into_iter();
            for ((length, on_commit, reply), (_, range)) in waiting.into_iter().zip(decided.parts) {
                let batch: Vec<NewIndicator> = merged.by_ref().take(length).collect();
                let decisions: Vec<DecisionRow> = rows.by_ref().take(range.len()).collect();
                let publish = Publish {
                    batch,
                    decisions,
                    on_commit,
                };
                commit_alone(writer, audit, head, Request { publish, reply }).await;
            }
        }
        Err(error) => {
            for (_, _, reply) in waiting {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}
