//! Property test: any sequence of writes, deletions, begins, commits and rollbacks leaves the
//! journaled store as a plain map model says, and `changes` names exactly the keys whose
//! value differs from the journal's start.

use std::collections::BTreeMap;

use cordon_mls_store::JournalStorage;
use openmls::prelude::{GroupId, LeafNodeIndex};
use openmls_traits::storage::{CURRENT_VERSION, StorageProvider};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Write(u8, u32),
    Delete(u8),
    Begin,
    Commit,
    Rollback,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..4, 0u32..3).prop_map(|(group, value)| Op::Write(group, value)),
        2 => (0u8..4).prop_map(Op::Delete),
        1 => Just(Op::Begin),
        1 => Just(Op::Commit),
        1 => Just(Op::Rollback),
    ]
}

fn group(number: u8) -> GroupId {
    GroupId::from_slice(&[b'g', number])
}

/// The key `MemoryStorage` uses for a group's own leaf index.
fn storage_key(number: u8) -> Vec<u8> {
    let mut key = b"OwnLeafNodeIndex".to_vec();
    key.extend_from_slice(&serde_json::to_vec(&group(number)).unwrap());
    key.extend_from_slice(&CURRENT_VERSION.to_be_bytes());
    key
}

fn read(store: &JournalStorage, number: u8) -> Option<u32> {
    let index: Option<LeafNodeIndex> = store.own_leaf_index(&group(number)).unwrap();
    index.map(|index| index.u32())
}

proptest! {
    #[test]
    fn the_journal_matches_a_model(ops in proptest::collection::vec(op(), 1..60)) {
        let store = JournalStorage::default();
        let mut values: BTreeMap<u8, u32> = BTreeMap::new();
        let mut start: Option<BTreeMap<u8, u32>> = None;
        for op in ops {
            match op {
                Op::Write(number, value) => {
                    store.write_own_leaf_index(&group(number), &LeafNodeIndex::new(value)).unwrap();
                    values.insert(number, value);
                }
                Op::Delete(number) => {
                    StorageProvider::<CURRENT_VERSION>::delete_own_leaf_index(&store, &group(number)).unwrap();
                    values.remove(&number);
                }
                Op::Begin => {
                    store.begin();
                    start = Some(values.clone());
                }
                Op::Commit => {
                    store.commit();
                    start = None;
                }
                Op::Rollback => {
                    store.rollback();
                    if let Some(start) = start.take() {
                        values = start;
                    }
                }
            }
            for number in 0..4 {
                prop_assert_eq!(read(&store, number), values.get(&number).copied());
            }
            let mut changes: Vec<(Vec<u8>, bool)> = store
                .changes()
                .into_iter()
                .map(|(key, value)| (key, value.is_some()))
                .collect();
            changes.sort();
            let mut expected: Vec<(Vec<u8>, bool)> = match &start {
                None => Vec::new(),
                Some(start) => (0..4)
                    .filter(|number| start.get(number) != values.get(number))
                    .map(|number| (storage_key(number), values.contains_key(&number)))
                    .collect(),
            };
            expected.sort();
            prop_assert_eq!(changes, expected);
        }
    }
}
