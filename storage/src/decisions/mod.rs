//! The decision log's operations, written once and expanded for SQLite and PostgreSQL by
//! `decision_operations!`, with `$N` placeholders as in [`crate::operations`]. Only the
//! statement that opens a write transaction, the purge statement of the rows stored before the
//! compact form, and the names of the two-argument minimum and maximum differ.
//!
//! Decisions are stored in compact form ([`packed`]): each write is one batch (or a few, if its
//! decisions span more than ten minutes) with a key row per indicator and recipient it names,
//! and the oversight counts kept beside them. Rows stored before the compact form (migration
//! 0009) stay in the `decisions` table, whose every query shape has an index ending in the
//! keyset order; a read takes a page of them and merges it with the batches.
//!
//! Decision ids are the gateway's UUIDs (v7, with 74 random bits): repeated within one write
//! they are refused; across writes nothing checks them any more (that was one index entry per
//! decision, the cost the compact form removes).

mod packed;

use std::collections::HashSet;
use std::fmt::Write as _;

use crate::error::StorageError;
use crate::model::{DecidedPage, DecisionQuery, DecisionRow};

/// The most rows one [`crate::Store::decisions`] call returns, whatever limit it asks for.
pub const MAX_DECISIONS_PER_QUERY: u32 = 10_000;

/// Rows stored before the compact form per purge transaction. On SQLite every write goes through the one writer connection,
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

/// Refused before the transaction starts, naming the id.
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

fn decode_list(text: &str, column: &str, decision_id: &str) -> Result<Vec<String>, StorageError> {
    serde_json::from_str(text).map_err(|error| {
        StorageError::corrupt(format!(
            "decision {decision_id} has a {column} that is not a JSON array of strings: {error}"
        ))
    })
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

/// Batches read per statement: a batch of a page's decisions for ten recipients is some
/// hundreds of kilobytes.
const BATCHES_PER_READ: i64 = 8;

/// Batches purged per transaction (each is read, and rewritten if it straddles the cutoff).
const BATCHES_PER_PURGE: i64 = 8;

const INSERT_BATCH: &str = "INSERT INTO decision_batches \
     (first_micros, last_micros, audit_position, decisions, body) \
     VALUES ($1, $2, $3, $4, $5) RETURNING batch_id";

/// Batches in the order reads take them, from a cursor `(first_micros, batch_id)`.
const SELECT_BATCHES: &str = "SELECT batch_id, first_micros, body FROM decision_batches \
     WHERE (first_micros, batch_id) > ($1, $2) ORDER BY first_micros, batch_id LIMIT $3";
const SELECT_KEYED_BATCHES: &str = "SELECT k.batch_id, k.first_micros, b.body \
     FROM decision_keys k JOIN decision_batches b ON b.batch_id = k.batch_id \
     WHERE k.key = $1 AND (k.first_micros, k.batch_id) > ($2, $3) \
     ORDER BY k.first_micros, k.batch_id LIMIT $4";
const SELECT_AUDITED_BATCHES: &str =
    "SELECT batch_id, body FROM decision_batches WHERE audit_position = $1";
/// The oldest batches that hold a decision before the cutoff. On PostgreSQL locked (`FOR
/// UPDATE`): a purge by another replica waits, then reads what this one left (a row it
/// deleted is skipped, a row it rewrote is read as rewritten). SQLite's one writer serializes
/// purges already.
const SQLITE_PURGED_BATCHES: &str = "SELECT batch_id, first_micros, last_micros, body \
     FROM decision_batches WHERE first_micros < $1 ORDER BY first_micros, batch_id LIMIT $2";
const POSTGRES_PURGED_BATCHES: &str = "SELECT batch_id, first_micros, last_micros, body \
     FROM decision_batches WHERE first_micros < $1 ORDER BY first_micros, batch_id LIMIT $2 \
     FOR UPDATE";
/// The batches holding decisions of a recipient under a revision on events after `$3` up to
/// `$4`.
/// The batches holding decisions of a recipient under a revision on events after `$3` up to
/// `$4`, each once. Pages span at most [`MAX_PAGE_SPAN`] sequences, which bounds the scan of
/// the key from above.
const SELECT_PAGE_BATCHES: &str = "SELECT batch_id, body FROM decision_batches \
     WHERE batch_id IN (SELECT batch_id FROM decision_pages \
     WHERE recipient = $1 AND policy_revision = $2 AND to_sequence > $3 \
     AND to_sequence < $5 AND from_sequence < $4)";
/// The pages of a deleted batch.
const DELETE_PAGES: &str = "DELETE FROM decision_pages WHERE batch_id = $1";
const DELETE_KEY: &str =
    "DELETE FROM decision_keys WHERE key = $1 AND first_micros = $2 AND batch_id = $3";
const DELETE_BATCH: &str = "DELETE FROM decision_batches WHERE batch_id = $1";
const REWRITE_BATCH: &str = "UPDATE decision_batches \
     SET first_micros = $1, last_micros = $2, decisions = $3, body = $4 WHERE batch_id = $5";
const SHRINK_GROUP: &str = "UPDATE decision_groups SET count = count - $1, \
     first_micros = CASE WHEN first_micros < $2 THEN $2 ELSE first_micros END \
     WHERE recipient = $3 AND channel = $4 AND policy_revision = $5 AND allow = $6 \
     AND redacted = $7 AND failed = $8";
const DROP_EMPTY_GROUPS: &str = "DELETE FROM decision_groups WHERE count = 0";

/// The widest page noted (in feed sequences); a wider read (a kinds filter over a long stretch
/// of the feed) is not noted, and its events are decided again if read again.
pub(crate) const MAX_PAGE_SPAN: u64 = 65_536;

const KEY_COLUMNS: usize = 3;
const PAGE_COLUMNS: usize = 5;
const GROUP_COLUMNS: usize = 9;

fn insert_keys_sql(rows: usize) -> String {
    let mut sql = String::from("INSERT INTO decision_keys (key, first_micros, batch_id) VALUES ");
    crate::placeholders::push_rows(&mut sql, 1, rows, KEY_COLUMNS, None);
    sql
}

fn insert_pages_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO decision_pages (recipient, policy_revision, to_sequence, from_sequence, \
         batch_id) VALUES ",
    );
    crate::placeholders::push_rows(&mut sql, 1, rows, PAGE_COLUMNS, None);
    sql.push_str(" ON CONFLICT DO NOTHING");
    sql
}

