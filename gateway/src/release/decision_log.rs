//! The stored decision log: every release decision is written to the
//! gateway's database before the event it decided is sent, with group commit
//! (one transaction for the decisions of all subscribers waiting at that
//! moment), a retention setting, and the OPA decision-log JSON shape for export.

use std::sync::Arc;
use std::time::Duration;

use cordon_storage::{DecidedPage, DecisionRow, StorageError, Store};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::clock::{now_micros, rfc3339_of_micros};
use crate::metrics::{Metrics, StorageOperation};
use crate::release::DecisionRecord;

/// Rows written in one transaction at most; more waiting writers go in the next.
const GROUP_COMMIT_ROWS: usize = 8192;
/// Pending write requests before writers wait (backpressure, not loss).
const QUEUE_DEPTH: usize = 1024;

struct WriteRequest {
    rows: Vec<DecisionRow>,
    pages: Vec<DecidedPage>,
    done: oneshot::Sender<Result<(), StorageError>>,
}

/// A handle to the decision log writer; cheap to clone.
#[derive(Debug, Clone)]
pub struct DecisionLog {
    sender: mpsc::Sender<WriteRequest>,
    retention: Option<Duration>,
}

impl std::fmt::Debug for WriteRequest {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("WriteRequest")
            .field("rows", &self.rows.len())
            .finish()
    }
}

impl DecisionLog {
    /// Starts the writer and, when `retention` is set, the purge of older decisions.
    pub fn start(store: Store, retention: Option<Duration>) -> (DecisionLog, JoinHandle<()>) {
        DecisionLog::start_with_metrics(store, retention, Arc::new(Metrics::new()))
    }

    /// Like [`DecisionLog::start`], timing every commit in `metrics`.
    pub fn start_with_metrics(
        store: Store,
        retention: Option<Duration>,
        metrics: Arc<Metrics>,
    ) -> (DecisionLog, JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
        let task = tokio::spawn(write_loop(store, receiver, retention, metrics));
        (DecisionLog { sender, retention }, task)
    }

    /// How old a stored decision may be and still stand for the same decision made again
    /// (a re-read of a page under the same revision): an hour, or half the retention if that
    /// is shorter, so that a release's decision outlives it by nearly the whole retention and
    /// the purge never removes one between its look-up and the send.
    pub fn reuse_window(&self) -> Duration {
        const AN_HOUR: Duration = Duration::from_secs(3600);
        self.retention
            .map_or(AN_HOUR, |retention| AN_HOUR.min(retention / 2))
    }

    /// Stores `records`; returns once they are committed. A release must not
    /// be sent before its decision is stored: "every decision is logged".
    pub async fn write(&self, records: &[DecisionRecord]) -> Result<(), StorageError> {
        self.write_page(records, Vec::new()).await
    }

