//! The stored decision log: every release decision is written to the
//! gateway's database before the event it decided is sent, with group commit
//! (one transaction for the decisions of all subscribers waiting at that
//! moment), a retention setting, and the OPA decision-log JSON shape for export.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cordon_storage::{DecisionRow, StorageError, Store};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::release::DecisionRecord;

/// Rows written in one transaction at most; more waiting writers go in the next.
const GROUP_COMMIT_ROWS: usize = 8192;
/// Pending write requests before writers wait (backpressure, not loss).
const QUEUE_DEPTH: usize = 1024;

struct WriteRequest {
    rows: Vec<DecisionRow>,
    done: oneshot::Sender<Result<(), StorageError>>,
}

/// A handle to the decision log writer; cheap to clone.
#[derive(Debug, Clone)]
pub struct DecisionLog {
    sender: mpsc::Sender<WriteRequest>,
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
        let (sender, receiver) = mpsc::channel(QUEUE_DEPTH);
        let task = tokio::spawn(write_loop(store, receiver, retention));
        (DecisionLog { sender }, task)
    }

    /// Stores `records`; returns once they are committed. A release must not
    /// be sent before its decision is stored: "every decision is logged".
    pub async fn write(&self, records: &[DecisionRecord]) -> Result<(), StorageError> {
        if records.is_empty() {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        let rows = records.iter().map(row_of).collect();
        self.sender
            .send(WriteRequest { rows, done })
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
) {
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
        let mut rows = first.rows;
        let mut waiting = vec![first.done];
        while rows.len() < GROUP_COMMIT_ROWS {
            match receiver.try_recv() {
                Ok(request) => {
                    rows.extend(request.rows);
                    waiting.push(request.done);
                }
                Err(_) => break,
            }
        }
        let result = store.record_decisions(&rows).await;
        if let Err(error) = &result {
            tracing::error!(%error, rows = rows.len(), "decision log write failed; the releases wait and fail");
        }
        for done in waiting {
            let _ = done.send(result.clone());
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

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as i64)
        .unwrap_or_default()
}

fn row_of(record: &DecisionRecord) -> DecisionRow {
    DecisionRow {
        decision_id: record.decision_id.clone(),
        at_micros: record.at_micros,
        recipient: record.recipient.clone(),
        indicator_id: record.indicator_id.clone(),
        channel: record.channel.as_str().to_string(),
        policy_revision: record.policy_revision.clone(),
        allow: record.allow,
        redact: record.redact.clone(),
        reasons: record.reasons.clone(),
        error: record.error.clone(),
    }
}

/// A stored decision in OPA's decision-log shape. The input is masked: only
/// the identifiers of the indicator and recipient are kept, not the
/// indicator's contents, which the log must not copy.
pub fn opa_decision_log_entry(row: &DecisionRow, gateway: &str) -> Value {
    let timestamp =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(row.at_micros) * 1000)
            .ok()
            .and_then(|at| {
                at.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
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
