//! openmls' storage interface over the journaled key-value store, with the keys and value
//! encodings of openmls' own `MemoryStorage`.

use openmls_traits::storage::{CURRENT_VERSION as V, StorageProvider, traits};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{JournalStorage, StoreError, json};

const KEY_PACKAGE: &[u8] = b"KeyPackage";
const PSK: &[u8] = b"Psk";
const ENCRYPTION_KEY_PAIR: &[u8] = b"EncryptionKeyPair";
const SIGNATURE_KEY_PAIR: &[u8] = b"SignatureKeyPair";
const EPOCH_KEY_PAIRS: &[u8] = b"EpochKeyPairs";
const TREE: &[u8] = b"Tree";
const GROUP_CONTEXT: &[u8] = b"GroupContext";
const INTERIM_TRANSCRIPT_HASH: &[u8] = b"InterimTranscriptHash";
const CONFIRMATION_TAG: &[u8] = b"ConfirmationTag";
const JOIN_CONFIG: &[u8] = b"MlsGroupJoinConfig";
const OWN_LEAF_NODES: &[u8] = b"OwnLeafNodes";
const GROUP_STATE: &[u8] = b"GroupState";
const QUEUED_PROPOSAL: &[u8] = b"QueuedProposal";
const PROPOSAL_QUEUE_REFS: &[u8] = b"ProposalQueueRefs";
const OWN_LEAF_NODE_INDEX: &[u8] = b"OwnLeafNodeIndex";
const EPOCH_SECRETS: &[u8] = b"EpochSecrets";
const RESUMPTION_PSK_STORE: &[u8] = b"ResumptionPsk";
const MESSAGE_SECRETS: &[u8] = b"MessageSecrets";

impl JournalStorage {
    fn put_json<K: Serialize + ?Sized, T: Serialize + ?Sized>(
        &self,
        label: &[u8],
        key: &K,
        value: &T,
    ) -> Result<(), StoreError> {
        self.put(label, &json(key)?, json(value)?)
    }

    fn get_json<K: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        label: &[u8],
        key: &K,
    ) -> Result<Option<T>, StoreError> {
        self.get(label, &json(key)?)
    }

    fn delete_json<K: Serialize + ?Sized>(&self, label: &[u8], key: &K) -> Result<(), StoreError> {
        self.delete(label, &json(key)?)
    }

    fn remove_from_list(&self, label: &[u8], key: &[u8], item: &[u8]) -> Result<(), StoreError> {
        self.edit_list(label, key, |items| {
            if let Some(at) = items.iter().position(|stored| stored == item) {
                items.remove(at);
            }
        })
    }
}

/// The key of a member's HPKE key pairs for one epoch of one group.
fn epoch_key_pairs_key(
    group_id: &impl Serialize,
    epoch: &impl Serialize,
    leaf_index: u32,
) -> Result<Vec<u8>, StoreError> {
    let mut key = json(group_id)?;
    key.extend_from_slice(&json(epoch)?);
    key.extend_from_slice(&json(&leaf_index)?);
    Ok(key)
}

/// The write, read and delete of an entity stored once per group under `$label`, with the
/// trait's order of generic parameters (the group's id first, or the entity first).
macro_rules! per_group {
    (group_first, $label:ident, $entity:ident, $write:ident, $read:ident, $delete:ident) => {
        fn $write<GroupId: traits::GroupId<V>, $entity: traits::$entity<V>>(
            &self,
            group_id: &GroupId,
            value: &$entity,
        ) -> Result<(), Self::Error> {
            self.put_json($label, group_id, value)
        }

        fn $read<GroupId: traits::GroupId<V>, $entity: traits::$entity<V>>(
            &self,
            group_id: &GroupId,
        ) -> Result<Option<$entity>, Self::Error> {
            self.get_json($label, group_id)
        }

        per_group!(delete, $label, $delete);
    };
    (entity_first, $label:ident, $entity:ident, $write:ident, $read:ident, $delete:ident) => {
        fn $write<$entity: traits::$entity<V>, GroupId: traits::GroupId<V>>(
            &self,
            group_id: &GroupId,
            value: &$entity,
        ) -> Result<(), Self::Error> {
            self.put_json($label, group_id, value)
        }

        fn $read<$entity: traits::$entity<V>, GroupId: traits::GroupId<V>>(
            &self,
            group_id: &GroupId,
        ) -> Result<Option<$entity>, Self::Error> {
            self.get_json($label, group_id)
        }

        per_group!(delete, $label, $delete);
    };
    (delete, $label:ident, $delete:ident) => {
        fn $delete<GroupId: traits::GroupId<V>>(
            &self,
            group_id: &GroupId,
        ) -> Result<(), Self::Error> {
            self.delete_json($label, group_id)
        }
    };
}

