//! `cordon audit verify` and `cordon audit prove`: checking a gateway's audit log from
//! outside, with its public key only.
//!
//! `verify` fetches the latest checkpoint and checks its signature; with `--checkpoint FILE`
//! it checks that the log grew from the checkpoint saved there (consistency proof) and saves
//! the new one; then it recomputes every entry (or `--sample N` of them) from the content the
//! gateway serves (the stored indicator, the retraction), never from the gateway's hashes,
//! and checks each by inclusion proof against the checkpoint's root.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use cordon_proto::v1::audit_service_client::AuditServiceClient;
use cordon_proto::v1::{
    AuditEntriesRequest, AuditEntry, CheckpointRequest, ConsistencyProofRequest,
    InclusionProofRequest,
};
use cordon_tlog::{
    Digest, Entry, leaf_hash, verify_checkpoint, verify_consistency, verify_inclusion,
};
use tonic::transport::Channel;

use crate::cli::Connection;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the gateway's audit log: its signed checkpoint, that it only grew since a saved
    /// checkpoint, and every entry recomputed from the content it records.
    Verify(VerifyArgs),
    /// Print the inclusion proof of an indicator's entry (JSON) for checking offline.
    Prove {
        #[command(flatten)]
        connection: Connection,
        #[arg(long)]
        indicator: String,
    },
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    connection: Connection,
    /// The gateway's Ed25519 public signing key, hex (as `cordon init` printed it).
    #[arg(long)]
    key: String,
    /// A checkpoint saved by an earlier run: the log must have grown from it. The new
    /// checkpoint is saved there.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Check this many entries picked at random instead of all of them.
    #[arg(long)]
    sample: Option<u64>,
    /// Accept batches of release decisions whose decisions the gateway no longer holds
    /// (purged after the decision log's retention), checking only that the batch's entry is
    /// in the log; they are counted as `contentGone`. Without it such a batch fails.
    #[arg(long)]
    allow_purged_decisions: bool,
}

pub async fn run(command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Verify(args) => verify(args).await,
        AuditCommand::Prove {
            connection,
            indicator,
        } => prove(&connection, &indicator).await,
    }
}

