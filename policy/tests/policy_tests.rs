//! `run_tests`: the reference policy's own Rego tests, failing tests, filters.

use std::path::Path;

mod common;

use common::{policy_dir, reference_dir};
use cordon_policy::{PolicyError, TestReport, run_tests, run_tests_with};

fn summary(report: &TestReport) -> String {
    report
        .failures()
        .map(|result| format!("{}: {:?} {:?}", result.path(), result.error, result.output))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn reference_policy_tests_pass() {
    let dir = reference_dir();
    let report = run_tests(dir.path(), None).expect("tests run");
    assert!(report.all_passed(), "failing tests:\n{}", summary(&report));
    assert!(
        report.passed() >= 40,
        "only {} tests found",
        report.passed()
    );
    let packages: std::collections::BTreeSet<&str> = report
        .results
        .iter()
        .map(|result| result.package.as_str())
        .collect();
    assert_eq!(
        packages,
        ["cordon.outbound_test", "cordon.risk_test"].into()
    );
}

#[test]
fn failing_test_is_reported() {
    let dir = policy_dir(&[
        ("p.rego", "package p\n\nlimit := 3\n"),
        (
            "p_test.rego",
            r#"package p_test

import data.p

test_passes if p.limit == 3

test_fails if p.limit == 4

# false is a plain failure, like opa test
test_false := false

test_errors if {
	x := 1 / 0
	x > 0
}

test_prints if {
	print("limit is", data.p.limit)
	p.limit == 5
}

test_mocked_data if {
	p.limit == 7 with data.p.limit as 7
}

not_a_test if true
"#,
        ),
    ]);
    let report = run_tests(dir.path(), None).expect("tests run");
    let outcome = |name: &str| {
        report
            .results
            .iter()
            .find(|result| result.name == name)
            .unwrap_or_else(|| panic!("{name} not run: {report:?}"))
    };
    assert!(outcome("test_passes").passed);
    assert!(!outcome("test_fails").passed);
    assert_eq!(outcome("test_fails").error, None);
    assert!(!outcome("test_false").passed);
    let errored = outcome("test_errors");
    assert!(!errored.passed);
    assert!(errored.error.is_some(), "{errored:?}");
    assert_eq!(outcome("test_prints").output.len(), 1, "{report:?}");
    assert!(outcome("test_prints").output[0].contains("limit is 3"));
    assert!(outcome("test_mocked_data").passed);
    assert_eq!(report.results.len(), 6, "{report:?}");
    assert_eq!(report.passed(), 2);
    assert_eq!(report.failed(), 4);
    assert!(!report.all_passed());
    assert_eq!(outcome("test_passes").path(), "data.p_test.test_passes");
}

#[test]
fn filter_selects_tests_by_path() {
    let dir = reference_dir();
    let report = run_tests(dir.path(), Some("test_red_")).expect("tests run");
    assert!(report.results.len() >= 4, "{report:?}");
    assert!(
        report
            .results
            .iter()
            .all(|result| result.name.starts_with("test_red_"))
    );
    let report = run_tests(
        dir.path(),
        Some("^data\\.cordon\\.outbound_test\\.test_clear_to_everyone$"),
    )
    .expect("tests run");
    assert_eq!(report.results.len(), 1);
    assert!(matches!(
        run_tests(dir.path(), Some("(")),
        Err(PolicyError::Filter { .. })
    ));
}

#[test]
fn test_file_that_does_not_parse_is_an_error() {
    let dir = policy_dir(&[
        ("p.rego", "package p\n\nx := 1\n"),
        ("p_test.rego", "package p_test\n\ntest_x if {\n"),
    ]);
    match run_tests(dir.path(), None) {
        Err(PolicyError::Parse { file, .. }) => assert_eq!(file, "p_test.rego"),
        other => panic!("expected a parse error, got {other:?}"),
    }
}

#[test]
fn directory_without_tests_has_an_empty_report() {
    let dir = policy_dir(&[("p.rego", "package p\n\nx := 1\n")]);
    let report = run_tests(dir.path(), None).expect("tests run");
    assert!(report.results.is_empty());
    assert!(report.all_passed());
}

#[test]
fn missing_directory_is_an_io_error() {
    let result = run_tests(Path::new("/nonexistent/cordon/policy"), None);
    assert!(matches!(result, Err(PolicyError::Io { .. })), "{result:?}");
}

#[test]
fn coverage_of_policy_files() {
    let dir = policy_dir(&[
        (
            "p.rego",
            "package p\n\nimport rego.v1\n\nlimit := 3\n\nbig(x) if {\n\tx > limit\n}\n\nnever_tested(x) if {\n\tx < 0\n}\n",
        ),
        (
            "p_test.rego",
            "package p_test\n\nimport rego.v1\nimport data.p\n\ntest_big if p.big(4)\n",
        ),
    ]);
    let report = run_tests_with(dir.path(), None, true).expect("tests run");
    assert!(report.all_passed(), "{report:?}");
    let coverage = report.coverage.expect("coverage asked for");
    // Policy files only; the tests themselves are not measured.
    assert_eq!(coverage.files.len(), 1, "{coverage:?}");
    let file = &coverage.files[0];
    assert_eq!(file.file, "p.rego");
    assert!(file.covered.contains(&8), "{file:?}");
    assert!(file.not_covered.contains(&12), "{file:?}");
    assert!(
        file.covered
            .iter()
            .all(|line| !file.not_covered.contains(line))
    );
    assert!(file.percent > 0.0 && file.percent < 100.0, "{file:?}");
    assert_eq!(coverage.percent, file.percent);
    let json = serde_json::to_value(&coverage).expect("serializes");
    assert_eq!(json["files"][0]["file"], "p.rego");

    // Without the flag there is none.
    assert!(
        run_tests(dir.path(), None)
            .expect("tests run")
            .coverage
            .is_none()
    );
}

#[test]
fn reference_policy_coverage() {
    let dir = reference_dir();
    let report = run_tests_with(dir.path(), None, true).expect("tests run");
    assert!(report.all_passed());
    let coverage = report.coverage.expect("coverage");
    let files: Vec<&str> = coverage
        .files
        .iter()
        .map(|file| file.file.as_str())
        .collect();
    assert_eq!(files, ["cordon/outbound.rego", "cordon/risk.rego"]);
    // The reference tests exercise every line of the sharing and the risk rules.
    for file in &coverage.files {
        assert_eq!(file.percent, 100.0, "{file:?}");
    }
}

#[test]
fn failing_test_still_fails_with_coverage() {
    let dir = policy_dir(&[
        ("p.rego", "package p\n\nlimit := 3\n"),
        (
            "p_test.rego",
            "package p_test\n\nimport data.p\n\ntest_wrong if p.limit == 4\n",
        ),
    ]);
    let report = run_tests_with(dir.path(), None, true).expect("tests run");
    assert_eq!(report.failed(), 1);
    assert!(report.coverage.is_some());
}
