//! The decision cache: the same recipient asking about the same indicator under the same policy
//! gets the same answer, so it is computed once.
//!
//! The key is the recipient id and the projection of the input onto the paths the policy reads
//! (found by `analysis`), encoded exactly, byte for byte: two inputs share an entry only when
//! everything the policy could look at is equal, so a hit is never a guess; the 64-bit hash
//! only finds the slot. `context.now`, which the reference policy does not read, is not in the
//! key, nor are an indicator's narrative or id: two indicators alike in what the policy reads
//! share their decisions. The policy revision is part of
//! the key by construction: each loaded policy owns its cache, so a reload starts empty even
//! when a careless bundle keeps its old revision.
//!
//! Only decisions that the policy made are stored; a fail-closed decision (time-out, error) is
//! recomputed next time. Memory is bounded in entries and bytes: each of the shards keeps two
//! generations and drops the older one when the newer fills (a cheap approximation of LRU
//! that never walks the map). Shards keep threads from contending on one lock.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::Decision;
use crate::analysis::ReadPaths;

/// Entries a policy's cache holds at most, across its shards and both generations.
pub const DEFAULT_CACHE_ENTRIES: usize = 65_536;

/// Bytes of keys and decisions across all shards and both generations: the key holds the
/// projected input (for the reference policy the indicator's label, subject and source, and
/// the recipient's facts: a few hundred bytes).
const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// An input whose projection is larger than this is decided without the cache: it would crowd
/// out many ordinary entries.
const MAX_KEY_BYTES: usize = 64 * 1024;

const SHARDS: usize = 16;

/// How the cache of one loaded policy is doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CacheStats {
    /// Whether decisions of this policy are cached at all.
    pub enabled: bool,
    /// Why not, when they are not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// The input paths the key is made of (`input.indicator`, `input.context.channel`).
    pub key_paths: Vec<String>,
    pub entries: usize,
    pub hits: u64,
    pub misses: u64,
}

pub(crate) struct DecisionCache {
    reads: ReadPaths,
    hasher: foldhash::quality::RandomState,
    shards: Box<[Mutex<Shard>]>,
    /// Bumped by every `clear`: a key computed before it cannot store its decision after it.
    epoch: AtomicU64,
}

/// Entries by the 64-bit hash of their key. Each entry keeps its whole key, compared in full on
/// every hit; two keys sharing a hash (which practically never happens) take turns in the slot
/// rather than one being mistaken for the other.
type Generation = HashMap<u64, Entry, BuildHasherDefault<PrehashedHasher>>;

/// One block holding the key and then the decision, encoded: a hit reads the map slot and this
/// block front to back, nothing else. (Separate allocations for the key and each string made
/// a hit in a large cache wait on memory several times over.)
#[derive(Clone)]
struct Entry(Box<[u8]>);

impl Entry {
    fn new(key: &[u8], decision: &Decision) -> Entry {
        let mut block = Vec::with_capacity(key.len() + 64);
        block.extend_from_slice(&(key.len() as u32).to_le_bytes());
        block.extend_from_slice(key);
        block.push(u8::from(decision.allow));
        for list in [&decision.redact, &decision.reasons] {
            block.extend_from_slice(&(list.len() as u32).to_le_bytes());
            for text in list {
                block.extend_from_slice(&(text.len() as u32).to_le_bytes());
                block.extend_from_slice(text.as_bytes());
            }
        }
        Entry(block.into_boxed_slice())
    }

    fn key(&self) -> &[u8] {
        let length = read_u32(&self.0, 0);
        self.0.get(4..4 + length).unwrap_or_default()
    }

    fn decision(&self) -> Decision {
        let mut at = 4 + read_u32(&self.0, 0);
        let allow = self.0.get(at) == Some(&1);
        at += 1;
        let mut lists = [Vec::new(), Vec::new()];
        for list in &mut lists {
            let count = read_u32(&self.0, at);
            at += 4;
            list.reserve_exact(count);
            for _ in 0..count {
                let length = read_u32(&self.0, at);
                at += 4;
                let text = self.0.get(at..at + length).unwrap_or_default();
                // Written from a String just above, so always valid.
                list.push(String::from_utf8_lossy(text).into_owned());
                at += length;
            }
        }
        let [redact, reasons] = lists;
        Decision {
            allow,
            redact,
            reasons,
            error: None,
        }
    }
}

fn read_u32(block: &[u8], at: usize) -> usize {
    block
        .get(at..at + 4)
        .and_then(|bytes| <[u8; 4]>::try_from(bytes).ok())
        .map_or(0, |bytes| u32::from_le_bytes(bytes) as usize)
}

