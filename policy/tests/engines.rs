//! The two engines: the bytecode VM runs a policy only where it gives the interpreter's answers,
//! both honour the time limit, and a disagreement found later retires the VM.

mod common;

use std::time::{Duration, Instant};

use common::{example_corpus, reference_dir};
use cordon_policy::{EngineKind, Policy};
use serde_json::json;

fn policy_from(rego: &str, data: serde_json::Value) -> Policy {
    Policy::from_modules(
        vec![("cordon/outbound.rego".into(), rego.into())],
        data,
        "test".into(),
    )
    .unwrap_or_else(|error| panic!("policy loads: {error}"))
}

#[test]
fn reference_policy_runs_on_the_vm_with_identical_decisions() {
    let dir = reference_dir();
    let policy = Policy::load(dir.path()).expect("loads");
    assert_eq!(
        policy.engine(),
        EngineKind::Rvm,
        "{:?}",
        policy.interpreter_reason()
    );
    assert_eq!(policy.engine_name(), "rvm");
    assert_eq!(policy.interpreter_reason(), None);
    let corpus = example_corpus(&policy);
    for input in &corpus {
        let interpreter = policy.decide_with(EngineKind::Interpreter, input);
        assert_eq!(interpreter.error, None, "{input}");
        assert_eq!(
            policy.decide_with(EngineKind::Rvm, input),
            interpreter,
            "{input}"
        );
    }
    let verification = policy.verify_engine(&corpus);
    assert_eq!(verification.compared, corpus.len());
    assert!(verification.mismatches.is_empty());
    assert_eq!(verification.engine, EngineKind::Rvm);
}

#[test]
fn policies_the_vm_cannot_compile_run_on_the_interpreter() {
    let policy = policy_from(
        "package cordon.outbound\nimport rego.v1\nflag := input.flag\ndecision := {\"allow\": f} if { f := flag with input.flag as true }\n",
        json!({}),
    );
    assert_eq!(policy.engine(), EngineKind::Interpreter);
    let reason = policy.interpreter_reason().expect("a reason");
    assert!(reason.contains("bytecode compiler"), "{reason}");
    assert!(policy.decide(&json!({"flag": false})).allow);
    let forced = policy.decide_with(EngineKind::Rvm, &json!({}));
    assert!(!forced.allow && forced.error.is_some());
}

/// A policy on the `else` bug of regorus' VM (see below): `attribute(name)` falls back to
/// `data.<fallback>[name]`, a branch the VM makes undefined; `rules` decide beside an open
/// default.
fn else_policy(fallback: &str, rules: &str) -> String {
    format!(
        r#"package cordon.outbound
import rego.v1

attribute(name) := value if {{
	value := input.recipient[name]
}} else := value if {{
	value := data.{fallback}[name]
}}

default decision := {{"allow": true, "reasons": ["open"]}}

{rules}
"#
    )
}

/// The VM of regorus 0.14.1 gets a function's `else` branch wrong: it makes the call
/// undefined. Here that would turn an embargo into a release; the load-time comparison keeps
/// such a policy on the interpreter.
#[test]
fn a_vm_that_answers_differently_is_not_used() {
    let policy = policy_from(
        &else_policy(
            "recipients[input.recipient.member]",
            r#"decision := {"allow": false, "reasons": ["embargo"]} if attribute("country") in data.embargoed"#,
        ),
        json!({"recipients": {"SS": {"country": "SS"}}, "embargoed": ["SS"]}),
    );
    let agency = json!({"recipient": {"id": "SS/customs", "kind": "agency", "member": "SS"}});
    let vm = policy.decide_with(EngineKind::Rvm, &agency);
    let interpreter = policy.decide_with(EngineKind::Interpreter, &agency);
    assert!(!interpreter.allow, "{interpreter:?}");
    assert_ne!(
        vm, interpreter,
        "the VM bug this test is about seems fixed: {vm:?}"
    );
    assert_eq!(policy.engine(), EngineKind::Interpreter);
    assert!(
        policy
            .interpreter_reason()
            .expect("a reason")
            .contains("disagreed")
    );
    assert!(!policy.decide(&agency).allow);
}

