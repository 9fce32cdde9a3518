//! The one place where domain errors become `tonic::Status` codes.

use cordon_indicator::FieldError;
use cordon_storage::StorageError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// How many field errors the status message spells out; the `BadRequest`
/// detail always carries all of them.
const MESSAGE_FIELD_ERRORS: usize = 20;

/// Storage errors by kind: a client's mistake, a conflict, or our trouble.
pub fn storage_status(error: StorageError) -> Status {
    let code = match &error {
        StorageError::Duplicate { .. } => Code::AlreadyExists,
        StorageError::NotFound { .. } => Code::NotFound,
        StorageError::AlreadyRetracted { .. } => Code::FailedPrecondition,
        StorageError::Unavailable(..) => Code::Unavailable,
        _ => Code::Internal,
    };
    if code == Code::Internal {
        tracing::error!(%error, "storage failed");
        return Status::internal("storage failed; see the gateway log");
    }
    Status::new(code, error.to_string())
}

/// A rejected batch: INVALID_ARGUMENT naming every bad item and field path,
/// in the message and as a `google.rpc.BadRequest` detail.
pub fn invalid_batch(errors: &[(usize, FieldError)]) -> Status {
    let paths: Vec<(String, String)> = errors
        .iter()
        .map(|(index, error)| {
            let path = if error.path == "indicators" {
                error.path.clone()
            } else {
                format!("indicators[{index}].{}", error.path)
            };
            (path, error.message.clone())
        })
        .collect();
    let mut message = format!(
        "batch rejected, nothing stored: {} field error(s): ",
        paths.len()
    );
    let listed: Vec<String> = paths
        .iter()
        .take(MESSAGE_FIELD_ERRORS)
        .map(|(path, text)| format!("{path}: {text}"))
        .collect();
    message.push_str(&listed.join("; "));
    if paths.len() > MESSAGE_FIELD_ERRORS {
        message.push_str(&format!(
            "; and {} more",
            paths.len() - MESSAGE_FIELD_ERRORS
        ));
    }
    let mut details = ErrorDetails::new();
    for (path, text) in paths {
        details.add_bad_request_violation(path, text);
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// One bad field of a request that is not an indicator batch.
pub fn invalid_field(path: &str, message: impl Into<String>) -> Status {
    invalid_fields(vec![(path.to_string(), message.into())])
}

pub fn invalid_fields(errors: Vec<(String, String)>) -> Status {
    let message = errors
        .iter()
        .map(|(path, text)| format!("{path}: {text}"))
        .collect::<Vec<_>>()
        .join("; ");
    let mut details = ErrorDetails::new();
    for (path, text) in errors {
        details.add_bad_request_violation(path, text);
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// A circle's errors by kind. A partner gateway's answer passes through as it came.
impl From<crate::circle::CircleError> for Status {
    fn from(error: crate::circle::CircleError) -> Status {
        use crate::circle::CircleError;
        let (code, message) = match error {
            CircleError::InvalidField { field, message } => return invalid_field(field, message),
            CircleError::Storage(error) => return storage_status(error),
            CircleError::Remote(status) => return status,
            CircleError::Refused(message) => (Code::InvalidArgument, message),
            CircleError::NotFound(message) => (Code::NotFound, message),
            CircleError::AlreadyExists(message) => (Code::AlreadyExists, message),
            CircleError::PermissionDenied(message) => (Code::PermissionDenied, message),
            CircleError::FailedPrecondition(message) => (Code::FailedPrecondition, message),
            CircleError::EpochLost(message) => (Code::Aborted, message),
            CircleError::Unavailable(message) => (Code::Unavailable, message),
            CircleError::LogBroken(message) => (Code::DataLoss, message),
            CircleError::Internal(message) => (Code::Internal, message),
        };
        Status::new(code, message)
    }
}
