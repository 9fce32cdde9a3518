//! The compact form of the decision log: the decisions of one write are stored as one batch
//! row (their fields encoded once, each distinct string once), with one narrow key row per
//! indicator and per recipient the batch names, so that a write of a page's decisions for ten
//! recipients stores one batch and about one key row per event, not ten decision rows of four
//! index entries each. Pure: no SQL here (`super` runs the statements).
//!
//! Reads still answer per decision, in the keyset order `(at_micros, decision_id)`: batches are
//! read in the order of their first decision's time, and a batch never spans more than
//! [`BATCH_SPAN_MICROS`], so a read that starts at time `t` need not look at batches that
//! start before `t - BATCH_SPAN_MICROS`, and can stop at the first batch that starts after
//! the last decision it will return ([`Page`]).

use std::collections::{BTreeMap, BinaryHeap, HashMap};

use serde::{Deserialize, Serialize};

use crate::error::StorageError;
use crate::model::{DecisionQuery, DecisionRow};

/// The longest time between the first and the last decision of one batch. A write whose
/// decisions span more is stored as several batches (under the same audit entry).
pub(crate) const BATCH_SPAN_MICROS: i64 = 600_000_000;

/// The body's format; a reader refuses any other as corrupt.
const FORMAT: u8 = 1;

/// Key rows name an indicator or a recipient of the batch.
pub(crate) fn indicator_key(indicator_id: &str) -> String {
    format!("i:{indicator_id}")
}

pub(crate) fn recipient_key(recipient: &str) -> String {
    format!("r:{recipient}")
}

#[derive(Serialize, Deserialize)]
struct Body {
    format: u8,
    /// Every distinct string of the batch once; the decisions name them by index.
    strings: Vec<String>,
    /// Every distinct list of strings (redactions, reasons) once, as indexes into `strings`.
    lists: Vec<Vec<u32>>,
    /// Fixed-size, so that decoding them allocates only the one vector; a read builds rows
    /// (with their strings) only for those it returns.
    decisions: Vec<Packed>,
}

#[derive(Serialize, Deserialize)]
enum PackedId {
    /// A UUID in its lower-case hyphenated form, as the gateway makes them.
    Uuid([u8; 16]),
    /// Any other text (an index into the strings).
    Text(u32),
}

#[derive(Serialize, Deserialize)]
struct Packed {
    id: PackedId,
    at_micros: i64,
    recipient: u32,
    indicator: u32,
    channel: u32,
    revision: u32,
    allow: bool,
    /// Indexes into the lists.
    redact: u32,
    reasons: u32,
    error: Option<u32>,
}

/// Each distinct value once, numbered in the order first seen (the batch's strings, and its
/// lists of strings).
struct Interned<T> {
    index: HashMap<T, u32>,
    list: Vec<T>,
}

impl<T> Default for Interned<T> {
    fn default() -> Self {
        Interned {
            index: HashMap::new(),
            list: Vec::new(),
        }
    }
}

impl<T: std::hash::Hash + Eq + Clone> Interned<T> {
    fn of(&mut self, value: T) -> u32 {
        if let Some(&index) = self.index.get(&value) {
            return index;
        }
        // A batch holds far fewer than 2^32 values (a write is bounded in rows).
        let index = self.list.len() as u32;
        self.list.push(value.clone());
        self.index.insert(value, index);
        index
    }
}

fn uuid_of(id: &str) -> Option<[u8; 16]> {
    let uuid = uuid::Uuid::try_parse(id).ok()?;
    let mut buffer = uuid::Uuid::encode_buffer();
    (uuid.hyphenated().encode_lower(&mut buffer) == id).then(|| *uuid.as_bytes())
}

/// One batch ready to store: its body and what its rows index.
pub(crate) struct Batch {
    pub first_micros: i64,
    pub last_micros: i64,
    pub decisions: i64,
    pub body: Vec<u8>,
    /// Its key rows ([`indicator_key`], [`recipient_key`]), each once, sorted.
    pub keys: Vec<String>,
}

