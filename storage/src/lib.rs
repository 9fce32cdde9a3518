//! The feed's storage: an append-only, gap-safe event log of published and retracted
//! indicators, on SQLite (embedded default) or PostgreSQL (production, several replicas).
//!
//! Payloads are opaque bytes: this crate knows nothing of protobuf or gRPC, and it is the only
//! crate of the workspace that names sqlx.
//!
//! **Gap safety.** A follower reads "events after my cursor" and moves its cursor to
//! [`EventBatch::scanned_to`]. That is only correct if no event at or below `scanned_to` can
//! become visible later. Both backends take sequence numbers by updating the one row of
//! `feed_head` as the first statement of the writing transaction; the row lock makes writers
//! commit in sequence order, and a reader never looks past the head it read in the same
//! snapshot. See [`Store::read_after`].

mod error;
mod model;
mod operations;
mod postgres;
mod sqlite;
mod store;
pub mod testing;

pub use error::StorageError;
pub use model::{EventBatch, EventBody, NewIndicator, StoredEvent, StoredIndicator};
pub use store::{Backend, Store};

/// Re-exported so that callers (the gateway, tests) can build PostgreSQL options, for example
/// with a `search_path`, without naming sqlx themselves.
pub use sqlx::postgres::PgConnectOptions;
