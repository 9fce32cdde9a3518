//! The `cordon.v1.IndicatorService` gRPC service: publish, retract, subscribe
//! and get, each for the identity of the verified client certificate.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cordon_indicator::Limits;
use cordon_proto::v1::indicator_service_server::IndicatorService;
use cordon_proto::v1::{
    Accepted, Checkpoint, Event, GetRequest, GetResponse, Indicator, IndicatorKind, PublishRequest,
    PublishResponse, Published, RetractRequest, RetractResponse, Retracted, SubscribeRequest,
    event,
};
use cordon_storage::{
    DecisionQuery, EventBody, MAX_DECISIONS_PER_QUERY, NewIndicator, Store, StoredEvent,
};
use futures::Stream;
use prost::Message;
use tonic::{Request, Response, Status};

use crate::decision_log::DecisionLog;
use crate::identity::Identity;
use crate::metrics::{Metrics, StorageOperation};
use crate::release::{Channel, DecisionRecord, Releaser};
use crate::signing::SigningKey;
use crate::status::{invalid_batch, invalid_field, storage_status};

/// Events read from storage per page of a subscription.
const SUBSCRIBE_PAGE: u32 = 1024;

/// What every request handler shares.
#[derive(Debug)]
pub struct GatewayState {
    pub member: String,
    pub federation: String,
    pub store: Store,
    pub releaser: Arc<Releaser>,
    pub decision_log: DecisionLog,
    pub signing_key: Arc<SigningKey>,
    pub limits: Limits,
    /// Turns true when the gateway stops: following streams end (UNAVAILABLE,
    /// clients resume from their cursor) so that shutdown does not wait on them.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
    /// Open subscriptions per identity, bounded by [`MAX_SUBSCRIPTIONS_PER_IDENTITY`].
    pub open_subscriptions: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    /// Aggregate counters for the admin listener (the releaser records into the same).
    pub metrics: Arc<Metrics>,
    /// The MLS circles this gateway hubs or belongs to.
    pub circles: Arc<crate::circle::Circles>,
}

/// Open subscriptions one identity may hold at once: enough for a gateway's
/// followers and an agency's tools, not enough to exhaust the gateway.
pub const MAX_SUBSCRIPTIONS_PER_IDENTITY: usize = 64;

/// Holds one of an identity's subscription slots until the stream ends.
struct SubscriptionSlot {
    identity: String,
    open: Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
}

impl SubscriptionSlot {
    fn take(state: &GatewayState, identity: &Identity) -> Result<SubscriptionSlot, Status> {
        let key = identity.to_string();
        let mut open = state
            .open_subscriptions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = open.entry(key.clone()).or_default();
        if *count >= MAX_SUBSCRIPTIONS_PER_IDENTITY {
            return Err(Status::resource_exhausted(format!(
                "{identity} already has {MAX_SUBSCRIPTIONS_PER_IDENTITY} open subscriptions"
            )));
        }
        *count += 1;
        Ok(SubscriptionSlot {
            identity: key,
            open: state.open_subscriptions.clone(),
        })
    }
}

impl Drop for SubscriptionSlot {
    fn drop(&mut self) {
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = open.get_mut(&self.identity) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.identity);
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct IndicatorApi {
    state: Arc<GatewayState>,
}

impl IndicatorApi {
    pub fn new(state: Arc<GatewayState>) -> Self {
        IndicatorApi { state }
    }
}

/// The caller, from the certificate rustls verified. No request field can name it.
pub fn caller<T>(request: &Request<T>, federation: &str) -> Result<Identity, Status> {
    let certificates = request
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    let leaf = certificates
        .first()
        .ok_or_else(|| Status::unauthenticated("a client certificate is required"))?;
    Identity::from_verified_certificate(leaf, federation)
        .map_err(|error| Status::permission_denied(format!("client certificate refused: {error}")))
}

fn now_timestamp() -> pbjson_types::Timestamp {
    timestamp_of(SystemTime::now())
}

pub(crate) fn timestamp_of(at: SystemTime) -> pbjson_types::Timestamp {
    let elapsed = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    pbjson_types::Timestamp {
        seconds: elapsed.as_secs() as i64,
        nanos: elapsed.subsec_nanos() as i32,
    }
}

fn timestamp_from_micros(micros: i64) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

/// Microseconds since the epoch, saturating: a timestamp from the network never overflows.
pub(crate) fn micros_of(timestamp: &pbjson_types::Timestamp) -> i64 {
    timestamp
        .seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(timestamp.nanos / 1000))
}