impl StorageProvider<V> for JournalStorage {
    type Error = StoreError;

    per_group!(
        group_first,
        JOIN_CONFIG,
        MlsGroupJoinConfig,
        write_mls_join_config,
        mls_group_join_config,
        delete_group_config
    );
    per_group!(group_first, TREE, TreeSync, write_tree, tree, delete_tree);
    per_group!(
        group_first,
        INTERIM_TRANSCRIPT_HASH,
        InterimTranscriptHash,
        write_interim_transcript_hash,
        interim_transcript_hash,
        delete_interim_transcript_hash
    );
    per_group!(
        group_first,
        GROUP_CONTEXT,
        GroupContext,
        write_context,
        group_context,
        delete_context
    );
    per_group!(
        group_first,
        CONFIRMATION_TAG,
        ConfirmationTag,
        write_confirmation_tag,
        confirmation_tag,
        delete_confirmation_tag
    );
    per_group!(
        entity_first,
        GROUP_STATE,
        GroupState,
        write_group_state,
        group_state,
        delete_group_state
    );
    per_group!(
        group_first,
        MESSAGE_SECRETS,
        MessageSecrets,
        write_message_secrets,
        message_secrets,
        delete_message_secrets
    );
    per_group!(
        group_first,
        RESUMPTION_PSK_STORE,
        ResumptionPskStore,
        write_resumption_psk_store,
        resumption_psk_store,
        delete_all_resumption_psk_secrets
    );
    per_group!(
        group_first,
        OWN_LEAF_NODE_INDEX,
        LeafNodeIndex,
        write_own_leaf_index,
        own_leaf_index,
        delete_own_leaf_index
    );
    per_group!(
        group_first,
        EPOCH_SECRETS,
        GroupEpochSecrets,
        write_group_epoch_secrets,
        group_epoch_secrets,
        delete_group_epoch_secrets
    );

    fn append_own_leaf_node<GroupId: traits::GroupId<V>, LeafNode: traits::LeafNode<V>>(
        &self,
        group_id: &GroupId,
        leaf_node: &LeafNode,
    ) -> Result<(), Self::Error> {
        let item = json(leaf_node)?;
        self.edit_list(OWN_LEAF_NODES, &json(group_id)?, |items| items.push(item))
    }

    fn own_leaf_nodes<GroupId: traits::GroupId<V>, LeafNode: traits::LeafNode<V>>(
        &self,
        group_id: &GroupId,
    ) -> Result<Vec<LeafNode>, Self::Error> {
        self.get_list(OWN_LEAF_NODES, &json(group_id)?)
    }

    fn delete_own_leaf_nodes<GroupId: traits::GroupId<V>>(
        &self,
        group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        self.delete_json(OWN_LEAF_NODES, group_id)
    }

    fn queue_proposal<
        GroupId: traits::GroupId<V>,
        ProposalRef: traits::ProposalRef<V>,
        QueuedProposal: traits::QueuedProposal<V>,
    >(
        &self,
        group_id: &GroupId,
        proposal_ref: &ProposalRef,
        proposal: &QueuedProposal,
    ) -> Result<(), Self::Error> {
        self.put_json(QUEUED_PROPOSAL, &(group_id, proposal_ref), proposal)?;
        let item = json(proposal_ref)?;
        self.edit_list(PROPOSAL_QUEUE_REFS, &json(group_id)?, |items| {
            items.push(item)
        })
    }

