//! OPA bundles: loading, revisions, the manifest's roots, and the entries a bundle may not hold.

mod common;

use common::{example_corpus, policy_dir, raw_bundle, reference_bundle, reference_dir};
use cordon_policy::{MAX_ENTRY_BYTES, Policy, PolicyError, check, run_tests};

const MINIMAL: &str = r#"package cordon.outbound
import rego.v1
default decision := {"allow": false, "redact": [], "reasons": ["default"]}
"#;

fn bundle_error(path: &std::path::Path) -> String {
    match Policy::load(path) {
        Ok(policy) => panic!("expected the bundle to be refused, loaded {policy:?}"),
        Err(error @ PolicyError::Bundle { .. }) => error.to_string(),
        Err(other) => panic!("expected a bundle error, got {other:?}"),
    }
}

#[test]
fn bundle_with_manifest_revision() {
    let (_dir, path) = reference_bundle(Some("board-2026-11-15.3"));
    let bundle = Policy::load(&path).expect("bundle loads");
    assert_eq!(bundle.revision(), "board-2026-11-15.3");
    // The same policy as its directory: same data, same decisions.
    let source = reference_dir();
    let directory = Policy::load(source.path()).expect("directory loads");
    assert_eq!(bundle.data(), directory.data());
    for input in example_corpus(&directory) {
        assert_eq!(bundle.decide(&input), directory.decide(&input), "{input}");
    }
    // `load_dir`, the old name, takes a bundle too.
    assert_eq!(
        Policy::load_dir(&path).expect("loads").revision(),
        "board-2026-11-15.3"
    );
}

#[test]
fn bundle_without_manifest_or_revision_has_the_content_hash() {
    let source = reference_dir();
    let directory_revision = Policy::load(source.path())
        .expect("directory loads")
        .revision()
        .to_owned();
    assert!(directory_revision.starts_with("sha256:"));
    let (_dir, path) = reference_bundle(None);
    assert_eq!(
        Policy::load(&path).expect("loads").revision(),
        directory_revision
    );
    // An empty revision in the manifest counts as none.
    let (_dir, path) = reference_bundle(Some(""));
    assert_eq!(
        Policy::load(&path).expect("loads").revision(),
        directory_revision
    );
}

#[test]
fn opa_style_entry_names_are_accepted() {
    // `opa build` writes absolute names; other tools `./`.
    let (_dir, path) = raw_bundle(&[
        (
            "/.manifest",
            br#"{"revision": "7", "roots": ["cordon", "settings"]}"#,
        ),
        ("/cordon/outbound.rego", MINIMAL.as_bytes()),
        ("./settings/data.json", br#"{"source_min_trust": 4}"#),
        (
            "/cordon/outbound_test.rego",
            b"package cordon.outbound_test\nimport rego.v1\ntest_ok if true\n",
        ),
        ("/README.md", b"ignored"),
    ]);
    let policy = Policy::load(&path).expect("bundle loads");
    assert_eq!(policy.revision(), "7");
    assert_eq!(policy.data()["settings"]["source_min_trust"], 4);
    let report = run_tests(&path, None).expect("tests run from the bundle");
    assert_eq!(report.results.len(), 1);
    assert!(report.all_passed());
}

#[test]
fn path_traversal_is_refused() {
    for name in [
        "../cordon/outbound.rego",
        "cordon/../../outbound.rego",
        "/../data.json",
        "cordon\\outbound.rego",
    ] {
        let (_dir, path) = raw_bundle(&[
            ("cordon/outbound.rego", MINIMAL.as_bytes()),
            (name, MINIMAL.as_bytes()),
        ]);
        let error = bundle_error(&path);
        assert!(error.contains("bundle.tar.gz"), "{error}");
        assert!(
            error.contains("leaves the bundle") || error.contains("backslash"),
            "{name}: {error}"
        );
        // Tests are read through the same code.
        assert!(matches!(
            run_tests(&path, None),
            Err(PolicyError::Bundle { .. })
        ));
    }
}

#[test]
fn links_duplicates_and_oversized_entries_are_refused() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let write =
        |name: &str, build: &dyn Fn(&mut tar::Builder<flate2::write::GzEncoder<std::fs::File>>)| {
            let path = dir.path().join(name);
            let file = std::fs::File::create(&path).expect("create");
            let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
                file,
                flate2::Compression::fast(),
            ));
            build(&mut builder);
            builder.into_inner().expect("tar").finish().expect("gzip");
            path
        };
    let regular = |builder: &mut tar::Builder<_>, name: &str, contents: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        builder
            .append_data(&mut header, name, contents)
            .expect("append");
    };

    let symlink = write("symlink.tar.gz", &|builder| {
        regular(builder, "cordon/outbound.rego", MINIMAL.as_bytes());
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Symlink);
        header.set_size(0);
        builder
            .append_link(&mut header, "data.json", "/etc/passwd")
            .expect("append link");
    });
    assert!(bundle_error(&symlink).contains("not a regular file"));

    let duplicate = write("duplicate.tar.gz", &|builder| {
        regular(builder, "cordon/outbound.rego", MINIMAL.as_bytes());
        regular(builder, "./cordon/outbound.rego", MINIMAL.as_bytes());
    });
    assert!(bundle_error(&duplicate).contains("occurs twice"));

    // A header that claims more than the limit is refused before anything is read.
    let oversized = write("oversized.tar.gz", &|builder| {
        regular(builder, "cordon/outbound.rego", MINIMAL.as_bytes());
        let mut header = tar::Header::new_gnu();
        header.set_path("data.json").expect("path");
        header.set_size(MAX_ENTRY_BYTES + 1);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, &b""[..]).expect("append header");
    });
    assert!(bundle_error(&oversized).contains("more than the limit"));

    let not_gzip = dir.path().join("not-a-bundle.tar.gz");
    std::fs::write(&not_gzip, "package cordon.outbound\n").expect("write");
    assert!(bundle_error(&not_gzip).contains("not-a-bundle.tar.gz"));
}

