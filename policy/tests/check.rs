//! `check`: what it reports about a good policy, and what it refuses before anything runs.

mod common;

use common::{policy_dir, reference_dir};
use cordon_policy::{EngineKind, PolicyError, check};

const MINIMAL: &str = r#"package cordon.outbound
import rego.v1
default decision := {"allow": false, "redact": [], "reasons": ["default"]}
"#;

#[test]
fn reference_policy_report() {
    let dir = reference_dir();
    let report = check(dir.path()).expect("reference policy checks");
    assert_eq!(report.kind, "directory");
    assert!(report.revision.starts_with("sha256:"));
    // The sharing rules and the risk rules, each with its tests.
    assert_eq!(report.modules, 2);
    assert!(report.rules >= 40, "{report:?}");
    assert_eq!(report.test_modules, 2);
    assert_eq!(report.data_files, 1);
    assert_eq!(report.entrypoint, "data.cordon.outbound.decision");
    assert_eq!(report.engine, EngineKind::Rvm);
    assert_eq!(report.interpreter_reason, None);
    assert_eq!(report.cache_disabled_reason, None);
    assert!(
        report
            .input_paths
            .contains(&"input.context.channel".to_owned())
    );
    let json = serde_json::to_value(&report).expect("serializes");
    assert_eq!(json["engine"], "rvm");
}

fn check_error(files: &[(&str, &str)]) -> String {
    let dir = policy_dir(files);
    match check(dir.path()) {
        Ok(report) => panic!("expected check to fail, got {report:?}"),
        Err(error) => {
            assert!(
                matches!(
                    error,
                    PolicyError::Compile { .. } | PolicyError::Parse { .. }
                ),
                "{error:?}"
            );
            error.to_string()
        }
    }
}

#[test]
fn builtins_the_engine_lacks_are_refused_with_their_place() {
    for (call, name) in [
        (
            "http.send({\"method\": \"get\", \"url\": input.url})",
            "http.send",
        ),
        ("io.jwt.decode(input.token)", "io.jwt.decode"),
        (
            "net.cidr_contains(\"10.0.0.0/8\", input.ip)",
            "net.cidr_contains",
        ),
        ("walk(input)", "walk"),
    ] {
        let rego = format!(
            "package cordon.outbound\nimport rego.v1\ndefault decision := {{\"allow\": false}}\n\ndecision := {{\"allow\": true}} if {{\n\tinput.rare\n\tx := {call}\n\tx\n}}\n"
        );
        let error = check_error(&[("cordon/outbound.rego", &rego)]);
        assert!(
            error.contains(&format!(
                "cordon/outbound.rego:7: calls {name}, a builtin this engine"
            )),
            "{error}"
        );
    }
    let error = check_error(&[(
        "cordon/outbound.rego",
        "package cordon.outbound\nimport rego.v1\ndecision := {\"allow\": allowd(input)}\nallowed(x) := true\n",
    )]);
    assert!(
        error.contains("calls allowd, which is neither a builtin nor a function"),
        "{error}"
    );
}

#[test]
fn test_files_are_checked_too() {
    let error = check_error(&[
        ("cordon/outbound.rego", MINIMAL),
        (
            "cordon/outbound_test.rego",
            "package cordon.outbound_test\nimport rego.v1\ntest_token if io.jwt.verify_hs256(\"t\", \"k\")\n",
        ),
    ]);
    assert!(
        error.contains("cordon/outbound_test.rego:3: calls io.jwt.verify_hs256"),
        "{error}"
    );
    let error = check_error(&[
        ("cordon/outbound.rego", MINIMAL),
        (
            "cordon/outbound_test.rego",
            "package cordon.outbound_test\ntest_x if {\n",
        ),
    ]);
    assert!(error.contains("cordon/outbound_test.rego"), "{error}");
    // Functions of the policy and of the tests themselves are not unknown.
    let dir = policy_dir(&[
        (
            "cordon/outbound.rego",
            &format!("{MINIMAL}\nhelper(x) := x\n"),
        ),
        (
            "cordon/outbound_test.rego",
            "package cordon.outbound_test\nimport rego.v1\nimport data.cordon.outbound\nlocal(x) := x\ntest_helpers if { outbound.helper(1) == local(1) }\n",
        ),
    ]);
    check(dir.path()).expect("checks");
}

#[test]
fn missing_entrypoint_and_bad_data_are_refused() {
    let dir = policy_dir(&[("cordon/other.rego", "package cordon.other\nx := 1\n")]);
    assert!(matches!(
        check(dir.path()),
        Err(PolicyError::MissingEntrypoint)
    ));
    let dir = policy_dir(&[("cordon/outbound.rego", MINIMAL), ("data.json", "{")]);
    assert!(matches!(check(dir.path()), Err(PolicyError::Data { .. })));
}