async fn client(connection: &Connection) -> Result<AuditServiceClient<Channel>> {
    Ok(AuditServiceClient::new(
        crate::cli::client::channel(&connection.endpoint, &connection.identity).await?,
    ))
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn verify(args: VerifyArgs) -> Result<()> {
    let key: [u8; 32] = hex::decode(args.key.trim())
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .context("--key: not an Ed25519 public key (64 hex digits)")?;
    let mut audit = client(&args.connection).await?;
    let latest = audit
        .checkpoint(CheckpointRequest {})
        .await
        .context("fetching the checkpoint")?
        .into_inner();
    let checkpoint = verify_checkpoint(&latest.note, &latest.origin, &key)
        .with_context(|| format!("the checkpoint of {} does not verify", latest.origin))?;

    // The log only grew since the saved checkpoint.
    let mut consistent_with = None;
    if let Some(path) = &args.checkpoint
        && path.exists()
    {
        let saved =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let old = verify_checkpoint(&saved, &latest.origin, &key)
            .with_context(|| format!("{}: the saved checkpoint does not verify", path.display()))?;
        if old.size > checkpoint.size {
            bail!(
                "the log shrank: {} held {} entries, the gateway now says {}",
                path.display(),
                old.size,
                checkpoint.size
            );
        }
        let proof = audit
            .consistency_proof(ConsistencyProofRequest {
                first: old.size,
                second: checkpoint.size,
            })
            .await
            .context("fetching the consistency proof")?
            .into_inner();
        verify_consistency(
            old.size,
            checkpoint.size,
            &old.root,
            &checkpoint.root,
            &cordon_tlog::proof_hashes(&proof.hashes)?,
        )
        .with_context(|| {
            format!(
                "the log was rewritten: the checkpoint of {} entries in {} is not a prefix of \
                 the log of {} entries now",
                old.size,
                path.display(),
                checkpoint.size
            )
        })?;
        consistent_with = Some(old.size);
    }

    // Every entry (or a sample), recomputed from the content served.
    let positions: Vec<u64> = match args.sample {
        Some(count) if count < checkpoint.size => {
            let mut picked: Vec<u64> = (0..count)
                .map(|_| fastrand::u64(0..checkpoint.size))
                .collect();
            picked.sort_unstable();
            picked.dedup();
            picked
        }
        _ => (0..checkpoint.size).collect(),
    };
    let mut verified = 0u64;
    let mut content_gone = 0u64;
    let mut next = 0usize;
    while next < positions.len() {
        let from = positions[next];
        let page = audit
            .entries(AuditEntriesRequest { from, limit: 0 })
            .await
            .context("fetching entries")?
            .into_inner()
            .entries;
        if page.is_empty() {
            bail!("the gateway serves no entry at position {from}, below its checkpoint's size");
        }
        let before = next;
        for served in &page {
            if next >= positions.len() || served.position >= checkpoint.size {
                break;
            }
            if served.position < positions[next] {
                continue;
            }
            if served.position > positions[next] {
                // Served out of order or with a gap: an entry the checkpoint covers would go
                // unchecked.
                bail!(
                    "the gateway skipped entry {} (it served {} next)",
                    positions[next],
                    served.position
                );
            }
            let leaf = match recomputed_leaf(served, args.allow_purged_decisions)
                .with_context(|| format!("entry {} ({})", served.position, describe(served)))?
            {
                Recomputed::Leaf(leaf) => leaf,
                Recomputed::ContentGone(leaf) => {
                    content_gone += 1;
                    leaf
                }
            };
            let proof = audit
                .inclusion_proof(InclusionProofRequest {
                    position: served.position,
                    indicator_id: String::new(),
                    size: checkpoint.size,
                })
                .await
                .with_context(|| format!("fetching the proof of entry {}", served.position))?
                .into_inner();
            verify_inclusion(
                served.position,
                checkpoint.size,
                &leaf,
                &cordon_tlog::proof_hashes(&proof.hashes)?,
                &checkpoint.root,
            )
            .map_err(|error| {
                anyhow::anyhow!(
                    "entry {} ({}) is not in the log the gateway signed: {error}; what the \
                     gateway holds for it was changed after it was logged",
                    served.position,
                    describe(served)
                )
            })?;
            verified += 1;
            next += 1;
        }
        if next == before {
            bail!("the gateway does not serve entry {from}, below its checkpoint's size");
        }
    }
    if let Some(path) = &args.checkpoint {
        std::fs::write(path, &latest.note)
            .with_context(|| format!("saving the checkpoint to {}", path.display()))?;
    }
    let summary = serde_json::json!({
        "origin": latest.origin,
        "size": checkpoint.size,
        "root": base64(&checkpoint.root),
        "verified": verified,
        "consistentWith": consistent_with,
        "contentGone": content_gone,
    });
    println!("{summary}");
    Ok(())
}

/// What an entry is about, for an error message.
fn describe(served: &AuditEntry) -> String {
    match Entry::from_canonical_bytes(&served.entry) {
        Ok(entry) => match entry.indicator_id() {
            Some(id) => format!("{} of indicator {id}", kind(&entry)),
            None => kind(&entry).to_string(),
        },
        Err(error) => format!("unreadable: {error}"),
    }
}

fn kind(entry: &Entry) -> &'static str {
    match entry {
        Entry::Published { .. } => "publication",
        Entry::Retracted { .. } => "retraction",
        Entry::Received { .. } => "receipt",
        Entry::PolicyActivated { .. } => "policy activation",
        Entry::CircleMembership { .. } => "circle membership change",
        Entry::Decisions { .. } => "decision batch",
    }
}

