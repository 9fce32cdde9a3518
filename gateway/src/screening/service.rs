//! `cordon.v1.ScreeningService` and `cordon.v1.AlertService`: for agencies of the gateway's
//! own member.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use cordon_proto::v1::alert_service_server::AlertService;
use cordon_proto::v1::screening_service_server::ScreeningService;
use cordon_proto::v1::{
    AddWatchRequest, Alert, AlertSubscribeRequest, GetScreeningRequest, ListWatchesRequest,
    ListWatchesResponse, RemoveWatchRequest, RemoveWatchResponse, ScreenRequest, ScreenResponse,
    ScreeningResult, WatchEntry,
};
use cordon_storage::{NewWatch, WatchKind};
use futures::Stream;
use prost::Message;
use tonic::{Request, Response, Status};

use super::Screening;
use super::follower::watch_subject;
use super::subjects::{entry_subject, watch_kinds};
use crate::clock::{now_micros, timestamp_from_micros};
use crate::identity::{Identity, caller};
use crate::status::{invalid_field, storage_status};

/// Alerts read per page of a stream.
const ALERT_PAGE: u32 = 256;
/// A following alert stream also looks for alerts raised by another replica this often.
const ALERT_POLL: Duration = Duration::from_secs(1);
/// Longest watchlist value and label.
const MAX_ENTRY_TEXT: usize = 256;

#[derive(Debug, Clone)]
pub struct ScreeningApi {
    pub screening: Arc<Screening>,
    pub member: String,
    pub federation: String,
}

impl ScreeningApi {
    /// The caller, if it is an agency of this member.
    fn agency<T>(&self, request: &Request<T>) -> Result<Identity, Status> {
        let identity = caller(request, &self.federation)?;
        if identity.is_agency_of(&self.member) {
            Ok(identity)
        } else {
            Err(Status::permission_denied(format!(
                "screening and alerts are for agencies of member {}; {identity} is not one",
                self.member
            )))
        }
    }
}

#[tonic::async_trait]
impl ScreeningService for ScreeningApi {
    async fn screen(
        &self,
        request: Request<ScreenRequest>,
    ) -> Result<Response<ScreenResponse>, Status> {
        let agency = self.agency(&request)?;
        let results = self
            .screening
            .screen(&agency, request.into_inner().declarations)
            .await?;
        Ok(Response::new(ScreenResponse { results }))
    }

    async fn get(
        &self,
        request: Request<GetScreeningRequest>,
    ) -> Result<Response<ScreeningResult>, Status> {
        let agency = self.agency(&request)?;
        let id = request.into_inner().id;
        // Another agency's screening and none at all look the same.
        let not_found = || Status::not_found(format!("no screening {id} of {agency}"));
        let row = self
            .screening
            .context
            .store
            .screening(&id)
            .await
            .map_err(storage_status)?
            .filter(|row| row.agency == agency.to_string())
            .ok_or_else(not_found)?;
        let result = ScreeningResult::decode(row.result.as_slice()).map_err(|error| {
            tracing::error!(screening = %id, %error, "stored screening does not decode");
            Status::internal("stored screening does not decode; see the gateway log")
        })?;
        Ok(Response::new(result))
    }
}

type AlertStream = Pin<Box<dyn Stream<Item = Result<Alert, Status>> + Send>>;

#[tonic::async_trait]
impl AlertService for ScreeningApi {
    type SubscribeStream = AlertStream;

