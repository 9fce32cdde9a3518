//! `Policy::decide`: the reference policy on the example indicators, and every way a policy can
//! fail to decide, each of which must deny with an error (fail closed).

mod common;

use std::time::{Duration, Instant};

use common::{example_indicators, input, recipient, reference_dir};
use cordon_policy::{Decision, Policy};
use serde_json::{Value, json};

fn reference_policy() -> Policy {
    let dir = reference_dir();
    Policy::load_dir(dir.path()).expect("reference policy loads")
}

/// Expected outcome: `None` is a deny, `Some(redact)` an allow with those redactions.
type Expected<'a> = Option<&'a [&'a str]>;

const ALLOW: Expected = Some(&[]);
const ALLOW_WITHOUT_SOURCE: Expected = Some(&["source"]);
const DENY: Expected = None;

fn check(
    policy: &Policy,
    indicator: &Value,
    recipient_id: &str,
    channel: &str,
    expected: Expected,
) {
    let decision = policy.decide(&input(indicator, recipient(policy, recipient_id), channel));
    let label = format!(
        "{} {} to {recipient_id} on {channel}: {decision:?}",
        indicator["tlp"], indicator["narrative"]
    );
    assert_eq!(decision.error, None, "{label}");
    assert!(!decision.reasons.is_empty(), "{label}");
    match expected {
        Some(redact) => {
            assert!(decision.allow, "{label}");
            assert_eq!(decision.redact, redact, "{label}");
        }
        None => assert!(!decision.allow, "{label}"),
    }
}

#[test]
fn reference_policy_on_example_indicators() {
    let policy = reference_policy();
    let examples = example_indicators();
    // (example line, NG: trusted bilateral partner, CI: low-trust member)
    let table: [(usize, Expected, Expected); 12] = [
        (0, ALLOW, ALLOW),                // CLEAR vessel
        (1, ALLOW, ALLOW_WITHOUT_SOURCE), // GREEN consignment with a source
        (2, ALLOW, DENY),                 // AMBER end-user certificate: NG's agreement covers it
        (3, DENY, DENY),                  // AMBER+STRICT entity: own agencies only
        (4, ALLOW, DENY),                 // RED account releasable to NG
        (5, ALLOW, ALLOW),                // GREEN weapon, no source to redact
        (6, ALLOW, ALLOW),                // CLEAR route
        (7, ALLOW, ALLOW),                // GREEN aircraft
        (8, ALLOW, DENY),                 // AMBER account: NG's agreement covers it
        (9, ALLOW, ALLOW),                // CLEAR vessel
        (10, DENY, DENY),                 // source-protected, outside a circle
        (11, ALLOW, DENY),                // AMBER end-user certificate
    ];
    for (line, for_partner, for_low_trust) in table {
        check(&policy, &examples[line], "NG", "subscribe", for_partner);
        check(&policy, &examples[line], "CI", "federation", for_low_trust);
    }
}

#[test]
fn reference_policy_reasons() {
    let policy = reference_policy();
    let examples = example_indicators();
    let mut amber_entity = examples[3].clone();
    amber_entity["tlp"] = json!("TLP_AMBER");
    let decision = policy.decide(&input(&amber_entity, recipient(&policy, "NG"), "subscribe"));
    assert_eq!(
        decision,
        Decision {
            allow: true,
            redact: vec![],
            reasons: vec!["TLP:AMBER shared with bilateral partner NG for entity".into()],
            error: None,
        }
    );
    let decision = policy.decide(&input(&examples[1], recipient(&policy, "CI"), "subscribe"));
    assert_eq!(
        decision.reasons,
        vec![
            "TLP:GREEN shared with federation member CI",
            "source redacted: trust 2 below 3"
        ]
    );
    let decision = policy.decide(&input(&examples[4], recipient(&policy, "CI"), "subscribe"));
    assert_eq!(
        decision.reasons,
        vec!["TLP:RED not released to CI: not named in releasableTo"]
    );
}

#[test]
fn reference_policy_other_recipients() {
    let policy = reference_policy();
    let examples = example_indicators();
    // Own agencies see everything but RED not named to them, sources included.
    check(&policy, &examples[1], "GH/customs", "subscribe", ALLOW);
    check(&policy, &examples[3], "GH/police", "subscribe", ALLOW);
    check(&policy, &examples[4], "GH/customs", "subscribe", ALLOW); // its publisher
    check(&policy, &examples[4], "GH/police", "subscribe", DENY);
    // A partner's agency: GREEN only in a crisis, AMBER by the agreement, RED by member name.
    check(&policy, &examples[7], "NG/customs", "subscribe", DENY);
    check(&policy, &examples[2], "NG/customs", "subscribe", ALLOW);
    check(&policy, &examples[4], "NG/customs", "subscribe", ALLOW);
    // The regional organisation: GREEN, source kept at trust 3.
    check(&policy, &examples[1], "ECOWAS", "federation", ALLOW);
    check(&policy, &examples[2], "ECOWAS", "federation", DENY);
    // An embargoed member gets nothing, not even CLEAR.
    check(&policy, &examples[0], "SS", "federation", DENY);
    // Source-protected intelligence inside a circle travels whole: the board chose every
    // member of the circle for it, whatever their trust outside.
    check(&policy, &examples[10], "NG", "circle", ALLOW);
    check(&policy, &examples[10], "CI", "circle", ALLOW);
}

fn policy_from(rego: &str) -> Policy {
    Policy::from_modules(
        vec![("cordon/outbound.rego".into(), rego.into())],
        json!({}),
        "test".into(),
    )
    .unwrap_or_else(|error| panic!("policy loads: {error}"))
}

/// A policy that fails to decide must deny, with an error that names the problem.
fn check_fails_closed(policy: &Policy, input: &Value, error_contains: &str) {
    let decision = policy.decide(input);
    assert!(!decision.allow, "{decision:?}");
    assert!(decision.redact.is_empty(), "{decision:?}");
    let error = decision
        .error
        .unwrap_or_else(|| panic!("no error for {input}: {:?}", decision.reasons));
    assert!(
        error.contains(error_contains),
        "error {error:?} does not mention {error_contains:?}"
    );
}

#[test]
fn fails_closed() {
    let any_input = json!({"indicator": {"tlp": "TLP_CLEAR"}});
    let cases: &[(&str, &str)] = &[
        // No rule matches and there is no default.
        (
            r#"package cordon.outbound
decision := {"allow": true} if input.indicator.tlp == "TLP_RED""#,
            "undefined",
        ),
        (
            r#"package cordon.outbound
decision := {"allow": "yes", "redact": [], "reasons": []}"#,
            "decision.allow is a string, not a boolean",
        ),
        (
            r#"package cordon.outbound
decision := {"allow": 1}"#,
            "decision.allow is a number",
        ),
        (
            r#"package cordon.outbound
decision := {"reasons": ["forgot allow"]}"#,
            "no allow field",
        ),
        (
            r#"package cordon.outbound
decision := {"allow": true, "redact": "source", "reasons": []}"#,
            "decision.redact is a string",
        ),
        (
            r#"package cordon.outbound
decision := {"allow": true, "redact": [{"path": "source"}], "reasons": []}"#,
            "decision.redact holds an object",
        ),
        (
            r#"package cordon.outbound
decision := {"allow": true, "redact": ["source", 7], "reasons": []}"#,
            "decision.redact holds a number",
        ),
        (
            r#"package cordon.outbound
decision := {"allow": true, "redact": ["the source"], "reasons": []}"#,
            "not a field path",
        ),
        (
            r#"package cordon.outbound
decision := {"allow": true, "redact": [], "reasons": "because"}"#,
            "decision.reasons is a string",
        ),
        (
            r#"package cordon.outbound
decision := {"allow": true, "redcat": ["source"]}"#,
            "unknown field \"redcat\"",
        ),
        (
            r#"package cordon.outbound
decision := true"#,
            "is a boolean, not an object",
        ),
        // A builtin error at run time.
        (
            r#"package cordon.outbound
decision := {"allow": to_number(input.indicator.tlp) > 0}"#,
            "evaluation of data.cordon.outbound.decision failed",
        ),
        // Two complete definitions that disagree.
        (
            r#"package cordon.outbound
decision := {"allow": true} if input.indicator.tlp == "TLP_CLEAR"
decision := {"allow": false} if input.indicator"#,
            "evaluation of data.cordon.outbound.decision failed",
        ),
        (
            r#"package cordon.outbound
decision := {"allow": 1 / 0 > 0}"#,
            "evaluation of data.cordon.outbound.decision failed",
        ),
    ];
    for (rego, error_contains) in cases {
        check_fails_closed(&policy_from(rego), &any_input, error_contains);
    }
}

#[test]
fn slow_evaluation_times_out() {
    let mut policy = policy_from(
        r#"package cordon.outbound
import rego.v1
decision := {"allow": count(products) > 0} if {
	products := [p | some i in numbers.range(1, 3000); some j in numbers.range(1, 3000); p := i * j]
}"#,
    );
    policy.set_time_limit(Duration::from_millis(20));
    let started = Instant::now();
    check_fails_closed(&policy, &json!({}), "exceeded the time limit of 20ms");
    // Cooperative checks stop the evaluation soon after the limit, not at its natural end.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn time_limit_belongs_to_each_clone() {
    let policy = reference_policy();
    let mut strict = policy.clone();
    strict.set_time_limit(Duration::from_millis(1));
    assert_eq!(policy.time_limit(), cordon_policy::DEFAULT_TIME_LIMIT);
    assert_eq!(strict.time_limit(), Duration::from_millis(1));
    assert_eq!(strict.revision(), policy.revision());
}

#[test]
fn inputs_the_policy_does_not_expect_deny() {
    let policy = reference_policy();
    for input in [
        json!(null),
        json!({}),
        json!([1, 2]),
        json!({"indicator": "x"}),
    ] {
        let decision = policy.decide(&input);
        assert!(!decision.allow, "{input}: {decision:?}");
    }
}

#[test]
fn prints_do_not_reach_the_decision() {
    let policy = policy_from(
        r#"package cordon.outbound
decision := {"allow": true, "reasons": ["printed"]} if print("deciding", input.indicator)"#,
    );
    let decision = policy.decide(&json!({"indicator": {}}));
    assert!(decision.allow);
    assert_eq!(decision.reasons, vec!["printed"]);
}

#[test]
fn decisions_from_many_threads() {
    let policy = reference_policy();
    let examples = example_indicators();
    let expected: Vec<Decision> = examples
        .iter()
        .map(|indicator| policy.decide(&input(indicator, recipient(&policy, "CI"), "subscribe")))
        .collect();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let policy = policy.clone();
            let examples = &examples;
            let expected = &expected;
            scope.spawn(move || {
                for _ in 0..25 {
                    for (indicator, expected) in examples.iter().zip(expected) {
                        let input = input(indicator, recipient(&policy, "CI"), "subscribe");
                        assert_eq!(&policy.decide(&input), expected);
                    }
                }
            });
        }
    });
}
