//! A test runner for a policy directory, in the manner of `opa test`: every rule named `test_*`
//! in a `*_test.rego` file is evaluated against the directory's policy and data, and passes
//! when it is `true`.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::PolicyError;
use crate::files::{PolicyDirectory, mounted_data_document};
use crate::policy::{evaluation_error, prepared_engine, timer_config};

/// Tests may build many inputs and mock data; they get far more time than one decision, but a
/// test stuck in a loop must still not hang `cordon policy test` or a policy activation.
const TEST_TIME_LIMIT: Duration = Duration::from_secs(10);

/// The outcome of one test rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TestResult {
    /// The test's package without the `data.` prefix, for example `cordon.outbound_test`.
    pub package: String,
    /// The rule name, for example `test_amber_to_partner`.
    pub name: String,
    pub passed: bool,
    /// Set when the test could not be evaluated or is not a boolean; a test that is simply
    /// `false` or undefined fails with no error, as in `opa test`.
    pub error: Option<String>,
    /// What the test printed with `print()`, useful when it fails.
    pub output: Vec<String>,
}

impl TestResult {
    /// The full rule path, as `opa test` names a test: `data.<package>.<name>`.
    pub fn path(&self) -> String {
        format!("data.{}.{}", self.package, self.name)
    }
}

/// The outcome of a test run, in file order and then in the order the tests are written.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TestReport {
    pub results: Vec<TestResult>,
}

impl TestReport {
    /// How many tests passed.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|result| result.passed).count()
    }

    /// How many tests failed or could not be evaluated.
    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }

    /// Whether every test passed (true when there are none).
    pub fn all_passed(&self) -> bool {
        self.results.iter().all(|result| result.passed)
    }

    /// The tests that did not pass.
    pub fn failures(&self) -> impl Iterator<Item = &TestResult> {
        self.results.iter().filter(|result| !result.passed)
    }
}

/// Runs the `test_*` rules of the directory's `*_test.rego` files against its policy and data.
///
/// `filter` is a regular expression matched against each test's full path
/// (`data.cordon.outbound_test.test_red_to_named`), like `opa test --run`.
///
/// Errors are for what prevents running at all (a file that does not parse, conflicting data,
/// an invalid filter); a failing or erroring test is a result, not an error.
pub fn run_tests(dir: &Path, filter: Option<&str>) -> Result<TestReport, PolicyError> {
    let directory = PolicyDirectory::read(dir)?;
    let modules: Vec<(String, String)> = directory
        .modules
        .iter()
        .chain(&directory.tests)
        .map(|file| (file.relative_path.clone(), file.contents.clone()))
        .collect();
    let data = directory
        .data
        .iter()
        .map(|file| Ok((file.relative_path.clone(), mounted_data_document(file)?)))
        .collect::<Result<Vec<_>, PolicyError>>()?;
    let template = prepared_engine(&modules, data)?;

    let packages =
        template
            .get_policy_package_components()
            .map_err(|error| PolicyError::Compile {
                message: error.to_string(),
            })?;
    let mut tests = Vec::new();
    for file in &directory.tests {
        let Some(package) = packages
            .iter()
            .find(|package| package.source_file == file.relative_path)
        else {
            continue;
        };
        for name in test_rule_names(&template, &file.relative_path, &file.contents)? {
            tests.push(PlannedTest {
                package: package.components.join("."),
                rule_path: rule_path(&package.components, &name),
                name,
            });
        }
    }

    if let Some(pattern) = filter {
        let paths: Vec<String> = tests
            .iter()
            .map(|test| format!("data.{}.{}", test.package, test.name))
            .collect();
        let selected = regex_matches(pattern, &paths)?;
        let mut selected = selected.into_iter();
        tests.retain(|_| selected.next().unwrap_or(false));
    }

    let results = tests
        .into_iter()
        .map(|test| run_one(&template, test))
        .collect();
    Ok(TestReport { results })
}

struct PlannedTest {
    package: String,
    name: String,
    rule_path: String,
}