/// The decisions of one write as batches: in time order, a new batch whenever the span would
/// pass [`BATCH_SPAN_MICROS`].
pub(crate) fn batches(rows: &[DecisionRow]) -> Result<Vec<Batch>, StorageError> {
    let mut sorted: Vec<&DecisionRow> = rows.iter().collect();
    sorted.sort_by_key(|row| row.at_micros);
    let mut batches = Vec::new();
    let mut start = 0;
    for end in 1..=sorted.len() {
        let split = end == sorted.len()
            || i128::from(sorted[end].at_micros) - i128::from(sorted[start].at_micros)
                > i128::from(BATCH_SPAN_MICROS);
        if split {
            batches.push(encode(&sorted[start..end])?);
            start = end;
        }
    }
    Ok(batches)
}

fn encode(rows: &[&DecisionRow]) -> Result<Batch, StorageError> {
    let mut strings: Interned<&str> = Interned::default();
    let mut lists: Interned<Vec<u32>> = Interned::default();
    let mut decisions = Vec::with_capacity(rows.len());
    for row in rows {
        let id = match uuid_of(&row.decision_id) {
            Some(bytes) => PackedId::Uuid(bytes),
            None => PackedId::Text(strings.of(&row.decision_id)),
        };
        let packed = Packed {
            id,
            at_micros: row.at_micros,
            recipient: strings.of(&row.recipient),
            indicator: strings.of(&row.indicator_id),
            channel: strings.of(&row.channel),
            revision: strings.of(&row.policy_revision),
            allow: row.allow,
            redact: lists.of(row.redact.iter().map(|path| strings.of(path)).collect()),
            reasons: lists.of(row
                .reasons
                .iter()
                .map(|reason| strings.of(reason))
                .collect()),
            error: row.error.as_deref().map(|error| strings.of(error)),
        };
        decisions.push(packed);
    }
    let keys = keys_of(rows.iter().copied());
    let body = Body {
        format: FORMAT,
        strings: strings.list.iter().map(|text| (*text).to_owned()).collect(),
        lists: lists.list,
        decisions,
    };
    let body = postcard::to_allocvec(&body).map_err(|error| {
        StorageError::Database(format!("record decisions: encode a batch: {error}"))
    })?;
    Ok(Batch {
        first_micros: rows.first().map_or(0, |row| row.at_micros),
        last_micros: rows.last().map_or(0, |row| row.at_micros),
        decisions: rows.len() as i64,
        body,
        keys,
    })
}

