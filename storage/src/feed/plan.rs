//! What a feed write will do, worked out before it touches the database: duplicates,
//! conflicts, revisions and retractions of a page, the sequences they take, and the shapes
//! rows are read into.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::error::StorageError;
use crate::model::{
    EventBatch, EventBody, NewIndicator, PeerCursor, ReceiveOutcome, Received, StoredEvent,
    StoredIndicator,
};
use crate::values::sequence_from_database;

/// Sorted and without repeats, so that the same filter always produces the same SQL text and
/// hits the prepared-statement cache.
pub(super) fn distinct_kinds(kinds: &[String]) -> Vec<&str> {
    let mut distinct: Vec<&str> = kinds.iter().map(String::as_str).collect();
    distinct.sort_unstable();
    distinct.dedup();
    distinct
}

pub(super) fn reject_duplicates_within(batch: &[NewIndicator]) -> Result<(), StorageError> {
    let mut seen = HashSet::with_capacity(batch.len());
    for item in batch {
        if !seen.insert(item.id.as_str()) {
            return Err(StorageError::Duplicate {
                id: item.id.clone(),
            });
        }
    }
    Ok(())
}

/// The first id of the batch that the indicator insert skipped, in batch order.
pub(super) fn first_skipped_id(batch: &[NewIndicator], stored_ids: &[String]) -> String {
    let stored: HashSet<&str> = stored_ids.iter().map(String::as_str).collect();
    batch
        .iter()
        .find(|item| !stored.contains(item.id.as_str()))
        .map(|item| item.id.clone())
        .unwrap_or_default()
}

/// A full batch may stop before the head, so the cursor can only move to its last event;
/// otherwise everything up to the head the query saw has been scanned.
pub(super) fn batch_scanned_to(
    after: u64,
    limit: u32,
    head: u64,
    events: Vec<StoredEvent>,
) -> EventBatch {
    let full = events.len() >= limit as usize;
    let scanned_to = match events.last() {
        Some(last) if full => last.sequence,
        _ => head,
    };
    EventBatch {
        events,
        scanned_to: scanned_to.max(after),
        head,
    }
}

/// One row of [`read_after_sql`]: the feed's head, or an event.
pub(super) enum ReadRow {
    Head(i64),
    Event(EventColumns),
}

/// The columns of one event row, as read by [`read_after_sql`].
pub(super) struct EventColumns {
    pub(super) sequence: i64,
    pub(super) event_type: String,
    pub(super) kind: String,
    pub(super) indicator_id: String,
    pub(super) originator: String,
    pub(super) payload: Option<Vec<u8>>,
    pub(super) reason: Option<String>,
    pub(super) at_micros: i64,
    pub(super) signature: Option<Vec<u8>>,
}

impl EventColumns {
    pub(super) fn into_event(self) -> Result<StoredEvent, StorageError> {
        let sequence = sequence_from_database(self.sequence, "event sequence")?;
        let body = match (self.event_type.as_str(), self.payload, self.reason) {
            ("published", Some(payload), _) => EventBody::Published {
                indicator_id: self.indicator_id,
                originator: self.originator,
                payload,
            },
            ("retracted", _, Some(reason)) => EventBody::Retracted {
                indicator_id: self.indicator_id,
                originator: self.originator,
                reason,
                signature: self.signature,
            },
            (event_type, _, _) => {
                return Err(StorageError::corrupt(format!(
                    "event {sequence} has unknown event type {event_type:?} or lacks its payload or reason"
                )));
            }
        };
        Ok(StoredEvent {
            sequence,
            at_micros: self.at_micros,
            kind: self.kind,
            body,
        })
    }
}

/// One indicator to mark superseded: `old`, if of `originator`, by `new`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Supersede<'a> {
    pub(super) old: &'a str,
    pub(super) originator: &'a str,
    pub(super) new: &'a str,
}

impl<'a> Supersede<'a> {
    pub(super) fn of(item: &'a NewIndicator) -> Option<Supersede<'a>> {
        item.supersedes.as_deref().map(|old| Supersede {
            old,
            originator: &item.originator,
            new: &item.id,
        })
    }
}

/// The last revision of each `(old id, originator)`, as if each were applied in order: the
/// latest revision wins. (At most one originator of an old id is its own, so only that one's
/// last revision can mark it.)
pub(super) fn latest_supersedes<'a>(
    revisions: impl IntoIterator<Item = Supersede<'a>>,
) -> Vec<Supersede<'a>> {
    let revisions: Vec<Supersede<'a>> = revisions.into_iter().collect();
    let mut seen = HashSet::with_capacity(revisions.len());
    let mut latest: Vec<Supersede<'a>> = revisions
        .into_iter()
        .rev()
        .filter(|revision| seen.insert((revision.old, revision.originator)))
        .collect();
    latest.reverse();
    latest
}

