//! `diff`: what replacing one policy by another changes, pair by pair.

mod common;

use common::{example_indicators, input, recipient, write_files};
use cordon_policy::{ChangeKind, DiffInput, Policy, diff, reference_policy_files};
use serde_json::Value;

/// The reference policy with `data.json` edited by `edit`.
fn reference_with(edit: impl Fn(&mut Value)) -> (tempfile::TempDir, Policy) {
    let dir = common::reference_dir();
    let path = dir.path().join("data.json");
    let mut data: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    edit(&mut data);
    write_files(
        dir.path(),
        &[(
            "data.json",
            &serde_json::to_string_pretty(&data).expect("json"),
        )],
    );
    let policy = Policy::load(dir.path()).expect("edited policy loads");
    (dir, policy)
}

fn pairs(policy: &Policy) -> Vec<DiffInput> {
    let mut pairs = Vec::new();
    for indicator in example_indicators() {
        for recipient_id in ["NG", "CI", "ECOWAS", "GH/customs", "NG/customs"] {
            pairs.push(DiffInput {
                indicator: indicator["id"].as_str().expect("id").to_owned(),
                recipient: recipient_id.to_owned(),
                input: input(&indicator, recipient(policy, recipient_id), "subscribe"),
            });
        }
    }
    pairs
}

#[test]
fn raising_the_trust_for_sources_changes_redactions() {
    let (_old_dir, old) = reference_with(|_| {});
    let (_new_dir, new) = reference_with(|data| data["settings"]["source_min_trust"] = 4.into());
    let inputs = pairs(&old);
    let report = diff(&old, &new, &inputs);
    assert_eq!(report.old_revision, old.revision());
    assert_eq!(report.new_revision, new.revision());
    let summary = &report.summary;
    assert_eq!(summary.pairs, inputs.len());
    assert_eq!(
        summary.newly_allowed + summary.newly_denied,
        0,
        "{summary:?}"
    );
    assert!(summary.redaction_changes > 0, "{summary:?}");
    assert_eq!(
        summary.newly_allowed
            + summary.newly_denied
            + summary.redaction_changes
            + summary.reason_changes
            + summary.unchanged,
        summary.pairs
    );
    // ECOWAS (trust 3) now loses the source of the GREEN consignment; NG (trust 4) keeps it.
    let ecowas = report
        .changes
        .iter()
        .find(|change| change.recipient == "ECOWAS")
        .expect("ECOWAS changed");
    assert_eq!(ecowas.change, ChangeKind::RedactionChanged);
    assert!(ecowas.old.redact.is_empty());
    assert_eq!(ecowas.new.redact, vec!["source"]);
    assert!(!report.changes.iter().any(|change| change.recipient == "NG"));
    assert_eq!(summary.old_errors + summary.new_errors, 0);
}

#[test]
fn declaring_a_crisis_newly_allows_and_an_embargo_newly_denies() {
    let (_old_dir, old) = reference_with(|_| {});
    let (_new_dir, new) = reference_with(|data| {
        data["crisis"]["active"] = true.into();
        data["embargoes"]["un_arms"] = serde_json::json!(["CI"]);
    });
    let report = diff(&old, &new, &pairs(&old));
    let kinds = |recipient: &str, kind: ChangeKind| {
        report
            .changes
            .iter()
            .filter(|change| change.recipient == recipient && change.change == kind)
            .count()
    };
    // GREEN reaches other members' agencies during a crisis.
    assert!(
        kinds("NG/customs", ChangeKind::NewlyAllowed) > 0,
        "{report:#?}"
    );
    // CI is now under embargo: everything it received is denied.
    assert!(kinds("CI", ChangeKind::NewlyDenied) > 0);
    assert_eq!(
        report.summary.newly_allowed,
        report
            .changes
            .iter()
            .filter(|c| c.change == ChangeKind::NewlyAllowed)
            .count()
    );
    assert!(
        report
            .changes
            .iter()
            .all(|change| change.change != ChangeKind::ReasonsChanged)
    );
    // Reasons-only changes are listed apart: CI's denials now give the embargo as the reason.
    assert!(
        report
            .reason_changes
            .iter()
            .all(|change| change.change == ChangeKind::ReasonsChanged
                && change.old.allow == change.new.allow)
    );
    assert!(
        report
            .reason_changes
            .iter()
            .any(|change| change.recipient == "CI")
    );
    // Serializable for `cordon policy diff --json`.
    let json = serde_json::to_value(&report).expect("serializes");
    assert_eq!(json["summary"]["pairs"], report.summary.pairs);
    assert!(json["changes"][0]["change"].is_string());
}

