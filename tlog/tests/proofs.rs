//! The log's proofs: RFC 9162's example trees, a second implementation (ct-merkle), and
//! properties over random sizes: every proof verifies, and a changed leaf, size, root or
//! proof hash does not.

use cordon_tlog::log::{self, MemoryLog};
use cordon_tlog::verify::{empty_root, node_hash};
use cordon_tlog::{Digest, ProofError, leaf_hash, verify_consistency, verify_inclusion};
use proptest::prelude::*;

type CtTree = ct_merkle::mem_backed_tree::MemoryBackedTree<sha2_for_ct_merkle::Sha256, Vec<u8>>;

fn entry(index: u64) -> Vec<u8> {
    format!("d{index}").into_bytes()
}

fn log_of(size: u64) -> MemoryLog {
    let mut log = MemoryLog::new();
    for index in 0..size {
        assert_eq!(log.append(&entry(index)), index);
    }
    log
}

/// RFC 9162 §2.1.5's tree of seven leaves d0..d6, built by hand from its figure:
/// a..f and j are leaves, g = (a, b), h = (c, d), i = (e, f), k = (g, h), l = (i, j).
struct Rfc9162Tree {
    a: Digest,
    b: Digest,
    c: Digest,
    d: Digest,
    f: Digest,
    g: Digest,
    h: Digest,
    i: Digest,
    j: Digest,
    k: Digest,
    l: Digest,
    root: Digest,
}

fn rfc_tree() -> Rfc9162Tree {
    let leaf = |index: u64| leaf_hash(&entry(index));
    let (a, b, c, d, e, f, j) = (
        leaf(0),
        leaf(1),
        leaf(2),
        leaf(3),
        leaf(4),
        leaf(5),
        leaf(6),
    );
    let g = node_hash(&a, &b);
    let h = node_hash(&c, &d);
    let i = node_hash(&e, &f);
    let k = node_hash(&g, &h);
    let l = node_hash(&i, &j);
    let root = node_hash(&k, &l);
    Rfc9162Tree {
        a,
        b,
        c,
        d,
        f,
        g,
        h,
        i,
        j,
        k,
        l,
        root,
    }
}

#[test]
fn roots_match_the_rfc_9162_example_tree() {
    let t = rfc_tree();
    let log = log_of(7);
    assert_eq!(log.root(), t.root);
    assert_eq!(log.root_at(0).unwrap(), empty_root());
    assert_eq!(log.root_at(1).unwrap(), t.a);
    // hash0 (three leaves), hash1 (four), hash2 (six).
    assert_eq!(log.root_at(3).unwrap(), node_hash(&t.g, &t.c));
    assert_eq!(log.root_at(4).unwrap(), t.k);
    assert_eq!(log.root_at(6).unwrap(), node_hash(&t.k, &t.i));
}

#[test]
fn inclusion_proofs_are_the_rfc_9162_audit_paths() {
    let t = rfc_tree();
    let log = log_of(7);
    let cases: [(u64, Vec<Digest>); 4] = [
        (0, vec![t.b, t.h, t.l]),
        (3, vec![t.c, t.g, t.l]),
        (4, vec![t.f, t.j, t.k]),
        (6, vec![t.i, t.k]),
    ];
    for (index, path) in cases {
        assert_eq!(log.inclusion_proof(index, 7).unwrap(), path, "d{index}");
        verify_inclusion(index, 7, &leaf_hash(&entry(index)), &path, &t.root).unwrap();
    }
}

#[test]
fn consistency_proofs_are_the_rfc_9162_ones() {
    let t = rfc_tree();
    let log = log_of(7);
    let cases: [(u64, Vec<Digest>, Digest); 3] = [
        (3, vec![t.c, t.d, t.g, t.l], node_hash(&t.g, &t.c)),
        (4, vec![t.l], t.k),
        (6, vec![t.i, t.j, t.k], node_hash(&t.k, &t.i)),
    ];
    for (first, proof, first_root) in cases {
        assert_eq!(
            log.consistency_proof(first, 7).unwrap(),
            proof,
            "PROOF({first}, D[7])"
        );
        verify_consistency(first, 7, &first_root, &t.root, &proof).unwrap();
    }
}

