//! Release of an indicator to one recipient: the hard floor that no policy can
//! loosen, then the member's Rego policy, then redaction, and a record of the
//! decision for every outcome.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use cordon_policy::{Decision, Policy};
use cordon_proto::v1::{Indicator, Protection, Tlp};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::identity::Identity;
use crate::metrics::{Metrics, Outcome};
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
    counters: DecisionCounters,
    metrics: Arc<Metrics>,
}

/// Counts of decisions since start, for `cordon policy status` (the admin
/// listener's `cordon_release_decisions_total` counts the same decisions by
/// outcome and channel).
#[derive(Debug, Default)]
pub struct DecisionCounters {
    pub total: AtomicU64,
    pub allowed: AtomicU64,
    /// Denied because the policy or redaction failed (undefined, error,
    /// time-out, bad shape, bad redaction path), not because it said no.
    pub failed_closed: AtomicU64,
    /// Denied by the hard floor before the policy ran.
    pub hard_floor: AtomicU64,
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
        Releaser::with_metrics(member, policy, sinks, Arc::new(Metrics::new()))
    }

    /// A releaser that counts and times its decisions in `metrics`.
    pub fn with_metrics(
        member: String,
        policy: Policy,
        sinks: Vec<Arc<dyn DecisionSink>>,
        metrics: Arc<Metrics>,
    ) -> Releaser {
        Releaser {
            member,
            policy: RwLock::new(policy),
            schema: RedactionSchema::cordon(),
            sinks,
            counters: DecisionCounters::default(),
            metrics,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn member(&self) -> &str {
        &self.member
    }

    pub fn counters(&self) -> &DecisionCounters {
        &self.counters
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

    /// Decides whether `indicator` goes to `recipient` on `channel`, and in what form.
    pub fn release(
        &self,
        indicator: &Indicator,
        recipient: &Identity,
        channel: Channel,
        now: &str,
    ) -> Release {
        let started = Instant::now();
        // A source-protected indicator held here (published in or received through a
        // circle) goes to this member's own agencies only if the policy allows it inside
        // the circle; the hard floor keeps it from everyone else.
        let channel = if indicator.protection == Protection::SourceProtected as i32
            && recipient.is_agency_of(&self.member)
        {
            Channel::Circle
        } else {
            channel
        };
        // One clone of the active policy per decision: a reload in the middle
        // of it cannot mix two revisions.
        let policy = self.policy();
        let mut outcome = Outcome::HardFloor;
        let (decision, released) = match self.hard_floor(indicator, recipient, channel) {
            Some(reason) => {
                self.counters.hard_floor.fetch_add(1, Ordering::Relaxed);
                (Decision::deny(reason), None)
            }
            None => {
                let decided = self.decide_with_policy(&policy, indicator, recipient, channel, now);
                outcome = if decided.0.error.is_some() {
                    Outcome::FailedClosed
                } else if decided.0.allow {
                    Outcome::Allowed
                } else {
                    Outcome::Denied
                };
                decided
            }
        };
        self.metrics.decision(outcome, channel, started.elapsed());
        self.counters.total.fetch_add(1, Ordering::Relaxed);
        if decision.allow {
            self.counters.allowed.fetch_add(1, Ordering::Relaxed);
        }
        if decision.error.is_some() {
            self.counters.failed_closed.fetch_add(1, Ordering::Relaxed);
        }
        let record = DecisionRecord {
            decision_id: uuid::Uuid::now_v7().to_string(),
            at_micros: crate::service::now_micros(),
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
        // Every decision is stored in the decision log; the process log carries
        // each one at debug level (one line per recipient and indicator is too
        // much for info at volume) and every failed-closed one as a warning.
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
        let protected = indicator.protection == Protection::SourceProtected as i32;
        if protected
            && matches!(recipient, Identity::Agency { .. })
            && !recipient.is_agency_of(&self.member)
        {
            return Some(
                "hard floor: a source-protected indicator never reaches another member's agencies"
                    .into(),
            );
        }
        if protected && channel != Channel::Circle {
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
        let leaves_member = !recipient.is_agency_of(&self.member);
        if from_another_member && stays_with_receiver && leaves_member {
            return Some(format!(
                "hard floor: third-party rule: {} from {} stays with {}",
                handling_label(indicator),
                indicator.originator,
                self.member
            ));
        }
        // The originator named who may have it (a member named covers its agencies): no one
        // else gets it, here or anywhere it travels, except the originator's own agencies.
        if !indicator.releasable_to.is_empty()
            && !recipient.is_agency_of(&indicator.originator)
            && !indicator
                .releasable_to
                .iter()
                .any(|named| *named == recipient.to_string() || named == recipient.member())
        {
            return Some(format!(
                "hard floor: {} named its recipients in releasableTo and {recipient} is not one",
                indicator.originator
            ));
        }
        // A gateway never needs its own indicators back: cycles end here.
        if from_another_member
            && matches!(recipient, Identity::Member { .. })
            && recipient.member() == indicator.originator
        {
            return Some(format!(
                "hard floor: not sent back to its originator {}",
                indicator.originator
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
        let indicator_json = match serde_json::to_value(indicator) {
            Ok(value) => value,
            Err(error) => {
                return (
                    fail_closed(format!("indicator does not encode as JSON: {error}")),
                    None,
                );
            }
        };
        let mut input = policy_input(
            policy,
            indicator_json,
            recipient,
            &self.member,
            channel,
            now,
        );
        let decision = policy.decide(&input);
        if !decision.allow {
            return (decision, None);
        }
        if decision.redact.is_empty() {
            return (decision, Some(indicator.clone()));
        }
        if matches!(recipient, Identity::Member { .. }) {
            // A partner gateway stores only what it can verify against the
            // originator's signature over the whole indicator.
            return (
                fail_closed_keeping(
                    decision,
                    "redaction is not possible for a partner gateway: it must verify the originator's signature over the whole indicator".into(),
                ),
                None,
            );
        }
        // The input is done with: redact its copy of the indicator rather than clone it
        // for every decision.
        let mut indicator_json = input["indicator"].take();
        if let Err(error) = self.schema.apply(&mut indicator_json, &decision.redact) {
            return (fail_closed_keeping(decision, error.to_string()), None);
        }
        match serde_json::from_value::<Indicator>(indicator_json) {
            Ok(mut redacted) => {
                // The originator's signature covers the fields just removed: kept,
                // it would let a recipient confirm guesses of them offline, and it
                // could never verify anyway.
                redacted.signature = None;
                (decision, Some(redacted))
            }
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

/// `input.recipient`: who the certificate says, plus what the board's data
/// says of it (`data.recipients[id]`). The certificate's fields win, except
/// that data may call a member an `organization`.
pub fn recipient_input(policy: &Policy, recipient: &Identity) -> Value {
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

/// The full policy input for one release.
pub fn policy_input(
    policy: &Policy,
    indicator_json: Value,
    recipient: &Identity,
    member: &str,
    channel: Channel,
    now: &str,
) -> Value {
    json!({
        "indicator": indicator_json,
        "recipient": recipient_input(policy, recipient),
        "context": {"gateway": member, "channel": channel.as_str(), "now": now},
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use cordon_proto::v1::{Source, Vessel, indicator};

    fn policy(decision: &str) -> Policy {
        let module = format!("package cordon.outbound\nimport rego.v1\n{decision}\n");
        Policy::from_modules(
            vec![("test.rego".into(), module)],
            json!({}),
            "test-revision".into(),
        )
        .unwrap()
    }

    fn indicator(originator: &str, tlp: Tlp) -> Indicator {
        Indicator {
            id: "0196f1a2-0000-7000-8000-000000000001".into(),
            originator: originator.into(),
            tlp: tlp as i32,
            source: Some(Source {
                description: "informant".into(),
                ..Default::default()
            }),
            signature: Some(cordon_proto::v1::Signature {
                key_id: "GH:00".into(),
                signature: vec![7; 64],
            }),
            kind: Some(indicator::Kind::Vessel(Vessel {
                imo: "9234563".into(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn check(
        decision: &str,
        subject: Indicator,
        recipient: &str,
        expect_allow: bool,
        expect_error: bool,
    ) -> Release {
        let releaser = Releaser::new("GH".into(), policy(decision), Vec::new());
        let recipient = Identity::parse(recipient).unwrap();
        let release = releaser.release(
            &subject,
            &recipient,
            Channel::Subscribe,
            "2026-11-25T00:00:00Z",
        );
        assert_eq!(
            release.record.allow, expect_allow,
            "{decision}: {:?}",
            release.record
        );
        assert_eq!(release.indicator.is_some(), expect_allow);
        assert_eq!(
            release.record.error.is_some(),
            expect_error,
            "{decision}: {:?}",
            release.record
        );
        let failed = releaser.counters().failed_closed.load(Ordering::Relaxed);
        assert_eq!(failed, u64::from(expect_error));
        release
    }

    #[test]
    fn redactions_are_applied_and_bad_paths_deny() {
        let allow_all = r#"decision := {"allow": true, "redact": ["source"], "reasons": ["ok"]}"#;
        let release = check(
            allow_all,
            indicator("GH", Tlp::Green),
            "NG/customs",
            true,
            false,
        );
        let released = release.indicator.unwrap();
        assert!(released.source.is_none(), "redacted field must be absent");
        assert!(
            released.signature.is_none(),
            "a signature over removed fields must not travel"
        );
        assert_eq!(released.id, "0196f1a2-0000-7000-8000-000000000001");

        check(
            r#"decision := {"allow": true, "redact": ["sauce"], "reasons": []}"#,
            indicator("GH", Tlp::Green),
            "NG/customs",
            false,
            true,
        );
        check(
            r#"decision := {"allow": true, "redact": ["id"], "reasons": []}"#,
            indicator("GH", Tlp::Green),
            "NG/customs",
            false,
            true,
        );
        check(
            r#"decision := {"allow": "yes", "redact": [], "reasons": []}"#,
            indicator("GH", Tlp::Green),
            "NG/customs",
            false,
            true,
        );
        check(
            r#"decision := x if { x := input.nothing }"#,
            indicator("GH", Tlp::Green),
            "NG/customs",
            false,
            true,
        );
    }

    #[test]
    fn the_hard_floor_holds_whatever_the_policy_says() {
        let allow_all =
            r#"decision := {"allow": true, "redact": [], "reasons": ["policy says yes"]}"#;
        // Received from NG under AMBER: stays with GH's own agencies.
        check(allow_all, indicator("NG", Tlp::Amber), "CI", false, false);
        check(
            allow_all,
            indicator("NG", Tlp::Red),
            "SN/police",
            false,
            false,
        );
        check(
            allow_all,
            indicator("NG", Tlp::Amber),
            "GH/customs",
            true,
            false,
        );
        // GREEN from another member may travel on when the policy allows.
        check(allow_all, indicator("NG", Tlp::Green), "CI", true, false);
        let mut no_reshare = indicator("NG", Tlp::Green);
        no_reshare.no_reshare = true;
        check(allow_all, no_reshare, "CI", false, false);
        // Source-protected never reaches a partner gateway or another member's agency
        // outside a circle; own agencies get it if the policy allows it in the circle.
        let mut protected = indicator("GH", Tlp::Clear);
        protected.protection = Protection::SourceProtected as i32;
        let release = check(allow_all, protected.clone(), "NG", false, false);
        assert!(release.record.reasons[0].starts_with("hard floor"));
        let release = check(allow_all, protected.clone(), "NG/customs", false, false);
        assert!(release.record.reasons[0].starts_with("hard floor"));
        let release = check(allow_all, protected, "GH/customs", true, false);
        assert_eq!(release.record.channel, Channel::Circle);
    }

    #[test]
    fn decisions_are_counted_by_outcome_and_channel() {
        use crate::metrics::Outcome;
        let metrics = Arc::new(Metrics::new());
        let decide = |decision: &str, subject: &Indicator, recipient: &str, channel: Channel| {
            let releaser =
                Releaser::with_metrics("GH".into(), policy(decision), Vec::new(), metrics.clone());
            releaser
                .release(
                    subject,
                    &Identity::parse(recipient).unwrap(),
                    channel,
                    "2026-11-25T00:00:00Z",
                )
                .record
        };
        let allow_all = r#"decision := {"allow": true, "redact": [], "reasons": ["yes"]}"#;
        let deny_all = r#"decision := {"allow": false, "redact": [], "reasons": ["no"]}"#;
        let undefined = r#"decision := x if { x := input.nothing }"#;
        let green = indicator("GH", Tlp::Green);
        assert!(decide(allow_all, &green, "NG/customs", Channel::Subscribe).allow);
        assert!(decide(allow_all, &green, "NG/customs", Channel::Subscribe).allow);
        assert!(!decide(deny_all, &green, "NG", Channel::Federation).allow);
        assert!(!decide(undefined, &green, "NG/customs", Channel::Subscribe).allow);
        let amber = indicator("NG", Tlp::Amber);
        assert!(!decide(allow_all, &amber, "SN", Channel::Federation).allow);
        let count = |outcome, channel| metrics.decisions(outcome, channel);
        assert_eq!(count(Outcome::Allowed, Channel::Subscribe), 2);
        assert_eq!(count(Outcome::Denied, Channel::Federation), 1);
        assert_eq!(count(Outcome::FailedClosed, Channel::Subscribe), 1);
        assert_eq!(count(Outcome::HardFloor, Channel::Federation), 1);
        assert_eq!(count(Outcome::Denied, Channel::Subscribe), 0);
        let text = metrics.encode();
        assert!(
            text.lines()
                .any(|line| line == "cordon_policy_decision_seconds_count 5"),
            "{text}"
        );
    }

    #[test]
    fn the_federation_channel_keeps_signatures_and_ends_cycles() {
        let allow_all = r#"decision := {"allow": true, "redact": [], "reasons": ["yes"]}"#;
        let redact = r#"decision := {"allow": true, "redact": ["source"], "reasons": ["yes"]}"#;
        let federate = |decision: &str, subject: &Indicator, recipient: &str| {
            let releaser = Releaser::new("GH".into(), policy(decision), Vec::new());
            releaser.release(
                subject,
                &Identity::parse(recipient).unwrap(),
                Channel::Federation,
                "2026-11-25T00:00:00Z",
            )
        };
        let release = federate(allow_all, &indicator("GH", Tlp::Green), "NG");
        assert!(release.record.allow);
        assert!(release.indicator.unwrap().signature.is_some());
        // A redaction would break the signature the partner must verify: deny.
        let release = federate(redact, &indicator("GH", Tlp::Green), "NG");
        assert!(!release.record.allow);
        assert!(release.record.error.unwrap().contains("partner gateway"));
        // Received from NG: never sent back to NG's gateway.
        let release = federate(allow_all, &indicator("NG", Tlp::Green), "NG");
        assert!(!release.record.allow);
        assert!(release.record.reasons[0].contains("originator"));
        assert!(
            federate(allow_all, &indicator("NG", Tlp::Green), "CI")
                .record
                .allow
        );
        // The originator's releasableTo bounds onward sharing.
        let mut named = indicator("NG", Tlp::Green);
        named.releasable_to = vec!["GH".into(), "SN/police".into()];
        assert!(!federate(allow_all, &named, "CI").record.allow);
        let releaser = Releaser::new("GH".into(), policy(allow_all), Vec::new());
        for (recipient, allowed) in [
            ("SN/police", true),
            ("SN", false),
            // GH is named, and so are its agencies; NG's own agencies always are.
            ("GH/customs", true),
            ("NG/police", true),
            ("CI/customs", false),
        ] {
            let release = releaser.release(
                &named,
                &Identity::parse(recipient).unwrap(),
                Channel::Subscribe,
                "2026-11-25T00:00:00Z",
            );
            assert_eq!(
                release.record.allow, allowed,
                "{recipient}: {:?}",
                release.record
            );
        }
        // At the originator too: GH's own indicator naming NG reaches NG, NG's agencies and
        // GH's own agencies, and no one else, whatever the policy says.
        let mut own = indicator("GH", Tlp::Green);
        own.releasable_to = vec!["NG".into()];
        for (recipient, allowed) in [
            ("NG", true),
            ("NG/customs", true),
            ("GH/police", true),
            ("SN", false),
            ("SN/police", false),
        ] {
            let release = releaser.release(
                &own,
                &Identity::parse(recipient).unwrap(),
                Channel::Subscribe,
                "2026-11-25T00:00:00Z",
            );
            assert_eq!(
                release.record.allow, allowed,
                "{recipient}: {:?}",
                release.record
            );
        }
    }
}
