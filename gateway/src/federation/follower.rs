//! One follower: subscribes to its peer from the durable cursor, checks every item, and
//! stores each run of accepted items with the new cursor in one transaction.

use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, Result, anyhow};
use cordon_proto::v1::indicator_service_client::IndicatorServiceClient;
use cordon_proto::v1::{Event, Published, Retracted, SubscribeRequest, event};
use cordon_storage::{NewIndicator, Received};
use futures::{FutureExt, StreamExt};
use prost::Message;
use tokio::sync::watch;

use super::{FollowerContext, PeerTracker, backoff, peer_tls};
use crate::clock::{micros_of, now_micros};
use crate::metrics::StorageOperation;

/// Events stored per transaction at most: what arrived together, up to this.
const RECEIVE_BATCH: usize = 512;

pub(super) struct Follower {
    pub(super) context: FollowerContext,
    pub(super) tracker: Arc<PeerTracker>,
}

/// Why one connection to the peer ended.
enum Ended {
    /// This gateway is stopping.
    Shutdown,
    /// The connection failed; `progressed` says whether it stored anything first.
    Failed {
        error: anyhow::Error,
        progressed: bool,
    },
}

impl Follower {
    fn peer(&self) -> &str {
        &self.tracker.peer.id
    }

    pub(super) async fn run(self, mut shutdown: watch::Receiver<bool>) {
        match self.context.store.peer_cursor(self.peer()).await {
            Ok(cursor) => self.tracker.update(|state| state.cursor = cursor),
            Err(error) => self.tracker.error(format!("reading the cursor: {error}")),
        }
        let mut attempt: u32 = 0;
        loop {
            if *shutdown.borrow() {
                break;
            }
            self.tracker.update(|state| state.state = "connecting");
            match self.follow_once(&mut shutdown).await {
                Ended::Shutdown => break,
                Ended::Failed { error, progressed } => {
                    if progressed {
                        attempt = 0;
                    }
                    let message = format!("{error:#}");
                    tracing::warn!(target: "cordon::federation", peer = %self.peer(), error = %message, "peer connection ended");
                    self.tracker.error(message);
                }
            }
            let delay = backoff(attempt);
            attempt = attempt.saturating_add(1);
            self.tracker.update(|state| {
                state.state = "backoff";
                state.connected_since = None;
                state.reconnects += 1;
            });
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = shutdown.wait_for(|stopping| *stopping) => break,
            }
        }
        self.tracker.update(|state| {
            state.state = "stopped";
            state.connected_since = None;
        });
    }

    async fn follow_once(&self, shutdown: &mut watch::Receiver<bool>) -> Ended {
        let mut progressed = false;
        let result = self.stream(shutdown, &mut progressed).await;
        match result {
            Ok(()) => Ended::Shutdown,
            Err(error) => Ended::Failed { error, progressed },
        }
    }

    /// Streams from the peer until an error (returned) or shutdown (`Ok`).
    async fn stream(
        &self,
        shutdown: &mut watch::Receiver<bool>,
        progressed: &mut bool,
    ) -> Result<()> {
        let context = &self.context;
        let channel = tokio::select! {
            channel = peer_tls::connect(&self.tracker.peer, &context.federation, &context.tls) => channel?,
            _ = shutdown.wait_for(|stopping| *stopping) => return Ok(()),
        };
        let limit = context.limits.max_message_bytes;
        let mut audit =
            cordon_proto::v1::audit_service_client::AuditServiceClient::new(channel.clone());
        // The peer's log, at every connection and then at most every LOG_CHECK_INTERVAL.
        self.check_peer_log(&mut audit).await;
        let mut log_checked = tokio::time::Instant::now();
        let mut client = IndicatorServiceClient::new(channel)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        let mut cursor = context
            .store
            .peer_cursor(self.peer())
            .await
            .context("reading the cursor")?;
        let request = SubscribeRequest {
            after: cursor,
            follow: true,
            ..SubscribeRequest::default()
        };
        let mut stream = client
            .subscribe(request)
            .await
            .context("subscribing")?
            .into_inner();
        tracing::info!(target: "cordon::federation", peer = %self.peer(), after = cursor, "following peer");
        self.tracker.update(|state| {
            state.state = "connected";
            state.cursor = cursor;
            state.connected_since = Some(SystemTime::now());
        });
        loop {
            let first = tokio::select! {
                next = stream.next() => Some(next),
                _ = shutdown.wait_for(|stopping| *stopping) => return Ok(()),
                () = tokio::time::sleep_until(log_checked + LOG_CHECK_INTERVAL) => None,
            };
            let Some(first) = first else {
                // A quiet peer's log is checked too.
                self.check_peer_log(&mut audit).await;
                log_checked = tokio::time::Instant::now();
                continue;
            };
            let first = match first {
                Some(Ok(event)) => event,
                Some(Err(status)) => return Err(anyhow!("peer stream failed: {status}")),
                None => return Err(anyhow!("peer ended the stream")),
            };
            // Whatever else has already arrived goes into the same transaction.
            let mut events = vec![first];
            let mut pending_error = None;
            while events.len() < RECEIVE_BATCH {
                match stream.next().now_or_never() {
                    Some(Some(Ok(event))) => events.push(event),
                    Some(Some(Err(status))) => {
                        pending_error = Some(anyhow!("peer stream failed: {status}"));
                        break;
                    }
                    Some(None) => {
                        pending_error = Some(anyhow!("peer ended the stream"));
                        break;
                    }
                    None => break,
                }
            }
            cursor = self.receive(cursor, events).await?;
            *progressed = true;
            if log_checked.elapsed() >= LOG_CHECK_INTERVAL {
                self.check_peer_log(&mut audit).await;
                log_checked = tokio::time::Instant::now();
            }
            if let Some(error) = pending_error {
                return Err(error);
            }
        }
    }

    /// Fetches the peer's latest audit-log checkpoint, checks its signature with the peer's
    /// keys and that it extends the checkpoint kept from before (consistency proof), and keeps
    /// it. A checkpoint that does not extend the kept one raises the alarm (log, metric,
    /// `cordon peers`) and is not kept, so the evidence stays; a peer that cannot be asked
    /// (down, or without the audit service) is only logged.
    async fn check_peer_log(
        &self,
        audit: &mut cordon_proto::v1::audit_service_client::AuditServiceClient<
            tonic::transport::Channel,
        >,
    ) {
        // A peer that answers slowly or never holds up neither the follower nor shutdown.
        let checked = tokio::time::timeout(LOG_CHECK_TIMEOUT, self.peer_log_check(audit))
            .await
            .unwrap_or_else(|_| {
                Err(LogCheck::Unavailable(format!(
                    "no answer within {LOG_CHECK_TIMEOUT:?}"
                )))
            });
        match checked {
            // The alarm stays once raised (until the gateway restarts): a peer showing
            // different views in turn must not make it flap.
            Ok(Some(size)) => self.tracker.update(|state| state.log_size = size),
            Ok(None) => {}
            Err(LogCheck::Alarm { message, note }) => {
                tracing::error!(target: "cordon::federation", peer = %self.peer(), alarm = %message, checkpoint = %note, "the peer's audit log was rewritten or forked");
                self.tracker.update(|state| {
                    state.log_alarm = message;
                    state.log_alarms += 1;
                });
            }
            Err(LogCheck::Unavailable(message)) => {
                tracing::warn!(target: "cordon::federation", peer = %self.peer(), error = %message, "the peer's audit log could not be checked");
            }
        }
    }

    /// `Ok(Some(size))`: the checkpoint of `size` entries extends the kept one and is kept.
    async fn peer_log_check(
        &self,
        audit: &mut cordon_proto::v1::audit_service_client::AuditServiceClient<
            tonic::transport::Channel,
        >,
    ) -> Result<Option<u64>, LogCheck> {
        let peer = self.peer();
        let origin = crate::identity::audit_log_origin(&self.context.federation, peer);
        let latest = audit
            .checkpoint(cordon_proto::v1::CheckpointRequest {})
            .await
            .map_err(|status| LogCheck::Unavailable(format!("checkpoint: {status}")))?
            .into_inner();
        let checkpoint = self
            .context
            .keys
            .keys_of(peer)
            .iter()
            .filter_map(|key| <[u8; 32]>::try_from(key.as_slice()).ok())
            .find_map(|key| cordon_tlog::verify_checkpoint(&latest.note, &origin, &key).ok())
            .ok_or_else(|| LogCheck::Alarm {
                message: format!("a checkpoint of {origin} not signed by any of {peer}'s keys"),
                note: latest.note.clone(),
            })?;
        let kept = self
            .context
            .store
            .peer_checkpoint(peer)
            .await
            .map_err(|error| {
                LogCheck::Unavailable(format!("reading the kept checkpoint: {error}"))
            })?;
        if let Some(kept) = &kept {
            if checkpoint.size < kept.size {
                return Err(LogCheck::Alarm {
                    message: format!(
                        "the log shrank from {} entries to {}: it was rewritten",
                        kept.size, checkpoint.size
                    ),
                    note: latest.note.clone(),
                });
            }
            let proof = if checkpoint.size == kept.size {
                Vec::new()
            } else {
                audit
                    .consistency_proof(cordon_proto::v1::ConsistencyProofRequest {
                        first: kept.size,
                        second: checkpoint.size,
                    })
                    .await
                    .map_err(|status| {
                        LogCheck::Unavailable(format!("consistency proof: {status}"))
                    })?
                    .into_inner()
                    .hashes
            };
            let proof = cordon_tlog::proof_hashes(&proof).map_err(|error| LogCheck::Alarm {
                message: format!("consistency proof: {error}"),
                note: latest.note.clone(),
            })?;
            cordon_tlog::verify_consistency(
                kept.size,
                checkpoint.size,
                &kept.root,
                &checkpoint.root,
                &proof,
            )
            .map_err(|error| LogCheck::Alarm {
                message: format!(
                    "the log of {} entries does not extend the {} entries checked before ({error}): it was rewritten or forked",
                    checkpoint.size, kept.size
                ),
                note: latest.note.clone(),
            })?;
            if checkpoint.size == kept.size {
                return Ok(Some(checkpoint.size));
            }
        }
        self.context
            .store
            .store_peer_checkpoint(&cordon_storage::PeerCheckpoint {
                peer: peer.to_string(),
                size: checkpoint.size,
                root: checkpoint.root,
                note: latest.note,
                at_micros: crate::clock::now_micros(),
            })
            .await
            .map_err(|error| LogCheck::Unavailable(format!("keeping the checkpoint: {error}")))?;
        Ok(Some(checkpoint.size))
    }

    /// Checks and stores one run of events; returns the new cursor.
    async fn receive(&self, cursor: u64, events: Vec<Event>) -> Result<u64> {
        let mut items = Vec::with_capacity(events.len());
        let mut next_cursor = cursor;
        let mut peer_head = 0;
        let mut refused = 0;
        let mut looped = 0;
        for event in events {
            let is_checkpoint = matches!(event.body, Some(event::Body::Checkpoint(_)));
            // A peer's feed only moves forward; a checkpoint may repeat the last sequence.
            if event.sequence < next_cursor || (event.sequence == next_cursor && !is_checkpoint) {
                return Err(anyhow!(
                    "peer sent sequence {} after {next_cursor}: its feed went backwards",
                    event.sequence
                ));
            }
            let sequence = event.sequence;
            next_cursor = sequence;
            match event.body {
                Some(event::Body::Checkpoint(checkpoint)) => {
                    // A head below what this gateway already read means the peer's feed was
                    // reset or restored from a backup: following on would silently miss
                    // everything until it grew past the cursor again. An operator decides.
                    if checkpoint.head < sequence {
                        return Err(anyhow!(
                            "peer reports head {} behind sequence {sequence}: its feed was reset or restored; not following until an operator resolves it",
                            checkpoint.head
                        ));
                    }
                    peer_head = peer_head.max(checkpoint.head);
                }
                Some(event::Body::Published(published)) => match self.accept_published(published) {
                    Ok(Some(item)) => items.push(Received::Published(item)),
                    Ok(None) => looped += 1,
                    Err(refusal) => {
                        refused += 1;
                        self.refuse(sequence, &refusal);
                    }
                },
                Some(event::Body::Retracted(retracted)) => {
                    match self.accept_retraction(retracted, event.at.as_ref()) {
                        Ok(item) => items.push(item),
                        Err(refusal) => {
                            refused += 1;
                            self.refuse(sequence, &refusal);
                        }
                    }
                }
                None => {
                    refused += 1;
                    self.refuse(
                        sequence,
                        &Refusal {
                            indicator: String::new(),
                            originator: String::new(),
                            reason: "event has no body".into(),
                        },
                    );
                }
            }
        }
        let outcome = self
            .context
            .metrics
            .time_storage(
                StorageOperation::Receive,
                self.context.store.receive(self.peer(), next_cursor, items),
            )
            .await
            .context("storing what the peer sent")?;
        for (id, sequence) in &outcome.stored {
            tracing::debug!(target: "cordon::federation", peer = %self.peer(), indicator = %id, sequence, "received");
        }
        for (id, sequence) in &outcome.retracted {
            tracing::info!(target: "cordon::federation", peer = %self.peer(), indicator = %id, sequence, "retraction applied");
        }
        for id in &outcome.conflicts {
            // Another indicator already holds this id here: the first one stored keeps it.
            self.refuse(
                next_cursor,
                &Refusal {
                    indicator: id.clone(),
                    originator: String::new(),
                    reason: "a different indicator (another originator or other content) already holds this id here".into(),
                },
            );
        }
        for id in &outcome.ignored_retractions {
            tracing::info!(target: "cordon::federation", peer = %self.peer(), indicator = %id, "retraction of an indicator not held here from that originator: ignored");
        }
        self.tracker.update(|state| {
            state.cursor = next_cursor;
            state.peer_head = state.peer_head.max(peer_head).max(next_cursor);
            state.stored += outcome.stored.len() as u64;
            state.duplicates += (outcome.duplicates.len() + looped) as u64;
            state.refused += refused + outcome.conflicts.len() as u64;
            state.retractions += outcome.retracted.len() as u64;
        });
        Ok(next_cursor)
    }

    fn refuse(&self, sequence: u64, refusal: &Refusal) {
        tracing::warn!(
            target: "cordon::federation",
            peer = %self.peer(),
            sequence,
            indicator = %refusal.indicator,
            originator = %refusal.originator,
            reason = %refusal.reason,
            "refused an item from a peer"
        );
        self.tracker.error(format!(
            "refused item {sequence} (indicator {:?} from {:?}): {}",
            refusal.indicator, refusal.originator, refusal.reason
        ));
    }

    /// The indicator to store, `None` for one of this gateway's own coming
    /// back, or why it is refused.
    fn accept_published(&self, published: Published) -> Result<Option<NewIndicator>, Refusal> {
        let Some(mut indicator) = published.indicator else {
            return Err(Refusal {
                indicator: String::new(),
                originator: String::new(),
                reason: "published event carries no indicator".into(),
            });
        };
        let (id, originator) = (indicator.id.clone(), indicator.originator.clone());
        let refusal = |reason: String| Refusal {
            indicator: id.clone(),
            originator: originator.clone(),
            reason,
        };
        if indicator.originator == self.context.member {
            return Ok(None);
        }
        if uuid::Uuid::parse_str(&indicator.id).is_err() {
            return Err(refusal("id is not a UUID".into()));
        }
        // Fields the sender withheld keep their commitments: the originator's signature
        // covers them, and `published.redacted` only names them. A salt that came without
        // its field says nothing, and is not kept.
        let withheld = self
            .context
            .keys
            .verify_received(&mut indicator)
            .map_err(|error| refusal(format!("signature: {error}")))?;
        if let Err(errors) = cordon_indicator::validate_indicator(&indicator, &self.context.limits)
        {
            // What the originator withheld from this gateway cannot be checked here; the
            // originator checked it at publication and signed it.
            let details: Vec<String> = errors
                .iter()
                .filter(|error| !concerns_withheld(error, &withheld))
                .map(|error| format!("{}: {}", error.path, error.message))
                .collect();
            if !details.is_empty() {
                return Err(refusal(format!("invalid: {}", details.join("; "))));
            }
        }
        let Some(kind) = cordon_indicator::kind_name(&indicator) else {
            return Err(refusal("indicator has no kind".into()));
        };
        let Some(created) = indicator.created.as_ref() else {
            return Err(refusal("indicator has no creation time".into()));
        };
        Ok(Some(NewIndicator {
            id: indicator.id.clone(),
            originator: indicator.originator.clone(),
            kind: kind.to_string(),
            created_micros: micros_of(created),
            supersedes: (!indicator.supersedes.is_empty()).then(|| indicator.supersedes.clone()),
            via: Some(self.peer().to_string()),
            payload: indicator.encode_to_vec(),
        }))
    }

    fn accept_retraction(
        &self,
        retracted: Retracted,
        at: Option<&pbjson_types::Timestamp>,
    ) -> Result<Received, Refusal> {
        let refusal = |reason: String| Refusal {
            indicator: retracted.indicator_id.clone(),
            originator: retracted.originator.clone(),
            reason,
        };
        if retracted.originator == self.context.member {
            // Only this gateway retracts its member's indicators.
            return Err(refusal(
                "a retraction of this member's own indicator can only be made here".into(),
            ));
        }
        self.context
            .keys
            .verify_retraction(&retracted)
            .map_err(|error| refusal(format!("retraction signature: {error}")))?;
        // The reason reaches analysts' terminals and the database as text, as a local one.
        if retracted.reason.len() > self.context.limits.max_short_string
            || retracted.reason.chars().any(char::is_control)
        {
            return Err(refusal(format!(
                "retraction reason is longer than {} bytes or holds control characters",
                self.context.limits.max_short_string
            )));
        }
        let signature = retracted.signature.as_ref().map(Message::encode_to_vec);
        // The event time is not signed: a time out of range is replaced by the receipt time.
        let at_micros = at
            .filter(|at| (0..=253_402_300_799).contains(&at.seconds))
            .map(micros_of)
            .unwrap_or_else(now_micros);
        Ok(Received::Retracted {
            indicator_id: retracted.indicator_id,
            originator: retracted.originator,
            reason: retracted.reason,
            at_micros,
            signature,
        })
    }
}

