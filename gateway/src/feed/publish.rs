//! Publish and Retract: an agency's batch is validated, signed with the gateway's key and
//! stored in one transaction, acknowledged after the commit; a retraction is signed like the
//! indicator so that every gateway it reaches can check it.

use cordon_proto::v1::{
    Accepted, Indicator, PublishResponse, RetractRequest, RetractResponse, Retracted,
};
use cordon_storage::NewIndicator;
use prost::Message;
use tonic::Status;

use super::GatewayState;
use crate::clock::{micros_of, now_micros, now_rfc3339, now_timestamp};
use crate::identity::Identity;
use crate::metrics::StorageOperation;
use crate::status::{invalid_batch, invalid_field, storage_status};

/// The one answer to a retraction or revision of an indicator the caller may not revise,
/// whether it is absent, another member's, or published by another agency.
const NOT_YOURS: &str = "names no indicator you published (only the publishing agency or an \
     administrator of the member may retract or supersede an indicator)";

impl GatewayState {
    pub(crate) async fn publish(
        &self,
        caller: &Identity,
        indicators: Vec<Indicator>,
    ) -> Result<PublishResponse, Status> {
        self.require_own_agency(caller, "publishing")?;
        let warnings = cordon_indicator::validate_batch(&indicators, &self.limits)
            .map_err(|errors| invalid_batch(&errors))?;
        // A revision must name an indicator this caller may revise: one it published (or any
        // of the member's, for an administrator). Absent, another member's and another
        // agency's indicators get the same answer.
        for (index, indicator) in indicators.iter().enumerate() {
            if indicator.supersedes.is_empty() {
                continue;
            }
            let stored = self
                .store
                .indicator(&indicator.supersedes)
                .await
                .map_err(storage_status)?;
            if !stored.is_some_and(|stored| self.may_revise(caller, &stored)) {
                return Err(invalid_field(
                    &format!("indicators[{index}].supersedes"),
                    NOT_YOURS,
                ));
            }
        }
        let created = now_timestamp();
        let mut ids = Vec::with_capacity(indicators.len());
        let mut batch = Vec::with_capacity(indicators.len());
        let mut signed = Vec::with_capacity(indicators.len());
        for (index, mut indicator) in indicators.into_iter().enumerate() {
            if indicator.id.is_empty() {
                indicator.id = uuid::Uuid::now_v7().to_string();
            }
            indicator.originator = self.member.clone();
            indicator.publisher = caller.to_string();
            indicator.created = Some(created);
            self.signing_key.sign(&mut indicator).map_err(|error| {
                invalid_field(&format!("indicators[{index}]"), error.to_string())
            })?;
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
            signed.push(indicator);
        }
        // Decided now for the dispatcher's identities, stored with the batch.
        let (decisions, on_commit) = match self.predecide(signed, micros_of(&created)).await? {
            Some(decided) => (
                decided.records.iter().map(crate::release::row_of).collect(),
                Some(decided.on_commit),
            ),
            None => (Vec::new(), None),
        };
        let sequences = self
            .metrics
            .time_storage(
                StorageOperation::Publish,
                self.store.publish_decided(batch, decisions, on_commit),
            )
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
    pub(super) async fn publish_to_circle(
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
        let (circles, caller, circle) = (self.circles.clone(), caller.clone(), circle.to_string());
        let response = crate::circle::uncancelled(async move {
            circles
                .publish(
                    &caller,
                    &circle,
                    indicators,
                    &now_rfc3339(),
                    now_timestamp(),
                    warnings,
                )
                .await
        })
        .await?;
        self.metrics.published(response.accepted.len() as u64);
        Ok(response)
    }

    pub(super) async fn retract(
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
            .map_err(storage_status)?;
        if !stored.is_some_and(|stored| self.may_revise(caller, &stored)) {
            return Err(Status::not_found(format!("{}: {NOT_YOURS}", request.id)));
        }
        // Signed like the indicator, so that every gateway the retraction
        // reaches, by whatever path, can check it comes from the originator.
        let mut statement = Retracted {
            indicator_id: request.id.clone(),
            originator: self.member.clone(),
            reason: request.reason.clone(),
            signature: None,
        };
        self.signing_key
            .sign_retraction(&mut statement)
            .map_err(|error| Status::internal(format!("signing the retraction: {error}")))?;
        let signature = statement.signature.as_ref().map(Message::encode_to_vec);
        let sequence = self
            .metrics
            .time_storage(
                StorageOperation::Retract,
                self.store.retract(
                    &request.id,
                    &request.reason,
                    now_micros(),
                    signature.as_deref(),
                ),
            )
            .await
            .map_err(storage_status)?;
        tracing::info!(retracted_by = %caller, indicator = %request.id, sequence, "retracted");
        Ok(RetractResponse { sequence })
    }
}
