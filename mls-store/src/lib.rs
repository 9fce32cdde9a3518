//! The MLS key-value store of a gateway's circles, with a journal of what each operation
//! changed.
//!
//! openmls keeps a group's state and private keys in a [`StorageProvider`] and writes to it
//! synchronously while it runs an operation (a commit, a Welcome, a KeyPackage, a message).
//! The gateway must write exactly those changes to its database in the transaction that
//! records the operation, and put memory back if that transaction fails. This store records,
//! while a journal is open, the value each key had before its first change in the journal:
//! [`JournalStorage::changes`] then reads the current value of those keys only, and
//! [`JournalStorage::rollback`] puts them back. The cost of an operation is the keys it
//! touches, whatever the store holds (KeyPackages handed out, other circles' state);
//! copying and comparing the whole store around each operation cost its size.
//!
//! Keys and values are those of openmls' own `MemoryStorage` (label, JSON key, version;
//! JSON values), so stores written by it are read unchanged.
//!
//! [`StorageProvider`]: openmls_traits::storage::StorageProvider

use std::collections::HashMap;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use openmls_rust_crypto::RustCrypto;
use openmls_traits::OpenMlsProvider;
use openmls_traits::storage::CURRENT_VERSION;
use serde::Serialize;
use serde::de::DeserializeOwned;

mod provider;

/// One key's change: `Some(value)` written, `None` deleted.
pub type Change = (Vec<u8>, Option<Vec<u8>>);

/// Why a stored value could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("encoding an MLS store value: {0}")]
    Encode(serde_json::Error),
    #[error("the MLS store lacks the {label} its list of them names")]
    Missing { label: String },
    #[error("a stored MLS value under label {label} does not decode: {source}")]
    Decode {
        label: String,
        source: serde_json::Error,
    },
}

#[derive(Debug, Default)]
struct State {
    values: HashMap<Vec<u8>, Vec<u8>>,
    /// While a journal is open: each key changed in it, with its value before the first change.
    journal: Option<HashMap<Vec<u8>, Option<Vec<u8>>>>,
}

/// The key-value store openmls writes to, with an optional journal of changes.
#[derive(Debug, Default)]
pub struct JournalStorage {
    state: RwLock<State>,
}

