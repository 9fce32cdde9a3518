//! Subscribe and Get: the member's feed as one recipient may see it. Each page of stored
//! events is decided by the release room, its decisions are stored in the decision log, and
//! only then is what it released sent.

use std::collections::HashMap;
use std::sync::Arc;

use cordon_proto::v1::{
    Checkpoint, Event, GetResponse, Indicator, IndicatorKind, Published, Retracted,
    SubscribeRequest, event,
};
use cordon_storage::{DecisionQuery, EventBody, MAX_DECISIONS_PER_QUERY, StoredEvent};
use prost::Message;
use tonic::Status;

use super::{EventStream, GatewayState};
use crate::clock::{now_rfc3339, timestamp_from_micros};
use crate::identity::Identity;
use crate::release::{DecisionRecord, channel_for};
use crate::status::{invalid_field, storage_status};

/// Events read from storage per page of a subscription.
const SUBSCRIBE_PAGE: u32 = 1024;

/// A follower is sent a checkpoint (its cursor moved past withheld events to the head) at
/// most this often.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Open subscriptions one identity may hold at once: enough for a gateway's
/// followers and an agency's tools, not enough to exhaust the gateway.
pub const MAX_SUBSCRIPTIONS_PER_IDENTITY: usize = 64;

/// Holds one of an identity's subscription slots until the stream ends.
struct SubscriptionSlot {
    identity: String,
    open: Arc<std::sync::Mutex<HashMap<String, usize>>>,
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

/// The stream of events for `recipient`: pages of the feed from `request.after`, each page
/// decided, logged and sent; checkpoints move the cursor past what it may not see.
pub(super) fn subscribe(
    state: Arc<GatewayState>,
    recipient: Identity,
    request: SubscribeRequest,
) -> Result<EventStream, Status> {
    let kinds = kinds_filter(&request.kinds)?;
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
        // The last event sent, and the last checkpoint's sequence and time.
        let mut sent_to = request.after;
        let mut checkpointed = request.after;
        let mut last_checkpoint: Option<tokio::time::Instant> = None;
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
            for event in events {
                sent_to = event.sequence;
                yield event;
                position.advance(sent_to);
                sent += 1;
                if request.limit != 0 && sent >= request.limit {
                    return;
                }
            }
            let scanned_to = batch.scanned_to.max(cursor);
            // A checkpoint moves the subscriber's cursor past what it may not see. It is
            // sent only once the read has reached the head, never within the feed (where,
            // with a small limit or a kinds filter, it would mark where each withheld event
            // is), and to a follower at most once per CHECKPOINT_INTERVAL (so that the
            // moment a withheld event is stored does not show either).
            let caught_up = !page_full;
            cursor = scanned_to;
            position.advance(cursor);
            if caught_up {
                // Past what the subscriber was last told, by an event or a checkpoint.
                let moved = scanned_to > checkpointed.max(sent_to);
                let due = first_page
                    || last_checkpoint.is_none_or(|at: tokio::time::Instant| at.elapsed() >= CHECKPOINT_INTERVAL);
                if !request.follow && moved || request.follow && (first_page || moved && due) {
                    yield Event { sequence: scanned_to, at: None, body: Some(event::Body::Checkpoint(Checkpoint { head: batch.head })) };
                    checkpointed = scanned_to;
                    last_checkpoint = Some(tokio::time::Instant::now());
                }
                first_page = false;
                if !request.follow {
                    return;
                }
                // A checkpoint held back is sent when its interval is over, if nothing
                // else has come by then.
                let held_back = scanned_to > checkpointed.max(sent_to);
                let interval_over = async {
                    match last_checkpoint {
                        Some(at) if held_back => tokio::time::sleep_until(at + CHECKPOINT_INTERVAL).await,
                        _ => std::future::pending().await,
                    }
                };
                let stopping = tokio::select! {
                    changed = head.changed() => changed.is_err(),
                    () = interval_over => false,
                    _ = shutdown.wait_for(|stopping| *stopping) => true,
                };
                if stopping {
                    Err(Status::unavailable("gateway shutting down; resume from your cursor"))?;
                }
            }
        }
    };
    Ok(Box::pin(stream))
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

