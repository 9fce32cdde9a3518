//! What goes in the log, and the canonical bytes each entry is hashed from.
//!
//! An entry records an event by digest: the log proves what happened and in what order
//! without holding (or revealing) an indicator's content. The canonical form is the line
//! `cordon-log/v1` followed by the entry as JSON with its fields in the order declared here
//! (serde_json writes struct fields in declaration order and escapes strings one way), so a
//! verifier that rebuilds the entry from what the gateway serves gets the same bytes.
//! Changing a field is a new version tag, never a silent change of v1.

use serde::{Deserialize, Serialize};

/// The first line of every entry's canonical form.
pub const VERSION_TAG: &str = "cordon-log/v1";

/// One event of a gateway's record. Digests are lowercase hex SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "camelCase", deny_unknown_fields)]
pub enum Entry {
    /// An indicator this member published: the digest of its canonical signed form.
    #[serde(rename_all = "camelCase")]
    Published {
        indicator_id: String,
        originator: String,
        digest: String,
    },
    /// A retraction of one of this member's indicators (digest of the signed retraction).
    #[serde(rename_all = "camelCase")]
    Retracted {
        indicator_id: String,
        originator: String,
        digest: String,
    },
    /// An indicator received from a peer gateway and stored.
    #[serde(rename_all = "camelCase")]
    Received {
        indicator_id: String,
        originator: String,
        peer: String,
        digest: String,
    },
    /// A policy revision that became the one in force.
    #[serde(rename_all = "camelCase")]
    PolicyActivated {
        revision: String,
        source_digest: String,
    },
    /// A member added to or removed from a circle.
    #[serde(rename_all = "camelCase")]
    CircleMembership {
        circle: String,
        member: String,
        change: MembershipChange,
        epoch: u64,
    },
    /// A batch of release decisions: how many, and the digest of their canonical forms in
    /// order, so that each decision can be shown to be in the log with its batch.
    #[serde(rename_all = "camelCase")]
    Decisions {
        first_decision_id: String,
        count: u64,
        digest: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MembershipChange {
    Added,
    Removed,
}

/// Why bytes are not an entry of this version.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("not a {VERSION_TAG} entry")]
    Version,
    #[error("entry: {0}")]
    Json(#[from] serde_json::Error),
    #[error("entry is not in its canonical form")]
    NotCanonical,
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn digest_hex(bytes: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// The digest a retraction is logged under: SHA-256 of
/// `{"indicatorId","originator","reason","atMicros","signature"}` as JSON in that order, the
/// signature in lowercase hex or `null`. A verifier computes it from the retraction served.
pub fn retraction_digest(
    indicator_id: &str,
    originator: &str,
    reason: &str,
    at_micros: i64,
    signature: Option<&[u8]>,
) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Retraction<'a> {
        indicator_id: &'a str,
        originator: &'a str,
        reason: &'a str,
        at_micros: i64,
        signature: Option<String>,
    }
    let retraction = Retraction {
        indicator_id,
        originator,
        reason,
        at_micros,
        signature: signature.map(|bytes| bytes.iter().map(|b| format!("{b:02x}")).collect()),
    };
    digest_hex(&serde_json::to_vec(&retraction).expect("a retraction serialises"))
}

/// One release decision in the canonical form its batch's digest covers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DecisionForm<'a> {
    pub decision_id: &'a str,
    pub at_micros: i64,
    pub recipient: &'a str,
    pub indicator_id: &'a str,
    pub channel: &'a str,
    pub policy_revision: &'a str,
    pub allow: bool,
    pub redact: &'a [String],
    pub reasons: &'a [String],
    pub error: Option<&'a str>,
}

/// The digest of a batch of decisions: SHA-256 of their canonical JSON forms, each followed
/// by a newline, in the order given (the gateway gives them by decision id, bytewise).
pub fn decisions_digest(decisions: &[DecisionForm<'_>]) -> String {
    let mut bytes = Vec::with_capacity(decisions.len() * 256);
    for decision in decisions {
        serde_json::to_writer(&mut bytes, decision).expect("a decision serialises");
        bytes.push(b'\n');
    }
    digest_hex(&bytes)
}

impl Entry {
    /// The entry of a batch of release decisions.
    pub fn decisions(decisions: &[DecisionForm<'_>]) -> Entry {
        Entry::Decisions {
            first_decision_id: decisions
                .first()
                .map(|decision| decision.decision_id.to_string())
                .unwrap_or_default(),
            count: decisions.len() as u64,
            digest: decisions_digest(decisions),
        }
    }

    /// The entry of an indicator stored from `payload` (its stored, signed encoding):
    /// `published` when this gateway's member published it (`via` is `None`), `received`
    /// through the peer `via` otherwise.
    pub fn stored(
        indicator_id: &str,
        originator: &str,
        via: Option<&str>,
        payload: &[u8],
    ) -> Entry {
        let digest = digest_hex(payload);
        match via {
            None => Entry::Published {
                indicator_id: indicator_id.to_string(),
                originator: originator.to_string(),
                digest,
            },
            Some(peer) => Entry::Received {
                indicator_id: indicator_id.to_string(),
                originator: originator.to_string(),
                peer: peer.to_string(),
                digest,
            },
        }
    }

    /// The entry of a retraction ([`retraction_digest`]).
    pub fn retraction(
        indicator_id: &str,
        originator: &str,
        reason: &str,
        at_micros: i64,
        signature: Option<&[u8]>,
    ) -> Entry {
        Entry::Retracted {
            indicator_id: indicator_id.to_string(),
            originator: originator.to_string(),
            digest: retraction_digest(indicator_id, originator, reason, at_micros, signature),
        }
    }

    /// The indicator an entry is about, if any.
    pub fn indicator_id(&self) -> Option<&str> {
        match self {
            Entry::Published { indicator_id, .. }
            | Entry::Retracted { indicator_id, .. }
            | Entry::Received { indicator_id, .. } => Some(indicator_id),
            _ => None,
        }
    }

    /// The bytes the entry's leaf hash is computed from.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(128);
        bytes.extend_from_slice(VERSION_TAG.as_bytes());
        bytes.push(b'\n');
        // Serialising a plain struct of strings and integers to a Vec cannot fail.
        serde_json::to_writer(&mut bytes, self).expect("an entry serialises");
        bytes
    }

    /// The entry's leaf hash in the log.
    pub fn leaf_hash(&self) -> crate::Digest {
        crate::verify::leaf_hash(&self.canonical_bytes())
    }

    /// Reads canonical bytes back; anything else (another version, other spacing or field
    /// order, unknown fields) is refused.
    pub fn from_canonical_bytes(bytes: &[u8]) -> Result<Entry, EntryError> {
        let body = bytes
            .strip_prefix(VERSION_TAG.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"\n"))
            .ok_or(EntryError::Version)?;
        let entry: Entry = serde_json::from_slice(body)?;
        if entry.canonical_bytes() != bytes {
            return Err(EntryError::NotCanonical);
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canonical_form_is_fixed_and_read_back() {
        let entry = Entry::Published {
            indicator_id: "01926b9e-6c2a-7c3e-9f1b-2d4e5f6a7b8c".into(),
            originator: "GH".into(),
            digest: "00".repeat(32),
        };
        let bytes = entry.canonical_bytes();
        let expected = format!(
            "cordon-log/v1\n{{\"entry\":\"published\",\"indicatorId\":\"01926b9e-6c2a-7c3e-9f1b-2d4e5f6a7b8c\",\"originator\":\"GH\",\"digest\":\"{}\"}}",
            "00".repeat(32)
        );
        assert_eq!(String::from_utf8(bytes.clone()).unwrap(), expected);
        assert_eq!(Entry::from_canonical_bytes(&bytes).unwrap(), entry);
        let membership = Entry::CircleMembership {
            circle: "alpha".into(),
            member: "NG".into(),
            change: MembershipChange::Removed,
            epoch: 4,
        };
        assert_eq!(
            String::from_utf8(membership.canonical_bytes()).unwrap(),
            "cordon-log/v1\n{\"entry\":\"circleMembership\",\"circle\":\"alpha\",\"member\":\"NG\",\"change\":\"removed\",\"epoch\":4}"
        );
    }

    #[test]
    fn other_forms_of_the_same_entry_are_refused() {
        let spaced = b"cordon-log/v1\n{\"entry\": \"policyActivated\", \"revision\": \"r\", \"sourceDigest\": \"d\"}";
        assert!(matches!(
            Entry::from_canonical_bytes(spaced),
            Err(EntryError::NotCanonical)
        ));
        let canonical = b"cordon-log/v1\n{\"entry\":\"policyActivated\",\"revision\":\"r\",\"sourceDigest\":\"d\"}";
        assert!(Entry::from_canonical_bytes(canonical).is_ok());
        let v2 = b"cordon-log/v2\n{\"entry\":\"policyActivated\",\"revision\":\"r\",\"sourceDigest\":\"d\"}";
        assert!(matches!(
            Entry::from_canonical_bytes(v2),
            Err(EntryError::Version)
        ));
        let unknown = b"cordon-log/v1\n{\"entry\":\"policyActivated\",\"revision\":\"r\",\"sourceDigest\":\"d\",\"x\":1}";
        assert!(Entry::from_canonical_bytes(unknown).is_err());
    }
}
