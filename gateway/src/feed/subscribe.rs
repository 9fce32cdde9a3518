//! Subscribe and Get: the member's feed as one recipient may see it. Each page of stored
//! events is decided by the release room, its decisions are stored in the decision log, and
//! only then is what it released sent.

use std::collections::HashMap;
use std::sync::Arc;

use cordon_proto::v1::{
    Checkpoint, Event, GetResponse, Indicator, IndicatorKind, Retracted, SubscribeRequest, event,
};
use cordon_storage::{DecisionQuery, EventBody, MAX_DECISIONS_PER_QUERY, StoredEvent};
use prost::Message;
use tonic::Status;

use super::dispatch::{Delivered, Joined};
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
/// decided, logged and sent; checkpoints move the cursor past what it may not see. Once it has
/// caught up, a following stream without a limit is served by the gateway's dispatcher
/// (`dispatch.rs`) and reads on its own again only when it falls behind.
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
        let key = recipient.to_string();
        let mut cursor = request.after;
        let mut sent: u64 = 0;
        let mut head = state.store.watch_head();
        let mut shutdown = state.shutdown.clone();
        let mut first_page = true;
        // The last event sent, and the last checkpoint's sequence and time.
        let mut sent_to = request.after;
        let mut checkpointed = request.after;
        let mut last_checkpoint: Option<tokio::time::Instant> = None;
        // The head as last read, for checkpoints.
        let mut known_head = 0;
        // Set while the dispatcher serves this stream.
        let mut joined: Option<Joined> = None;
        // Whether the last page the dispatcher handed this stream reached the head.
        let mut at_head = true;
        // The next page, being read while this one is decided and sent.
        let mut read_ahead: Option<tokio::task::JoinHandle<Result<cordon_storage::EventBatch, cordon_storage::StorageError>>> = None;
        loop {
            let (scanned_to, caught_up) = if let Some(current) = joined.as_mut() {
                // A checkpoint held back is sent when its interval is over, if nothing
                // else has come by then.
                let interval_over = checkpoint_interval_over(
                    last_checkpoint,
                    at_head && cursor > checkpointed.max(sent_to),
                );
                let received = tokio::select! {
                    page = current.pages.recv() => Some(Some(page)),
                    () = interval_over => Some(None),
                    _ = shutdown.wait_for(|stopping| *stopping) => None,
                };
                let Some(received) = received else {
                    Err(Status::unavailable("gateway shutting down; resume from your cursor"))?;
                    return;
                };
                match received {
                    None => (cursor, true),
                    Some(Ok(page)) => {
                        if page.scanned_to <= cursor {
                            continue;
                        }
                        // A page that starts past the cursor, or was decided before this
                        // stream joined: read it on its own.
                        let Some(mine) = (page.after <= cursor)
                            .then(|| page.released.get(&key))
                            .flatten()
                        else {
                            joined = None;
                            continue;
                        };
                        for delivered in mine {
                            if delivered.event.sequence <= cursor {
                                continue;
                            }
                            sent_to = delivered.event.sequence;
                            yield delivered.event.clone();
                            position.advance(sent_to);
                        }
                        known_head = known_head.max(page.head);
                        // Within the feed (a full page), no checkpoint may be sent, not
                        // even by the timer: it would show where a withheld event is.
                        at_head = !page.full;
                        (page.scanned_to, !page.full)
                    }
                    // Fell behind the ring, or the dispatcher is gone: read on its own.
                    Some(Err(_)) => {
                        joined = None;
                        continue;
                    }
                }
            } else {
                // With a limit, read no more than can still be sent: every event
                // read is decided and logged, and a logged release must be sent.
                let page = match request.limit {
                    0 => SUBSCRIBE_PAGE,
                    limit => SUBSCRIBE_PAGE.min(u32::try_from(limit - sent).unwrap_or(u32::MAX)),
                };
                let batch = match read_ahead.take() {
                    Some(read) => read
                        .await
                        .map_err(|error| Status::internal(format!("read-ahead failed: {error}")))?
                        .map_err(storage_status)?,
                    None => {
                        // Mark the head seen before reading: a commit after this point
                        // changes the watch, so the wait below cannot miss it.
                        head.borrow_and_update();
                        state.store.read_after(cursor, page, &kinds).await.map_err(storage_status)?
                    }
                };
                let page_full = batch.events.len() >= page as usize;
                // Catching up: the next page is read while this one is decided and sent.
                if page_full && request.limit == 0 {
                    head.borrow_and_update();
                    let store = state.store.clone();
                    let kinds = kinds.clone();
                    let from = batch.scanned_to.max(cursor);
                    read_ahead = Some(tokio::spawn(async move {
                        store.read_after(from, SUBSCRIBE_PAGE, &kinds).await
                    }));
                }
                let released = state
                    .release_page(std::slice::from_ref(&recipient), batch.events)
                    .await?
                    .pop()
                    .unwrap_or_default();
                for delivered in released {
                    let event = Arc::try_unwrap(delivered)
                        .map_or_else(|shared| shared.event.clone(), |delivered| delivered.event);
                    sent_to = event.sequence;
                    yield event;
                    position.advance(sent_to);
                    sent += 1;
                    if request.limit != 0 && sent >= request.limit {
                        return;
                    }
                }
                known_head = known_head.max(batch.head);
                (batch.scanned_to.max(cursor), !page_full)
            };
            // A checkpoint moves the subscriber's cursor past what it may not see. It is
            // sent only once the read has reached the head, never within the feed (where,
            // with a small limit or a kinds filter, it would mark where each withheld event
            // is), and to a follower at most once per CHECKPOINT_INTERVAL (so that the
            // moment a withheld event is stored does not show either).
            cursor = scanned_to;
            position.advance(cursor);
            if !caught_up {
                continue;
            }
            // Past what the subscriber was last told, by an event or a checkpoint.
            let moved = scanned_to > checkpointed.max(sent_to);
            let due = first_page
                || last_checkpoint.is_none_or(|at: tokio::time::Instant| at.elapsed() >= CHECKPOINT_INTERVAL);
            if !request.follow && moved || request.follow && (first_page || moved && due) {
                yield Event { sequence: scanned_to, at: None, body: Some(event::Body::Checkpoint(Checkpoint { head: known_head })) };
                checkpointed = scanned_to;
                last_checkpoint = Some(tokio::time::Instant::now());
            }
            first_page = false;
            if !request.follow {
                return;
            }
            if joined.is_some() {
                continue;
            }
            // Caught up: from here the dispatcher serves a stream without a limit or a kinds
            // filter (the dispatcher logs a decision for every event it releases to an
            // identity, which such a stream would not all send).
            if request.limit == 0 && kinds.is_empty() {
                joined = state.dispatcher.join(&recipient, cursor);
                if joined.is_some() {
                    at_head = true;
                    continue;
                }
            }
            let interval_over =
                checkpoint_interval_over(last_checkpoint, scanned_to > checkpointed.max(sent_to));
            let stopping = tokio::select! {
                changed = head.changed() => changed.is_err(),
                () = interval_over => false,
                _ = shutdown.wait_for(|stopping| *stopping) => true,
            };
            if stopping {
                Err(Status::unavailable("gateway shutting down; resume from your cursor"))?;
            }
        }
    };
    Ok(Box::pin(stream))
}