impl GatewayState {
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
            let mut released_in_page: HashMap<String, String> = HashMap::new();
            for (stored, item) in work {
                let body = match (stored.body, item) {
                    (EventBody::Published { .. }, PageItem::Published(indicator)) => {
                        let channel = channel_for(&indicator.originator, &recipient, &member);
                        let release = releaser.release(&indicator, &recipient, channel, &now);
                        releaser.record(&release.record);
                        records.push(release.record.clone());
                        let redacted = release.withheld();
                        let Some(visible) = release.indicator else {
                            continue;
                        };
                        released_in_page
                            .insert(indicator.id.clone(), release.record.policy_revision.clone());
                        event::Body::Published(Published {
                            indicator: Some(visible),
                            redacted,
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
                        // The channel of the release it follows.
                        let channel = channel_for(&originator, &recipient, &member);
                        let record = DecisionRecord::retraction(
                            &recipient,
                            &indicator_id,
                            channel,
                            &revision,
                        );
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

    /// One indicator as released to `recipient`. Denied and absent look the same, so a
    /// lookup reveals nothing the policy withholds: both store one decision (a deny, for an
    /// absent id) before answering, and the revision that superseded an indicator is named
    /// only when the recipient may see it (that decision is stored too).
    pub(super) async fn get(
        &self,
        recipient: &Identity,
        id: String,
    ) -> Result<GetResponse, Status> {
        if uuid::Uuid::parse_str(&id).is_err() {
            return Err(invalid_field("id", "must be the UUID of an indicator"));
        }
        let not_found = || Status::not_found(format!("no indicator {id} for {recipient}"));
        let started = std::time::Instant::now();
        let stored = self.store.indicator(&id).await.map_err(storage_status)?;
        let Some(stored) = stored else {
            let channel = channel_for(self.releaser.member(), recipient, self.releaser.member());
            let record =
                DecisionRecord::absent(recipient, &id, channel, self.releaser.policy().revision());
            self.releaser.record(&record);
            // Counted as a withheld one is, so that the metrics do not tell them apart.
            self.metrics
                .decision(crate::metrics::Outcome::Denied, channel, started.elapsed());
            self.log_decisions(std::slice::from_ref(&record)).await?;
            return Err(not_found());
        };
        let indicator = self.decode(&stored.payload)?;
        let revision = match &stored.superseded_by {
            Some(revision) => match self
                .store
                .indicator(revision)
                .await
                .map_err(storage_status)?
            {
                Some(revision) => Some(self.decode(&revision.payload)?),
                None => None,
            },
            None => None,
        };
        let releaser = self.releaser.clone();
        let for_recipient = recipient.clone();
        let (release, revision) = tokio::task::spawn_blocking(move || {
            let now = now_rfc3339();
            let decide = |indicator: &Indicator| {
                let channel = channel_for(&indicator.originator, &for_recipient, releaser.member());
                let release = releaser.release(indicator, &for_recipient, channel, &now);
                releaser.record(&release.record);
                release
            };
            let release = decide(&indicator);
            // The revision is looked at only for a recipient who sees the indicator.
            let revision = revision
                .filter(|_| release.indicator.is_some())
                .map(|revision| (revision.id.clone(), decide(&revision)));
            (release, revision)
        })
        .await
        .map_err(|error| Status::internal(format!("release task failed: {error}")))?;
        let mut records = vec![release.record.clone()];
        records.extend(revision.as_ref().map(|(_, release)| release.record.clone()));
        self.log_decisions(&records).await?;
        let redacted = release.withheld();
        let visible = release.indicator.ok_or_else(not_found)?;
        let superseded_by = revision
            .filter(|(_, release)| release.indicator.is_some())
            .map(|(id, _)| id)
            .unwrap_or_default();
        Ok(GetResponse {
            indicator: Some(visible),
            redacted,
            retracted: stored.retracted,
            superseded_by,
        })
    }
}
