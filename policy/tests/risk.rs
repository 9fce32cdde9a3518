//! `Policy::assess`: the risk entrypoint of the reference policy, and every way an assessment
//! fails closed to UNASSESSED.

mod common;

use cordon_policy::{Policy, RiskContext, RiskLevel, risk_input};
use serde_json::{Value, json};

fn context() -> RiskContext<'static> {
    RiskContext {
        member: "GH",
        agency: "GH/customs",
        now: "2026-11-25T00:00:00Z",
    }
}

fn forged_euc_input() -> Value {
    let declaration = json!({
        "reference": "GH-EXP-0002",
        "goods": [{"hsCode": "930190", "description": "assault rifles", "quantity": 400}],
        "endUserCertificate": {"number": "EUC/2026/7731", "issuingCountry": "SN"},
    });
    let matches = json!([{
        "declarationField": "endUserCertificate.number",
        "value": "EUC/2026/7731",
        "indicatorId": "0196f1a2-0000-7000-8000-000000000003",
        "kind": "endUserCertificate",
        "indicatorField": "endUserCertificate.number",
        "method": "exact",
        "similarity": 1.0,
        "feature": "euc_number",
        "tlp": "TLP_AMBER",
        "originator": "NG",
        "severity": "SEVERITY_CRITICAL",
        "indicator": {"endUserCertificate": {"number": "EUC/2026/7731", "status": "EUC_STATUS_FORGED"}},
    }]);
    risk_input(declaration, matches, json!([]), context())
}

#[test]
fn the_reference_policy_weighs_a_forged_euc() {
    let dir = common::reference_dir();
    let policy = Policy::load(dir.path()).expect("reference policy loads");
    assert!(policy.has_risk_assessment());
    let assessment = policy.assess(&forged_euc_input());
    assert_eq!(assessment.error, None);
    assert_eq!(assessment.level, RiskLevel::High);
    let flags: Vec<&str> = assessment
        .reasons
        .iter()
        .map(|reason| reason.flag.as_str())
        .collect();
    assert!(flags.contains(&"forged_euc"), "{flags:?}");
    assert!(flags.contains(&"arms_goods"), "{flags:?}");
    assert_eq!(assessment.score, 75);
}

fn policy_with(risk: Option<&str>) -> Policy {
    let mut modules = vec![(
        "outbound.rego".to_owned(),
        "package cordon.outbound\nimport rego.v1\ndecision := {\"allow\": input.indicator.tlp == \"TLP_CLEAR\", \"redact\": [], \"reasons\": []}\n"
            .to_owned(),
    )];
    if let Some(rules) = risk {
        modules.push((
            "risk.rego".to_owned(),
            format!("package cordon.risk\nimport rego.v1\n{rules}\n"),
        ));
    }
    Policy::from_modules(modules, json!({}), "r".into()).expect("policy loads")
}

fn check_unassessed(risk: Option<&str>, expected: &str) {
    let policy = policy_with(risk);
    let assessment = policy.assess(&forged_euc_input());
    assert_eq!(assessment.level, RiskLevel::Unassessed, "{risk:?}");
    assert_eq!(assessment.score, 0);
    let error = assessment.error.expect("an error says why");
    assert!(error.contains(expected), "{risk:?}: {error}");
    assert_eq!(assessment.reasons[0].flag, "unassessed");
}

#[test]
fn anything_but_an_assessment_is_unassessed_never_low() {
    check_unassessed(None, "does not define data.cordon.risk.assessment");
    check_unassessed(
        Some("assessment := a if { a := input.nothing }"),
        "undefined",
    );
    check_unassessed(
        Some("assessment := {\"score\": 5, \"level\": \"low\"}"),
        "level",
    );
    check_unassessed(
        Some("assessment := {\"score\": 500, \"level\": \"LOW\"}"),
        "between 0 and 100",
    );
    check_unassessed(
        Some("assessment := {\"score\": to_number(\"x\"), \"level\": \"LOW\"}"),
        "evaluation of data.cordon.risk.assessment failed",
    );
    check_unassessed(
        Some(
            "assessment := {\"score\": count([x | some x in numbers.range(1, 100000000)]), \"level\": \"LOW\"}",
        ),
        "time limit",
    );
}

#[test]
fn a_policy_without_the_risk_entrypoint_still_decides_releases() {
    let policy = policy_with(None);
    assert!(!policy.has_risk_assessment());
    let input = common::input(
        &json!({"tlp": "TLP_CLEAR"}),
        json!({"id": "NG"}),
        "subscribe",
    );
    assert!(policy.decide(&input).allow);
}

#[test]
fn the_risk_rules_do_not_change_what_the_sharing_decision_reads() {
    let sharing_only = policy_with(None);
    let with_risk = policy_with(Some(
        "assessment := {\"score\": count(input.matches), \"level\": \"LOW\", \"reasons\": []} if input.context.now",
    ));
    assert_eq!(sharing_only.input_paths(), with_risk.input_paths());
    assert_eq!(with_risk.input_paths(), ["input.indicator.tlp"]);
    let dir = common::reference_dir();
    let reference = Policy::load(dir.path()).expect("reference policy loads");
    assert!(
        reference
            .input_paths()
            .iter()
            .all(|path| !path.starts_with("input.declaration") && path != "input.context.now"),
        "{:?}",
        reference.input_paths()
    );
}

#[test]
fn the_reference_risk_policy_runs_on_the_bytecode_vm_and_others_on_the_interpreter() {
    let dir = common::reference_dir();
    let policy = Policy::load(dir.path()).expect("reference policy loads");
    assert_eq!(policy.risk_engine(), cordon_policy::EngineKind::Rvm);
    // A risk rule the bytecode compiler refuses (the data root read whole) is assessed by the
    // interpreter, with the same answer.
    let policy = policy_with(Some(
        "assessment := {\"score\": count(object.get(data, [\"screening\"], {})) + 30, \"level\": \"MEDIUM\", \"reasons\": []}",
    ));
    assert_eq!(policy.risk_engine(), cordon_policy::EngineKind::Interpreter);
    let assessment = policy.assess(&forged_euc_input());
    assert_eq!(
        (assessment.score, assessment.level),
        (30, RiskLevel::Medium)
    );
}