#[test]
fn a_disagreement_found_later_retires_the_vm() {
    // Agrees on every input but those with `debug`, which the load corpus does not have.
    let policy = policy_from(
        r#"package cordon.outbound
import rego.v1
default decision := {"allow": false, "reasons": ["closed"]}
decision := {"allow": true, "reasons": [sprintf("%d", [time.now_ns()])]} if input.debug
"#,
        json!({}),
    );
    assert_eq!(policy.engine(), EngineKind::Rvm);
    let clone = policy.clone();
    let report = policy.verify_engine(&[json!({}), json!({"debug": true})]);
    assert_eq!(report.compared, 2);
    assert_eq!(report.mismatches.len(), 1);
    assert_eq!(report.mismatches[0].input, json!({"debug": true}));
    assert_eq!(report.engine, EngineKind::Interpreter);
    // Every clone of the policy moves, and for good.
    assert_eq!(clone.engine(), EngineKind::Interpreter);
    policy.verify_engine(&[json!({})]);
    assert_eq!(policy.engine(), EngineKind::Interpreter);
}

#[test]
fn both_engines_honour_the_time_limit() {
    let mut policy = policy_from(
        r#"package cordon.outbound
import rego.v1
decision := {"allow": count(products) > 0} if {
	products := [p | some i in numbers.range(1, 3000); some j in numbers.range(1, 3000); p := i * j]
}"#,
        json!({}),
    );
    policy.set_time_limit(Duration::from_millis(20));
    for engine in [EngineKind::Interpreter, EngineKind::Rvm] {
        let started = Instant::now();
        let decision = policy.decide_with(engine, &json!({}));
        assert!(!decision.allow, "{engine:?}");
        let error = decision.error.expect("an error");
        assert!(
            error.contains("exceeded the time limit of 20ms"),
            "{engine:?}: {error}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{engine:?}: {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn errors_fail_closed_on_the_vm_too() {
    let policy = policy_from(
        "package cordon.outbound\nimport rego.v1\ndecision := {\"allow\": true, \"redcat\": []} if input.typo\ndefault decision := {\"allow\": false}\n",
        json!({}),
    );
    let decision = policy.decide_with(EngineKind::Rvm, &json!({"typo": true}));
    assert!(!decision.allow);
    assert!(decision.error.expect("an error").contains("redcat"));
}

#[test]
fn a_comparison_cut_short_by_the_load_budget_keeps_the_interpreter() {
    // Every decision runs into the time limit on both engines, so loading can
    // compare only a few inputs within its budget: the VM, unchecked on the
    // rest, must not become the engine.
    let policy = policy_from(
        r#"package cordon.outbound
import rego.v1
decision := {"allow": count(products) > 0, "redact": [], "reasons": ["slow"]} if {
	products := [p | some i in numbers.range(1, 5000); some j in numbers.range(1, 5000); p := i * j]
}"#,
        json!({}),
    );
    assert_eq!(policy.engine(), EngineKind::Interpreter);
    let reason = policy.interpreter_reason().unwrap_or_default();
    assert!(reason.contains("compared on only"), "{reason}");
}

#[test]
fn live_decisions_are_compared_and_a_disagreement_retires_the_vm() {
    // The VM's `else` bug (see above), on a path the load corpus never takes: only a recipient
    // the data watches reaches the `else` branch.
    let policy = policy_from(
        &else_policy(
            "watch[input.recipient.id]",
            r#"decision := {"allow": false, "reasons": ["watchlisted"]} if attribute("watchlisted") == true"#,
        ),
        json!({"watch": {"ZZ/customs": {"watchlisted": true}}}),
    );
    assert_eq!(
        policy.engine(),
        EngineKind::Rvm,
        "{:?}",
        policy.interpreter_reason()
    );
    let watched = json!({"recipient": {"id": "ZZ/customs", "kind": "agency", "member": "ZZ"}});
    assert!(
        policy.decide_with(EngineKind::Rvm, &watched).allow,
        "the VM bug this test is about seems fixed"
    );
    let other = json!({"recipient": {"id": "NG/customs", "kind": "agency", "member": "NG"}});
    assert!(policy.decide(&other).allow);
    assert_eq!(policy.engine(), EngineKind::Rvm, "agreement keeps the VM");
    // The first live decision for the watched recipient is compared: the interpreter's deny
    // stands, and the VM is retired for every later decision.
    let decision = policy.decide(&watched);
    assert!(!decision.allow, "{decision:?}");
    assert_eq!(policy.engine(), EngineKind::Interpreter);
    assert!(
        policy
            .interpreter_reason()
            .expect("a reason")
            .contains("disagreed")
    );
    assert!(!policy.decide(&watched).allow);

    // Without the cache a sample is compared, the first among them.
    let mut uncached = policy_from(
        r#"package cordon.outbound
import rego.v1
default decision := {"allow": false, "reasons": ["closed"]}
decision := {"allow": true, "reasons": [sprintf("%d", [time.now_ns()])]} if input.debug
"#,
        json!({}),
    );
    uncached.set_cache_enabled(false);
    assert_eq!(uncached.engine(), EngineKind::Rvm);
    uncached.decide(&json!({"debug": true}));
    assert_eq!(uncached.engine(), EngineKind::Interpreter);
}

#[test]
fn the_first_miss_of_a_new_shape_is_compared_however_many_came_before() {
    // As above, but the watched recipient comes after a few hundred misses of another shape:
    // sampling alone (one in 64) would let the VM's allow through.
    let policy = policy_from(
        &else_policy(
            "watch[input.recipient.id]",
            r#"decision := {"allow": false, "reasons": [input.indicator.vessel.name]} if attribute("watchlisted") == true"#,
        ),
        json!({"watch": {"ZZ/customs": {"watchlisted": true}}}),
    );
    assert_eq!(policy.engine(), EngineKind::Rvm);
    let watched = json!({
        "recipient": {"id": "ZZ/customs", "kind": "agency", "member": "ZZ"},
        "indicator": {"tlp": "TLP_GREEN", "vessel": {"name": "VESSEL 0"}},
    });
    assert!(
        policy.decide_with(EngineKind::Rvm, &watched).allow,
        "the VM bug this test is about seems fixed"
    );
    let input = |recipient: &str, member: &str, n: usize| {
        json!({
            "recipient": {"id": recipient, "kind": "agency", "member": member},
            "indicator": {"tlp": "TLP_GREEN", "vessel": {"name": format!("VESSEL {n}")}},
        })
    };
    for n in 0..300 {
        assert!(policy.decide(&input("NG/customs", "NG", n)).allow);
    }
    assert_eq!(policy.engine(), EngineKind::Rvm, "agreement keeps the VM");
    let decision = policy.decide(&input("ZZ/customs", "ZZ", 301));
    assert!(!decision.allow, "{decision:?}");
    assert_eq!(policy.engine(), EngineKind::Interpreter);
}

#[test]
fn a_shape_whose_comparison_failed_on_both_engines_is_compared_again() {
    // The VM's `else` bug again, reached by a vessel the data watches: a value inside the
    // indicator, so the same shape as any other vessel. The first miss of that shape fails on
    // both engines alike (a malformed decision), which checks nothing; the next one must
    // still be compared.
    let policy = policy_from(
        &else_policy(
            "watch[input.indicator.vessel.name]",
            r#"decision := {"allow": false, "reasons": ["watchlisted"]} if attribute("watchlisted") == true

decision := {"allow": "perhaps", "reasons": ["broken"]} if input.indicator.vessel.name == "BROKEN""#,
        ),
        json!({"watch": {"WATCHED": {"watchlisted": true}}}),
    );
    assert_eq!(policy.engine(), EngineKind::Rvm);
    let vessel = |name: &str| {
        json!({
            "recipient": {"id": "NG/customs", "kind": "agency", "member": "NG"},
            "indicator": {"tlp": "TLP_GREEN", "vessel": {"name": name}},
        })
    };
    assert!(
        policy
            .decide_with(EngineKind::Rvm, &vessel("WATCHED"))
            .allow,
        "the VM bug this test is about seems fixed"
    );
    // Past the sample's first turn, so that only a new shape is compared next.
    assert!(policy.decide_uncached(&vessel("UNRELATED")).allow);
    let broken = policy.decide(&vessel("BROKEN"));
    assert!(broken.error.is_some(), "{broken:?}");
    assert_eq!(
        policy.engine(),
        EngineKind::Rvm,
        "both engines failed alike"
    );
    let decision = policy.decide(&vessel("WATCHED"));
    assert!(!decision.allow, "{decision:?}");
    assert_eq!(policy.engine(), EngineKind::Interpreter);
}

#[test]
fn live_risk_assessments_are_sampled_and_a_disagreement_retires_the_vm() {
    let policy = Policy::from_modules(
        vec![
            (
                "cordon/outbound.rego".into(),
                "package cordon.outbound\nimport rego.v1\ndefault decision := {\"allow\": false}\n"
                    .into(),
            ),
            (
                "cordon/risk.rego".into(),
                r#"package cordon.risk
import rego.v1
default assessment := {"score": 0, "level": "LOW", "reasons": []}
assessment := {"score": 10, "level": "LOW", "reasons": [{"flag": "debug", "weight": 10, "explanation": sprintf("%d", [time.now_ns()])}]} if input.declaration.debug
"#
                .into(),
            ),
        ],
        json!({}),
        "test".into(),
    )
    .expect("loads");
    assert_eq!(policy.risk_engine(), EngineKind::Rvm);
    let plain =
        json!({"declaration": {"reference": "x"}, "matches": [], "findings": [], "context": {}});
    for _ in 0..2 * cordon_policy::LIVE_COMPARISON_EVERY {
        policy.assess(&plain);
    }
    assert_eq!(
        policy.risk_engine(),
        EngineKind::Rvm,
        "agreement keeps the VM"
    );
    let debug = json!({"declaration": {"reference": "x", "debug": true}, "matches": [], "findings": [], "context": {}});
    for _ in 0..cordon_policy::LIVE_COMPARISON_EVERY {
        let assessment = policy.assess(&debug);
        assert_eq!(assessment.score, 10, "{assessment:?}");
    }
    assert_eq!(policy.risk_engine(), EngineKind::Interpreter);
}

/// The `bundle` fuzz target's stack overflow (FUZZING.md): a function whose parameter is a
/// reference makes regorus' VM recurse without end, which would abort the process while the
/// VM is compared at load. Such a policy loads, on the interpreter.
#[test]
fn a_function_with_a_reference_parameter_runs_on_the_interpreter() {
    let crash = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/crashes/bundle-rvm-recursion.tar.gz");
    let policy = Policy::load(&crash).expect("the fuzzer's bundle loads");
    assert_eq!(policy.engine(), EngineKind::Interpreter);
    assert_eq!(policy.risk_engine(), EngineKind::Interpreter);
    assert!(
        policy
            .interpreter_reason()
            .expect("a reason")
            .contains("takes a reference as a parameter")
    );
    let plain = json!({"declaration": {"reference": "x", "transport": {"transshipmentPorts": ["LYTIP"]}}, "matches": [], "findings": [], "context": {}});
    assert!(policy.assess(&plain).error.is_none());
}
