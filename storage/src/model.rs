//! The feed's data as storage sees it: indicators to publish, events and indicators read back.

/// An indicator to publish. `payload` is opaque to storage (the gateway's encoding).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIndicator {
    pub id: String,
    pub originator: String,
    pub kind: String,
    /// Unix time in microseconds; becomes the `at_micros` of the `published` event.
    pub created_micros: i64,
    pub payload: Vec<u8>,
}

/// One page of the feed, as returned by [`crate::Store::read_after`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventBatch {
    pub events: Vec<StoredEvent>,
    /// Everything `<= scanned_to` has been seen (returned or filtered out), so a subscriber may
    /// advance its cursor here even past events it will not receive. Never below the `after`
    /// that was asked for, and never past an event that is not yet committed.
    pub scanned_to: u64,
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
