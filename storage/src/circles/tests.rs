//! Preparing circle writes.

use super::*;
use crate::model::NewIndicator;

#[test]
fn the_last_change_of_each_key_wins() {
    let changes = [
        ("a", Some(1)),
        ("b", Some(2)),
        ("a", None),
        ("c", None),
        ("c", Some(3)),
        ("d", None),
    ];
    let (sets, deletes) = last_changes(changes.into_iter());
    assert_eq!(sets, [("b", 2), ("c", 3)]);
    assert_eq!(deletes, ["a", "d"]);
}

#[test]
fn statements_number_every_column() {
    assert_eq!(
        upsert_values_sql(2),
        "INSERT INTO mls_kv (key, value) VALUES ($1, $2), ($3, $4) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    );
    assert_eq!(
        delete_values_sql(3),
        "DELETE FROM mls_kv WHERE key IN ($1, $2, $3)"
    );
    assert!(
        insert_key_packages_sql(2)
            .ends_with("VALUES ($1, $2, $3, $4, $5, $6), ($7, $8, $9, $10, $11, $12)")
    );
    assert!(upsert_departures_sql(2).contains("VALUES ($1, $2, $3), ($4, $5, $6) ON CONFLICT"));
    assert_eq!(
        delete_departures_sql(2),
        "DELETE FROM circle_departures WHERE (circle, member) IN (VALUES ($1, $2), ($3, $4))"
    );
}

#[test]
fn a_write_is_checked_before_its_transaction() {
    let orphans = CircleWrite {
        indicators: vec![NewIndicator {
            id: "a".to_owned(),
            originator: "A".to_owned(),
            kind: "ip".to_owned(),
            created_micros: 1,
            payload: Vec::new(),
            supersedes: None,
            via: None,
        }],
        ..CircleWrite::default()
    };
    assert!(matches!(
        prepare(&orphans),
        Err(StorageError::Database(message)) if message.contains("indicators_circle")
    ));
    let huge = CircleWrite {
        departures: vec![("c".to_owned(), "m".to_owned(), Some(u64::MAX))],
        ..CircleWrite::default()
    };
    assert!(prepare(&huge).is_err());
    assert!(prepare(&CircleWrite::default()).is_ok());
}
