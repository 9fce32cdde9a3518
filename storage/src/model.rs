//! The feed's data as storage sees it: indicators to publish or receive from a peer, events and
//! indicators read back, and the cursors kept on peers' feeds; and the circles' data: the
//! openmls key-value store, circles, the hub's logs, departures and KeyPackages.

use std::fmt;

/// An indicator to publish. `payload` is opaque to storage (the gateway's encoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIndicator {
    pub id: String,
    pub originator: String,
    pub kind: String,
    /// Unix time in microseconds; becomes the `at_micros` of the `published` event.
    pub created_micros: i64,
    pub payload: Vec<u8>,
    /// The id of the indicator this one revises. When it is stored and has the same
    /// originator, it is marked [`StoredIndicator::superseded_by`] this one in the same
    /// transaction; otherwise (absent, another originator, or this indicator's own id) nothing
    /// is marked and the indicator is stored all the same.
    pub supersedes: Option<String>,
    /// The member id of the peer gateway this indicator was received through; `None` when it
    /// is published at this gateway. Stored as given (storage does not fill it in).
    pub via: Option<String>,
}

/// The latest checkpoint of a peer's audit log that this gateway checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCheckpoint {
    pub peer: String,
    pub size: u64,
    pub root: [u8; 32],
    /// The signed note, kept as evidence.
    pub note: String,
    pub at_micros: i64,
}

/// A retraction as the feed holds it (the content of an audit log entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetractionRecord {
    pub indicator_id: String,
    pub originator: String,
    pub reason: String,
    pub at_micros: i64,
    pub signature: Option<Vec<u8>>,
}

/// One item of a peer's feed, as [`crate::Store::receive`] applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Stored unless an indicator with its id is already stored (then a duplicate).
    Published(NewIndicator),
    /// Applied only to a stored, not yet retracted indicator with this id and this originator.
    Retracted {
        indicator_id: String,
        originator: String,
        reason: String,
        /// Unix time in microseconds when the originator retracted it; the event's time.
        at_micros: i64,
        /// The originator's signature over the retraction, opaque to storage.
        signature: Option<Vec<u8>>,
    },
}

/// What [`crate::Store::receive`] did with each item, in the order of the items. Every item is
/// in exactly one of the four lists.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceiveOutcome {
    /// Published items stored, with the sequence of their `published` event.
    pub stored: Vec<(String, u64)>,
    /// Ids of published items not stored because the same indicator (same originator, same
    /// payload) was already stored, before the call or earlier in it.
    pub duplicates: Vec<String>,
    /// Ids of published items not stored because a *different* indicator holds the id (another
    /// originator, or other content): the first one stored keeps it; the caller should refuse
    /// and report these.
    pub conflicts: Vec<String>,
    /// Ids of indicators retracted, with the sequence of their `retracted` event.
    pub retracted: Vec<(String, u64)>,
    /// Ids of retractions not applied: no such indicator of that originator, or already
    /// retracted.
    pub ignored_retractions: Vec<String>,
}

/// How far this gateway has received a peer's feed, as stored by [`crate::Store::receive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCursor {
    /// The peer gateway's member id.
    pub peer: String,
    /// The peer's sequence up to which its feed has been received and stored.
    pub cursor: u64,
    /// Unix time in microseconds of the last receive from this peer (even one that did not move
    /// the cursor).
    pub updated_micros: i64,
}

/// One page of the feed, as returned by [`crate::Store::read_after`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventBatch {
    pub events: Vec<StoredEvent>,
    /// Everything `<= scanned_to` has been seen (returned or filtered out), so a subscriber may
    /// advance its cursor here even past events it will not receive. Never below the `after`
    /// that was asked for, and never past an event that is not yet committed.
    pub scanned_to: u64,
    /// The head the read saw: no event above it was visible to the read. A follower whose
    /// cursor reached it without a filter had read everything committed at that time.
    pub head: u64,
}