#[test]
fn edge_cases_are_answered_without_panicking() {
    let log = log_of(5);
    let root = log.root();
    assert_eq!(
        verify_inclusion(5, 5, &[0; 32], &[], &root),
        Err(ProofError::IndexOutOfRange { index: 5, size: 5 })
    );
    assert!(verify_consistency(6, 5, &root, &root, &[]).is_err());
    verify_consistency(0, 5, &empty_root(), &root, &[]).unwrap();
    verify_consistency(5, 5, &root, &root, &[]).unwrap();
    assert_eq!(
        verify_consistency(5, 5, &root, &[1; 32], &[]),
        Err(ProofError::RootMismatch)
    );
    assert!(verify_consistency(3, 5, &log.root_at(3).unwrap(), &root, &[]).is_err());
    assert!(log.inclusion_proof(5, 5).is_err());
    assert!(log.inclusion_proof(0, 6).is_err(), "beyond the log");
    assert!(log.consistency_proof(4, 3).is_err());
    // A tree of one leaf: the proof is empty.
    let one = log_of(1);
    verify_inclusion(0, 1, &leaf_hash(&entry(0)), &[], &one.root()).unwrap();
}

/// The same entries in ct-merkle's tree: same roots, and each side verifies the other's
/// proofs.
fn cross_check(size: u64, index: u64, first: u64) {
    let log = log_of(size);
    let mut ct = CtTree::new();
    for i in 0..size {
        ct.push(entry(i));
    }
    let root = log.root();
    assert_eq!(
        ct.root().as_bytes().as_slice(),
        root.as_slice(),
        "size {size}"
    );

    let ours = log.inclusion_proof(index, size).unwrap();
    let theirs = ct.prove_inclusion(usize::try_from(index).unwrap());
    let as_ct = ct_merkle::InclusionProof::<sha2_for_ct_merkle::Sha256>::from_bytes(ours.concat());
    ct.root()
        .verify_inclusion(&entry(index), index, &as_ct)
        .unwrap_or_else(|error| panic!("ct-merkle refuses our proof {index}/{size}: {error:?}"));
    let theirs: Vec<Digest> = theirs
        .as_bytes()
        .chunks(32)
        .map(|chunk| chunk.try_into().unwrap())
        .collect();
    verify_inclusion(index, size, &leaf_hash(&entry(index)), &theirs, &root).unwrap();
    assert_eq!(ours, theirs);

    if first > 0 && first < size {
        let ours = log.consistency_proof(first, size).unwrap();
        let mut old = CtTree::new();
        for i in 0..first {
            old.push(entry(i));
        }
        let as_ct = ct_merkle::ConsistencyProof::<sha2_for_ct_merkle::Sha256>::try_from_bytes(
            ours.concat(),
        )
        .unwrap();
        ct.root()
            .verify_consistency(&old.root(), &as_ct)
            .unwrap_or_else(|error| {
                panic!("ct-merkle refuses our proof {first}->{size}: {error:?}")
            });
        let theirs = ct.prove_consistency(usize::try_from(size - first).unwrap());
        let theirs: Vec<Digest> = theirs
            .as_bytes()
            .chunks(32)
            .map(|chunk| chunk.try_into().unwrap())
            .collect();
        verify_consistency(first, size, &log.root_at(first).unwrap(), &root, &theirs).unwrap();
    }
}

