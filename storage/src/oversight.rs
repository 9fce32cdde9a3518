//! What the public oversight page counts, read for aggregation only: the feed's published
//! events outside circles (in pages, from a cursor, so the gateway's tallies only ever read
//! what is new), alert times, and release decisions grouped by who, how and under which
//! policy revision. Written once for both backends by `oversight_operations!` (see
//! [`crate::feed`] for why a macro).

use crate::backend::Backend;
use crate::error::StorageError;
use crate::values::{sequence_from_database, sequence_to_database};

/// A published event of the feed at large, for the oversight tallies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OversightIndicator {
    pub sequence: u64,
    pub at_micros: i64,
    pub kind: String,
    /// `None` if published by this member's agencies, else the peer it came through.
    pub via: Option<String>,
    pub payload: Vec<u8>,
}

/// A page of [`OversightIndicator`]s; `scanned_to` is how far the next page starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OversightPage {
    pub indicators: Vec<OversightIndicator>,
    pub scanned_to: u64,
}

/// Release decisions of one recipient, channel and revision, with one outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionGroup {
    pub recipient: String,
    pub channel: String,
    pub policy_revision: String,
    pub allow: bool,
    /// Released with at least one field redacted.
    pub redacted: bool,
    /// The policy engine failed and the release was denied (fail closed).
    pub failed: bool,
    pub count: u64,
    pub first_micros: i64,
    pub last_micros: i64,
}

/// Published events after `$1`, up to the head `$2` read before, outside circles.
const SELECT_INDICATORS: &str = "SELECT e.sequence, e.at_micros, e.kind, i.via, e.payload \
     FROM events e JOIN indicators i ON i.id = e.indicator_id \
     WHERE e.sequence > $1 AND e.sequence <= $2 AND e.event_type = 'published' \
     AND i.circle IS NULL ORDER BY e.sequence LIMIT $3";

const SELECT_ALERT_TIMES: &str =
    "SELECT sequence, at_micros FROM alerts WHERE sequence > $1 ORDER BY sequence LIMIT $2";

/// Circle decisions are left out: their count would show a circle's traffic. Rows stored
/// before the compact form (migration 0009) are counted here; later ones in `decision_groups`.
const SELECT_DECISION_GROUPS: &str = "SELECT recipient, channel, policy_revision, allow, \
     CASE WHEN redact = '[]' THEN 0 ELSE 1 END AS redacted, \
     CASE WHEN error IS NULL THEN 0 ELSE 1 END AS failed, \
     COUNT(*), MIN(at_micros), MAX(at_micros) FROM decisions WHERE channel <> 'circle' \
     GROUP BY recipient, channel, policy_revision, allow, redacted, failed";
const SELECT_KEPT_GROUPS: &str = "SELECT recipient, channel, policy_revision, allow, \
     CASE WHEN redacted THEN 1 ELSE 0 END, CASE WHEN failed THEN 1 ELSE 0 END, \
     count, first_micros, last_micros FROM decision_groups \
     WHERE channel <> 'circle' AND count > 0";

type IndicatorRow = (i64, i64, String, Option<String>, Option<Vec<u8>>);
type GroupRow = (String, String, String, bool, i32, i32, i64, i64, i64);

