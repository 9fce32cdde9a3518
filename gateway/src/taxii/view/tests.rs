//! Queries, paging tokens, filters and timestamps of the TAXII view.

use super::*;
use axum::http::StatusCode;
use serde_json::json;

fn key() -> &'static ring::hmac::Key {
    static KEY: std::sync::OnceLock<ring::hmac::Key> = std::sync::OnceLock::new();
    KEY.get_or_init(|| ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"test key"))
}

fn parse(query: Option<&str>) -> Result<Query, TaxiiError> {
    Query::parse(query, key(), "CI")
}

#[test]
fn next_tokens_verify_only_for_the_caller_they_were_given_to() {
    let token = Cursor { at: 12, skip: 3 }.token(key(), "CI");
    let next = Cursor::parse(&token, key(), "CI").unwrap();
    assert_eq!(next.cursor, Cursor { at: 12, skip: 3 });
    assert_eq!(next.token, token);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(next.issued) <= 5, "issued {}", next.issued);
    assert_eq!(Cursor::parse(&token, key(), "NG"), None);
    let other_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"another gateway");
    assert_eq!(Cursor::parse(&token, &other_key, "CI"), None);
    let moved = token.replacen("12.3", "0.0", 1);
    assert_eq!(Cursor::parse(&moved, key(), "CI"), None);
    assert_eq!(Cursor::parse("12.3", key(), "CI"), None);
}

#[test]
fn queries_read_every_parameter_and_name_the_bad_one() {
    let next = Cursor { at: 12, skip: 3 }.token(key(), "CI");
    let q = parse(Some(&format!(
        "limit=5&next={next}&added_after=2026-11-01T00:00:00Z&match%5Btype%5D=indicator,salw-vessel\
         &match[id]=indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f&match[version]=all"
    )))
    .unwrap();
    assert_eq!(q.limit, 5);
    assert_eq!(
        q.next.map(|next| next.cursor),
        Some(Cursor { at: 12, skip: 3 })
    );
    assert_eq!(q.added_after, micros_of_text("2026-11-01T00:00:00Z"));
    assert_eq!(q.types.as_ref().map(HashSet::len), Some(2));
    assert_eq!(q.version, Versions::All);
    assert_eq!(parse(Some("limit=99999")).unwrap().limit, MAX_PAGE);
    for (bad, named) in [
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("next=abc", "next"),
        ("added_after=yesterday", "added_after"),
        ("match[version]=soon", "match[version]"),
        ("match[color]=red", "match[color]"),
    ] {
        let error = parse(Some(bad)).unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert!(
            error.description.contains(named),
            "{bad}: {}",
            error.description
        );
    }
}

#[test]
fn filters_select_by_time_type_id_and_version() {
    let object = json!({"type": "indicator", "id": "indicator--1", "spec_version": "2.1",
                        "created": "2026-11-01T00:00:00.000Z", "modified": "2026-11-02T00:00:00.000Z"});
    let at = micros_of_text("2026-11-03T00:00:00Z").unwrap();
    let all = Query::default();
    assert!(all.accepts(&object, at));
    let later = Query {
        added_after: Some(at),
        ..Query::default()
    };
    assert!(!later.accepts(&object, at));
    let types = parse(Some("match[type]=salw-vessel")).unwrap();
    assert!(!types.accepts(&object, at));
    let version = parse(Some("match[version]=2026-11-02T00:00:00.000Z")).unwrap();
    assert!(version.accepts(&object, at));
    let other = parse(Some("match[version]=2026-11-01T00:00:00.000Z")).unwrap();
    assert!(!other.accepts(&object, at));
}

#[test]
fn taxii_timestamps_have_microseconds() {
    assert_eq!(taxii_timestamp(1_000_001), "1970-01-01T00:00:01.000001Z");
}
