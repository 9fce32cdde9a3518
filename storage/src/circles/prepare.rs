//! A circle write checked, converted and reduced before its transaction starts, and the rows
//! read back decoded.

use std::collections::HashSet;
use std::hash::Hash;

use crate::error::StorageError;
use crate::model::{
    CircleLogEntry, CircleRow, CircleWrite, CircleWriteOutcome, KeyPackageRow, NewIndicator,
    PendingWelcome, ReceiveOutcome,
};
use crate::values::sequence_from_database;

/// The last change of each key, as if the changes were applied in order: the keys to set with
/// their values, and the keys to delete, each key in one of the two lists once (a multi-row
/// upsert may not touch a row twice), in the order of their last changes.
pub(super) fn last_changes<K: Copy + Eq + Hash, V>(
    changes: impl DoubleEndedIterator<Item = (K, Option<V>)>,
) -> (Vec<(K, V)>, Vec<K>) {
    let mut seen = HashSet::new();
    let mut sets = Vec::new();
    let mut deletes = Vec::new();
    for (key, change) in changes.rev() {
        if !seen.insert(key) {
            continue;
        }
        match change {
            Some(value) => sets.push((key, value)),
            None => deletes.push(key),
        }
    }
    sets.reverse();
    deletes.reverse();
    (sets, deletes)
}

/// The database has no unsigned integers; an epoch or a position beyond `i64::MAX` cannot be
/// stored (`what` names it in the error).
pub(super) fn to_database(value: u64, what: &str) -> Result<i64, StorageError> {
    i64::try_from(value).map_err(|_| {
        StorageError::Database(format!(
            "circle write: {what} {value} is beyond the database's range"
        ))
    })
}

/// A [`CircleWrite`] checked, converted and with its changes reduced to one per key, ready to
/// bind; made before the write transaction starts so that the transaction does nothing but
/// write.
pub(super) struct PreparedWrite<'a> {
    pub(super) value_sets: Vec<(&'a [u8], &'a [u8])>,
    pub(super) value_deletes: Vec<&'a [u8]>,
    /// The row, its epoch and its position.
    pub(super) circle: Option<(&'a CircleRow, i64, i64)>,
    /// The entry, its position and its epoch.
    pub(super) log: Vec<(&'a CircleLogEntry, i64, i64)>,
    /// The circle, and its indicators (not empty).
    pub(super) indicators: Option<(&'a str, &'a [NewIndicator])>,
    pub(super) key_packages: &'a [KeyPackageRow],
    pub(super) issue_key_package: Option<(&'a [u8], &'a str, i64)>,
    pub(super) departure_sets: Vec<((&'a str, &'a str), i64)>,
    pub(super) departure_deletes: Vec<(&'a str, &'a str)>,
    /// The Welcome to keep and its position.
    pub(super) welcome: Option<(&'a PendingWelcome, i64)>,
    /// When the write was prepared (outbox rows), Unix microseconds.
    pub(super) now_micros: i64,
    pub(super) admissions: Vec<(&'a str, &'a str, i64)>,
}

pub(super) fn prepare(write: &CircleWrite) -> Result<PreparedWrite<'_>, StorageError> {
    let (value_sets, value_deletes) = last_changes(
        write
            .kv
            .iter()
            .map(|(key, value)| (key.as_slice(), value.as_deref())),
    );
    let circle = write
        .circle
        .as_ref()
        .map(|row| {
            Ok::<_, StorageError>((
                row,
                to_database(row.epoch, "circle epoch")?,
                to_database(row.position, "circle position")?,
            ))
        })
        .transpose()?;
    let log = write
        .log
        .iter()
        .map(|entry| {
            Ok::<_, StorageError>((
                entry,
                to_database(entry.position, "log position")?,
                to_database(entry.epoch, "log epoch")?,
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let indicators = match (
        write.indicators.is_empty(),
        write.indicators_circle.as_deref(),
    ) {
        (true, _) => None,
        (false, Some(circle)) => Some((circle, write.indicators.as_slice())),
        (false, None) => {
            return Err(StorageError::Database(
                "circle write: indicators without indicators_circle".to_owned(),
            ));
        }
    };
    let departures = write
        .departures
        .iter()
        .map(|(circle, member, last_position)| {
            let last_position = last_position
                .map(|position| to_database(position, "departure last position"))
                .transpose()?;
            Ok(((circle.as_str(), member.as_str()), last_position))
        })
        .collect::<Result<Vec<_>, StorageError>>()?;
    let (departure_sets, departure_deletes) = last_changes(departures.into_iter());
    let welcome = write
        .welcome
        .as_ref()
        .map(|welcome| {
            Ok::<_, StorageError>((welcome, to_database(welcome.position, "welcome position")?))
        })
        .transpose()?;
    let admissions = write
        .admissions
        .iter()
        .map(|(circle, member, position)| {
            Ok::<_, StorageError>((
                circle.as_str(),
                member.as_str(),
                to_database(*position, "admission position")?,
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(PreparedWrite {
        admissions,
        welcome,
        now_micros: crate::backend::now_micros(),
        value_sets,
        value_deletes,
        circle,
        log,
        indicators,
        key_packages: &write.key_packages,
        issue_key_package: write
            .issue_key_package
            .as_ref()
            .map(|(hash_ref, issued_to, at)| (hash_ref.as_slice(), issued_to.as_str(), *at)),
        departure_sets,
        departure_deletes,
    })
}

pub(super) fn circle_outcome(outcome: ReceiveOutcome) -> CircleWriteOutcome {
    CircleWriteOutcome {
        stored: outcome.stored,
        duplicates: outcome.duplicates,
        conflicts: outcome.conflicts,
    }
}

/// The columns of a circle row, in the order of [`SELECT_CIRCLES`].
pub(super) type CircleColumns = (String, Vec<u8>, String, i64, i64, String, i64);

pub(super) fn decode_circle(columns: CircleColumns) -> Result<CircleRow, StorageError> {
    let (name, group_id, hub, epoch, position, status, created_micros) = columns;
    Ok(CircleRow {
        name,
        group_id,
        hub,
        epoch: sequence_from_database(epoch, "circle epoch")?,
        position: sequence_from_database(position, "circle position")?,
        status,
        created_micros,
    })
}

/// The columns of a log entry, in the order of [`SELECT_CIRCLE_LOG`].
pub(super) type LogColumns = (String, i64, i64, String, String, Vec<u8>, i64);

pub(super) fn decode_log_entry(columns: LogColumns) -> Result<CircleLogEntry, StorageError> {
    let (circle, position, epoch, sender, kind, message, at_micros) = columns;
    Ok(CircleLogEntry {
        circle,
        position: sequence_from_database(position, "log position")?,
        epoch: sequence_from_database(epoch, "log epoch")?,
        sender,
        kind,
        message,
        at_micros,
    })
}

/// The columns of a KeyPackage row, in the order of [`SELECT_KEY_PACKAGES`].
pub(super) type KeyPackageColumns = (Vec<u8>, Vec<u8>, bool, Option<String>, Option<i64>, i64);

pub(super) fn decode_key_package(columns: KeyPackageColumns) -> KeyPackageRow {
    let (hash_ref, key_package, last_resort, issued_to, issued_micros, created_micros) = columns;
    KeyPackageRow {
        hash_ref,
        key_package,
        last_resort,
        issued_to,
        issued_micros,
        created_micros,
    }
}
