//! The indicator model of Cordon: validation of every field of a `cordon.v1.Indicator` per
//! DOMAIN.md, the documented size limits, risk-signal warnings, and kind names.
//!
//! Validation reports every field error it finds, not only the first, each with the field's path
//! in the proto3 JSON form (`vessel.imo`, `tags[2]`), so that a publisher can fix a batch in one
//! pass. Warnings are risk signals (an MMSI of another country than the flag, an HS code outside
//! the arms chapter): they never reject an indicator.
//!
//! Signatures: [`signing_bytes`] is version 1 (prost's re-encoding of the whole indicator,
//! accepted during the transition window); [`disclosure`] is version 2, Cordon's own canonical
//! form with a salted commitment per redactable field, which survives redaction and schema
//! changes.
//!
//! This crate does no I/O and knows nothing of gRPC status codes: the gateway maps
//! [`FieldError`]s to its responses.

mod canonical;
pub use cordon_identifiers as checks;
pub mod disclosure;
mod field_error;
mod kind;
mod limits;
mod validate;

pub use canonical::{
    RETRACTION_SIGNING_CONTEXT, SIGNING_CONTEXT, retraction_signing_bytes, signing_bytes,
};
pub use field_error::FieldError;
pub use kind::{KIND_NAMES, indicator_kind, kind_name, kind_name_of};
pub use limits::Limits;
pub use validate::{validate_batch, validate_indicator};