/// Ends when the interval after the last checkpoint is over, if a checkpoint is held back;
/// never otherwise.
async fn checkpoint_interval_over(last_checkpoint: Option<tokio::time::Instant>, held_back: bool) {
    match last_checkpoint {
        Some(at) if held_back => tokio::time::sleep_until(at + CHECKPOINT_INTERVAL).await,
        _ => std::future::pending().await,
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

/// What makes two logged decisions the same decision: all but their id and time.
fn same_decision(mut row: cordon_storage::DecisionRow) -> cordon_storage::DecisionRow {
    row.decision_id = String::new();
    row.at_micros = 0;
    row
}

/// One stored event of a page, prepared for release.
enum PageItem {
    Published(Box<Indicator>),
    /// `released_under[i]`: the revision under which recipient `i` received the indicator,
    /// if it did.
    Retracted {
        released_under: Vec<Option<String>>,
    },
}

impl GatewayState {
    /// Releases one page of stored events to each of `recipients`, in order: what each
    /// may see, an event released alike to several shared between them. Every decision is
    /// stored, in one write, before this returns.
    pub(crate) async fn release_page(
        &self,
        recipients: &[Identity],
        events: Vec<StoredEvent>,
    ) -> Result<Vec<Vec<Arc<Delivered>>>, Status> {
        let range = events.iter().map(|event| event.sequence).fold(
            None,
            |range: Option<(u64, u64)>, sequence| match range {
                None => Some((sequence, sequence)),
                Some((first, last)) => Some((first.min(sequence), last.max(sequence))),
            },
        );
        let (released, records) = self.decide_page(recipients, events).await?;
        match range {
            Some((first, last)) => {
                let after = first.saturating_sub(1);
                let records = self.not_yet_logged(records, after, last).await?;
                let pages = crate::release::pages_of(&records, after, last);
                self.decision_log
                    .write_page(&records, pages)
                    .await
                    .map_err(storage_status)?;
            }
            None => self.log_decisions(&records).await?,
        }
        Ok(released)
    }

    /// `records` less those the log already holds the same (recipient, indicator, channel,
    /// revision and outcome), made within the log's reuse window, on the events after `after`
    /// up to `to`: a re-read of the feed under the same policy revision within that window
    /// stores only what it decided differently. (The decision that stands for a dropped one is
    /// an earlier identical decision of the same recipient on the same indicator, not
    /// necessarily made for this very event.)
    async fn not_yet_logged(
        &self,
        records: Vec<DecisionRecord>,
        after: u64,
        to: u64,
    ) -> Result<Vec<DecisionRecord>, Status> {
        let pages = crate::release::pages_of(&records, after, to);
        let window =
            i64::try_from(self.decision_log.reuse_window().as_micros()).unwrap_or(i64::MAX);
        let since = crate::clock::now_micros().saturating_sub(window);
        let mut logged = std::collections::HashSet::new();
        for page in &pages {
            let rows = self
                .store
                .page_decisions(&page.recipient, &page.policy_revision, (after, to), since)
                .await
                .map_err(storage_status)?;
            logged.extend(rows.into_iter().map(same_decision));
        }
        if logged.is_empty() {
            return Ok(records);
        }
        Ok(records
            .into_iter()
            .filter(|record| !logged.contains(&same_decision(crate::release::row_of(record))))
            .collect())
    }

    /// Decides one page of stored events for each of `recipients` (see
    /// [`GatewayState::release_page`]) and returns the decisions with what they released:
    /// nothing released may be sent before the caller has stored them.
    pub(super) async fn decide_page(
        &self,
        recipients: &[Identity],
        events: Vec<StoredEvent>,
    ) -> Result<(Vec<Vec<Arc<Delivered>>>, Vec<DecisionRecord>), Status> {
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
                    let mut released_under = Vec::with_capacity(recipients.len());
                    for recipient in recipients {
                        let query = DecisionQuery {
                            indicator_id: Some(indicator_id.clone()),
                            recipient: Some(recipient.to_string()),
                            limit: MAX_DECISIONS_PER_QUERY,
                            ..DecisionQuery::default()
                        };
                        let earlier = self.store.decisions(&query).await.map_err(storage_status)?;
                        released_under.push(
                            earlier
                                .iter()
                                .find(|decision| decision.allow)
                                .map(|decision| decision.policy_revision.clone()),
                        );
                    }
                    PageItem::Retracted { released_under }
                }
            };
            work.push((stored, item));
        }
        let releaser = self.releaser.clone();
        let recipients = recipients.to_vec();
        let member = self.member.clone();
        // Policy evaluation is CPU work: keep it off the async workers.
        let (released, records) = tokio::task::spawn_blocking(move || {
            let now = now_rfc3339();
            let mut released: Vec<Vec<Arc<Delivered>>> = vec![Vec::new(); recipients.len()];
            let mut records = Vec::new();
            // Indicators released earlier in this very page (not yet in the log), per
            // recipient.
            let mut released_in_page: Vec<HashMap<String, String>> =
                vec![HashMap::new(); recipients.len()];
            for (stored, item) in work {
                let at_micros = stored.at_micros;
                let at = Some(timestamp_from_micros(at_micros));
                let sequence = stored.sequence;
                match (stored.body, item) {
                    (EventBody::Published { .. }, PageItem::Published(indicator)) => {
                        let first = records.len();
                        let id = indicator.id.clone();
                        let forms = super::predecide::decide_published(
                            &releaser,
                            &member,
                            &recipients,
                            *indicator,
                            at_micros,
                            &now,
                            &mut records,
                        );
                        for (index, delivered) in forms.delivered(sequence).into_iter().enumerate()
                        {
                            if let Some(delivered) = delivered {
                                released_in_page[index].insert(
                                    id.clone(),
                                    records[first + index].policy_revision.clone(),
                                );
                                released[index].push(delivered);
                            }
                        }
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
                        // Stored encoded; a signature that does not decode is sent as
                        // none, and a follower refuses the retraction.
                        let signature = signature.and_then(|bytes| {
                            cordon_proto::v1::Signature::decode(bytes.as_slice()).ok()
                        });
                        let retraction = Arc::new(Delivered {
                            event: Event {
                                sequence,
                                at,
                                body: Some(event::Body::Retracted(Retracted {
                                    indicator_id: indicator_id.clone(),
                                    originator: originator.clone(),
                                    reason,
                                    signature,
                                })),
                            },
                        });
                        for (index, (recipient, released_under)) in
                            recipients.iter().zip(released_under).enumerate()
                        {
                            let Some(revision) = released_under
                                .or_else(|| released_in_page[index].get(&indicator_id).cloned())
                            else {
                                continue;
                            };
                            // The channel of the release it follows.
                            let channel = channel_for(&originator, recipient, &member);
                            let record = DecisionRecord::retraction(
                                recipient,
                                &indicator_id,
                                channel,
                                &revision,
                            );
                            releaser.record(&record);
                            records.push(record);
                            released[index].push(retraction.clone());
                        }
                    }
                    _ => {}
                }
            }
            (released, records)
        })
        .await
        .map_err(|error| Status::internal(format!("release task failed: {error}")))?;
        Ok((released, records))
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
    pub(crate) async fn get(
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
