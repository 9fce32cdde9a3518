//! The feed's data as storage sees it: indicators to publish or receive from a peer, events and
//! indicators read back, and the cursors kept on peers' feeds.

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
}

/// One release decision of the sharing policy, as the decision log stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRow {
    /// A UUID made by the gateway; the primary key. Compared bytewise in the keyset order.
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
