//! One screening: candidates from the index, those the release room lets the agency see, the
//! explained matches, the board's assessment, and the screening stored with its watch.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use cordon_indicator::kind_name;
use cordon_matching::{FieldMatch, Method, Prepared, compare};
use cordon_policy::rego_value::{object, text, to_rego};
use cordon_policy::{Assessment, Policy, RegoValue, RiskContext, risk_input_value};
use cordon_proto::v1::{
    Declaration, Indicator, MatchMethod, RiskLevel, RiskReason, ScreeningMatch, ScreeningResult,
};
use cordon_storage::{ScreeningRow, StoredIndicator};
use prost::Message;
use tonic::Status;

use super::subjects::{declaration_subject, findings, indicator_subject};
use super::{Screening, name_threshold};
use crate::clock::{micros_of, now_micros, now_rfc3339, timestamp_from_micros};
use crate::identity::Identity;
use crate::release::{DecisionRecord, Releaser, channel_for, decision_log};
use crate::status::{invalid_fields, storage_status};

/// How long a screening waits for the candidate index to catch up with the feed (it has
/// everything but the last commits, or it is loading after a start).
const CATCH_UP_PATIENCE: Duration = Duration::from_secs(30);

/// One declaration evaluated: its matches and the board's assessment.
#[derive(Debug, Clone)]
pub(super) struct Evaluation {
    pub matches: Vec<ScreeningMatch>,
    pub assessment: Assessment,
}

/// Declarations evaluated together.
#[derive(Debug)]
pub(super) struct Evaluated {
    pub evaluations: Vec<Evaluation>,
    /// The feed position the candidate index had.
    pub position: u64,
    pub policy_revision: String,
    /// Every release decision the evaluation made.
    pub records: Vec<DecisionRecord>,
    /// The declarations as compared, in order.
    pub subjects: Vec<Prepared>,
}

/// An indicator held here and released to the screening agency, as compared.
struct Held {
    indicator: Indicator,
    subject: Prepared,
}

/// Whether `indicator` is valid at `now` (its `validFrom` passed, its `validUntil` not yet).
pub(super) fn valid_at(indicator: &Indicator, now: i64) -> bool {
    let started = indicator
        .valid_from
        .as_ref()
        .is_none_or(|from| micros_of(from) <= now);
    let ended = indicator
        .valid_until
        .as_ref()
        .is_some_and(|until| micros_of(until) <= now);
    started && !ended
}

fn method_of(method: Method) -> MatchMethod {
    match method {
        Method::Exact => MatchMethod::Exact,
        Method::Normalised => MatchMethod::Normalised,
        Method::Fuzzy => MatchMethod::Fuzzy,
    }
}

pub(super) fn level_of(level: cordon_policy::RiskLevel) -> RiskLevel {
    match level {
        cordon_policy::RiskLevel::Low => RiskLevel::Low,
        cordon_policy::RiskLevel::Medium => RiskLevel::Medium,
        cordon_policy::RiskLevel::High => RiskLevel::High,
        cordon_policy::RiskLevel::Critical => RiskLevel::Critical,
        cordon_policy::RiskLevel::Unassessed => RiskLevel::Unassessed,
    }
}

pub(super) fn reasons_of(assessment: &Assessment) -> Vec<RiskReason> {
    assessment
        .reasons
        .iter()
        .map(|reason| RiskReason {
            flag: reason.flag.clone(),
            weight: reason.weight,
            explanation: reason.explanation.clone(),
        })
        .collect()
}

/// `value` as the risk policy reads it; `null` if it cannot be one (it always can: the
/// messages have string keys only).
fn rego<T: serde::Serialize + ?Sized>(value: &T) -> RegoValue {
    to_rego(value).unwrap_or(RegoValue::Null)
}

