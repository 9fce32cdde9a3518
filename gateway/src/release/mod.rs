//! Release of an indicator to one recipient: the hard floor that no policy can loosen, then
//! the member's Rego policy, then redaction, and a record of the decision for every outcome.
//!
//! This room owns what a recipient may see. It never sends anything itself: the feed, the
//! federation's followers and the circles ask it, and store its records in the decision log
//! ([`decision_log`]) before they send what it released.

pub mod decision_log;
mod hard_floor;
mod prepared;
mod record;
pub mod redaction;

use std::sync::{Arc, RwLock};
use std::time::Instant;

use cordon_indicator::disclosure::{self, SIGNATURE_VERSION};
use cordon_policy::{Channel, Decision, InputContext, Policy};
use cordon_proto::v1::{Indicator, Protection};

use crate::identity::Identity;
use crate::metrics::{Metrics, Outcome};
pub use decision_log::{DecisionLog, pages_of, row_of};
pub use hard_floor::{channel_for, handling_label, hard_floor};
pub use prepared::Prepared;
use prepared::without_commitments;
pub use record::{DecisionRecord, DecisionSink, MemoryDecisionSink};
use redaction::RedactionSchema;

/// The outcome of one release: the indicator as the recipient may see it, if at all.
#[derive(Debug)]
pub struct Release {
    pub indicator: Option<Indicator>,
    pub record: DecisionRecord,
}

impl Release {
    /// The paths withheld from what is released, by path, never by value: those this
    /// gateway's policy redacted, then those withheld before the indicator reached it (its
    /// commitments without salts) that the policy's paths do not already name.
    pub fn withheld(&self) -> Vec<String> {
        match &self.indicator {
            Some(indicator) => withheld(&self.record.redact, indicator),
            None => self.record.redact.clone(),
        }
    }
}

/// The paths withheld from `visible`, released with `redacted` removed by this gateway's
/// policy: those, then the ones withheld before it reached this gateway (see
/// [`Release::withheld`]).
pub fn withheld(redacted: &[String], visible: &Indicator) -> Vec<String> {
    let mut paths = redacted.to_vec();
    for path in disclosure::withheld_paths(visible) {
        let named = paths.iter().any(|named| {
            path == *named
                || path
                    .strip_prefix(named.as_str())
                    .is_some_and(|rest| rest.starts_with('.'))
        });
        if !named {
            paths.push(path);
        }
    }
    paths
}

/// What a decision released, without a copy of an indicator released whole.
#[derive(Debug)]
pub enum Visible {
    /// The indicator as it is.
    Whole,
    /// The indicator without the paths the decision redacted.
    Redacted(Box<Indicator>),
}

/// Decides releases for one member's gateway.
pub struct Releaser {
    member: String,
    policy: RwLock<Policy>,
    schema: RedactionSchema,
    sinks: Vec<Arc<dyn DecisionSink>>,
    /// Counts and times every decision; `cordon policy status` reads its totals.
    metrics: Arc<Metrics>,
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
            metrics,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn member(&self) -> &str {
        &self.member
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
        let mut prepared = Prepared::new(indicator);
        self.release_prepared(&mut prepared, recipient, channel, now)
    }

    /// [`Releaser::release`] for an indicator prepared once for many recipients (the
    /// dispatcher decides each event for every caught-up recipient): its policy input is
    /// built on the first decision that needs it and reused by the others.
    pub fn release_prepared(
        &self,
        prepared: &mut Prepared<'_>,
        recipient: &Identity,
        channel: Channel,
        now: &str,
    ) -> Release {
        let indicator = prepared.indicator;
        let (visible, record) = self.decide_prepared(prepared, recipient, channel, now);
        Release {
            indicator: visible.map(|visible| match visible {
                Visible::Whole => indicator.clone(),
                Visible::Redacted(redacted) => *redacted,
            }),
            record,
        }
    }