fn indicator_page(
    rows: Vec<IndicatorRow>,
    head: u64,
    limit: u32,
) -> Result<OversightPage, StorageError> {
    let full = rows.len() >= limit as usize;
    let indicators = rows
        .into_iter()
        .map(|(sequence, at_micros, kind, via, payload)| {
            Ok(OversightIndicator {
                sequence: sequence_from_database(sequence, "event sequence")?,
                at_micros,
                kind,
                via,
                payload: payload.unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>, StorageError>>()?;
    // A short page read everything up to the head; a full one only up to its last event.
    let scanned_to = match indicators.last() {
        Some(last) if full => last.sequence,
        _ => head,
    };
    Ok(OversightPage {
        indicators,
        scanned_to,
    })
}

/// One group per recipient, channel, revision and outcome, counting both sources.
fn merge_groups(groups: Vec<DecisionGroup>) -> Vec<DecisionGroup> {
    let mut merged: std::collections::BTreeMap<_, DecisionGroup> = Default::default();
    for group in groups {
        let key = (
            group.recipient.clone(),
            group.channel.clone(),
            group.policy_revision.clone(),
            group.allow,
            group.redacted,
            group.failed,
        );
        match merged.entry(key) {
            std::collections::btree_map::Entry::Vacant(entry) => {
                entry.insert(group);
            }
            std::collections::btree_map::Entry::Occupied(mut entry) => {
                let kept = entry.get_mut();
                kept.count += group.count;
                kept.first_micros = kept.first_micros.min(group.first_micros);
                kept.last_micros = kept.last_micros.max(group.last_micros);
            }
        }
    }
    merged.into_values().collect()
}

fn decision_group(row: GroupRow) -> Result<DecisionGroup, StorageError> {
    let (recipient, channel, policy_revision, allow, redacted, failed, count, first, last) = row;
    Ok(DecisionGroup {
        recipient,
        channel,
        policy_revision,
        allow,
        redacted: redacted != 0,
        failed: failed != 0,
        count: u64::try_from(count)
            .map_err(|_| StorageError::corrupt(format!("decision count {count} is negative")))?,
        first_micros: first,
        last_micros: last,
    })
}

macro_rules! oversight_operations {
    ($module:ident, $database:ty, $backend:expr) => {
        pub(crate) mod $module {
            use sqlx::Pool;

            use super::*;

            type Database = $database;
            const BACKEND: Backend = $backend;

            fn failed(action: &str) -> impl FnOnce(sqlx::Error) -> StorageError + '_ {
                crate::error::failed(BACKEND, action)
            }

            pub(crate) async fn indicators_after(
                pool: &Pool<Database>,
                after: u64,
                limit: u32,
            ) -> Result<OversightPage, StorageError> {
                let head: i64 = sqlx::query_scalar(crate::backend::READ_HEAD)
                    .fetch_one(pool)
                    .await
                    .map_err(failed("read feed head"))?;
                let rows: Vec<IndicatorRow> = sqlx::query_as(SELECT_INDICATORS)
                    .bind(sequence_to_database(after))
                    .bind(head)
                    .bind(i64::from(limit))
                    .fetch_all(pool)
                    .await
                    .map_err(failed("read indicators for oversight"))?;
                indicator_page(rows, sequence_from_database(head, "feed head")?, limit)
            }

            pub(crate) async fn alert_times_after(
                pool: &Pool<Database>,
                after: u64,
                limit: u32,
            ) -> Result<Vec<(u64, i64)>, StorageError> {
                let rows: Vec<(i64, i64)> = sqlx::query_as(SELECT_ALERT_TIMES)
                    .bind(sequence_to_database(after))
                    .bind(i64::from(limit))
                    .fetch_all(pool)
                    .await
                    .map_err(failed("read alert times"))?;
                rows.into_iter()
                    .map(|(sequence, at)| Ok((sequence_from_database(sequence, "alert")?, at)))
                    .collect()
            }

            pub(crate) async fn decision_groups(
                pool: &Pool<Database>,
            ) -> Result<Vec<DecisionGroup>, StorageError> {
                let mut rows: Vec<GroupRow> = sqlx::query_as(SELECT_DECISION_GROUPS)
                    .fetch_all(pool)
                    .await
                    .map_err(failed("count decisions"))?;
                rows.extend(
                    sqlx::query_as::<_, GroupRow>(SELECT_KEPT_GROUPS)
                        .fetch_all(pool)
                        .await
                        .map_err(failed("read decision counts"))?,
                );
                let groups = rows
                    .into_iter()
                    .map(decision_group)
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(merge_groups(groups))
            }
        }
    };
}

oversight_operations!(sqlite_oversight, sqlx::Sqlite, Backend::Sqlite);
oversight_operations!(postgres_oversight, sqlx::Postgres, Backend::Postgres);
