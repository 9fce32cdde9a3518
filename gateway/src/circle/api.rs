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
use futures::Stream;
use tonic::{Request, Response, Status};

use super::hub::{hub_accept, read_limit};
use super::{Circles, kind_name, kind_of, uncancelled};
use crate::identity::{Identity, caller};

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
        let (circles, asking) = (self.circles.clone(), requester.clone());
        let (key_package, last_resort) =
            uncancelled(async move { circles.key_package_for(&asking).await }).await?;
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
        let circles = self.circles.clone();
        uncancelled(async move {
            circles
                .join(&hub, &request.circle, &request.welcome, request.position)
                .await
        })
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
        let (circles, circle, from) =
            (self.circles.clone(), request.circle.clone(), sender.clone());
        let response = uncancelled(async move {
            hub_accept(&circles, &from, &circle, kind, &messages).await
        })
        .await
        .inspect_err(|error| {
                tracing::warn!(circle = %request.circle, %sender, kind = kind_name(kind), reason = %error, "refused a circle message");
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
            .map_err(super::CircleError::from)?
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
                    .map_err(super::CircleError::from)?;
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
        let (circles, name) = (self.circles.clone(), request.into_inner().name);
        Ok(Response::new(
            uncancelled(async move { circles.create(&name).await }).await?,
        ))
    }

    async fn add(
        &self,
        request: Request<AddMemberRequest>,
    ) -> Result<Response<CircleInfo>, Status> {
        self.require_own_gateway(&self.caller(&request)?)?;
        let request = request.into_inner();
        let circles = self.circles.clone();
        Ok(Response::new(
            uncancelled(async move { circles.add(&request.circle, &request.member).await }).await?,
        ))
    }

    async fn remove(
        &self,
        request: Request<RemoveMemberRequest>,
    ) -> Result<Response<CircleInfo>, Status> {
        self.require_own_gateway(&self.caller(&request)?)?;
        let request = request.into_inner();
        let circles = self.circles.clone();
        Ok(Response::new(
            uncancelled(async move { circles.remove(&request.circle, &request.member).await })
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
        let (circles, circle) = (self.circles.clone(), request.into_inner().circle);
        let (epoch, attempts) = uncancelled(async move { circles.rotate(&circle).await }).await?;
        Ok(Response::new(RotateResponse { epoch, attempts }))
    }
}