/// The pages to note: empty ones and ones wider than [`MAX_PAGE_SPAN`] dropped, each page
/// once (of those that end at the same place, the conflict clause keeps the first inserted,
/// which starts earliest).
pub(crate) fn distinct_pages(pages: &[DecidedPage]) -> Vec<&DecidedPage> {
    let mut sorted: Vec<&DecidedPage> = pages
        .iter()
        .filter(|page| page.after < page.to && page.to - page.after <= MAX_PAGE_SPAN)
        .collect();
    sorted.sort();
    sorted.dedup_by(|later, earlier| {
        (&later.recipient, &later.policy_revision, later.to)
            == (&earlier.recipient, &earlier.policy_revision, earlier.to)
    });
    sorted
}

/// Decisions stored in the transaction of a publish ([`crate::Store::publish_decided`]):
/// `rows`, and for each part of the published batch (one caller's publish, of a group commit)
/// how many indicators it holds and which of `rows` it decided, so that the pages noted for
/// each part cover its own events.
#[derive(Debug, Default)]
pub(crate) struct WithPublish {
    pub rows: Vec<DecisionRow>,
    pub parts: Vec<(usize, std::ops::Range<usize>)>,
}

impl WithPublish {
    /// The decisions of one caller's publish of `indicators` indicators.
    pub(crate) fn single(indicators: usize, rows: Vec<DecisionRow>) -> WithPublish {
        let parts = vec![(indicators, 0..rows.len())];
        WithPublish { rows, parts }
    }

    /// Adds the decisions of the next caller's publish, of `indicators` indicators.
    pub(crate) fn push(&mut self, indicators: usize, rows: Vec<DecisionRow>) {
        let start = self.rows.len();
        self.rows.extend(rows);
        self.parts.push((indicators, start..self.rows.len()));
    }