#[test]
fn identical_policies_change_nothing() {
    let dir = common::policy_dir(&reference_policy_files());
    let policy = Policy::load(dir.path()).expect("loads");
    let inputs = pairs(&policy);
    let report = diff(&policy, &policy.clone(), &inputs);
    assert!(report.changes.is_empty() && report.reason_changes.is_empty());
    assert_eq!(report.summary.unchanged, inputs.len());
}

/// The reference policy was reworded for speed; it must decide exactly as first written, on
/// ordinary and odd inputs alike (the diff runs both on every engine path they use).
#[test]
fn the_reworded_reference_policy_decides_as_before() {
    let current = common::reference_dir();
    let before = common::reference_dir();
    write_files(
        before.path(),
        &[(
            "cordon/outbound.rego",
            include_str!("data/outbound_before_rewrite.rego"),
        )],
    );
    let current = Policy::load(current.path()).expect("loads");
    let before = Policy::load(before.path()).expect("loads");
    let recipients = [
        serde_json::json!({"id": "NG", "kind": "member", "member": "NG", "country": "NG", "trust": 4}),
        serde_json::json!({"id": "CI", "kind": "member", "member": "CI", "country": "CI", "trust": 2}),
        serde_json::json!({"id": "SS/customs", "kind": "agency", "member": "SS"}),
        serde_json::json!({"id": "NG/police", "kind": "agency", "member": "NG", "trust": "high"}),
        serde_json::json!({"id": "GH/customs", "kind": "agency", "member": "GH"}),
        serde_json::json!({"id": "ECOWAS", "kind": "organization", "member": "ECOWAS", "trust": 3}),
        serde_json::json!({"id": "XX", "kind": "martian", "member": "XX"}),
        serde_json::json!({"id": "CI/x", "kind": "agency", "member": "CI", "country": null}),
    ];
    let mut inputs = Vec::new();
    for (index, indicator) in example_indicators().into_iter().enumerate() {
        let mut variants = vec![indicator.clone()];
        let tlp = ["TLP_GREEN", "TLP_AMBER", "TLP_RED", "TLP_BOGUS"][index % 4];
        let mut changed = indicator.clone();
        changed["tlp"] = tlp.into();
        changed["releasableTo"] = serde_json::json!(["NG", "GH/police"]);
        variants.push(changed.clone());
        changed["protection"] = "PROTECTION_SOURCE_PROTECTED".into();
        changed["source"] = Value::Null;
        variants.push(changed);
        let mut no_label = indicator.clone();
        no_label.as_object_mut().expect("object").remove("tlp");
        no_label["entity"] = serde_json::json!({"name": "second kind"});
        variants.push(no_label);
        for variant in variants {
            for recipient in &recipients {
                for channel in ["subscribe", "circle"] {
                    inputs.push(DiffInput {
                        indicator: index.to_string(),
                        recipient: recipient["id"].to_string(),
                        input: input(&variant, recipient.clone(), channel),
                    });
                }
            }
        }
    }
    for odd in [
        serde_json::json!({}),
        serde_json::json!({"indicator": {"tlp": "TLP_CLEAR"}}),
    ] {
        inputs.push(DiffInput {
            indicator: "odd".into(),
            recipient: "odd".into(),
            input: odd,
        });
    }
    let report = diff(&before, &current, &inputs);
    assert_eq!(report.summary.unchanged, inputs.len(), "{report:#?}");
}
