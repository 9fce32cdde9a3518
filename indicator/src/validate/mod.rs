//! Validation of indicators and batches: every field per DOMAIN.md, every error collected.
//!
//! The fields common to all indicators are checked here, the kinds in `kinds`. Both write into
//! a `Report`, which keeps errors and warnings apart and knows the limits.

mod kinds;

use std::collections::HashMap;
use std::fmt::Display;

use cordon_proto::v1::{HandlingCode, Indicator, Protection, Severity, Source, Tlp};
use pbjson_types::Timestamp;

use crate::checks::{self, CheckFailure};
use crate::{FieldError, Limits};

/// Validates one indicator. `Ok` carries its risk-signal warnings (each `"path: message"`),
/// `Err` every field error found.
pub fn validate_indicator(
    indicator: &Indicator,
    limits: &Limits,
) -> Result<Vec<String>, Vec<FieldError>> {
    let mut report = Report::new(limits);
    validate_identity(&mut report, indicator);
    validate_validity(&mut report, indicator);
    validate_handling(&mut report, indicator);
    if let Some(source) = &indicator.source {
        validate_source(&mut report, source);
    }
    kinds::validate_kind(&mut report, indicator);
    report.finish()
}

/// Validates a publish batch: its size, every indicator, and that no client-supplied id appears
/// twice. `Ok` carries each indicator's warnings, in order; `Err` every error with the index of
/// its indicator. Errors about the whole batch have the path `indicators` and index 0.
pub fn validate_batch(
    indicators: &[Indicator],
    limits: &Limits,
) -> Result<Vec<Vec<String>>, Vec<(usize, FieldError)>> {
    if indicators.is_empty() {
        let message = format!(
            "batch is empty, expected 1 to {} indicators",
            limits.max_batch
        );
        return Err(vec![(0, FieldError::new("indicators", message))]);
    }
    if indicators.len() > limits.max_batch {
        // Refused before looking inside: validating an oversized batch would only produce an
        // oversized error list.
        let message = format!(
            "batch has {} indicators, expected at most {}",
            indicators.len(),
            limits.max_batch
        );
        return Err(vec![(0, FieldError::new("indicators", message))]);
    }
    let mut warnings = Vec::with_capacity(indicators.len());
    let mut errors = Vec::new();
    let mut first_index_of_id: HashMap<&str, usize> = HashMap::new();
    for (index, indicator) in indicators.iter().enumerate() {
        match validate_indicator(indicator, limits) {
            Ok(indicator_warnings) => warnings.push(indicator_warnings),
            Err(indicator_errors) => {
                errors.extend(indicator_errors.into_iter().map(|error| (index, error)))
            }
        }
        // The store would refuse the second one anyway; saying so here names both indicators.
        if !indicator.id.is_empty() {
            if let Some(first_index) = first_index_of_id.get(indicator.id.as_str()) {
                let message = format!(
                    "same id as indicator {first_index} of this batch, expected ids unique in a batch"
                );
                errors.push((index, FieldError::new("id", message)));
            } else {
                first_index_of_id.insert(&indicator.id, index);
            }
        }
    }
    if errors.is_empty() {
        Ok(warnings)
    } else {
        Err(errors)
    }
}

/// Errors and warnings found so far, and the limits to check against.
pub(crate) struct Report<'a> {
    limits: &'a Limits,
    errors: Vec<FieldError>,
    warnings: Vec<String>,
}

impl<'a> Report<'a> {
    fn new(limits: &'a Limits) -> Self {
        Report {
            limits,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    fn finish(self) -> Result<Vec<String>, Vec<FieldError>> {
        if self.errors.is_empty() {
            Ok(self.warnings)
        } else {
            Err(self.errors)
        }
    }

    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(path, message));
    }

    fn warning(&mut self, path: &str, message: impl Display) {
        self.warnings.push(format!("{path}: {message}"));
    }