/// Now, in Unix microseconds (as stored).
pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_micros() as i64)
        .unwrap_or_default()
}

/// RFC 3339 `now` for `input.context.now`.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The channel of a release: `federation` when it crosses a federation hop (a
/// partner gateway receives it, or it came from another member), else `subscribe`.
pub fn channel_for(originator: &str, recipient: &Identity, own_member: &str) -> Channel {
    match recipient {
        Identity::Member { .. } => Channel::Federation,
        Identity::Agency { .. } if originator != own_member => Channel::Federation,
        Identity::Agency { .. } => Channel::Subscribe,
    }
}

impl GatewayState {
    fn require_own_agency(&self, caller: &Identity, action: &str) -> Result<(), Status> {
        if caller.is_agency_of(&self.member) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "{action} is for agencies of member {}; {caller} is not one",
                self.member
            )))
        }
    }

    fn decode(&self, payload: &[u8]) -> Result<Indicator, Status> {
        Indicator::decode(payload).map_err(|error| {
            tracing::error!(%error, "stored indicator does not decode");
            Status::internal("stored indicator does not decode; see the gateway log")
        })
    }

    async fn publish(
        &self,
        caller: &Identity,
        indicators: Vec<Indicator>,
    ) -> Result<PublishResponse, Status> {
        self.require_own_agency(caller, "publishing")?;
        let warnings = cordon_indicator::validate_batch(&indicators, &self.limits)
            .map_err(|errors| invalid_batch(&errors))?;
        // A revision must name an indicator of this member that exists.
        for (index, indicator) in indicators.iter().enumerate() {
            if indicator.supersedes.is_empty() {
                continue;
            }
            match self
                .store
                .indicator(&indicator.supersedes)
                .await
                .map_err(storage_status)?
            {
                Some(old) if old.originator == self.member => {}
                Some(_) => {
                    return Err(invalid_field(
                        &format!("indicators[{index}].supersedes"),
                        "names an indicator of another member",
                    ));
                }
                None => {
                    return Err(invalid_field(
                        &format!("indicators[{index}].supersedes"),
                        "names no stored indicator",
                    ));
                }
            }
        }
        let created = now_timestamp();
        let mut ids = Vec::with_capacity(indicators.len());
        let mut batch = Vec::with_capacity(indicators.len());
        for mut indicator in indicators {
            if indicator.id.is_empty() {
                indicator.id = uuid::Uuid::now_v7().to_string();
            }
            indicator.originator = self.member.clone();
            indicator.publisher = caller.to_string();
            indicator.created = Some(created);
            self.signing_key.sign(&mut indicator);
            let kind = cordon_indicator::kind_name(&indicator)
                .unwrap_or("unknown")
                .to_string();
            ids.push(indicator.id.clone());
            batch.push(NewIndicator {
                id: indicator.id.clone(),
                originator: self.member.clone(),
                kind,
                created_micros: micros_of(&created),
                supersedes: (!indicator.supersedes.is_empty())
                    .then(|| indicator.supersedes.clone()),
                via: None,
                payload: indicator.encode_to_vec(),
            });
        }
        let sequences = self
            .metrics
            .time_storage(StorageOperation::Publish, self.store.publish(batch))
            .await
            .map_err(storage_status)?;
        self.metrics.published(sequences.len() as u64);
        tracing::info!(publisher = %caller, count = ids.len(), last_sequence = sequences.last().copied().unwrap_or(0), "published");
        let accepted = ids
            .into_iter()
            .zip(sequences)
            .zip(warnings)
            .map(|((id, sequence), warnings)| Accepted {
                id,
                sequence,
                warnings,
            })
            .collect();
        Ok(PublishResponse { accepted })
    }

    /// Source-protected indicators into a circle (see [`crate::circle::Circles::publish`]).
    async fn publish_to_circle(
        &self,
        caller: &Identity,
        circle: &str,
        mut indicators: Vec<Indicator>,
    ) -> Result<PublishResponse, Status> {
        self.require_own_agency(caller, "publishing")?;
        for indicator in &mut indicators {
            indicator.protection = cordon_proto::v1::Protection::SourceProtected as i32;
        }
        let warnings = cordon_indicator::validate_batch(&indicators, &self.limits)
            .map_err(|errors| invalid_batch(&errors))?;
        if indicators
            .iter()
            .any(|indicator| !indicator.supersedes.is_empty())
        {
            return Err(invalid_field(
                "indicators[].supersedes",
                "revisions are not sent into circles",
            ));
        }
        let response = self
            .circles
            .publish(
                caller,
                circle,
                indicators,
                &now_rfc3339(),
                now_timestamp(),
                warnings,
            )
            .await?;
        self.metrics.published(response.accepted.len() as u64);
        Ok(response)
    }

    async fn retract(
        &self,
        caller: &Identity,
        request: RetractRequest,
    ) -> Result<RetractResponse, Status> {
        self.require_own_agency(caller, "retracting")?;
        if uuid::Uuid::parse_str(&request.id).is_err() {
            return Err(invalid_field("id", "must be the UUID of an indicator"));
        }
        if request.reason.len() > self.limits.max_short_string {
            return Err(invalid_field(
                "reason",
                format!("longer than {} bytes", self.limits.max_short_string),
            ));
        }
        // The reason reaches analysts' terminals and the database as text.
        if request.reason.chars().any(char::is_control) {
            return Err(invalid_field("reason", "contains control characters"));
        }
        let stored = self
            .store
            .indicator(&request.id)
            .await
            .map_err(storage_status)?
            .ok_or_else(|| Status::not_found(format!("no indicator {}", request.id)))?;
        if stored.originator != self.member {
            return Err(Status::permission_denied(format!(
                "indicator {} was published by member {}; only its originator may retract it",
                request.id, stored.originator
            )));
        }
        let at = micros_of(&now_timestamp());
        // Signed like the indicator, so that every gateway the retraction
        // reaches, by whatever path, can check it comes from the originator.
        let mut statement = Retracted {
            indicator_id: request.id.clone(),
            originator: self.member.clone(),
            reason: request.reason.clone(),
            signature: None,
        };
        self.signing_key.sign_retraction(&mut statement);
        let signature = statement.signature.as_ref().map(Message::encode_to_vec);
        let sequence = self
            .metrics
            .time_storage(
                StorageOperation::Retract,
                self.store
                    .retract(&request.id, &request.reason, at, signature.as_deref()),
            )
            .await
            .map_err(storage_status)?;
        tracing::info!(retracted_by = %caller, indicator = %request.id, sequence, "retracted");
        Ok(RetractResponse { sequence })
    }

    /// Releases one page of stored events to `recipient`, in order.
    async fn release_page(
        &self,
        recipient: &Identity,
        events: Vec<StoredEvent>,
    ) -> Result<Vec<Event>, Status> {
        // A retraction goes to exactly the recipients that received the
        // indicator (a stored allow decision, whatever the policy says now), so
        // that it reaches everyone who holds it and no one else learns of it.
        let mut work = Vec::with_capacity(events.len());
        for stored in events {
            let item = match &stored.body {
                EventBody::Published { payload, .. } => {
                    PageItem::Published(Box::new(self.decode(payload)?))
                }
                EventBody::Retracted { indicator_id, .. } => {
                    let query = DecisionQuery {
                        indicator_id: Some(indicator_id.clone()),
                        recipient: Some(recipient.to_string()),
                        limit: MAX_DECISIONS_PER_QUERY,
                        ..DecisionQuery::default()
                    };
                    let earlier = self.store.decisions(&query).await.map_err(storage_status)?;
                    let released = earlier
                        .iter()
                        .find(|decision| decision.allow)
                        .map(|decision| decision.policy_revision.clone());
                    PageItem::Retracted {
                        released_under: released,
                    }
                }
            };
            work.push((stored, item));
        }
        let releaser = self.releaser.clone();
        let recipient = recipient.clone();
        let member = self.member.clone();
        // Policy evaluation is CPU work: keep it off the async workers.
        let (released, records) = tokio::task::spawn_blocking(move || {
            let now = now_rfc3339();
            let mut released = Vec::new();
            let mut records = Vec::new();
            // Indicators released earlier in this very page (not yet in the log).
            let mut released_in_page: std::collections::HashMap<String, String> =
                std::collections::HashMap::new();
            for (stored, item) in work {
                let body = match (stored.body, item) {
                    (EventBody::Published { .. }, PageItem::Published(indicator)) => {
                        let channel = channel_for(&indicator.originator, &recipient, &member);
                        let release = releaser.release(&indicator, &recipient, channel, &now);
                        releaser.record(&release.record);
                        records.push(release.record.clone());
                        let Some(visible) = release.indicator else {
                            continue;
                        };
                        released_in_page
                            .insert(indicator.id.clone(), release.record.policy_revision.clone());
                        event::Body::Published(Published {
                            indicator: Some(visible),
                            redacted: release.record.redact,
                        })
                    }
                    (
                        EventBody::Retracted {
                            indicator_id,
                            originator,
                            reason,
                            signature,
                        },
                        PageItem::Retracted { released_under },
                    ) => {
                        let Some(revision) =
                            released_under.or_else(|| released_in_page.get(&indicator_id).cloned())
                        else {
                            continue;
                        };
                        let record = DecisionRecord {
                            decision_id: uuid::Uuid::now_v7().to_string(),
                            at_micros: micros_of(&now_timestamp()),
                            recipient: recipient.to_string(),
                            indicator_id: indicator_id.clone(),
                            // The channel of the release it follows.
                            channel: channel_for(&originator, &recipient, &member),
                            policy_revision: revision.clone(),
                            allow: true,
                            redact: Vec::new(),
                            reasons: vec![format!(
                                "retraction follows the indicator, released under {revision}"
                            )],
                            error: None,
                        };
                        releaser.record(&record);
                        records.push(record);
                        event::Body::Retracted(Retracted {
                            indicator_id,
                            originator,
                            reason,
                            // Stored encoded; a signature that does not decode is
                            // sent as none, and a follower refuses the retraction.
                            signature: signature.and_then(|bytes| {
                                cordon_proto::v1::Signature::decode(bytes.as_slice()).ok()
                            }),
                        })
                    }
                    _ => continue,
                };
                released.push(Event {
                    sequence: stored.sequence,
                    at: Some(timestamp_from_micros(stored.at_micros)),
                    body: Some(body),
                });
            }
            (released, records)
        })
        .await
        .map_err(|error| Status::internal(format!("release task failed: {error}")))?;
        self.log_decisions(&records).await?;
        Ok(released)
    }

    /// Stores decisions; nothing they released may be sent before this returns.
    async fn log_decisions(&self, records: &[DecisionRecord]) -> Result<(), Status> {
        self.decision_log
            .write(records)
            .await
            .map_err(storage_status)
    }
}

