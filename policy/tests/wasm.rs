//! The opa-wasm engine on a real OPA-compiled module, `tests/data/opa-wasm/policy.wasm` (rule
//! `test.p`, true when `input.fragment == "moo"`): raw result sets, bundles as a directory and
//! as a `.tar.gz`, fail-closed decisions, load errors and evaluation from several threads.

#![cfg(feature = "opa-wasm")]

use std::path::Path;
use std::time::Duration;

use cordon_policy::wasm::{DECISION_ENTRYPOINT, WasmError, WasmPolicy};
use serde_json::{Value, json};

/// The fixture's one entrypoint.
const ENTRYPOINT: &str = "test/p";

fn fixture_module() -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/opa-wasm/policy.wasm");
    std::fs::read(&path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}

fn fixture_policy() -> WasmPolicy {
    WasmPolicy::from_module_bytes(&fixture_module(), json!({}), "test-revision".to_owned())
        .expect("fixture module loads")
}

fn manifest(revision: Option<&str>, module: &str) -> Value {
    let mut manifest = json!({
        "roots": [""],
        "wasm": [{"entrypoint": ENTRYPOINT, "module": module}],
    });
    if let Some(revision) = revision {
        manifest["revision"] = json!(revision);
    }
    manifest
}

/// Writes a bundle directory: `.manifest`, the module at `policy.wasm` (unless `None`) and
/// data files by relative path.
fn bundle_dir(
    manifest: &Value,
    module: Option<&[u8]>,
    data: &[(&str, Value)],
) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    std::fs::write(dir.path().join(".manifest"), manifest.to_string()).expect("write manifest");
    if let Some(module) = module {
        std::fs::write(dir.path().join("policy.wasm"), module).expect("write module");
    }
    for (relative_path, document) in data {
        let path = dir.path().join(relative_path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("create directory");
        std::fs::write(path, document.to_string()).expect("write data");
    }
    dir
}

/// Packs `files` into `bundle.tar.gz` inside a fresh directory, the way `opa build` names
/// entries (`/.manifest`, `/policy.wasm`, `/data.json`).
fn bundle_archive(files: &[(&str, Vec<u8>)]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("bundle.tar.gz");
    let file = std::fs::File::create(&path).expect("create archive");
    let encoder = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut builder = tar::Builder::new(encoder);
    for (name, contents) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        // `append_data` refuses absolute names, so the leading `/` OPA writes is set by hand.
        let name_bytes = name.as_bytes();
        let gnu = header.as_gnu_mut().expect("gnu header");
        gnu.name[..name_bytes.len()].copy_from_slice(name_bytes);
        header.set_cksum();
        builder
            .append(&header, contents.as_slice())
            .expect("append entry");
    }
    builder
        .into_inner()
        .expect("finish tar")
        .finish()
        .expect("finish gzip");
    (dir, path)
}

fn load_error(path: &Path) -> WasmError {
    match WasmPolicy::load_bundle(path) {
        Ok(policy) => panic!("expected a load error, loaded {policy:?}"),
        Err(error) => error,
    }
}

/// A fail-closed deny whose error contains `expected`.
fn assert_fail_closed(decision: &cordon_policy::Decision, expected: &str) {
    assert!(!decision.allow, "{decision:?}");
    let error = decision
        .error
        .as_deref()
        .unwrap_or_else(|| panic!("no error: {decision:?}"));
    assert!(
        error.contains(expected),
        "{error:?} does not contain {expected:?}"
    );
}

#[test]
fn fixture_gives_opa_result_sets() {
    let policy = fixture_policy();
    assert_eq!(policy.entrypoints(), [ENTRYPOINT]);
    assert_eq!(policy.revision(), "test-revision");
    assert_eq!(
        policy
            .evaluate(ENTRYPOINT, &json!({"fragment": "moo"}))
            .unwrap(),
        json!([{"result": true}])
    );
    for other in [
        json!({"fragment": "oink"}),
        json!({}),
        json!(null),
        json!([1, 2]),
    ] {
        assert_eq!(
            policy.evaluate(ENTRYPOINT, &other).unwrap(),
            json!([]),
            "{other}"
        );
    }
    // The same instance is reused from the pool; results must not leak between evaluations.
    assert_eq!(
        policy
            .evaluate(ENTRYPOINT, &json!({"fragment": "moo"}))
            .unwrap(),
        json!([{"result": true}])
    );
}

