//! The MLS side of circles: the provider (RustCrypto with the journaled in-memory key-value
//! store of `cordon-mls-store`), the ciphersuite, this gateway's credential, and the checks of
//! other members' credentials against the federation's pinned keys.
//!
//! Storage: openmls writes its state synchronously into the journaled store of
//! `cordon-mls-store`. Each MLS operation runs under the circles lock inside a journal of that
//! store; the keys it changed (upserts and deletions) are written to the database in the same
//! transaction as the circle's own rows. If that transaction fails the journal is rolled back,
//! so memory never gets ahead of the database. The cost is the keys the operation touched, not
//! the size of the store.

use openmls::prelude::*;

use crate::signing::{FederationKeys, SigningKey};

/// X25519, AES-128-GCM, SHA-256 and Ed25519: Ed25519 because the member's pinned gateway
/// signing key is an Ed25519 key.
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// The provider: RustCrypto and the journaled in-memory key-value store.
pub type Provider = cordon_mls_store::Provider;

/// This gateway's MLS credential: its member id, with its pinned signing key.
pub fn own_credential(member: &str, key: &SigningKey) -> CredentialWithKey {
    CredentialWithKey {
        credential: BasicCredential::new(member.as_bytes().to_vec()).into(),
        signature_key: key.public_key().to_vec().into(),
    }
}

/// The member id a credential names, if it is a basic credential with a member id.
pub fn credential_member(credential: &Credential) -> Result<String, String> {
    let basic = BasicCredential::try_from(credential.clone())
        .map_err(|_| "the MLS credential is not a basic credential".to_string())?;
    let id = std::str::from_utf8(basic.identity())
        .map_err(|_| "the MLS credential's identity is not UTF-8".to_string())?;
    if !crate::identity::is_member_id(id) {
        return Err(format!("the MLS credential names {id:?}, not a member id"));
    }
    Ok(id.to_string())
}

/// Whose keys a credential is checked against: the other members' from `[[members]]`, and
/// this gateway's own.
#[derive(Debug, Clone)]
pub struct PinnedKeys {
    pub own_member: String,
    pub own_key: Vec<u8>,
    pub keys: std::sync::Arc<FederationKeys>,
}

impl PinnedKeys {
    /// Checks that `credential` names a federation member and `signature_key` is pinned for
    /// it; returns the member id.
    pub fn check(&self, credential: &Credential, signature_key: &[u8]) -> Result<String, String> {
        let member = credential_member(credential)?;
        let pinned = if member == self.own_member {
            signature_key == self.own_key.as_slice()
        } else {
            self.keys.is_key_of(&member, signature_key)
        };
        if pinned {
            Ok(member)
        } else if member == self.own_member || self.keys.knows(&member) {
            Err(format!(
                "the MLS signature key of {member} is not the one pinned for it in [[members]]"
            ))
        } else {
            Err(format!("{member} is not a member with pinned keys"))
        }
    }

    /// Checks every member (leaf) of a group, or of a Welcome's group: each must name a
    /// member with its pinned key.
    pub fn check_members(&self, members: impl Iterator<Item = Member>) -> Result<(), String> {
        for member in members {
            self.check(&member.credential, &member.signature_key)?;
        }
        Ok(())
    }
}

/// Validates a KeyPackage fetched from `expected`'s gateway (whose TLS identity the
/// connection pinned): its own signature and lifetime, the ciphersuite, and that its
/// credential names `expected` with the signature key pinned for `expected`.
pub fn check_key_package(
    provider: &Provider,
    bytes: &[u8],
    expected: &str,
    pinned: &PinnedKeys,
) -> Result<KeyPackage, String> {
    use tls_codec::Deserialize as _;
    let key_package = KeyPackageIn::tls_deserialize_exact(bytes)
        .map_err(|error| format!("not a KeyPackage: {error}"))?
        .validate(provider.crypto(), ProtocolVersion::Mls10)
        .map_err(|error| format!("KeyPackage does not validate: {error}"))?;
    if key_package.ciphersuite() != CIPHERSUITE {
        return Err(format!(
            "KeyPackage ciphersuite {:?} is not the circles' {:?}",
            key_package.ciphersuite(),
            CIPHERSUITE
        ));
    }
    let leaf = key_package.leaf_node();
    let named = pinned.check(leaf.credential(), leaf.signature_key().as_slice())?;
    if named != expected {
        return Err(format!(
            "KeyPackage credential names {named}, but the gateway that served it is {expected}"
        ));
    }
    Ok(key_package)
}

/// The member ids of a group's members, in leaf order.
pub fn member_ids(group: &MlsGroup) -> Vec<String> {
    group
        .members()
        .map(|member| {
            credential_member(&member.credential).unwrap_or_else(|error| format!("<{error}>"))
        })
        .collect()
}

/// The group's leaf of `member`, if it is in the group.
pub fn leaf_of(group: &MlsGroup, member: &str) -> Option<LeafNodeIndex> {
    group
        .members()
        .find(|candidate| credential_member(&candidate.credential).as_deref() == Ok(member))
        .map(|candidate| candidate.index)
}

/// Deletes the KeyPackage whose hash reference is `hash_ref` (as stored with it), with its
/// private keys, from the MLS store; nothing if it is not there (used, or forgotten before).
pub fn forget_key_package(provider: &Provider, hash_ref: &[u8]) -> Result<(), String> {
    use openmls_traits::storage::StorageProvider as _;
    use tls_codec::{Deserialize as _, Serialize as _};
    // A KeyPackageRef is the hash as TLS variable-length bytes.
    let reference = tls_codec::VLBytes::new(hash_ref.to_vec())
        .tls_serialize_detached()
        .ok()
        .and_then(|bytes| KeyPackageRef::tls_deserialize_exact(bytes).ok())
        .ok_or("a stored KeyPackage reference does not decode")?;
    provider
        .storage()
        .delete_key_package(&reference)
        .map_err(|error| format!("forgetting a KeyPackage: {error:?}"))
}

pub fn serialize(message: &MlsMessageOut) -> Result<Vec<u8>, String> {
    use tls_codec::Serialize as _;
    message
        .tls_serialize_detached()
        .map_err(|error| format!("encoding an MLS message: {error}"))
}

pub fn deserialize(bytes: &[u8]) -> Result<MlsMessageIn, String> {
    use tls_codec::Deserialize as _;
    MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|error| format!("not an MLS message: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_package_is_forgotten_by_its_stored_reference() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing-key.pem");
        crate::signing::generate_signing_key(&path).unwrap();
        let key = SigningKey::load(&path, "GH").unwrap();
        let provider = Provider::default();
        provider.storage().begin();
        let bundle = KeyPackage::builder()
            .build(CIPHERSUITE, &provider, &key, own_credential("GH", &key))
            .unwrap();
        let hash_ref = bundle
            .key_package()
            .hash_ref(provider.crypto())
            .unwrap()
            .as_slice()
            .to_vec();
        let mut made = provider.storage().changes();
        made.sort();
        assert!(
            !made.is_empty(),
            "the KeyPackage and its private keys are stored"
        );
        // Another reference forgets nothing; its own forgets everything it stored.
        forget_key_package(&provider, &[7; 32]).unwrap();
        let mut now = provider.storage().changes();
        now.sort();
        assert_eq!(now, made);
        forget_key_package(&provider, &hash_ref).unwrap();
        assert!(provider.storage().changes().is_empty());
    }
}
