//! `Policy::load_dir` and `Policy::from_modules`: what loads, what is rejected, data mounting
//! and revisions.

mod common;

use common::{policy_dir, reference_dir, write_files};
use cordon_policy::{Policy, PolicyError};
use serde_json::json;

const MINIMAL: &str = r#"package cordon.outbound
import rego.v1
default decision := {"allow": false, "redact": [], "reasons": ["default"]}
"#;

fn load_error(files: &[(&str, &str)]) -> PolicyError {
    let dir = policy_dir(files);
    match Policy::load_dir(dir.path()) {
        Ok(policy) => panic!("expected an error, loaded {policy:?}"),
        Err(error) => error,
    }
}

#[test]
fn reference_policy_loads() {
    let dir = reference_dir();
    let policy = Policy::load_dir(dir.path()).expect("reference policy loads");
    assert!(policy.revision().starts_with("sha256:"));
    assert_eq!(policy.revision().len(), "sha256:".len() + 64);
    assert_eq!(policy.recipient_data("NG").expect("NG")["trust"], json!(4));
    assert_eq!(policy.recipient_data("CI").expect("CI")["trust"], json!(2));
    assert!(policy.recipient_data("GH/customs").is_none());
    assert_eq!(policy.data()["settings"]["source_min_trust"], json!(3));
}

#[test]
fn rejects_syntax_error() {
    let error = load_error(&[(
        "cordon/outbound.rego",
        "package cordon.outbound\ndecision := {\"allow\": true\n",
    )]);
    match &error {
        PolicyError::Parse { file, .. } => assert_eq!(file, "cordon/outbound.rego"),
        other => panic!("expected a parse error, got {other:?}"),
    }
    assert!(
        error.to_string().contains("cordon/outbound.rego"),
        "{error}"
    );
}

#[test]
fn rejects_rego_v0_syntax() {
    let error = load_error(&[(
        "cordon/outbound.rego",
        "package cordon.outbound\ndecision = {\"allow\": true} { input.x }\n",
    )]);
    assert!(matches!(error, PolicyError::Parse { .. }), "{error:?}");
}

#[test]
fn rejects_missing_entrypoint() {
    for files in [
        vec![(
            "cordon/outbound.rego",
            "package cordon.outbound\nallow := true\n",
        )],
        vec![(
            "cordon/other.rego",
            "package cordon.other\ndecision := {\"allow\": true}\n",
        )],
        vec![("README.md", "no policy here")],
    ] {
        let error = load_error(&files);
        assert!(matches!(error, PolicyError::MissingEntrypoint), "{error:?}");
    }
}

#[test]
fn entrypoint_may_span_modules() {
    let dir = policy_dir(&[
        (
            "cordon/rules.rego",
            "package cordon.outbound\nallowed := true\n",
        ),
        (
            "cordon/outbound.rego",
            "package cordon.outbound\ndecision := {\"allow\": allowed}\n",
        ),
    ]);
    let policy = Policy::load_dir(dir.path()).expect("loads");
    assert!(policy.decide(&json!({})).allow);
}

#[test]
fn rejects_what_the_interpreter_would_find_only_at_run_time() {
    // Each error sits behind a condition the load never meets, so only a static check sees it.
    for (rego, mentions) in [
        (
            "package cordon.outbound\nimport rego.v1\ndecision := {\"allow\": x} if { input.rare; x := no_such_function(1) }\n",
            "no_such_function",
        ),
        (
            "package cordon.outbound\nimport rego.v1\ndecision := {\"allow\": x} if { input.rare; x := io.jwt.decode(input.token) }\n",
            "io.jwt.decode",
        ),
        (
            "package cordon.outbound\nimport rego.v1\ndecision := {\"allow\": y} if { input.rare; x := 1 }\n",
            "y",
        ),
    ] {
        let error = load_error(&[("cordon/outbound.rego", rego)]);
        assert!(matches!(error, PolicyError::Compile { .. }), "{error:?}");
        assert!(error.to_string().contains(mentions), "{error}");
    }
}

