//! The decision cache: what is a hit and what a miss, which policies are not cached, and which
//! decisions are never stored.

mod common;

use std::time::Duration;

use common::{example_indicators, input, recipient, reference_dir};
use cordon_policy::Policy;
use serde_json::json;

fn reference_policy() -> Policy {
    let dir = reference_dir();
    Policy::load(dir.path()).expect("reference policy loads")
}

fn policy_from(rego: &str) -> Policy {
    Policy::from_modules(
        vec![("cordon/outbound.rego".into(), rego.into())],
        json!({}),
        "test".into(),
    )
    .unwrap_or_else(|error| panic!("policy loads: {error}"))
}

/// (hits, misses, entries) after deciding `input`.
fn decide_counting(policy: &Policy, input: &serde_json::Value) -> (u64, u64, usize) {
    policy.decide(input);
    let stats = policy.cache_stats();
    (stats.hits, stats.misses, stats.entries)
}

#[test]
fn hits_misses_and_what_the_key_leaves_out() {
    let policy = reference_policy();
    let stats = policy.cache_stats();
    assert!(stats.enabled, "{stats:?}");
    assert!(
        stats.key_paths.contains(&"input.indicator.tlp".to_owned()),
        "{stats:?}"
    );
    assert!(
        !stats.key_paths.iter().any(|path| path.contains("now")),
        "{stats:?}"
    );

    let examples = example_indicators();
    let green_with_source = &examples[1];
    let base = input(green_with_source, recipient(&policy, "CI"), "subscribe");
    let first = policy.decide(&base);
    assert_eq!(decide_counting(&policy, &base), (1, 1, 1));
    // A hit gives the same decision as computing it.
    assert_eq!(policy.decide(&base), first);
    assert_eq!(policy.decide_uncached(&base), first);
    assert_eq!(first.redact, vec!["source"]);

    // Fields the policy does not read: the time, the narrative, the id.
    let mut later = base.clone();
    later["context"]["now"] = json!("2027-01-01T00:00:00Z");
    later["indicator"]["narrative"] = json!("reworded");
    later["indicator"]["id"] = json!("another id");
    let (hits, misses, _) = decide_counting(&policy, &later);
    assert_eq!((hits, misses), (3, 1));
    assert_eq!(policy.decide(&later), first);

    // Another recipient, another channel, a changed read field: misses, right answers.
    let other_recipient = input(green_with_source, recipient(&policy, "NG"), "subscribe");
    let mut other_tlp = base.clone();
    other_tlp["indicator"]["tlp"] = json!("TLP_RED");
    let mut more_trust = base.clone();
    more_trust["recipient"]["trust"] = json!(3);
    let mut protected = base.clone();
    protected["indicator"]["protection"] = json!("PROTECTION_SOURCE_PROTECTED");
    for (changed, allow, redact) in [
        (&other_recipient, true, vec![]),
        (&other_tlp, false, vec![]),
        (&more_trust, true, vec![]),
        (&protected, false, vec![]),
    ] {
        let before = policy.cache_stats();
        let decision = policy.decide(changed);
        let after = policy.cache_stats();
        assert_eq!(after.misses, before.misses + 1, "{changed}");
        assert_eq!(
            (decision.allow, decision.redact),
            (allow, redact),
            "{changed}"
        );
        assert_eq!(policy.decide(changed), policy.decide_uncached(changed));
    }
}

#[test]
fn cached_decisions_match_computed_ones_on_the_corpus() {
    let policy = reference_policy();
    let corpus = common::example_corpus(&policy);
    let computed: Vec<_> = corpus
        .iter()
        .map(|input| policy.decide_uncached(input))
        .collect();
    for _ in 0..2 {
        for (input, expected) in corpus.iter().zip(&computed) {
            assert_eq!(&policy.decide(input), expected, "{input}");
        }
    }
    let stats = policy.cache_stats();
    assert!(stats.hits >= corpus.len() as u64, "{stats:?}");
}

#[test]
fn caching_is_per_handle_optional() {
    let policy = reference_policy();
    let mut uncached = policy.clone();
    uncached.set_cache_enabled(false);
    let examples = example_indicators();
    let request = input(&examples[0], recipient(&policy, "NG"), "subscribe");
    uncached.decide(&request);
    uncached.decide(&request);
    assert_eq!(policy.cache_stats().entries, 0);
    policy.decide(&request);
    assert_eq!(
        uncached.cache_stats().entries,
        1,
        "the cache is shared by clones"
    );
}

#[test]
fn policies_reading_input_dynamically_are_not_cached() {
    for rego in [
        "package cordon.outbound\nimport rego.v1\ndecision := {\"allow\": count(input) > 1}\n",
        "package cordon.outbound\nimport rego.v1\nfield := \"tlp\"\ndecision := {\"allow\": input.indicator[field] == \"TLP_CLEAR\"}\nx := input[field]\n",
        "package cordon.outbound\nimport rego.v1\ndecision := {\"allow\": json.marshal(input) != \"\"}\n",
        "package cordon.outbound\nimport rego.v1\ndecision := {\"allow\": object.get(input, input.key, false)}\n",
    ] {
        let policy = policy_from(rego);
        let stats = policy.cache_stats();
        assert!(!stats.enabled, "{rego}");
        assert!(
            stats.disabled_reason.expect("a reason").contains("input"),
            "{rego}"
        );
        policy.decide(&json!({"indicator": {}}));
        policy.decide(&json!({"indicator": {}}));
        assert_eq!(policy.cache_stats().entries, 0);
        assert_eq!(policy.input_paths(), ["input"]);
    }
    let clock = policy_from(
        "package cordon.outbound\nimport rego.v1\ndecision := {\"allow\": time.now_ns() > 0}\n",
    );
    let stats = clock.cache_stats();
    assert!(!stats.enabled);
    assert!(
        stats
            .disabled_reason
            .expect("a reason")
            .contains("time.now_ns")
    );
}

#[test]
fn failed_decisions_are_not_cached() {
    // An error on some inputs, a decision on others.
    let policy = policy_from(
        "package cordon.outbound\nimport rego.v1\ndecision := {\"allow\": to_number(input.indicator.tlp) > 0}\n",
    );
    let failing = json!({"indicator": {"tlp": "TLP_CLEAR"}});
    for _ in 0..3 {
        let decision = policy.decide(&failing);
        assert!(!decision.allow && decision.error.is_some(), "{decision:?}");
    }
    let stats = policy.cache_stats();
    assert_eq!((stats.hits, stats.misses, stats.entries), (0, 3, 0));
    let deciding = json!({"indicator": {"tlp": "5"}});
    assert!(policy.decide(&deciding).allow);
    assert!(policy.decide(&deciding).allow);
    assert_eq!(policy.cache_stats().hits, 1);
}

#[test]
fn time_outs_are_not_cached() {
    let mut policy = policy_from(
        r#"package cordon.outbound
import rego.v1
decision := {"allow": count(products) > 0} if {
	products := [p | some i in numbers.range(1, input.n); some j in numbers.range(1, input.n); p := i * j]
}"#,
    );
    let slow = json!({"n": 3000});
    policy.set_time_limit(Duration::from_millis(5));
    let decision = policy.decide(&slow);
    assert!(decision.error.expect("timed out").contains("time limit"));
    // With time to finish, the same input is decided, not served a stored time-out.
    policy.set_time_limit(Duration::from_secs(60));
    let mut quick = policy.clone();
    quick.set_time_limit(Duration::from_secs(60));
    let small = json!({"n": 3});
    assert!(quick.decide(&small).allow);
    assert_eq!(policy.cache_stats().entries, 1);
}
