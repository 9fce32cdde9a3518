//! `cordon policy diff`: what a policy change would do, decision by decision, before it goes
//! live.

use serde::{Deserialize, Serialize};

use crate::{Decision, Policy};

/// One (indicator, recipient) pair to decide under both policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffInput {
    /// The indicator's id, for the report.
    pub indicator: String,
    /// The recipient's id, for the report.
    pub recipient: String,
    /// The full policy input, as the gateway builds it.
    pub input: serde_json::Value,
}

/// How a pair's decision changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Denied before, allowed now.
    NewlyAllowed,
    /// Allowed before, denied now.
    NewlyDenied,
    /// Allowed both times, with different fields redacted.
    RedactionChanged,
    /// Same outcome and redactions, different reasons (or errors): a minor change.
    ReasonsChanged,
}

/// A pair whose decision changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionChange {
    pub indicator: String,
    pub recipient: String,
    pub change: ChangeKind,
    pub old: Decision,
    pub new: Decision,
}

/// Counts over all pairs; `newly_allowed + newly_denied + redaction_changes + reason_changes +
/// unchanged == pairs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffSummary {
    pub pairs: usize,
    pub newly_allowed: usize,
    pub newly_denied: usize,
    pub redaction_changes: usize,
    pub reason_changes: usize,
    /// Identical decisions.
    pub unchanged: usize,
    /// Pairs the old policy could not decide (failed closed).
    pub old_errors: usize,
    /// Pairs the new policy could not decide (failed closed): usually a bug in the change.
    pub new_errors: usize,
}

/// The impact of replacing `old` by `new`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffReport {
    pub old_revision: String,
    pub new_revision: String,
    /// Pairs whose `allow` or `redact` changed, in input order.
    pub changes: Vec<DecisionChange>,
    /// Pairs whose only change is in `reasons` (or in the error of a deny), in input order.
    pub reason_changes: Vec<DecisionChange>,
    pub summary: DiffSummary,
}

/// Decides every pair under both policies (without their caches, which serve live traffic) and
/// reports what changes.
pub fn diff(old: &Policy, new: &Policy, inputs: &[DiffInput]) -> DiffReport {
    diff_with_inputs(old, new, inputs, inputs)
}

/// [`diff`] where each policy gets its own input for a pair (`new_inputs[i]` pairs with
/// `old_inputs[i]`): the gateway builds `input.recipient` from each policy's own data, so a
/// change of a recipient's trust level in `data.json` shows up as the change it is.
///
/// # Panics
/// When the two lists differ in length (a caller bug).
pub fn diff_with_inputs(
    old: &Policy,
    new: &Policy,
    old_inputs: &[DiffInput],
    new_inputs: &[DiffInput],
) -> DiffReport {
    assert_eq!(
        old_inputs.len(),
        new_inputs.len(),
        "one new input per old input"
    );
    let inputs = old_inputs;
    let mut report = DiffReport {
        old_revision: old.revision().to_owned(),
        new_revision: new.revision().to_owned(),
        changes: Vec::new(),
        reason_changes: Vec::new(),
        summary: DiffSummary {
            pairs: inputs.len(),
            ..DiffSummary::default()
        },
    };
    for (pair, new_pair) in inputs.iter().zip(new_inputs) {
        let before = old.decide_uncached(&pair.input);
        let after = new.decide_uncached(&new_pair.input);
        report.summary.old_errors += usize::from(before.error.is_some());
        report.summary.new_errors += usize::from(after.error.is_some());
        let Some(change) = classify(&before, &after) else {
            report.summary.unchanged += 1;
            continue;
        };
        let counter = match change {
            ChangeKind::NewlyAllowed => &mut report.summary.newly_allowed,
            ChangeKind::NewlyDenied => &mut report.summary.newly_denied,
            ChangeKind::RedactionChanged => &mut report.summary.redaction_changes,
            ChangeKind::ReasonsChanged => &mut report.summary.reason_changes,
        };
        *counter += 1;
        let entry = DecisionChange {
            indicator: pair.indicator.clone(),
            recipient: pair.recipient.clone(),
            change,
            old: before,
            new: after,
        };
        if change == ChangeKind::ReasonsChanged {
            report.reason_changes.push(entry);
        } else {
            report.changes.push(entry);
        }
    }
    report
}

fn classify(old: &Decision, new: &Decision) -> Option<ChangeKind> {
    match (old.allow, new.allow) {
        (false, true) => return Some(ChangeKind::NewlyAllowed),
        (true, false) => return Some(ChangeKind::NewlyDenied),
        _ => {}
    }
    // Redactions matter only for what is sent; their order does not.
    if old.allow && sorted(&old.redact) != sorted(&new.redact) {
        return Some(ChangeKind::RedactionChanged);
    }
    (old.reasons != new.reasons || old.error != new.error).then_some(ChangeKind::ReasonsChanged)
}

fn sorted(paths: &[String]) -> Vec<&str> {
    let mut paths: Vec<&str> = paths.iter().map(String::as_str).collect();
    paths.sort_unstable();
    paths.dedup();
    paths
}
