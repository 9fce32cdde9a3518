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
use crate::feed::GatewayState;
use crate::identity::Identity;
use crate::metrics::RateLimitedCall;
use crate::status::storage_status;

/// Events read per storage page while filling a page of objects.
const EVENTS_PER_READ: usize = 1_000;
/// Events one request reads at most: a filter matching little ends the page early.
const MAX_EVENTS_PER_REQUEST: usize = 10_000;

/// Where a page starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    pub at: u64,
    pub skip: usize,
}

/// A `next` token as a request gave it: where it resumes, when it was given (Unix seconds),
/// and the token itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Next {
    pub cursor: Cursor,
    pub issued: u64,
    pub token: String,
}

impl Cursor {
    /// A token this gateway gave `caller`: `{at}.{skip}.{issued}.{mac}`, the MAC over the
    /// caller, the position and the time it was given (a forged or another caller's token
    /// does not verify).
    fn parse(text: &str, key: &ring::hmac::Key, caller: &str) -> Option<Next> {
        let (signed, mac) = text.rsplit_once('.')?;
        let mac = hex::decode(mac).ok()?;
        ring::hmac::verify(key, format!("{caller}\n{signed}").as_bytes(), &mac).ok()?;
        let mut parts = signed.split('.');
        let cursor = Cursor {
            at: parts.next()?.parse().ok()?,
            skip: parts.next()?.parse().ok()?,
        };
        let issued = parts.next()?.parse().ok()?;
        parts.next().is_none().then(|| Next {
            cursor,
            issued,
            token: text.to_string(),
        })
    }