#[test]
fn manifest_roots_bound_what_a_bundle_defines() {
    let manifest = br#"{"revision": "r", "roots": ["cordon"]}"#;
    let (_dir, path) = raw_bundle(&[
        (".manifest", manifest),
        ("cordon/outbound.rego", MINIMAL.as_bytes()),
        ("cordon/data.json", br#"{"limits": {"x": 1}}"#),
    ]);
    assert_eq!(
        Policy::load(&path).expect("inside its roots").revision(),
        "r"
    );

    let (_dir, path) = raw_bundle(&[
        (".manifest", manifest),
        ("cordon/outbound.rego", MINIMAL.as_bytes()),
        ("data.json", br#"{"recipients": {}}"#),
    ]);
    match Policy::load(&path) {
        Err(PolicyError::Data { file, message }) => {
            assert_eq!(file, "data.json");
            assert!(message.contains("data.recipients is outside"), "{message}");
        }
        other => panic!("expected a data error, got {other:?}"),
    }

    let (_dir, path) = raw_bundle(&[
        (".manifest", manifest),
        ("cordon/outbound.rego", MINIMAL.as_bytes()),
        ("other/rules.rego", b"package other\nx := 1\n"),
    ]);
    let error = Policy::load(&path).expect_err("package outside the roots");
    assert!(
        error.to_string().contains("package other is outside"),
        "{error}"
    );

    let (_dir, path) = raw_bundle(&[
        (".manifest", br#"{"revision": 7}"#),
        ("cordon/outbound.rego", MINIMAL.as_bytes()),
    ]);
    assert!(bundle_error(&path).contains("revision is not a string"));
}

#[test]
fn wasm_only_bundles_are_named_as_such() {
    let (_dir, path) = raw_bundle(&[
        (
            ".manifest",
            br#"{"revision": "w", "wasm": [{"entrypoint": "cordon/outbound/decision", "module": "/policy.wasm"}]}"#,
        ),
        ("policy.wasm", b"\0asm"),
    ]);
    assert!(bundle_error(&path).contains("WebAssembly"));
}

#[test]
fn failing_test_in_a_bundle_is_reported() {
    let source = policy_dir(&[
        ("cordon/outbound.rego", MINIMAL),
        (
            "cordon/outbound_test.rego",
            "package cordon.outbound_test\nimport rego.v1\nimport data.cordon.outbound\ntest_allows if outbound.decision.allow\ntest_denies if not outbound.decision.allow\n",
        ),
    ]);
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("policy.tar.gz");
    cordon_policy::bundle_from_dir(source.path(), &path, Some("1")).expect("bundle");
    let report = run_tests(&path, None).expect("tests run");
    assert_eq!(report.results.len(), 2);
    assert_eq!(report.failed(), 1);
    assert_eq!(
        report.failures().next().expect("a failure").name,
        "test_allows"
    );
}

#[test]
fn check_reads_bundles() {
    let (_dir, path) = reference_bundle(Some("checked"));
    let report = check(&path).expect("reference bundle checks");
    assert_eq!(report.kind, "bundle");
    assert_eq!(report.revision, "checked");
    assert_eq!(report.roots, Some(vec![String::new()]));
    // The sharing rules and the risk rules, each with its tests.
    assert_eq!(report.modules, 2);
    assert_eq!(report.test_modules, 2);
}