/// One event of the feed log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub sequence: u64,
    /// Unix time in microseconds when the event was created (not when it was stored).
    pub at_micros: i64,
    /// The kind of the indicator the event is about.
    pub kind: String,
    pub body: EventBody,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventBody {
    Published {
        indicator_id: String,
        originator: String,
        payload: Vec<u8>,
    },
    Retracted {
        indicator_id: String,
        originator: String,
        reason: String,
        /// The originator's signature over the retraction, if one was stored with it.
        signature: Option<Vec<u8>>,
    },
}

/// An indicator as stored, with the sequence of its `published` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIndicator {
    pub id: String,
    pub originator: String,
    pub kind: String,
    pub payload: Vec<u8>,
    pub sequence: u64,
    pub retracted: bool,
    /// The peer gateway it was received through, `None` if published at this gateway.
    pub via: Option<String>,
    /// The id of the latest indicator of the same originator that revises this one, if any.
    pub superseded_by: Option<String>,
    /// The circle it was published or received in ([`CircleWrite::indicators`]), `None` for an
    /// indicator of the feed at large.
    pub circle: Option<String>,
}

/// One release decision of the sharing policy, as the decision log stores it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DecisionRow {
    /// A UUID made by the gateway (unique by construction). Compared bytewise in the keyset
    /// order.
    pub decision_id: String,
    /// Unix time in microseconds when the decision was made.
    pub at_micros: i64,
    pub recipient: String,
    pub indicator_id: String,
    pub channel: String,
    /// The revision of the policy that made the decision.
    pub policy_revision: String,
    pub allow: bool,
    /// The paths the policy redacted, in the policy's order.
    pub redact: Vec<String>,
    pub reasons: Vec<String>,
    /// Why the evaluation failed (and so denied), if it did.
    pub error: Option<String>,
}

/// A page of the feed whose decisions for one recipient under one policy revision a write of
/// decisions holds: the events after `after` up to `to`. A later read of the same events finds
/// them with [`crate::Store::page_decisions`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DecidedPage {
    pub recipient: String,
    pub policy_revision: String,
    pub after: u64,
    pub to: u64,
}

/// Which decisions [`crate::Store::decisions`] returns. Every filter that is set must match;
/// with none set, every decision matches.
#[derive(Debug, Clone, Default)]
pub struct DecisionQuery {
    pub indicator_id: Option<String>,
    pub recipient: Option<String>,
    /// Only decisions with `at_micros >= since_micros`.
    pub since_micros: Option<i64>,
    /// Keyset cursor `(at_micros, decision_id)`: only decisions strictly after it in the order
    /// of the results. Pass the last row of the previous page to get the next one.
    pub after_decision: Option<(i64, String)>,
    /// At most this many rows, capped at [`crate::MAX_DECISIONS_PER_QUERY`]; 0 returns none.
    pub limit: u32,
}

/// A circle (an MLS group) this gateway is the hub or a member of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircleRow {
    /// The primary key; compared bytewise in [`crate::Store::circles`].
    pub name: String,
    /// The MLS group id, opaque to storage.
    pub group_id: Vec<u8>,
    /// The member id of the circle's hub gateway.
    pub hub: String,
    pub epoch: u64,
    /// At the hub, the number of entries in the circle's log; at a member, the number of log
    /// entries it has consumed.
    pub position: u64,
    /// `active` or `removed` (the schema refuses anything else).
    pub status: String,
    /// Unix time in microseconds.
    pub created_micros: i64,
}

/// One entry of a circle's log at the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircleLogEntry {
    pub circle: String,
    /// From 1; `(circle, position)` is the primary key.
    pub position: u64,
    pub epoch: u64,
    /// The member id of the gateway that sent the message.
    pub sender: String,
    pub kind: String,
    /// The MLS message, opaque to storage.
    pub message: Vec<u8>,
    /// Unix time in microseconds.
    pub at_micros: i64,
}