/// What planning a receive needs to know of an indicator that is stored (or stored earlier in
/// the same receive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct KnownIndicator {
    pub(super) originator: String,
    pub(super) kind: String,
    pub(super) retracted: bool,
    /// The stored payload: another copy under the same id is a duplicate only if identical.
    pub(super) payload: Vec<u8>,
}

/// A `retracted` event that a receive appends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PlannedRetraction<'a> {
    pub(super) sequence: i64,
    pub(super) kind: String,
    pub(super) indicator_id: &'a str,
    pub(super) originator: &'a str,
    pub(super) reason: &'a str,
    pub(super) at_micros: i64,
    pub(super) signature: Option<&'a [u8]>,
}

/// The writes of one receive, decided in item order against what was stored when the head was
/// locked (nothing else writes indicators until the commit).
#[derive(Debug)]
pub(super) struct ReceivePlan<'a> {
    /// The published items to store, with their sequences.
    pub(super) published: Vec<(i64, &'a NewIndicator)>,
    /// Each applies to an indicator of its originator stored before its item.
    pub(super) supersedes: Vec<Supersede<'a>>,
    pub(super) retractions: Vec<PlannedRetraction<'a>>,
    pub(super) outcome: ReceiveOutcome,
    /// The head after the receive: the last sequence used, or the locked head if none.
    pub(super) head: i64,
}

/// Adds the ids whose stored state storing `indicator` depends on: its own and the one it
/// supersedes.
pub(super) fn insert_published_ids<'a>(ids: &mut BTreeSet<&'a str>, indicator: &'a NewIndicator) {
    ids.insert(indicator.id.as_str());
    if let Some(old) = &indicator.supersedes {
        ids.insert(old.as_str());
    }
}

/// Every id whose stored state a receive of `items` depends on, without repeats.
pub(super) fn referenced_ids(items: &[Received]) -> Vec<&str> {
    let mut ids = BTreeSet::new();
    for item in items {
        match item {
            Received::Published(indicator) => insert_published_ids(&mut ids, indicator),
            Received::Retracted { indicator_id, .. } => {
                ids.insert(indicator_id.as_str());
            }
        }
    }
    ids.into_iter().collect()
}

/// Every id whose stored state storing the indicators of a circle write depends on, without
/// repeats.
pub(super) fn circle_referenced_ids(indicators: &[NewIndicator]) -> Vec<&str> {
    let mut ids = BTreeSet::new();
    for indicator in indicators {
        insert_published_ids(&mut ids, indicator);
    }
    ids.into_iter().collect()
}

impl<'a> ReceivePlan<'a> {
    pub(super) fn new(head: i64) -> ReceivePlan<'a> {
        ReceivePlan {
            published: Vec::new(),
            supersedes: Vec::new(),
            retractions: Vec::new(),
            outcome: ReceiveOutcome::default(),
            head,
        }
    }

    /// Applies one published item to `known`: skipped as a duplicate or a conflict if its id is
    /// held, otherwise stored with the next sequence, marking what it supersedes if that is
    /// held by its originator.
    pub(super) fn publish(
        &mut self,
        indicator: &'a NewIndicator,
        known: &mut HashMap<String, KnownIndicator>,
    ) -> Result<(), StorageError> {
        if let Some(held) = known.get(&indicator.id) {
            // The same indicator by another path, or a different one under its id.
            if held.originator == indicator.originator
                && (held.payload == indicator.payload
                    || same_indicator(&held.payload, &indicator.payload))
            {
                self.outcome.duplicates.push(indicator.id.clone());
            } else {
                self.outcome.conflicts.push(indicator.id.clone());
            }
            return Ok(());
        }
        let (sequence, stored_sequence) = self.next_sequence()?;
        known.insert(
            indicator.id.clone(),
            KnownIndicator {
                originator: indicator.originator.clone(),
                kind: indicator.kind.clone(),
                retracted: false,
                payload: indicator.payload.clone(),
            },
        );
        self.published.push((sequence, indicator));
        self.outcome
            .stored
            .push((indicator.id.clone(), stored_sequence));
        if let Some(revision) = Supersede::of(indicator)
            && revision.old != revision.new
            && known
                .get(revision.old)
                .is_some_and(|old| old.originator == revision.originator)
        {
            self.supersedes.push(revision);
        }
        Ok(())
    }

    /// The next sequence after the ones this plan already used.
    pub(super) fn next_sequence(&mut self) -> Result<(i64, u64), StorageError> {
        self.head = self
            .head
            .checked_add(1)
            .ok_or_else(|| StorageError::corrupt("feed head at its maximum".to_owned()))?;
        Ok((self.head, sequence_from_database(self.head, "feed head")?))
    }
}

