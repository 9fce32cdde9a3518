//! What one MLS operation and the collection of its changes cost as the store grows: on the
//! journaled store, and, as the baseline, on openmls' `MemoryStorage` with a copy of the whole
//! store before the operation and a comparison after it (how the gateway collected changes
//! before the journal). The store is filled with KeyPackages handed out to partners (their
//! private keys stay until used or expired), the growth a partner can cause (issue 17 item 7).
//!
//! Run: `cargo bench -p cordon-mls-store --bench journal` (release profile). Set
//! `CORDON_BENCH_OPS` to change the operations timed per size (default 100) and
//! `CORDON_BENCH_SIZES` (comma-separated KeyPackage counts, default `0,1000,10000`).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use cordon_mls_store::Provider;
use openmls::prelude::*;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::signatures::{Signer, SignerError};
use ring::signature::{Ed25519KeyPair, KeyPair as _};

const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

struct Key(Ed25519KeyPair);

impl Signer for Key {
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SignerError> {
        Ok(self.0.sign(payload).as_ref().to_vec())
    }

    fn signature_scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

fn credential(key: &Key) -> CredentialWithKey {
    CredentialWithKey {
        credential: BasicCredential::new(b"GH".to_vec()).into(),
        signature_key: key.0.public_key().as_ref().to_vec().into(),
    }
}

fn key_package(provider: &impl OpenMlsProvider, key: &Key) {
    black_box(
        KeyPackage::builder()
            .build(CIPHERSUITE, provider, key, credential(key))
            .unwrap(),
    );
}

fn group(provider: &impl OpenMlsProvider, key: &Key) -> MlsGroup {
    MlsGroup::builder()
        .ciphersuite(CIPHERSUITE)
        .build(provider, key, credential(key))
        .unwrap()
}

/// The gateway's former way: copy the store, run the operation, compare every key.
fn with_full_copy(provider: &OpenMlsRustCrypto, operation: impl FnOnce()) -> usize {
    let before = provider.storage().values.read().unwrap().clone();
    operation();
    let now = provider.storage().values.read().unwrap();
    let written = now
        .iter()
        .filter(|(key, value)| before.get(*key) != Some(*value))
        .count();
    written + before.keys().filter(|key| !now.contains_key(*key)).count()
}

fn with_journal(provider: &Provider, operation: impl FnOnce()) -> usize {
    provider.storage().begin();
    operation();
    let changed = provider.storage().changes().len();
    provider.storage().commit();
    changed
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time(ops: usize, mut run: impl FnMut() -> usize) -> (Duration, usize) {
    let mut samples = Vec::with_capacity(ops);
    let mut changed = 0;
    for _ in 0..ops {
        let started = Instant::now();
        changed = run();
        samples.push(started.elapsed());
    }
    (median(samples), changed)
}

fn main() {
    let ops: usize = std::env::var("CORDON_BENCH_OPS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(100);
    let sizes: Vec<usize> = std::env::var("CORDON_BENCH_SIZES")
        .unwrap_or_else(|_| "0,1000,10000".into())
        .split(',')
        .filter_map(|size| size.trim().parse().ok())
        .collect();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
    let key = Key(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap());

    // KeyPackages made once, copied into both stores at each size.
    let filler = OpenMlsRustCrypto::default();
    let largest = sizes.iter().copied().max().unwrap_or(0);
    for _ in 0..largest {
        key_package(&filler, &key);
    }
    let made: Vec<(Vec<u8>, Vec<u8>)> = filler
        .storage()
        .values
        .read()
        .unwrap()
        .iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let per_package = made.len() / largest.max(1);

    println!(
        "{:>12} {:>8}  {:<32} {:>12} {:>12} {:>8}  keys changed",
        "KeyPackages", "keys", "operation", "full copy", "journal", "ratio"
    );
    for size in sizes {
        let fill: HashMap<Vec<u8>, Vec<u8>> =
            made.iter().take(size * per_package).cloned().collect();
        let stock = OpenMlsRustCrypto::default();
        stock.storage().values.write().unwrap().extend(fill.clone());
        let journaled = Provider::with_values(fill);
        let mut stock_group = group(&stock, &key);
        let mut journaled_group = group(&journaled, &key);
        let keys = journaled.storage().len();

        let rows = [
            (
                "hand out a KeyPackage",
                time(ops, || with_full_copy(&stock, || key_package(&stock, &key))),
                time(ops, || {
                    with_journal(&journaled, || key_package(&journaled, &key))
                }),
            ),
            (
                "encrypt an application message",
                time(ops, || {
                    with_full_copy(&stock, || {
                        black_box(stock_group.create_message(&stock, &key, b"x").unwrap());
                    })
                }),
                time(ops, || {
                    with_journal(&journaled, || {
                        black_box(
                            journaled_group
                                .create_message(&journaled, &key, b"x")
                                .unwrap(),
                        );
                    })
                }),
            ),
        ];
        for (operation, (full, full_changed), (journal, journal_changed)) in rows {
            assert_eq!(
                full_changed, journal_changed,
                "both ways find the same number of changed keys"
            );
            println!(
                "{size:>12} {keys:>8}  {operation:<32} {:>10}µs {:>10}µs {:>8.1}  {journal_changed}",
                full.as_micros(),
                journal.as_micros(),
                full.as_secs_f64() / journal.as_secs_f64().max(1e-9),
            );
        }
    }
}
