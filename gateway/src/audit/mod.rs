//! The verifiable record's gRPC face (`AuditService`): the log's signed checkpoint, its
//! proofs and its entries with what each records. The log itself is appended by storage, in
//! the transaction of every write it records (`cordon_storage` `audit`); the tree and the
//! checkpoint form are `cordon-tlog`'s.
//!
//! Who may ask: a checkpoint and a consistency proof (a size and hashes, nothing about
//! content) any identity of the federation, so partner gateways and outside auditors can
//! watch the log; inclusion proofs and entries (which name indicator ids and carry their
//! content) the member's own gateway identity and its administrators.

use std::collections::BTreeSet;
use std::sync::Arc;

use cordon_proto::v1::audit_service_server::AuditService;
use cordon_proto::v1::{
    AuditDecision, AuditEntriesRequest, AuditEntriesResponse, AuditEntry, AuditRetraction,
    CheckpointRequest, CheckpointResponse, ConsistencyProofRequest, ConsistencyProofResponse,
    InclusionProofRequest, InclusionProofResponse,
};
use cordon_storage::Store;
use cordon_tlog::{CheckpointSigner, Entry};
use tonic::{Request, Response, Status};

use crate::identity::{Identity, caller};
use crate::signing::SigningKey;
use crate::status::{invalid_field, storage_status};

/// Entries per `Entries` call at most.
pub const MAX_ENTRIES_PER_PAGE: u32 = 1_000;

pub use crate::identity::audit_log_origin as origin;

#[derive(Clone)]
pub struct AuditApi {
    pub member: String,
    pub federation: String,
    pub store: Store,
    pub signer: Arc<CheckpointSigner>,
    pub administrators: BTreeSet<String>,
}

impl std::fmt::Debug for AuditApi {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AuditApi")
            .field("member", &self.member)
            .finish_non_exhaustive()
    }
}

impl AuditApi {
    pub fn new(
        member: &str,
        federation: &str,
        store: Store,
        signing_key: Arc<SigningKey>,
        administrators: BTreeSet<String>,
    ) -> anyhow::Result<AuditApi> {
        let public_key: [u8; 32] = signing_key
            .public_key()
            .try_into()
            .map_err(|_| anyhow::anyhow!("the signing key is not an Ed25519 key"))?;
        let signer = CheckpointSigner::new(&origin(federation, member), public_key, move |text| {
            signing_key.sign_bytes(text)
        })?;
        Ok(AuditApi {
            member: member.to_string(),
            federation: federation.to_string(),
            store,
            signer: Arc::new(signer),
            administrators,
        })
    }

    /// The member's own gateway identity or one of its administrators.
    fn require_auditor(&self, caller: &Identity) -> Result<(), Status> {
        let own_gateway = *caller
            == Identity::Member {
                member: self.member.clone(),
            };
        if own_gateway || self.administrators.contains(&caller.to_string()) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!(
                "reading the audit log's entries takes the gateway identity {} or an \
                 administrator; {caller} is neither",
                self.member
            )))
        }
    }

    async fn size_at_most(&self, asked: u64, field: &str) -> Result<u64, Status> {
        let size = self.store.audit_size().await.map_err(storage_status)?;
        match asked {
            0 => Ok(size),
            asked if asked > size => Err(invalid_field(
                field,
                format!("the log holds {size} entries, fewer than {asked}"),
            )),
            asked => Ok(asked),
        }
    }
}

#[tonic::async_trait]
impl AuditService for AuditApi {
    async fn checkpoint(
        &self,
        request: Request<CheckpointRequest>,
    ) -> Result<Response<CheckpointResponse>, Status> {
        caller(&request, &self.federation)?;
        let size = self.store.audit_size().await.map_err(storage_status)?;
        let root = self.store.audit_root(size).await.map_err(storage_status)?;
        let note = self
            .signer
            .sign(size, &root)
            .map_err(|error| Status::internal(format!("signing the checkpoint: {error}")))?;
        Ok(Response::new(CheckpointResponse {
            note,
            origin: self.signer.origin().to_string(),
            size,
            root: root.to_vec(),
        }))
    }

    async fn consistency_proof(
        &self,
        request: Request<ConsistencyProofRequest>,
    ) -> Result<Response<ConsistencyProofResponse>, Status> {
        caller(&request, &self.federation)?;
        let request = request.into_inner();
        let size = self.store.audit_size().await.map_err(storage_status)?;
        if request.second > size {
            return Err(invalid_field(
                "second",
                format!(
                    "the log holds {size} entries, fewer than {}",
                    request.second
                ),
            ));
        }
        if request.first > request.second {
            return Err(invalid_field("first", "larger than second"));
        }
        let hashes = self
            .store
            .audit_consistency_proof(request.first, request.second)
            .await
            .map_err(storage_status)?;
        Ok(Response::new(ConsistencyProofResponse {
            hashes: hashes.iter().map(|hash| hash.to_vec()).collect(),
        }))
    }

