//! Inputs on which the bytecode VM must give the interpreter's answers before it is used: the
//! example indicators sent to every recipient the policy's data names (and to agencies), and
//! the `with input as …` values of the policy's own tests that can be evaluated on their own.

use serde_json::{Value, json};

use crate::PolicyError;
use crate::analysis::closed_input_literals;
use crate::files::PolicyDirectory;
use crate::input::{Channel, InputContext, decision_input, recipient_input};
use crate::policy::{prepared_engine, timer_config};

/// The example indicators of Cordon's documentation and tests, one per line (proto3 JSON).
const EXAMPLE_INDICATORS: &str = include_str!("../tests/data/indicators.jsonl");

/// The gateway the built-in inputs pretend to be. Any id does: the inputs exercise the
/// policy's branches, they do not claim to be this member's traffic.
const GATEWAY: &str = "GH";

/// Time allowed for evaluating one test's input expression.
const LITERAL_TIME_LIMIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The example indicators, with the fields a gateway adds at publication.
pub(crate) fn example_indicators() -> Vec<Value> {
    EXAMPLE_INDICATORS
        .lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .filter_map(|(index, line)| {
            let mut indicator: Value = serde_json::from_str(line).ok()?;
            let object = indicator.as_object_mut()?;
            object.insert(
                "id".into(),
                json!(format!("00000000-0000-4000-8000-{index:012}")),
            );
            object.insert("originator".into(), json!(GATEWAY));
            object.insert("publisher".into(), json!(format!("{GATEWAY}/customs")));
            object.insert("created".into(), json!("2026-11-01T00:00:00Z"));
            Some(indicator)
        })
        .collect()
}

/// The recipients the data names, as the gateway builds them (data facts, then identity), plus
/// one agency of each named member and two agencies of the gateway's own member.
pub(crate) fn recipients(data: &Value) -> Vec<Value> {
    let named = data
        .get("recipients")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let facts = |id: &str| named.get(id).and_then(Value::as_object);
    let mut recipients = Vec::new();
    for id in named.keys() {
        let recipient = recipient_input(facts(id), id);
        let is_member = recipient["kind"] == "member";
        recipients.push(recipient);
        if is_member && !id.contains('/') {
            let agency = format!("{id}/customs");
            recipients.push(recipient_input(facts(&agency), &agency));
        }
    }
    for agency in ["customs", "police"] {
        let id = format!("{GATEWAY}/{agency}");
        recipients.push(recipient_input(facts(&id), &id));
    }
    recipients
}

/// Every example indicator to every recipient, on channels taken in turn (all three for
/// source-protected indicators, where the channel decides).
pub(crate) fn builtin_inputs(data: &Value) -> Vec<Value> {
    let indicators = example_indicators();
    let recipients = recipients(data);
    let mut inputs = Vec::new();
    for (index, indicator) in indicators.iter().enumerate() {
        for (turn, recipient) in recipients.iter().enumerate() {
            let protected = indicator.get("protection").is_some();
            let channels: &[Channel] = if protected {
                &Channel::ALL
            } else {
                std::slice::from_ref(&Channel::ALL[(index + turn) % Channel::ALL.len()])
            };
            for channel in channels {
                let context = InputContext {
                    gateway: GATEWAY,
                    channel: *channel,
                    now: "2026-11-15T12:00:00Z",
                };
                inputs.push(decision_input(
                    indicator.clone(),
                    recipient.clone(),
                    context,
                ));
            }
        }
    }
    inputs
}

/// The values of the tests' `with input as <expr>` where `<expr>` uses only the test package's
/// rules, imports and builtins, evaluated against the policy's data. Best effort: tests that do
/// not load simply give none (loading the policy does not depend on its tests).
pub(crate) fn test_inputs(directory: &PolicyDirectory) -> Vec<Value> {
    match try_test_inputs(directory) {
        Ok(inputs) => inputs,
        Err(error) => {
            tracing::debug!(%error, "no inputs taken from the policy's tests");
            Vec::new()
        }
    }
}

