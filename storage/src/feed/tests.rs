//! The feed's SQL builders and write plans.

use super::*;
use crate::model::{EventBody, StoredEvent};

fn event(sequence: u64) -> StoredEvent {
    StoredEvent {
        sequence,
        at_micros: 0,
        kind: "ip".to_owned(),
        body: EventBody::Retracted {
            indicator_id: "a".to_owned(),
            originator: "GH".to_owned(),
            reason: "test".to_owned(),
            signature: None,
        },
    }
}

fn check_scanned_to(after: u64, limit: u32, head: u64, sequences: &[u64], expected: u64) {
    let events = sequences.iter().copied().map(event).collect();
    let batch = batch_scanned_to(after, limit, head, events);
    assert_eq!(
        batch.scanned_to, expected,
        "after {after}, limit {limit}, head {head}, events {sequences:?}"
    );
}

#[test]
fn scanned_to_stops_at_the_last_event_of_a_full_batch() {
    check_scanned_to(0, 2, 10, &[3, 7], 7);
    check_scanned_to(0, 3, 10, &[3, 7], 10);
    check_scanned_to(4, 3, 10, &[], 10);
    check_scanned_to(12, 3, 10, &[], 12);
    check_scanned_to(0, 1, 0, &[], 0);
}

#[test]
fn insert_sql_numbers_every_column() {
    assert_eq!(
        insert_published_events_sql(2),
        "INSERT INTO events (sequence, event_type, kind, indicator_id, originator, payload, at_micros) VALUES \
         ($1, 'published', $2, $3, $4, $5, $6), ($7, 'published', $8, $9, $10, $11, $12)"
    );
}

#[test]
fn retraction_insert_sql_numbers_every_column() {
    assert_eq!(
        insert_retracted_events_sql(2),
        "INSERT INTO events (sequence, event_type, kind, indicator_id, originator, reason, at_micros, signature) VALUES \
         ($1, 'retracted', $2, $3, $4, $5, $6, $7), ($8, 'retracted', $9, $10, $11, $12, $13, $14)"
    );
}

#[test]
fn value_lists_number_from_their_first_parameter() {
    let copy = copy_published_indicators_sql(2);
    assert!(
        copy.contains("JOIN (VALUES ($1, $2, $3), ($4, $5, $6)) AS v"),
        "{copy}"
    );
    assert!(
        copy.contains("WHERE e.sequence >= $7 AND e.sequence <= $8"),
        "{copy}"
    );
    let mark = mark_superseded_sql(2);
    assert!(
        mark.contains("(VALUES ($1, $2, $3), ($4, $5, $6)) AS v"),
        "{mark}"
    );
    assert!(select_known_indicators_sql(3).ends_with("WHERE id IN ($1, $2, $3)"));
    assert!(mark_many_retracted_sql(1).ends_with("AND id IN ($1)"));
}

#[test]
fn read_sql_filters_kinds_from_the_third_parameter() {
    let sql = read_after_sql(2);
    assert!(
        sql.contains("AND kind IN ($3, $4) ORDER BY sequence LIMIT $2"),
        "{sql}"
    );
    assert!(!read_after_sql(0).contains("kind IN"));
}

#[test]
fn kinds_are_sorted_without_repeats() {
    let kinds = ["url", "ip", "url"].map(String::from);
    assert_eq!(distinct_kinds(&kinds), ["ip", "url"]);
}

#[test]
fn cursors_beyond_the_database_range_saturate() {
    assert_eq!(sequence_to_database(u64::MAX), i64::MAX);
    assert_eq!(sequence_to_database(42), 42);
    assert!(sequence_from_database(-1, "feed head").is_err());
}

fn published(id: &str, originator: &str, supersedes: Option<&str>) -> Received {
    Received::Published(NewIndicator {
        id: id.to_owned(),
        originator: originator.to_owned(),
        kind: "ip".to_owned(),
        created_micros: 1,
        payload: Vec::new(),
        supersedes: supersedes.map(str::to_owned),
        via: Some("peer".to_owned()),
    })
}

fn retracted(id: &str, originator: &str) -> Received {
    Received::Retracted {
        indicator_id: id.to_owned(),
        originator: originator.to_owned(),
        reason: "withdrawn".to_owned(),
        at_micros: 2,
        signature: None,
    }
}

fn stored(originator: &str, retracted: bool) -> KnownIndicator {
    KnownIndicator {
        originator: originator.to_owned(),
        kind: "url".to_owned(),
        retracted,
        payload: Vec::new(),
    }
}

