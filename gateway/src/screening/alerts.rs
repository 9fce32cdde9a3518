//! Alerts: an indicator that matches a watch becomes an alert for the watch's agency, if the
//! release room lets that agency see it (the decision logged first), with the match and the
//! declaration's new assessment.

use std::collections::{BTreeSet, HashMap};

use cordon_matching::{FieldMatch, compare};
use cordon_policy::rego_value::{object, text};
use cordon_policy::{RiskContext, risk_input_value};
use cordon_proto::v1::{Alert, Declaration, Indicator, WatchEntry};
use cordon_storage::{NewAlert, StorageError, StoredIndicator, WatchKind, WatchRow};
use prost::Message;

use super::follower::watch_subject;
use super::screen::{explain, level_of, reasons_of, valid_at};
use super::subjects::indicator_subject;
use super::{Screening, name_threshold};
use crate::clock::{now_micros, now_rfc3339, timestamp_from_micros};
use crate::identity::Identity;
use crate::release::{DecisionRecord, channel_for};

/// A watch that an indicator matches, as the agency may see the indicator.
struct Hit {
    watch: WatchRow,
    agency: Identity,
    indicator: Indicator,
    matches: Vec<FieldMatch>,
}

/// The alerts for `pending` (watch number, feed sequence) pairs.
pub(super) async fn alerts_for(
    screening: &Screening,
    pending: Vec<(u64, u64)>,
) -> Result<Vec<NewAlert>, StorageError> {
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let pairs: BTreeSet<(u64, u64)> = pending.into_iter().collect();
    let store = &screening.context.store;
    let numbers: Vec<u64> = pairs
        .iter()
        .map(|(watch, _)| *watch)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let sequences: Vec<u64> = pairs
        .iter()
        .map(|(_, sequence)| *sequence)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // A watchlist entry removed meanwhile is not read back, and raises nothing.
    let watches: HashMap<u64, WatchRow> = store
        .watches_numbered(&numbers)
        .await?
        .into_iter()
        .map(|row| (row.number, row))
        .collect();
    let indicators: HashMap<u64, StoredIndicator> = store
        .indicators_at(&sequences)
        .await?
        .into_iter()
        .map(|row| (row.sequence, row))
        .collect();
    let releaser = screening.context.releaser.clone();
    let threshold = name_threshold(&releaser.policy());
    let (hits, mut records) = tokio::task::spawn_blocking(move || {
        let now = now_rfc3339();
        let now_micros = now_micros();
        let mut records = Vec::new();
        let mut released: HashMap<(u64, String), Option<Indicator>> = HashMap::new();
        let mut hits = Vec::new();
        for (number, sequence) in pairs {
            let (Some(watch), Some(stored)) = (watches.get(&number), indicators.get(&sequence))
            else {
                continue;
            };
            if watch
                .watch
                .until_micros
                .is_some_and(|until| until <= now_micros)
                || stored.retracted
                || stored.superseded_by.is_some()
            {
                continue;
            }
            let Ok(agency) = Identity::parse(&watch.watch.agency) else {
                continue;
            };
            let visible = released
                .entry((sequence, watch.watch.agency.clone()))
                .or_insert_with(|| {
                    let indicator = Indicator::decode(stored.payload.as_slice()).ok()?;
                    if !valid_at(&indicator, now_micros) {
                        return None;
                    }
                    let channel = channel_for(&indicator.originator, &agency, releaser.member());
                    let release = releaser.release(&indicator, &agency, channel, &now);
                    releaser.record(&release.record);
                    records.push(release.record);
                    release.indicator
                })
                .clone();
            let (Some(indicator), Some(subject)) = (visible, watch_subject(watch)) else {
                continue;
            };
            let matches = compare(
                &subject,
                &indicator_subject(&indicator).prepare(),
                threshold,
            );
            if matches.is_empty() {
                continue;
            }
            hits.push(Hit {
                watch: watch.clone(),
                agency,
                indicator,
                matches,
            });
        }
        (hits, records)
    })
    .await
    .map_err(|error| StorageError::Unavailable(format!("deciding alerts: {error}")))?;
    let mut alerts = Vec::with_capacity(hits.len());
    let at = now_micros();
    for hit in hits {
        let (explained, _) = explain(&hit.matches[0], &hit.indicator);
        let mut alert = Alert {
            cursor: 0,
            at: Some(timestamp_from_micros(at)),
            reference: String::new(),
            screening_id: String::new(),
            watch_id: String::new(),
            r#match: Some(explained),
            score: 0,
            level: 0,
            reasons: Vec::new(),
        };
        match hit.watch.watch.kind {
            WatchKind::Declaration => {
                let Ok(declaration) = Declaration::decode(hit.watch.watch.subject.as_slice())
                else {
                    continue;
                };
                // The declaration assessed again, with everything the agency may see now.
                let evaluated = screening
                    .evaluate(&hit.agency, std::slice::from_ref(&declaration))
                    .await
                    .map_err(|status| StorageError::Unavailable(status.message().to_string()))?;
                records.extend(evaluated.records);
                let Some(evaluation) = evaluated.evaluations.into_iter().next() else {
                    continue;
                };
                alert.reference = declaration.reference;
                alert.screening_id = hit.watch.watch.reference_id.clone();
                alert.score = evaluation.assessment.score;
                alert.level = level_of(evaluation.assessment.level) as i32;
                alert.reasons = reasons_of(&evaluation.assessment);
            }
            WatchKind::Entry => {
                let entry =
                    WatchEntry::decode(hit.watch.watch.subject.as_slice()).unwrap_or_default();
                let (_, for_policy) = explain(&hit.matches[0], &hit.indicator);
                let agency = hit.agency.to_string();
                let now = now_rfc3339();
                let input = risk_input_value(
                    object([("reference", text(&entry.id))]),
                    vec![for_policy],
                    Vec::new(),
                    RiskContext {
                        member: &screening.context.member,
                        agency: &agency,
                        now: &now,
                    },
                );
                let assessment = screening.context.releaser.policy().assess_value(input);
                alert.reference = entry.id.clone();
                alert.watch_id = entry.id;
                alert.score = assessment.score;
                alert.level = level_of(assessment.level) as i32;
                alert.reasons = reasons_of(&assessment);
            }
        }
        alerts.push(NewAlert {
            agency: hit.agency.to_string(),
            watch: hit.watch.number,
            indicator_id: hit.indicator.id.clone(),
            at_micros: at,
            payload: alert.encode_to_vec(),
        });
    }
    // What an alert shows of an indicator was released by a decision stored first.
    write_decisions(screening, &records).await?;
    Ok(alerts)
}

async fn write_decisions(
    screening: &Screening,
    records: &[DecisionRecord],
) -> Result<(), StorageError> {
    screening.context.decision_log.write(records).await
}