    /// A string field of at most `max_bytes` without control characters (line breaks and tabs
    /// allowed where `allow_line_breaks`). Returns whether it passed, so that callers do not
    /// pile form errors on a value already rejected.
    fn text(&mut self, path: &str, value: &str, max_bytes: usize, allow_line_breaks: bool) -> bool {
        if value.len() > max_bytes {
            self.error(
                path,
                format!(
                    "is {} bytes long, expected at most {max_bytes}",
                    value.len()
                ),
            );
            return false;
        }
        // Control characters have no place in names and identifiers, and terminal escapes in
        // any text are a way to mislead an analyst reading it.
        let allowed =
            |character: char| allow_line_breaks && matches!(character, '\n' | '\r' | '\t');
        if let Some((position, _)) = value
            .char_indices()
            .find(|(_, character)| character.is_control() && !allowed(*character))
        {
            let expected = if allow_line_breaks {
                "text without control characters other than line breaks and tabs"
            } else {
                "printable text"
            };
            self.error(
                path,
                format!("contains a control character at byte {position}, expected {expected}"),
            );
            return false;
        }
        true
    }

    /// A short string (name, identifier): the short-string limit, no control characters.
    fn short_string(&mut self, path: &str, value: &str) -> bool {
        self.text(path, value, self.limits.max_short_string, false)
    }

    /// A short string that must not be empty or blank.
    fn required_text(&mut self, path: &str, value: &str, expected: &str) -> bool {
        if value.trim().is_empty() {
            self.error(path, format!("is empty, expected {expected}"));
            return false;
        }
        self.short_string(path, value)
    }

    /// An optional identifier: nothing to check when empty; otherwise the short-string rules,
    /// then `check`. Returns the check's result when the value is present and valid.
    fn identifier<'value, T>(
        &mut self,
        path: &str,
        value: &'value str,
        check: impl FnOnce(&'value str) -> Result<T, CheckFailure>,
    ) -> Option<T> {
        if value.is_empty() || !self.short_string(path, value) {
            return None;
        }
        check(value)
            .map_err(|failure| self.error(path, failure.to_string()))
            .ok()
    }

    /// An identifier that must be present.
    fn required_identifier<'value, T>(
        &mut self,
        path: &str,
        value: &'value str,
        expected: &str,
        check: impl FnOnce(&'value str) -> Result<T, CheckFailure>,
    ) -> Option<T> {
        if value.is_empty() {
            self.error(path, format!("is empty, expected {expected}"));
            return None;
        }
        self.identifier(path, value, check)
    }

    /// A list within the list-item limit. Returns whether its items are worth checking.
    fn list_length(&mut self, path: &str, length: usize, max_items: usize) -> bool {
        if length > max_items {
            self.error(
                path,
                format!("has {length} items, expected at most {max_items}"),
            );
            return false;
        }
        true
    }

    /// An enum field whose value must be one the protocol defines; `UNSPECIFIED` (0) is
    /// accepted unless `required`. Returns the value when known.
    fn enumeration<E: TryFrom<i32>>(
        &mut self,
        path: &str,
        value: i32,
        required: bool,
        name_of: fn(&E) -> &'static str,
    ) -> Option<E> {
        // Generated enums are numbered from 0 without gaps, so their names can be listed by
        // counting up until a number is unknown.
        let names = || {
            (1..)
                .map_while(|number| E::try_from(number).ok())
                .map(|known| name_of(&known))
                .collect::<Vec<_>>()
                .join(", ")
        };
        if required && value == 0 {
            self.error(path, format!("is not set, expected one of {}", names()));
            return None;
        }
        match E::try_from(value) {
            Ok(known) => Some(known),
            Err(_) => {
                let optional = if required { "" } else { " (or unset)" };
                self.error(
                    path,
                    format!(
                        "unknown value {value}, expected one of {}{optional}",
                        names()
                    ),
                );
                None
            }
        }
    }

    /// A timestamp within what RFC 3339 (and so the JSON form) can write. Returns whether it is.
    fn timestamp(&mut self, path: &str, timestamp: &Timestamp) -> bool {
        // 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the range of google.protobuf.Timestamp.
        const MIN_SECONDS: i64 = -62_135_596_800;
        const MAX_SECONDS: i64 = 253_402_300_799;
        let mut in_range = true;
        if !(MIN_SECONDS..=MAX_SECONDS).contains(&timestamp.seconds) {
            self.error(
                path,
                format!("seconds {} outside years 0001 to 9999", timestamp.seconds),
            );
            in_range = false;
        }
        if !(0..1_000_000_000).contains(&timestamp.nanos) {
            self.error(
                path,
                format!(
                    "nanos {} out of range, expected 0 to 999999999",
                    timestamp.nanos
                ),
            );
            in_range = false;
        }
        in_range
    }
}