    async fn subscribe(
        &self,
        request: Request<AlertSubscribeRequest>,
    ) -> Result<Response<AlertStream>, Status> {
        let agency = self.agency(&request)?.to_string();
        let request = request.into_inner();
        let screening = self.screening.clone();
        let stream = async_stream::try_stream! {
            let store = screening.context.store.clone();
            let mut raised = store.watch_alerts();
            let mut shutdown = screening.shutdown.clone();
            let mut cursor = request.after;
            let mut sent = 0u64;
            loop {
                raised.borrow_and_update();
                let rows = store
                    .alerts_after(&agency, cursor, ALERT_PAGE)
                    .await
                    .map_err(storage_status)?;
                let full = rows.len() >= ALERT_PAGE as usize;
                for row in rows {
                    let mut alert = Alert::decode(row.payload.as_slice()).map_err(|error| {
                        tracing::error!(alert = row.sequence, %error, "stored alert does not decode");
                        Status::internal("stored alert does not decode; see the gateway log")
                    })?;
                    alert.cursor = row.sequence;
                    cursor = row.sequence;
                    yield alert;
                    sent += 1;
                    if request.limit != 0 && sent >= request.limit {
                        return;
                    }
                }
                if full {
                    continue;
                }
                if !request.follow {
                    return;
                }
                let stopping = tokio::select! {
                    changed = raised.changed() => changed.is_err(),
                    () = tokio::time::sleep(ALERT_POLL) => false,
                    _ = shutdown.wait_for(|stopping| *stopping) => true,
                };
                if stopping {
                    Err(Status::unavailable("gateway shutting down; resume from your cursor"))?;
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn add_watch(
        &self,
        request: Request<AddWatchRequest>,
    ) -> Result<Response<WatchEntry>, Status> {
        let agency = self.agency(&request)?;
        let request = request.into_inner();
        let kinds = watch_kinds();
        if !kinds.contains(&request.kind.as_str()) {
            return Err(invalid_field(
                "kind",
                format!("{:?} is not one of {}", request.kind, kinds.join(", ")),
            ));
        }
        for (field, value) in [("value", &request.value), ("label", &request.label)] {
            if value.len() > MAX_ENTRY_TEXT {
                return Err(invalid_field(
                    field,
                    format!("longer than {MAX_ENTRY_TEXT} bytes"),
                ));
            }
            if value.chars().any(char::is_control) {
                return Err(invalid_field(field, "contains control characters"));
            }
        }
        let created = now_micros();
        let entry = WatchEntry {
            id: uuid::Uuid::now_v7().to_string(),
            kind: request.kind,
            value: request.value,
            label: request.label,
            created: Some(timestamp_from_micros(created)),
        };
        let has_a_form = entry_subject(&entry)
            .map(|subject| subject.prepare())
            .is_some_and(|prepared| !prepared.identifiers.is_empty() || !prepared.names.is_empty());
        if !has_a_form {
            return Err(invalid_field(
                "value",
                format!("{:?} is not a {} once normalised", entry.value, entry.kind),
            ));
        }
        let watch = NewWatch {
            kind: WatchKind::Entry,
            agency: agency.to_string(),
            reference_id: entry.id.clone(),
            subject: entry.encode_to_vec(),
            // Intelligence already held is what screening shows; the entry alerts on what comes.
            from_sequence: self.screening.position(),
            until_micros: None,
            created_micros: created,
        };
        self.screening
            .context
            .store
            .add_watch(&watch)
            .await
            .map_err(storage_status)?;
        self.screening.watches_added.notify_one();
        tracing::info!(%agency, entry = %entry.id, kind = %entry.kind, "watchlist entry added");
        Ok(Response::new(entry))
    }

    async fn list_watches(
        &self,
        request: Request<ListWatchesRequest>,
    ) -> Result<Response<ListWatchesResponse>, Status> {
        let agency = self.agency(&request)?;
        let rows = self
            .screening
            .context
            .store
            .watches_of(&agency.to_string(), WatchKind::Entry)
            .await
            .map_err(storage_status)?;
        let entries = rows
            .iter()
            .filter_map(|row| WatchEntry::decode(row.watch.subject.as_slice()).ok())
            .collect();
        Ok(Response::new(ListWatchesResponse { entries }))
    }

    async fn remove_watch(
        &self,
        request: Request<RemoveWatchRequest>,
    ) -> Result<Response<RemoveWatchResponse>, Status> {
        let agency = self.agency(&request)?.to_string();
        let id = request.into_inner().id;
        let store = &self.screening.context.store;
        let held = store
            .watches_of(&agency, WatchKind::Entry)
            .await
            .map_err(storage_status)?
            .into_iter()
            .find(|row| row.watch.reference_id == id);
        let removed = store
            .remove_watch_entry(&agency, &id)
            .await
            .map_err(storage_status)?;
        if !removed {
            return Err(Status::not_found(format!(
                "no watchlist entry {id} of {agency}"
            )));
        }
        if let Some(row) = held
            && let Some(subject) = watch_subject(&row)
        {
            self.screening.watches_mut().remove(row.number, &subject);
        }
        tracing::info!(%agency, entry = %id, "watchlist entry removed");
        Ok(Response::new(RemoveWatchResponse {}))
    }
}
