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

impl StorageProvider<V> for JournalStorage {
    type Error = StoreError;

    fn write_mls_join_config<
        GroupId: traits::GroupId<V>,
        MlsGroupJoinConfig: traits::MlsGroupJoinConfig<V>,
    >(
        &self,
        group_id: &GroupId,
        config: &MlsGroupJoinConfig,
    ) -> Result<(), Self::Error> {
        self.put_json(JOIN_CONFIG, group_id, config)
    }

    fn mls_group_join_config<
        GroupId: traits::GroupId<V>,
        MlsGroupJoinConfig: traits::MlsGroupJoinConfig<V>,
    >(
        &self,
        group_id: &GroupId,
    ) -> Result<Option<MlsGroupJoinConfig>, Self::Error> {
        self.get_json(JOIN_CONFIG, group_id)
    }

    fn delete_group_config<GroupId: traits::GroupId<V>>(
        &self,
        group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        self.delete_json(JOIN_CONFIG, group_id)
    }

    fn write_tree<GroupId: traits::GroupId<V>, TreeSync: traits::TreeSync<V>>(
        &self,
        group_id: &GroupId,
        tree: &TreeSync,
    ) -> Result<(), Self::Error> {
        self.put_json(TREE, group_id, tree)
    }

    fn tree<GroupId: traits::GroupId<V>, TreeSync: traits::TreeSync<V>>(
        &self,
        group_id: &GroupId,
    ) -> Result<Option<TreeSync>, Self::Error> {
        self.get_json(TREE, group_id)
    }

    fn delete_tree<GroupId: traits::GroupId<V>>(
        &self,
        group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        self.delete_json(TREE, group_id)
    }

    fn write_interim_transcript_hash<
        GroupId: traits::GroupId<V>,
        InterimTranscriptHash: traits::InterimTranscriptHash<V>,
    >(
        &self,
        group_id: &GroupId,
        interim_transcript_hash: &InterimTranscriptHash,
    ) -> Result<(), Self::Error> {
        self.put_json(INTERIM_TRANSCRIPT_HASH, group_id, interim_transcript_hash)
    }

    fn interim_transcript_hash<
        GroupId: traits::GroupId<V>,
        InterimTranscriptHash: traits::InterimTranscriptHash<V>,
    >(
        &self,
        group_id: &GroupId,
    ) -> Result<Option<InterimTranscriptHash>, Self::Error> {
        self.get_json(INTERIM_TRANSCRIPT_HASH, group_id)
    }

    fn delete_interim_transcript_hash<GroupId: traits::GroupId<V>>(
        &self,
        group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        self.delete_json(INTERIM_TRANSCRIPT_HASH, group_id)
    }

    fn write_context<GroupId: traits::GroupId<V>, GroupContext: traits::GroupContext<V>>(
        &self,
        group_id: &GroupId,
        group_context: &GroupContext,
    ) -> Result<(), Self::Error> {
        self.put_json(GROUP_CONTEXT, group_id, group_context)
    }

    fn group_context<GroupId: traits::GroupId<V>, GroupContext: traits::GroupContext<V>>(
        &self,
        group_id: &GroupId,
    ) -> Result<Option<GroupContext>, Self::Error> {
        self.get_json(GROUP_CONTEXT, group_id)
    }

    fn delete_context<GroupId: traits::GroupId<V>>(
        &self,
        group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        self.delete_json(GROUP_CONTEXT, group_id)
    }

    fn write_confirmation_tag<
        GroupId: traits::GroupId<V>,
        ConfirmationTag: traits::ConfirmationTag<V>,
    >(
        &self,
        group_id: &GroupId,
        confirmation_tag: &ConfirmationTag,
    ) -> Result<(), Self::Error> {
        self.put_json(CONFIRMATION_TAG, group_id, confirmation_tag)
    }

    fn confirmation_tag<
        GroupId: traits::GroupId<V>,
        ConfirmationTag: traits::ConfirmationTag<V>,
    >(
        &self,
        group_id: &GroupId,
    ) -> Result<Option<ConfirmationTag>, Self::Error> {
        self.get_json(CONFIRMATION_TAG, group_id)
    }

    fn delete_confirmation_tag<GroupId: traits::GroupId<V>>(
        &self,
        group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        self.delete_json(CONFIRMATION_TAG, group_id)
    }