/// The key rows of a batch of `rows`: each indicator and recipient once, sorted.
pub(crate) fn keys_of<'a>(rows: impl IntoIterator<Item = &'a DecisionRow>) -> Vec<String> {
    let mut keys = Vec::new();
    for row in rows {
        keys.push(indicator_key(&row.indicator_id));
        keys.push(recipient_key(&row.recipient));
    }
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The decisions of a stored batch, in the order they were written.
pub(crate) fn decode(batch_id: i64, body: &[u8]) -> Result<Vec<DecisionRow>, StorageError> {
    decode_where(batch_id, body, None, None)
}

/// The decisions of a stored batch for `recipient` and on `indicator_id` (each when set), in
/// the order they were written; only those are built.
pub(crate) fn decode_where(
    batch_id: i64,
    body: &[u8],
    recipient: Option<&str>,
    indicator_id: Option<&str>,
) -> Result<Vec<DecisionRow>, StorageError> {
    let corrupt = |why: String| StorageError::corrupt(format!("decision batch {batch_id} {why}"));
    let body: Body =
        postcard::from_bytes(body).map_err(|error| corrupt(format!("does not decode: {error}")))?;
    if body.format != FORMAT {
        return Err(corrupt(format!("has format {}, not {FORMAT}", body.format)));
    }
    // A wanted string that the batch does not hold: no decision of it either.
    let index_of = |wanted: Option<&str>| -> Option<Option<u32>> {
        match wanted {
            None => Some(None),
            Some(wanted) => body
                .strings
                .iter()
                .position(|text| text == wanted)
                .map(|index| Some(index as u32)),
        }
    };
    let (Some(recipient), Some(indicator)) = (index_of(recipient), index_of(indicator_id)) else {
        return Ok(Vec::new());
    };
    let text = |index: u32| -> Result<String, StorageError> {
        body.strings
            .get(index as usize)
            .cloned()
            .ok_or_else(|| corrupt(format!("names string {index} of {}", body.strings.len())))
    };
    let list = |index: u32| -> Result<Vec<String>, StorageError> {
        body.lists
            .get(index as usize)
            .ok_or_else(|| corrupt(format!("names list {index} of {}", body.lists.len())))?
            .iter()
            .map(|&index| text(index))
            .collect()
    };
    body.decisions
        .iter()
        .filter(|packed| {
            recipient.is_none_or(|index| packed.recipient == index)
                && indicator.is_none_or(|index| packed.indicator == index)
        })
        .map(|packed| {
            Ok(DecisionRow {
                decision_id: match &packed.id {
                    PackedId::Uuid(bytes) => {
                        uuid::Uuid::from_bytes(*bytes).hyphenated().to_string()
                    }
                    PackedId::Text(index) => text(*index)?,
                },
                at_micros: packed.at_micros,
                recipient: text(packed.recipient)?,
                indicator_id: text(packed.indicator)?,
                channel: text(packed.channel)?,
                policy_revision: text(packed.revision)?,
                allow: packed.allow,
                redact: list(packed.redact)?,
                reasons: list(packed.reasons)?,
                error: packed.error.map(text).transpose()?,
            })
        })
        .collect()
}

/// A decision's place in the keyset order.
fn order_key(row: &DecisionRow) -> (i64, &[u8]) {
    (row.at_micros, row.decision_id.as_bytes())
}

/// Whether `row` passes every filter of `query`, its cursor included.
pub(crate) fn matches(query: &DecisionQuery, row: &DecisionRow) -> bool {
    query
        .indicator_id
        .as_ref()
        .is_none_or(|id| *id == row.indicator_id)
        && query
            .recipient
            .as_ref()
            .is_none_or(|recipient| *recipient == row.recipient)
        && query
            .since_micros
            .is_none_or(|since| row.at_micros >= since)
        && query
            .after_decision
            .as_ref()
            .is_none_or(|(at, id)| order_key(row) > (*at, id.as_bytes()))
}

/// Where a read of batches starts: batches that start earlier end before any decision the
/// query can return.
pub(crate) fn scan_from(query: &DecisionQuery) -> i64 {
    let lower = match (query.since_micros, &query.after_decision) {
        (Some(since), Some((at, _))) => Some(since.max(*at)),
        (Some(since), None) => Some(since),
        (None, Some((at, _))) => Some(*at),
        (None, None) => None,
    };
    lower.map_or(i64::MIN, |at| at.saturating_sub(BATCH_SPAN_MICROS))
}

/// A heap entry ordered by the keyset order.
struct Ordered(DecisionRow);

impl PartialEq for Ordered {
    fn eq(&self, other: &Self) -> bool {
        order_key(&self.0) == order_key(&other.0)
    }
}
impl Eq for Ordered {}
impl PartialOrd for Ordered {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ordered {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        order_key(&self.0).cmp(&order_key(&other.0))
    }
}

/// The first `limit` decisions (in the keyset order) that match a query, gathered from
/// batches offered in the order of their first decision's time.
pub(crate) struct Page<'q> {
    query: &'q DecisionQuery,
    limit: usize,
    /// The `limit` smallest so far, the largest on top.
    kept: BinaryHeap<Ordered>,
}

