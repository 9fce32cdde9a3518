//! What only the hub does for its members: accept a member's messages into the log (one
//! epoch at a time, checked with the hub's own state), and say how far a gateway may read
//! the log.

use cordon_proto::v1::{MessageKind, SendResponse};
use cordon_storage::CircleWrite;
use openmls::prelude::*;

use super::state::Inner;
use super::{
    CircleContext, CircleError, Circles, STATUS_ACTIVE, check_circle_indicator, circle_indicator,
    kind_name, mls,
};

/// The last log position `reader` may read (`None`: no limit, it is a current member), or
/// PERMISSION_DENIED when it was never in the circle.
pub(super) async fn read_limit(
    circles: &Circles,
    name: &str,
    reader: &str,
) -> Result<Option<u64>, CircleError> {
    {
        let inner = circles.lock().await;
        let (row, group) = match inner.circle(name) {
            Ok(found) => found,
            Err(CircleError::NotFound(_)) => return Err(not_yours(name, reader)),
            Err(error) => return Err(error),
        };
        if row.hub != circles.context.member {
            return Err(not_yours(name, reader));
        }
        if mls::leaf_of(group, reader).is_some() {
            return Ok(None);
        }
    }
    match circles.context.store.departure(name, reader).await? {
        Some(last) => Ok(Some(last)),
        None => Err(not_yours(name, reader)),
    }
}

/// The one answer to a gateway asking a hub for a circle it may not read or send to, whether
/// the circle does not exist, is hubbed elsewhere, or does not count the caller among its
/// members: a caller learns nothing of which circles exist or who hubs them.
fn not_yours(name: &str, caller: &str) -> CircleError {
    CircleError::NotFound(format!(
        "no circle {name:?} hubbed here with {caller} among its members"
    ))
}

/// The hub's acceptance of one member's messages: only for the current epoch; checked with
/// the hub's own group state (which authenticates the sender and decrypts); then, in one
/// transaction, the epoch advances (for a commit) and the messages are appended to the log.
pub async fn hub_accept(
    circles: &Circles,
    sender: &str,
    name: &str,
    kind: MessageKind,
    messages: &[Vec<u8>],
) -> Result<SendResponse, CircleError> {
    if messages.is_empty() {
        return Err(CircleError::invalid("message", "no message"));
    }
    if messages.len() > 1 && kind != MessageKind::Application {
        return Err(CircleError::invalid(
            "messages",
            "only application messages are sent several at a time",
        ));
    }
    let mut protocols = Vec::with_capacity(messages.len());
    for bytes in messages {
        let message =
            mls::deserialize(bytes).map_err(|error| CircleError::invalid("message", error))?;
        protocols.push(message.try_into_protocol_message().map_err(|_| {
            CircleError::invalid("message", "not an MLS handshake or application message")
        })?);
    }
    let mut inner = circles.lock().await;
    {
        let (row, group) = match inner.circle(name) {
            Ok(found) => found,
            Err(CircleError::NotFound(_)) => return Err(not_yours(name, sender)),
            Err(error) => return Err(error),
        };
        if row.hub != circles.context.member || mls::leaf_of(group, sender).is_none() {
            return Err(not_yours(name, sender));
        }
        if row.status != STATUS_ACTIVE {
            return Err(CircleError::FailedPrecondition(format!(
                "circle {name:?} is not active"
            )));
        }
        let current = group.epoch().as_u64();
        for protocol in &protocols {
            if protocol.group_id() != group.group_id() {
                return Err(CircleError::invalid(
                    "message",
                    "the message is for another group",
                ));
            }
            if protocol.epoch().as_u64() != current {
                return Err(CircleError::EpochLost(format!(
                    "circle {name:?} is at epoch {current}; the message is for epoch {}: catch up and send again",
                    protocol.epoch().as_u64()
                )));
            }
        }
    }
    let context = circles.context.clone();
    let circle = name.to_string();
    let sender_id = sender.to_string();
    let ((position, epoch), _) = circles
        .apply(&mut inner, |inner| {
            let mut write = CircleWrite::default();
            let mut position = 0;
            for (protocol, bytes) in protocols.into_iter().zip(messages) {
                position = accept_one(
                    inner, &context, &circle, &sender_id, kind, protocol, bytes, &mut write,
                )?;
            }
            let epoch = inner.circle(&circle)?.0.epoch;
            if !write.indicators.is_empty() {
                write.indicators_circle = Some(circle.clone());
            }
            Ok(((position, epoch), write))
        })
        .await?;
    Ok(SendResponse { position, epoch })
}

/// Processes one message at the hub and adds its log entry (and indicator) to `write`;
/// returns its position.
#[allow(clippy::too_many_arguments)]
fn accept_one(
    inner: &mut Inner,
    context: &CircleContext,
    circle: &str,
    sender_id: &str,
    kind: MessageKind,
    protocol: ProtocolMessage,
    bytes: &[u8],
    write: &mut CircleWrite,
) -> Result<u64, CircleError> {
    let (_, group, provider) = inner.circle_mut(circle)?;
    let epoch = group.epoch().as_u64();
    let processed = group
        .process_message(provider, protocol)
        .map_err(|error| CircleError::Refused(format!("message rejected: {error}")))?;
    let author =
        mls::credential_member(processed.credential()).map_err(CircleError::PermissionDenied)?;
    if author != sender_id {
        return Err(CircleError::PermissionDenied(format!(
            "the message is signed by {author} but was sent by {sender_id}"
        )));
    }
    match (processed.into_content(), kind) {
        (ProcessedMessageContent::ApplicationMessage(application), MessageKind::Application) => {
            let indicator = check_circle_indicator(context, sender_id, &application.into_bytes())
                .map_err(|reason| {
                CircleError::Refused(format!("circle indicator refused: {reason}"))
            })?;
            write
                .indicators
                .push(circle_indicator(&indicator, Some(sender_id))?);
        }
        (ProcessedMessageContent::ProposalMessage(_), MessageKind::Proposal) => {
            // A pending proposal would block every member's messages until the hub
            // committed it, and would slip an unchecked leaf into that commit.
            return Err(CircleError::PermissionDenied(
                "the hub takes no proposals: a member rotates its keys with a commit".into(),
            ));
        }
        (ProcessedMessageContent::StagedCommitMessage(staged), MessageKind::Commit) => {
            if staged.queued_proposals().next().is_some() {
                return Err(CircleError::PermissionDenied(
                    "a member's commit may carry no proposals, only its own update path; \
                     the hub alone changes membership"
                        .into(),
                ));
            }
            for credential in staged.credentials_to_verify() {
                // The new leaf keeps the member's pinned signature key.
                mls::credential_member(credential)
                    .ok()
                    .filter(|member| member == sender_id)
                    .ok_or_else(|| {
                        CircleError::PermissionDenied(
                            "a commit may not change its sender's credential".into(),
                        )
                    })?;
            }
            group
                .merge_staged_commit(provider, *staged)
                .map_err(|error| CircleError::internal(format!("merging: {error}")))?;
        }
        (_, kind) => {
            return Err(CircleError::invalid(
                "kind",
                format!(
                    "the message is not of the kind it was sent as ({})",
                    kind_name(kind)
                ),
            ));
        }
    }
    // Every leaf, after the message: each names a member with its pinned key.
    context
        .pinned
        .check_members(group.members())
        .map_err(|reason| CircleError::PermissionDenied(format!("circle member: {reason}")))?;
    inner.append_to_log(circle, epoch, sender_id, kind, bytes.to_vec(), write)
}
