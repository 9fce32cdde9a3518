//! Errors from loading a policy or running its tests; a decision itself never errors.

use std::path::PathBuf;

/// Why a policy (or its test suite) could not be loaded.
///
/// A policy that fails here must not become active: the gateway keeps the previous one and
/// reports this error.
#[derive(thiserror::Error, Debug)]
pub enum PolicyError {
    /// A file or directory could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An OPA bundle is malformed, too large, or holds an entry that is refused (a path leaving
    /// the bundle, a link, a duplicate).
    #[error("invalid bundle {}: {message}", path.display())]
    Bundle { path: PathBuf, message: String },
    /// A Rego module does not parse.
    #[error("cannot parse rego module {file}: {message}")]
    Parse { file: String, message: String },
    /// The modules parse but do not form a valid policy (unsafe variables, unknown functions,
    /// conflicting rule kinds, duplicate module names).
    #[error("cannot compile policy: {message}")]
    Compile { message: String },
    /// A data document does not parse, is not an object where one is needed, or conflicts with
    /// another data document.
    #[error("invalid data document {file}: {message}")]
    Data { file: String, message: String },
    /// No module of package `cordon.outbound` defines the rule `decision`.
    #[error("no module of package cordon.outbound defines the rule decision (entrypoint {entrypoint})", entrypoint = crate::ENTRYPOINT)]
    MissingEntrypoint,
    /// A test filter is not a valid regular expression.
    #[error("invalid test filter {pattern:?}: {message}")]
    Filter { pattern: String, message: String },
}