    async fn inclusion_proof(
        &self,
        request: Request<InclusionProofRequest>,
    ) -> Result<Response<InclusionProofResponse>, Status> {
        let identity = caller(&request, &self.federation)?;
        self.require_auditor(&identity)?;
        let request = request.into_inner();
        let size = self.size_at_most(request.size, "size").await?;
        let position = if request.indicator_id.is_empty() {
            request.position
        } else {
            let positions = self
                .store
                .audit_positions_of(&request.indicator_id)
                .await
                .map_err(storage_status)?;
            *positions.first().ok_or_else(|| {
                Status::not_found(format!(
                    "no entry of the audit log is about indicator {}",
                    request.indicator_id
                ))
            })?
        };
        if position >= size {
            return Err(invalid_field(
                "position",
                format!("{position} is not below the tree size {size}"),
            ));
        }
        let hashes = self
            .store
            .audit_inclusion_proof(position, size)
            .await
            .map_err(storage_status)?;
        let root = self.store.audit_root(size).await.map_err(storage_status)?;
        let entry = self
            .store
            .audit_entries(position, 1)
            .await
            .map_err(storage_status)?
            .into_iter()
            .next()
            .map(|(_, bytes)| bytes)
            .unwrap_or_default();
        Ok(Response::new(InclusionProofResponse {
            position,
            size,
            hashes: hashes.iter().map(|hash| hash.to_vec()).collect(),
            entry,
            root: root.to_vec(),
        }))
    }

    async fn entries(
        &self,
        request: Request<AuditEntriesRequest>,
    ) -> Result<Response<AuditEntriesResponse>, Status> {
        let identity = caller(&request, &self.federation)?;
        self.require_auditor(&identity)?;
        let request = request.into_inner();
        let limit = match request.limit {
            0 => MAX_ENTRIES_PER_PAGE,
            limit if limit > MAX_ENTRIES_PER_PAGE => {
                return Err(invalid_field(
                    "limit",
                    format!("at most {MAX_ENTRIES_PER_PAGE}"),
                ));
            }
            limit => limit,
        };
        let rows = self
            .store
            .audit_entries(request.from, limit)
            .await
            .map_err(storage_status)?;
        let mut entries = Vec::with_capacity(rows.len());
        for (position, bytes) in rows {
            let mut served = AuditEntry {
                position,
                entry: bytes.clone(),
                ..Default::default()
            };
            // The content, read from where the gateway keeps it (never from the entry).
            match Entry::from_canonical_bytes(&bytes) {
                Ok(
                    Entry::Published { indicator_id, .. } | Entry::Received { indicator_id, .. },
                ) => {
                    if let Some(stored) = self
                        .store
                        .indicator(&indicator_id)
                        .await
                        .map_err(storage_status)?
                    {
                        served.indicator = stored.payload;
                    }
                }
                Ok(Entry::Retracted { indicator_id, .. }) => {
                    if let Some(retraction) = self
                        .store
                        .audit_retraction(&indicator_id)
                        .await
                        .map_err(storage_status)?
                    {
                        served.retraction = Some(AuditRetraction {
                            indicator_id: retraction.indicator_id,
                            originator: retraction.originator,
                            reason: retraction.reason,
                            at_micros: retraction.at_micros,
                            has_signature: retraction.signature.is_some(),
                            signature: retraction.signature.unwrap_or_default(),
                        });
                    }
                }
                Ok(Entry::Decisions { .. }) => {
                    served.decisions = self
                        .store
                        .audit_decisions(position)
                        .await
                        .map_err(storage_status)?
                        .into_iter()
                        .map(|row| AuditDecision {
                            decision_id: row.decision_id,
                            at_micros: row.at_micros,
                            recipient: row.recipient,
                            indicator_id: row.indicator_id,
                            channel: row.channel,
                            policy_revision: row.policy_revision,
                            allow: row.allow,
                            redact: row.redact,
                            reasons: row.reasons,
                            has_error: row.error.is_some(),
                            error: row.error.unwrap_or_default(),
                        })
                        .collect();
                }
                // Entries that record no content held here, and entries that do not read
                // (the auditor finds those by their bytes).
                Ok(_) | Err(_) => {}
            }
            entries.push(served);
        }
        Ok(Response::new(AuditEntriesResponse { entries }))
    }
}