/// A match for the result, and as the risk policy reads it.
pub(super) fn explain(found: &FieldMatch, indicator: &Indicator) -> (ScreeningMatch, RegoValue) {
    let kind = kind_name(indicator).unwrap_or("unknown").to_string();
    let method = method_of(found.method);
    let explained = ScreeningMatch {
        declaration_field: found.query_field.clone(),
        value: found.value.clone(),
        indicator_id: indicator.id.clone(),
        kind: kind.clone(),
        indicator_field: found.record_field.clone(),
        method: method as i32,
        similarity: found.similarity,
        tlp: indicator.tlp,
        originator: indicator.originator.clone(),
        feature: found.feature.to_string(),
    };
    let for_policy = object([
        ("declarationField", text(&found.query_field)),
        ("value", text(&found.value)),
        ("indicatorId", text(&indicator.id)),
        ("kind", text(&kind)),
        ("indicatorField", text(&found.record_field)),
        ("method", text(found.method.name())),
        ("similarity", rego(&found.similarity)),
        ("feature", text(found.feature)),
        ("tlp", text(indicator.tlp().as_str_name())),
        ("originator", text(&indicator.originator)),
        ("severity", text(indicator.severity().as_str_name())),
        ("confidence", rego(&indicator.confidence)),
        ("tags", rego(&indicator.tags)),
        ("indicator", rego(indicator)),
    ]);
    (explained, for_policy)
}

/// Decides which stored indicators `agency` may see now, each once, recording every decision.
///
/// Only indicators that match one of the declarations as held are put to the release path:
/// a candidate the index returned that matches nothing needs no decision (and logs none). The
/// matches shown are then found again on what the release path let the agency see.
fn release_held(
    releaser: &Releaser,
    agency: &Identity,
    stored: Vec<StoredIndicator>,
    asked: &[(&Prepared, &[u64])],
    threshold: f64,
    records: &mut Vec<DecisionRecord>,
) -> HashMap<u64, Held> {
    let now = now_rfc3339();
    let now_micros = now_micros();
    let mut live = HashMap::with_capacity(stored.len());
    for row in stored {
        if row.retracted || row.superseded_by.is_some() {
            continue;
        }
        let Ok(indicator) = Indicator::decode(row.payload.as_slice()) else {
            tracing::error!(indicator = %row.id, "stored indicator does not decode; not screened against");
            continue;
        };
        if valid_at(&indicator, now_micros) {
            let subject = indicator_subject(&indicator).prepare();
            live.insert(row.sequence, (indicator, subject));
        }
    }
    let mut matching = BTreeSet::new();
    for (subject, candidates) in asked {
        for sequence in *candidates {
            if !matching.contains(sequence)
                && let Some((_, held)) = live.get(sequence)
                && !compare(subject, held, threshold).is_empty()
            {
                matching.insert(*sequence);
            }
        }
    }
    let mut held = HashMap::with_capacity(matching.len());
    for sequence in matching {
        let Some((indicator, _)) = live.remove(&sequence) else {
            continue;
        };
        let channel = channel_for(&indicator.originator, agency, releaser.member());
        let release = releaser.release(&indicator, agency, channel, &now);
        releaser.record(&release.record);
        records.push(release.record);
        if let Some(visible) = release.indicator {
            let subject = indicator_subject(&visible).prepare();
            held.insert(
                sequence,
                Held {
                    indicator: visible,
                    subject,
                },
            );
        }
    }
    held
}

/// Runs `work`, CPU-bound, off the async workers on the multi-threaded runtime (its other
/// tasks move to another worker meanwhile); in place elsewhere.
fn off_the_runtime<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|runtime| runtime.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// What every declaration of one evaluation is judged with.
struct Judge<'a> {
    policy: &'a Policy,
    agency: &'a Identity,
    member: &'a str,
    threshold: f64,
    held: &'a HashMap<u64, Held>,
}

/// Explains and assesses one declaration against the indicators held for it.
fn evaluate_one(
    judge: &Judge<'_>,
    declaration: &Declaration,
    subject: &Prepared,
    candidates: &[u64],
) -> Evaluation {
    let Judge {
        policy,
        agency,
        member,
        threshold,
        held,
    } = *judge;
    let mut matches = Vec::new();
    let mut policy_matches = Vec::new();
    let mut seen = BTreeSet::new();
    for sequence in candidates {
        let Some(candidate) = held.get(sequence) else {
            continue;
        };
        for found in compare(subject, &candidate.subject, threshold) {
            let key = (
                found.query_field.clone(),
                candidate.indicator.id.clone(),
                found.record_field.clone(),
            );
            if !seen.insert(key) {
                continue;
            }
            let (explained, for_policy) = explain(&found, &candidate.indicator);
            matches.push(explained);
            policy_matches.push(for_policy);
        }
    }
    let findings: Vec<RegoValue> = findings(declaration)
        .into_iter()
        .map(|finding| {
            object([
                ("field", text(&finding.field)),
                ("flag", text(finding.flag)),
                ("explanation", text(&finding.explanation)),
            ])
        })
        .collect();
    let now = now_rfc3339();
    let agency_name = agency.to_string();
    let input = risk_input_value(
        rego(declaration),
        policy_matches,
        findings,
        RiskContext {
            member,
            agency: &agency_name,
            now: &now,
        },
    );
    let assessment = policy.assess_value(input);
    if let Some(error) = &assessment.error {
        tracing::warn!(reference = %declaration.reference, %error, "risk assessment failed closed (UNASSESSED)");
    }
    Evaluation {
        matches,
        assessment,
    }
}

