//! The decision document a policy returns, and the checks that turn anything malformed into a
//! deny rather than a guess.

use serde::{Deserialize, Serialize};

/// What the policy decided for one indicator and one recipient.
///
/// `redact` holds proto3 JSON field paths (`source`, `entity.registrationNumber`) that the
/// gateway removes before sending; `reasons` are short sentences for the decision log. When
/// `error` is set the policy could not decide and the decision is a deny (fail closed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allow: bool,
    pub redact: Vec<String>,
    pub reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The keys a decision document may have; anything else is most likely a typo (`redcat`) that
/// would silently drop a redaction, so it denies.
const DECISION_FIELDS: [&str; 3] = ["allow", "redact", "reasons"];

impl Decision {
    /// A deny for a known reason, without an error: for example the gateway's hard floor.
    pub fn deny(reason: impl Into<String>) -> Decision {
        Decision {
            allow: false,
            redact: Vec::new(),
            reasons: vec![reason.into()],
            error: None,
        }
    }

    /// The deny returned when the policy could not decide: `error` says why.
    pub fn fail_closed(error: impl Into<String>) -> Decision {
        Decision {
            allow: false,
            redact: Vec::new(),
            reasons: vec!["policy could not decide; denied (fail closed)".to_owned()],
            error: Some(error.into()),
        }
    }

    /// Checks the value of the entrypoint rule. `redact` and `reasons` may be arrays or sets
    /// (partial set rules) and may be left out, meaning none; `allow` must be there.
    pub(crate) fn from_policy_value(value: &regorus::Value) -> Result<Decision, String> {
        if *value == regorus::Value::Undefined {
            return Err(format!("{} is undefined", crate::ENTRYPOINT));
        }
        let value = serde_json::to_value(value)
            .map_err(|error| format!("{} is not a JSON value: {error}", crate::ENTRYPOINT))?;
        let serde_json::Value::Object(object) = value else {
            return Err(format!(
                "{} is {}, not an object",
                crate::ENTRYPOINT,
                json_type(&value)
            ));
        };
        if let Some(unknown) = object
            .keys()
            .find(|key| !DECISION_FIELDS.contains(&key.as_str()))
        {
            return Err(format!(
                "decision has unknown field {unknown:?} (expected allow, redact, reasons)"
            ));
        }
        let allow = match object.get("allow") {
            Some(serde_json::Value::Bool(allow)) => *allow,
            Some(other) => {
                return Err(format!(
                    "decision.allow is {}, not a boolean",
                    json_type(other)
                ));
            }
            None => return Err("decision has no allow field".to_owned()),
        };
        let mut redact = string_list(&object, "redact")?;
        if let Some(bad) = redact.iter().find(|path| !is_field_path(path)) {
            return Err(format!(
                "decision.redact entry {bad:?} is not a field path such as \"source\" or \"entity.name\""
            ));
        }
        let mut seen = std::collections::HashSet::new();
        redact.retain(|path| seen.insert(path.clone()));
        let reasons = string_list(&object, "reasons")?;
        Ok(Decision {
            allow,
            redact,
            reasons,
            error: None,
        })
    }
}

fn string_list(
    object: &serde_json::Map<String, serde_json::Value>,
    field: &str,
) -> Result<Vec<String>, String> {
    let Some(value) = object.get(field) else {
        return Ok(Vec::new());
    };
    let serde_json::Value::Array(items) = value else {
        return Err(format!(
            "decision.{field} is {}, not a list of strings",
            json_type(value)
        ));
    };
    items
        .iter()
        .map(|item| match item {
            serde_json::Value::String(text) => Ok(text.clone()),
            other => Err(format!(
                "decision.{field} holds {}, not only strings",
                json_type(other)
            )),
        })
        .collect()
}

/// A dotted path of proto3 JSON field names. Whether the field exists in the schema is the
/// gateway's check, since only it knows the message types.
fn is_field_path(path: &str) -> bool {
    !path.is_empty()
        && path.split('.').all(|segment| {
            segment
                .chars()
                .next()
                .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
                && segment
                    .chars()
                    .all(|character| character.is_ascii_alphanumeric() || character == '_')
        })
}

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(document: serde_json::Value, expected: Result<Decision, &str>) {
        let value: regorus::Value = serde_json::from_value(document.clone()).unwrap();
        let actual = Decision::from_policy_value(&value);
        match (actual, expected) {
            (Ok(actual), Ok(expected)) => assert_eq!(actual, expected, "{document}"),
            (Err(actual), Err(expected)) => {
                assert!(actual.contains(expected), "{document}: {actual}")
            }
            (actual, expected) => panic!("{document}: got {actual:?}, expected {expected:?}"),
        }
    }

    fn decision(allow: bool, redact: &[&str], reasons: &[&str]) -> Decision {
        Decision {
            allow,
            redact: redact.iter().map(|s| s.to_string()).collect(),
            reasons: reasons.iter().map(|s| s.to_string()).collect(),
            error: None,
        }
    }

    #[test]
    fn decision_documents() {
        use serde_json::json;
        check(
            json!({"allow": true, "redact": ["source"], "reasons": ["ok"]}),
            Ok(decision(true, &["source"], &["ok"])),
        );
        check(json!({"allow": false}), Ok(decision(false, &[], &[])));
        check(
            json!({"allow": true, "redact": ["source", "entity.name", "source"]}),
            Ok(decision(true, &["source", "entity.name"], &[])),
        );
        check(json!({"allow": "yes"}), Err("decision.allow is a string"));
        check(json!({"redact": []}), Err("no allow field"));
        check(json!([true]), Err("is an array, not an object"));
        check(
            json!({"allow": true, "redact": "source"}),
            Err("decision.redact is a string"),
        );
        check(
            json!({"allow": true, "redact": [1]}),
            Err("decision.redact holds a number"),
        );
        check(
            json!({"allow": true, "reasons": [{"a": 1}]}),
            Err("decision.reasons holds an object"),
        );
        check(
            json!({"allow": true, "redcat": ["source"]}),
            Err("unknown field \"redcat\""),
        );
        check(
            json!({"allow": true, "redact": ["source code"]}),
            Err("not a field path"),
        );
        check(
            json!({"allow": true, "redact": [""]}),
            Err("not a field path"),
        );
        check(
            json!({"allow": true, "redact": ["a..b"]}),
            Err("not a field path"),
        );
    }

    #[test]
    fn undefined_is_an_error() {
        let error = Decision::from_policy_value(&regorus::Value::Undefined).unwrap_err();
        assert!(error.contains("undefined"), "{error}");
    }

    #[test]
    fn constructors_deny() {
        let denied = Decision::deny("third-party rule");
        assert!(!denied.allow && denied.error.is_none());
        let failed = Decision::fail_closed("boom");
        assert!(!failed.allow);
        assert_eq!(failed.error.as_deref(), Some("boom"));
    }
}