impl JournalStorage {
    /// A store holding `values` (as read back from the database), with no journal open.
    pub fn with_values(values: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Self {
        Self {
            state: RwLock::new(State {
                values: values.into_iter().collect(),
                journal: None,
            }),
        }
    }

    /// Opens a journal. A journal left open (an operation that ended without
    /// [`commit`](Self::commit) or [`rollback`](Self::rollback), such as a caller's future
    /// dropped while its database write was in flight) is closed as it stands: whether that
    /// write landed is not known here, and the caller's database is the one to ask.
    pub fn begin(&self) {
        self.write().journal = Some(HashMap::new());
    }

    /// What changed since [`begin`](Self::begin): every key whose value now differs from its
    /// value then, in no particular order. Empty without an open journal: writes made with
    /// none open are not recorded anywhere (a caller persisting them must begin first).
    pub fn changes(&self) -> Vec<Change> {
        let state = self.read();
        let Some(journal) = &state.journal else {
            return Vec::new();
        };
        journal
            .iter()
            .filter_map(|(key, before)| {
                let now = state.values.get(key);
                (now != before.as_ref()).then(|| (key.clone(), now.cloned()))
            })
            .collect()
    }

    /// Closes the journal, keeping its changes (the database has them).
    pub fn commit(&self) {
        self.write().journal = None;
    }

    /// Closes the journal, putting every key it changed back as it was at
    /// [`begin`](Self::begin).
    pub fn rollback(&self) {
        roll_back(&mut self.write());
    }

    /// How many keys the store holds.
    pub fn len(&self) -> usize {
        self.read().values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every key and value, for tests and checks (a copy of the whole store).
    pub fn entries(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let state = self.read();
        state
            .values
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces the value under `label` and `key` with what `change` makes of it (`None`:
    /// deleted), noting the value before it in the open journal if this is the key's first
    /// change in it. Neither value is copied.
    fn update(
        &self,
        label: &[u8],
        key: &[u8],
        change: impl FnOnce(Option<&[u8]>) -> Result<Option<Vec<u8>>, StoreError>,
    ) -> Result<(), StoreError> {
        let storage_key = storage_key(label, key);
        let mut state = self.write();
        let State { values, journal } = &mut *state;
        let current = values.get(&storage_key).map(Vec::as_slice);
        let value = change(current)?;
        if value.as_deref() == current {
            return Ok(());
        }
        let before = match value {
            Some(value) => values.insert(storage_key.clone(), value),
            None => values.remove(&storage_key),
        };
        if let Some(journal) = journal {
            journal.entry(storage_key).or_insert(before);
        }
        Ok(())
    }

    fn put(&self, label: &[u8], key: &[u8], value: Vec<u8>) -> Result<(), StoreError> {
        self.update(label, key, |_| Ok(Some(value)))
    }

    fn delete(&self, label: &[u8], key: &[u8]) -> Result<(), StoreError> {
        self.update(label, key, |_| Ok(None))
    }

    fn get<V: DeserializeOwned>(&self, label: &[u8], key: &[u8]) -> Result<Option<V>, StoreError> {
        let state = self.read();
        state
            .values
            .get(&storage_key(label, key))
            .map(|bytes| decode(label, bytes))
            .transpose()
    }

    /// A list is stored as a JSON array of each item's JSON bytes.
    fn get_list<V: DeserializeOwned>(
        &self,
        label: &[u8],
        key: &[u8],
    ) -> Result<Vec<V>, StoreError> {
        let state = self.read();
        let Some(bytes) = state.values.get(&storage_key(label, key)) else {
            return Ok(Vec::new());
        };
        let items: Vec<Vec<u8>> = decode(label, bytes)?;
        items.iter().map(|item| decode(label, item)).collect()
    }

    fn edit_list(
        &self,
        label: &[u8],
        key: &[u8],
        edit: impl FnOnce(&mut Vec<Vec<u8>>),
    ) -> Result<(), StoreError> {
        self.update(label, key, |current| {
            let mut items: Vec<Vec<u8>> = match current {
                Some(bytes) => decode(label, bytes)?,
                None => Vec::new(),
            };
            edit(&mut items);
            Ok(Some(json(&items)?))
        })
    }
}

fn roll_back(state: &mut State) {
    let Some(journal) = state.journal.take() else {
        return;
    };
    for (key, before) in journal {
        match before {
            Some(value) => state.values.insert(key, value),
            None => state.values.remove(&key),
        };
    }
}

/// The key openmls' `MemoryStorage` uses: label, key bytes, storage version (big-endian).
fn storage_key(label: &[u8], key: &[u8]) -> Vec<u8> {
    let mut storage_key = Vec::with_capacity(label.len() + key.len() + 2);
    storage_key.extend_from_slice(label);
    storage_key.extend_from_slice(key);
    storage_key.extend_from_slice(&CURRENT_VERSION.to_be_bytes());
    storage_key
}

fn json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(StoreError::Encode)
}

fn decode<V: DeserializeOwned>(label: &[u8], bytes: &[u8]) -> Result<V, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
        label: String::from_utf8_lossy(label).into_owned(),
        source,
    })
}

/// RustCrypto's primitives with the journaled store: the provider a gateway's circles run on.
#[derive(Debug, Default)]
pub struct Provider {
    crypto: RustCrypto,
    storage: JournalStorage,
}

impl Provider {
    /// A provider whose store holds `values` (as read back from the database).
    pub fn with_values(values: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> Self {
        Self {
            crypto: RustCrypto::default(),
            storage: JournalStorage::with_values(values),
        }
    }
}

impl OpenMlsProvider for Provider {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
    type StorageProvider = JournalStorage;