impl Screening {
    /// Evaluates `declarations` for `agency` against the indicators held now.
    pub(super) async fn evaluate(
        &self,
        agency: &Identity,
        declarations: &[Declaration],
    ) -> Result<Evaluated, Status> {
        let policy = self.context.releaser.policy();
        let threshold = name_threshold(&policy);
        // Preparing and looking up a batch is milliseconds of CPU: off the async workers, which
        // meanwhile carry the writer's and the readers' hand-offs.
        let (subjects, candidates, position) = off_the_runtime(|| {
            let subjects: Vec<Prepared> = declarations
                .iter()
                .map(|declaration| declaration_subject(declaration).prepare())
                .collect();
            let index = self.candidates();
            let candidates: Vec<Vec<u64>> = subjects
                .iter()
                .map(|subject| index.candidates(subject, threshold))
                .collect();
            (subjects, candidates, self.position())
        });
        let wanted: Vec<u64> = candidates
            .iter()
            .flatten()
            .copied()
            .collect::<BTreeSet<u64>>()
            .into_iter()
            .collect();
        let stored = if wanted.is_empty() {
            Vec::new()
        } else {
            self.context
                .store
                .indicators_at(&wanted)
                .await
                .map_err(storage_status)?
        };
        let releaser = self.context.releaser.clone();
        let member = self.context.member.clone();
        let agency = agency.clone();
        let declarations = declarations.to_vec();
        // Policy evaluation and comparisons are CPU work: off the async workers.
        tokio::task::spawn_blocking(move || {
            let mut records = Vec::new();
            let asked: Vec<(&Prepared, &[u64])> = subjects
                .iter()
                .zip(&candidates)
                .map(|(subject, candidates)| (subject, candidates.as_slice()))
                .collect();
            let held = release_held(&releaser, &agency, stored, &asked, threshold, &mut records);
            let judge = Judge {
                policy: &policy,
                agency: &agency,
                member: &member,
                threshold,
                held: &held,
            };
            let evaluations = declarations
                .iter()
                .zip(&subjects)
                .zip(&candidates)
                .map(|((declaration, subject), candidates)| {
                    evaluate_one(&judge, declaration, subject, candidates)
                })
                .collect();
            Evaluated {
                evaluations,
                position,
                policy_revision: policy.revision().to_string(),
                records,
                subjects,
            }
        })
        .await
        .map_err(|error| Status::internal(format!("screening task failed: {error}")))
    }

    /// Stores screenings with the release decisions they made. A match shows what an indicator
    /// holds: no screening is stored (and answered) without its decisions, in the same
    /// transaction where the store can, else written first through the decision log.
    async fn store(
        &self,
        rows: &[ScreeningRow],
        records: &[DecisionRecord],
    ) -> Result<(), cordon_storage::StorageError> {
        let store = &self.context.store;
        let decisions: Vec<_> = records.iter().map(decision_log::row_of).collect();
        if store
            .record_screenings_with_decisions(rows, &decisions)
            .await?
        {
            return Ok(());
        }
        self.context.decision_log.write(records).await?;
        store.record_screenings(rows).await
    }

