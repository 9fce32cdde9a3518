//! A caller's collection: the STIX objects of what the feed releases to it, in feed order,
//! after the objects every view starts with (Cordon's vocabulary and the members'
//! identities).
//!
//! Paging: `next` is `{at}.{skip}`: the objects of the events from sequence `at` on (0: the
//! vocabulary first), less the first `skip` objects of the event at `at`. Events are read and
//! released a page at a time through [`GatewayState::release_page`], so every object served
//! was decided for the caller and its decision stored before the response.
//!
//! Versions: a retracted indicator has two, the one published and the revoked one (at the
//! retraction's place in the feed, `modified` the retraction's time). `match[version]=last`
//! (the default) serves only the revoked one, `first` only the one published, `all` both.
//! `date_added` is the time of the feed event (its publication, receipt or retraction).

use std::collections::{HashMap, HashSet};

use cordon_proto::v1::{Indicator, event};
use cordon_stix::Export;
use cordon_storage::{EventBody, StoredEvent};
use serde_json::Value;

use super::{DEFAULT_PAGE, MAX_PAGE, Taxii, TaxiiError};
use crate::identity::Identity;
use crate::metrics::RateLimitedCall;
use crate::status::storage_status;

/// Events read per storage page while filling a page of objects.
const EVENTS_PER_READ: usize = 1_000;

/// Where a page starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub at: u64,
    pub skip: usize,
}

impl Cursor {
    fn parse(text: &str) -> Option<Cursor> {
        let (at, skip) = text.split_once('.')?;
        Some(Cursor {
            at: at.parse().ok()?,
            skip: skip.parse().ok()?,
        })
    }

    fn token(self) -> String {
        format!("{}.{}", self.at, self.skip)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Versions {
    #[default]
    Last,
    First,
    All,
    /// Objects whose version (`modified`, else `created`) is one of these.
    At(Vec<i64>),
}

/// The parameters of a get-objects or manifest request.
#[derive(Clone, Debug)]
pub struct Query {
    pub limit: usize,
    pub next: Option<Cursor>,
    /// Only objects added after this time (microseconds).
    pub added_after: Option<i64>,
    pub ids: Option<HashSet<String>>,
    pub types: Option<HashSet<String>>,
    pub version: Versions,
    pub spec_versions: Option<HashSet<String>>,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            limit: DEFAULT_PAGE,
            next: None,
            added_after: None,
            ids: None,
            types: None,
            version: Versions::Last,
            spec_versions: None,
        }
    }
}

fn micros_of_text(text: &str) -> Option<i64> {
    crate::clock::parse_rfc3339(text).map(|t| crate::clock::micros_of(&t))
}

impl Query {
    pub fn parse(query: Option<&str>) -> Result<Query, TaxiiError> {
        let mut parsed = Query::default();
        let list = |value: &str| -> HashSet<String> {
            value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(String::from)
                .collect()
        };
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match key.as_ref() {
                "limit" => {
                    parsed.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|l| *l > 0)
                        .ok_or_else(|| {
                            TaxiiError::bad_request(format!(
                                "limit: {value:?} is not a positive integer"
                            ))
                        })?
                        .min(MAX_PAGE);
                }
                "next" => {
                    parsed.next = Some(Cursor::parse(&value).ok_or_else(|| {
                        TaxiiError::bad_request(format!(
                            "next: {value:?} is not a token this server gave"
                        ))
                    })?);
                }
                "added_after" => {
                    parsed.added_after = Some(micros_of_text(&value).ok_or_else(|| {
                        TaxiiError::bad_request(format!(
                            "added_after: {value:?} is not an RFC 3339 timestamp"
                        ))
                    })?);
                }
                "match[id]" => parsed.ids = Some(list(&value)),
                "match[type]" => parsed.types = Some(list(&value)),
                "match[spec_version]" => parsed.spec_versions = Some(list(&value)),
                "match[version]" => {
                    let values = list(&value);
                    parsed.version = if values.contains("all") {
                        Versions::All
                    } else if values.contains("last") {
                        Versions::Last
                    } else if values.contains("first") {
                        Versions::First
                    } else {
                        let mut at = Vec::new();
                        for v in &values {
                            at.push(micros_of_text(v).ok_or_else(|| {
                                TaxiiError::bad_request(format!(
                                    "match[version]: {v:?} is not last, first, all or a timestamp"
                                ))
                            })?);
                        }
                        Versions::At(at)
                    };
                }
                other if other.starts_with("match[") => {
                    return Err(TaxiiError::bad_request(format!(
                        "{other}: not supported (match[id], match[type], match[version], \
                         match[spec_version])"
                    )));
                }
                _ => {}
            }
        }
        Ok(parsed)
    }

    fn accepts(&self, object: &Value, added_micros: i64) -> bool {
        if self.added_after.is_some_and(|after| added_micros <= after) {
            return false;
        }
        let field = |name: &str| object[name].as_str().unwrap_or_default().to_string();
        if self
            .types
            .as_ref()
            .is_some_and(|t| !t.contains(&field("type")))
        {
            return false;
        }
        if self.ids.as_ref().is_some_and(|i| !i.contains(&field("id"))) {
            return false;
        }
        if self
            .spec_versions
            .as_ref()
            .is_some_and(|s| !s.contains(object["spec_version"].as_str().unwrap_or("2.1")))
        {
            return false;
        }
        if let Versions::At(at) = &self.version {
            let version = object["modified"]
                .as_str()
                .or(object["created"].as_str())
                .and_then(micros_of_text);
            if !version.is_some_and(|v| at.contains(&v)) {
                return false;
            }
        }
        true
    }
}