/// An entry's leaf as the auditor recomputed it.
enum Recomputed {
    /// From the content it records (or the entry itself, for entries with no content).
    Leaf(Digest),
    /// From the entry's own bytes: its content is gone by design (decisions past retention).
    ContentGone(Digest),
}

/// The leaf of `served`, recomputed from the content it records where there is one, so that
/// content changed after it was logged no longer matches the signed root.
fn recomputed_leaf(served: &AuditEntry, allow_purged: bool) -> Result<Recomputed> {
    let logged = Entry::from_canonical_bytes(&served.entry).context("reading the entry")?;
    let recomputed = match &logged {
        Entry::Published {
            indicator_id,
            originator,
            ..
        } => {
            if served.indicator.is_empty() {
                bail!("the gateway no longer holds indicator {indicator_id}");
            }
            Entry::stored(indicator_id, originator, None, &served.indicator)
        }
        Entry::Received {
            indicator_id,
            originator,
            peer,
            ..
        } => {
            if served.indicator.is_empty() {
                bail!("the gateway no longer holds indicator {indicator_id}");
            }
            Entry::stored(indicator_id, originator, Some(peer), &served.indicator)
        }
        Entry::Retracted { indicator_id, .. } => {
            let retraction = served.retraction.as_ref().with_context(|| {
                format!("the gateway no longer holds the retraction of {indicator_id}")
            })?;
            Entry::retraction(
                &retraction.indicator_id,
                &retraction.originator,
                &retraction.reason,
                retraction.at_micros,
                retraction
                    .has_signature
                    .then_some(retraction.signature.as_slice()),
            )
        }
        Entry::Decisions { count, .. } => {
            if served.decisions.len() as u64 != *count {
                // All or part of the batch purged after the decision log's retention, or
                // withheld: only the entry can be checked, and only when the auditor accepts it.
                if allow_purged && (served.decisions.len() as u64) < *count {
                    return Ok(Recomputed::ContentGone(leaf_hash(&served.entry)));
                }
                bail!(
                    "the batch held {count} decisions and the gateway serves {} (purged after \
                     retention? --allow-purged-decisions accepts that)",
                    served.decisions.len()
                );
            }
            let forms: Vec<cordon_tlog::entry::DecisionForm<'_>> = served
                .decisions
                .iter()
                .map(|decision| cordon_tlog::entry::DecisionForm {
                    decision_id: &decision.decision_id,
                    at_micros: decision.at_micros,
                    recipient: &decision.recipient,
                    indicator_id: &decision.indicator_id,
                    channel: &decision.channel,
                    policy_revision: &decision.policy_revision,
                    allow: decision.allow,
                    redact: &decision.redact,
                    reasons: &decision.reasons,
                    error: decision.has_error.then_some(decision.error.as_str()),
                })
                .collect();
            Entry::decisions(&forms)
        }
        // No content held apart from the entry itself.
        other => other.clone(),
    };
    Ok(Recomputed::Leaf(leaf_hash(&recomputed.canonical_bytes())))
}

async fn prove(connection: &Connection, indicator: &str) -> Result<()> {
    let mut audit = client(connection).await?;
    // The proof is for the checkpoint's size, so that the two are checked together.
    let checkpoint = audit
        .checkpoint(CheckpointRequest {})
        .await
        .context("fetching the checkpoint")?
        .into_inner();
    let proof = audit
        .inclusion_proof(InclusionProofRequest {
            position: 0,
            indicator_id: indicator.to_string(),
            size: checkpoint.size,
        })
        .await
        .context("fetching the inclusion proof")?
        .into_inner();
    let output = serde_json::json!({
        "position": proof.position,
        "size": proof.size,
        "entry": String::from_utf8_lossy(&proof.entry),
        "leafHash": base64(&leaf_hash(&proof.entry)),
        "hashes": proof.hashes.iter().map(|hash| base64(hash)).collect::<Vec<_>>(),
        "root": base64(&proof.root),
        "checkpoint": checkpoint.note,
    });
    println!("{output}");
    Ok(())
}
