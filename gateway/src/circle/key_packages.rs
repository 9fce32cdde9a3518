//! KeyPackages this gateway hands to hubs that add it: single use, a few per partner per
//! window, then the last-resort one; unused ones are forgotten with their private keys.

use std::time::Duration;

use cordon_storage::{CircleWrite, KeyPackageRow};
use openmls::prelude::*;

use super::{CircleError, Circles, mls};
use crate::clock::now_micros;

/// Single-use KeyPackages one member may take in [`KEY_PACKAGE_WINDOW`]; beyond that it gets
/// the last-resort one, so that a partner cannot drain this gateway's KeyPackages.
pub const KEY_PACKAGES_PER_WINDOW: usize = 4;
pub const KEY_PACKAGE_WINDOW: Duration = Duration::from_secs(3600);
/// A last-resort KeyPackage older than this is replaced when it is next handed out.
pub const LAST_RESORT_ROTATION: Duration = Duration::from_secs(24 * 3600);
/// A single-use KeyPackage not used this long after it was made, or a last-resort one
/// replaced this long ago, is forgotten with its private keys. A hub uses a KeyPackage at
/// once, but the Welcome made from it may wait for an outage of this gateway to end; a
/// Welcome older than this can no longer be opened (the hub removes and adds again).
pub const KEY_PACKAGE_EXPIRY: Duration = Duration::from_secs(30 * 24 * 3600);

impl Circles {
    /// A KeyPackage for `requester`: a fresh single-use one while it has taken fewer than
    /// [`KEY_PACKAGES_PER_WINDOW`] in the window, else the last-resort one (rotated daily).
    pub async fn key_package_for(&self, requester: &str) -> Result<(Vec<u8>, bool), CircleError> {
        // Only a gateway listed under [[peers]] may add this one to a circle (and a Welcome is
        // taken only from such a hub): no one else gets a KeyPackage to keep for 30 days.
        if !self.context.peers.iter().any(|peer| peer.id == requester) {
            return Err(CircleError::PermissionDenied(format!(
                "KeyPackages are served only to the gateways this one lists under [[peers]]; \
                 {requester} is not one"
            )));
        }
        // Counted under the lock, so that concurrent requests cannot all see a free slot.
        let mut inner = self.inner.lock().await;
        let rows = self.context.store.key_packages().await?;
        let now = now_micros();
        let window_start = now - KEY_PACKAGE_WINDOW.as_micros() as i64;
        let recent = rows
            .iter()
            .filter(|row| {
                !row.last_resort
                    && row.issued_to.as_deref() == Some(requester)
                    && row.issued_micros.unwrap_or_default() >= window_start
            })
            .count();
        let current_last_resort = rows
            .iter()
            .filter(|row| row.last_resort)
            .max_by_key(|row| row.created_micros)
            .filter(|row| now - row.created_micros < LAST_RESORT_ROTATION.as_micros() as i64)
            .cloned();
        let single_use = recent < KEY_PACKAGES_PER_WINDOW;
        // Expired: single-use ones made before the expiry, last-resort ones made before the
        // current one's rotation period and the expiry.
        let expired = expired_key_packages(&rows, now);
        if !single_use && let Some(row) = current_last_resort {
            return Ok((row.key_package, true));
        }
        let credential = self.credential();
        let signer = self.context.signing_key.clone();
        let requester = requester.to_string();
        let (bytes, _) = self
            .apply(&mut inner, |inner| {
                let mut builder = KeyPackage::builder();
                if !single_use {
                    builder = builder.mark_as_last_resort();
                }
                let bundle = builder
                    .build(
                        mls::CIPHERSUITE,
                        &inner.provider,
                        signer.as_ref(),
                        credential,
                    )
                    .map_err(|error| {
                        CircleError::internal(format!("making a KeyPackage: {error}"))
                    })?;
                let key_package = bundle.key_package();
                let hash_ref = key_package
                    .hash_ref(inner.provider.crypto())
                    .map_err(|error| {
                        CircleError::internal(format!("hashing a KeyPackage: {error}"))
                    })?;
                use tls_codec::Serialize as _;
                let bytes = key_package.tls_serialize_detached().map_err(|error| {
                    CircleError::internal(format!("encoding a KeyPackage: {error}"))
                })?;
                // The private keys of expired ones (gone already for those that were used).
                for hash_ref in &expired {
                    mls::forget_key_package(&inner.provider, hash_ref)
                        .map_err(CircleError::Internal)?;
                }
                Ok((
                    bytes.clone(),
                    CircleWrite {
                        key_packages: vec![KeyPackageRow {
                            hash_ref: hash_ref.as_slice().to_vec(),
                            key_package: bytes,
                            last_resort: !single_use,
                            issued_to: Some(requester.clone()),
                            issued_micros: Some(now),
                            created_micros: now,
                        }],
                        key_packages_dropped: expired.clone(),
                        ..CircleWrite::default()
                    },
                ))
            })
            .await?;
        Ok((bytes, !single_use))
    }
}

/// The KeyPackages to forget at `now`: single-use ones made more than [`KEY_PACKAGE_EXPIRY`]
/// ago, last-resort ones made more than [`LAST_RESORT_ROTATION`] plus that ago.
fn expired_key_packages(rows: &[KeyPackageRow], now: i64) -> Vec<Vec<u8>> {
    let expiry = KEY_PACKAGE_EXPIRY.as_micros() as i64;
    let rotation = LAST_RESORT_ROTATION.as_micros() as i64;
    rows.iter()
        .filter(|row| {
            let age = now.saturating_sub(row.created_micros);
            if row.last_resort {
                age > rotation + expiry
            } else {
                age > expiry
            }
        })
        .map(|row| row.hash_ref.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(tag: u8, last_resort: bool, created_micros: i64) -> KeyPackageRow {
        KeyPackageRow {
            hash_ref: vec![tag],
            key_package: Vec::new(),
            last_resort,
            issued_to: None,
            issued_micros: None,
            created_micros,
        }
    }

    #[test]
    fn key_packages_expire_after_30_days_last_resort_ones_30_days_after_rotation() {
        let day = 24 * 3_600_000_000i64;
        let now = 1_000 * day;
        let rows = [
            row(1, false, now - 29 * day),
            row(2, false, now - 31 * day),
            row(3, true, now - 30 * day),
            row(4, true, now - 32 * day),
        ];
        assert_eq!(expired_key_packages(&rows, now), [vec![2], vec![4]]);
    }
}
