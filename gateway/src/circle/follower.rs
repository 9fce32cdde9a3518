//! A member's follower of a circle's hub log: streams the log from the circle's position,
//! applies each entry with its MLS state (decrypting application messages, merging commits)
//! and writes the state, the position and any indicator in one transaction per entry.

use std::collections::HashMap;
use std::sync::Arc;

use futures::FutureExt as _;

use cordon_proto::v1::{LogEntry, LogRequest, MessageKind};
use cordon_storage::{CircleRow, CircleWrite};
use openmls::prelude::*;
use prost::Message as _;

use super::publish::digest;
use super::state::Inner;
use super::{
    CircleContext, CircleError, Circles, STATUS_ACTIVE, STATUS_REMOVED, check_circle_indicator,
    circle_indicator, mls, uncancelled,
};

/// Follows `name`'s hub log until shutdown or until this gateway is removed from the circle.
pub async fn run(circles: Arc<Circles>, name: String) {
    let mut shutdown = circles.shutdown_signal();
    let mut attempt = 0u32;
    loop {
        if *shutdown.borrow() {
            return;
        }
        match follow_once(&circles, &name).await {
            Ok(true) => return,
            Ok(false) => attempt = 0,
            Err(error) => {
                attempt = attempt.saturating_add(1);
                tracing::warn!(circle = %name, reason = %error, "following the circle's hub");
            }
        }
        let delay = crate::federation::backoff(attempt);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
    }
}

/// One connection to the hub. `Ok(true)`: this gateway left the circle; stop following.
async fn follow_once(circles: &Arc<Circles>, name: &str) -> Result<bool, CircleError> {
    let (hub, position) = {
        let inner = circles.lock().await;
        let (row, _) = inner.circle(name)?;
        if row.status != STATUS_ACTIVE {
            return Ok(true);
        }
        (row.hub.clone(), row.position)
    };
    let mut client = circles.connect(&hub).await?;
    let mut stream = client
        .log(LogRequest {
            circle: name.to_string(),
            from_position: position + 1,
        })
        .await?
        .into_inner();
    let mut shutdown = circles.shutdown_signal();
    loop {
        let entry = tokio::select! {
            entry = stream.message() => entry?,
            _ = shutdown.wait_for(|stopping| *stopping) => return Ok(true),
        };
        let Some(entry) = entry else {
            return Ok(false);
        };
        // What the stream already holds goes into the same transaction (one write, one
        // wake-up of this member's subscribers, instead of one per entry).
        let mut batch = vec![entry];
        let mut after = None;
        while batch.len() < BATCH {
            match stream.message().now_or_never() {
                Some(Ok(Some(entry))) => batch.push(entry),
                Some(Ok(None)) => {
                    after = Some(Ok(false));
                    break;
                }
                Some(Err(status)) => {
                    after = Some(Err(status.into()));
                    break;
                }
                None => break,
            }
        }
        let (circles, circle) = (circles.clone(), name.to_string());
        if uncancelled(async move { apply_entries(&circles, &circle, batch).await }).await? {
            return Ok(true);
        }
        if let Some(after) = after {
            return after;
        }
    }
}

/// Log entries applied in one transaction at most.
const BATCH: usize = 256;

