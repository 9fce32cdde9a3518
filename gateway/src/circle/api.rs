//! The `cordon.v1.CircleService` gRPC service: KeyPackages, Welcomes, the hub's Send and Log
//! for partner gateways, and the administration calls for this member's own gateway identity.

use std::pin::Pin;
use std::sync::Arc;

use cordon_proto::v1::circle_service_server::CircleService;
use cordon_proto::v1::{
    AddMemberRequest, CircleInfo, CreateCircleRequest, GetKeyPackageRequest, GetKeyPackageResponse,
    ListCirclesRequest, ListCirclesResponse, LogEntry, LogRequest, MembersRequest, MessageKind,
    RemoveMemberRequest, RotateRequest, RotateResponse, SendRequest, SendResponse, WelcomeRequest,
    WelcomeResponse,
};
use cordon_storage::{CircleLogEntry, CircleRow, CircleWrite};
use futures::Stream;
use openmls::prelude::*;
use tonic::{Request, Response, Status};

use super::{
    Circles, STATUS_ACTIVE, check_circle_indicator, circle_indicator, kind_name, kind_of, mls,
};
use crate::identity::Identity;
use crate::identity::caller;

/// Log entries read from storage per page of a Log stream.
const LOG_PAGE: u32 = 256;

#[derive(Debug, Clone)]
pub struct CircleApi {
    pub circles: Arc<Circles>,
}

impl CircleApi {
    fn caller<T>(&self, request: &Request<T>) -> Result<Identity, Status> {
        caller(request, &self.circles.context.federation)
    }

    /// Administration is for this member's own gateway identity.
    fn require_own_gateway(&self, identity: &Identity) -> Result<(), Status> {
        match identity {
            Identity::Member { member } if *member == self.circles.context.member => Ok(()),
            _ => Err(Status::permission_denied(format!(
                "circle administration is for member {}'s own gateway identity; {identity} is not it",
                self.circles.context.member
            ))),
        }
    }

    /// A partner gateway of the federation (not an agency, not this gateway).
    fn require_partner_gateway(&self, identity: &Identity) -> Result<String, Status> {
        match identity {
            Identity::Member { member }
                if *member != self.circles.context.member
                    && self.circles.context.pinned.keys.knows(member) =>
            {
                Ok(member.clone())
            }
            _ => Err(Status::permission_denied(format!(
                "this call is for partner member gateways listed under [[members]]; {identity} is not one"
            ))),
        }
    }
}

type LogStream = Pin<Box<dyn Stream<Item = Result<LogEntry, Status>> + Send>>;

#[tonic::async_trait]
impl CircleService for CircleApi {
    async fn get_key_package(
        &self,
        request: Request<GetKeyPackageRequest>,
    ) -> Result<Response<GetKeyPackageResponse>, Status> {
        let identity = self.caller(&request)?;
        let requester = self.require_partner_gateway(&identity)?;
        let (key_package, last_resort) = self.circles.key_package_for(&requester).await?;
        tracing::info!(%requester, last_resort, "KeyPackage handed out");
        Ok(Response::new(GetKeyPackageResponse {
            key_package,
            last_resort,
        }))
    }

    async fn welcome(
        &self,
        request: Request<WelcomeRequest>,
    ) -> Result<Response<WelcomeResponse>, Status> {
        let identity = self.caller(&request)?;
        let hub = self.require_partner_gateway(&identity)?;
        let request = request.into_inner();
        self.circles
            .join(&hub, &request.circle, &request.welcome, request.position)
            .await?;
        Ok(Response::new(WelcomeResponse {}))
    }

    async fn send(&self, request: Request<SendRequest>) -> Result<Response<SendResponse>, Status> {
        let identity = self.caller(&request)?;
        let sender = self.require_partner_gateway(&identity)?;
        let request = request.into_inner();
        let kind = MessageKind::try_from(request.kind).unwrap_or(MessageKind::Unspecified);
        let mut messages = vec![request.message];
        messages.extend(request.messages);
        let response = hub_accept(&self.circles, &sender, &request.circle, kind, &messages)
            .await
            .inspect_err(|status| {
                tracing::warn!(circle = %request.circle, %sender, kind = kind_name(kind), code = ?status.code(), reason = %status.message(), "refused a circle message");
            })?;
        Ok(Response::new(response))
    }

    type LogStream = LogStream;

