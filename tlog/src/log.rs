//! The tree over stored hashes.
//!
//! Every complete subtree's hash is stored once, at the index `tlog_tiles::stored_hash_index`
//! gives it (leaves and interior nodes interleaved, about two hashes per entry). Appending
//! entry `n` stores its leaf hash and the hashes of the subtrees it completes; the root of any
//! earlier size, an inclusion proof or a consistency proof then reads O(log n) stored hashes,
//! so their cost does not grow with the log beyond that.
//!
//! Where the hashes live is the [`HashStore`]'s business: [`MemoryLog`] keeps them in memory
//! (tests, benchmarks); the gateway keeps them in its database, beside what they record.

use std::cell::RefCell;

use tlog_tiles::{Hash, HashReader};

use crate::Digest;

/// Why the log could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    #[error("entry {index} is not in a tree of size {size}")]
    NotInTree { index: u64, size: u64 },
    #[error("a tree of size {asked} is larger than the log ({size})")]
    TooLarge { asked: u64, size: u64 },
    #[error("the first size {first} is larger than the second {second}")]
    SizesOutOfOrder { first: u64, second: u64 },
    #[error("reading stored hashes: {0}")]
    Store(String),
    #[error("{0}")]
    Tree(String),
}

/// Reads stored hashes by their stored-hash index.
pub trait HashStore {
    /// The hashes at `indexes`, in the same order; an index never written is an error.
    fn read(&self, indexes: &[u64]) -> Result<Vec<Digest>, LogError>;
}

/// `tlog_tiles`' reader over a [`HashStore`], keeping the store's own error (tlog_tiles has
/// no variant to carry it).
struct Reader<'a, S: ?Sized> {
    store: &'a S,
    failure: RefCell<Option<LogError>>,
}

impl<'a, S: HashStore + ?Sized> Reader<'a, S> {
    fn new(store: &'a S) -> Self {
        Reader {
            store,
            failure: RefCell::new(None),
        }
    }

    fn error(&self, error: tlog_tiles::Error) -> LogError {
        self.failure
            .borrow_mut()
            .take()
            .unwrap_or_else(|| LogError::Tree(error.to_string()))
    }
}

impl<S: HashStore + ?Sized> HashReader for Reader<'_, S> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        match self.store.read(indexes) {
            Ok(hashes) if hashes.len() == indexes.len() => {
                Ok(hashes.into_iter().map(Hash).collect())
            }
            Ok(_) => {
                *self.failure.borrow_mut() = Some(LogError::Store(
                    "the store returned a different number of hashes than asked".into(),
                ));
                Err(tlog_tiles::Error::IndexesNotInTree)
            }
            Err(error) => {
                *self.failure.borrow_mut() = Some(error);
                Err(tlog_tiles::Error::IndexesNotInTree)
            }
        }
    }
}

/// The stored hashes to write when entry `index` (the log's size before it) is appended
/// with leaf hash `leaf`: `(stored hash index, hash)` pairs, at most `1 + log2(index + 1)`.
pub fn hashes_to_store<S: HashStore + ?Sized>(
    index: u64,
    leaf: Digest,
    store: &S,
) -> Result<Vec<(u64, Digest)>, LogError> {
    let reader = Reader::new(store);
    let hashes = tlog_tiles::stored_hashes_for_record_hash(index, Hash(leaf), &reader)
        .map_err(|error| reader.error(error))?;
    let first = tlog_tiles::stored_hash_index(0, index);
    Ok((first..)
        .zip(hashes)
        .map(|(position, hash)| (position, hash.0))
        .collect())
}

/// Where the stored hash `index` is written when hashes are kept with their entry (one row
/// per entry holding the hashes its append wrote, in order): the entry's position and the
/// hash's place among them. The append of entry `p` writes the hashes of levels 0 to
/// `(p + 1).trailing_zeros()` of the subtrees ending at `p`.
pub fn stored_hash_location(index: u64) -> (u64, usize) {
    let (level, n) = tlog_tiles::split_stored_hash_index(index);
    (((n + 1) << level) - 1, usize::from(level))
}

/// How many hashes the append of entry `position` writes.
pub fn hashes_written_by(position: u64) -> usize {
    1 + (position + 1).trailing_zeros() as usize
}

/// How many stored hashes a log of `size` entries holds.
pub fn stored_hash_count(size: u64) -> u64 {
    tlog_tiles::stored_hash_count(size)
}

/// The root of the first `size` entries.
pub fn root<S: HashStore + ?Sized>(size: u64, store: &S) -> Result<Digest, LogError> {
    let reader = Reader::new(store);
    tlog_tiles::tree_hash(size, &reader)
        .map(|hash| hash.0)
        .map_err(|error| reader.error(error))
}