/// Applies log entries in one transaction; if that fails, one by one, so that the entries
/// before a failing one are kept and the failure is the failing entry's own. `Ok(true)`
/// when they removed this gateway from the circle. A caller that may be cancelled runs it
/// through [`super::uncancelled`].
pub async fn apply_entries(
    circles: &Circles,
    name: &str,
    entries: Vec<LogEntry>,
) -> Result<bool, CircleError> {
    if entries.len() > 1 {
        match apply_batch(circles, name, &entries).await {
            Ok(removed) => return Ok(removed),
            Err(error) => {
                tracing::debug!(circle = %name, reason = %error, "a batch of log entries failed; applying them one by one");
            }
        }
    }
    for entry in entries {
        if apply_batch(circles, name, std::slice::from_ref(&entry)).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// One entry's outcome: whether it removed this gateway, and why it was refused, if it was.
type Applied = (bool, Option<String>);

async fn apply_batch(
    circles: &Circles,
    name: &str,
    entries: &[LogEntry],
) -> Result<bool, CircleError> {
    let own = circles.context.member.clone();
    let context = circles.context.clone();
    let circle = name.to_string();
    // This gateway's own application messages: the indicators waiting in its outbox.
    let mut outbox = HashMap::new();
    for entry in entries {
        if entry.sender == own && entry.kind == MessageKind::Application as i32 {
            let digest = digest(&entry.message);
            if let Some(indicator) = context.store.outbox_entry(name, &digest).await? {
                outbox.insert(entry.position, (digest, indicator));
            }
        }
    }
    let mut inner = circles.lock().await;
    let (outcomes, _) = circles
        .apply(&mut inner, |inner| {
            let mut write = CircleWrite::default();
            let mut outcomes = Vec::with_capacity(entries.len());
            for entry in entries {
                let outcome =
                    apply_one(inner, &context, &own, &circle, entry, &outbox, &mut write)?;
                let removed = outcome.0;
                outcomes.push((entry.position, entry.sender.clone(), outcome));
                if removed {
                    break;
                }
            }
            if !write.indicators.is_empty() {
                write.indicators_circle = Some(circle.clone());
            }
            Ok((outcomes, write))
        })
        .await?;
    let mut removed_here = false;
    for (position, sender, (removed, refused)) in outcomes {
        if let Some(reason) = refused {
            tracing::warn!(circle = %name, position, %sender, %reason, "refused a circle message");
        }
        if removed {
            tracing::info!(circle = %name, position, "removed from the circle; no longer following");
            removed_here = true;
        }
    }
    Ok(removed_here)
}

/// Applies one entry to the in-memory state and adds its rows to `write`.
fn apply_one(
    inner: &mut Inner,
    context: &CircleContext,
    own: &str,
    circle: &str,
    entry: &LogEntry,
    outbox: &HashMap<u64, (Vec<u8>, Vec<u8>)>,
    write: &mut CircleWrite,
) -> Result<Applied, CircleError> {
    let (row, group, provider) = inner.circle_mut(circle)?;
    if entry.position <= row.position {
        return Ok((false, None));
    }
    if entry.position != row.position + 1 {
        return Err(CircleError::LogBroken(format!(
            "the hub's log jumped from {} to {}",
            row.position, entry.position
        )));
    }
    let mut removed = false;
    let mut refused = None;
    let kind = MessageKind::try_from(entry.kind).unwrap_or(MessageKind::Unspecified);
    if entry.sender == own {
        // Our own message. An application message is stored when the hub answers; if
        // that answer never came, from the outbox here. Our own commit is merged here if
        // the crash came between the hub's answer and the merge.
        if kind == MessageKind::Application
            && let Some((digest, payload)) = outbox.get(&entry.position)
        {
            let indicator = cordon_proto::v1::Indicator::decode(payload.as_slice())
                .map_err(|error| CircleError::internal(format!("an outbox entry: {error}")))?;
            write.indicators.push(circle_indicator(&indicator, None)?);
            write
                .outbox
                .push((circle.to_string(), digest.clone(), None));
        }
        if kind == MessageKind::Commit && group.epoch().as_u64() == entry.epoch {
            if group.pending_commit().is_none() {
                // Its secrets are gone: this gateway cannot follow the circle on.
                return Err(CircleError::LogBroken(format!(
                    "this gateway's own commit for epoch {} is in the hub's log, but \
                     its pending state was dropped; the hub must remove and add it again",
                    entry.epoch
                )));
            }
            group
                .merge_pending_commit(provider)
                .map_err(|error| CircleError::internal(format!("merging own commit: {error}")))?;
        }
    } else {
        match process(provider, group, &entry.message) {
            Ok(ProcessedMessageContent::ApplicationMessage(application)) => {
                match check_circle_indicator(context, &entry.sender, &application.into_bytes()) {
                    Ok(indicator) => {
                        write
                            .indicators
                            .push(circle_indicator(&indicator, Some(&entry.sender))?);
                    }
                    Err(reason) => refused = Some(reason),
                }
            }
            Ok(ProcessedMessageContent::ProposalMessage(_)) => {
                refused = Some("a proposal: circles take none".to_string());
            }
            Ok(ProcessedMessageContent::StagedCommitMessage(staged)) => {
                for member in staged.credentials_to_verify() {
                    if mls::credential_member(member).is_err() {
                        return Err(CircleError::PermissionDenied(
                            "a commit carries an unknown credential".into(),
                        ));
                    }
                }
                removed = staged.self_removed();
                if group.pending_commit().is_some() {
                    group
                        .clear_pending_commit(provider.storage())
                        .map_err(|error| CircleError::internal(format!("{error:?}")))?;
                }
                group
                    .merge_staged_commit(provider, *staged)
                    .map_err(|error| CircleError::internal(format!("merging: {error}")))?;
                if !removed {
                    // Every leaf names a member with its pinned key, or the commit
                    // is not taken (the state is put back and the follower stops
                    // here, loudly).
                    context
                        .pinned
                        .check_members(group.members())
                        .map_err(|reason| {
                            CircleError::PermissionDenied(format!(
                                "the commit at position {} makes a member that is not pinned: {reason}",
                                entry.position
                            ))
                        })?;
                }
            }
            Ok(_) => refused = Some("unexpected message content".to_string()),
            // A commit that cannot be processed would leave this gateway behind
            // every later epoch: stop here rather than skip it.
            Err(reason) if kind == MessageKind::Commit => {
                return Err(CircleError::LogBroken(format!(
                    "the hub's commit at position {} cannot be processed: {reason}",
                    entry.position
                )));
            }
            Err(reason) => refused = Some(reason),
        }
    }
    let updated = CircleRow {
        epoch: group.epoch().as_u64(),
        position: entry.position,
        status: if removed {
            STATUS_REMOVED.into()
        } else {
            row.status.clone()
        },
        ..row
    };
    inner.rows.insert(circle.to_string(), updated.clone());
    write.circle = Some(updated);
    Ok((removed, refused))
}

/// Decrypts and verifies one message with the group's state.
pub fn process(
    provider: &mls::Provider,
    group: &mut MlsGroup,
    bytes: &[u8],
) -> Result<ProcessedMessageContent, String> {
    let message = mls::deserialize(bytes)?;
    let protocol = message
        .try_into_protocol_message()
        .map_err(|_| "not an MLS protocol message".to_string())?;
    group
        .process_message(provider, protocol)
        .map(ProcessedMessage::into_content)
        .map_err(|error| format!("{error}"))
}