/// A KeyPackage this gateway published; its private keys are in the openmls key-value store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPackageRow {
    /// The KeyPackage's hash reference; the primary key.
    pub hash_ref: Vec<u8>,
    /// The encoded KeyPackage, opaque to storage.
    pub key_package: Vec<u8>,
    /// A last-resort KeyPackage may be handed out more than once.
    pub last_resort: bool,
    /// The member it was last handed out to, with [`CircleWrite::issue_key_package`].
    pub issued_to: Option<String>,
    /// Unix time in microseconds when it was last handed out; set with `issued_to`.
    pub issued_micros: Option<i64>,
    /// Unix time in microseconds.
    pub created_micros: i64,
}

/// Everything one MLS operation changes, written by [`crate::Store::circle_write`] in ONE
/// transaction (all or nothing).
///
/// Its `Debug` shows how many key-value changes it holds, not their bytes, which include group
/// secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CircleWrite {
    /// openmls key-value changes: `Some(value)` upserts, `None` deletes the key. Applied in
    /// order: of several changes of one key, the last one wins.
    pub kv: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Upsert of a circle row by name: every column takes the given value.
    pub circle: Option<CircleRow>,
    /// Appended to the hub's log, in order. If a `(circle, position)` already exists, the
    /// whole write fails with [`crate::StorageError::LogPositionTaken`] and nothing is written.
    pub log: Vec<CircleLogEntry>,
    /// Source-protected indicators published or received in a circle, stored into the feed as
    /// [`crate::Store::receive`] stores published items (a `published` event each, the head
    /// advanced, the indicators they supersede marked, `via` as given), with
    /// [`StoredIndicator::circle`] set to [`CircleWrite::indicators_circle`]. An id already
    /// stored (before the write or earlier in it) is skipped: a duplicate if the same
    /// originator and payload, otherwise a conflict (see [`CircleWriteOutcome`]).
    pub indicators: Vec<NewIndicator>,
    /// The circle the indicators belong to; required when `indicators` is not empty.
    pub indicators_circle: Option<String>,
    /// Inserted; a `hash_ref` already stored fails the write.
    pub key_packages: Vec<KeyPackageRow>,
    /// `(hash_ref, issued_to, issued_micros)`: set on the stored KeyPackage with that
    /// `hash_ref` (inserted by an earlier write or by this one); if there is none, the write
    /// fails.
    pub issue_key_package: Option<(Vec<u8>, String, i64)>,
    /// `hash_ref`s of stored KeyPackages to forget (expired); absent ones are ignored.
    pub key_packages_dropped: Vec<Vec<u8>>,
    /// `(circle, member, Some(last_position))` upserts a departure, `(circle, member, None)`
    /// deletes it. Applied in order: of several changes of one departure, the last one wins.
    pub departures: Vec<(String, String, Option<u64>)>,
    /// `(circle, member, position)`: the member was added by the commit at `position`
    /// (upserted).
    pub admissions: Vec<(String, String, u64)>,
    /// `(circle, member)`: pending Welcomes deleted (the member was removed). Applied before
    /// [`CircleWrite::welcome`].
    pub welcomes_dropped: Vec<(String, String)>,
    /// A Welcome to keep until it is delivered (upserted by circle and member).
    pub welcome: Option<PendingWelcome>,
    /// `(circle, digest, Some(indicator))` keeps an own message's indicator in the outbox;
    /// `(circle, digest, None)` forgets it. Applied in order.
    pub outbox: Vec<(String, Vec<u8>, Option<Vec<u8>>)>,
    /// Entries of the audit log that record what this write does (a member added to or
    /// removed from a circle), appended in the same transaction.
    pub audit: Vec<cordon_tlog::Entry>,
}

/// A Welcome the hub committed to and has not yet delivered to the member it adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingWelcome {
    pub circle: String,
    pub member: String,
    /// The log position of the commit that added the member.
    pub position: u64,
    /// The TLS-serialized MLS Welcome, encrypted to the member's KeyPackage.
    pub welcome: Vec<u8>,
    pub created_micros: i64,
}

