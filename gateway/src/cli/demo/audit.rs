//! The demo's audit part: each gateway's checkpoint verified with its public key, and every
//! entry of its log proven in it.

use super::*;

/// Fetches `member`'s checkpoint as its own gateway identity, verifies it with the member's
/// public key, and checks every entry's inclusion proof against it.
pub(super) async fn audit_part(member: &Member, keys: &FederationKeys) -> Result<AuditReport> {
    use cordon_proto::v1::audit_service_client::AuditServiceClient;
    use cordon_proto::v1::{CheckpointRequest, InclusionProofRequest};
    let mut client = AuditServiceClient::new(
        crate::cli::client::channel(&member.endpoint, &member.identity).await?,
    );
    let latest = client
        .checkpoint(CheckpointRequest {})
        .await
        .map_err(crate::cli::status_error)?
        .into_inner();
    let key: [u8; 32] = keys
        .keys_of(member.id)
        .first()
        .and_then(|key| key.as_slice().try_into().ok())
        .context("the member's public key")?;
    let checkpoint = cordon_tlog::verify_checkpoint(&latest.note, &latest.origin, &key)
        .with_context(|| format!("{}'s checkpoint", member.id))?;
    let mut entries_verified = 0;
    for position in 0..checkpoint.size {
        let proof = client
            .inclusion_proof(InclusionProofRequest {
                position,
                indicator_id: String::new(),
                size: checkpoint.size,
            })
            .await
            .map_err(crate::cli::status_error)?
            .into_inner();
        let hashes = cordon_tlog::proof_hashes(&proof.hashes)?;
        cordon_tlog::verify_inclusion(
            position,
            checkpoint.size,
            &cordon_tlog::leaf_hash(&proof.entry),
            &hashes,
            &checkpoint.root,
        )
        .with_context(|| format!("{}'s entry {position}", member.id))?;
        entries_verified += 1;
    }
    use base64::Engine as _;
    Ok(AuditReport {
        member: member.id.to_string(),
        origin: latest.origin,
        size: checkpoint.size,
        root: base64::engine::general_purpose::STANDARD.encode(checkpoint.root),
        checkpoint: latest.note,
        signature_verified: true,
        entries_verified,
    })
}