/// Ids and the gateway-set identity fields.
fn validate_identity(report: &mut Report, indicator: &Indicator) {
    // Empty ids are assigned by the gateway.
    report.identifier("id", &indicator.id, checks::check_uuid);
    report.identifier("supersedes", &indicator.supersedes, checks::check_uuid);
    if !indicator.id.is_empty() && indicator.id == indicator.supersedes {
        report.error(
            "supersedes",
            "names the indicator itself, expected the id of an earlier indicator",
        );
    }
    report.identifier("originator", &indicator.originator, |value| {
        if checks::is_member_id(value) {
            Ok(())
        } else {
            Err(CheckFailure::form(
                "expected a member id (2-16 of A-Z, 0-9, '-', starting with a letter)",
            ))
        }
    });
    report.identifier("publisher", &indicator.publisher, checks::check_recipient);
    if let Some(signature) = &indicator.signature {
        report.short_string("signature.keyId", &signature.key_id);
    }
}

/// Creation and validity times.
fn validate_validity(report: &mut Report, indicator: &Indicator) {
    if let Some(created) = &indicator.created {
        report.timestamp("created", created);
    }
    let valid_from = match &indicator.valid_from {
        None => {
            report.error(
                "validFrom",
                "is not set, expected the time from which the indicator applies",
            );
            None
        }
        Some(valid_from) => report
            .timestamp("validFrom", valid_from)
            .then_some(valid_from),
    };
    if let Some(valid_until) = &indicator.valid_until
        && report.timestamp("validUntil", valid_until)
        && let Some(valid_from) = valid_from
        && (valid_until.seconds, valid_until.nanos) <= (valid_from.seconds, valid_from.nanos)
    {
        report.error("validUntil", "must be after valid_from");
    }
}

/// Labels, grading, recipients, tags and narrative.
fn validate_handling(report: &mut Report, indicator: &Indicator) {
    report.enumeration::<Tlp>("tlp", indicator.tlp, true, Tlp::as_str_name);
    report.enumeration::<Severity>("severity", indicator.severity, false, Severity::as_str_name);
    report.enumeration::<Protection>(
        "protection",
        indicator.protection,
        false,
        Protection::as_str_name,
    );
    if indicator.confidence > 100 {
        report.error(
            "confidence",
            format!("is {}, expected 0 to 100", indicator.confidence),
        );
    }

    let max_list_items = report.limits.max_list_items;
    if report.list_length(
        "releasableTo",
        indicator.releasable_to.len(),
        max_list_items,
    ) {
        for (index, recipient) in indicator.releasable_to.iter().enumerate() {
            report.required_identifier(
                &format!("releasableTo[{index}]"),
                recipient,
                "a member id, optionally followed by /agency",
                checks::check_recipient,
            );
        }
    }

    let (max_tags, max_tag_bytes) = (report.limits.max_tags, report.limits.max_tag_bytes);
    if report.list_length("tags", indicator.tags.len(), max_tags) {
        for (index, tag) in indicator.tags.iter().enumerate() {
            let path = format!("tags[{index}]");
            if tag.trim().is_empty() {
                report.error(&path, "is empty, expected a keyword");
            } else {
                report.text(&path, tag, max_tag_bytes, false);
            }
        }
    }

    let max_narrative_bytes = report.limits.max_narrative_bytes;
    report.text("narrative", &indicator.narrative, max_narrative_bytes, true);
}

/// How the information was obtained (Europol 4x4 grading and handling code).
fn validate_source(report: &mut Report, source: &Source) {
    let max_description_bytes = report.limits.max_source_description_bytes;
    report.text(
        "source.description",
        &source.description,
        max_description_bytes,
        true,
    );
    if !matches!(source.reliability.as_str(), "" | "A" | "B" | "C" | "X") {
        report.error(
            "source.reliability",
            "unknown grade, expected A, B, C or X (or empty when not graded)",
        );
    }
    if source.credibility > 4 {
        report.error(
            "source.credibility",
            format!(
                "is {}, expected 1 to 4 (or 0 when not graded)",
                source.credibility
            ),
        );
    }
    report.enumeration::<HandlingCode>(
        "source.handlingCode",
        source.handling_code,
        false,
        HandlingCode::as_str_name,
    );
}