/// Applies `items` in order to `known` (the stored state of [`referenced_ids`]), handing out
/// sequences after `head`. An item sees the items before it.
pub(super) fn plan_receive(
    items: &[Received],
    mut known: HashMap<String, KnownIndicator>,
    head: i64,
) -> Result<ReceivePlan<'_>, StorageError> {
    let mut plan = ReceivePlan::new(head);
    for item in items {
        match item {
            Received::Published(indicator) => plan.publish(indicator, &mut known)?,
            Received::Retracted {
                indicator_id,
                originator,
                reason,
                at_micros,
                signature,
            } => {
                let Some(target) = known
                    .get_mut(indicator_id)
                    .filter(|target| target.originator == *originator && !target.retracted)
                else {
                    plan.outcome.ignored_retractions.push(indicator_id.clone());
                    continue;
                };
                target.retracted = true;
                let kind = target.kind.clone();
                let (sequence, stored_sequence) = plan.next_sequence()?;
                plan.retractions.push(PlannedRetraction {
                    sequence,
                    kind,
                    indicator_id,
                    originator,
                    reason,
                    at_micros: *at_micros,
                    signature: signature.as_deref(),
                });
                plan.outcome
                    .retracted
                    .push((indicator_id.clone(), stored_sequence));
            }
        }
    }
    Ok(plan)
}

/// Applies the indicators of a circle write in order to `known` (the stored state of
/// [`circle_referenced_ids`]), as [`plan_receive`] applies published items.
pub(super) fn plan_circle_indicators(
    indicators: &[NewIndicator],
    mut known: HashMap<String, KnownIndicator>,
    head: i64,
) -> Result<ReceivePlan<'_>, StorageError> {
    let mut plan = ReceivePlan::new(head);
    for indicator in indicators {
        plan.publish(indicator, &mut known)?;
    }
    Ok(plan)
}

/// A writer (`action`: "receive", "circle write") found the database other than it planned for,
/// which only a writer that skipped the feed head lock could cause. It is rolled back rather
/// than half applied.
pub(super) fn unplanned_change(action: &str, what: String) -> StorageError {
    StorageError::corrupt(format!(
        "{action} rolled back: {what}, so something wrote the feed without locking its head"
    ))
}

/// The columns of `SELECT_INDICATOR`, in order.
pub(super) type IndicatorColumns = (
    String,
    String,
    String,
    Vec<u8>,
    i64,
    bool,
    Option<String>,
    Option<String>,
    Option<String>,
);

pub(super) fn stored_indicator(columns: IndicatorColumns) -> Result<StoredIndicator, StorageError> {
    let (id, originator, kind, payload, sequence, retracted, via, superseded_by, circle) = columns;
    Ok(StoredIndicator {
        id,
        originator,
        kind,
        payload,
        sequence: sequence_from_database(sequence, "indicator sequence")?,
        retracted,
        via,
        superseded_by,
        circle,
    })
}

/// A row of `SELECT_PEER_CURSORS`: peer, cursor, time of the latest receive.
pub(super) fn peer_cursor_of(
    (peer, cursor, updated_micros): (String, i64, i64),
) -> Result<PeerCursor, StorageError> {
    Ok(PeerCursor {
        peer,
        cursor: sequence_from_database(cursor, "peer cursor")?,
        updated_micros,
    })
}

/// Judges whether two different payloads under one id and originator are one indicator
/// disclosed differently (the same originator's signature over the same commitments, fields
/// withheld on one path and not the other). Set once by the gateway, which knows the
/// payload's format; without it only identical payloads are the same indicator.
static SAME_INDICATOR: std::sync::OnceLock<SameIndicator> = std::sync::OnceLock::new();

/// Given a held payload and one that arrived under its id: are they one indicator?
pub type SameIndicator = fn(&[u8], &[u8]) -> bool;

/// Sets how storage tells a copy of a held indicator, disclosed differently, from another
/// indicator under its id (a duplicate, skipped, rather than a conflict). First call wins.
pub fn judge_same_indicator_by(judge: SameIndicator) {
    let _ = SAME_INDICATOR.set(judge);
}

fn same_indicator(held: &[u8], arrived: &[u8]) -> bool {
    SAME_INDICATOR
        .get()
        .is_some_and(|judge| judge(held, arrived))
}
