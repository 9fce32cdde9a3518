//! Helpers for tests elsewhere in the workspace that need a PostgreSQL database
//! of their own, without naming sqlx.

use sqlx::{Connection, PgConnection};

use crate::StorageError;

/// Creates a fresh schema in the database at `base_url` and returns a URL whose
/// connections use it (`options=-csearch_path=…`), so that a gateway process
/// started with that URL runs its migrations and keeps its feed there.
/// The schema is left in place: CI drops the whole per-run database.
pub async fn fresh_postgres_schema(base_url: &str, label: &str) -> Result<String, StorageError> {
    let clean_label: String = label
        .chars()
        .filter(|character| character.is_ascii_alphanumeric() || *character == '_')
        .take(24)
        .collect::<String>()
        .to_ascii_lowercase();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    let schema = format!("t_{clean_label}_{}_{nanos}", std::process::id());
    let mut connection = PgConnection::connect(base_url).await.map_err(|error| {
        StorageError::Unavailable(format!("connecting to the test database: {error}"))
    })?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
        .execute(&mut connection)
        .await
        .map_err(|error| {
            StorageError::Database(format!("creating test schema {schema}: {error}"))
        })?;
    let _ = connection.close().await;
    let separator = if base_url.contains('?') { '&' } else { '?' };
    Ok(format!(
        "{base_url}{separator}options=-csearch_path%3D{schema}"
    ))
}
