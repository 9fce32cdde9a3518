//! The gateway's storage, on SQLite (embedded default) or PostgreSQL (production, several
//! replicas): the feed, an append-only, gap-safe event log of published and retracted
//! indicators; and the decision log, every release decision of the sharing policy.
//!
//! Payloads are opaque bytes: this crate knows nothing of protobuf or gRPC, and it is the only
//! crate of the workspace that names sqlx. Both backends run the same SQL text, checked at run
//! time, and pass the same conformance suite (`tests/conformance.rs`); their migrations
//! (`migrations/sqlite`, `migrations/postgres`) keep the same logical schema and run when a
//! [`Store`] connects.
//!
//! **Gap safety.** A follower reads "events after my cursor" and moves its cursor to
//! [`EventBatch::scanned_to`]. That is only correct if no event at or below `scanned_to` can
//! become visible later. Both backends take sequence numbers by updating the one row of
//! `feed_head` as the first statement of the writing transaction; the row lock makes writers
//! commit in sequence order, and a reader never looks past the head it read in the same
//! snapshot. See [`Store::read_after`].
//!
//! **Federation.** A gateway follows its peers' feeds and stores what it receives with
//! [`Store::receive`]: a page of [`Received`] items and the peer's cursor after that page, in
//! one transaction that locks the head like any writer, so received events are numbered in
//! this feed gap-free among the local ones, and the cursor ([`Store::peer_cursor`]) is moved
//! with exactly the items it covers and never backwards. An id already stored is a duplicate
//! and skipped, so a page received twice (after a crash before the cursor was stored, or
//! through two peers) adds nothing to the feed the second time. Indicators remember the peer
//! they came [`via`](StoredIndicator::via) and the revision that
//! [`superseded`](StoredIndicator::superseded_by) them; a retraction may carry its
//! originator's signature ([`EventBody::Retracted`]).
//!
//! **Decision log.** [`Store::record_decisions`] appends a batch of [`DecisionRow`]s in one
//! transaction, all or nothing (an id repeated within the batch refuses it). It is stored in
//! compact form: one row holding the batch's decisions (a few, if they span more than ten
//! minutes), encoded once, with a narrow key row per
//! indicator and per recipient it names, and the oversight counts kept beside it; rows stored
//! before that form (one per decision) are read beside the batches. [`Store::decisions`]
//! filters by indicator, recipient and time (`since`), alone or combined, and pages in the
//! keyset order `(at_micros, decision_id)` through [`DecisionQuery::after_decision`], at most
//! [`MAX_DECISIONS_PER_QUERY`] rows a page. [`Store::record_page_decisions`] also notes the feed
//! pages a write decides ([`DecidedPage`]), and [`Store::page_decisions`] finds them again, so
//! that a re-read of the feed need not store the same decisions twice.
//! [`Store::purge_decisions_before`] applies the retention in short transactions. The
//! decision log does not touch the feed head.
//!
//! **Circles.** [`Store::circle_write`] writes everything one MLS operation changes in one
//! transaction ([`CircleWrite`]): the openmls key-value store (opaque bytes, read back whole
//! with [`Store::mls_values`]), the circle's row, an entry of the hub's log (whose position is
//! the primary key, so a second entry at a position refuses the whole write with
//! [`StorageError::LogPositionTaken`]), KeyPackages, departures, and source-protected
//! indicators, which enter the feed as [`Store::receive`] stores them (a writer of the feed
//! like the others, locking the head first) and remember their
//! [`circle`](StoredIndicator::circle). Deleted MLS secrets should not outlive their deletion
//! on disk (forward secrecy): SQLite connections run with `secure_delete`, which overwrites
//! deleted content with zeros, and [`Store::checkpoint`] empties the WAL that still holds
//! older copies of the pages.
//!
//! **SQLite writes** all go through one writer connection (so this process's writers queue
//! instead of contending for the file's lock): publishes, retractions, receives, circle
//! writes, decision batches and purge chunks wait for each other. Decision batches and purge chunks are therefore kept to
//! one short transaction each.

mod audit;
mod backend;
mod circles;
mod decisions;
mod direct;
mod error;
mod feed;
mod group_commit;
mod model;
mod oversight;
mod placeholders;
mod postgres;
mod screening;
mod sqlite;
mod store;
pub mod testing;
mod values;

pub use audit::switch_off_for_benchmarks as switch_audit_log_off_for_benchmarks;
pub use backend::Backend;
pub use decisions::MAX_DECISIONS_PER_QUERY;
pub use error::StorageError;
pub use feed::plan::judge_same_indicator_by;
pub use group_commit::OnCommit;
pub use model::{
    AlertCursors, AlertRow, CircleLogEntry, CircleRow, CircleWrite, CircleWriteOutcome,
    DecidedPage, DecisionQuery, DecisionRow, EventBatch, EventBody, KeyPackageRow, NewAlert,
    NewIndicator, NewWatch, PeerCheckpoint, PeerCursor, PendingWelcome, ReceiveOutcome, Received,
    RetractionRecord, ScreeningRow, StoredEvent, StoredIndicator, WatchKind, WatchRow,
};
pub use oversight::{DecisionGroup, OversightIndicator, OversightPage};
pub use screening::MAX_WATCHES_PER_READ;
pub use store::Store;

/// Re-exported so that callers (the gateway, tests) can build PostgreSQL options, for example
/// with a `search_path`, without naming sqlx themselves.
pub use sqlx::postgres::PgConnectOptions;
