//! The decision log's operations, written once and expanded for SQLite and PostgreSQL by
//! `decision_operations!`, with `$N` placeholders as in [`crate::operations`]. Only the
//! statement that opens a write transaction and the purge statement differ.
//!
//! Every page is read in the keyset order `(at_micros, decision_id)`, and each query shape
//! (by time, by indicator, by recipient) has an index ending in that order, so a page is one
//! index range scan that stops after its limit.

use std::collections::HashSet;
use std::fmt::Write as _;

use crate::error::StorageError;
use crate::model::{DecisionQuery, DecisionRow};

/// The most rows one [`crate::Store::decisions`] call returns, whatever limit it asks for.
pub const MAX_DECISIONS_PER_QUERY: u32 = 10_000;

const DECISION_COLUMNS: usize = 11;

/// Rows per multi-row insert: 10 columns x 500 rows stays far below the bind limits of both
/// backends (SQLite 32766, PostgreSQL 65535).
const DECISION_ROWS_PER_INSERT: usize = 500;

/// Rows per purge transaction. On SQLite every write goes through the one writer connection,
/// which publishes need too; a purge of a long retention backlog must not hold it for long.
const DECISIONS_PER_PURGE: i64 = 1_000;

const SELECT_COLUMNS: &str = "SELECT decision_id, at_micros, recipient, indicator_id, channel, \
     policy_revision, allow, redact, reasons, error FROM decisions";

/// Deletes the oldest `$2` decisions before `$1`: a range scan of `decisions_time`, then one
/// primary key look-up per row. The one statement that differs between the backends:
/// SQLite plans `IN (subquery)` that way; PostgreSQL may hash-join the subquery against a
/// scan of the whole table, but not an array of ids.
const SQLITE_PURGE_CHUNK: &str = "DELETE FROM decisions WHERE decision_id IN ( \
     SELECT decision_id FROM decisions WHERE at_micros < $1 \
     ORDER BY at_micros, decision_id LIMIT $2)";
const POSTGRES_PURGE_CHUNK: &str = "DELETE FROM decisions WHERE decision_id = ANY (ARRAY( \
     SELECT decision_id FROM decisions WHERE at_micros < $1 \
     ORDER BY at_micros, decision_id LIMIT $2))";

/// A decision in the form its batch's audit entry covers.
pub(crate) fn decision_form(row: &DecisionRow) -> cordon_tlog::entry::DecisionForm<'_> {
    cordon_tlog::entry::DecisionForm {
        decision_id: &row.decision_id,
        at_micros: row.at_micros,
        recipient: &row.recipient,
        indicator_id: &row.indicator_id,
        channel: &row.channel,
        policy_revision: &row.policy_revision,
        allow: row.allow,
        redact: &row.redact,
        reasons: &row.reasons,
        error: row.error.as_deref(),
    }
}

fn insert_decisions_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO decisions (decision_id, at_micros, recipient, indicator_id, channel, \
         policy_revision, allow, redact, reasons, error, audit_position) VALUES ",
    );
    for row in 0..rows {
        let base = row * DECISION_COLUMNS;
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 1..=DECISION_COLUMNS {
            if column > 1 {
                sql.push_str(", ");
            }
            // Writing into a String cannot fail.
            let _ = write!(sql, "${}", base + column);
        }
        sql.push(')');
    }
    sql
}

/// Which filters a query sets; the SQL text depends only on this, so each of the few shapes is
/// one prepared statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QueryShape {
    indicator: bool,
    recipient: bool,
    since: bool,
    after: bool,
}

impl QueryShape {
    fn of(query: &DecisionQuery) -> QueryShape {
        QueryShape {
            indicator: query.indicator_id.is_some(),
            recipient: query.recipient.is_some(),
            since: query.since_micros.is_some(),
            after: query.after_decision.is_some(),
        }
    }
}