#[test]
fn policies_the_bytecode_compiler_cannot_take_still_load() {
    // `with` is outside the bytecode compiler's subset; the interpreter runs it.
    let dir = policy_dir(&[(
        "cordon/outbound.rego",
        "package cordon.outbound\nimport rego.v1\nflag := input.flag\ndecision := {\"allow\": f} if { f := flag with input.flag as true }\n",
    )]);
    let policy = Policy::load_dir(dir.path()).expect("loads");
    assert!(policy.decide(&json!({"flag": false})).allow);
}

#[test]
fn rejects_bad_data() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("data.json", "{\"recipients\": ")], "data.json"),
        (&[("data.json", "[1, 2]")], "data.json"),
        (
            &[("partners/data.json", "{\"a\": 1,}")],
            "partners/data.json",
        ),
        (&[("data.yaml", "recipients: [unclosed")], "data.yaml"),
        // Data that would replace the policy's own rules.
        (
            &[(
                "data.json",
                r#"{"cordon": {"outbound": {"decision": {"allow": true}}}}"#,
            )],
            "data.json",
        ),
        (
            &[(
                "cordon/outbound/data.json",
                r#"{"decision": {"allow": true}}"#,
            )],
            "cordon/outbound/data.json",
        ),
        (
            &[("cordon/data.json", r#"{"outbound": 1}"#)],
            "cordon/data.json",
        ),
        // Two documents that set the same path to different values.
        (
            &[
                ("data.json", "{\"settings\": {\"source_min_trust\": 3}}"),
                ("settings/data.json", "{\"source_min_trust\": 4}"),
            ],
            "settings/data.json",
        ),
    ];
    for (files, file_named) in cases {
        let mut files = files.to_vec();
        files.push(("cordon/outbound.rego", MINIMAL));
        let error = load_error(&files);
        match &error {
            PolicyError::Data { file, .. } => assert_eq!(file, file_named, "{error}"),
            other => panic!("expected a data error for {file_named}, got {other:?}"),
        }
    }
}