    fn storage(&self) -> &Self::StorageProvider {
        &self.storage
    }

    fn crypto(&self) -> &Self::CryptoProvider {
        &self.crypto
    }

    fn rand(&self) -> &Self::RandProvider {
        &self.crypto
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> JournalStorage {
        JournalStorage::with_values([
            (storage_key(b"L", b"a"), b"1".to_vec()),
            (storage_key(b"L", b"b"), b"2".to_vec()),
        ])
    }

    fn sorted(mut changes: Vec<Change>) -> Vec<Change> {
        changes.sort();
        changes
    }

    #[test]
    fn a_journal_reports_writes_and_deletions_and_rolls_them_back() {
        let store = store();
        let before = {
            let mut entries = store.entries();
            entries.sort();
            entries
        };
        store.begin();
        store.put(b"L", b"a", b"changed".to_vec()).unwrap();
        store.delete(b"L", b"b").unwrap();
        store.put(b"L", b"c", b"3".to_vec()).unwrap();
        // Written then deleted within the journal: no change at all.
        store.put(b"L", b"d", b"4".to_vec()).unwrap();
        store.delete(b"L", b"d").unwrap();
        assert_eq!(
            sorted(store.changes()),
            vec![
                (storage_key(b"L", b"a"), Some(b"changed".to_vec())),
                (storage_key(b"L", b"b"), None),
                (storage_key(b"L", b"c"), Some(b"3".to_vec())),
            ]
        );
        store.rollback();
        let mut after = store.entries();
        after.sort();
        assert_eq!(after, before);
        assert!(store.changes().is_empty(), "no journal is open");
    }

    #[test]
    fn a_committed_journal_keeps_its_changes_and_the_next_starts_empty() {
        let store = store();
        store.begin();
        store.put(b"L", b"a", b"changed".to_vec()).unwrap();
        store.commit();
        store.begin();
        assert!(store.changes().is_empty());
        store.rollback();
        assert_eq!(
            store
                .get::<serde_json::Value>(b"L", b"a")
                .unwrap_err()
                .to_string(),
            StoreError::Decode {
                label: "L".into(),
                source: serde_json::from_slice::<serde_json::Value>(b"changed").unwrap_err(),
            }
            .to_string(),
            "the committed value stays, and a value that is not JSON is an error naming its label"
        );
        assert_eq!(store.entries().len(), 2);
    }

    #[test]
    fn beginning_again_closes_a_journal_left_open_as_it_stands() {
        let store = store();
        store.begin();
        store.put(b"L", b"c", b"3".to_vec()).unwrap();
        store.begin();
        assert_eq!(store.len(), 3, "the earlier write stays");
        assert!(store.changes().is_empty(), "the new journal starts empty");
        store.rollback();
        assert_eq!(store.len(), 3, "a rollback undoes only its own journal");
    }

    #[test]
    fn writing_a_value_back_as_it_was_is_no_change() {
        let store = store();
        store.begin();
        store.put(b"L", b"a", b"9".to_vec()).unwrap();
        store.put(b"L", b"a", b"1".to_vec()).unwrap();
        store.put(b"L", b"b", b"2".to_vec()).unwrap();
        store.delete(b"L", b"absent").unwrap();
        assert!(store.changes().is_empty());
    }

    #[test]
    fn lists_keep_their_items_in_order_and_remove_one_copy() {
        let store = JournalStorage::default();
        for item in [1u32, 2, 1] {
            store
                .edit_list(b"List", b"k", |items| items.push(json(&item).unwrap()))
                .unwrap();
        }
        let one = json(&1u32).unwrap();
        store
            .edit_list(b"List", b"k", |items| {
                if let Some(at) = items.iter().position(|item| *item == one) {
                    items.remove(at);
                }
            })
            .unwrap();
        assert_eq!(store.get_list::<u32>(b"List", b"k").unwrap(), vec![2, 1]);
        assert!(store.get_list::<u32>(b"List", b"other").unwrap().is_empty());
    }
}