    /// The pages the decisions cover, the batch's first event being `first`: each part's
    /// events, for each recipient and revision it decided.
    pub(crate) fn pages(&self, first: u64) -> Vec<DecidedPage> {
        let mut pages = Vec::new();
        let mut after = first.saturating_sub(1);
        for (indicators, rows) in &self.parts {
            let to = after + *indicators as u64;
            let mut seen = std::collections::BTreeSet::new();
            for row in &self.rows[rows.clone()] {
                if seen.insert((row.recipient.as_str(), row.policy_revision.as_str())) {
                    pages.push(DecidedPage {
                        recipient: row.recipient.clone(),
                        policy_revision: row.policy_revision.clone(),
                        after,
                        to,
                    });
                }
            }
            after = to;
        }
        pages
    }
}

/// Decisions encoded for a write, before its transaction starts (so that it does nothing but
/// insert): the batches, the oversight counts and the audit entry's forms.
pub(crate) struct Encoded<'a> {
    batches: Vec<packed::Batch>,
    groups: Vec<(packed::GroupKey, (i64, i64, i64))>,
    forms: Vec<cordon_tlog::entry::DecisionForm<'a>>,
}

impl<'a> Encoded<'a> {
    /// Refuses repeated decision ids, naming one.
    pub(crate) fn of(rows: &'a [DecisionRow]) -> Result<Encoded<'a>, StorageError> {
        reject_duplicates_within(rows)?;
        let mut forms: Vec<cordon_tlog::entry::DecisionForm<'_>> =
            rows.iter().map(decision_form).collect();
        forms.sort_by(|a, b| a.decision_id.as_bytes().cmp(b.decision_id.as_bytes()));
        Ok(Encoded {
            batches: packed::batches(rows)?,
            groups: packed::group_counts(rows).into_iter().collect(),
            forms,
        })
    }

    /// The write's entry in the audit log.
    pub(crate) fn entry(&self) -> cordon_tlog::Entry {
        cordon_tlog::Entry::decisions(&self.forms)
    }
}

/// [`sqlite_decisions::write_encoded`] on the writer's own handle ([`crate::direct`]).
pub(crate) fn write_encoded_direct(
    db: &rusqlite::Connection,
    encoded: &Encoded<'_>,
    position: Option<u64>,
    pages: &[&DecidedPage],
) -> Result<(), StorageError> {
    use crate::direct::{Values, blob, execute, failed, int, numbered, text};
    use crate::placeholders::ROWS_PER_STATEMENT;
    let position = position.map(crate::values::sequence_to_database);
    for batch in &encoded.batches {
        let values: Values<'_> = vec![
            int(batch.first_micros),
            int(batch.last_micros),
            position.map_or(
                rusqlite::types::ToSqlOutput::Owned(rusqlite::types::Value::Null),
                int,
            ),
            int(batch.decisions),
            blob(&batch.body),
        ];
        let batch_id: i64 = db
            .query_row(
                &numbered(INSERT_BATCH),
                rusqlite::params_from_iter(values.iter()),
                |row| row.get(0),
            )
            .map_err(failed("record a decision batch"))?;
        for chunk in batch.keys.chunks(ROWS_PER_STATEMENT) {
            let mut values = Values::with_capacity(chunk.len() * KEY_COLUMNS);
            for key in chunk {
                values.extend([text(key), int(batch.first_micros), int(batch_id)]);
            }
            execute(
                db,
                &insert_keys_sql(chunk.len()),
                &values,
                "index a decision batch",
            )?;
        }
        for chunk in pages.chunks(ROWS_PER_STATEMENT) {
            let mut values = Values::with_capacity(chunk.len() * PAGE_COLUMNS);
            for page in chunk {
                values.extend([
                    text(&page.recipient),
                    text(&page.policy_revision),
                    int(crate::values::sequence_to_database(page.to)),
                    int(crate::values::sequence_to_database(page.after)),
                    int(batch_id),
                ]);
            }
            execute(
                db,
                &insert_pages_sql(chunk.len()),
                &values,
                "note a decision batch's pages",
            )?;
        }
    }
    for chunk in encoded.groups.chunks(ROWS_PER_STATEMENT) {
        let mut values = Values::with_capacity(chunk.len() * GROUP_COLUMNS);
        for ((recipient, channel, revision, allow, redacted, failed), counts) in chunk {
            values.extend([
                text(recipient),
                text(channel),
                text(revision),
                int(i64::from(*allow)),
                int(i64::from(*redacted)),
                int(i64::from(*failed)),
                int(counts.0),
                int(counts.1),
                int(counts.2),
            ]);
        }
        execute(
            db,
            &upsert_groups_sql(chunk.len(), "min", "max"),
            &values,
            "count decisions for oversight",
        )?;
    }
    Ok(())
}