#[test]
fn data_is_mounted_by_directory() {
    let dir = policy_dir(&[
        (
            "cordon/outbound.rego",
            r#"package cordon.outbound
import rego.v1
decision := {"allow": allowed, "reasons": [sprintf("%v %v %v", [data.settings.source_min_trust, data.partners.west.NG.trust, data.lists.embargo])]}
allowed if data.partners.west.NG.trust > data.settings.source_min_trust
"#,
        ),
        (
            "data.json",
            r#"{"settings": {"source_min_trust": 3}, "partners": {"east": {}}}"#,
        ),
        ("partners/west/data.json", r#"{"NG": {"trust": 4}}"#),
        ("lists/data.yaml", "embargo:\n  - SS\n  - LY\n"),
    ]);
    let policy = Policy::load_dir(dir.path()).expect("loads");
    let decision = policy.decide(&json!({}));
    assert!(decision.allow, "{decision:?}");
    assert_eq!(decision.reasons, vec![r#"3 4 ["SS", "LY"]"#]);
    assert_eq!(policy.data()["partners"]["east"], json!({}));
    assert_eq!(policy.data()["partners"]["west"]["NG"]["trust"], json!(4));
}

#[test]
fn data_beside_rules_is_fine() {
    let dir = policy_dir(&[
        (
            "cordon/outbound.rego",
            "package cordon.outbound\ndecision := {\"allow\": data.cordon.outbound.open}\n",
        ),
        ("cordon/outbound/data.json", r#"{"open": true}"#),
        ("cordon/data.json", r#"{"other": {"decision": 1}}"#),
    ]);
    let policy = Policy::load_dir(dir.path()).expect("loads");
    assert!(policy.decide(&json!({})).allow);
}

#[test]
fn test_files_and_hidden_entries_are_not_policy() {
    let dir = policy_dir(&[
        ("cordon/outbound.rego", MINIMAL),
        // Broken on purpose: neither may reach the running policy.
        (
            "cordon/outbound_test.rego",
            "package cordon.outbound_test\ntest_x if {\n",
        ),
        (".git/objects/x.rego", "not rego at all"),
        ("notes.json", "not json at all"),
    ]);
    let policy = Policy::load_dir(dir.path()).expect("loads");
    assert_eq!(policy.decide(&json!({})).reasons, vec!["default"]);
}

#[test]
fn revision_tracks_policy_and_data_not_tests() {
    let dir = reference_dir();
    let revision = || {
        Policy::load_dir(dir.path())
            .expect("loads")
            .revision()
            .to_owned()
    };
    let original = revision();
    assert_eq!(revision(), original, "revision is deterministic");

    let test_path = dir.path().join("cordon/outbound_test.rego");
    let tests = std::fs::read_to_string(&test_path).expect("read tests");
    std::fs::write(&test_path, format!("{tests}\ntest_extra if true\n")).expect("write");
    assert_eq!(revision(), original, "a test change is not a policy change");

    write_files(dir.path(), &[("README.md", "how to edit this policy")]);
    assert_eq!(revision(), original, "other files are not policy");

    let policy_path = dir.path().join("cordon/outbound.rego");
    let rules = std::fs::read_to_string(&policy_path).expect("read policy");
    std::fs::write(&policy_path, format!("{rules}\n# reviewed\n")).expect("write");
    let after_policy_change = revision();
    assert_ne!(
        after_policy_change, original,
        "a policy change is a new revision"
    );

    let data_path = dir.path().join("data.json");
    let data = std::fs::read_to_string(&data_path).expect("read data");
    std::fs::write(&data_path, data.replace("\"trust\": 4", "\"trust\": 5")).expect("write");
    assert_ne!(
        revision(),
        after_policy_change,
        "a data change is a new revision"
    );
}

#[test]
fn revision_depends_on_file_names() {
    let one = policy_dir(&[("cordon/outbound.rego", MINIMAL)]);
    let other = policy_dir(&[("cordon/decision.rego", MINIMAL)]);
    let revision = |dir: &tempfile::TempDir| {
        Policy::load_dir(dir.path())
            .expect("loads")
            .revision()
            .to_owned()
    };
    assert_ne!(revision(&one), revision(&other));
}

#[test]
fn from_modules() {
    let policy = Policy::from_modules(
        vec![(
            "outbound.rego".into(),
            "package cordon.outbound\ndecision := {\"allow\": data.open}\n".into(),
        )],
        json!({"open": true, "recipients": {"NG": {"trust": 4}, "XX": "not an object"}}),
        "bundle-42".into(),
    )
    .expect("loads");
    assert_eq!(policy.revision(), "bundle-42");
    assert!(policy.decide(&json!({})).allow);
    assert_eq!(policy.recipient_data("NG").expect("NG")["trust"], json!(4));
    assert!(policy.recipient_data("XX").is_none());
    assert!(policy.recipient_data("ZZ").is_none());

    let not_an_object = Policy::from_modules(
        vec![("outbound.rego".into(), MINIMAL.into())],
        json!([]),
        "r".into(),
    );
    assert!(matches!(not_an_object, Err(PolicyError::Data { .. })));

    let duplicate = Policy::from_modules(
        vec![
            ("outbound.rego".into(), MINIMAL.into()),
            ("outbound.rego".into(), "package other\n".into()),
        ],
        json!({}),
        "r".into(),
    );
    assert!(
        matches!(duplicate, Err(PolicyError::Compile { .. })),
        "{duplicate:?}"
    );
}

#[test]
fn load_with_tests_compiles_and_tests_one_reading() {
    let dir = reference_dir();
    let (policy, report) = cordon_policy::load_with_tests(dir.path()).expect("loads");
    assert_eq!(
        policy.revision(),
        Policy::load(dir.path()).unwrap().revision()
    );
    assert!(
        report.all_passed() && report.results.len() > 10,
        "{report:?}"
    );

    write_files(
        dir.path(),
        &[(
            "cordon/wrong_test.rego",
            "package cordon.wrong_test\nimport rego.v1\ntest_wrong if { 1 == 2 }\n",
        )],
    );
    let (_, report) = cordon_policy::load_with_tests(dir.path()).expect("still loads");
    assert_eq!(report.failed(), 1);
    assert_eq!(
        report.failures().next().map(|result| result.name.as_str()),
        Some("test_wrong")
    );
}
