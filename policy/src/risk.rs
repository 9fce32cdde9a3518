//! Risk assessment of a screened declaration: the board's `data.cordon.risk.assessment`, in the
//! same policy source as the sharing policy, with input `{declaration, matches, findings,
//! context}` and output `{score, level, reasons}`.
//!
//! Like a release decision, an assessment never fails: a policy without the entrypoint, an
//! evaluation error, a time-out or a malformed answer is level [`RiskLevel::Unassessed`] with
//! `error` set, never `LOW`.

use std::panic::AssertUnwindSafe;

use serde::Serialize;
use serde_json::{Value, json};

use crate::Policy;
use crate::policy::{evaluation_error, failure_kind, timer_config, to_rego_value};
use crate::rvm::RvmEngine;

/// The rule evaluated for every screened declaration.
pub const RISK_ENTRYPOINT: &str = "data.cordon.risk.assessment";

/// The package that may define [`RISK_ENTRYPOINT`], as path components.
pub(crate) const RISK_PACKAGE: [&str; 2] = ["cordon", "risk"];

/// The rule name inside [`RISK_PACKAGE`].
pub(crate) const RISK_RULE: &str = "assessment";

/// How risky a declaration is, by the board's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RiskLevel {
    Low,
    Medium,
    High,
    Critical,
    /// The policy could not assess: never read as low.
    Unassessed,
}

impl RiskLevel {
    pub const ALL: [RiskLevel; 5] = [
        RiskLevel::Low,
        RiskLevel::Medium,
        RiskLevel::High,
        RiskLevel::Critical,
        RiskLevel::Unassessed,
    ];

    /// `LOW`, `MEDIUM`, `HIGH`, `CRITICAL` or `UNASSESSED`.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::Low => "LOW",
            RiskLevel::Medium => "MEDIUM",
            RiskLevel::High => "HIGH",
            RiskLevel::Critical => "CRITICAL",
            RiskLevel::Unassessed => "UNASSESSED",
        }
    }

    /// The level a policy may answer (`UNASSESSED` is the gateway's, not the policy's).
    fn assessed(name: &str) -> Option<RiskLevel> {
        [
            RiskLevel::Low,
            RiskLevel::Medium,
            RiskLevel::High,
            RiskLevel::Critical,
        ]
        .into_iter()
        .find(|level| level.as_str() == name)
    }
}

/// One reason for a score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RiskReason {
    pub flag: String,
    pub weight: f64,
    pub explanation: String,
}

/// The board's assessment of one declaration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assessment {
    /// 0 to 100.
    pub score: u32,
    pub level: RiskLevel,
    pub reasons: Vec<RiskReason>,
    /// Why the policy could not assess, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Assessment {
    /// The assessment when the policy could not give one: `error` says why.
    pub fn unassessed(error: impl Into<String>) -> Assessment {
        let error = error.into();
        Assessment {
            score: 0,
            level: RiskLevel::Unassessed,
            reasons: vec![RiskReason {
                flag: "unassessed".to_owned(),
                weight: 0.0,
                explanation: format!("the risk policy could not assess this declaration: {error}"),
            }],
            error: Some(error),
        }
    }
}

/// `input.context` of an assessment.
#[derive(Debug, Clone, Copy)]
pub struct RiskContext<'a> {
    /// The gateway's member id.
    pub member: &'a str,
    /// The screening agency (`GH/customs`).
    pub agency: &'a str,
    /// RFC 3339.
    pub now: &'a str,
}

/// The input of one assessment: the declaration (proto3 JSON), its matches, the red flags of
/// its identifiers found without any indicator (failed check digits and the like), and the
/// context.
pub fn risk_input(
    declaration: Value,
    matches: Value,
    findings: Value,
    context: RiskContext<'_>,
) -> Value {
    json!({
        "declaration": declaration,
        "matches": matches,
        "findings": findings,
        "context": {"member": context.member, "agency": context.agency, "now": context.now},
    })
}

/// [`risk_input`] in Rego's form, built without a JSON tree in between: the declaration and
/// each match as [`crate::rego_value::to_rego`] and [`crate::rego_value::object`] give them.
pub fn risk_input_value(
    declaration: regorus::Value,
    matches: Vec<regorus::Value>,
    findings: Vec<regorus::Value>,
    context: RiskContext<'_>,
) -> regorus::Value {
    use crate::rego_value::{object, text};
    object([
        ("declaration", declaration),
        ("matches", regorus::Value::from(matches)),
        ("findings", regorus::Value::from(findings)),
        (
            "context",
            object([
                ("member", text(context.member)),
                ("agency", text(context.agency)),
                ("now", text(context.now)),
            ]),
        ),
    ])
}

