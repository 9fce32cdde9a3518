//! A test runner for a policy directory or bundle, in the manner of `opa test`: every rule
//! named `test_*` in a `*_test.rego` file is evaluated against the policy and data, and passes
//! when it is `true`; optionally with line coverage of the policy files.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::files::PolicyDirectory;
use crate::policy::{evaluation_error, prepared_engine, timer_config};
use crate::{Policy, PolicyError};

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
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TestReport {
    pub results: Vec<TestResult>,
    /// Line coverage of the policy files by the tests that ran, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coverage: Option<CoverageReport>,
}

/// Which lines of the policy files (tests excluded) the tests evaluated, as `opa test
/// --coverage` reports them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CoverageReport {
    pub files: Vec<FileCoverage>,
    /// Covered lines of all files over all lines with code, in percent.
    pub percent: f64,
}

/// The coverage of one policy file.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FileCoverage {
    /// Path relative to the policy source.
    pub file: String,
    /// Line numbers (1-based) with code that some test evaluated.
    pub covered: Vec<u32>,
    /// Line numbers with code that no test evaluated.
    pub not_covered: Vec<u32>,
    /// `covered` over both, in percent; 0 for a file no test reached at all.
    pub percent: f64,
}

fn percent(covered: usize, not_covered: usize) -> f64 {
    let total = covered + not_covered;
    if total == 0 {
        0.0
    } else {
        // Two decimals, as opa test prints.
        ((covered as f64) * 10_000.0 / (total as f64)).round() / 100.0
    }
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

/// Runs the `test_*` rules of the `*_test.rego` files of a policy directory or bundle against
/// its policy and data.
///
/// `filter` is a regular expression matched against each test's full path
/// (`data.cordon.outbound_test.test_red_to_named`), like `opa test --run`.
///
/// Errors are for what prevents running at all (a file that does not parse, conflicting data,
/// an invalid filter, a malformed bundle); a failing or erroring test is a result, not an
/// error.
pub fn run_tests(path: &Path, filter: Option<&str>) -> Result<TestReport, PolicyError> {
    run_tests_with(path, filter, false)
}

/// [`run_tests`], with line coverage of the policy files in [`TestReport::coverage`] when
/// `coverage` is set.
pub fn run_tests_with(
    path: &Path,
    filter: Option<&str>,
    coverage: bool,
) -> Result<TestReport, PolicyError> {
    let directory = PolicyDirectory::read_source(path)?;
    run_tests_in(&directory, filter, coverage)
}

/// Loads a policy source and runs its tests from one reading of its files, so that the
/// policy compiled and the tests run are the same version even while a board is saving
/// files: what the gateway does before it activates a policy.
pub fn load_with_tests(path: &Path) -> Result<(Policy, TestReport), PolicyError> {
    let directory = PolicyDirectory::read_source(path)?;
    let policy = Policy::from_directory(&directory)?;
    let report = run_tests_in(&directory, None, false)?;
    Ok((policy, report))
}

fn run_tests_in(
    directory: &PolicyDirectory,
    filter: Option<&str>,
    coverage: bool,
) -> Result<TestReport, PolicyError> {
    let modules = directory.module_pairs(true);
    let template = prepared_engine(&modules, directory.mounted_data()?)?;

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

    let mut merged = coverage.then(CoverageMerge::default);
    let results = tests
        .into_iter()
        .map(|test| run_one(&template, test, merged.as_mut()))
        .collect();
    let coverage = merged.map(|merged| merged.report(directory));
    Ok(TestReport { results, coverage })
}

/// Coverage summed over the tests: a line is covered when any test covered it.
#[derive(Default)]
struct CoverageMerge {
    files: std::collections::BTreeMap<String, (BTreeSet<u32>, BTreeSet<u32>)>,
}

use std::collections::BTreeSet;

impl CoverageMerge {
    fn add(&mut self, report: regorus::coverage::Report) {
        for file in report.files {
            let (covered, not_covered) = self.files.entry(file.path).or_default();
            covered.extend(file.covered);
            not_covered.extend(file.not_covered);
        }
    }

    /// The policy files only, in path order; a file no test reached is listed at 0 %.
    fn report(self, directory: &PolicyDirectory) -> CoverageReport {
        let mut files = Vec::new();
        let (mut all_covered, mut all_not_covered) = (0, 0);
        for module in &directory.modules {
            let (covered, not_covered) = self
                .files
                .get(&module.relative_path)
                .cloned()
                .unwrap_or_default();
            let not_covered: Vec<u32> = not_covered.difference(&covered).copied().collect();
            let covered: Vec<u32> = covered.into_iter().collect();
            all_covered += covered.len();
            all_not_covered += not_covered.len();
            files.push(FileCoverage {
                file: module.relative_path.clone(),
                percent: percent(covered.len(), not_covered.len()),
                covered,
                not_covered,
            });
        }
        CoverageReport {
            files,
            percent: percent(all_covered, all_not_covered),
        }
    }
}

struct PlannedTest {
    package: String,
    name: String,
    rule_path: String,
}

fn run_one(
    template: &regorus::Engine,
    test: PlannedTest,
    coverage: Option<&mut CoverageMerge>,
) -> TestResult {
    let mut engine = template.clone();
    engine.set_execution_timer_config(timer_config(TEST_TIME_LIMIT));
    if coverage.is_some() {
        engine.set_enable_coverage(true);
    }
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        engine.eval_rule(test.rule_path.clone())
    }));
    let output = engine.take_prints().unwrap_or_default();
    if let Some(coverage) = coverage {
        match engine.get_coverage_report() {
            Ok(report) => coverage.add(report),
            Err(error) => tracing::debug!(%error, test = %test.rule_path, "no coverage report"),
        }
    }
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
pub(crate) fn rule_path(package: &[String], name: &str) -> String {
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
