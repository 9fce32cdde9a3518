//! What a release decision leaves behind: its record (as logged and shown to auditors), the
//! one way records are made, and the sinks that receive every record.

use std::sync::Mutex;

use cordon_policy::{Channel, Decision};
use serde::Serialize;

use crate::identity::Identity;

/// One release decision, as logged and shown to auditors.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionRecord {
    /// A UUID (v7, so ids sort by time).
    pub decision_id: String,
    /// Unix time in microseconds.
    pub at_micros: i64,
    pub recipient: String,
    pub indicator_id: String,
    pub channel: Channel,
    pub policy_revision: String,
    pub allow: bool,
    pub redact: Vec<String>,
    pub reasons: Vec<String>,
    /// Why the decision failed closed, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DecisionRecord {
    /// The record of `decision`, made now under `policy_revision`, with a fresh id.
    pub fn new(
        recipient: &Identity,
        indicator_id: &str,
        channel: Channel,
        policy_revision: &str,
        decision: Decision,
    ) -> DecisionRecord {
        DecisionRecord {
            decision_id: uuid::Uuid::now_v7().to_string(),
            at_micros: crate::clock::now_micros(),
            recipient: recipient.to_string(),
            indicator_id: indicator_id.to_owned(),
            channel,
            policy_revision: policy_revision.to_owned(),
            allow: decision.allow,
            redact: decision.redact,
            reasons: decision.reasons,
            error: decision.error,
        }
    }

    /// The record that sends a retraction to a recipient that received the indicator under
    /// `released_under`: not a policy decision, but logged like one, so that the log shows
    /// everything a recipient was sent.
    pub fn retraction(
        recipient: &Identity,
        indicator_id: &str,
        channel: Channel,
        released_under: &str,
    ) -> DecisionRecord {
        let decision = Decision {
            allow: true,
            redact: Vec::new(),
            reasons: vec![format!(
                "retraction follows the indicator, released under {released_under}"
            )],
            error: None,
        };
        DecisionRecord::new(recipient, indicator_id, channel, released_under, decision)
    }
}

impl DecisionRecord {
    /// The record of a lookup of an id this gateway does not hold: a deny, stored like any
    /// other, so that asking for an absent id does the same storage work as asking for a
    /// withheld one (and the log shows who probed for what).
    pub fn absent(
        recipient: &Identity,
        indicator_id: &str,
        channel: Channel,
        policy_revision: &str,
    ) -> DecisionRecord {
        let decision = Decision {
            allow: false,
            redact: Vec::new(),
            reasons: vec!["no indicator with this id is held".into()],
            error: None,
        };
        DecisionRecord::new(recipient, indicator_id, channel, policy_revision, decision)
    }
}

/// Receives every release decision (the tracing log always does).
pub trait DecisionSink: Send + Sync {
    fn record(&self, record: &DecisionRecord);
}

/// Keeps decisions in memory; the demo uses it to show what was withheld and why.
#[derive(Debug, Default)]
pub struct MemoryDecisionSink {
    records: Mutex<Vec<DecisionRecord>>,
}

impl MemoryDecisionSink {
    pub fn records(&self) -> Vec<DecisionRecord> {
        self.records
            .lock()
            .map(|records| records.clone())
            .unwrap_or_default()
    }
}

impl DecisionSink for MemoryDecisionSink {
    fn record(&self, record: &DecisionRecord) {
        if let Ok(mut records) = self.records.lock() {
            records.push(record.clone());
        }
    }
}

/// Writes `record` to the process log: every failed-closed decision as a warning, the others
/// at debug level (one line per recipient and indicator is too much for info at volume; the
/// decision log stores every one).
pub(crate) fn trace(record: &DecisionRecord) {
    if let Some(error) = &record.error {
        tracing::warn!(
            target: "cordon::decision",
            recipient = %record.recipient,
            indicator = %record.indicator_id,
            channel = record.channel.as_str(),
            policy_revision = %record.policy_revision,
            reasons = ?record.reasons,
            error = %error,
            "release decision failed closed"
        );
    } else {
        tracing::debug!(
            target: "cordon::decision",
            recipient = %record.recipient,
            indicator = %record.indicator_id,
            channel = record.channel.as_str(),
            policy_revision = %record.policy_revision,
            allow = record.allow,
            redact = ?record.redact,
            reasons = ?record.reasons,
            "release decision"
        );
    }
}
