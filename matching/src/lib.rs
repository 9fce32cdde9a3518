//! Screening's matching: which records (indicators held by a gateway, or declarations and
//! watchlist entries an agency watches) an incoming declaration or indicator matches, and why.
//!
//! - [`identifier`]: identifiers brought to one form (`IMO 9234563` is `9234563`, `mscu
//!   123456-6` is `MSCU1234566`) and checked (check digits, forms) without rejecting anything;
//! - [`name`]: names of parties and vessels brought to one form (transliterated, without
//!   punctuation, legal forms and vessel prefixes) and their similarity;
//! - [`Subject`]: what a record offers to match on, and [`compare`], the explained matches of two
//!   subjects (feature, fields on both sides, value, method, similarity);
//! - [`Index`]: finds the records that may match a subject without looking at every record.
//!
//! The crate knows nothing of protobuf, gRPC or SQL: the gateway turns indicators and
//! declarations into [`Subject`]s and decides what a match means with the board's policy.

pub mod identifier;
mod index;
pub mod name;
mod subject;

pub use identifier::{Finding, IdKind, Normalised, check, mmsi_flag_mismatch, normalise};
pub use index::{
    Index, IndexStats, MAX_NAME_CANDIDATES, MAX_POSTINGS_READ, MAX_RECORDS_PER_KEY, MIN_TYPO_WORD,
};
pub use name::{NameClass, NormalisedName, normalise_name, similarity};
pub use subject::{
    FieldMatch, Identifier, Method, Name, Prepared, PreparedIdentifier, PreparedName, Subject,
    compare,
};