/// The proof that entry `index` is in the tree of the first `size` entries.
pub fn inclusion_proof<S: HashStore + ?Sized>(
    index: u64,
    size: u64,
    store: &S,
) -> Result<Vec<Digest>, LogError> {
    if index >= size {
        return Err(LogError::NotInTree { index, size });
    }
    let reader = Reader::new(store);
    tlog_tiles::prove_record(size, index, &reader)
        .map(|proof| proof.into_iter().map(|hash| hash.0).collect())
        .map_err(|error| reader.error(error))
}

/// The proof that the tree of the first `first` entries is a prefix of the tree of the first
/// `second` (empty when `first` is 0 or equals `second`).
pub fn consistency_proof<S: HashStore + ?Sized>(
    first: u64,
    second: u64,
    store: &S,
) -> Result<Vec<Digest>, LogError> {
    if first > second {
        return Err(LogError::SizesOutOfOrder { first, second });
    }
    if first == 0 || first == second {
        return Ok(Vec::new());
    }
    let reader = Reader::new(store);
    tlog_tiles::prove_tree(second, first, &reader)
        .map(|proof| proof.into_iter().map(|hash| hash.0).collect())
        .map_err(|error| reader.error(error))
}

/// A log held in memory: the stored hashes in one vector.
#[derive(Debug, Default, Clone)]
pub struct MemoryLog {
    hashes: Vec<Digest>,
    size: u64,
}

impl HashStore for MemoryLog {
    fn read(&self, indexes: &[u64]) -> Result<Vec<Digest>, LogError> {
        indexes
            .iter()
            .map(|&index| {
                usize::try_from(index)
                    .ok()
                    .and_then(|index| self.hashes.get(index))
                    .copied()
                    .ok_or_else(|| LogError::Store(format!("no stored hash {index}")))
            })
            .collect()
    }
}

impl MemoryLog {
    pub fn new() -> MemoryLog {
        MemoryLog::default()
    }

    /// Appends `entry` (its canonical bytes); returns its index.
    pub fn append(&mut self, entry: &[u8]) -> u64 {
        self.append_leaf(crate::verify::leaf_hash(entry))
    }

    /// Appends an entry by its leaf hash; returns its index.
    pub fn append_leaf(&mut self, leaf: Digest) -> u64 {
        let index = self.size;
        let hashes = hashes_to_store(index, leaf, self)
            .expect("a memory log holds every hash an append reads");
        for (position, hash) in hashes {
            debug_assert_eq!(position, self.hashes.len() as u64);
            self.hashes.push(hash);
        }
        self.size += 1;
        index
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The root of the whole log.
    pub fn root(&self) -> Digest {
        self.root_at(self.size).expect("the log's own size")
    }

    /// The root of the first `size` entries.
    pub fn root_at(&self, size: u64) -> Result<Digest, LogError> {
        if size > self.size {
            return Err(LogError::TooLarge {
                asked: size,
                size: self.size,
            });
        }
        root(size, self)
    }

    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Digest>, LogError> {
        if size > self.size {
            return Err(LogError::TooLarge {
                asked: size,
                size: self.size,
            });
        }
        inclusion_proof(index, size, self)
    }

    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Digest>, LogError> {
        if second > self.size {
            return Err(LogError::TooLarge {
                asked: second,
                size: self.size,
            });
        }
        consistency_proof(first, second, self)
    }
}

/// A [`HashStore`] over hashes read beforehand (from a database, asynchronously): the caller
/// asks [`reads`] which indexes an operation needs, reads them, and runs the operation here.
#[derive(Debug, Default, Clone)]
pub struct ReadHashes(pub std::collections::HashMap<u64, Digest>);

impl HashStore for ReadHashes {
    fn read(&self, indexes: &[u64]) -> Result<Vec<Digest>, LogError> {
        indexes
            .iter()
            .map(|index| {
                self.0
                    .get(index)
                    .copied()
                    .ok_or_else(|| LogError::Store(format!("stored hash {index} was not read")))
            })
            .collect()
    }
}

/// An operation on a log, for [`reads`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// The root of the first `size` entries.
    Root { size: u64 },
    /// The inclusion proof of entry `index` in the first `size` entries.
    Inclusion { index: u64, size: u64 },
    /// The consistency proof from the first `first` entries to the first `second`.
    Consistency { first: u64, second: u64 },
    /// Appending `count` entries to a log of `size` entries ([`append_batch`]).
    Append { size: u64, count: u64 },
}

/// Records the indexes an operation asks for, answering with placeholder hashes (the
/// operations read once and do not look at the values to decide what to read).
#[derive(Default)]
struct Recorder(RefCell<Vec<u64>>);

impl HashStore for Recorder {
    fn read(&self, indexes: &[u64]) -> Result<Vec<Digest>, LogError> {
        self.0.borrow_mut().extend_from_slice(indexes);
        Ok(vec![[0; 32]; indexes.len()])
    }
}