    /// Screens `declarations` for `agency`, an agency of this member: every result stored, each
    /// declaration watched for [`super::ScreeningContext::watch_for`].
    pub async fn screen(
        &self,
        agency: &Identity,
        declarations: Vec<Declaration>,
    ) -> Result<Vec<ScreeningResult>, Status> {
        let errors = super::check::check_batch(&declarations);
        if !errors.is_empty() {
            return Err(invalid_fields(errors));
        }
        // Read your writes: every indicator acknowledged before this call is a candidate.
        let head = *self.context.store.watch_head().borrow();
        if !self.caught_up_to(head, CATCH_UP_PATIENCE).await {
            return Err(Status::unavailable(format!(
                "the screening index has read the feed up to {} of {head}; try again",
                self.position()
            )));
        }
        let evaluated = self.evaluate(agency, &declarations).await?;
        let at = now_micros();
        let until = at
            .saturating_add(i64::try_from(self.context.watch_for.as_micros()).unwrap_or(i64::MAX));
        let mut results = Vec::with_capacity(declarations.len());
        let mut rows = Vec::with_capacity(declarations.len());
        let mut subjects = evaluated.subjects.into_iter();
        let mut handed = Vec::with_capacity(declarations.len());
        for (declaration, evaluation) in declarations.iter().zip(evaluated.evaluations) {
            let assessment = &evaluation.assessment;
            let result = ScreeningResult {
                id: uuid::Uuid::now_v7().to_string(),
                reference: declaration.reference.clone(),
                score: assessment.score,
                level: level_of(assessment.level) as i32,
                matches: evaluation.matches,
                reasons: reasons_of(assessment),
                policy_revision: evaluated.policy_revision.clone(),
                screened_at: Some(timestamp_from_micros(at)),
                screened_by: agency.to_string(),
                watched_until: Some(timestamp_from_micros(until)),
            };
            rows.push(ScreeningRow {
                id: result.id.clone(),
                agency: agency.to_string(),
                reference: result.reference.clone(),
                at_micros: at,
                policy_revision: result.policy_revision.clone(),
                level: assessment.level.as_str().to_string(),
                score: assessment.score,
                declaration: declaration.encode_to_vec(),
                result: result.encode_to_vec(),
                watch: Some((evaluated.position, until)),
            });
            if let Some(subject) = subjects.next() {
                handed.push((result.id.clone(), subject));
            }
            results.push(result);
        }
        // Before the watches are stored, so that the follower finds every one of them (a watch
        // that ends as it starts is never loaded: nothing to hand over).
        if !self.context.watch_for.is_zero() {
            self.hand_over(handed.into_iter());
        }
        if let Err(error) = self.store(&rows, &evaluated.records).await {
            let ids: Vec<&str> = rows.iter().map(|row| row.id.as_str()).collect();
            self.withdraw(&ids);
            return Err(storage_status(error));
        }
        self.watches_added.notify_one();
        self.context.metrics.screened(results.len() as u64);
        tracing::info!(%agency, count = results.len(), "screened");
        Ok(results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn examples<T: serde::de::DeserializeOwned>(text: &str) -> Vec<T> {
        text.lines()
            .filter(|line| line.trim_start().starts_with('{'))
            .map(|line| serde_json::from_str(line).expect("an example"))
            .collect()
    }

    /// The JSON form the risk policy was handed before its input was built directly.
    fn through_json<T: serde::Serialize>(value: &T) -> RegoValue {
        RegoValue::from(serde_json::to_value(value).expect("JSON"))
    }

    #[test]
    fn the_risk_policy_reads_declarations_and_indicators_as_their_json() {
        let declarations: Vec<Declaration> =
            examples(include_str!("../../demo/declarations.jsonl"));
        let indicators: Vec<Indicator> = examples(include_str!("../../demo/indicators.jsonl"));
        assert!(declarations.len() > 3 && indicators.len() > 3);
        for declaration in &declarations {
            assert_eq!(rego(declaration), through_json(declaration));
        }
        for indicator in &indicators {
            assert_eq!(rego(indicator), through_json(indicator));
        }
        let found = FieldMatch {
            query_field: "parties[1].name".into(),
            value: "Example Trading F.Z.E.".into(),
            record_field: "broker.name".into(),
            method: Method::Fuzzy,
            similarity: 0.93,
            feature: "party_name",
        };
        let indicator = &indicators[0];
        let (_, for_policy) = explain(&found, indicator);
        let expected = json!({
            "declarationField": found.query_field,
            "value": found.value,
            "indicatorId": indicator.id,
            "kind": kind_name(indicator).unwrap_or("unknown"),
            "indicatorField": found.record_field,
            "method": "fuzzy",
            "similarity": 0.93,
            "feature": "party_name",
            "tlp": indicator.tlp().as_str_name(),
            "originator": indicator.originator,
            "severity": indicator.severity().as_str_name(),
            "confidence": indicator.confidence,
            "tags": indicator.tags,
            "indicator": serde_json::to_value(indicator).expect("JSON"),
        });
        assert_eq!(for_policy, RegoValue::from(expected));
    }
}