    /// [`Releaser::release_prepared`] without the copy of an indicator released whole: for a
    /// caller that holds the indicator and can move it where it goes.
    pub fn decide_prepared(
        &self,
        prepared: &mut Prepared<'_>,
        recipient: &Identity,
        channel: Channel,
        now: &str,
    ) -> (Option<Visible>, DecisionRecord) {
        let started = Instant::now();
        let indicator = prepared.indicator;
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
        let (decision, released, outcome) =
            match hard_floor(&self.member, indicator, recipient, channel) {
                Some(reason) => (Decision::deny(reason), None, Outcome::HardFloor),
                None => {
                    let (decision, released) =
                        self.decide_with_policy(&policy, prepared, recipient, channel, now);
                    let outcome = if decision.error.is_some() {
                        Outcome::FailedClosed
                    } else if decision.allow {
                        Outcome::Allowed
                    } else {
                        Outcome::Denied
                    };
                    (decision, released, outcome)
                }
            };
        self.metrics.decision(outcome, channel, started.elapsed());
        let record = DecisionRecord::new(
            recipient,
            &indicator.id,
            channel,
            policy.revision(),
            decision,
        );
        (released, record)
    }

    /// The revision of the active policy.
    pub fn policy_revision(&self) -> String {
        self.policy().revision().to_string()
    }

    /// Passes a decision to the process log and every sink (the decision log stores it
    /// separately, before what it released is sent).
    pub fn record(&self, record: &DecisionRecord) {
        record::trace(record);
        for sink in &self.sinks {
            sink.record(record);
        }
    }

    fn decide_with_policy(
        &self,
        policy: &Policy,
        prepared: &mut Prepared<'_>,
        recipient: &Identity,
        channel: Channel,
        now: &str,
    ) -> (Decision, Option<Visible>) {
        let indicator = prepared.indicator;
        let context = InputContext {
            gateway: &self.member,
            channel,
            now,
        };
        let input = match prepared.input(policy, recipient, context) {
            Ok(input) => input,
            Err(error) => return (Decision::fail_closed(error), None),
        };
        let decision = policy.decide(input);
        if !decision.allow {
            return (decision, None);
        }
        if decision.redact.is_empty() {
            return (decision, Some(Visible::Whole));
        }
        let commitments = indicator
            .signature
            .as_ref()
            .is_some_and(|signature| signature.version == SIGNATURE_VERSION);
        if !commitments && matches!(recipient, Identity::Member { .. }) {
            // A partner gateway stores only what it can verify against the originator's
            // signature, and a version 1 signature covers the whole indicator.
            return (
                decision.into_fail_closed(
                    "redaction is not possible for a partner gateway: the originator signed this indicator before field commitments (signature version 1), over the whole indicator",
                ),
                None,
            );
        }
        // The same paths redacted for another recipient of this indicator: the same result.
        if let Some((_, redacted)) = prepared
            .redacted
            .iter()
            .find(|(paths, _)| *paths == decision.redact)
        {
            return match redacted {
                Ok(redacted) => (
                    decision,
                    Some(Visible::Redacted(Box::new(redacted.clone()))),
                ),
                Err(error) => {
                    let error = error.clone();
                    (decision.into_fail_closed(error), None)
                }
            };
        }
        // The input holds only what the policy reads: the redaction starts from all of it.
        let redacted = serde_json::to_value(indicator)
            .map_err(|error| format!("indicator does not encode as JSON: {error}"))
            .and_then(|mut indicator_json| {
                without_commitments(&mut indicator_json);
                self.redact(indicator, indicator_json, &decision.redact)
            });
        prepared
            .redacted
            .push((decision.redact.clone(), redacted.clone()));
        match redacted {
            Ok(redacted) => (decision, Some(Visible::Redacted(Box::new(redacted)))),
            Err(error) => (decision.into_fail_closed(error), None),
        }
    }