#[derive(Default)]
struct Shard {
    /// Per generation.
    entry_limit: usize,
    byte_limit: usize,
    hot: Generation,
    cold: Generation,
    hot_entries: usize,
    hot_bytes: usize,
    cold_entries: usize,
    hits: u64,
    misses: u64,
}

/// The key of a miss, owning its bytes so that nothing computed in between can change what
/// the decision is stored under.
pub(crate) struct Key {
    hash: u64,
    bytes: Box<[u8]>,
    epoch: u64,
}

thread_local! {
    /// Reused for every key, so a hit allocates nothing but the returned decision.
    static KEY_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl DecisionCache {
    pub fn new(reads: ReadPaths, capacity: usize) -> DecisionCache {
        let capacity = capacity.max(SHARDS * 2);
        DecisionCache {
            reads,
            hasher: foldhash::quality::RandomState::default(),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard::empty(
                        capacity / SHARDS / 2,
                        DEFAULT_CACHE_BYTES / SHARDS / 2,
                    ))
                })
                .collect(),
            epoch: AtomicU64::new(0),
        }
    }

    pub fn key_paths(&self) -> Vec<String> {
        let mut paths = vec!["input.recipient.id".to_owned()];
        for path in self.reads.describe() {
            if !paths.contains(&path) {
                paths.push(path);
            }
        }
        paths
    }

    fn shard(&self, hash: u64) -> &Mutex<Shard> {
        // The map takes its bucket from the low bits and its tag from the top seven; the shard
        // comes from bits in between, so that neither loses entropy within a shard.
        &self.shards[(hash >> 40) as usize % SHARDS]
    }

    /// Looks `input` up. `Err(Some(key))` is a miss whose decision may be stored with
    /// [`Self::insert`]; `Err(None)` an input too large to cache.
    pub fn lookup(&self, input: &serde_json::Value) -> Result<Decision, Option<Key>> {
        let epoch = self.epoch.load(Ordering::Acquire);
        KEY_BUFFER.with_borrow_mut(|buffer| {
            buffer.clear();
            encode_key(&self.reads, input, buffer);
            if buffer.len() > MAX_KEY_BYTES {
                return Err(None);
            }
            let hash = self.hasher.hash_one(buffer.as_slice());
            let mut shard = lock(self.shard(hash));
            if let Some(entry) = find(&shard.hot, hash, buffer) {
                let decision = entry.decision();
                shard.hits += 1;
                return Ok(decision);
            }
            let promoted = find(&shard.cold, hash, buffer).cloned();
            match promoted {
                Some(entry) => {
                    shard.hits += 1;
                    let decision = entry.decision();
                    // A hit in the old generation moves to the new one, so that what is used
                    // survives the next rotation.
                    let dropped = shard.insert(hash, entry);
                    drop(shard);
                    drop(dropped);
                    Ok(decision)
                }
                None => {
                    shard.misses += 1;
                    Err(Some(Key {
                        hash,
                        bytes: buffer.as_slice().into(),
                        epoch,
                    }))
                }
            }
        })
    }

    /// Stores the decision for the key `lookup` just computed on this thread.
    pub fn insert(&self, key: Key, decision: &Decision) {
        debug_assert!(
            decision.error.is_none(),
            "fail-closed decisions are not cached"
        );
        let mut shard = lock(self.shard(key.hash));
        // Checked under the shard lock, which `clear` takes after bumping the epoch.
        if self.epoch.load(Ordering::Acquire) != key.epoch
            || find(&shard.hot, key.hash, &key.bytes).is_some()
        {
            return;
        }
        let dropped = shard.insert(key.hash, Entry::new(&key.bytes, decision));
        drop(shard);
        // The old generation is freed outside the lock.
        drop(dropped);
    }

    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        for shard in self.shards.iter() {
            let old = {
                let mut shard = lock(shard);
                let empty = Shard::empty(shard.entry_limit, shard.byte_limit);
                std::mem::replace(&mut *shard, empty)
            };
            drop(old);
        }
    }

    pub fn stats(&self) -> (usize, u64, u64) {
        let mut totals = (0, 0, 0);
        for shard in self.shards.iter() {
            let shard = lock(shard);
            totals.0 += shard.hot_entries + shard.cold_entries;
            totals.1 += shard.hits;
            totals.2 += shard.misses;
        }
        totals
    }
}

fn lock(shard: &Mutex<Shard>) -> std::sync::MutexGuard<'_, Shard> {
    // A panic while holding a shard leaves a consistent map (no operation is half done), so
    // the cache stays usable.
    shard
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn find<'a>(generation: &'a Generation, hash: u64, key: &[u8]) -> Option<&'a Entry> {
    generation.get(&hash).filter(|entry| entry.key() == key)
}

