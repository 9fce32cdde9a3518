//! Placeholders: the style per backend, and rows of them for multi-row statements.
//!
//! The SQL is written once with PostgreSQL's numbered `$N` placeholders, which sqlx's SQLite
//! driver also accepts. But for every parameter of a statement sqlx asks SQLite for its name
//! (`sqlite3_bind_parameter_name`), which walks SQLite's list of names: binding a statement with
//! n named parameters costs O(n²). For multi-row inserts with thousands of parameters that was
//! most of a busy gateway's CPU (61% in one profile). Anonymous `?` parameters have no name, so
//! on SQLite the generated statements whose placeholders run `$1, $2, … $n` in order, each once,
//! are rewritten to `?`, which binds identically in O(n).

use std::fmt::Write as _;

use crate::backend::Backend;

/// `sql` in the placeholder style that binds fastest on `backend`.
pub(crate) fn dialect(backend: Backend, sql: String) -> String {
    match backend {
        Backend::Postgres => sql,
        Backend::Sqlite => anonymous_if_in_order(sql),
    }
}

/// Rewrites `$1 … $n` to `?` when they appear in exactly that order, each once; otherwise
/// (a placeholder repeated or out of order) returns `sql` unchanged, still correct.
fn anonymous_if_in_order(sql: String) -> String {
    let bytes = sql.as_bytes();
    let mut rewritten = String::with_capacity(sql.len());
    let mut expected = 1u64;
    let mut index = 0;
    let mut copied_from = 0;
    while index < bytes.len() {
        if bytes[index] == b'$' {
            let digits = bytes[index + 1..]
                .iter()
                .take_while(|byte| byte.is_ascii_digit())
                .count();
            if digits > 0 {
                let number: u64 = match sql[index + 1..index + 1 + digits].parse() {
                    Ok(number) => number,
                    Err(_) => return sql,
                };
                if number != expected {
                    return sql;
                }
                expected += 1;
                rewritten.push_str(&sql[copied_from..index]);
                rewritten.push('?');
                index += 1 + digits;
                copied_from = index;
                continue;
            }
        }
        index += 1;
    }
    rewritten.push_str(&sql[copied_from..]);
    rewritten
}

/// Rows per multi-row statement: at most 7 binds x 500 rows stays far below the bind limits of
/// both backends (SQLite 32766, PostgreSQL 65535) while a usual batch (100) is one statement.
pub(crate) const ROWS_PER_STATEMENT: usize = 500;

/// Appends `rows` rows of `columns` placeholders each, numbered from `$first`:
/// `($1, $2), ($3, $4)`. If `literal` is set, it is put as the second value of every row (the
/// event type of an event row).
pub(crate) fn push_rows(
    sql: &mut String,
    first: usize,
    rows: usize,
    columns: usize,
    literal: Option<&str>,
) {
    for row in 0..rows {
        if row > 0 {
            sql.push_str(", ");
        }
        sql.push('(');
        for column in 0..columns {
            if column > 0 {
                sql.push_str(", ");
            }
            // Writing into a String cannot fail.
            let _ = write!(sql, "${}", first + row * columns + column);
            if column == 0
                && let Some(literal) = literal
            {
                let _ = write!(sql, ", {literal}");
            }
        }
        sql.push(')');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_placeholders_become_anonymous_on_sqlite_only() {
        let sql = "INSERT INTO t (a, b, c) VALUES ($1, 'x', $2), ($3, 'x', $4)".to_string();
        assert_eq!(
            dialect(Backend::Sqlite, sql.clone()),
            "INSERT INTO t (a, b, c) VALUES (?, 'x', ?), (?, 'x', ?)"
        );
        assert_eq!(dialect(Backend::Postgres, sql.clone()), sql);
        assert_eq!(
            dialect(Backend::Sqlite, "VALUES ($1, $2), ($3, $10)".into()),
            "VALUES ($1, $2), ($3, $10)",
            "a gap keeps the numbers"
        );
    }

    #[test]
    fn repeated_or_reordered_placeholders_are_kept() {
        for sql in [
            "SELECT * FROM t WHERE a > $1 AND b IN ($3, $4) LIMIT $2",
            "SELECT * FROM t WHERE a = $1 OR b = $1",
            "SELECT * FROM t WHERE a = $2",
        ] {
            assert_eq!(dialect(Backend::Sqlite, sql.to_string()), sql);
        }
        assert_eq!(dialect(Backend::Sqlite, "SELECT 1".into()), "SELECT 1");
        assert_eq!(
            dialect(
                Backend::Sqlite,
                "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11".into()
            ),
            "SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"
        );
    }
}
