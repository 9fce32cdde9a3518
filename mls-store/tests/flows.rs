//! Real MLS operations (openmls, RustCrypto, Ed25519 credentials) on the journaled store: each
//! operation's journal names exactly what a copy of the whole store before and after shows
//! changed; a rolled-back operation leaves the store as it was; a store written by openmls'
//! own `MemoryStorage` is read and carried on from.

use std::collections::HashMap;

use cordon_mls_store::{Change, Provider};
use openmls::ciphersuite::hash_ref::ProposalRef;
use openmls::prelude::*;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::signatures::{Signer, SignerError};
use openmls_traits::storage::StorageProvider as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use tls_codec::{Deserialize as _, Serialize as _};

const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

struct Key(Ed25519KeyPair);

impl Key {
    fn generate() -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        Self(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
    }

    fn credential(&self, member: &str) -> CredentialWithKey {
        CredentialWithKey {
            credential: BasicCredential::new(member.as_bytes().to_vec()).into(),
            signature_key: self.0.public_key().as_ref().to_vec().into(),
        }
    }
}

impl Signer for Key {
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SignerError> {
        Ok(self.0.sign(payload).as_ref().to_vec())
    }

    fn signature_scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

fn entries(provider: &Provider) -> HashMap<Vec<u8>, Vec<u8>> {
    provider.storage().entries().into_iter().collect()
}

/// What a comparison of two whole copies of the store shows changed.
fn full_diff(before: &HashMap<Vec<u8>, Vec<u8>>, after: &HashMap<Vec<u8>, Vec<u8>>) -> Vec<Change> {
    let mut changes: Vec<Change> = after
        .iter()
        .filter(|(key, value)| before.get(*key) != Some(*value))
        .map(|(key, value)| (key.clone(), Some(value.clone())))
        .chain(
            before
                .keys()
                .filter(|key| !after.contains_key(*key))
                .map(|key| (key.clone(), None)),
        )
        .collect();
    changes.sort();
    changes
}

/// Runs `operation` in a journal and checks the journal against a full comparison; returns
/// the operation's value and how many keys it changed.
fn journaled<T>(provider: &Provider, operation: impl FnOnce() -> T) -> (T, usize) {
    let before = entries(provider);
    provider.storage().begin();
    let value = operation();
    let mut changes = provider.storage().changes();
    changes.sort();
    assert_eq!(
        changes,
        full_diff(&before, &entries(provider)),
        "the journal names exactly what changed"
    );
    provider.storage().commit();
    (value, changes.len())
}

fn wire(message: &MlsMessageOut) -> ProtocolMessage {
    let bytes = message.tls_serialize_detached().unwrap();
    MlsMessageIn::tls_deserialize_exact(bytes)
        .unwrap()
        .try_into_protocol_message()
        .unwrap()
}

fn welcome(message: &MlsMessageOut) -> Welcome {
    let bytes = message.tls_serialize_detached().unwrap();
    match MlsMessageIn::tls_deserialize_exact(bytes)
        .unwrap()
        .extract()
    {
        MlsMessageBodyIn::Welcome(welcome) => welcome,
        _ => panic!("not a Welcome"),
    }
}

fn join(provider: &impl OpenMlsProvider, welcome_message: &MlsMessageOut) -> MlsGroup {
    let config = MlsGroupJoinConfig::builder()
        .use_ratchet_tree_extension(true)
        .build();
    StagedWelcome::new_from_welcome(provider, &config, welcome(welcome_message), None)
        .unwrap()
        .into_group(provider)
        .unwrap()
}

fn create(provider: &impl OpenMlsProvider, key: &Key, member: &str) -> MlsGroup {
    MlsGroup::builder()
        .with_group_id(GroupId::from_slice(b"HUB/circle"))
        .ciphersuite(CIPHERSUITE)
        .use_ratchet_tree_extension(true)
        .build(provider, key, key.credential(member))
        .unwrap()
}

fn key_package(provider: &impl OpenMlsProvider, key: &Key, member: &str) -> KeyPackage {
    KeyPackage::builder()
        .build(CIPHERSUITE, provider, key, key.credential(member))
        .unwrap()
        .key_package()
        .clone()
}

fn read(provider: &impl OpenMlsProvider, group: &mut MlsGroup, message: &MlsMessageOut) -> Vec<u8> {
    match group
        .process_message(provider, wire(message))
        .unwrap()
        .into_content()
    {
        ProcessedMessageContent::ApplicationMessage(application) => application.into_bytes(),
        _ => panic!("not an application message"),
    }
}

fn apply_commit(provider: &impl OpenMlsProvider, group: &mut MlsGroup, commit: &MlsMessageOut) {
    match group
        .process_message(provider, wire(commit))
        .unwrap()
        .into_content()
    {
        ProcessedMessageContent::StagedCommitMessage(staged) => {
            group.merge_staged_commit(provider, *staged).unwrap()
        }
        _ => panic!("not a commit"),
    }
}

#[test]
fn every_operation_of_a_circle_is_journaled_exactly() {
    let (hub, member, joiner) = (
        Provider::default(),
        Provider::default(),
        Provider::default(),
    );
    let (hub_key, member_key, joiner_key) = (Key::generate(), Key::generate(), Key::generate());

    let (package, written) = journaled(&member, || key_package(&member, &member_key, "NG"));
    assert!(
        written >= 1,
        "the KeyPackage bundle (with its private keys) is stored"
    );
    let (mut group, _) = journaled(&hub, || create(&hub, &hub_key, "GH"));
    let ((_, welcome_message, _), _) = journaled(&hub, || {
        group
            .add_members(&hub, &hub_key, std::slice::from_ref(&package))
            .unwrap()
    });
    journaled(&hub, || group.merge_pending_commit(&hub).unwrap());
    let (mut joined, _) = journaled(&member, || join(&member, &welcome_message));
    assert!(
        member
            .storage()
            .key_package::<_, KeyPackageBundle>(&package.hash_ref(member.crypto()).unwrap())
            .unwrap()
            .is_none(),
        "the KeyPackage is used up by joining"
    );

    let (message, _) = journaled(&hub, || {
        group.create_message(&hub, &hub_key, b"indicator").unwrap()
    });
    let (read_back, _) = journaled(&member, || read(&member, &mut joined, &message));
    assert_eq!(read_back, b"indicator");

    // The member updates its keys; the hub applies the commit.
    let (bundle, _) = journaled(&member, || {
        joined
            .self_update(&member, &member_key, LeafNodeParameters::default())
            .unwrap()
    });
    let (commit, _, _) = bundle.into_contents();
    journaled(&member, || joined.merge_pending_commit(&member).unwrap());
    journaled(&hub, || apply_commit(&hub, &mut group, &commit));

    // An add that is rolled back leaves the store as it was, and the group carries on from it.
    let third = key_package(&joiner, &joiner_key, "SN");
    let before = entries(&hub);
    hub.storage().begin();
    group.add_members(&hub, &hub_key, &[third]).unwrap();
    assert!(!hub.storage().changes().is_empty());
    hub.storage().rollback();
    assert_eq!(entries(&hub), before, "the rollback puts every key back");
    let mut group = MlsGroup::load(hub.storage(), group.group_id())
        .unwrap()
        .unwrap();
    assert!(group.pending_commit().is_none());
    let (message, _) = journaled(&hub, || {
        group.create_message(&hub, &hub_key, b"after").unwrap()
    });
    assert_eq!(read(&member, &mut joined, &message), b"after");

    // The hub removes the member, which learns it.
    let leaf = joined.own_leaf_index();
    let ((commit, _, _), _) = journaled(&hub, || {
        group.remove_members(&hub, &hub_key, &[leaf]).unwrap()
    });
    journaled(&hub, || group.merge_pending_commit(&hub).unwrap());
    journaled(&member, || apply_commit(&member, &mut joined, &commit));
    assert!(!joined.is_active());
}

#[test]
fn a_store_written_by_openmls_memory_storage_is_carried_on_from() {
    let (hub_stock, member_stock) = (OpenMlsRustCrypto::default(), OpenMlsRustCrypto::default());
    let (hub_key, member_key) = (Key::generate(), Key::generate());
    let copy = |stock: &OpenMlsRustCrypto| {
        let values = stock.storage().values.read().unwrap().clone();
        Provider::with_values(values)
    };

    // The member's KeyPackage and the hub's group are made on the stock store...
    let package = key_package(&member_stock, &member_key, "NG");
    let mut group = create(&hub_stock, &hub_key, "GH");
    let (_, welcome_message, _) = group.add_members(&hub_stock, &hub_key, &[package]).unwrap();
    group.merge_pending_commit(&hub_stock).unwrap();

    // ...and both carry on from copies of it in the journaled store: the member joins with
    // the KeyPackage's private keys, the hub loads its group.
    let member = copy(&member_stock);
    let mut joined = journaled(&member, || join(&member, &welcome_message)).0;
    let hub = copy(&hub_stock);
    let mut group = MlsGroup::load(hub.storage(), group.group_id())
        .unwrap()
        .expect("the group written by MemoryStorage is found");
    let message = journaled(&hub, || {
        group.create_message(&hub, &hub_key, b"one").unwrap()
    })
    .0;
    assert_eq!(read(&member, &mut joined, &message), b"one");
    let bundle = journaled(&member, || {
        joined
            .self_update(&member, &member_key, LeafNodeParameters::default())
            .unwrap()
    })
    .0;
    journaled(&member, || joined.merge_pending_commit(&member).unwrap());
    journaled(&hub, || {
        apply_commit(&hub, &mut group, &bundle.into_contents().0)
    });
    let message = journaled(&hub, || {
        group.create_message(&hub, &hub_key, b"two").unwrap()
    })
    .0;
    assert_eq!(read(&member, &mut joined, &message), b"two");
}

#[test]
fn a_group_is_stored_under_the_keys_memory_storage_uses() {
    // The same operations on both stores: create, add a member, merge, send.
    fn run(provider: &impl OpenMlsProvider) {
        let (key, member_key) = (Key::generate(), Key::generate());
        let member = OpenMlsRustCrypto::default();
        let mut group = create(provider, &key, "GH");
        let package = key_package(&member, &member_key, "NG");
        group.add_members(provider, &key, &[package]).unwrap();
        group.merge_pending_commit(provider).unwrap();
        group.create_message(provider, &key, b"x").unwrap();
    }
    // The keys that name the group (the others name random keys and hashes).
    fn group_keys(keys: impl Iterator<Item = Vec<u8>>) -> Vec<Vec<u8>> {
        let group_id = serde_json::to_vec(&GroupId::from_slice(b"HUB/circle")).unwrap();
        let mut keys: Vec<Vec<u8>> = keys
            .filter(|key| key.windows(group_id.len()).any(|part| part == group_id))
            .collect();
        keys.sort();
        keys
    }
    let stock = OpenMlsRustCrypto::default();
    let journaled = Provider::default();
    run(&stock);
    run(&journaled);
    let stock_keys = group_keys(stock.storage().values.read().unwrap().keys().cloned());
    let journaled_keys = group_keys(
        journaled
            .storage()
            .entries()
            .into_iter()
            .map(|(key, _)| key),
    );
    assert!(
        stock_keys.len() >= 8,
        "the group's state is stored under several labels"
    );
    assert_eq!(journaled_keys, stock_keys);
}

#[test]
fn a_queued_proposal_is_journaled_committed_and_cleared() {
    let (hub, member) = (Provider::default(), Provider::default());
    let (hub_key, member_key) = (Key::generate(), Key::generate());
    let package = key_package(&member, &member_key, "NG");
    let mut group = create(&hub, &hub_key, "GH");
    let (_, welcome_message, _) = group.add_members(&hub, &hub_key, &[package]).unwrap();
    group.merge_pending_commit(&hub).unwrap();
    let mut joined = join(&member, &welcome_message);

    // The member proposes to update its keys; the hub queues the proposal...
    let ((proposal, _), _) = journaled(&member, || {
        joined
            .propose_self_update(&member, &member_key, LeafNodeParameters::default())
            .unwrap()
    });
    let (_, queued) = journaled(&hub, || {
        match group
            .process_message(&hub, wire(&proposal))
            .unwrap()
            .into_content()
        {
            ProcessedMessageContent::ProposalMessage(queued) => group
                .store_pending_proposal(hub.storage(), *queued)
                .unwrap(),
            _ => panic!("not a proposal"),
        }
    });
    assert!(
        queued >= 2,
        "the proposal and the list naming it are stored"
    );
    let listed: Vec<ProposalRef> = hub
        .storage()
        .queued_proposal_refs(group.group_id())
        .unwrap();
    assert_eq!(listed.len(), 1);

    // ...commits to it, and both sides merge, which clears the queue.
    let ((commit, _, _), _) = journaled(&hub, || {
        group.commit_to_pending_proposals(&hub, &hub_key).unwrap()
    });
    journaled(&hub, || group.merge_pending_commit(&hub).unwrap());
    journaled(&member, || apply_commit(&member, &mut joined, &commit));
    for provider in [&hub, &member] {
        let left: Vec<(ProposalRef, QueuedProposal)> = provider
            .storage()
            .queued_proposals(group.group_id())
            .unwrap();
        assert!(left.is_empty(), "the queue is cleared by the merge");
        assert!(
            !provider
                .storage()
                .entries()
                .iter()
                .any(|(key, _)| key.starts_with(b"QueuedProposal")),
            "no proposal is left behind"
        );
    }
    assert_eq!(group.epoch(), joined.epoch());
}

#[test]
fn a_journaled_store_is_read_by_openmls_memory_storage() {
    let (hub, member) = (Provider::default(), Provider::default());
    let (hub_key, member_key) = (Key::generate(), Key::generate());
    let package = journaled(&member, || key_package(&member, &member_key, "NG")).0;
    let mut group = journaled(&hub, || create(&hub, &hub_key, "GH")).0;
    let welcome_message = journaled(&hub, || {
        group.add_members(&hub, &hub_key, &[package]).unwrap().1
    })
    .0;
    journaled(&hub, || group.merge_pending_commit(&hub).unwrap());

    // Both carry on from copies in openmls' own store (a gateway going back a version).
    let copy = |provider: &Provider| {
        let stock = OpenMlsRustCrypto::default();
        stock
            .storage()
            .values
            .write()
            .unwrap()
            .extend(provider.storage().entries());
        stock
    };
    let member_stock = copy(&member);
    let mut joined = join(&member_stock, &welcome_message);
    let hub_stock = copy(&hub);
    let mut group = MlsGroup::load(hub_stock.storage(), group.group_id())
        .unwrap()
        .expect("the group is found");
    let message = group.create_message(&hub_stock, &hub_key, b"back").unwrap();
    assert_eq!(read(&member_stock, &mut joined, &message), b"back");
}
