//! `cordon.v1.FederationService`: the state of this gateway's followers (`cordon peers`).

use std::sync::Arc;

use cordon_proto::v1::federation_service_server::FederationService;
use cordon_proto::v1::{PeersRequest, PeersResponse};
use tonic::{Request, Response, Status};

use super::Federation;
use crate::identity::caller;
use crate::metrics::FollowerStatuses;

/// `cordon.v1.FederationService`: the followers' state, for the member's own
/// gateway identity and agencies.
#[derive(Debug, Clone)]
pub struct FederationApi {
    pub member: String,
    pub federation_name: String,
    pub federation: Arc<Federation>,
}

#[tonic::async_trait]
impl FederationService for FederationApi {
    async fn peers(
        &self,
        request: Request<PeersRequest>,
    ) -> Result<Response<PeersResponse>, Status> {
        let caller = caller(&request, &self.federation_name)?;
        if caller.member() != self.member {
            return Err(Status::permission_denied(format!(
                "peer status is for member {}'s own gateway and agencies; {caller} is not one",
                self.member
            )));
        }
        Ok(Response::new(PeersResponse {
            peers: self.federation.statuses(),
        }))
    }
}