/// `$1` is the limit; the filters that are set follow in the order indicator, recipient,
/// since, after (two parameters), which is the order the caller binds them in.
fn select_decisions_sql(shape: QueryShape) -> String {
    let mut sql = String::from(SELECT_COLUMNS);
    let mut next = 2;
    let mut conditions = Vec::new();
    if shape.indicator {
        conditions.push(format!("indicator_id = ${next}"));
        next += 1;
    }
    if shape.recipient {
        conditions.push(format!("recipient = ${next}"));
        next += 1;
    }
    if shape.since {
        conditions.push(format!("at_micros >= ${next}"));
        next += 1;
    }
    if shape.after {
        // A row-value comparison, which both planners turn into an index range bound.
        conditions.push(format!(
            "(at_micros, decision_id) > (${next}, ${})",
            next + 1
        ));
    }
    if !conditions.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&conditions.join(" AND "));
    }
    sql.push_str(" ORDER BY at_micros, decision_id LIMIT $1");
    sql
}

fn effective_limit(limit: u32) -> i64 {
    i64::from(limit.min(MAX_DECISIONS_PER_QUERY))
}

/// Refused before the transaction starts, naming the id; a clash with a stored decision is
/// refused by the primary key.
fn reject_duplicates_within(rows: &[DecisionRow]) -> Result<(), StorageError> {
    let mut seen = HashSet::with_capacity(rows.len());
    for row in rows {
        if !seen.insert(row.decision_id.as_str()) {
            return Err(StorageError::Database(format!(
                "record decisions: decision {} appears twice in the batch",
                row.decision_id
            )));
        }
    }
    Ok(())
}

fn encode_list(list: &[String]) -> Result<String, StorageError> {
    serde_json::to_string(list)
        .map_err(|error| StorageError::Database(format!("record decisions: encode list: {error}")))
}

fn decode_list(text: &str, column: &str, decision_id: &str) -> Result<Vec<String>, StorageError> {
    serde_json::from_str(text).map_err(|error| {
        StorageError::corrupt(format!(
            "decision {decision_id} has a {column} that is not a JSON array of strings: {error}"
        ))
    })
}

/// A decision with its lists encoded, ready to bind; made before the write transaction starts
/// so that the transaction does nothing but insert.
struct EncodedDecision<'a> {
    row: &'a DecisionRow,
    redact: String,
    reasons: String,
}

fn encode_rows(rows: &[DecisionRow]) -> Result<Vec<EncodedDecision<'_>>, StorageError> {
    rows.iter()
        .map(|row| {
            Ok(EncodedDecision {
                row,
                redact: encode_list(&row.redact)?,
                reasons: encode_list(&row.reasons)?,
            })
        })
        .collect()
}

/// The columns of one row, in the order of [`SELECT_COLUMNS`].
type DecisionColumns = (
    String,
    i64,
    String,
    String,
    String,
    String,
    bool,
    String,
    String,
    Option<String>,
);

fn decode_row(columns: DecisionColumns) -> Result<DecisionRow, StorageError> {
    let (
        decision_id,
        at_micros,
        recipient,
        indicator_id,
        channel,
        policy_revision,
        allow,
        redact,
        reasons,
        error,
    ) = columns;
    let redact = decode_list(&redact, "redact", &decision_id)?;
    let reasons = decode_list(&reasons, "reasons", &decision_id)?;
    Ok(DecisionRow {
        decision_id,
        at_micros,
        recipient,
        indicator_id,
        channel,
        policy_revision,
        allow,
        redact,
        reasons,
        error,
    })
}

