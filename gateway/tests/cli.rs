//! The `cordon` binary's setup commands, run as a user would. (These tests also
//! make cargo build the binary that integration-tests starts as gateways.)

use std::path::Path;
use std::process::{Command, Output};

fn cordon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cordon"))
        .args(args)
        .output()
        .expect("cordon runs")
}

fn text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

#[test]
fn init_writes_a_config_that_names_identity_and_policy() {
    let dir = tempfile::tempdir().unwrap();
    let member = dir.path().join("gh");
    let output = cordon(&["init", "--member", "GH", "--dir", member.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let config = text(&member.join("cordon.toml"));
    assert!(config.contains("member = \"GH\""), "{config}");
    assert!(config.contains("listen = \"127.0.0.1:7443\""), "{config}");
    for file in [
        "identity/cert.pem",
        "identity/key.pem",
        "identity/ca.pem",
        "ca/ca.pem",
        "policy/data.json",
    ] {
        assert!(member.join(file).exists(), "{file} missing");
    }
    let tests = std::fs::read_dir(member.join("policy/cordon"))
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with("_test.rego")
        })
        .count();
    assert!(tests >= 1, "starter policy with tests");

    // A second init would overwrite the member's keys: refused.
    let again = cordon(&["init", "--member", "GH", "--dir", member.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));
}

#[test]
fn bad_names_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    assert!(
        cordon(&["ca", "init", "--out", ca.to_str().unwrap()])
            .status
            .success()
    );
    let out = dir.path().join("x");
    for name in ["gh", "GH/Customs", "GH/customs/extra"] {
        let output = cordon(&[
            "ca",
            "issue",
            "--ca",
            ca.to_str().unwrap(),
            "--name",
            name,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(!output.status.success(), "{name} accepted");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("is not a member"),
            "{name}"
        );
    }
    let bad_member = cordon(&[
        "init",
        "--member",
        "ghana",
        "--dir",
        dir.path().join("m").to_str().unwrap(),
    ]);
    assert!(!bad_member.status.success());
    assert!(String::from_utf8_lossy(&bad_member.stderr).contains("--member"));
}

#[test]
fn serve_refuses_a_broken_config_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let member = dir.path().join("gh");
    assert!(
        cordon(&["init", "--member", "GH", "--dir", member.to_str().unwrap()])
            .status
            .success()
    );
    let config = member.join("cordon.toml");
    let broken = text(&config).replace("listen = \"127.0.0.1:7443\"", "listen = \"everywhere\"");
    std::fs::write(&config, broken).unwrap();
    let output = cordon(&["serve", "--config", config.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("listen"));
}

