//! The feed: the `cordon.v1.IndicatorService` gRPC service. Agencies of the member publish
//! and retract ([`publish`]); anyone the federation CA certifies subscribes from a cursor and
//! looks indicators up ([`subscribe`]), each receiving what the release room decides for its
//! identity.
//!
//! This room owns the member's event log as recipients see it. It never decides a release
//! itself (that is [`crate::release`]) and never names a caller from a request field (the
//! identity comes from the certificate, [`crate::identity::caller`]).

pub mod dispatch;
mod predecide;
mod publish;
pub mod rates;
mod subscribe;

use std::pin::Pin;
use std::sync::Arc;

use cordon_indicator::Limits;
use cordon_proto::v1::indicator_service_server::IndicatorService;
use cordon_proto::v1::{
    Event, GetRequest, GetResponse, Indicator, PublishRequest, PublishResponse, RetractRequest,
    RetractResponse, SubscribeRequest,
};
use cordon_storage::Store;
use futures::Stream;
use prost::Message;
use tonic::{Request, Response, Status};

use crate::circle::Circles;
use crate::identity::{Identity, caller};
use crate::metrics::{Metrics, RateLimitedCall};
use crate::release::{DecisionLog, Releaser};
use crate::signing::SigningKey;

pub use subscribe::MAX_SUBSCRIPTIONS_PER_IDENTITY;

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
    pub circles: Arc<Circles>,
    /// Agencies that may retract or supersede any of this member's indicators
    /// (`administrators`); any other agency only those it published.
    pub administrators: std::collections::BTreeSet<String>,
    /// Request-rate limits per identity for re-reads and Get.
    pub rates: rates::RequestRates,
    /// Suspended members: their subscriptions end at once.
    pub roster: crate::roster::Roster,
    /// Serves every caught-up subscription from one read and one decision per recipient.
    pub dispatcher: Arc<dispatch::Dispatcher>,
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

    /// Whether `caller` may retract or supersede the stored indicator `stored`: the agency
    /// that published it, or an administrator, and only for this member's own indicators.
    /// Every other case gets the same answer (`NOT_YOURS` in `publish.rs`), so that
    /// a refusal tells nothing of what the caller may not see.
    fn may_revise(&self, caller: &Identity, stored: &cordon_storage::StoredIndicator) -> bool {
        if stored.originator != self.member {
            return false;
        }
        if self.administrators.contains(&caller.to_string()) {
            return true;
        }
        Indicator::decode(stored.payload.as_slice())
            .is_ok_and(|indicator| indicator.publisher == caller.to_string())
    }

    fn decode(&self, payload: &[u8]) -> Result<Indicator, Status> {
        Indicator::decode(payload).map_err(|error| {
            tracing::error!(%error, "stored indicator does not decode");
            Status::internal("stored indicator does not decode; see the gateway log")
        })
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
        // A call that starts behind the head decides (and logs) again what it reads.
        if request.after < *self.state.store.watch_head().borrow() {
            self.state.rates.admit(
                RateLimitedCall::SubscribeReread,
                &recipient,
                &self.state.metrics,
            )?;
        }
        let member = recipient.member().to_string();
        let stream = subscribe::subscribe(self.state.clone(), recipient, request)?;
        Ok(Response::new(crate::roster::end_when_suspended(
            stream,
            self.state.roster.clone(),
            member,
        )))
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let recipient = caller(&request, &self.state.federation)?;
        self.state
            .rates
            .admit(RateLimitedCall::Get, &recipient, &self.state.metrics)?;
        let response = self.state.get(&recipient, request.into_inner().id).await?;
        Ok(Response::new(response))
    }
}