/// Expands the decision log operations for one sqlx database into module `$module`. Writes
/// take the pool they are given (SQLite's single writer), reads theirs (SQLite's readers).
macro_rules! decision_operations {
    (
        $module:ident,
        $database:ty,
        $backend:expr,
        begin_write = $begin_write:literal,
        purge_chunk = $purge_chunk:expr,
        audit = $audit:ident $(,)?
    ) => {
        pub(crate) mod $module {
            use sqlx::{AssertSqlSafe, Pool};

            use super::*;
            use crate::backend::Backend;

            type Database = $database;
            const BACKEND: Backend = $backend;

            fn failed(action: &str) -> impl FnOnce(sqlx::Error) -> StorageError + '_ {
                move |error| StorageError::from_sqlx(BACKEND, action, error)
            }

            pub(crate) async fn record(
                pool: &Pool<Database>,
                audit: &crate::audit::KeptEdge,
                rows: &[DecisionRow],
            ) -> Result<(), StorageError> {
                if rows.is_empty() {
                    return Ok(());
                }
                reject_duplicates_within(rows)?;
                let encoded = encode_rows(rows)?;

                let mut transaction = pool
                    .begin_with($begin_write)
                    .await
                    .map_err(failed("begin record decisions transaction"))?;
                // The batch's entry in the audit log first (it takes the head row, for its
                // `audit_size` only), so that each row names the entry that covers it.
                let mut forms: Vec<cordon_tlog::entry::DecisionForm<'_>> =
                    rows.iter().map(decision_form).collect();
                forms.sort_by(|a, b| a.decision_id.as_bytes().cmp(b.decision_id.as_bytes()));
                let mut edge = audit.begin();
                let position = crate::audit::$audit::append(
                    &mut transaction,
                    &mut edge,
                    &[cordon_tlog::Entry::decisions(&forms)],
                )
                .await?
                .map(|position| crate::values::sequence_to_database(position));
                for chunk in encoded.chunks(DECISION_ROWS_PER_INSERT) {
                    let mut query = sqlx::query(AssertSqlSafe(crate::placeholders::dialect(
                        BACKEND,
                        insert_decisions_sql(chunk.len()),
                    )));
                    for item in chunk {
                        let row = item.row;
                        query = query
                            .bind(row.decision_id.as_str())
                            .bind(row.at_micros)
                            .bind(row.recipient.as_str())
                            .bind(row.indicator_id.as_str())
                            .bind(row.channel.as_str())
                            .bind(row.policy_revision.as_str())
                            .bind(row.allow)
                            .bind(item.redact.as_str())
                            .bind(item.reasons.as_str())
                            .bind(row.error.as_deref())
                            .bind(position);
                    }
                    // On an error the transaction is dropped, which rolls it back.
                    query
                        .execute(&mut *transaction)
                        .await
                        .map_err(failed("record decisions"))?;
                }
                transaction
                    .commit()
                    .await
                    .map_err(failed("commit record decisions transaction"))?;
                edge.committed();
                Ok(())
            }

            /// The decisions covered by the audit log's entry at `position` (in no order: the
            /// caller sorts them by decision id, the order the entry's digest covers).
            pub(crate) async fn at_audit_position(
                pool: &Pool<Database>,
                position: u64,
            ) -> Result<Vec<DecisionRow>, StorageError> {
                let rows = sqlx::query_as::<_, DecisionColumns>(AssertSqlSafe(format!(
                    "{SELECT_COLUMNS} WHERE audit_position = $1"
                )))
                .bind(crate::values::sequence_to_database(position))
                .fetch_all(pool)
                .await
                .map_err(failed("read the decisions of an audit entry"))?;
                rows.into_iter().map(decode_row).collect()
            }

            pub(crate) async fn select(
                pool: &Pool<Database>,
                query: &DecisionQuery,
            ) -> Result<Vec<DecisionRow>, StorageError> {
                if query.limit == 0 {
                    return Ok(Vec::new());
                }
                let sql = select_decisions_sql(QueryShape::of(query));
                let mut statement = sqlx::query_as::<_, DecisionColumns>(AssertSqlSafe(sql))
                    .bind(effective_limit(query.limit));
                if let Some(indicator_id) = &query.indicator_id {
                    statement = statement.bind(indicator_id.as_str());
                }
                if let Some(recipient) = &query.recipient {
                    statement = statement.bind(recipient.as_str());
                }
                if let Some(since_micros) = query.since_micros {
                    statement = statement.bind(since_micros);
                }
                if let Some((at_micros, decision_id)) = &query.after_decision {
                    statement = statement.bind(*at_micros).bind(decision_id.as_str());
                }
                let rows = statement
                    .fetch_all(pool)
                    .await
                    .map_err(failed("read decisions"))?;
                rows.into_iter().map(decode_row).collect()
            }

            /// Deletes in chunks of [`DECISIONS_PER_PURGE`], one transaction each, until a
            /// chunk deletes nothing (not merely fewer: a purge by another replica may have
            /// taken part of it while more remains).
            pub(crate) async fn purge_before(
                pool: &Pool<Database>,
                cutoff_micros: i64,
            ) -> Result<u64, StorageError> {
                let mut purged = 0;
                loop {
                    let mut transaction = pool
                        .begin_with($begin_write)
                        .await
                        .map_err(failed("begin purge decisions transaction"))?;
                    let deleted = sqlx::query($purge_chunk)
                        .bind(cutoff_micros)
                        .bind(DECISIONS_PER_PURGE)
                        .execute(&mut *transaction)
                        .await
                        .map_err(failed("purge decisions"))?
                        .rows_affected();
                    transaction
                        .commit()
                        .await
                        .map_err(failed("commit purge decisions transaction"))?;
                    if deleted == 0 {
                        return Ok(purged);
                    }
                    purged += deleted;
                }
            }
        }
    };
}