/// Adds each group's decisions to its counts (`least`/`greatest` are the backend's two-argument
/// minimum and maximum).
fn upsert_groups_sql(rows: usize, least: &str, greatest: &str) -> String {
    let mut sql = String::from(
        "INSERT INTO decision_groups (recipient, channel, policy_revision, allow, redacted, \
         failed, count, first_micros, last_micros) VALUES ",
    );
    crate::placeholders::push_rows(&mut sql, 1, rows, GROUP_COLUMNS, None);
    let _ = write!(
        sql,
        " ON CONFLICT (recipient, channel, policy_revision, allow, redacted, failed) DO UPDATE \
         SET count = decision_groups.count + excluded.count, \
         first_micros = {least}(decision_groups.first_micros, excluded.first_micros), \
         last_micros = {greatest}(decision_groups.last_micros, excluded.last_micros)"
    );
    sql
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
        purged_batches = $purged_batches:expr,
        least = $least:literal,
        greatest = $greatest:literal,
        audit = $audit:ident $(,)?
    ) => {
        pub(crate) mod $module {
            use sqlx::{AssertSqlSafe, Pool};

            use super::*;
            use crate::backend::Backend;

            type Database = $database;
            type Transaction<'c> = sqlx::Transaction<'c, Database>;
            type Connection = <Database as sqlx::Database>::Connection;
            const BACKEND: Backend = $backend;

            fn failed(action: &str) -> impl FnOnce(sqlx::Error) -> StorageError + '_ {
                move |error| StorageError::from_sqlx(BACKEND, action, error)
            }

            /// Stores `rows` as batches (usually one) under one audit entry, with their key
            /// rows and the oversight counts, in one transaction.
            pub(crate) async fn record(
                pool: &Pool<Database>,
                audit: &crate::audit::KeptEdge,
                rows: &[DecisionRow],
                pages: &[DecidedPage],
            ) -> Result<(), StorageError> {
                if rows.is_empty() {
                    return Ok(());
                }
                let encoded = Encoded::of(rows)?;
                let pages = distinct_pages(pages);
                let mut transaction = pool
                    .begin_with($begin_write)
                    .await
                    .map_err(failed("begin record decisions transaction"))?;
                // The write's entry in the audit log first (it takes the head row, for its
                // `audit_size` only), so that each batch names the entry that covers it.
                let mut edge = audit.begin();
                let position = crate::audit::$audit::append(
                    &mut transaction,
                    &mut edge,
                    &[encoded.entry()],
                )
                .await?;
                // On an error the transaction is dropped, which rolls it back.
                write_encoded(&mut transaction, &encoded, position, &pages).await?;
                transaction
                    .commit()
                    .await
                    .map_err(failed("commit record decisions transaction"))?;
                edge.committed();
                Ok(())
            }

            /// Writes `encoded` in the caller's transaction, under the audit entry at
            /// `position` (appended by the caller: `None` with the log switched off), noting
            /// `pages`.
            pub(crate) async fn write_encoded(
                connection: &mut Connection,
                encoded: &Encoded<'_>,
                position: Option<u64>,
                pages: &[&DecidedPage],
            ) -> Result<(), StorageError> {
                let position = position.map(crate::values::sequence_to_database);
                for batch in &encoded.batches {
                    let batch_id: i64 = sqlx::query_scalar(INSERT_BATCH)
                        .bind(batch.first_micros)
                        .bind(batch.last_micros)
                        .bind(position)
                        .bind(batch.decisions)
                        .bind(batch.body.as_slice())
                        .fetch_one(&mut *connection)
                        .await
                        .map_err(failed("record a decision batch"))?;
                    insert_keys(connection, &batch.keys, batch.first_micros, batch_id).await?;
                    insert_pages(connection, pages, batch_id).await?;
                }
                for chunk in encoded.groups.chunks(crate::placeholders::ROWS_PER_STATEMENT) {
                    let mut query = sqlx::query(AssertSqlSafe(crate::placeholders::dialect(
                        BACKEND,
                        upsert_groups_sql(chunk.len(), $least, $greatest),
                    )));
                    for ((recipient, channel, revision, allow, redacted, failed), counts) in chunk {
                        query = query
                            .bind(recipient.as_str())
                            .bind(channel.as_str())
                            .bind(revision.as_str())
                            .bind(*allow)
                            .bind(*redacted)
                            .bind(*failed)
                            .bind(counts.0)
                            .bind(counts.1)
                            .bind(counts.2);
                    }
                    query
                        .execute(&mut *connection)
                        .await
                        .map_err(failed("count decisions for oversight"))?;
                }
                Ok(())
            }

            async fn insert_keys(
                connection: &mut Connection,
                keys: &[String],
                first_micros: i64,
                batch_id: i64,
            ) -> Result<(), StorageError> {
                for chunk in keys.chunks(crate::placeholders::ROWS_PER_STATEMENT) {
                    let mut query = sqlx::query(AssertSqlSafe(crate::placeholders::dialect(
                        BACKEND,
                        insert_keys_sql(chunk.len()),
                    )));
                    for key in chunk {
                        query = query.bind(key.as_str()).bind(first_micros).bind(batch_id);
                    }
                    query
                        .execute(&mut *connection)
                        .await
                        .map_err(failed("index a decision batch"))?;
                }
                Ok(())
            }

            async fn insert_pages(
                connection: &mut Connection,
                pages: &[&DecidedPage],
                batch_id: i64,
            ) -> Result<(), StorageError> {
                for chunk in pages.chunks(crate::placeholders::ROWS_PER_STATEMENT) {
                    let mut query = sqlx::query(AssertSqlSafe(crate::placeholders::dialect(
                        BACKEND,
                        insert_pages_sql(chunk.len()),
                    )));
                    for page in chunk {
                        query = query
                            .bind(page.recipient.as_str())
                            .bind(page.policy_revision.as_str())
                            .bind(crate::values::sequence_to_database(page.to))
                            .bind(crate::values::sequence_to_database(page.after))
                            .bind(batch_id);
                    }
                    query
                        .execute(&mut *connection)
                        .await
                        .map_err(failed("note a decision batch's pages"))?;
                }
                Ok(())
            }

            /// The stored decisions of `recipient` under `policy_revision` made at or after
            /// `since_micros` on events after `after` up to `to`, as far as writes noted their
            /// pages (in no order).
            pub(crate) async fn page_decisions(
                pool: &Pool<Database>,
                recipient: &str,
                policy_revision: &str,
                (after, to): (u64, u64),
                since_micros: i64,
            ) -> Result<Vec<DecisionRow>, StorageError> {
                let batches: Vec<(i64, Vec<u8>)> = sqlx::query_as(SELECT_PAGE_BATCHES)
                    .bind(recipient)
                    .bind(policy_revision)
                    .bind(crate::values::sequence_to_database(after))
                    .bind(crate::values::sequence_to_database(to))
                    .bind(crate::values::sequence_to_database(
                        to.saturating_add(MAX_PAGE_SPAN + 1),
                    ))
                    .fetch_all(pool)
                    .await
                    .map_err(failed("read the decisions of a page"))?;
                let mut rows = Vec::new();
                for (batch_id, body) in batches {
                    rows.extend(
                        packed::decode_where(batch_id, &body, Some(recipient), None)?
                            .into_iter()
                            .filter(|row| {
                                row.policy_revision == policy_revision
                                    && row.at_micros >= since_micros
                            }),
                    );
                }
                Ok(rows)
            }

            /// The decisions covered by the audit log's entry at `position` (in no order: the
            /// caller sorts them by decision id, the order the entry's digest covers).
            pub(crate) async fn at_audit_position(
                pool: &Pool<Database>,
                position: u64,
            ) -> Result<Vec<DecisionRow>, StorageError> {
                let position = crate::values::sequence_to_database(position);
                let rows = sqlx::query_as::<_, DecisionColumns>(AssertSqlSafe(format!(
                    "{SELECT_COLUMNS} WHERE audit_position = $1"
                )))
                .bind(position)
                .fetch_all(pool)
                .await
                .map_err(failed("read the decisions of an audit entry"))?;
                let mut rows = rows
                    .into_iter()
                    .map(decode_row)
                    .collect::<Result<Vec<_>, _>>()?;
                let batches: Vec<(i64, Vec<u8>)> = sqlx::query_as(SELECT_AUDITED_BATCHES)
                    .bind(position)
                    .fetch_all(pool)
                    .await
                    .map_err(failed("read the decision batches of an audit entry"))?;
                for (batch_id, body) in batches {
                    rows.extend(packed::decode(batch_id, &body)?);
                }
                Ok(rows)
            }

            /// Rows stored before the compact form (migration 0009), in the keyset order.
            async fn select_rows(
                pool: &Pool<Database>,
                query: &DecisionQuery,
            ) -> Result<Vec<DecisionRow>, StorageError> {
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

            /// Reads the rows stored before the compact form, then batches in the order of
            /// their first decision's time (those naming the indicator, else the recipient,
            /// when the query names one), until no later batch can hold a decision of the
            /// page ([`packed::Page`]).
            pub(crate) async fn select(
                pool: &Pool<Database>,
                query: &DecisionQuery,
            ) -> Result<Vec<DecisionRow>, StorageError> {
                if query.limit == 0 {
                    return Ok(Vec::new());
                }
                let limit = usize::try_from(effective_limit(query.limit)).unwrap_or(usize::MAX);
                let mut page = packed::Page::new(query, limit);
                page.offer(select_rows(pool, query).await?);
                let key = match (&query.indicator_id, &query.recipient) {
                    (Some(indicator_id), _) => Some(packed::indicator_key(indicator_id)),
                    (None, Some(recipient)) => Some(packed::recipient_key(recipient)),
                    (None, None) => None,
                };
                let mut after = (packed::scan_from(query), i64::MIN);
                // A batch a concurrent purge rewrote moves later and may be met again.
                let mut seen = HashSet::new();
                loop {
                    let chunk: Vec<(i64, i64, Vec<u8>)> = match &key {
                        Some(key) => {
                            sqlx::query_as(SELECT_KEYED_BATCHES)
                                .bind(key.as_str())
                                .bind(after.0)
                                .bind(after.1)
                                .bind(BATCHES_PER_READ)
                                .fetch_all(pool)
                                .await
                        }
                        None => {
                            sqlx::query_as(SELECT_BATCHES)
                                .bind(after.0)
                                .bind(after.1)
                                .bind(BATCHES_PER_READ)
                                .fetch_all(pool)
                                .await
                        }
                    }
                    .map_err(failed("read decision batches"))?;
                    let full = chunk.len() as i64 >= BATCHES_PER_READ;
                    for (batch_id, first_micros, body) in chunk {
                        if !page.wants(first_micros) {
                            return Ok(page.into_rows());
                        }
                        after = (first_micros, batch_id);
                        if !seen.insert(batch_id) {
                            continue;
                        }
                        page.offer(packed::decode_where(
                            batch_id,
                            &body,
                            query.recipient.as_deref(),
                            query.indicator_id.as_deref(),
                        )?);
                    }
                    if !full {
                        return Ok(page.into_rows());
                    }
                }
            }

            /// Deletes in chunks of [`DECISIONS_PER_PURGE`] rows stored before the compact
            /// form, then of [`BATCHES_PER_PURGE`] batches, one transaction each, until a
            /// chunk deletes nothing (not merely fewer: a purge by another replica may have
            /// taken part of it while more remains). A batch that straddles the cutoff is
            /// rewritten with the decisions it keeps.
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
                        break;
                    }
                    purged += deleted;
                }
                loop {
                    let mut transaction = pool
                        .begin_with($begin_write)
                        .await
                        .map_err(failed("begin purge decisions transaction"))?;
                    let deleted = purge_batches(&mut transaction, cutoff_micros).await?;
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

            async fn delete_batch(
                transaction: &mut Transaction<'_>,
                batch_id: i64,
            ) -> Result<(), StorageError> {
                for statement in [DELETE_PAGES, DELETE_BATCH] {
                    sqlx::query(statement)
                        .bind(batch_id)
                        .execute(&mut **transaction)
                        .await
                        .map_err(failed("purge a decision batch"))?;
                }
                Ok(())
            }

            async fn purge_batches(
                transaction: &mut Transaction<'_>,
                cutoff_micros: i64,
            ) -> Result<u64, StorageError> {
                let chunk: Vec<(i64, i64, i64, Vec<u8>)> = sqlx::query_as($purged_batches)
                    .bind(cutoff_micros)
                    .bind(BATCHES_PER_PURGE)
                    .fetch_all(&mut **transaction)
                    .await
                    .map_err(failed("read decision batches to purge"))?;
                let mut deleted = 0;
                let mut gone = Vec::new();
                for (batch_id, first_micros, last_micros, body) in chunk {
                    let rows = match packed::decode(batch_id, &body) {
                        Ok(rows) => rows,
                        // Unreadable and wholly past the cutoff: deleted as it would have
                        // been (its keys stay, pointing at nothing, and its counts stay).
                        // Unreadable and not wholly past: the purge stops here, as on any
                        // storage error, until it is.
                        Err(error) if last_micros < cutoff_micros => {
                            tracing::error!(%error, batch_id, "purging an unreadable decision batch");
                            delete_batch(transaction, batch_id).await?;
                            deleted += 1;
                            continue;
                        }
                        Err(error) => return Err(error),
                    };
                    for key in packed::keys_of(&rows) {
                        sqlx::query(DELETE_KEY)
                            .bind(key.as_str())
                            .bind(first_micros)
                            .bind(batch_id)
                            .execute(&mut **transaction)
                            .await
                            .map_err(failed("purge a decision batch's keys"))?;
                    }
                    let (old, kept): (Vec<DecisionRow>, Vec<DecisionRow>) = rows
                        .into_iter()
                        .partition(|row| row.at_micros < cutoff_micros);
                    deleted += old.len() as u64;
                    gone.extend(old);
                    // What a batch keeps spans no more than it did: one batch.
                    match packed::batches(&kept)?.pop() {
                        None => delete_batch(transaction, batch_id).await?,
                        Some(rest) => {
                            sqlx::query(REWRITE_BATCH)
                                .bind(rest.first_micros)
                                .bind(rest.last_micros)
                                .bind(rest.decisions)
                                .bind(rest.body.as_slice())
                                .bind(batch_id)
                                .execute(&mut **transaction)
                                .await
                                .map_err(failed("rewrite a decision batch"))?;
                            insert_keys(&mut **transaction, &rest.keys, rest.first_micros, batch_id)
                                .await?;
                        }
                    }
                }
                for ((recipient, channel, revision, allow, redacted, failed_), counts) in
                    packed::group_counts(&gone)
                {
                    sqlx::query(SHRINK_GROUP)
                        .bind(counts.0)
                        .bind(cutoff_micros)
                        .bind(recipient)
                        .bind(channel)
                        .bind(revision)
                        .bind(allow)
                        .bind(redacted)
                        .bind(failed_)
                        .execute(&mut **transaction)
                        .await
                        .map_err(failed("uncount purged decisions"))?;
                }
                if deleted > 0 {
                    sqlx::query(DROP_EMPTY_GROUPS)
                        .execute(&mut **transaction)
                        .await
                        .map_err(failed("drop empty decision groups"))?;
                }
                Ok(deleted)
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
    purged_batches = SQLITE_PURGED_BATCHES,
    least = "min",
    greatest = "max",
    audit = sqlite_audit,
);
decision_operations!(
    postgres_decisions,
    sqlx::Postgres,
    Backend::Postgres,
    begin_write = "BEGIN",
    purge_chunk = POSTGRES_PURGE_CHUNK,
    purged_batches = POSTGRES_PURGED_BATCHES,
    least = "LEAST",
    greatest = "GREATEST",
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
        assert!(
            insert_keys_sql(2).ends_with("VALUES ($1, $2, $3), ($4, $5, $6)"),
            "{}",
            insert_keys_sql(2)
        );
        let upsert = upsert_groups_sql(1, "min", "max");
        assert!(
            upsert.contains("VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT"),
            "{upsert}"
        );
        assert!(
            upsert.contains("min(decision_groups.first_micros"),
            "{upsert}"
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
    fn lists_stored_before_the_compact_form_read_back() {
        let list = vec![
            String::new(),
            "source.contact".to_owned(),
            "quote \" comma , backslash \\ newline \n é 🦀".to_owned(),
        ];
        let text = serde_json::to_string(&list).expect("encode");
        assert_eq!(decode_list(&text, "redact", "d"), Ok(list));
        assert_eq!(decode_list("[]", "redact", "d"), Ok(Vec::new()));
        assert!(matches!(
            decode_list("{\"a\":1}", "reasons", "d"),
            Err(StorageError::Database(message)) if message.contains("decision d has a reasons")
        ));
    }
}