fn init_member(dir: &Path) -> std::path::PathBuf {
    let member = dir.join("gh");
    let output = cordon(&["init", "--member", "GH", "--dir", member.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    member.join("policy")
}

#[test]
fn policy_check_and_test_accept_the_reference_policy_as_directory_and_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let policy = init_member(dir.path());
    let bundle = dir.path().join("policy.tar.gz");
    let built = cordon(&[
        "policy",
        "bundle",
        policy.to_str().unwrap(),
        "--out",
        bundle.to_str().unwrap(),
        "--revision",
        "board-2026-11",
    ]);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    for source in [policy.to_str().unwrap(), bundle.to_str().unwrap()] {
        let checked = cordon(&["policy", "check", source]);
        assert!(
            checked.status.success(),
            "{source}: {}",
            String::from_utf8_lossy(&checked.stderr)
        );
        assert!(String::from_utf8_lossy(&checked.stdout).starts_with("ok: "));
        let tested = cordon(&["policy", "test", source, "--coverage"]);
        let stdout = String::from_utf8_lossy(&tested.stdout);
        assert!(tested.status.success(), "{source}: {stdout}");
        assert!(
            stdout.contains("PASS: data.cordon.outbound_test."),
            "{stdout}"
        );
        assert!(stdout.contains("coverage: "), "{stdout}");
    }
    let checked = cordon(&["policy", "check", bundle.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&checked.stdout).contains("revision board-2026-11"));
}

#[test]
fn policy_test_fails_on_a_failing_test_and_check_on_a_missing_builtin() {
    let dir = tempfile::tempdir().unwrap();
    let policy = init_member(dir.path());
    std::fs::write(
        policy.join("cordon/broken_test.rego"),
        "package cordon.broken_test\nimport rego.v1\ntest_wrong if { 1 == 2 }\n",
    )
    .unwrap();
    let tested = cordon(&["policy", "test", policy.to_str().unwrap()]);
    assert!(!tested.status.success());
    assert!(
        String::from_utf8_lossy(&tested.stdout)
            .contains("FAIL: data.cordon.broken_test.test_wrong")
    );
    // --run narrows to the passing tests.
    let narrowed = cordon(&[
        "policy",
        "test",
        policy.to_str().unwrap(),
        "--run",
        "outbound_test",
    ]);
    assert!(
        narrowed.status.success(),
        "{}",
        String::from_utf8_lossy(&narrowed.stdout)
    );

    std::fs::remove_file(policy.join("cordon/broken_test.rego")).unwrap();
    std::fs::write(
        policy.join("cordon/jwt.rego"),
        "package cordon.jwt\nimport rego.v1\nclaims := io.jwt.decode(input.token) if { input.token }\n",
    )
    .unwrap();
    let checked = cordon(&["policy", "check", policy.to_str().unwrap()]);
    assert!(!checked.status.success());
    assert!(
        String::from_utf8_lossy(&checked.stderr).contains("io.jwt.decode"),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[test]
fn policy_eval_and_diff_show_decisions_and_their_changes() {
    let dir = tempfile::tempdir().unwrap();
    let policy = init_member(dir.path());
    let input = dir.path().join("input.json");
    std::fs::write(
        &input,
        r#"{"indicator": {"tlp": "TLP_AMBER", "originator": "GH", "entity": {"name": "x"}},
            "recipient": {"id": "NG", "kind": "member", "member": "NG", "trust": 4},
            "context": {"gateway": "GH", "channel": "subscribe", "now": "2026-11-25T00:00:00Z"}}"#,
    )
    .unwrap();
    let evaluated = cordon(&[
        "policy",
        "eval",
        policy.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    let decision: serde_json::Value = serde_json::from_slice(&evaluated.stdout).unwrap();
    assert_eq!(decision["decision"]["allow"], true, "{decision}");

    // The new policy lowers NG's trust: sources become redacted for NG only.
    let new_policy = dir.path().join("new-policy");
    std::fs::create_dir_all(new_policy.join("cordon")).unwrap();
    for file in [
        "cordon/outbound.rego",
        "cordon/outbound_test.rego",
        "data.json",
    ] {
        std::fs::copy(policy.join(file), new_policy.join(file)).unwrap();
    }
    let mut data: serde_json::Value =
        serde_json::from_str(&text(&policy.join("data.json"))).unwrap();
    data["recipients"]["NG"]["trust"] = serde_json::json!(1);
    std::fs::write(new_policy.join("data.json"), data.to_string()).unwrap();
    let recipients = dir.path().join("recipients.txt");
    std::fs::write(&recipients, "NG\nCI\n").unwrap();
    let indicators = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/indicators.jsonl");
    let compared = cordon(&[
        "policy",
        "diff",
        policy.to_str().unwrap(),
        new_policy.to_str().unwrap(),
        "--indicators",
        indicators.to_str().unwrap(),
        "--recipients",
        recipients.to_str().unwrap(),
        "--member",
        "GH",
        "--json",
    ]);
    assert!(
        compared.status.success(),
        "{}",
        String::from_utf8_lossy(&compared.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&compared.stdout).unwrap();
    assert_eq!(report["summary"]["pairs"], 24);
    let changes = report["changes"].as_array().unwrap();
    assert!(!changes.is_empty());
    assert!(
        changes.iter().all(|change| change["recipient"] == "NG"),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|change| change["change"] == "redaction_changed"),
        "{changes:?}"
    );
}