    fn write_group_state<GroupState: traits::GroupState<V>, GroupId: traits::GroupId<V>>(
        &self,
        group_id: &GroupId,
        group_state: &GroupState,
    ) -> Result<(), Self::Error> {
        self.put_json(GROUP_STATE, group_id, group_state)
    }

    fn group_state<GroupState: traits::GroupState<V>, GroupId: traits::GroupId<V>>(
        &self,
        group_id: &GroupId,
    ) -> Result<Option<GroupState>, Self::Error> {
        self.get_json(GROUP_STATE, group_id)
    }

    fn delete_group_state<GroupId: traits::GroupId<V>>(
        &self,
        group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        self.delete_json(GROUP_STATE, group_id)
    }

    fn write_message_secrets<
        GroupId: traits::GroupId<V>,
        MessageSecrets: traits::MessageSecrets<V>,
    >(
        &self,
        group_id: &GroupId,
        message_secrets: &MessageSecrets,
    ) -> Result<(), Self::Error> {
        self.put_json(MESSAGE_SECRETS, group_id, message_secrets)
    }

    fn message_secrets<GroupId: traits::GroupId<V>, MessageSecrets: traits::MessageSecrets<V>>(
        &self,
        group_id: &GroupId,
    ) -> Result<Option<MessageSecrets>, Self::Error> {
        self.get_json(MESSAGE_SECRETS, group_id)
    }

    fn delete_message_secrets<GroupId: traits::GroupId<V>>(
        &self,
        group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        self.delete_json(MESSAGE_SECRETS, group_id)
    }

    fn write_resumption_psk_store<
        GroupId: traits::GroupId<V>,
        ResumptionPskStore: traits::ResumptionPskStore<V>,
    >(
        &self,
        group_id: &GroupId,
        resumption_psk_store: &ResumptionPskStore,
    ) -> Result<(), Self::Error> {
        self.put_json(RESUMPTION_PSK_STORE, group_id, resumption_psk_store)
    }

    fn resumption_psk_store<
        GroupId: traits::GroupId<V>,
        ResumptionPskStore: traits::ResumptionPskStore<V>,
    >(
        &self,
        group_id: &GroupId,
    ) -> Result<Option<ResumptionPskStore>, Self::Error> {
        self.get_json(RESUMPTION_PSK_STORE, group_id)
    }

    fn delete_all_resumption_psk_secrets<GroupId: traits::GroupId<V>>(
        &self,
        group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        self.delete_json(RESUMPTION_PSK_STORE, group_id)
    }

    fn write_own_leaf_index<
        GroupId: traits::GroupId<V>,
        LeafNodeIndex: traits::LeafNodeIndex<V>,
    >(
        &self,
        group_id: &GroupId,
        own_leaf_index: &LeafNodeIndex,
    ) -> Result<(), Self::Error> {
        self.put_json(OWN_LEAF_NODE_INDEX, group_id, own_leaf_index)
    }

    fn own_leaf_index<GroupId: traits::GroupId<V>, LeafNodeIndex: traits::LeafNodeIndex<V>>(
        &self,
        group_id: &GroupId,
    ) -> Result<Option<LeafNodeIndex>, Self::Error> {
        self.get_json(OWN_LEAF_NODE_INDEX, group_id)
    }

    fn delete_own_leaf_index<GroupId: traits::GroupId<V>>(
        &self,
        group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        self.delete_json(OWN_LEAF_NODE_INDEX, group_id)
    }

    fn write_group_epoch_secrets<
        GroupId: traits::GroupId<V>,
        GroupEpochSecrets: traits::GroupEpochSecrets<V>,
    >(
        &self,
        group_id: &GroupId,
        group_epoch_secrets: &GroupEpochSecrets,
    ) -> Result<(), Self::Error> {
        self.put_json(EPOCH_SECRETS, group_id, group_epoch_secrets)
    }

    fn group_epoch_secrets<
        GroupId: traits::GroupId<V>,
        GroupEpochSecrets: traits::GroupEpochSecrets<V>,
    >(
        &self,
        group_id: &GroupId,
    ) -> Result<Option<GroupEpochSecrets>, Self::Error> {
        self.get_json(EPOCH_SECRETS, group_id)
    }

    fn delete_group_epoch_secrets<GroupId: traits::GroupId<V>>(
        &self,
        group_id: &GroupId,
    ) -> Result<(), Self::Error> {
        self.delete_json(EPOCH_SECRETS, group_id)
    }

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