impl Shard {
    fn empty(entry_limit: usize, byte_limit: usize) -> Shard {
        Shard {
            entry_limit: entry_limit.max(1),
            byte_limit,
            ..Shard::default()
        }
    }

    /// Inserts into the new generation, rotating first when it is full; returns the dropped
    /// generation so the caller can free it after unlocking.
    fn insert(&mut self, hash: u64, entry: Entry) -> Option<Generation> {
        let mut dropped = None;
        if self.hot_entries >= self.entry_limit || self.hot_bytes >= self.byte_limit {
            let hot = std::mem::take(&mut self.hot);
            dropped = Some(std::mem::replace(&mut self.cold, hot));
            self.cold_entries = self.hot_entries;
            self.hot_entries = 0;
            self.hot_bytes = 0;
        }
        let bytes = entry.0.len();
        match self.hot.insert(hash, entry) {
            Some(replaced) => {
                self.hot_bytes = (self.hot_bytes + bytes).saturating_sub(replaced.0.len());
            }
            None => {
                self.hot_entries += 1;
                self.hot_bytes += bytes;
            }
        }
        dropped
    }
}

/// The map's keys are already foldhash values; hashing them again would only cost time.
#[derive(Default)]
struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; fold anything else rather than lose it.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

// Tags of the key encoding. The shape of the read-path tree is fixed for a policy, so a
// sequence of tagged, length-prefixed values decodes one way only.
const ABSENT: u8 = 0;
const NULL: u8 = 1;
const FALSE: u8 = 2;
const TRUE: u8 = 3;
const UNSIGNED: u8 = 4;
const SIGNED: u8 = 5;
const FLOAT: u8 = 6;
const STRING: u8 = 7;
const ARRAY: u8 = 8;
const OBJECT: u8 = 9;
/// An object at a node whose children are encoded one by one.
const FIELDS: u8 = 10;

/// `input.recipient.id`, then the read paths of `input`.
fn encode_key(reads: &ReadPaths, input: &serde_json::Value, out: &mut Vec<u8>) {
    encode_optional(
        input
            .get("recipient")
            .and_then(|recipient| recipient.get("id")),
        out,
    );
    encode_node(reads, Some(input), out);
}

fn encode_node(node: &ReadPaths, value: Option<&serde_json::Value>, out: &mut Vec<u8>) {
    let Some(value) = value else {
        out.push(ABSENT);
        return;
    };
    match value {
        serde_json::Value::Object(object) if !node.whole => {
            out.push(FIELDS);
            if maps_are_sorted() {
                // Both sides are sorted by key: one pass over each instead of a search per
                // field, which was most of the cost of a cache hit.
                let mut fields = object.iter().peekable();
                for (name, child) in &node.children {
                    let name = name.as_bytes();
                    while fields
                        .next_if(|(key, _)| compare(key.as_bytes(), name).is_lt())
                        .is_some()
                    {}
                    let found = fields
                        .next_if(|(key, _)| key.as_bytes() == name)
                        .map(|(_, field)| field);
                    encode_node(child, found, out);
                }
            } else {
                for (name, child) in &node.children {
                    encode_node(child, object.get(name), out);
                }
            }
        }
        // Read whole, or not an object where the policy looks for fields: all of it counts,
        // whatever the engine makes of a field lookup on a string or an array.
        _ => encode_value(value, out),
    }
}