impl fmt::Debug for CircleWrite {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("CircleWrite")
            .field("kv", &format_args!("{} changes", self.kv.len()))
            .field("circle", &self.circle)
            .field("log", &self.log)
            .field("indicators", &self.indicators)
            .field("indicators_circle", &self.indicators_circle)
            .field("key_packages", &self.key_packages)
            .field("issue_key_package", &self.issue_key_package)
            .field("key_packages_dropped", &self.key_packages_dropped.len())
            .field("departures", &self.departures)
            .field("admissions", &self.admissions)
            .field("welcomes_dropped", &self.welcomes_dropped)
            .field("outbox", &format_args!("{} changes", self.outbox.len()))
            .field(
                "welcome",
                &self
                    .welcome
                    .as_ref()
                    .map(|welcome| (&welcome.circle, &welcome.member, welcome.position)),
            )
            .finish()
    }
}

/// What [`crate::Store::circle_write`] did with each of [`CircleWrite::indicators`], in their
/// order. Every indicator is in exactly one of the three lists.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CircleWriteOutcome {
    /// Indicators stored, with the sequence of their `published` event.
    pub stored: Vec<(String, u64)>,
    /// Ids of indicators not stored because the same indicator (same originator, same payload)
    /// was already stored, before the write or earlier in it.
    pub duplicates: Vec<String>,
    /// Ids of indicators not stored because a *different* indicator holds the id (another
    /// originator, or other content); the caller should refuse and report these.
    pub conflicts: Vec<String>,
}

/// One screening of a declaration, as [`crate::Store::record_screenings`] stores it; with its
/// watch, if the declaration is watched for new intelligence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScreeningRow {
    /// A UUID.
    pub id: String,
    pub agency: String,
    pub reference: String,
    pub at_micros: i64,
    pub policy_revision: String,
    /// `LOW`, `MEDIUM`, `HIGH`, `CRITICAL` or `UNASSESSED`.
    pub level: String,
    /// 0 to 100.
    pub score: u32,
    /// The declaration and the result, opaque to storage.
    pub declaration: Vec<u8>,
    pub result: Vec<u8>,
    /// The feed position the screening saw and when its watch ends; `None` when it is not
    /// watched.
    pub watch: Option<(u64, i64)>,
}

/// Whether a watch is a screened declaration or a watchlist entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchKind {
    Declaration,
    Entry,
}

impl WatchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WatchKind::Declaration => "declaration",
            WatchKind::Entry => "entry",
        }
    }
}

/// A watch to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWatch {
    pub kind: WatchKind,
    pub agency: String,
    /// The screening's id, or the entry's own id; unique.
    pub reference_id: String,
    /// The declaration, or the entry, opaque to storage.
    pub subject: Vec<u8>,
    /// Intelligence after this feed position raises alerts.
    pub from_sequence: u64,
    /// When the watch ends; `None`: when it is removed.
    pub until_micros: Option<i64>,
    pub created_micros: i64,
}

/// A stored watch, with the number the watch index knows it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchRow {
    pub number: u64,
    pub watch: NewWatch,
}

/// An alert to store: for `agency`, because the indicator `indicator_id` matched `watch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlert {
    pub agency: String,
    pub watch: u64,
    pub indicator_id: String,
    pub at_micros: i64,
    /// Opaque to storage.
    pub payload: Vec<u8>,
}

/// A stored alert; `sequence` is its cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    pub sequence: u64,
    pub agency: String,
    pub watch: u64,
    pub indicator_id: String,
    pub at_micros: i64,
    pub payload: Vec<u8>,
}

/// How far alerts have been raised: every watch numbered up to `watches` has been checked
/// against the feed up to `feed`, and every watch checks each later indicator as it comes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlertCursors {
    pub feed: u64,
    pub watches: u64,
}