/// The keys an assessment may have.
const ASSESSMENT_FIELDS: [&str; 3] = ["score", "level", "reasons"];
const REASON_FIELDS: [&str; 3] = ["flag", "weight", "explanation"];

impl Policy {
    /// Whether the policy defines [`RISK_ENTRYPOINT`].
    pub fn has_risk_assessment(&self) -> bool {
        self.shared_has_risk()
    }

    /// Evaluates [`RISK_ENTRYPOINT`] for `input` (see [`risk_input`]). Never fails: a policy
    /// without it, an error, a time-out or a malformed answer is [`RiskLevel::Unassessed`].
    ///
    /// The bytecode VM assesses when it has shown, at load, that it gives the interpreter's
    /// assessments (see [`Policy::risk_engine`]); otherwise the interpreter does.
    /// One assessment in [`crate::LIVE_COMPARISON_EVERY`] made by the VM is made again by
    /// the interpreter; on any disagreement the VM is retired for this revision and the
    /// interpreter's assessment stands.
    pub fn assess(&self, input: &Value) -> Assessment {
        match to_rego_value(input) {
            Ok(input) => self.assess_value(input),
            Err(error) => Assessment::unassessed(error),
        }
    }

    /// [`Policy::assess`] of an input already in Rego's form (see [`risk_input_value`]): what the
    /// gateway calls, without a JSON tree in between.
    pub fn assess_value(&self, input: regorus::Value) -> Assessment {
        let Some(vm) = self.risk_vm() else {
            return self.assess_with(None, input);
        };
        if !self.sample_assessment() {
            return self.assess_with(Some(vm), input);
        }
        let assessment = self.assess_with(Some(vm), input.clone());
        let reference = self.assess_with(None, input);
        if !same_assessment(&reference, &assessment) {
            self.retire_risk_vm(&reference, &assessment);
            return reference;
        }
        assessment
    }

    /// [`Policy::assess`] on the interpreter, whichever engine assesses: for comparisons and
    /// benchmarks.
    pub fn assess_interpreted(&self, input: &Value) -> Assessment {
        match to_rego_value(input) {
            Ok(input) => self.assess_with(None, input),
            Err(error) => Assessment::unassessed(error),
        }
    }

    /// [`Policy::assess`] on the given engine: the VM's program, or the interpreter.
    pub(crate) fn assess_with(&self, vm: Option<&RvmEngine>, input: regorus::Value) -> Assessment {
        if !self.has_risk_assessment() {
            return Assessment::unassessed(format!("the policy does not define {RISK_ENTRYPOINT}"));
        }
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let value = match vm {
                Some(vm) => vm.evaluate(input, self.time_limit())?,
                None => {
                    let mut engine = self.template().clone();
                    engine.set_execution_timer_config(timer_config(self.time_limit()));
                    engine.set_input(input);
                    engine
                        .eval_rule(RISK_ENTRYPOINT.to_owned())
                        .map_err(|error| {
                            evaluation_error(RISK_ENTRYPOINT, &error, self.time_limit())
                        })?
                }
            };
            if value == regorus::Value::Undefined {
                return Err(format!("{RISK_ENTRYPOINT} is undefined"));
            }
            let value = serde_json::to_value(&value).map_err(|error| error.to_string())?;
            parse_assessment(&value)
        }));
        match outcome {
            Ok(Ok(assessment)) => assessment,
            Ok(Err(error)) => Assessment::unassessed(error),
            Err(_) => Assessment::unassessed(format!("evaluation of {RISK_ENTRYPOINT} panicked")),
        }
    }
}

/// Whether two engines assessed alike: the same assessment, or both unable to assess in the
/// same way (a time-out, an evaluation error, the same undefined or malformed answer); the
/// engines word their evaluation errors differently, but a VM that says "undefined" where the
/// interpreter names a failing builtin disagrees.
pub(crate) fn same_assessment(a: &Assessment, b: &Assessment) -> bool {
    match (&a.error, &b.error) {
        (Some(a), Some(b)) => failure_kind(a, RISK_ENTRYPOINT) == failure_kind(b, RISK_ENTRYPOINT),
        _ => a == b,
    }
}

