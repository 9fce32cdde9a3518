//! Values between Rust and the database: the database has no unsigned integers.

use crate::error::StorageError;

/// The database has no unsigned integers; a cursor beyond `i64::MAX` is beyond every event.
pub(crate) fn sequence_to_database(sequence: u64) -> i64 {
    i64::try_from(sequence).unwrap_or(i64::MAX)
}

pub(crate) fn sequence_from_database(value: i64, column: &str) -> Result<u64, StorageError> {
    u64::try_from(value)
        .map_err(|_| StorageError::corrupt(format!("negative {column} {value} in the database")))
}
