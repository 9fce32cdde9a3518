//! The oversight figures and their suppression: aggregate counts only, and no count small
//! enough to single out an indicator.
//!
//! Each breakdown (by kind, by TLP, by month...) is a list of labelled counts. A count below
//! the threshold (`[oversight] suppress_below`, default 5) is suppressed: published as `null`
//! with `"suppressed": true`. Breakdowns of the same indicators share a total, so one
//! suppressed cell could be recovered by subtraction; within each breakdown, further cells
//! (the smallest first) are suppressed until the suppressed cells together reach the
//! threshold, or all are.

use std::collections::BTreeMap;

use serde::Serialize;

/// One labelled count; `count` is `None` when suppressed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cell {
    pub label: String,
    pub count: Option<u64>,
    pub suppressed: bool,
}

/// `counts` (labels with a count above zero) as cells, in label order, suppressed as the
/// module says.
pub fn suppress(counts: &BTreeMap<String, u64>, below: u64) -> Vec<Cell> {
    let mut hidden: Vec<bool> = counts.values().map(|&count| count < below).collect();
    let values: Vec<u64> = counts.values().copied().collect();
    let hidden_sum = |hidden: &[bool]| -> u64 {
        values
            .iter()
            .zip(hidden)
            .filter(|(_, hidden)| **hidden)
            .map(|(count, _)| count)
            .sum()
    };
    while hidden.iter().any(|hidden| *hidden) && hidden_sum(&hidden) < below {
        let next = (0..values.len())
            .filter(|&index| !hidden[index])
            .min_by_key(|&index| values[index]);
        match next {
            Some(index) => hidden[index] = true,
            None => break,
        }
    }
    counts
        .iter()
        .zip(hidden)
        .map(|((label, &count), hidden)| Cell {
            label: label.clone(),
            count: (!hidden).then_some(count),
            suppressed: hidden,
        })
        .collect()
}

/// Indicators of one direction (published here, or received from peers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IndicatorFigures {
    pub by_kind: Vec<Cell>,
    pub by_tlp: Vec<Cell>,
    pub by_month: Vec<Cell>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Indicators {
    pub published: IndicatorFigures,
    pub received: IndicatorFigures,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decisions {
    /// released, released redacted, denied, failed closed.
    pub by_outcome: Vec<Cell>,
    /// own agencies, partner agencies, partner gateways.
    pub by_recipient_class: Vec<Cell>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alerts {
    pub by_month: Vec<Cell>,
}

/// A policy revision and the period in which it made release decisions (days, UTC), from the
/// decision log. The revisions' counts are one breakdown; a suppressed one hides its days too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyRevision {
    pub revision: String,
    pub first_decision: Option<String>,
    pub last_decision: Option<String>,
    pub decisions: Cell,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Checkpoint {
    /// This gateway's origin, or the peer's member id.
    pub log: String,
    pub size: u64,
    /// Base64, as in the signed note.
    pub root: String,
    /// The C2SP signed note, checkable with the gateway's public key.
    pub note: String,
    /// When this gateway checked a peer's checkpoint (RFC 3339); for its own, when signed.
    pub at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoints {
    pub own: Checkpoint,
    pub peers: Vec<Checkpoint>,
}

/// Everything `/oversight` shows and `/oversight.json` serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    pub member: String,
    pub generated_at: String,
    pub suppress_below: u64,
    pub indicators: Indicators,
    pub decisions: Decisions,
    pub alerts: Alerts,
    pub policy_revisions: Vec<PolicyRevision>,
    pub checkpoints: Checkpoints,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs
            .iter()
            .map(|(label, count)| (label.to_string(), *count))
            .collect()
    }

    fn shown(cells: &[Cell]) -> Vec<(&str, Option<u64>)> {
        cells
            .iter()
            .map(|cell| (cell.label.as_str(), cell.count))
            .collect()
    }

    #[test]
    fn counts_at_or_above_the_threshold_are_shown() {
        let cells = suppress(&counts(&[("vessel", 5), ("broker", 12)]), 5);
        assert_eq!(shown(&cells), [("broker", Some(12)), ("vessel", Some(5))]);
        assert!(cells.iter().all(|cell| !cell.suppressed));
    }

    #[test]
    fn a_small_count_is_suppressed_with_the_next_smallest() {
        let cells = suppress(&counts(&[("vessel", 9), ("broker", 12), ("ip", 1)]), 5);
        assert_eq!(
            shown(&cells),
            [("broker", Some(12)), ("ip", None), ("vessel", None)],
            "one suppressed cell alone could be recovered from the total"
        );
        assert!(cells[1].suppressed && cells[2].suppressed && !cells[0].suppressed);
    }

    #[test]
    fn suppressed_cells_that_reach_the_threshold_together_are_enough() {
        let cells = suppress(&counts(&[("a", 3), ("b", 2), ("c", 40)]), 5);
        assert_eq!(shown(&cells), [("a", None), ("b", None), ("c", Some(40))]);
    }

    #[test]
    fn when_everything_is_small_everything_is_suppressed() {
        let cells = suppress(&counts(&[("a", 1), ("b", 2)]), 5);
        assert!(
            cells
                .iter()
                .all(|cell| cell.suppressed && cell.count.is_none())
        );
        assert!(suppress(&counts(&[]), 5).is_empty());
    }

    #[test]
    fn a_threshold_of_one_suppresses_nothing() {
        let cells = suppress(&counts(&[("a", 1), ("b", 2)]), 1);
        assert_eq!(shown(&cells), [("a", Some(1)), ("b", Some(2))]);
    }
}