#[test]
fn agrees_with_ct_merkle_on_every_small_tree() {
    for size in 1..=40 {
        for index in 0..size {
            cross_check(size, index, index);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn agrees_with_ct_merkle(size in 1u64..600, index_seed in any::<u64>(), first_seed in any::<u64>()) {
        cross_check(size, index_seed % size, first_seed % (size + 1));
    }

    #[test]
    fn every_proof_verifies_and_any_change_fails(
        size in 1u64..300,
        index_seed in any::<u64>(),
        first_seed in any::<u64>(),
        flip in any::<(usize, u8)>(),
    ) {
        let log = log_of(size);
        let root = log.root();
        let index = index_seed % size;
        let leaf = leaf_hash(&entry(index));
        let proof = log.inclusion_proof(index, size).unwrap();
        prop_assert!(verify_inclusion(index, size, &leaf, &proof, &root).is_ok());
        // Another leaf, another root, another size, a changed proof hash: all refused.
        prop_assert!(verify_inclusion(index, size, &leaf_hash(b"forged"), &proof, &root).is_err());
        let mut other_root = root;
        other_root[flip.0 % 32] ^= flip.1 | 1;
        prop_assert!(verify_inclusion(index, size, &leaf, &proof, &other_root).is_err());
        // Another size: RFC 9162's paths do not always change with the size (the signed
        // checkpoint binds size and root), but a size whose path is longer or shorter fails.
        let grown = log_of(size + 1);
        if grown.inclusion_proof(index, size + 1).unwrap().len() != proof.len() {
            prop_assert!(verify_inclusion(index, size + 1, &leaf, &proof, &root).is_err());
        }
        if !proof.is_empty() {
            let mut changed = proof.clone();
            let at = flip.0 % changed.len();
            changed[at][flip.0 % 32] ^= flip.1 | 1;
            prop_assert!(verify_inclusion(index, size, &leaf, &changed, &root).is_err());
            prop_assert!(verify_inclusion(index, size, &leaf, &proof[1..], &root).is_err());
        }

        let first = first_seed % (size + 1);
        let first_root = log.root_at(first).unwrap();
        let consistency = log.consistency_proof(first, size).unwrap();
        prop_assert!(verify_consistency(first, size, &first_root, &root, &consistency).is_ok());
        if first > 0 && first < size {
            prop_assert!(verify_consistency(first, size, &first_root, &other_root, &consistency).is_err());
            prop_assert!(verify_consistency(first, size, &other_root, &root, &consistency).is_err());
            let mut changed = consistency.clone();
            let at = flip.0 % changed.len();
            changed[at][flip.0 % 32] ^= flip.1 | 1;
            prop_assert!(verify_consistency(first, size, &first_root, &root, &changed).is_err());
            // A rewritten history: the same size with one entry changed has another root,
            // and no proof from the true log joins it to the present.
            let mut rewritten = MemoryLog::new();
            for i in 0..first {
                rewritten.append(&if i == first / 2 { b"rewritten".to_vec() } else { entry(i) });
            }
            prop_assert!(verify_consistency(first, size, &rewritten.root(), &root, &consistency).is_err());
        }
    }
}

#[test]
fn stored_hashes_stay_about_two_per_entry() {
    let log = log_of(1000);
    assert_eq!(
        log::stored_hash_count(1000),
        1000 * 2 - u64::from(1000u64.count_ones())
    );
    assert_eq!(log.size(), 1000);
}

/// What a database-backed log does: read the indexes an operation names, then run it on
/// those hashes alone. It must give what the whole log gives.
#[test]
fn operations_on_hashes_read_beforehand_agree_with_the_whole_log() {
    use cordon_tlog::log::{HashStore, Operation, ReadHashes, append_batch, reads};
    let read = |log: &MemoryLog, operation: Operation| {
        let indexes = reads(operation).unwrap();
        let hashes = log.read(&indexes).unwrap();
        ReadHashes(indexes.into_iter().zip(hashes).collect())
    };
    let mut log = MemoryLog::new();
    for batch in [1u64, 3, 1, 7, 16, 5, 33, 2] {
        let size = log.size();
        let leaves: Vec<Digest> = (size..size + batch).map(|i| leaf_hash(&entry(i))).collect();
        let before = read(&log, Operation::Append { size, count: batch });
        let written = append_batch(size, &leaves, &before).unwrap();
        let mut whole = log.clone();
        let first_new = log::stored_hash_count(size);
        for leaf in &leaves {
            whole.append_leaf(*leaf);
        }
        let expected: Vec<(u64, Digest)> = (first_new..)
            .zip(
                whole
                    .read(&(first_new..log::stored_hash_count(size + batch)).collect::<Vec<_>>())
                    .unwrap(),
            )
            .collect();
        assert_eq!(written, expected, "batch of {batch} after {size}");
        log = whole;
    }
    let size = log.size();
    for index in [0, 1, size / 2, size - 1] {
        let hashes = read(&log, Operation::Inclusion { index, size });
        assert_eq!(
            log::inclusion_proof(index, size, &hashes).unwrap(),
            log.inclusion_proof(index, size).unwrap()
        );
    }
    for first in [1, 3, size / 2, size - 1] {
        let hashes = read(
            &log,
            Operation::Consistency {
                first,
                second: size,
            },
        );
        assert_eq!(
            log::consistency_proof(first, size, &hashes).unwrap(),
            log.consistency_proof(first, size).unwrap()
        );
        let hashes = read(&log, Operation::Root { size: first });
        assert_eq!(
            log::root(first, &hashes).unwrap(),
            log.root_at(first).unwrap()
        );
    }
}

#[test]
fn each_stored_hash_is_found_with_the_entry_whose_append_wrote_it() {
    use cordon_tlog::log::{hashes_written_by, stored_hash_location};
    let mut written = 0u64;
    for position in 0..2_000u64 {
        for offset in 0..hashes_written_by(position) {
            assert_eq!(
                stored_hash_location(written),
                (position, offset),
                "hash {written}"
            );
            written += 1;
        }
    }
    assert_eq!(written, log::stored_hash_count(2_000));
}

/// The writer's shortcut: appends from the right edge it kept in memory, never reading stored
/// hashes, write what appends from the whole log write, and the edge kept is the log's own.
#[test]
fn appends_from_a_kept_right_edge_agree_with_the_whole_log() {
    use cordon_tlog::log::{
        HashStore, Operation, RightEdge, append_batch, reads, right_edge_indexes,
    };
    let mut log = MemoryLog::new();
    let mut edge = RightEdge::of(0, &Default::default()).unwrap();
    for batch in [1u64, 1, 2, 3, 1, 7, 16, 5, 33, 2, 64, 1, 100] {
        let size = log.size();
        assert_eq!(edge.size(), size);
        let leaves: Vec<Digest> = (size..size + batch).map(|i| leaf_hash(&entry(i))).collect();
        let needed = reads(Operation::Append { size, count: batch }).unwrap();
        let known = edge
            .read(&needed)
            .expect("an append reads only the right edge");
        let written = append_batch(size, &leaves, &known).unwrap();
        for leaf in &leaves {
            log.append_leaf(*leaf);
        }
        let first_new = log::stored_hash_count(size);
        let expected: Vec<(u64, Digest)> = (first_new..)
            .zip(
                log.read(&(first_new..log::stored_hash_count(size + batch)).collect::<Vec<_>>())
                    .unwrap(),
            )
            .collect();
        assert_eq!(written, expected, "batch of {batch} after {size}");
        edge = edge.after(size + batch, &written).unwrap();
        let indexes = right_edge_indexes(size + batch);
        assert_eq!(indexes.len(), (size + batch).count_ones() as usize);
        let on_edge = edge.read(&indexes).unwrap();
        for (index, hash) in indexes.iter().zip(log.read(&indexes).unwrap()) {
            assert_eq!(
                on_edge.0[index],
                hash,
                "edge hash {index} at {}",
                size + batch
            );
        }
    }
    // An edge cannot be made from hashes that miss part of it.
    let size = log.size();
    let mut partial: std::collections::HashMap<u64, Digest> = right_edge_indexes(size)
        .into_iter()
        .zip(log.read(&right_edge_indexes(size)).unwrap())
        .collect();
    assert!(RightEdge::of(size, &partial).is_some());
    let first = right_edge_indexes(size)[0];
    partial.remove(&first);
    assert!(RightEdge::of(size, &partial).is_none());
}