fn run_one(template: &regorus::Engine, test: PlannedTest) -> TestResult {
    let mut engine = template.clone();
    engine.set_execution_timer_config(timer_config(TEST_TIME_LIMIT));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        engine.eval_rule(test.rule_path.clone())
    }));
    let output = engine.take_prints().unwrap_or_default();
    let (passed, error) = match outcome {
        Ok(Ok(regorus::Value::Bool(true))) => (true, None),
        Ok(Ok(regorus::Value::Bool(false) | regorus::Value::Undefined)) => (false, None),
        Ok(Ok(other)) => (
            false,
            Some(format!("test evaluated to {other}, not a boolean")),
        ),
        Ok(Err(error)) => (
            false,
            Some(evaluation_error(&test.rule_path, &error, TEST_TIME_LIMIT)),
        ),
        Err(_) => (false, Some("test evaluation panicked".to_owned())),
    };
    TestResult {
        package: test.package,
        name: test.name,
        passed,
        error,
        output,
    }
}

/// The `test_*` rules a test file declares, in the order they are written. Candidates are the
/// identifiers in the text; the engine confirms which are rule heads, so names that occur only
/// in comments, strings or references are dropped.
fn test_rule_names(
    engine: &regorus::Engine,
    file: &str,
    text: &str,
) -> Result<Vec<String>, PolicyError> {
    let mut names: Vec<String> = Vec::new();
    for candidate in identifiers(text).filter(|word| word.starts_with("test_")) {
        if names.iter().any(|name| name == candidate) {
            continue;
        }
        let declared = engine
            .has_declared_rule_rooted_at(file, candidate)
            .map_err(|error| PolicyError::Compile {
                message: format!("{file}: {error}"),
            })?;
        if declared {
            names.push(candidate.to_owned());
        }
    }
    Ok(names)
}

fn identifiers(text: &str) -> impl Iterator<Item = &str> {
    text.split(|character: char| !(character.is_ascii_alphanumeric() || character == '_'))
        .filter(|word| !word.is_empty())
}

/// `data.a.b.name`, with bracket notation for components that are not identifiers.
fn rule_path(package: &[String], name: &str) -> String {
    let mut path = String::from("data");
    for component in package.iter().map(String::as_str).chain([name]) {
        let is_identifier = component
            .chars()
            .next()
            .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
            && component
                .chars()
                .all(|character| character.is_ascii_alphanumeric() || character == '_');
        if is_identifier {
            path.push('.');
            path.push_str(component);
        } else {
            path.push('[');
            path.push_str(&serde_json::Value::String(component.to_owned()).to_string());
            path.push(']');
        }
    }
    path
}

/// Matches with Rego's own `regex.match`, so a filter behaves exactly like one written in a
/// policy (RE2 syntax), without a second regex dependency.
fn regex_matches(pattern: &str, subjects: &[String]) -> Result<Vec<bool>, PolicyError> {
    let filter_error = |message: String| PolicyError::Filter {
        pattern: pattern.to_owned(),
        message,
    };
    let mut engine = regorus::Engine::new();
    engine.set_input(regorus::Value::from(serde_json::json!({
        "pattern": pattern,
        "subjects": subjects,
    })));
    let results = engine
        .eval_query(
            "[regex.match(input.pattern, subject) | subject := input.subjects[_]]".to_owned(),
            false,
        )
        .map_err(|error| filter_error(error.to_string().trim().to_owned()))?;
    let matched = results
        .result
        .first()
        .and_then(|result| result.expressions.first())
        .map(|expression| expression.value.clone())
        .ok_or_else(|| filter_error("the filter query had no result".to_owned()))?;
    let matched: Vec<bool> =
        serde_json::from_value(serde_json::to_value(&matched).unwrap_or_default())
            .map_err(|error| filter_error(error.to_string()))?;
    if matched.len() != subjects.len() {
        return Err(filter_error("the filter could not be applied".to_owned()));
    }
    Ok(matched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_paths() {
        let package = |components: &[&str]| -> Vec<String> {
            components.iter().map(|c| c.to_string()).collect()
        };
        assert_eq!(
            rule_path(&package(&["cordon", "outbound_test"]), "test_x"),
            "data.cordon.outbound_test.test_x"
        );
        assert_eq!(
            rule_path(&package(&["graph", "1.0"]), "test_x"),
            "data.graph[\"1.0\"].test_x"
        );
    }

    #[test]
    fn filters_are_regular_expressions() {
        let subjects = vec!["data.a.test_red".to_owned(), "data.a.test_green".to_owned()];
        assert_eq!(regex_matches("red$", &subjects).unwrap(), vec![true, false]);
        assert_eq!(
            regex_matches("test_(red|green)", &subjects).unwrap(),
            vec![true, true]
        );
        assert!(matches!(
            regex_matches("(", &subjects),
            Err(PolicyError::Filter { .. })
        ));
    }
}