    async fn log(&self, request: Request<LogRequest>) -> Result<Response<Self::LogStream>, Status> {
        let identity = self.caller(&request)?;
        let reader = self.require_partner_gateway(&identity)?;
        let request = request.into_inner();
        let circles = self.circles.clone();
        let name = request.circle.clone();
        // Checked before the stream starts, and again for every page.
        read_limit(&circles, &name, &reader).await?;
        // A member reads only what follows the commit that added it.
        let admitted = circles
            .context
            .store
            .admission(&name, &reader)
            .await
            .map_err(crate::status::storage_status)?
            .unwrap_or(0);
        let mut changes = circles.subscribe_changes();
        let mut shutdown = circles.shutdown_signal();
        let mut next = request.from_position.max(admitted + 1);
        let stream = async_stream::try_stream! {
            loop {
                let limit = read_limit(&circles, &name, &reader).await?;
                let entries = circles
                    .context
                    .store
                    .circle_log(&name, next, LOG_PAGE)
                    .await
                    .map_err(crate::status::storage_status)?;
                let mut ended = false;
                let mut any = false;
                for entry in entries {
                    if limit.is_some_and(|last| entry.position > last) {
                        ended = true;
                        break;
                    }
                    next = entry.position + 1;
                    any = true;
                    yield LogEntry {
                        position: entry.position,
                        epoch: entry.epoch,
                        sender: entry.sender,
                        kind: kind_of(&entry.kind) as i32,
                        message: entry.message,
                    };
                }
                if ended || limit.is_some_and(|last| next > last) {
                    break;
                }
                if any {
                    continue;
                }
                let stopping = tokio::select! {
                    changed = changes.changed() => if changed.is_err() { break } else { false },
                    _ = shutdown.wait_for(|stopping| *stopping) => true,
                };
                if stopping {
                    Err(Status::unavailable("the hub is stopping; resume from your position"))?;
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn create(
        &self,
        request: Request<CreateCircleRequest>,
    ) -> Result<Response<CircleInfo>, Status> {
        self.require_own_gateway(&self.caller(&request)?)?;
        Ok(Response::new(
            self.circles.create(&request.get_ref().name).await?,
        ))
    }

    async fn add(
        &self,
        request: Request<AddMemberRequest>,
    ) -> Result<Response<CircleInfo>, Status> {
        self.require_own_gateway(&self.caller(&request)?)?;
        let request = request.into_inner();
        Ok(Response::new(
            self.circles.add(&request.circle, &request.member).await?,
        ))
    }

    async fn remove(
        &self,
        request: Request<RemoveMemberRequest>,
    ) -> Result<Response<CircleInfo>, Status> {
        self.require_own_gateway(&self.caller(&request)?)?;
        let request = request.into_inner();
        Ok(Response::new(
            self.circles
                .remove(&request.circle, &request.member)
                .await?,
        ))
    }

    async fn list(
        &self,
        request: Request<ListCirclesRequest>,
    ) -> Result<Response<ListCirclesResponse>, Status> {
        self.require_own_gateway(&self.caller(&request)?)?;
        Ok(Response::new(ListCirclesResponse {
            circles: self.circles.list().await,
        }))
    }

    async fn members(
        &self,
        request: Request<MembersRequest>,
    ) -> Result<Response<CircleInfo>, Status> {
        self.require_own_gateway(&self.caller(&request)?)?;
        Ok(Response::new(
            self.circles.info(&request.get_ref().circle).await?,
        ))
    }

    async fn rotate(
        &self,
        request: Request<RotateRequest>,
    ) -> Result<Response<RotateResponse>, Status> {
        self.require_own_gateway(&self.caller(&request)?)?;
        let (epoch, attempts) = self.circles.rotate(&request.get_ref().circle).await?;
        Ok(Response::new(RotateResponse { epoch, attempts }))
    }
}

/// The last log position `reader` may read (`None`: no limit, it is a current member), or
/// PERMISSION_DENIED when it was never in the circle.
async fn read_limit(circles: &Circles, name: &str, reader: &str) -> Result<Option<u64>, Status> {
    {
        let inner = circles.lock().await;
        let (row, group) = inner.circle(name)?;
        if row.hub != circles.context.member {
            return Err(Status::failed_precondition(format!(
                "circle {name:?} is hubbed by {}",
                row.hub
            )));
        }
        if mls::leaf_of(group, reader).is_some() {
            return Ok(None);
        }
    }
    match circles
        .context
        .store
        .departure(name, reader)
        .await
        .map_err(crate::status::storage_status)?
    {
        Some(last) => Ok(Some(last)),
        None => Err(Status::permission_denied(format!(
            "{reader} is not a member of circle {name:?}"
        ))),
    }
}

/// The hub's acceptance of one member's message: only for the current epoch; checked with
/// the hub's own group state (which authenticates the sender and decrypts); then, in one
/// transaction, the epoch advances (for a commit) and the message is appended to the log.
pub async fn hub_accept(
    circles: &Circles,
    sender: &str,
    name: &str,
    kind: MessageKind,
    messages: &[Vec<u8>],
) -> Result<SendResponse, Status> {
    if messages.is_empty() {
        return Err(crate::status::invalid_field("message", "no message"));
    }
    if messages.len() > 1 && kind != MessageKind::Application {
        return Err(crate::status::invalid_field(
            "messages",
            "only application messages are sent several at a time",
        ));
    }
    let mut protocols = Vec::with_capacity(messages.len());
    for bytes in messages {
        let message = mls::deserialize(bytes)
            .map_err(|error| crate::status::invalid_field("message", error))?;
        protocols.push(message.try_into_protocol_message().map_err(|_| {
            crate::status::invalid_field("message", "not an MLS handshake or application message")
        })?);
    }
    let mut inner = circles.lock().await;
    {
        let (row, group) = inner.circle(name)?;
        if row.hub != circles.context.member || row.status != STATUS_ACTIVE {
            return Err(Status::failed_precondition(format!(
                "this gateway is not the hub of an active circle {name:?}"
            )));
        }
        if mls::leaf_of(group, sender).is_none() {
            return Err(Status::permission_denied(format!(
                "{sender} is not a member of circle {name:?}"
            )));
        }
        let current = group.epoch().as_u64();
        for protocol in &protocols {
            if protocol.group_id() != group.group_id() {
                return Err(crate::status::invalid_field(
                    "message",
                    "the message is for another group",
                ));
            }
            if protocol.epoch().as_u64() != current {
                return Err(Status::aborted(format!(
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
            let epoch = inner
                .rows
                .get(&circle)
                .map(|row| row.epoch)
                .unwrap_or_default();
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
    inner: &mut super::Inner,
    context: &super::CircleContext,
    circle: &str,
    sender_id: &str,
    kind: MessageKind,
    protocol: ProtocolMessage,
    bytes: &[u8],
    write: &mut CircleWrite,
) -> Result<u64, Status> {
    let (row, group, provider) = inner.circle_mut(circle)?;
    let epoch = group.epoch().as_u64();
    let processed = group
        .process_message(provider, protocol)
        .map_err(|error| Status::invalid_argument(format!("message rejected: {error}")))?;
    let author =
        mls::credential_member(processed.credential()).map_err(Status::permission_denied)?;
    if author != sender_id {
        return Err(Status::permission_denied(format!(
            "the message is signed by {author} but was sent by {sender_id}"
        )));
    }
    match (processed.into_content(), kind) {
        (ProcessedMessageContent::ApplicationMessage(application), MessageKind::Application) => {
            let indicator = check_circle_indicator(context, sender_id, &application.into_bytes())
                .map_err(|reason| {
                Status::invalid_argument(format!("circle indicator refused: {reason}"))
            })?;
            write
                .indicators
                .push(circle_indicator(&indicator, Some(sender_id))?);
        }
        (ProcessedMessageContent::ProposalMessage(_), MessageKind::Proposal) => {
            // A pending proposal would block every member's messages until the hub
            // committed it, and would slip an unchecked leaf into that commit.
            return Err(Status::permission_denied(
                "the hub takes no proposals: a member rotates its keys with a commit",
            ));
        }
        (ProcessedMessageContent::StagedCommitMessage(staged), MessageKind::Commit) => {
            if staged.queued_proposals().next().is_some() {
                return Err(Status::permission_denied(
                    "a member's commit may carry no proposals, only its own update path; \
                             the hub alone changes membership",
                ));
            }
            for credential in staged.credentials_to_verify() {
                // The new leaf keeps the member's pinned signature key.
                mls::credential_member(credential)
                    .ok()
                    .filter(|member| member == sender_id)
                    .ok_or_else(|| {
                        Status::permission_denied("a commit may not change its sender's credential")
                    })?;
            }
            group
                .merge_staged_commit(provider, *staged)
                .map_err(|error| Status::internal(format!("merging: {error}")))?;
        }
        (_, kind) => {
            return Err(crate::status::invalid_field(
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
        .map_err(|reason| Status::permission_denied(format!("circle member: {reason}")))?;
    let position = row.position + 1;
    let updated = CircleRow {
        epoch: group.epoch().as_u64(),
        position,
        ..row
    };
    inner.rows.insert(circle.to_string(), updated.clone());
    write.circle = Some(updated);
    write.log.push(CircleLogEntry {
        circle: circle.to_string(),
        position,
        epoch,
        sender: sender_id.to_string(),
        kind: kind_name(kind).into(),
        message: bytes.to_vec(),
        at_micros: crate::clock::now_micros(),
    });
    Ok(position)
}
