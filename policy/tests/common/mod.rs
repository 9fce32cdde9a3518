//! Helpers shared by the integration tests: temporary policy directories and reference inputs.

#![allow(dead_code)] // each test binary uses a different subset

use serde_json::{Value, json};

/// Writes `files` (relative path, contents) into a fresh temporary directory.
pub fn policy_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temporary directory");
    write_files(dir.path(), files);
    dir
}

pub fn write_files(dir: &std::path::Path, files: &[(&str, &str)]) {
    for (relative_path, contents) in files {
        let path = dir.join(relative_path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("create directory");
        std::fs::write(path, contents).expect("write policy file");
    }
}

/// A directory holding the reference policy, as `cordon init` writes it.
pub fn reference_dir() -> tempfile::TempDir {
    policy_dir(&cordon_policy::reference_policy_files())
}

/// The example indicators, with the fields the gateway adds at publication.
pub fn example_indicators() -> Vec<Value> {
    include_str!("../data/indicators.jsonl")
        .lines()
        .filter(|line| !line.trim().is_empty())
        .enumerate()
        .map(|(index, line)| {
            let mut indicator: Value = serde_json::from_str(line).expect("example indicator");
            let object = indicator.as_object_mut().expect("indicator object");
            object.insert(
                "id".into(),
                json!(format!("00000000-0000-4000-8000-{index:012}")),
            );
            object.insert("originator".into(), json!("GH"));
            object.insert("publisher".into(), json!("GH/customs"));
            object.insert("created".into(), json!("2026-11-01T00:00:00Z"));
            indicator
        })
        .collect()
}

/// The recipient as the gateway builds it: identity fields from the certificate, the rest from
/// `data.recipients[id]`.
pub fn recipient(policy: &cordon_policy::Policy, id: &str) -> Value {
    policy.recipient_input(id)
}

pub fn input(indicator: &Value, recipient: Value, channel: &str) -> Value {
    let context = cordon_policy::InputContext {
        gateway: "GH",
        channel: cordon_policy::Channel::parse(channel).expect("a channel name"),
        now: "2026-11-15T12:00:00Z",
    };
    cordon_policy::decision_input(indicator.clone(), recipient, context)
}

/// Writes a tar.gz bundle of `entries` (raw names, kept as given, even `../x`) into a fresh
/// temporary directory and returns the directory and the bundle's path.
pub fn raw_bundle(entries: &[(&str, &[u8])]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("bundle.tar.gz");
    let file = std::fs::File::create(&path).expect("create bundle");
    let encoder = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    for (name, contents) in entries {
        let mut header = tar::Header::new_gnu();
        // Set the name bytes directly: the tar crate refuses `..` itself, an attacker's does not.
        let bytes = name.as_bytes();
        header.as_gnu_mut().expect("gnu header").name[..bytes.len()].copy_from_slice(bytes);
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder.append(&header, *contents).expect("append entry");
    }
    builder
        .into_inner()
        .expect("finish tar")
        .finish()
        .expect("finish gzip");
    (dir, path)
}

/// The reference policy as a bundle built from its directory, with `revision` in the manifest
/// (no manifest when `None`).
pub fn reference_bundle(revision: Option<&str>) -> (tempfile::TempDir, std::path::PathBuf) {
    let source = reference_dir();
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("policy.tar.gz");
    cordon_policy::bundle_from_dir(source.path(), &path, revision).expect("bundle written");
    (dir, path)
}

/// Every example indicator to a spread of recipients on every channel, as the gateway builds
/// the inputs.
pub fn example_corpus(policy: &cordon_policy::Policy) -> Vec<Value> {
    let mut corpus = Vec::new();
    for indicator in example_indicators() {
        for recipient_id in [
            "NG",
            "CI",
            "ECOWAS",
            "SS",
            "GH/customs",
            "GH/police",
            "NG/customs",
            "SS/customs",
        ] {
            for channel in ["subscribe", "federation", "circle"] {
                corpus.push(input(&indicator, recipient(policy, recipient_id), channel));
            }
        }
    }
    corpus
}