/// One object of the view and when it was added.
#[derive(Clone, Debug)]
pub struct Item {
    pub object: Value,
    pub added_micros: i64,
}

impl Item {
    pub fn date_added(&self) -> String {
        taxii_timestamp(self.added_micros)
    }

    /// `modified`, else `created`, else (for observables, which have neither) `date_added`.
    pub fn version(&self) -> String {
        self.object["modified"]
            .as_str()
            .or(self.object["created"].as_str())
            .map_or_else(|| self.date_added(), String::from)
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ssssssZ`, microsecond precision.
pub fn taxii_timestamp(micros: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|at| at.format(&format).ok())
        .unwrap_or_default()
}

#[derive(Debug)]
pub struct Page {
    pub items: Vec<Item>,
    pub more: bool,
    pub next: Option<String>,
}

impl Page {
    pub fn date_range(&self) -> (Option<String>, Option<String>) {
        (
            self.items
                .iter()
                .map(|i| i.added_micros)
                .min()
                .map(taxii_timestamp),
            self.items
                .iter()
                .map(|i| i.added_micros)
                .max()
                .map(taxii_timestamp),
        )
    }
}

/// When Cordon's vocabulary was defined: the `date_added` of the objects every view starts with.
fn vocabulary_micros() -> i64 {
    micros_of_text(cordon_stix::objects::DEFINED).unwrap_or(0)
}

/// The objects every view starts with.
pub fn prefix(members: &[String]) -> Vec<Value> {
    let mut objects = cordon_stix::objects::vocabulary();
    objects.extend(
        members
            .iter()
            .map(|m| cordon_stix::objects::member_identity(m)),
    );
    objects
}

/// One page of `caller`'s view.
pub async fn page(taxii: &Taxii, caller: &Identity, query: &Query) -> Result<Page, TaxiiError> {
    let limit = query.limit;
    let start = query.next.unwrap_or_default();
    let mut items = Vec::new();
    if start.at == 0 {
        let added = vocabulary_micros();
        for (k, object) in prefix(&taxii.members)
            .into_iter()
            .enumerate()
            .skip(start.skip)
        {
            if !query.accepts(&object, added) {
                continue;
            }
            if items.len() == limit {
                let next = Cursor { at: 0, skip: k };
                return Ok(Page {
                    items,
                    more: true,
                    next: Some(next.token()),
                });
            }
            items.push(Item {
                object,
                added_micros: added,
            });
        }
    }
    let mut after = start.at.saturating_sub(1);
    // Objects per event, to read no more events than the page can take (every event read is
    // decided and logged): three (observable, indicator, relationship) until a read says.
    let mut per_event = if query.types.is_some() || query.ids.is_some() {
        1.0
    } else {
        3.0
    };
    loop {
        let remaining = limit - items.len();
        let want = ((remaining as f64 / per_event).ceil() as usize).clamp(1, EVENTS_PER_READ);
        let before = items.len();
        let batch = taxii
            .state
            .store
            .read_after(after, u32::try_from(want).unwrap_or(u32::MAX), &[])
            .await
            .map_err(storage_status)?;
        let full = batch.events.len() >= want;
        for (sequence, added, objects) in
            release(taxii, caller, batch.events, &query.version).await?
        {
            for (k, object) in objects.into_iter().enumerate() {
                if sequence == start.at && k < start.skip {
                    continue;
                }
                if !query.accepts(&object, added) {
                    continue;
                }
                if items.len() == limit {
                    let next = Cursor {
                        at: sequence,
                        skip: k,
                    };
                    return Ok(Page {
                        items,
                        more: true,
                        next: Some(next.token()),
                    });
                }
                items.push(Item {
                    object,
                    added_micros: added,
                });
            }
        }
        after = batch.scanned_to.max(after);
        if items.len() > before {
            per_event = (items.len() - before) as f64 / want as f64;
        }
        if !full {
            return Ok(Page {
                items,
                more: false,
                next: None,
            });
        }
    }
}

/// The STIX objects of each released event of `events`: (sequence, added, objects).
async fn release(
    taxii: &Taxii,
    caller: &Identity,
    events: Vec<StoredEvent>,
    versions: &Versions,
) -> Result<Vec<(u64, i64, Vec<Value>)>, TaxiiError> {
    let state = &taxii.state;
    let added: HashMap<u64, i64> = events.iter().map(|e| (e.sequence, e.at_micros)).collect();
    // Under `last`, an indicator retracted since is served at its retraction only.
    let retracted: HashSet<u64> = if *versions == Versions::Last {
        let published: Vec<u64> = events
            .iter()
            .filter(|e| matches!(e.body, EventBody::Published { .. }))
            .map(|e| e.sequence)
            .collect();
        state
            .store
            .indicators_at(&published)
            .await
            .map_err(storage_status)?
            .into_iter()
            .filter(|stored| stored.retracted)
            .map(|stored| stored.sequence)
            .collect()
    } else {
        HashSet::new()
    };
    let released = state
        .release_page(std::slice::from_ref(caller), events)
        .await?
        .pop()
        .unwrap_or_default();
    let mut out = Vec::with_capacity(released.len());
    for delivered in released {
        let sequence = delivered.event.sequence;
        let at = added.get(&sequence).copied().unwrap_or_default();
        match &delivered.event.body {
            Some(event::Body::Published(published)) => {
                if retracted.contains(&sequence) {
                    continue;
                }
                let Some(indicator) = &published.indicator else {
                    continue;
                };
                if let Some(objects) = stix_objects(indicator, &published.redacted, None) {
                    out.push((sequence, at, objects));
                }
            }
            Some(event::Body::Retracted(retraction)) => {
                if *versions == Versions::First {
                    continue;
                }
                let Some(objects) =
                    revoked(taxii, caller, &retraction.indicator_id, sequence, at).await?
                else {
                    continue;
                };
                // Under `all` the observable came with the published version already.
                let objects = if *versions == Versions::All {
                    objects
                        .into_iter()
                        .filter(|o| !o["type"].as_str().unwrap_or_default().starts_with("salw-"))
                        .collect()
                } else {
                    objects
                };
                out.push((sequence, at, objects));
            }
            _ => {}
        }
    }
    Ok(out)
}

/// The revoked version of a retracted indicator, as released to `caller` now (decided and
/// logged like any release): `None` if the policy no longer releases it.
async fn revoked(
    taxii: &Taxii,
    caller: &Identity,
    indicator_id: &str,
    sequence: u64,
    at: i64,
) -> Result<Option<Vec<Value>>, TaxiiError> {
    let state = &taxii.state;
    let Some(stored) = state
        .store
        .indicator(indicator_id)
        .await
        .map_err(storage_status)?
    else {
        return Ok(None);
    };
    let again = StoredEvent {
        sequence,
        at_micros: at,
        kind: stored.kind.clone(),
        body: EventBody::Published {
            indicator_id: stored.id.clone(),
            originator: stored.originator.clone(),
            payload: stored.payload.clone(),
        },
    };
    let released = state
        .release_page(std::slice::from_ref(caller), vec![again])
        .await?
        .pop()
        .unwrap_or_default();
    let revoked_at = taxii_timestamp(at);
    Ok(released
        .into_iter()
        .find_map(|delivered| match &delivered.event.body {
            Some(event::Body::Published(published)) => published
                .indicator
                .as_ref()
                .and_then(|i| stix_objects(i, &published.redacted, Some(&revoked_at))),
            _ => None,
        }))
}

/// The STIX objects of one released indicator; `None` (logged) if it cannot be mapped, for
/// example when every observable property was withheld.
fn stix_objects(
    indicator: &Indicator,
    withheld: &[String],
    revoked_at: Option<&str>,
) -> Option<Vec<Value>> {
    let json = match serde_json::to_value(indicator) {
        Ok(json) => json,
        Err(error) => {
            tracing::error!(%error, id = %indicator.id, "indicator does not serialise");
            return None;
        }
    };
    match cordon_stix::to_stix(
        &json,
        Export {
            withheld,
            revoked_at,
        },
    ) {
        Ok(objects) => Some(objects),
        Err(error) => {
            tracing::info!(%error, id = %indicator.id, "indicator left out of the TAXII view");
            None
        }
    }
}

/// Every version of the object `object_id` in `caller`'s view that `query.version` selects:
/// the vocabulary's objects and indicators are addressable by id (observables and
/// relationships are found by paging with `match[id]`).
pub async fn object_versions(
    taxii: &Taxii,
    caller: &Identity,
    object_id: &str,
    query: &Query,
) -> Result<Vec<Item>, TaxiiError> {
    let not_found = || {
        TaxiiError::not_found(format!(
            "no object {object_id} in this collection (observables and relationships are \
             found by paging with match[id])"
        ))
    };
    if let Some(object) = prefix(&taxii.members)
        .into_iter()
        .find(|o| o["id"] == object_id)
    {
        let item = Item {
            object,
            added_micros: vocabulary_micros(),
        };
        return Ok(select(vec![item], query));
    }
    let candidates = cordon_stix::cordon_id_candidates(object_id);
    let Some(first) = candidates.first() else {
        return Err(not_found());
    };
    let state = &taxii.state;
    state
        .rates
        .admit(RateLimitedCall::Get, caller, &state.metrics)?;
    // Ask for the candidate that is stored (or the first, which stores a deny as for any
    // absent id): the same work whether the caller may see it or not.
    let mut chosen = first.clone();
    for candidate in &candidates {
        if state
            .store
            .indicator(candidate)
            .await
            .map_err(storage_status)?
            .is_some()
        {
            chosen = candidate.clone();
            break;
        }
    }
    let response = match state.get(caller, chosen.clone()).await {
        Ok(response) => response,
        Err(status) if status.code() == tonic::Code::NotFound => return Err(not_found()),
        Err(status) => return Err(status.into()),
    };
    let Some(indicator) = response.indicator else {
        return Err(not_found());
    };
    if cordon_stix::indicator_id(&indicator.id) != object_id {
        return Err(not_found());
    }
    let created = indicator
        .created
        .as_ref()
        .map(crate::clock::micros_of)
        .unwrap_or_default();
    let only_indicator =
        |objects: Vec<Value>| objects.into_iter().find(|o| o["type"] == "indicator");
    let mut items = Vec::new();
    if let Some(object) =
        stix_objects(&indicator, &response.redacted, None).and_then(only_indicator)
    {
        items.push(Item {
            object,
            added_micros: created,
        });
    }
    if response.retracted
        && let Some(retraction) = state
            .store
            .audit_retraction(&indicator.id)
            .await
            .map_err(storage_status)?
    {
        let revoked_at = taxii_timestamp(retraction.at_micros);
        if let Some(object) =
            stix_objects(&indicator, &response.redacted, Some(&revoked_at)).and_then(only_indicator)
        {
            items.push(Item {
                object,
                added_micros: retraction.at_micros,
            });
        }
    }
    if items.is_empty() {
        return Err(not_found());
    }
    Ok(select(items, query))
}

/// The versions (oldest first) that `query.version` selects.
fn select(mut items: Vec<Item>, query: &Query) -> Vec<Item> {
    match &query.version {
        Versions::All => items,
        Versions::Last => items.pop().into_iter().collect(),
        Versions::First => items.into_iter().take(1).collect(),
        Versions::At(_) => items
            .into_iter()
            .filter(|item| query.accepts(&item.object, item.added_micros))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use serde_json::json;

    #[test]
    fn queries_read_every_parameter_and_name_the_bad_one() {
        let q = Query::parse(Some(
            "limit=5&next=12.3&added_after=2026-11-01T00:00:00Z&match%5Btype%5D=indicator,salw-vessel\
             &match[id]=indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f&match[version]=all",
        ))
        .unwrap();
        assert_eq!(q.limit, 5);
        assert_eq!(q.next, Some(Cursor { at: 12, skip: 3 }));
        assert_eq!(q.added_after, micros_of_text("2026-11-01T00:00:00Z"));
        assert_eq!(q.types.as_ref().map(HashSet::len), Some(2));
        assert_eq!(q.version, Versions::All);
        assert_eq!(Query::parse(Some("limit=99999")).unwrap().limit, MAX_PAGE);
        for (bad, named) in [
            ("limit=0", "limit"),
            ("limit=x", "limit"),
            ("next=abc", "next"),
            ("added_after=yesterday", "added_after"),
            ("match[version]=soon", "match[version]"),
            ("match[color]=red", "match[color]"),
        ] {
            let error = Query::parse(Some(bad)).unwrap_err();
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
        let types = Query::parse(Some("match[type]=salw-vessel")).unwrap();
        assert!(!types.accepts(&object, at));
        let version = Query::parse(Some("match[version]=2026-11-02T00:00:00.000Z")).unwrap();
        assert!(version.accepts(&object, at));
        let other = Query::parse(Some("match[version]=2026-11-01T00:00:00.000Z")).unwrap();
        assert!(!other.accepts(&object, at));
    }

    #[test]
    fn taxii_timestamps_have_microseconds() {
        assert_eq!(taxii_timestamp(1_000_001), "1970-01-01T00:00:01.000001Z");
    }
}