fn try_test_inputs(directory: &PolicyDirectory) -> Result<Vec<Value>, PolicyError> {
    if directory.tests.is_empty() {
        return Ok(Vec::new());
    }
    let mut modules = directory.module_pairs(true);
    let mut parsed = regorus::Engine::new();
    for (name, text) in &modules {
        parsed
            .add_policy(name.clone(), text.clone())
            .map_err(|error| PolicyError::Parse {
                file: name.clone(),
                message: error.to_string(),
            })?;
    }
    let all_modules = parsed.get_modules().clone();
    let test_modules = directory.test_modules(&all_modules);
    let literals = closed_input_literals(&test_modules);
    if literals.is_empty() {
        return Ok(Vec::new());
    }
    // One extra module per test file, in the test's package and with its imports, defining a
    // rule per input expression.
    let mut rules = Vec::new();
    for module in &test_modules {
        let file = module.package.span.source.file();
        let mut text = format!("{}\n", module.package.span.text());
        for import in &module.imports {
            text.push_str(import.span.text());
            text.push('\n');
        }
        let package = crate::analysis::static_path(&module.package.refr).unwrap_or_default();
        let mut any = false;
        for (index, literal) in literals
            .iter()
            .enumerate()
            .filter(|(_, literal)| &literal.file == file)
        {
            let name = format!("__cordon_input_{index}");
            text.push_str(&format!("{name} := {}\n", literal.text));
            rules.push(crate::testing::rule_path(&package, &name));
            any = true;
        }
        if any {
            modules.push((format!("{file}.__cordon_inputs.rego"), text));
        }
    }
    let engine = prepared_engine(&modules, directory.mounted_data()?)?;
    let mut inputs = Vec::new();
    for rule in rules {
        let mut engine = engine.clone();
        engine.set_execution_timer_config(timer_config(LITERAL_TIME_LIMIT));
        let Ok(value) = engine.eval_rule(rule) else {
            continue;
        };
        if let Ok(value @ Value::Object(_)) = serde_json::to_value(&value)
            && !inputs.contains(&value)
        {
            inputs.push(value);
        }
    }
    Ok(inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference_directory() -> (tempfile::TempDir, PolicyDirectory) {
        let dir = tempfile::tempdir().expect("temporary directory");
        for (relative, contents) in crate::reference_policy_files() {
            let path = dir.path().join(relative);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("create directory");
            std::fs::write(path, contents).expect("write");
        }
        let directory = PolicyDirectory::read_source(dir.path()).expect("reads");
        (dir, directory)
    }

    #[test]
    fn reference_tests_give_inputs() {
        let (_dir, directory) = reference_directory();
        let inputs = test_inputs(&directory);
        // `with input as request(indicator("TLP_GREEN", "consignment"), partner)` and the like;
        // those using a test's local variables are left out.
        let requests = inputs
            .iter()
            .filter(|input| input["indicator"].is_object() && input["context"]["gateway"] == "GH")
            .count();
        assert!(requests >= 10, "{requests} of {}", inputs.len());
    }

    #[test]
    fn builtin_inputs_cover_every_recipient_of_the_data() {
        let data = serde_json::json!({"recipients": {"NG": {"trust": 4}, "ECOWAS": {"kind": "organization"}}});
        let recipients = recipients(&data);
        let ids: Vec<&str> = recipients
            .iter()
            .map(|recipient| recipient["id"].as_str().expect("id"))
            .collect();
        assert_eq!(
            ids,
            ["ECOWAS", "NG", "NG/customs", "GH/customs", "GH/police"]
        );
        assert_eq!(recipients[0]["kind"], "organization");
        assert_eq!(recipients[2]["kind"], "agency");
        assert!(builtin_inputs(&data).len() >= example_indicators().len() * ids.len());
    }
}
