//! `cordon policy check`: everything that can be known about a policy source without a real
//! input — it parses, compiles, defines the entrypoint, calls only functions the engine has —
//! and what the gateway will make of it (revision, engine, cacheability).

use std::path::Path;

use serde::Serialize;

use crate::analysis::{Functions, analyse};
use crate::files::PolicyDirectory;
use crate::policy::{EngineKind, prepared_engine};
use crate::source::SourceKind;
use crate::{ENTRYPOINT, Policy, PolicyError};

/// What [`check`] found in a policy source that passed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    /// The path checked.
    pub source: String,
    /// `"directory"` or `"bundle"`.
    pub kind: &'static str,
    /// The revision decisions will record.
    pub revision: String,
    /// Policy modules (`*.rego` other than tests).
    pub modules: usize,
    /// Rule definitions in the policy modules (each `default`, each body-bearing definition).
    pub rules: usize,
    /// Test modules (`*_test.rego`).
    pub test_modules: usize,
    /// Data files (`data.json`, `data.yaml`).
    pub data_files: usize,
    /// A bundle manifest's roots.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roots: Option<Vec<String>>,
    pub entrypoint: &'static str,
    /// The engine decisions will run on.
    pub engine: EngineKind,
    /// Why the interpreter, when it is the interpreter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interpreter_reason: Option<String>,
    /// The parts of `input` the policy reads.
    pub input_paths: Vec<String>,
    /// Why decisions are not cached, when they are not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_disabled_reason: Option<String>,
}

/// Checks a policy directory or bundle as the gateway would before activating it, and also its
/// test files (they must parse and call only functions that exist), without running the tests
/// (that is [`crate::run_tests`]). Loading compares the two engines on sample inputs, which is
/// how the report knows the engine.
///
/// Builtins the engine lacks (`io.jwt.decode`, `http.send`, `net.cidr_contains`, …) are refused
/// here with the file and line of the call, not discovered later as a run-time deny.
pub fn check(path: &Path) -> Result<CheckReport, PolicyError> {
    let directory = PolicyDirectory::read_source(path)?;
    let policy = Policy::from_directory(&directory)?;
    if !directory.tests.is_empty() {
        let template = prepared_engine(&directory.module_pairs(true), directory.mounted_data()?)?;
        let mut engine = template.clone();
        let modules = engine.get_modules().clone();
        let functions = Functions::of(&modules);
        let tests = directory.test_modules(&modules);
        if let Some(call) = analyse(&tests, &functions).unknown_calls.first() {
            return Err(PolicyError::Compile {
                message: call.message(),
            });
        }
    }
    let (modules, rules) = policy.counts();
    let cache = policy.cache_stats();
    Ok(CheckReport {
        source: path.display().to_string(),
        kind: match directory.kind {
            SourceKind::Directory => "directory",
            SourceKind::Bundle => "bundle",
        },
        revision: policy.revision().to_owned(),
        modules,
        rules,
        test_modules: directory.tests.len(),
        data_files: directory.data.len(),
        roots: directory
            .manifest
            .as_ref()
            .map(|manifest| manifest.roots.clone()),
        entrypoint: ENTRYPOINT,
        engine: policy.engine(),
        interpreter_reason: policy.interpreter_reason(),
        input_paths: policy.input_paths().to_vec(),
        cache_disabled_reason: cache.disabled_reason,
    })
}