fn kinds_filter(kinds: &[i32]) -> Result<Vec<String>, Status> {
    // Checked before anything is allocated per entry: a 4 MiB request could
    // otherwise hold millions of kinds for the life of a stream.
    if kinds.len() > cordon_indicator::KIND_NAMES.len() {
        return Err(invalid_field(
            "kinds",
            format!("at most {} kinds", cordon_indicator::KIND_NAMES.len()),
        ));
    }
    let mut names = kinds
        .iter()
        .enumerate()
        .map(|(index, value)| {
            IndicatorKind::try_from(*value)
                .ok()
                .and_then(cordon_indicator::kind_name_of)
                .map(str::to_string)
                .ok_or_else(|| {
                    invalid_field(
                        &format!("kinds[{index}]"),
                        format!("{value} is not an indicator kind"),
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    names.sort_unstable();
    names.dedup();
    Ok(names)
}

/// One stored event of a page, prepared for release.
enum PageItem {
    Published(Box<Indicator>),
    /// `released_under`: the revision under which the recipient received the
    /// indicator, if it did.
    Retracted {
        released_under: Option<String>,
    },
}

type EventStream = Pin<Box<dyn Stream<Item = Result<Event, Status>> + Send>>;

#[tonic::async_trait]
impl IndicatorService for IndicatorApi {
    async fn publish(
        &self,
        request: Request<PublishRequest>,
    ) -> Result<Response<PublishResponse>, Status> {
        let caller = caller(&request, &self.state.federation)?;
        let request = request.into_inner();
        let response = if request.circle.is_empty() {
            self.state.publish(&caller, request.indicators).await?
        } else {
            self.state
                .publish_to_circle(&caller, &request.circle, request.indicators)
                .await?
        };
        Ok(Response::new(response))
    }

    async fn retract(
        &self,
        request: Request<RetractRequest>,
    ) -> Result<Response<RetractResponse>, Status> {
        let caller = caller(&request, &self.state.federation)?;
        let response = self.state.retract(&caller, request.into_inner()).await?;
        Ok(Response::new(response))
    }

    type SubscribeStream = EventStream;

    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let recipient = caller(&request, &self.state.federation)?;
        let request = request.into_inner();
        let kinds = kinds_filter(&request.kinds)?;
        let state = self.state.clone();
        tracing::info!(%recipient, after = request.after, follow = request.follow, "subscription opened");
        let slot = SubscriptionSlot::take(&state, &recipient)?;
        let stream = async_stream::try_stream! {
            // Released when the stream ends or the client goes away.
            let _slot = slot;
            let position = state.metrics.subscription(request.after);
            let mut cursor = request.after;
            let mut sent: u64 = 0;
            let mut head = state.store.watch_head();
            let mut shutdown = state.shutdown.clone();
            let mut first_page = true;
            loop {
                // Mark the head seen before reading: a commit after this point
                // changes the watch, so the wait below cannot miss it.
                head.borrow_and_update();
                // With a limit, read no more than can still be sent: every event
                // read is decided and logged, and a logged release must be sent.
                let page = match request.limit {
                    0 => SUBSCRIBE_PAGE,
                    limit => SUBSCRIBE_PAGE.min(u32::try_from(limit - sent).unwrap_or(u32::MAX)),
                };
                let batch = state.store.read_after(cursor, page, &kinds).await.map_err(storage_status)?;
                let page_full = batch.events.len() >= page as usize;
                let events = state.release_page(&recipient, batch.events).await?;
                let mut last_sent = cursor;
                for event in events {
                    last_sent = event.sequence;
                    yield event;
                    position.advance(last_sent);
                    sent += 1;
                    if request.limit != 0 && sent >= request.limit {
                        return;
                    }
                }
                let scanned_to = batch.scanned_to.max(cursor);
                // Let the subscriber's cursor move past what it may not see,
                // without a message per withheld event. A follower also learns
                // the head after every page, so that it knows its lag.
                let withheld_tail = scanned_to > last_sent && (!page_full || last_sent == cursor);
                let tell_follower = request.follow && (scanned_to > cursor || first_page);
                first_page = false;
                if withheld_tail || tell_follower {
                    yield Event { sequence: scanned_to, at: None, body: Some(event::Body::Checkpoint(Checkpoint { head: batch.head })) };
                }
                cursor = scanned_to;
                position.advance(cursor);
                if !page_full {
                    if !request.follow {
                        return;
                    }
                    let stopping = tokio::select! {
                        changed = head.changed() => changed.is_err(),
                        _ = shutdown.wait_for(|stopping| *stopping) => true,
                    };
                    if stopping {
                        Err(Status::unavailable("gateway shutting down; resume from your cursor"))?;
                    }
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let recipient = caller(&request, &self.state.federation)?;
        let id = request.into_inner().id;
        if uuid::Uuid::parse_str(&id).is_err() {
            return Err(invalid_field("id", "must be the UUID of an indicator"));
        }
        // Denied and absent look the same, so a lookup reveals nothing the policy withholds.
        let not_found = || Status::not_found(format!("no indicator {id} for {recipient}"));
        let stored = self
            .state
            .store
            .indicator(&id)
            .await
            .map_err(storage_status)?
            .ok_or_else(not_found)?;
        let indicator = self.state.decode(&stored.payload)?;
        let releaser = self.state.releaser.clone();
        let for_recipient = recipient.clone();
        let release = tokio::task::spawn_blocking(move || {
            let release = releaser.release(
                &indicator,
                &for_recipient,
                channel_for(&indicator.originator, &for_recipient, releaser.member()),
                &now_rfc3339(),
            );
            releaser.record(&release.record);
            release
        })
        .await
        .map_err(|error| Status::internal(format!("release task failed: {error}")))?;
        self.state
            .log_decisions(std::slice::from_ref(&release.record))
            .await?;
        let visible = release.indicator.ok_or_else(not_found)?;
        Ok(Response::new(GetResponse {
            indicator: Some(visible),
            redacted: release.record.redact,
            retracted: stored.retracted,
            superseded_by: stored.superseded_by.unwrap_or_default(),
        }))
    }
}
