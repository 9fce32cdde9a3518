//! Rego sharing policy for a Cordon gateway: loading a board's policy directory, deciding what a
//! recipient may see, and running the policy's own tests.
//!
//! The crate is pure computation over files and JSON values: it does no network and no SQL and
//! knows nothing of gRPC or protobuf. The gateway hands it the indicator in its proto3 JSON form
//! and applies the [`Decision`] it gets back.
//!
//! Invariant: [`Policy::decide`] never fails open. An undefined decision, an evaluation error, a
//! time-out or a malformed decision document is a deny with [`Decision::error`] set.

mod decision;
mod error;
mod files;
mod policy;
mod reference;
mod testing;

pub use decision::Decision;
pub use error::PolicyError;
pub use policy::{DEFAULT_TIME_LIMIT, Policy};
pub use reference::reference_policy_files;
pub use testing::{TestReport, TestResult, run_tests};

/// The one rule the gateway evaluates for every (indicator, recipient) pair.
pub const ENTRYPOINT: &str = "data.cordon.outbound.decision";

/// The package that must define the entrypoint rule, as path components.
const ENTRYPOINT_PACKAGE: [&str; 2] = ["cordon", "outbound"];

/// The rule name inside [`ENTRYPOINT_PACKAGE`].
const ENTRYPOINT_RULE: &str = "decision";