/// The stored-hash indexes `operation` reads from the store (sorted, without repeats): read
/// them, put them in a [`ReadHashes`] and run the operation on it.
pub fn reads(operation: Operation) -> Result<Vec<u64>, LogError> {
    let recorder = Recorder::default();
    match operation {
        Operation::Root { size } => {
            root(size, &recorder)?;
        }
        Operation::Inclusion { index, size } => {
            inclusion_proof(index, size, &recorder)?;
        }
        Operation::Consistency { first, second } => {
            consistency_proof(first, second, &recorder)?;
        }
        Operation::Append { size, count } => {
            // Each append reads only hashes of complete subtrees to its left: those stored
            // before the batch, or written by an earlier append of the same batch.
            let stored_before = tlog_tiles::stored_hash_index(0, size);
            for index in size..size.saturating_add(count) {
                let wanted = Recorder::default();
                hashes_to_store(index, [0; 32], &wanted)?;
                recorder.0.borrow_mut().extend(
                    wanted
                        .0
                        .into_inner()
                        .into_iter()
                        .filter(|stored| *stored < stored_before),
                );
            }
        }
    }
    let mut indexes = recorder.0.into_inner();
    indexes.sort_unstable();
    indexes.dedup();
    Ok(indexes)
}

/// Appends `leaves` to a log of `size` entries whose hashes `store` holds (at least those
/// [`reads`] of `Operation::Append` names); returns the stored hashes to write, in index
/// order.
pub fn append_batch<S: HashStore + ?Sized>(
    size: u64,
    leaves: &[Digest],
    store: &S,
) -> Result<Vec<(u64, Digest)>, LogError> {
    struct Overlay<'a, S: ?Sized> {
        store: &'a S,
        written: std::collections::HashMap<u64, Digest>,
    }
    impl<S: HashStore + ?Sized> HashStore for Overlay<'_, S> {
        fn read(&self, indexes: &[u64]) -> Result<Vec<Digest>, LogError> {
            let mut out = Vec::with_capacity(indexes.len());
            for index in indexes {
                match self.written.get(index) {
                    Some(hash) => out.push(*hash),
                    None => out.push(self.store.read(&[*index])?[0]),
                }
            }
            Ok(out)
        }
    }
    let mut overlay = Overlay {
        store,
        written: std::collections::HashMap::new(),
    };
    let mut out = Vec::with_capacity(leaves.len() * 2);
    for (index, leaf) in (size..).zip(leaves) {
        let hashes = hashes_to_store(index, *leaf, &overlay)?;
        for (position, hash) in hashes {
            overlay.written.insert(position, hash);
            out.push((position, hash));
        }
    }
    Ok(out)
}

/// The stored-hash indexes of the right edge of a log of `size` entries: the roots of its
/// largest complete subtrees, left to right (one per bit set in `size`). Every append to the
/// log reads only hashes of this edge and those the same batch wrote before it.
pub fn right_edge_indexes(size: u64) -> Vec<u64> {
    let mut indexes = Vec::with_capacity(size.count_ones() as usize);
    let mut start = 0_u64;
    for level in (0..u64::BITS).rev() {
        let width = 1_u64 << level;
        if size & width != 0 {
            indexes.push(tlog_tiles::stored_hash_index(level as u8, start >> level));
            start += width;
        }
    }
    indexes
}

/// The right edge of a log (see [`right_edge_indexes`]) held in memory, so that an append can
/// run without reading stored hashes: the writer keeps the edge of the size it last committed
/// and, when the log still has that size, appends from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RightEdge {
    size: u64,
    hashes: std::collections::HashMap<u64, Digest>,
}

impl RightEdge {
    /// The edge of a log of `size` entries, from stored hashes that include it (`None` if
    /// one is missing).
    pub fn of(size: u64, hashes: &std::collections::HashMap<u64, Digest>) -> Option<RightEdge> {
        let edge = right_edge_indexes(size)
            .into_iter()
            .map(|index| hashes.get(&index).map(|hash| (index, *hash)))
            .collect::<Option<_>>()?;
        Some(RightEdge { size, hashes: edge })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The hashes at `indexes` (`None` if one is not on the edge).
    pub fn read(&self, indexes: &[u64]) -> Option<ReadHashes> {
        indexes
            .iter()
            .map(|index| self.hashes.get(index).map(|hash| (*index, *hash)))
            .collect::<Option<_>>()
            .map(ReadHashes)
    }

    /// The edge after `written` (what [`append_batch`] returned for an append to this edge's
    /// size) grew the log to `size`.
    pub fn after(&self, size: u64, written: &[(u64, Digest)]) -> Option<RightEdge> {
        let mut hashes = self.hashes.clone();
        hashes.extend(written.iter().copied());
        RightEdge::of(size, &hashes)
    }
}
