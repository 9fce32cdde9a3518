//! The error a validation reports for one field.

use std::fmt;

/// One invalid field of an indicator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Where, in proto3 JSON names, dotted, with list indices: `vessel.imo`, `tags[2]`,
    /// `consignment.hsCodes[0]`; `kind` when no kind is set; `indicators` for a whole batch.
    pub path: String,
    /// What is wrong and what is expected, lowercase, without a trailing period:
    /// `check digit is 4, expected 3`.
    pub message: String,
}

impl FieldError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.path, self.message)
    }
}

impl std::error::Error for FieldError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_path_then_message() {
        let error = FieldError::new("vessel.imo", "check digit is 4, expected 3");
        assert_eq!(
            error.to_string(),
            "vessel.imo: check digit is 4, expected 3"
        );
    }
}