fn strings(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

#[test]
fn receive_plan_applies_items_in_order() {
    let items = [
        published("old", "A", None),
        published("new", "A", Some("old")),
        published("new", "A", None),
        published("later", "A", Some("after")),
        published("after", "A", None),
        published("foreign", "B", Some("kept")),
        published("itself", "A", Some("itself")),
        retracted("new", "A"),
        retracted("new", "A"),
        retracted("kept", "B"),
        retracted("gone", "A"),
        retracted("kept", "A"),
    ];
    let known = HashMap::from([
        ("kept".to_owned(), stored("A", false)),
        ("gone".to_owned(), stored("A", true)),
    ]);
    let plan = plan_receive(&items, known, 10).expect("plan");
    assert_eq!(
        plan.outcome,
        ReceiveOutcome {
            stored: vec![
                ("old".to_owned(), 11),
                ("new".to_owned(), 12),
                ("later".to_owned(), 13),
                ("after".to_owned(), 14),
                ("foreign".to_owned(), 15),
                ("itself".to_owned(), 16),
            ],
            duplicates: strings(&["new"]),
            conflicts: Vec::new(),
            retracted: vec![("new".to_owned(), 17), ("kept".to_owned(), 18)],
            ignored_retractions: strings(&["new", "kept", "gone"]),
        }
    );
    assert_eq!(plan.head, 18);
    let published: Vec<(i64, &str)> = plan
        .published
        .iter()
        .map(|(sequence, item)| (*sequence, item.id.as_str()))
        .collect();
    assert_eq!(
        published,
        [
            (11, "old"),
            (12, "new"),
            (13, "later"),
            (14, "after"),
            (15, "foreign"),
            (16, "itself")
        ]
    );
    // Only "old": "after" was not stored yet when "later" revised it, "kept" is of another
    // originator, and an indicator never supersedes itself.
    assert_eq!(
        plan.supersedes,
        [Supersede {
            old: "old",
            originator: "A",
            new: "new"
        }]
    );
    let retractions: Vec<(i64, &str, &str)> = plan
        .retractions
        .iter()
        .map(|retraction| {
            (
                retraction.sequence,
                retraction.indicator_id,
                retraction.kind.as_str(),
            )
        })
        .collect();
    assert_eq!(retractions, [(17, "new", "ip"), (18, "kept", "url")]);
}

#[test]
fn a_different_indicator_under_a_held_id_is_a_conflict_not_a_duplicate() {
    let with = |id: &str, originator: &str, payload: &[u8]| {
        Received::Published(NewIndicator {
            id: id.to_owned(),
            originator: originator.to_owned(),
            kind: "ip".to_owned(),
            created_micros: 1,
            payload: payload.to_vec(),
            supersedes: None,
            via: Some("peer".to_owned()),
        })
    };
    let mut held = stored("A", false);
    held.payload = b"original".to_vec();
    let known = HashMap::from([("x".to_owned(), held)]);
    let items = [
        with("x", "A", b"original"),
        with("x", "B", b"original"),
        with("x", "A", b"altered"),
        with("y", "A", b"first"),
        with("y", "A", b"second"),
    ];
    let plan = plan_receive(&items, known, 0).expect("plan");
    assert_eq!(plan.outcome.duplicates, strings(&["x"]));
    assert_eq!(plan.outcome.conflicts, strings(&["x", "x", "y"]));
    assert_eq!(plan.outcome.stored, vec![("y".to_owned(), 1)]);
}

#[test]
fn receive_plan_of_nothing_keeps_the_head() {
    let plan = plan_receive(&[], HashMap::new(), 7).expect("plan");
    assert_eq!(plan.head, 7);
    assert_eq!(plan.outcome, ReceiveOutcome::default());
    let duplicates = [published("a", "A", None)];
    let plan = plan_receive(
        &duplicates,
        HashMap::from([("a".to_owned(), stored("A", false))]),
        7,
    )
    .expect("plan");
    assert_eq!(plan.head, 7);
    assert_eq!(plan.outcome.duplicates, strings(&["a"]));
}

#[test]
fn referenced_ids_cover_revised_and_retracted_ids_once() {
    let items = [
        published("b", "A", Some("a")),
        retracted("c", "A"),
        published("a", "A", None),
    ];
    assert_eq!(referenced_ids(&items), ["a", "b", "c"]);
}

#[test]
fn the_latest_revision_of_each_originator_wins() {
    let revision = |old, originator, new| Supersede {
        old,
        originator,
        new,
    };
    let latest = latest_supersedes([
        revision("x", "A", "x2"),
        revision("x", "B", "y"),
        revision("z", "A", "z2"),
        revision("x", "A", "x3"),
    ]);
    assert_eq!(
        latest,
        [
            revision("x", "B", "y"),
            revision("z", "A", "z2"),
            revision("x", "A", "x3"),
        ]
    );
}