// SQLite: `BEGIN IMMEDIATE` for the reason given in `crate::operations`.
decision_operations!(
    sqlite_decisions,
    sqlx::Sqlite,
    Backend::Sqlite,
    begin_write = "BEGIN IMMEDIATE",
    purge_chunk = SQLITE_PURGE_CHUNK,
    audit = sqlite_audit,
);
decision_operations!(
    postgres_decisions,
    sqlx::Postgres,
    Backend::Postgres,
    begin_write = "BEGIN",
    purge_chunk = POSTGRES_PURGE_CHUNK,
    audit = postgres_audit,
);

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(indicator: bool, recipient: bool, since: bool, after: bool) -> QueryShape {
        QueryShape {
            indicator,
            recipient,
            since,
            after,
        }
    }

    #[test]
    fn select_sql_numbers_filters_after_the_limit() {
        assert_eq!(
            select_decisions_sql(shape(false, false, false, false)),
            format!("{SELECT_COLUMNS} ORDER BY at_micros, decision_id LIMIT $1")
        );
        assert_eq!(
            select_decisions_sql(shape(true, true, true, true)),
            format!(
                "{SELECT_COLUMNS} WHERE indicator_id = $2 AND recipient = $3 AND at_micros >= $4 \
                 AND (at_micros, decision_id) > ($5, $6) ORDER BY at_micros, decision_id LIMIT $1"
            )
        );
        assert_eq!(
            select_decisions_sql(shape(false, true, false, true)),
            format!(
                "{SELECT_COLUMNS} WHERE recipient = $2 AND (at_micros, decision_id) > ($3, $4) \
                 ORDER BY at_micros, decision_id LIMIT $1"
            )
        );
    }

    #[test]
    fn insert_sql_numbers_every_column() {
        let sql = insert_decisions_sql(2);
        assert!(
            sql.ends_with(
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11), \
                 ($12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22)"
            ),
            "{sql}"
        );
    }

    #[test]
    fn limit_is_capped() {
        assert_eq!(effective_limit(7), 7);
        assert_eq!(
            effective_limit(u32::MAX),
            i64::from(MAX_DECISIONS_PER_QUERY)
        );
    }

    #[test]
    fn lists_round_trip_as_json() {
        let list = vec![
            String::new(),
            "source.contact".to_owned(),
            "quote \" comma , backslash \\ newline \n é 🦀".to_owned(),
        ];
        let text = encode_list(&list).expect("encode");
        assert_eq!(decode_list(&text, "redact", "d"), Ok(list));
        assert_eq!(encode_list(&[]).as_deref(), Ok("[]"));
        assert!(matches!(
            decode_list("{\"a\":1}", "reasons", "d"),
            Err(StorageError::Database(message)) if message.contains("decision d has a reasons")
        ));
    }
}