    fn token(self, key: &ring::hmac::Key, caller: &str) -> String {
        let issued = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let signed = format!("{}.{}.{issued}", self.at, self.skip);
        let mac = ring::hmac::sign(key, format!("{caller}\n{signed}").as_bytes());
        format!("{signed}.{}", hex::encode(mac.as_ref()))
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
    pub next: Option<Next>,
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
    /// The query of `caller`'s request; `next` must be a token given to `caller` (signed with
    /// `tokens`).
    pub fn parse(
        query: Option<&str>,
        tokens: &ring::hmac::Key,
        caller: &str,
    ) -> Result<Query, TaxiiError> {
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
                    parsed.next = Some(Cursor::parse(&value, tokens, caller).ok_or_else(|| {
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
            // An observable has neither: its version is its date_added (as in the manifest).
            let version = match object["modified"].as_str().or(object["created"].as_str()) {
                Some(text) => micros_of_text(text),
                None => Some(added_micros),
            };
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

/// The `date_added` of the objects every view starts with: before any event, so that a client
/// resuming with `added_after` the first page's last date misses no event.
fn vocabulary_micros() -> i64 {
    0
}

/// When an event was added, as `date_added` says: its time, but never later than now (a
/// peer's clock, or a retraction it dated, cannot push clients' `added_after` past what is
/// still to come).
fn added_micros(event: &StoredEvent, now: i64) -> i64 {
    event.at_micros.min(now)
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
pub async fn page(
    taxii: &Taxii,
    state: &GatewayState,
    caller: &Identity,
    query: &Query,
) -> Result<Page, TaxiiError> {
    let limit = query.limit;
    let start = query
        .next
        .as_ref()
        .map(|next| next.cursor)
        .unwrap_or_default();
    let caller_name = caller.to_string();
    let token = |cursor: Cursor| Some(cursor.token(&taxii.tokens, &caller_name));
    let mut items = Vec::new();
    if start.at == 0 {
        let added = vocabulary_micros();
        for (k, object) in taxii.prefix.iter().enumerate().skip(start.skip) {
            if !query.accepts(object, added) {
                continue;
            }
            if items.len() == limit {
                return Ok(Page {
                    items,
                    more: true,
                    next: token(Cursor { at: 0, skip: k }),
                });
            }
            items.push(Item {
                object: object.clone(),
                added_micros: added,
            });
        }
    }
    let mut after = start.at.saturating_sub(1);
    let mut scanned = 0usize;
    // Objects per event, to read no more events than the page can take (every event read is
    // decided and logged): three (observable, indicator, relationship) until a read says.
    let mut per_event = if query.types.is_some() || query.ids.is_some() {
        1.0
    } else {
        3.0
    };
    loop {
        // One request reads a bounded part of the feed: a filter that matches little ends the
        // page early, with `more` and where to go on.
        if scanned >= MAX_EVENTS_PER_REQUEST {
            return Ok(Page {
                items,
                more: true,
                next: token(Cursor {
                    at: after + 1,
                    skip: 0,
                }),
            });
        }
        // At least one object is still wanted: a full page reads on to learn whether more
        // follows.
        let remaining = (limit - items.len()).max(1);
        let want = ((remaining as f64 / per_event).ceil() as usize)
            .clamp(1, EVENTS_PER_READ)
            .min(MAX_EVENTS_PER_REQUEST - scanned);
        let before = items.len();
        let batch = state
            .store
            .read_after(after, u32::try_from(want).unwrap_or(u32::MAX), &[])
            .await
            .map_err(storage_status)?;
        scanned += batch.events.len().max(1);
        let full = batch.events.len() >= want;
        for (sequence, added, objects) in release(state, caller, batch.events, query).await? {
            for (k, object) in objects.into_iter().enumerate() {
                if sequence == start.at && k < start.skip {
                    continue;
                }
                if !query.accepts(&object, added) {
                    continue;
                }
                if items.len() == limit {
                    return Ok(Page {
                        items,
                        more: true,
                        next: token(Cursor {
                            at: sequence,
                            skip: k,
                        }),
                    });
                }
                items.push(Item {
                    object,
                    added_micros: added,
                });
            }
        }
        after = batch.scanned_to.max(after);
        per_event = if items.len() > before {
            (items.len() - before) as f64 / want as f64
        } else {
            // Nothing came of that read (withheld, filtered out): read more at a time.
            (per_event / 2.0).max(1.0 / EVENTS_PER_READ as f64)
        };
        if !full {
            return Ok(Page {
                items,
                more: false,
                next: None,
            });
        }
    }
}

/// Whether an event can give an object `query` selects, judged before it is decided (so that
/// what the filters drop is neither decided nor logged): its time against `added_after`, its
/// indicator against `match[id]` when every id asked for is an indicator's, and its kind
/// (publication or retraction) against `match[version]`.
fn may_match(query: &Query, event: &StoredEvent, added: i64, retracted: &HashSet<u64>) -> bool {
    if query.added_after.is_some_and(|after| added <= after) {
        return false;
    }
    let (indicator_id, published) = match &event.body {
        EventBody::Published { indicator_id, .. } => (indicator_id, true),
        EventBody::Retracted { indicator_id, .. } => (indicator_id, false),
    };
    if let Some(ids) = &query.ids
        && ids.iter().all(|id| id.starts_with("indicator--"))
        && !ids.contains(&cordon_stix::indicator_id(indicator_id))
    {
        return false;
    }
    match query.version {
        Versions::Last => !(published && retracted.contains(&event.sequence)),
        Versions::First => published,
        Versions::All | Versions::At(_) => true,
    }
}

/// The STIX objects of each released event of `events` that `query` may select:
/// (sequence, added, objects).
async fn release(
    state: &GatewayState,
    caller: &Identity,
    events: Vec<StoredEvent>,
    query: &Query,
) -> Result<Vec<(u64, i64, Vec<Value>)>, TaxiiError> {
    let versions = &query.version;
    let now = crate::clock::now_micros();
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
    let events: Vec<StoredEvent> = events
        .into_iter()
        .filter(|e| may_match(query, e, added_micros(e, now), &retracted))
        .collect();
    let added: HashMap<u64, i64> = events
        .iter()
        .map(|e| (e.sequence, added_micros(e, now)))
        .collect();
    // A retraction is served as the revoked version of the indicator, released to the caller
    // now (whether or not it read the version published: under `last` it never does).
    let (retractions, publications): (Vec<StoredEvent>, Vec<StoredEvent>) = events
        .into_iter()
        .partition(|e| matches!(e.body, EventBody::Retracted { .. }));
    let released = if publications.is_empty() {
        Vec::new()
    } else {
        state
            .release_page(std::slice::from_ref(caller), publications)
            .await?
            .pop()
            .unwrap_or_default()
    };
    let mut out = Vec::with_capacity(released.len() + retractions.len());
    for delivered in released {
        let sequence = delivered.event.sequence;
        let at = added.get(&sequence).copied().unwrap_or_default();
        if let Some(event::Body::Published(published)) = &delivered.event.body
            && let Some(indicator) = &published.indicator
            && let Some(objects) = stix_objects(indicator, &published.redacted, None)
        {
            out.push((sequence, at, objects));
        }
    }
    for retraction in retractions {
        let EventBody::Retracted { indicator_id, .. } = &retraction.body else {
            continue;
        };
        let sequence = retraction.sequence;
        let at = added.get(&sequence).copied().unwrap_or_default();
        let Some(objects) = revoked(state, caller, indicator_id, sequence, at).await? else {
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
    out.sort_by_key(|(sequence, _, _)| *sequence);
    Ok(out)
}

/// The revoked version of a retracted indicator, as released to `caller` now (decided and
/// logged like any release): `None` if the policy no longer releases it.
async fn revoked(
    state: &GatewayState,
    caller: &Identity,
    indicator_id: &str,
    sequence: u64,
    at: i64,
) -> Result<Option<Vec<Value>>, TaxiiError> {
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
    Ok(released
        .into_iter()
        .find_map(|delivered| match &delivered.event.body {
            Some(event::Body::Published(published)) => published
                .indicator
                .as_ref()
                .and_then(|i| stix_objects(i, &published.redacted, Some(at))),
            _ => None,
        }))
}

/// The STIX objects of one released indicator; `None` (logged) if it cannot be mapped, for
/// example when every observable property was withheld.
/// `revoked`: the retraction's time; the revoked version's `modified`, never before `created`.
fn stix_objects(
    indicator: &Indicator,
    withheld: &[String],
    revoked: Option<i64>,
) -> Option<Vec<Value>> {
    let created = indicator
        .created
        .as_ref()
        .map(crate::clock::micros_of)
        .unwrap_or_default();
    let revoked_at = revoked.map(|at| taxii_timestamp(at.max(created)));
    let revoked_at = revoked_at.as_deref();
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
    state: &GatewayState,
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
    if let Some(object) = taxii.prefix.iter().find(|o| o["id"] == object_id) {
        let item = Item {
            object: object.clone(),
            added_micros: vocabulary_micros(),
        };
        return Ok(select(vec![item], query));
    }
    let candidates = cordon_stix::cordon_id_candidates(object_id);
    let Some(first) = candidates.first() else {
        return Err(not_found());
    };
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
        && let Some(object) =
            stix_objects(&indicator, &response.redacted, Some(retraction.at_micros))
                .and_then(only_indicator)
    {
        items.push(Item {
            object,
            added_micros: retraction.at_micros.min(crate::clock::now_micros()),
        });
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
mod tests;
