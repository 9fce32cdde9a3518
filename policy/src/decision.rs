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

    /// This decision turned into a deny because applying it failed (`error`: for example a
    /// redaction path that does not exist): the policy's redactions and reasons are kept for
    /// the record, with the failure added to the reasons.
    pub fn into_fail_closed(self, error: impl Into<String>) -> Decision {
        let error = error.into();
        let mut reasons = self.reasons;
        reasons.push(format!("denied: {error}"));
        Decision {
            allow: false,
            redact: self.redact,
            reasons,
            error: Some(error),
        }
    }

    /// Checks the value of the entrypoint rule. `redact` and `reasons` may be arrays or sets
    /// (partial set rules) and may be left out, meaning none; `allow` must be there.
    ///
    /// Reads the engine's value directly: a round trip through `serde_json` cost more than
    /// some whole decisions.
    pub(crate) fn from_policy_value(value: &regorus::Value) -> Result<Decision, String> {
        if *value == regorus::Value::Undefined {
            return Err(format!("{} is undefined", crate::ENTRYPOINT));
        }
        let regorus::Value::Object(object) = value else {
            return Err(format!(
                "{} is {}, not an object",
                crate::ENTRYPOINT,
                value_type(value)
            ));
        };
        // Unknown fields first: a typo such as `redcat` is the likeliest mistake to report.
        for (key, _) in object.iter() {
            let known = matches!(key, regorus::Value::String(name) if DECISION_FIELDS.contains(&name.as_ref()));
            if !known {
                let name = match key {
                    regorus::Value::String(name) => format!("{:?}", name.as_ref()),
                    other => other.to_string(),
                };
                return Err(format!(
                    "decision has unknown field {name} (expected {})",
                    DECISION_FIELDS.join(", ")
                ));
            }
        }
        let mut allow = None;
        let mut redact = Vec::new();
        let mut reasons = Vec::new();
        for (key, field) in object.iter() {
            match key {
                regorus::Value::String(name) if name.as_ref() == "allow" => {
                    allow = match field {
                        regorus::Value::Bool(allow) => Some(*allow),
                        other => {
                            return Err(format!(
                                "decision.allow is {}, not a boolean",
                                value_type(other)
                            ));
                        }
                    }
                }
                regorus::Value::String(name) if name.as_ref() == "redact" => {
                    redact = string_list(field, "redact")?;
                }
                regorus::Value::String(name) if name.as_ref() == "reasons" => {
                    reasons = string_list(field, "reasons")?;
                }
                _ => {}
            }
        }
        let Some(allow) = allow else {
            return Err("decision has no allow field".to_owned());
        };
        if let Some(bad) = redact.iter().find(|path| !is_field_path(path)) {
            return Err(format!(
                "decision.redact entry {bad:?} is not a field path such as \"source\" or \"entity.name\""
            ));
        }
        if redact.len() > 1 {
            let mut seen = std::collections::HashSet::new();
            redact.retain(|path| seen.insert(path.clone()));
        }
        Ok(Decision {
            allow,
            redact,
            reasons,
            error: None,
        })
    }
}

fn string_list(value: &regorus::Value, field: &str) -> Result<Vec<String>, String> {
    let items: Box<dyn Iterator<Item = &regorus::Value>> = match value {
        regorus::Value::Array(items) => Box::new(items.iter()),
        regorus::Value::Set(items) => Box::new(items.iter()),
        other => {
            return Err(format!(
                "decision.{field} is {}, not a list of strings",
                value_type(other)
            ));
        }
    };
    items
        .map(|item| match item {
            regorus::Value::String(text) => Ok(text.as_ref().to_owned()),
            other => Err(format!(
                "decision.{field} holds {}, not only strings",
                value_type(other)
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

/// The JSON name of a value's type, as the decision errors say it (used by the wasm engine,
/// whose results are JSON).
#[cfg_attr(not(feature = "opa-wasm"), allow(dead_code))]
pub(crate) fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The JSON name of a regorus value's type, as the decision errors say it; sets are lists in
/// JSON.
fn value_type(value: &regorus::Value) -> &'static str {
    match value {
        regorus::Value::Null => "null",
        regorus::Value::Bool(_) => "a boolean",
        regorus::Value::Number(_) => "a number",
        regorus::Value::String(_) => "a string",
        regorus::Value::Array(_) | regorus::Value::Set(_) => "an array",
        regorus::Value::Object(_) => "an object",
        regorus::Value::Undefined => "undefined",
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