impl<'q> Page<'q> {
    pub(crate) fn new(query: &'q DecisionQuery, limit: usize) -> Page<'q> {
        Page {
            query,
            limit,
            kept: BinaryHeap::with_capacity(limit.min(1024) + 1),
        }
    }

    /// Whether a batch that starts at `first_micros` (and every later one) can still hold a
    /// decision of the page.
    pub(crate) fn wants(&self, first_micros: i64) -> bool {
        self.limit > 0
            && (self.kept.len() < self.limit
                || self
                    .kept
                    .peek()
                    .is_some_and(|largest| first_micros <= largest.0.at_micros))
    }

    /// Offers decisions (in any order).
    pub(crate) fn offer(&mut self, rows: Vec<DecisionRow>) {
        for row in rows {
            if !matches(self.query, &row) {
                continue;
            }
            if self.kept.len() < self.limit {
                self.kept.push(Ordered(row));
            } else if let Some(largest) = self.kept.peek()
                && order_key(&row) < order_key(&largest.0)
            {
                self.kept.pop();
                self.kept.push(Ordered(row));
            }
        }
    }

    /// The page, in the keyset order.
    pub(crate) fn into_rows(self) -> Vec<DecisionRow> {
        self.kept
            .into_sorted_vec()
            .into_iter()
            .map(|Ordered(row)| row)
            .collect()
    }
}

/// The oversight page's counts of a batch's decisions: per recipient, channel, revision and
/// outcome, the number with its first and last time.
pub(crate) type GroupKey = (String, String, String, bool, bool, bool);

pub(crate) fn group_counts<'a>(
    rows: impl IntoIterator<Item = &'a DecisionRow>,
) -> BTreeMap<GroupKey, (i64, i64, i64)> {
    let mut groups: BTreeMap<GroupKey, (i64, i64, i64)> = BTreeMap::new();
    for row in rows {
        let key = (
            row.recipient.clone(),
            row.channel.clone(),
            row.policy_revision.clone(),
            row.allow,
            !row.redact.is_empty(),
            row.error.is_some(),
        );
        let entry = groups
            .entry(key)
            .or_insert((0, row.at_micros, row.at_micros));
        entry.0 += 1;
        entry.1 = entry.1.min(row.at_micros);
        entry.2 = entry.2.max(row.at_micros);
    }
    groups
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn row(id: &str, at_micros: i64, recipient: &str, indicator_id: &str) -> DecisionRow {
        DecisionRow {
            decision_id: id.to_owned(),
            at_micros,
            recipient: recipient.to_owned(),
            indicator_id: indicator_id.to_owned(),
            channel: "subscribe".to_owned(),
            policy_revision: "sha256:ab".to_owned(),
            allow: true,
            redact: vec!["source".to_owned()],
            reasons: vec!["ok".to_owned(), "source".to_owned()],
            error: None,
        }
    }

    #[test]
    fn a_batch_reads_back_every_field() {
        let rows = vec![
            row("0196f1a2-0000-7000-8000-0000000000a1", 5, "NG", "i-1"),
            DecisionRow {
                allow: false,
                redact: Vec::new(),
                reasons: vec![String::new(), "é 🦀 \0".to_owned()],
                error: Some("timed out".to_owned()),
                ..row("not a uuid", i64::MIN, "", "")
            },
            // Upper-case: kept as text, so it reads back as written.
            row(
                "0196F1A2-0000-7000-8000-0000000000A1",
                i64::MIN + 1,
                "SN",
                "i-1",
            ),
        ];
        let batches = batches(&rows).expect("encode");
        let read: Vec<DecisionRow> = batches
            .iter()
            .flat_map(|batch| decode(1, &batch.body).expect("decode"))
            .collect();
        let mut expected = rows.clone();
        expected.sort_by_key(|row| row.at_micros);
        assert_eq!(read, expected);
    }

    #[test]
    fn a_filtered_read_builds_only_the_decisions_asked_for() {
        let rows = vec![
            row("a", 1, "NG", "i-1"),
            row("b", 2, "SN", "i-1"),
            row("c", 3, "NG", "i-2"),
            row("d", 4, "NG", "i-1"),
        ];
        let body = batches(&rows).expect("encode").remove(0).body;
        let ids = |recipient: Option<&str>, indicator: Option<&str>| -> Vec<String> {
            decode_where(1, &body, recipient, indicator)
                .expect("decode")
                .into_iter()
                .map(|row| row.decision_id)
                .collect()
        };
        assert_eq!(ids(None, None), ["a", "b", "c", "d"]);
        assert_eq!(ids(Some("NG"), None), ["a", "c", "d"]);
        assert_eq!(ids(Some("NG"), Some("i-1")), ["a", "d"]);
        assert_eq!(ids(None, Some("i-2")), ["c"]);
        assert_eq!(
            ids(Some("GH"), None),
            Vec::<String>::new(),
            "not in the batch"
        );
        // A string the batch holds, but not as a recipient.
        assert_eq!(ids(Some("i-1"), None), Vec::<String>::new());
    }

    #[test]
    fn a_batch_spans_at_most_ten_minutes() {
        let rows: Vec<DecisionRow> = [0, BATCH_SPAN_MICROS, BATCH_SPAN_MICROS + 1, i64::MAX]
            .iter()
            .enumerate()
            .map(|(n, &at)| row(&format!("d{n}"), at, "NG", "i"))
            .collect();
        let batches = batches(&rows).expect("encode");
        let spans: Vec<(i64, i64, i64)> = batches
            .iter()
            .map(|batch| (batch.first_micros, batch.last_micros, batch.decisions))
            .collect();
        assert_eq!(
            spans,
            [
                (0, BATCH_SPAN_MICROS, 2),
                (BATCH_SPAN_MICROS + 1, BATCH_SPAN_MICROS + 1, 1),
                (i64::MAX, i64::MAX, 1)
            ]
        );
        assert_eq!(batches[0].keys, ["i:i", "r:NG"]);
    }

    #[test]
    fn a_damaged_batch_is_corrupt_not_a_panic() {
        let body = batches(&[row("d", 1, "NG", "i")]).expect("encode")[0]
            .body
            .clone();
        for cut in 0..body.len() {
            assert!(decode(7, &body[..cut]).is_err(), "cut at {cut}");
        }
        let mut other = body.clone();
        other[0] = FORMAT + 1;
        assert!(matches!(
            decode(7, &other),
            Err(StorageError::Database(message)) if message.contains("decision batch 7 has format")
        ));
    }

    /// Decisions at times drawn from a small range (many ties), spread over batches written
    /// in any order; a query with any filters and cursor.
    fn scenario() -> impl Strategy<Value = (Vec<Vec<DecisionRow>>, DecisionQuery)> {
        let decision = (0u8..40, -3i64..12, 0u8..3, 0u8..3);
        let write = proptest::collection::vec(decision, 1..12);
        let writes = proptest::collection::vec(write, 0..8);
        let query = (
            proptest::option::of(0u8..3),
            proptest::option::of(0u8..3),
            proptest::option::of(-3i64..12),
            proptest::option::of((-3i64..12, 0u8..40)),
            0usize..10,
        );
        (writes, query).prop_map(|(writes, (indicator, recipient, since, after, limit))| {
            let mut number = 0;
            let writes = writes
                .into_iter()
                .map(|write| {
                    write
                        .into_iter()
                        .map(|(id, at, recipient, indicator)| {
                            number += 1;
                            // Unique ids, ordered unlike their times.
                            let id = format!("{id:02}-{number:03}");
                            row(
                                &id,
                                at * 100_000_000,
                                &format!("R{recipient}"),
                                &format!("I{indicator}"),
                            )
                        })
                        .collect()
                })
                .collect();
            let query = DecisionQuery {
                indicator_id: indicator.map(|n| format!("I{n}")),
                recipient: recipient.map(|n| format!("R{n}")),
                since_micros: since.map(|at| at * 100_000_000),
                after_decision: after.map(|(at, id)| (at * 100_000_000, format!("{id:02}"))),
                limit: limit as u32,
            };
            (writes, query)
        })
    }

    proptest! {
        /// Reading batches as the stores do (from `scan_from`, in the order of their first
        /// time, stopping when `wants` says no) gives exactly the first `limit` matching
        /// decisions in the keyset order.
        #[test]
        fn a_page_of_batches_is_the_page_of_decisions((writes, query) in scenario()) {
            let mut stored: Vec<(i64, usize, Vec<DecisionRow>)> = Vec::new();
            for write in &writes {
                for batch in batches(write).expect("encode") {
                    let rows = decode(1, &batch.body).expect("decode");
                    stored.push((batch.first_micros, stored.len(), rows));
                }
            }
            stored.sort_by_key(|(first, id, _)| (*first, *id));
            let mut page = Page::new(&query, query.limit as usize);
            for (first, _, rows) in stored.into_iter().filter(|(first, ..)| *first >= scan_from(&query)) {
                if !page.wants(first) {
                    break;
                }
                page.offer(rows);
            }
            let mut expected: Vec<DecisionRow> = writes
                .into_iter()
                .flatten()
                .filter(|row| matches(&query, row))
                .collect();
            expected.sort_by(|a, b| order_key(a).cmp(&order_key(b)));
            expected.truncate(query.limit as usize);
            prop_assert_eq!(page.into_rows(), expected);
        }
    }
}