    /// Like [`DecisionLog::write`], noting the feed pages the records decide (see
    /// [`pages_of`]), so that a re-read of those events finds them.
    pub async fn write_page(
        &self,
        records: &[DecisionRecord],
        pages: Vec<DecidedPage>,
    ) -> Result<(), StorageError> {
        if records.is_empty() {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        let rows = records.iter().map(row_of).collect();
        self.sender
            .send(WriteRequest { rows, pages, done })
            .await
            .map_err(|_| StorageError::Unavailable("decision log writer stopped".into()))?;
        wait.await
            .map_err(|_| StorageError::Unavailable("decision log writer stopped".into()))?
    }
}

async fn write_loop(
    store: Store,
    mut receiver: mpsc::Receiver<WriteRequest>,
    retention: Option<Duration>,
    metrics: Arc<Metrics>,
) {
    let record = async |rows: &[DecisionRow], pages: &[DecidedPage]| {
        metrics
            .time_storage(
                StorageOperation::Decisions,
                store.record_page_decisions(rows, pages),
            )
            .await
    };
    let mut purge = tokio::time::interval(Duration::from_secs(3600));
    loop {
        let first = tokio::select! {
            request = receiver.recv() => match request {
                Some(request) => request,
                None => return,
            },
            _ = purge.tick(), if retention.is_some() => {
                if let Some(retention) = retention {
                    purge_older_than(&store, retention).await;
                }
                continue;
            }
        };
        // Group commit: take whatever else is already waiting.
        let mut batch = vec![first];
        let mut rows = batch[0].rows.len();
        while rows < GROUP_COMMIT_ROWS {
            match receiver.try_recv() {
                Ok(request) => {
                    rows += request.rows.len();
                    batch.push(request);
                }
                Err(_) => break,
            }
        }
        let all_rows: Vec<DecisionRow> = batch
            .iter()
            .flat_map(|request| request.rows.iter().cloned())
            .collect();
        let all_pages: Vec<DecidedPage> = batch
            .iter()
            .flat_map(|request| request.pages.iter().cloned())
            .collect();
        match record(&all_rows, &all_pages).await {
            Ok(()) => {
                for request in batch {
                    let _ = request.done.send(Ok(()));
                }
            }
            // One request's bad rows must not fail everyone else's releases:
            // write each request alone and answer each with its own result.
            Err(error) if batch.len() > 1 => {
                tracing::warn!(%error, requests = batch.len(), "group commit failed; writing requests one by one");
                for request in batch {
                    let result = record(&request.rows, &request.pages).await;
                    if let Err(error) = &result {
                        tracing::error!(%error, rows = request.rows.len(), "decision log write failed; those releases fail");
                    }
                    let _ = request.done.send(result);
                }
            }
            Err(error) => {
                tracing::error!(%error, rows = all_rows.len(), "decision log write failed; those releases fail");
                for request in batch {
                    let _ = request.done.send(Err(error.clone()));
                }
            }
        }
    }
}

async fn purge_older_than(store: &Store, retention: Duration) {
    let cutoff = now_micros() - retention.as_micros() as i64;
    match store.purge_decisions_before(cutoff).await {
        Ok(0) => {}
        Ok(count) => tracing::info!(count, "purged decisions past retention"),
        Err(error) => tracing::warn!(%error, "purging old decisions failed"),
    }
}

/// PostgreSQL text cannot hold NUL; a policy's reasons or a bundle's revision
/// could contain one, and the decision must still be stored.
fn text(value: &str) -> String {
    value.replace('\0', "\u{FFFD}")
}

/// The pages the records decide on the feed's events after `after` up to `to`: one per
/// recipient and policy revision among them.
pub fn pages_of(records: &[DecisionRecord], after: u64, to: u64) -> Vec<DecidedPage> {
    let mut pages: Vec<DecidedPage> = records
        .iter()
        .map(|record| DecidedPage {
            recipient: record.recipient.clone(),
            policy_revision: text(&record.policy_revision),
            after,
            to,
        })
        .collect();
    pages.sort();
    pages.dedup();
    pages
}

/// The row the log stores for `record`.
pub fn row_of(record: &DecisionRecord) -> DecisionRow {
    DecisionRow {
        decision_id: record.decision_id.clone(),
        at_micros: record.at_micros,
        recipient: record.recipient.clone(),
        indicator_id: record.indicator_id.clone(),
        channel: record.channel.as_str().to_string(),
        policy_revision: text(&record.policy_revision),
        allow: record.allow,
        redact: record.redact.iter().map(|path| text(path)).collect(),
        reasons: record.reasons.iter().map(|reason| text(reason)).collect(),
        error: record.error.as_deref().map(text),
    }
}

/// A stored decision in OPA's decision-log shape. The input is masked: only
/// the identifiers of the indicator and recipient are kept, not the
/// indicator's contents, which the log must not copy.
pub fn opa_decision_log_entry(row: &DecisionRow, gateway: &str) -> Value {
    let timestamp = rfc3339_of_micros(row.at_micros);
    let mut result = json!({"allow": row.allow, "redact": row.redact, "reasons": row.reasons});
    if let Some(error) = &row.error {
        result["error"] = Value::String(error.clone());
    }
    json!({
        "decision_id": row.decision_id,
        "path": "cordon/outbound/decision",
        "labels": {"gateway": gateway, "app": "cordon"},
        "bundles": {"cordon": {"revision": row.policy_revision}},
        "input": {
            "indicator": {"id": row.indicator_id},
            "recipient": {"id": row.recipient},
            "context": {"gateway": gateway, "channel": row.channel},
        },
        "erased": ["/input/indicator"],
        "result": result,
        "timestamp": timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cordon_policy::Channel;
    use cordon_storage::DecisionQuery;

    fn record(id: &str, reason: &str) -> DecisionRecord {
        DecisionRecord {
            decision_id: id.into(),
            at_micros: 1_790_000_000_000_000,
            recipient: "NG".into(),
            indicator_id: "0196f1a2-0000-7000-8000-000000000001".into(),
            channel: Channel::Subscribe,
            policy_revision: "sha256:x".into(),
            allow: true,
            redact: Vec::new(),
            reasons: vec![reason.into()],
            error: None,
        }
    }

    #[tokio::test]
    async fn one_bad_request_does_not_fail_the_others_in_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::connect(&format!("sqlite:{}", dir.path().join("d.db").display()))
            .await
            .unwrap();
        let (log, _writer) = DecisionLog::start(store.clone(), None);
        let first = "0196f1a2-0000-7000-8000-0000000000a1";
        log.write(&[record(first, "first")]).await.unwrap();
        // Queue both before the writer runs, so that they can share one transaction.
        let repeated = "0196f1a2-0000-7000-8000-0000000000a3";
        let duplicate = [record(repeated, "once"), record(repeated, "twice")];
        let fresh = [record(
            "0196f1a2-0000-7000-8000-0000000000a2",
            "with a NUL \0 inside",
        )];
        let (bad, good) = tokio::join!(log.write(&duplicate), log.write(&fresh));
        assert!(bad.is_err(), "a duplicate decision id must fail");
        good.unwrap();
        let stored = store
            .decisions(&DecisionQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(stored.len(), 2);
        assert_eq!(
            stored[1].reasons,
            vec!["with a NUL \u{FFFD} inside".to_string()]
        );
    }
}