struct Refusal {
    indicator: String,
    originator: String,
    reason: String,
}

/// How often a connected follower checks its peer's audit log at most (and at every
/// connection).
const LOG_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// How long one check of a peer's log may take.
const LOG_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why a check of a peer's log did not keep a checkpoint.
enum LogCheck {
    /// The log does not extend what was checked before, or is not signed by the peer; `note`
    /// is the checkpoint that showed it (logged as evidence).
    Alarm { message: String, note: String },
    /// The peer or the local store could not be asked.
    Unavailable(String),
}

/// Whether a validation error is about a field withheld from this copy: the field itself or
/// one inside it, or a rule of the message holding it that names it (`vessel`: "has neither
/// imo nor mmsi" when `vessel.imo` was withheld). An error about a disclosed field, or a
/// message rule that names no withheld field, still refuses the indicator.
fn concerns_withheld(error: &cordon_indicator::FieldError, withheld: &[String]) -> bool {
    let within = |inner: &str, outer: &str| {
        inner == outer
            || inner
                .strip_prefix(outer)
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
    };
    let named = |field: &str| {
        error
            .message
            .split(|character: char| !character.is_ascii_alphanumeric())
            .any(|word| word == field)
    };
    withheld.iter().any(|path| {
        within(&error.path, path)
            || (within(path, &error.path) && path.rsplit('.').next().is_some_and(&named))
    })
}

#[cfg(test)]
mod tests {
    use super::concerns_withheld;
    use cordon_indicator::FieldError;

    #[test]
    fn only_errors_about_withheld_fields_are_excused() {
        let withheld = ["vessel.imo".to_string(), "vessel.mmsi".to_string()];
        let excused = |path: &str, message: &str| {
            concerns_withheld(&FieldError::new(path, message), &withheld)
        };
        assert!(excused(
            "vessel",
            "has neither imo nor mmsi, expected at least one of them"
        ));
        assert!(excused("vessel.imo", "is required"));
        // A rule of the message that names no withheld field, and disclosed fields, still count.
        assert!(!excused("vessel", "flag and name disagree"));
        assert!(!excused("vessel.name", "is too long"));
        assert!(!excused("tags[0]", "is empty"));
        // A withheld field does not excuse a longer name that merely starts like it.
        assert!(!excused("vessel.imoCheckDigitOverride", "is not a boolean"));
        let withheld = ["weapon.countryOfManufacture".to_string()];
        assert!(!concerns_withheld(
            &FieldError::new(
                "weapon",
                "has no manufacturer, model or serialNumber, expected at least one of them"
            ),
            &withheld
        ));
    }
}
