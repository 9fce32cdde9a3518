//! Release of an indicator to one recipient: the hard floor that no policy can
//! loosen, then the member's Rego policy, then redaction, and a record of the
//! decision for every outcome.

use std::sync::{Arc, Mutex, RwLock};

use cordon_policy::{Decision, Policy};
use cordon_proto::v1::{Indicator, Protection, Tlp};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::identity::Identity;
use crate::redaction::RedactionSchema;

/// Where a release goes; the policy sees it as `input.context.channel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// A recipient's Subscribe or Get.
    Subscribe,
    /// A partner gateway following this one.
    Federation,
    /// An MLS circle of trusted partners.
    Circle,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Subscribe => "subscribe",
            Channel::Federation => "federation",
            Channel::Circle => "circle",
        }
    }
}

/// One release decision, as logged and shown to auditors.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionRecord {
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

/// The outcome of one release: the indicator as the recipient may see it, if at all.
#[derive(Debug)]
pub struct Release {
    pub indicator: Option<Indicator>,
    pub record: DecisionRecord,
}

/// Decides releases for one member's gateway.
pub struct Releaser {
    member: String,
    policy: RwLock<Policy>,
    schema: RedactionSchema,
    sinks: Vec<Arc<dyn DecisionSink>>,
}

impl std::fmt::Debug for Releaser {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Releaser")
            .field("member", &self.member)
            .finish_non_exhaustive()
    }
}

impl Releaser {
    pub fn new(member: String, policy: Policy, sinks: Vec<Arc<dyn DecisionSink>>) -> Releaser {
        Releaser {
            member,
            policy: RwLock::new(policy),
            schema: RedactionSchema::cordon(),
            sinks,
        }
    }

