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
        .count();
    assert!(tests >= 2, "starter policy with tests");

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
