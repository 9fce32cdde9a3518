//! What can go wrong in a circle, by kind; `crate::status` maps each kind to its gRPC code.

use cordon_storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum CircleError {
    /// A request field is wrong; `field` names it.
    #[error("{field}: {message}")]
    InvalidField {
        field: &'static str,
        message: String,
    },
    /// A message, Welcome or commit from another gateway was checked and refused.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The caller, a credential or a key is not who it must be.
    #[error("{0}")]
    PermissionDenied(String),
    /// The circle is not in a state that allows this (not the hub, not active, a member
    /// unreachable by configuration, the policy refused).
    #[error("{0}")]
    FailedPrecondition(String),
    /// Another message won the epoch: catch up and send again.
    #[error("{0}")]
    EpochLost(String),
    #[error("{0}")]
    Unavailable(String),
    /// The hub's log cannot be followed on from here (a gap, a commit that cannot be
    /// processed, own secrets lost).
    #[error("{0}")]
    LogBroken(String),
    /// MLS or encoding failed here: corrupt state or a bug.
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// What a partner gateway answered a call of this gateway.
    #[error("{}", .0.message())]
    Remote(tonic::Status),
}

impl CircleError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> CircleError {
        CircleError::InvalidField {
            field,
            message: message.into(),
        }
    }

    pub fn internal(message: impl std::fmt::Display) -> CircleError {
        CircleError::Internal(message.to_string())
    }

    /// Whether another message won the epoch (here, or at the hub that answered).
    pub fn is_epoch_lost(&self) -> bool {
        match self {
            CircleError::EpochLost(_) => true,
            CircleError::Remote(status) => status.code() == tonic::Code::Aborted,
            _ => false,
        }
    }
}

impl From<tonic::Status> for CircleError {
    fn from(status: tonic::Status) -> CircleError {
        CircleError::Remote(status)
    }
}