    /// The active policy (a cheap clone: one decision never sees two policies).
    pub fn policy(&self) -> Policy {
        match self.policy.read() {
            Ok(policy) => policy.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Replaces the active policy atomically.
    pub fn set_policy(&self, policy: Policy) {
        match self.policy.write() {
            Ok(mut active) => *active = policy,
            Err(poisoned) => *poisoned.into_inner() = policy,
        }
    }

    /// `input.recipient`: who the certificate says, plus what the board's data
    /// says of it (`data.recipients[id]`). The certificate's fields win, except
    /// that data may call a member an `organization`.
    pub fn recipient_input(&self, policy: &Policy, recipient: &Identity) -> Value {
        let id = recipient.to_string();
        let mut object = Map::new();
        if let Some(data) = policy.recipient_data(&id) {
            object.extend(data.clone());
        }
        let data_kind = object
            .get("kind")
            .and_then(Value::as_str)
            .map(str::to_string);
        let kind = match (recipient, data_kind.as_deref()) {
            (Identity::Member { .. }, Some("organization")) => "organization",
            _ => recipient.kind(),
        };
        object.insert("id".into(), Value::String(id));
        object.insert("kind".into(), Value::String(kind.into()));
        object.insert("member".into(), Value::String(recipient.member().into()));
        Value::Object(object)
    }

    /// Decides whether `indicator` goes to `recipient` on `channel`, and in what form.
    pub fn release(
        &self,
        indicator: &Indicator,
        recipient: &Identity,
        channel: Channel,
        now: &str,
    ) -> Release {
        let policy = self.policy();
        let (decision, released) = match self.hard_floor(indicator, recipient, channel) {
            Some(reason) => (
                Decision {
                    allow: false,
                    redact: Vec::new(),
                    reasons: vec![reason],
                    error: None,
                },
                None,
            ),
            None => self.decide_with_policy(&policy, indicator, recipient, channel, now),
        };
        let record = DecisionRecord {
            recipient: recipient.to_string(),
            indicator_id: indicator.id.clone(),
            channel,
            policy_revision: policy.revision().to_string(),
            allow: decision.allow,
            redact: decision.redact,
            reasons: decision.reasons,
            error: decision.error,
        };
        Release {
            indicator: released,
            record,
        }
    }

    /// Records a decision in the log and every sink.
    pub fn record(&self, record: &DecisionRecord) {
        tracing::info!(
            target: "cordon::decision",
            recipient = %record.recipient,
            indicator = %record.indicator_id,
            channel = record.channel.as_str(),
            policy_revision = %record.policy_revision,
            allow = record.allow,
            redact = ?record.redact,
            reasons = ?record.reasons,
            error = record.error.as_deref().unwrap_or(""),
            "release decision"
        );
        for sink in &self.sinks {
            sink.record(record);
        }
    }

    /// The rules of DESIGN.md's trust model that hold whatever the policy says.
    fn hard_floor(
        &self,
        indicator: &Indicator,
        recipient: &Identity,
        channel: Channel,
    ) -> Option<String> {
        if indicator.protection == Protection::SourceProtected as i32 && channel != Channel::Circle
        {
            return Some(
                "hard floor: a source-protected indicator leaves its origin only inside a circle"
                    .into(),
            );
        }
        let from_another_member = indicator.originator != self.member;
        let stays_with_receiver = indicator.no_reshare
            || [Tlp::Amber, Tlp::AmberStrict, Tlp::Red]
                .iter()
                .any(|label| indicator.tlp == *label as i32);
        if from_another_member && stays_with_receiver && !recipient.is_agency_of(&self.member) {
            return Some(format!(
                "hard floor: third-party rule: {} from {} stays with {}",
                handling_label(indicator),
                indicator.originator,
                self.member
            ));
        }
        None
    }

    fn decide_with_policy(
        &self,
        policy: &Policy,
        indicator: &Indicator,
        recipient: &Identity,
        channel: Channel,
        now: &str,
    ) -> (Decision, Option<Indicator>) {
        let mut indicator_json = match serde_json::to_value(indicator) {
            Ok(value) => value,
            Err(error) => {
                return (
                    fail_closed(format!("indicator does not encode as JSON: {error}")),
                    None,
                );
            }
        };
        let input = json!({
            "indicator": indicator_json,
            "recipient": self.recipient_input(policy, recipient),
            "context": {"gateway": self.member, "channel": channel.as_str(), "now": now},
        });
        let decision = policy.decide(&input);
        if !decision.allow {
            return (decision, None);
        }
        if decision.redact.is_empty() {
            return (decision, Some(indicator.clone()));
        }
        if let Err(error) = self.schema.apply(&mut indicator_json, &decision.redact) {
            return (fail_closed_keeping(decision, error.to_string()), None);
        }
        match serde_json::from_value::<Indicator>(indicator_json) {
            Ok(redacted) => (decision, Some(redacted)),
            Err(error) => (
                fail_closed_keeping(
                    decision,
                    format!("redacted indicator does not decode: {error}"),
                ),
                None,
            ),
        }
    }
}

fn fail_closed(error: String) -> Decision {
    Decision {
        allow: false,
        redact: Vec::new(),
        reasons: vec!["policy failed: denied".into()],
        error: Some(error),
    }
}

fn fail_closed_keeping(decision: Decision, error: String) -> Decision {
    let mut reasons = decision.reasons;
    reasons.push(format!("denied: {error}"));
    Decision {
        allow: false,
        redact: decision.redact,
        reasons,
        error: Some(error),
    }
}

/// `TLP:AMBER`, `TLP:RED, no_reshare`, … for reasons shown to people.
pub fn handling_label(indicator: &Indicator) -> String {
    let tlp = match Tlp::try_from(indicator.tlp).unwrap_or(Tlp::Unspecified) {
        Tlp::Clear => "TLP:CLEAR",
        Tlp::Green => "TLP:GREEN",
        Tlp::Amber => "TLP:AMBER",
        Tlp::AmberStrict => "TLP:AMBER+STRICT",
        Tlp::Red => "TLP:RED",
        Tlp::Unspecified => "TLP unset",
    };
    if indicator.no_reshare {
        format!("{tlp}, no_reshare")
    } else {
        tlp.to_string()
    }
}