#[test]
fn unknown_entrypoint_is_an_error() {
    let error = fixture_policy()
        .evaluate("cordon/outbound/nope", &json!({}))
        .unwrap_err();
    assert!(
        matches!(error, WasmError::MissingEntrypoint { .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(
        message.contains("cordon/outbound/nope") && message.contains(ENTRYPOINT),
        "{message}"
    );
}

#[test]
fn decisions_fail_closed() {
    let policy = fixture_policy();
    // The module has no cordon entrypoint at all.
    assert_fail_closed(
        &policy.decide(&json!({"fragment": "moo"})),
        &format!("no entrypoint {DECISION_ENTRYPOINT}"),
    );
    // Undefined: `[]`.
    assert_fail_closed(
        &policy.decide_entrypoint(ENTRYPOINT, &json!({"fragment": "oink"})),
        "test/p is undefined",
    );
    // Malformed: `true` is not a decision document.
    assert_fail_closed(
        &policy.decide_entrypoint(ENTRYPOINT, &json!({"fragment": "moo"})),
        "test/p is a boolean, not an object",
    );
}

#[test]
fn time_limit_denies() {
    let mut policy = fixture_policy();
    policy.set_time_limit(Duration::ZERO);
    let error = policy
        .evaluate(ENTRYPOINT, &json!({"fragment": "moo"}))
        .unwrap_err();
    assert!(matches!(error, WasmError::TimeLimit { .. }), "{error:?}");
    assert_fail_closed(
        &policy.decide_entrypoint(ENTRYPOINT, &json!({"fragment": "moo"})),
        "exceeded the time limit",
    );
    // The interrupted instances were dropped; a clone with a real limit works on fresh ones.
    policy.set_time_limit(Duration::from_secs(1));
    assert_eq!(
        policy
            .evaluate(ENTRYPOINT, &json!({"fragment": "moo"}))
            .unwrap(),
        json!([{"result": true}])
    );
}

#[test]
fn bundle_directory_with_data() {
    let dir = bundle_dir(
        &manifest(Some("board-2024-06-01"), "/policy.wasm"),
        Some(&fixture_module()),
        &[
            ("data.json", json!({"crisis": false})),
            ("recipients/data.json", json!({"ncsc-fr": {"trust": 3}})),
            // Hidden directories are not bundle content.
            (".git/data.json", json!({"crisis": true})),
        ],
    );
    let policy = WasmPolicy::load_bundle(dir.path()).expect("bundle loads");
    assert_eq!(policy.revision(), "board-2024-06-01");
    assert_eq!(policy.entrypoints(), [ENTRYPOINT]);
    assert_eq!(
        policy.data(),
        &json!({"crisis": false, "recipients": {"ncsc-fr": {"trust": 3}}})
    );
    assert_eq!(
        policy
            .evaluate(ENTRYPOINT, &json!({"fragment": "moo"}))
            .unwrap(),
        json!([{"result": true}])
    );
    assert_eq!(
        policy
            .evaluate(ENTRYPOINT, &json!({"fragment": "baa"}))
            .unwrap(),
        json!([])
    );
}

#[test]
fn bundle_archive_like_opa_build() {
    let (_dir, path) = bundle_archive(&[
        (
            "/.manifest",
            manifest(Some("rev-tar"), "/policy.wasm")
                .to_string()
                .into_bytes(),
        ),
        ("/policy.wasm", fixture_module()),
        ("/data.json", br#"{"embargo": ["XX"]}"#.to_vec()),
        ("./partners/data.json", br#"{"list": ["a"]}"#.to_vec()),
        (
            "/policy.rego",
            b"package test\np { input.fragment == \"moo\" }\n".to_vec(),
        ),
    ]);
    let policy = WasmPolicy::load_bundle(&path).expect("archive loads");
    assert_eq!(policy.revision(), "rev-tar");
    assert_eq!(
        policy.data(),
        &json!({"embargo": ["XX"], "partners": {"list": ["a"]}})
    );
    assert_eq!(
        policy
            .evaluate(ENTRYPOINT, &json!({"fragment": "moo"}))
            .unwrap(),
        json!([{"result": true}])
    );
    assert_eq!(
        policy
            .evaluate(ENTRYPOINT, &json!({"fragment": "meh"}))
            .unwrap(),
        json!([])
    );
    // The fixture's rule through `decide`: undefined and non-object both deny.
    assert_fail_closed(
        &policy.decide_entrypoint(ENTRYPOINT, &json!({"fragment": "meh"})),
        "test/p is undefined",
    );
    assert_fail_closed(
        &policy.decide_entrypoint(ENTRYPOINT, &json!({"fragment": "moo"})),
        "not an object",
    );
    assert_fail_closed(&policy.decide(&json!({})), DECISION_ENTRYPOINT);
}

#[test]
fn revision_defaults_to_content_hash() {
    let module = fixture_module();
    let first = bundle_dir(&manifest(None, "/policy.wasm"), Some(&module), &[]);
    let same = bundle_dir(&manifest(None, "/policy.wasm"), Some(&module), &[]);
    let changed = bundle_dir(
        &manifest(None, "/policy.wasm"),
        Some(&module),
        &[("data.json", json!({"crisis": true}))],
    );
    let revision = |dir: &tempfile::TempDir| {
        WasmPolicy::load_bundle(dir.path())
            .expect("bundle loads")
            .revision()
            .to_owned()
    };
    assert!(
        revision(&first).starts_with("sha256:"),
        "{}",
        revision(&first)
    );
    assert_eq!(revision(&first), revision(&same));
    assert_ne!(revision(&first), revision(&changed));
}

#[test]
fn bad_module_bytes_do_not_load() {
    let error =
        WasmPolicy::from_module_bytes(b"not a wasm module", json!({}), "r".to_owned()).unwrap_err();
    assert!(matches!(error, WasmError::Module { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("cannot load wasm module from bytes"),
        "{error}"
    );

    // Valid WebAssembly that OPA did not compile: no `env.memory` import, no OPA exports.
    let empty_module = b"\0asm\x01\0\0\0";
    let error = WasmPolicy::from_module_bytes(empty_module, json!({}), "r".to_owned()).unwrap_err();
    assert!(matches!(error, WasmError::Module { .. }), "{error:?}");

    let dir = bundle_dir(&manifest(Some("r"), "/policy.wasm"), Some(b"garbage"), &[]);
    let message = load_error(dir.path()).to_string();
    assert!(
        message.starts_with("cannot load wasm module") && message.contains("policy.wasm"),
        "{message}"
    );
}

#[test]
fn missing_manifest_module_names_the_file() {
    let dir = bundle_dir(&manifest(Some("r"), "/policies/outbound.wasm"), None, &[]);
    let error = load_error(dir.path());
    assert!(matches!(error, WasmError::Bundle { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains(".manifest") && message.contains("/policies/outbound.wasm"),
        "{message}"
    );
}

#[test]
fn manifest_problems_do_not_load() {
    let module = fixture_module();

    let no_manifest = tempfile::tempdir().expect("temporary directory");
    std::fs::write(no_manifest.path().join("policy.wasm"), &module).expect("write module");
    let message = load_error(no_manifest.path()).to_string();
    assert!(
        message.contains(".manifest") && message.contains("missing"),
        "{message}"
    );

    let not_json = bundle_dir(&json!("nonsense"), Some(&module), &[]);
    let message = load_error(not_json.path()).to_string();
    assert!(
        message.contains(".manifest: is not a valid manifest"),
        "{message}"
    );

    let no_wasm = bundle_dir(&json!({"revision": "r"}), Some(&module), &[]);
    let message = load_error(no_wasm.path()).to_string();
    assert!(message.contains("names no wasm module"), "{message}");

    let unknown_entrypoint = bundle_dir(
        &json!({"wasm": [{"entrypoint": "cordon/outbound/decision", "module": "/policy.wasm"}]}),
        Some(&module),
        &[],
    );
    let message = load_error(unknown_entrypoint.path()).to_string();
    assert!(
        message.contains(".manifest") && message.contains("cordon/outbound/decision"),
        "{message}"
    );
}

#[test]
fn bad_data_does_not_load() {
    let module = fixture_module();
    let conflict = bundle_dir(
        &manifest(Some("r"), "/policy.wasm"),
        Some(&module),
        &[
            ("data.json", json!({"a": {"b": 1}})),
            ("a/data.json", json!({"b": 2})),
        ],
    );
    let error = load_error(conflict.path());
    assert!(matches!(error, WasmError::Data { .. }), "{error:?}");
    let message = error.to_string();
    // Files merge in path order, so the second one read (`data.json`) is the one named.
    assert!(
        message.contains("data.json") && message.contains("data.a.b conflicts"),
        "{message}"
    );

    let dir = bundle_dir(&manifest(Some("r"), "/policy.wasm"), Some(&module), &[]);
    std::fs::write(dir.path().join("data.json"), "{not json").expect("write data");
    let message = load_error(dir.path()).to_string();
    assert!(
        message.contains("invalid data document") && message.contains("data.json"),
        "{message}"
    );

    let error = WasmPolicy::from_module_bytes(&module, json!([1]), "r".to_owned()).unwrap_err();
    assert!(matches!(error, WasmError::Data { .. }), "{error:?}");
}

#[test]
fn not_a_bundle_does_not_load() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("bundle.tar.gz");
    std::fs::write(&path, "plain text").expect("write file");
    let message = load_error(&path).to_string();
    assert!(
        message.contains("bundle.tar.gz") && message.contains("not a directory or a .tar.gz"),
        "{message}"
    );

    let message = load_error(&dir.path().join("absent")).to_string();
    assert!(
        message.starts_with("cannot read") && message.contains("absent"),
        "{message}"
    );

    let (_archive_dir, escaping) = bundle_archive(&[("../.manifest", b"{}".to_vec())]);
    let message = load_error(&escaping).to_string();
    assert!(
        message.contains("not a plain path inside the bundle"),
        "{message}"
    );
}

#[test]
fn concurrent_evaluation_gives_the_same_answers() {
    let policy = fixture_policy();
    let threads: Vec<_> = (0..4)
        .map(|thread| {
            let policy = policy.clone();
            std::thread::spawn(move || {
                for round in 0..200 {
                    let moo = (thread + round) % 2 == 0;
                    let input = if moo {
                        json!({"fragment": "moo"})
                    } else {
                        json!({"fragment": format!("thread {thread} round {round}")})
                    };
                    let expected = if moo {
                        json!([{"result": true}])
                    } else {
                        json!([])
                    };
                    assert_eq!(
                        policy.evaluate(ENTRYPOINT, &input).unwrap(),
                        expected,
                        "{input}"
                    );
                    assert!(policy.decide(&input).error.is_some());
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("evaluating thread");
    }
}