/// Risk inputs every policy's VM is compared on before it assesses: declarations that raise
/// each red flag of the reference policy (and none), with matches of every kind and severity.
pub(crate) fn builtin_risk_inputs() -> Vec<Value> {
    let context = RiskContext {
        member: "XX",
        agency: "XX/customs",
        now: "2026-11-15T12:00:00Z",
    };
    let declarations = [
        json!({"reference": "plain", "goods": [{"hsCode": "847130", "description": "laptops", "quantity": 10}]}),
        json!({
            "reference": "arms",
            "parties": [
                {"role": "PARTY_ROLE_CONSIGNEE", "name": "Example Trading FZE", "country": "ae"},
                {"role": "PARTY_ROLE_END_USER", "name": "Example Logistics", "country": "SO"},
                {"role": "PARTY_ROLE_BROKER", "name": "Broker One"},
            ],
            "goods": [
                {"hsCode": "930190", "description": "assault rifles", "quantity": 400},
                {"hsCode": "8806", "description": "rifle scopes and ammunition", "quantity": 4},
            ],
            "transport": {"portOfDischarge": "SOMGQ", "transshipmentPorts": ["LYTIP", "AEJEA"]},
            "payments": [{"payer": "Someone Else Ltd", "amount": 1000}],
        }),
        json!({
            "reference": "certificate",
            "parties": [{"role": "PARTY_ROLE_BROKER", "name": "Registered", "lei": "5493001KJTIIGC8Y1R12"}],
            "goods": [{"hsCode": "930200", "description": "pistols"}],
            "endUserCertificate": {"number": "EUC/2026/7731", "issuingCountry": "SN"},
            "payments": [{"payer": "Registered"}],
        }),
    ];
    let matches = json!([
        {"declarationField": "endUserCertificate.number", "value": "EUC/2026/7731", "indicatorId": "i-1", "kind": "endUserCertificate", "indicatorField": "endUserCertificate.number", "method": "exact", "similarity": 1.0, "feature": "euc_number", "tlp": "TLP_AMBER", "originator": "NG", "severity": "SEVERITY_CRITICAL", "indicator": {"endUserCertificate": {"number": "EUC/2026/7731", "status": "EUC_STATUS_FORGED"}}},
        {"declarationField": "endUserCertificate.number", "value": "EUC/2026/7731", "indicatorId": "i-2", "kind": "endUserCertificate", "indicatorField": "endUserCertificate.number", "method": "normalised", "similarity": 1.0, "feature": "euc_number", "tlp": "TLP_GREEN", "originator": "GH", "severity": "SEVERITY_HIGH", "indicator": {"endUserCertificate": {"number": "EUC-2026-7731", "status": "EUC_STATUS_REUSED"}}},
        {"declarationField": "parties[0].name", "value": "Example Trading FZE", "indicatorId": "i-3", "kind": "broker", "indicatorField": "broker.name", "method": "fuzzy", "similarity": 0.91, "feature": "party_name", "tlp": "TLP_GREEN", "originator": "GH", "severity": "SEVERITY_MEDIUM", "indicator": {"broker": {"name": "Example Tradng FZE"}}},
        {"declarationField": "transport.vesselImo", "value": "9234563", "indicatorId": "i-4", "kind": "vessel", "indicatorField": "vessel.imo", "method": "exact", "similarity": 1.0, "feature": "imo", "tlp": "TLP_CLEAR", "originator": "NG", "severity": "SEVERITY_LOW", "indicator": {"vessel": {"imo": "9234563"}}},
        {"declarationField": "transport.transshipmentPorts[0]", "value": "LYTIP", "indicatorId": "i-5", "kind": "route", "indicatorField": "route.ports[0]", "method": "exact", "similarity": 1.0, "feature": "route_port", "tlp": "TLP_GREEN", "originator": "NG", "indicator": {"route": {"ports": ["LYTIP"]}}},
        {"declarationField": "transport.portOfDischarge", "value": "SO", "indicatorId": "i-5", "kind": "route", "indicatorField": "route.destinationCountries[0]", "method": "exact", "similarity": 1.0, "feature": "destination_country", "tlp": "TLP_GREEN", "originator": "NG", "indicator": {"route": {"destinationCountries": ["SO"]}}},
        {"declarationField": "transport.portOfLoading", "value": "TR", "indicatorId": "i-5", "kind": "route", "indicatorField": "route.originCountries[0]", "method": "exact", "similarity": 1.0, "feature": "origin_country", "tlp": "TLP_GREEN", "originator": "NG", "indicator": {"route": {"originCountries": ["TR"]}}},
    ]);
    let findings = json!([
        {"field": "transport.vesselImo", "flag": "failed_check_digit", "explanation": "IMO 9234564 fails its check digit"},
        {"field": "transport.vesselMmsi", "flag": "not_a_ship_station", "explanation": "MMSI 012345678 is not a ship station"},
        {"field": "parties[0].lei", "flag": "unknown_flag", "explanation": "a flag no weight names"},
    ]);
    let mut inputs = Vec::new();
    for declaration in declarations {
        for (matches, findings) in [
            (json!([]), json!([])),
            (matches.clone(), json!([])),
            (json!([]), findings.clone()),
            (matches.clone(), findings.clone()),
        ] {
            inputs.push(risk_input(declaration.clone(), matches, findings, context));
        }
    }
    inputs
}