    fn queued_proposal_refs<GroupId: traits::GroupId<V>, ProposalRef: traits::ProposalRef<V>>(
        &self,
        group_id: &GroupId,
    ) -> Result<Vec<ProposalRef>, Self::Error> {
        self.get_list(PROPOSAL_QUEUE_REFS, &json(group_id)?)
    }

    fn queued_proposals<
        GroupId: traits::GroupId<V>,
        ProposalRef: traits::ProposalRef<V>,
        QueuedProposal: traits::QueuedProposal<V>,
    >(
        &self,
        group_id: &GroupId,
    ) -> Result<Vec<(ProposalRef, QueuedProposal)>, Self::Error> {
        let refs: Vec<ProposalRef> = self.get_list(PROPOSAL_QUEUE_REFS, &json(group_id)?)?;
        let mut proposals = Vec::with_capacity(refs.len());
        for proposal_ref in refs {
            // A reference without its proposal is a damaged store, not an empty slot.
            let proposal = self
                .get_json(QUEUED_PROPOSAL, &(group_id, &proposal_ref))?
                .ok_or_else(|| StoreError::Missing {
                    label: String::from_utf8_lossy(QUEUED_PROPOSAL).into_owned(),
                })?;
            proposals.push((proposal_ref, proposal));
        }
        Ok(proposals)
    }

    fn remove_proposal<GroupId: traits::GroupId<V>, ProposalRef: traits::ProposalRef<V>>(
        &self,
        group_id: &GroupId,
        proposal_ref: &ProposalRef,
    ) -> Result<(), Self::Error> {
        self.remove_from_list(PROPOSAL_QUEUE_REFS, &json(group_id)?, &json(proposal_ref)?)?;
        self.delete_json(QUEUED_PROPOSAL, &(group_id, proposal_ref))
    }

    fn clear_proposal_queue<GroupId: traits::GroupId<V>, ProposalRef: traits::ProposalRef<V>>(
        &self,
        group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        let refs: Vec<ProposalRef> = self.get_list(PROPOSAL_QUEUE_REFS, &json(group_id)?)?;
        for proposal_ref in refs {
            self.delete_json(QUEUED_PROPOSAL, &(group_id, &proposal_ref))?;
        }
        self.delete_json(PROPOSAL_QUEUE_REFS, group_id)
    }

    fn write_signature_key_pair<
        SignaturePublicKey: traits::SignaturePublicKey<V>,
        SignatureKeyPair: traits::SignatureKeyPair<V>,
    >(
        &self,
        public_key: &SignaturePublicKey,
        signature_key_pair: &SignatureKeyPair,
    ) -> Result<(), Self::Error> {
        self.put_json(SIGNATURE_KEY_PAIR, public_key, signature_key_pair)
    }

    fn signature_key_pair<
        SignaturePublicKey: traits::SignaturePublicKey<V>,
        SignatureKeyPair: traits::SignatureKeyPair<V>,
    >(
        &self,
        public_key: &SignaturePublicKey,
    ) -> Result<Option<SignatureKeyPair>, Self::Error> {
        self.get_json(SIGNATURE_KEY_PAIR, public_key)
    }

    fn delete_signature_key_pair<SignaturePublicKey: traits::SignaturePublicKey<V>>(
        &self,
        public_key: &SignaturePublicKey,
    ) -> Result<(), Self::Error> {
        self.delete_json(SIGNATURE_KEY_PAIR, public_key)
    }

    fn write_encryption_key_pair<
        EncryptionKey: traits::EncryptionKey<V>,
        HpkeKeyPair: traits::HpkeKeyPair<V>,
    >(
        &self,
        public_key: &EncryptionKey,
        key_pair: &HpkeKeyPair,
    ) -> Result<(), Self::Error> {
        self.put_json(ENCRYPTION_KEY_PAIR, public_key, key_pair)
    }

