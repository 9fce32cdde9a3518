//! Rego sharing policy for a Cordon gateway: loading a board's policy directory or OPA bundle,
//! checking it, deciding what a recipient may see (fast: bytecode VM and a decision cache where
//! they are safe), running the policy's own tests with coverage, and showing what a policy
//! change would change.
//!
//! The crate is pure computation over files and JSON values: it does no network and no SQL and
//! knows nothing of gRPC or protobuf. The gateway hands it the indicator in its proto3 JSON form
//! and applies the [`Decision`] it gets back.
//!
//! Invariant: [`Policy::decide`] never fails open. An undefined decision, an evaluation error, a
//! time-out or a malformed decision document is a deny with [`Decision::error`] set.

mod analysis;
mod bundle;
mod cache;
mod check;
mod corpus;
mod decision;
mod diff;
mod error;
mod files;
mod input;
mod policy;
mod project;
mod reference;
pub mod rego_value;
mod risk;
mod rvm;
mod shape;
mod source;
mod testing;
#[cfg(feature = "opa-wasm")]
pub mod wasm;

pub use bundle::bundle_from_dir;
pub use cache::{CacheStats, DEFAULT_CACHE_ENTRIES};
pub use check::{CheckReport, check};
pub use decision::Decision;
pub use diff::{
    ChangeKind, DecisionChange, DiffInput, DiffReport, DiffSummary, diff, diff_with_inputs,
};
pub use error::PolicyError;
pub use input::{Channel, InputContext, context_input, decision_input, recipient_input};
pub use policy::{
    DEFAULT_TIME_LIMIT, EngineKind, EngineMismatch, EngineVerification, LIVE_COMPARISON_EVERY,
    Policy,
};
pub use reference::{reference_policy_files, write_reference_policy};
pub use regorus::Value as RegoValue;
pub use risk::{
    Assessment, RISK_ENTRYPOINT, RiskContext, RiskLevel, RiskReason, risk_input, risk_input_value,
};
pub use source::{MAX_BUNDLE_BYTES, MAX_ENTRIES, MAX_ENTRY_BYTES, MAX_UNCOMPRESSED_BYTES};
pub use testing::{
    CoverageReport, FileCoverage, TestReport, TestResult, load_with_tests, run_tests,
    run_tests_with,
};

/// The one rule the gateway evaluates for every (indicator, recipient) pair.
pub const ENTRYPOINT: &str = "data.cordon.outbound.decision";

/// The package that must define the entrypoint rule, as path components.
const ENTRYPOINT_PACKAGE: [&str; 2] = ["cordon", "outbound"];

/// The rule name inside [`ENTRYPOINT_PACKAGE`].
const ENTRYPOINT_RULE: &str = "decision";