fn parse_assessment(value: &Value) -> Result<Assessment, String> {
    let Value::Object(object) = value else {
        return Err(format!(
            "{RISK_ENTRYPOINT} is {}, not an object",
            crate::decision::json_type(value)
        ));
    };
    if let Some(unknown) = object
        .keys()
        .find(|key| !ASSESSMENT_FIELDS.contains(&key.as_str()))
    {
        return Err(format!(
            "assessment has unknown field {unknown:?} (expected {})",
            ASSESSMENT_FIELDS.join(", ")
        ));
    }
    let score = object
        .get("score")
        .and_then(Value::as_f64)
        .ok_or("assessment.score is missing or not a number")?;
    if !(0.0..=100.0).contains(&score) {
        return Err(format!("assessment.score {score} is not between 0 and 100"));
    }
    let level = object
        .get("level")
        .and_then(Value::as_str)
        .and_then(RiskLevel::assessed)
        .ok_or("assessment.level is missing or not one of LOW, MEDIUM, HIGH, CRITICAL")?;
    let reasons = match object.get("reasons") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(index, item)| parse_reason(index, item))
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(format!(
                "assessment.reasons is {}, not an array",
                crate::decision::json_type(other)
            ));
        }
    };
    Ok(Assessment {
        score: score.round() as u32,
        level,
        reasons,
        error: None,
    })
}

fn parse_reason(index: usize, item: &Value) -> Result<RiskReason, String> {
    let Value::Object(object) = item else {
        return Err(format!("assessment.reasons[{index}] is not an object"));
    };
    if let Some(unknown) = object
        .keys()
        .find(|key| !REASON_FIELDS.contains(&key.as_str()))
    {
        return Err(format!(
            "assessment.reasons[{index}] has unknown field {unknown:?} (expected {})",
            REASON_FIELDS.join(", ")
        ));
    }
    let text = |name: &str| {
        object
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("assessment.reasons[{index}].{name} is missing or not a string"))
    };
    Ok(RiskReason {
        flag: text("flag")?,
        weight: object
            .get("weight")
            .and_then(Value::as_f64)
            .ok_or_else(|| {
                format!("assessment.reasons[{index}].weight is missing or not a number")
            })?,
        explanation: text("explanation")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: Value, expected: Result<(u32, RiskLevel, usize), &str>) {
        let parsed = parse_assessment(&value)
            .map(|assessment| (assessment.score, assessment.level, assessment.reasons.len()));
        match expected {
            Ok(expected) => assert_eq!(parsed, Ok(expected), "{value}"),
            Err(part) => {
                let error = parsed.expect_err("must be refused");
                assert!(error.contains(part), "{value}: {error}");
            }
        }
    }

    #[test]
    fn assessments_are_read_strictly() {
        check(
            json!({"score": 35, "level": "MEDIUM", "reasons": [{"flag": "hs93", "weight": 35, "explanation": "arms"}]}),
            Ok((35, RiskLevel::Medium, 1)),
        );
        check(
            json!({"score": 0.4, "level": "LOW"}),
            Ok((0, RiskLevel::Low, 0)),
        );
        check(
            json!({"score": 101, "level": "HIGH"}),
            Err("between 0 and 100"),
        );
        check(json!({"score": 10, "level": "UNASSESSED"}), Err("level"));
        check(json!({"score": 10, "level": "low"}), Err("level"));
        check(json!({"score": "10", "level": "LOW"}), Err("score"));
        check(
            json!({"score": 10, "level": "LOW", "reasns": []}),
            Err("unknown field"),
        );
        check(
            json!({"score": 10, "level": "LOW", "reasons": {}}),
            Err("not an array"),
        );
        check(
            json!({"score": 10, "level": "LOW", "reasons": [{"flag": "x", "weight": "1", "explanation": "y"}]}),
            Err("reasons[0].weight"),
        );
        check(json!([1]), Err("not an object"));
    }

    #[test]
    fn levels_by_name() {
        for level in RiskLevel::ALL {
            assert_eq!(serde_json::to_value(level).unwrap(), json!(level.as_str()));
        }
        assert_eq!(RiskLevel::assessed("UNASSESSED"), None);
    }
}