    fn encryption_key_pair<
        HpkeKeyPair: traits::HpkeKeyPair<V>,
        EncryptionKey: traits::EncryptionKey<V>,
    >(
        &self,
        public_key: &EncryptionKey,
    ) -> Result<Option<HpkeKeyPair>, Self::Error> {
        self.get_json(ENCRYPTION_KEY_PAIR, public_key)
    }

    fn delete_encryption_key_pair<EncryptionKey: traits::EncryptionKey<V>>(
        &self,
        public_key: &EncryptionKey,
    ) -> Result<(), Self::Error> {
        self.delete_json(ENCRYPTION_KEY_PAIR, public_key)
    }

    fn write_encryption_epoch_key_pairs<
        GroupId: traits::GroupId<V>,
        EpochKey: traits::EpochKey<V>,
        HpkeKeyPair: traits::HpkeKeyPair<V>,
    >(
        &self,
        group_id: &GroupId,
        epoch: &EpochKey,
        leaf_index: u32,
        key_pairs: &[HpkeKeyPair],
    ) -> Result<(), Self::Error> {
        let key = epoch_key_pairs_key(group_id, epoch, leaf_index)?;
        self.put(EPOCH_KEY_PAIRS, &key, json(key_pairs)?)
    }

    fn encryption_epoch_key_pairs<
        GroupId: traits::GroupId<V>,
        EpochKey: traits::EpochKey<V>,
        HpkeKeyPair: traits::HpkeKeyPair<V>,
    >(
        &self,
        group_id: &GroupId,
        epoch: &EpochKey,
        leaf_index: u32,
    ) -> Result<Vec<HpkeKeyPair>, Self::Error> {
        let key = epoch_key_pairs_key(group_id, epoch, leaf_index)?;
        Ok(self.get(EPOCH_KEY_PAIRS, &key)?.unwrap_or_default())
    }

    fn delete_encryption_epoch_key_pairs<
        GroupId: traits::GroupId<V>,
        EpochKey: traits::EpochKey<V>,
    >(
        &self,
        group_id: &GroupId,
        epoch: &EpochKey,
        leaf_index: u32,
    ) -> Result<(), Self::Error> {
        self.delete(
            EPOCH_KEY_PAIRS,
            &epoch_key_pairs_key(group_id, epoch, leaf_index)?,
        )
    }

    fn write_key_package<
        HashReference: traits::HashReference<V>,
        KeyPackage: traits::KeyPackage<V>,
    >(
        &self,
        hash_ref: &HashReference,
        key_package: &KeyPackage,
    ) -> Result<(), Self::Error> {
        self.put_json(KEY_PACKAGE, hash_ref, key_package)
    }

    fn key_package<KeyPackageRef: traits::HashReference<V>, KeyPackage: traits::KeyPackage<V>>(
        &self,
        hash_ref: &KeyPackageRef,
    ) -> Result<Option<KeyPackage>, Self::Error> {
        self.get_json(KEY_PACKAGE, hash_ref)
    }

    fn delete_key_package<KeyPackageRef: traits::HashReference<V>>(
        &self,
        hash_ref: &KeyPackageRef,
    ) -> Result<(), Self::Error> {
        self.delete_json(KEY_PACKAGE, hash_ref)
    }

    fn write_psk<PskId: traits::PskId<V>, PskBundle: traits::PskBundle<V>>(
        &self,
        psk_id: &PskId,
        psk: &PskBundle,
    ) -> Result<(), Self::Error> {
        self.put_json(PSK, psk_id, psk)
    }

    fn psk<PskBundle: traits::PskBundle<V>, PskId: traits::PskId<V>>(
        &self,
        psk_id: &PskId,
    ) -> Result<Option<PskBundle>, Self::Error> {
        self.get_json(PSK, psk_id)
    }

    fn delete_psk<PskKey: traits::PskId<V>>(&self, psk_id: &PskKey) -> Result<(), Self::Error> {
        self.delete_json(PSK, psk_id)
    }
}