    /// `indicator` (whose proto3 JSON is `indicator_json`) without the fields at `paths`,
    /// with its signature's commitments and only the salts of what it still holds.
    fn redact(
        &self,
        indicator: &Indicator,
        mut indicator_json: serde_json::Value,
        paths: &[String],
    ) -> Result<Indicator, String> {
        let commitments = indicator
            .signature
            .as_ref()
            .is_some_and(|signature| signature.version == SIGNATURE_VERSION);
        self.schema
            .apply(&mut indicator_json, paths)
            .map_err(|error| error.to_string())?;
        let present = commitments.then(|| disclosure::field_paths(&indicator_json));
        let mut redacted = serde_json::from_value::<Indicator>(indicator_json)
            .map_err(|error| format!("redacted indicator does not decode: {error}"))?;
        redacted.signature = indicator.signature.clone();
        match (present, redacted.signature.as_mut()) {
            // The commitments stay (the recipient verifies the rest against them); the salts
            // of the fields just removed go.
            (Some(present), Some(signature)) => disclosure::withhold_absent(signature, &present),
            // A version 1 signature covers the fields just removed: kept, it would let a
            // recipient confirm guesses of them offline, and it could never verify anyway.
            _ => redacted.signature = None,
        }
        Ok(redacted)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cordon_proto::v1::{Source, Tlp, Vessel, indicator};

    /// A policy of the one `decision` rule (a test helper of the release and feed rooms).
    pub(crate) fn policy(decision: &str) -> Policy {
        let module = format!("package cordon.outbound\nimport rego.v1\n{decision}\n");
        Policy::from_modules(
            vec![("test.rego".into(), module)],
            serde_json::json!({}),
            "test-revision".into(),
        )
        .unwrap()
    }

    /// A vessel indicator with a source and a dummy signature.
    pub(crate) fn indicator(originator: &str, tlp: Tlp) -> Indicator {
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
                ..Default::default()
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
        let failed = releaser.metrics().failed_closed_total();
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
    fn one_preparation_decides_every_recipient_as_each_alone() {
        // Source withheld from agencies of NG only; a bad path for CI fails closed.
        let releaser = Releaser::new(
            "GH".into(),
            policy(
                r#"default decision := {"allow": true, "redact": [], "reasons": []}
decision := {"allow": true, "redact": ["source"], "reasons": []} if input.recipient.member == "NG"
decision := {"allow": true, "redact": ["sauce"], "reasons": []} if input.recipient.member == "CI""#,
            ),
            Vec::new(),
        );
        let subject = indicator("GH", Tlp::Green);
        let recipients = [
            "NG/customs",
            "GH/police",
            "NG/police",
            "CI/customs",
            "GH/customs",
        ]
        .map(|name| Identity::parse(name).unwrap());
        let now = "2026-11-25T00:00:00Z";
        let mut prepared = Prepared::new(&subject);
        for recipient in &recipients {
            let shared =
                releaser.release_prepared(&mut prepared, recipient, Channel::Subscribe, now);
            let alone = releaser.release(&subject, recipient, Channel::Subscribe, now);
            assert_eq!(shared.indicator, alone.indicator, "{recipient}");
            assert_eq!(shared.record.allow, alone.record.allow, "{recipient}");
            assert_eq!(shared.record.redact, alone.record.redact, "{recipient}");
            assert_eq!(shared.record.error, alone.record.error, "{recipient}");
        }
        // Redacted once per list of paths, whatever the number of recipients.
        assert_eq!(prepared.redacted.len(), 2);
        let for_ng =
            releaser.release_prepared(&mut prepared, &recipients[0], Channel::Subscribe, now);
        assert!(for_ng.indicator.unwrap().source.is_none());
        let for_ci =
            releaser.release_prepared(&mut prepared, &recipients[3], Channel::Subscribe, now);
        assert!(for_ci.indicator.is_none() && for_ci.record.error.is_some());
    }

    #[test]
    fn a_reload_between_recipients_builds_the_input_again() {
        // The first policy reads only the label, so the input built for it holds nothing
        // else; the one loaded next reads the source, and must see it.
        let releaser = Releaser::new(
            "GH".into(),
            policy(
                r#"decision := {"allow": input.indicator.tlp == "TLP_GREEN", "redact": [], "reasons": []}"#,
            ),
            Vec::new(),
        );
        let subject = indicator("GH", Tlp::Green);
        let recipient = Identity::parse("NG/customs").unwrap();
        let now = "2026-11-25T00:00:00Z";
        let mut prepared = Prepared::new(&subject);
        let first = releaser.release_prepared(&mut prepared, &recipient, Channel::Subscribe, now);
        assert!(first.record.allow);
        releaser.set_policy(policy(
            r#"decision := {"allow": input.indicator.source.description == "informant", "redact": [], "reasons": []}"#,
        ));
        let second = releaser.release_prepared(&mut prepared, &recipient, Channel::Subscribe, now);
        assert!(second.record.allow, "{:?}", second.record);
        assert_eq!(second.indicator.as_ref(), Some(&subject));
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
        // Without commitments (unsigned here, or signed over the whole indicator), a
        // redaction would break the signature the partner must verify: deny.
        let release = federate(redact, &indicator("GH", Tlp::Green), "NG");
        assert!(!release.record.allow);
        assert!(release.record.error.unwrap().contains("partner gateway"));
        // Signed with commitments: the source is withheld, its salts with it, and what is
        // released still verifies against GH's key.
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("gh.pem");
        crate::signing::generate_signing_key(&key_path).unwrap();
        let key = crate::signing::SigningKey::load(&key_path, "GH").unwrap();
        let mut signed = indicator("GH", Tlp::Green);
        key.sign(&mut signed).unwrap();
        let release = federate(redact, &signed, "NG");
        assert!(release.record.allow, "{:?}", release.record);
        assert_eq!(release.withheld(), ["source"]);
        let released = release.indicator.unwrap();
        assert!(released.source.is_none());
        assert_eq!(
            crate::signing::verify(&released, "GH", key.public_key()),
            Ok(())
        );
        let fields = &released.signature.as_ref().unwrap().fields;
        assert!(fields.iter().any(|field| field.path.starts_with("source.")));
        for field in fields {
            assert_eq!(
                field.salt.is_empty(),
                field.path.starts_with("source."),
                "{field:?}"
            );
        }
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Whatever paths a policy redacts for a partner gateway, what is released verifies
        /// against the originator's key, withholds exactly the committed fields under those
        /// paths, and carries a salt for exactly the fields present.
        #[test]
        fn whatever_a_policy_redacts_for_a_partner_still_verifies(
            paths in proptest::collection::vec(
                "narrative|tags|confidence|vessel\\.imo|vessel\\.name|vessel|source|source\\.description",
                0..4,
            ),
            narrative in ".{0,30}",
        ) {
            static KEY: std::sync::OnceLock<(tempfile::TempDir, crate::signing::SigningKey)> =
                std::sync::OnceLock::new();
            let (_, key) = KEY.get_or_init(|| {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("gh.pem");
                crate::signing::generate_signing_key(&path).unwrap();
                let key = crate::signing::SigningKey::load(&path, "GH").unwrap();
                (dir, key)
            });
            let mut signed = indicator("GH", Tlp::Green);
            signed.narrative = narrative;
            signed.tags = vec!["tema".into()];
            if let Some(indicator::Kind::Vessel(vessel)) = signed.kind.as_mut() {
                vessel.name = "SEA LION".into();
            }
            key.sign(&mut signed).unwrap();
            let paths_json = serde_json::to_string(&paths).unwrap();
            let releaser = Releaser::new(
                "GH".into(),
                policy(&format!(
                    r#"decision := {{"allow": true, "redact": {paths_json}, "reasons": ["test"]}}"#
                )),
                Vec::new(),
            );
            let release = releaser.release(
                &signed,
                &Identity::parse("NG").unwrap(),
                Channel::Federation,
                "2026-11-25T00:00:00Z",
            );
            proptest::prop_assert!(release.record.allow, "{:?}", release.record);
            let released = release.indicator.unwrap();
            proptest::prop_assert_eq!(
                crate::signing::verify(&released, "GH", key.public_key()),
                Ok(())
            );
            let withheld = disclosure::withheld_paths(&released);
            for path in &paths {
                let under = |field: &String| field == path || field.starts_with(&format!("{path}."));
                let committed = signed.signature.as_ref().unwrap().fields.iter().any(|field| under(&field.path));
                proptest::prop_assert_eq!(withheld.iter().any(under), committed, "{} withheld: {:?}", path, withheld);
            }
            let present = disclosure::field_paths(&serde_json::to_value(&released).unwrap());
            for field in &released.signature.as_ref().unwrap().fields {
                proptest::prop_assert_eq!(field.salt.is_empty(), !present.contains(&field.path), "{:?}", field);
            }
        }
    }
}