/// Byte order of two field names, as `str` orders them. Field names are short and usually
/// differ in their first byte; a plain loop beats a call to `memcmp` for each comparison.
#[inline]
fn compare(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// Whether `serde_json::Map` iterates in key order. It does unless some crate in the build
/// enables serde_json's `preserve_order`, which a library cannot rule out; checked once.
fn maps_are_sorted() -> bool {
    static SORTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SORTED.get_or_init(|| {
        let mut map = serde_json::Map::new();
        map.insert("b".to_owned(), serde_json::Value::Null);
        map.insert("a".to_owned(), serde_json::Value::Null);
        map.keys().next().is_some_and(|first| first == "a")
    })
}

fn encode_optional(value: Option<&serde_json::Value>, out: &mut Vec<u8>) {
    match value {
        Some(value) => encode_value(value, out),
        None => out.push(ABSENT),
    }
}

fn encode_length(length: usize, out: &mut Vec<u8>) {
    // Keys longer than MAX_KEY_BYTES are never stored, so 32 bits are plenty; a longer length
    // saturates, and such a key is discarded anyway.
    out.extend_from_slice(&u32::try_from(length).unwrap_or(u32::MAX).to_le_bytes());
}

fn encode_value(value: &serde_json::Value, out: &mut Vec<u8>) {
    if out.len() > MAX_KEY_BYTES {
        // Too large to be stored: stop early, the caller discards the key.
        return;
    }
    match value {
        serde_json::Value::Null => out.push(NULL),
        serde_json::Value::Bool(false) => out.push(FALSE),
        serde_json::Value::Bool(true) => out.push(TRUE),
        serde_json::Value::Number(number) => {
            if let Some(unsigned) = number.as_u64() {
                out.push(UNSIGNED);
                out.extend_from_slice(&unsigned.to_le_bytes());
            } else if let Some(signed) = number.as_i64() {
                out.push(SIGNED);
                out.extend_from_slice(&signed.to_le_bytes());
            } else {
                // Not representable exactly otherwise: the text is the number.
                out.push(FLOAT);
                let text = number.to_string();
                encode_length(text.len(), out);
                out.extend_from_slice(text.as_bytes());
            }
        }
        serde_json::Value::String(text) => {
            out.push(STRING);
            encode_length(text.len(), out);
            out.extend_from_slice(text.as_bytes());
        }
        serde_json::Value::Array(items) => {
            out.push(ARRAY);
            encode_length(items.len(), out);
            for item in items {
                encode_value(item, out);
            }
        }
        serde_json::Value::Object(object) => {
            out.push(OBJECT);
            encode_length(object.len(), out);
            for (name, item) in object {
                encode_length(name.len(), out);
                out.extend_from_slice(name.as_bytes());
                encode_value(item, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn reads(paths: &[&[&str]]) -> ReadPaths {
        let mut reads = ReadPaths::default();
        for path in paths {
            let mut node = &mut reads;
            for component in *path {
                node = node.children.entry(component.to_string()).or_default();
            }
            node.whole = true;
        }
        reads
    }

    fn key(reads: &ReadPaths, input: serde_json::Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_key(reads, &input, &mut out);
        out
    }

    #[test]
    fn keys_hold_exactly_the_read_paths() {
        let reads = reads(&[&["indicator"], &["context", "channel"]]);
        let base = json!({
            "indicator": {"tlp": "TLP_GREEN"},
            "recipient": {"id": "NG"},
            "context": {"channel": "subscribe", "now": "2026-11-15T12:00:00Z"},
        });
        let mut later = base.clone();
        later["context"]["now"] = json!("2026-11-16T00:00:00Z");
        assert_eq!(key(&reads, base.clone()), key(&reads, later));
        for change in [
            json!({"indicator": {"tlp": "TLP_AMBER"}}),
            json!({"recipient": {"id": "CI"}}),
            json!({"context": {"channel": "circle"}}),
        ] {
            let mut changed = base.clone();
            for (field, value) in change.as_object().unwrap() {
                for (inner, inner_value) in value.as_object().unwrap() {
                    changed[field][inner] = inner_value.clone();
                }
            }
            assert_ne!(
                key(&reads, base.clone()),
                key(&reads, changed.clone()),
                "{changed}"
            );
        }
        // Missing, null and not-an-object differ from each other.
        let variants = [
            json!({}),
            json!({"context": null}),
            json!({"context": "x"}),
            json!({"context": {}}),
            json!({"context": {"channel": null}}),
        ];
        let keys: std::collections::HashSet<Vec<u8>> = variants
            .iter()
            .map(|input| key(&reads, input.clone()))
            .collect();
        assert_eq!(keys.len(), variants.len());
    }

    #[test]
    fn string_boundaries_are_unambiguous() {
        let reads = reads(&[&["a"], &["b"]]);
        assert_ne!(
            key(&reads, json!({"a": "xy", "b": "z"})),
            key(&reads, json!({"a": "x", "b": "yz"}))
        );
        assert_ne!(key(&reads, json!({"a": 1})), key(&reads, json!({"a": "1"})));
        assert_ne!(
            key(&reads, json!({"a": [1, 2]})),
            key(&reads, json!({"a": [[1], 2]}))
        );
    }

    fn decision(reason: &str) -> Decision {
        Decision {
            allow: true,
            redact: vec![],
            reasons: vec![reason.to_owned()],
            error: None,
        }
    }

    #[test]
    fn generations_bound_the_entries() {
        let cache = DecisionCache::new(reads(&[&["n"]]), SHARDS * 2 * 4);
        for n in 0..1000 {
            let input = json!({"n": n});
            match cache.lookup(&input) {
                Err(Some(key)) => cache.insert(key, &decision(&n.to_string())),
                other => panic!("{n}: {:?}", other.ok()),
            }
        }
        let (entries, _, misses) = cache.stats();
        assert!(entries <= SHARDS * 2 * 4, "{entries}");
        assert_eq!(misses, 1000);
        // The most recent entries are still there.
        assert_eq!(cache.lookup(&json!({"n": 999})).ok(), Some(decision("999")));
        cache.clear();
        assert_eq!(cache.stats(), (0, 0, 0));
    }
}
