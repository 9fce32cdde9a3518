//! The index: which records (indicators, or watched declarations) hold an identifier or a
//! name like a query's, found without looking at every record.
//!
//! Identifiers are kept by the hash of their kind and compared form, each with the records
//! that hold it. Names are kept by word: every word of a record's normalised name points at
//! the name, and every word of five letters or more is also kept under each form with one
//! letter left out, so that a query word with one typo (a letter added, dropped or changed)
//! still finds the name (the symmetric-delete idea of SymSpell). A query asks its words'
//! names in order of rarity and scores at most [`MAX_NAME_CANDIDATES`] of them, so a name
//! made of common words, or a hostile one, costs a bounded amount of work. The names of a
//! common word (one held by more than [`COMMON_WORD`] names) are read only for a query name
//! made of common words alone: a name is found through a distinctive word it shares with the
//! query (with at most one typo), and reading the names of "trading" for every query that has
//! it would cost more than all the rest of a screening.
//!
//! Records are `u64` ids chosen by the caller (the gateway uses feed sequences, so a larger id
//! is a more recent record). The index returns candidates; [`crate::compare`] explains them.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::name::{NameClass, NameComparator};
use crate::subject::{Prepared, key_hash};

/// Records returned per identifier at most: the most recent ones. A key held by very many
/// records (a common bank's BIC, a route's country) says little about any one of them.
pub const MAX_RECORDS_PER_KEY: usize = 50;
/// Names scored per query name at most: those sharing the most words with it first, then the
/// most recent (as with an identifier's records, a name many records hold says little of each).
pub const MAX_NAME_CANDIDATES: usize = 64;
/// Postings read per query name at most, over all its words.
pub const MAX_POSTINGS_READ: usize = 50_000;
/// Shortest word that is also found with one typo.
pub const MIN_TYPO_WORD: usize = 5;
/// Names holding a word beyond which it counts as common ("trading", "general"): a common
/// word's names are read only for a query name made of common words alone.
pub const COMMON_WORD: usize = 2_000;

/// A hasher for keys that are hashes already.
#[derive(Debug, Default, Clone, Copy)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed with this; fold anything else rather than panic.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

type HashedMap<V> = HashMap<u64, V, BuildHasherDefault<PassThrough>>;

/// The ids under one key: most keys have one.
#[derive(Debug, Clone)]
#[expect(
    clippy::box_collection,
    reason = "a boxed Vec keeps an entry at 16 bytes; most keys hold one id and no Vec at all"
)]
enum Postings<T> {
    One(T),
    Many(Box<Vec<T>>),
}

impl<T: Copy + PartialEq> Postings<T> {
    /// Adds `id` after the ids held, once. Every push of one id comes in one run (one
    /// record's insert, one new word's deletions), so a repeat can only be the last id held:
    /// checking that one keeps a push O(1) however many records share a key (checking them
    /// all made indexing quadratic in the records naming one vessel).
    fn push(&mut self, id: T) {
        match self {
            Postings::One(first) => {
                if *first != id {
                    *self = Postings::Many(Box::new(vec![*first, id]));
                }
            }
            Postings::Many(ids) => {
                if ids.last() != Some(&id) {
                    ids.push(id);
                }
            }
        }
    }

    /// Removes `id`; returns whether none is left.
    fn remove(&mut self, id: T) -> bool {
        match self {
            Postings::One(only) => *only == id,
            Postings::Many(ids) => {
                ids.retain(|held| *held != id);
                match ids.as_slice() {
                    [] => true,
                    [last] => {
                        *self = Postings::One(*last);
                        false
                    }
                    _ => false,
                }
            }
        }
    }

    fn as_slice(&self) -> &[T] {
        match self {
            Postings::One(id) => std::slice::from_ref(id),
            Postings::Many(ids) => ids,
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Postings::One(_) => 0,
            Postings::Many(ids) => {
                std::mem::size_of::<Vec<T>>() + ids.capacity() * std::mem::size_of::<T>()
            }
        }
    }
}

/// One indexed name.
#[derive(Debug, Clone, Copy)]
struct NameEntry {
    record: u64,
    start: u32,
    len: u16,
    class: NameClass,
    live: bool,
}

#[derive(Debug, Default)]
struct Words {
    ids: HashedMap<u32>,
    /// Word id -> the names holding it.
    postings: Vec<Vec<u32>>,
    /// Hash of a word with one letter left out -> the words that give it.
    deletions: HashedMap<Postings<u32>>,
}

fn word_hash(word: &str) -> u64 {
    key_hash(crate::IdKind::Imo, word) ^ 0x5eed
}

/// The hash of each form of `word` with one character left out, built in one buffer.
fn deletion_hashes(word: &str, mut each: impl FnMut(u64)) {
    let mut shorter = String::with_capacity(word.len());
    for (at, character) in word.char_indices() {
        shorter.clear();
        shorter.push_str(&word[..at]);
        shorter.push_str(&word[at + character.len_utf8()..]);
        each(word_hash(&shorter));
    }
}

thread_local! {
    /// Per name id, the words a query name shares with it: zero outside a query, and reset
    /// for the names touched before the query returns.
    static SHARED: std::cell::RefCell<Vec<u16>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Words {
    fn id_or_insert(&mut self, word: &str) -> u32 {
        let hash = word_hash(word);
        if let Some(id) = self.ids.get(&hash) {
            return *id;
        }
        let id = u32::try_from(self.postings.len()).unwrap_or(u32::MAX);
        self.ids.insert(hash, id);
        self.postings.push(Vec::new());
        if word.chars().count() >= MIN_TYPO_WORD {
            deletion_hashes(word, |hash| match self.deletions.entry(hash) {
                std::collections::hash_map::Entry::Occupied(mut held) => held.get_mut().push(id),
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(Postings::One(id));
                }
            });
        }
        id
    }

    /// The known words within one typo of `word` (itself included).
    fn similar(&self, word: &str, into: &mut Vec<u32>) {
        let look = |hash: u64, into: &mut Vec<u32>| {
            if let Some(id) = self.ids.get(&hash) {
                into.push(*id);
            }
            if let Some(ids) = self.deletions.get(&hash) {
                into.extend_from_slice(ids.as_slice());
            }
        };
        look(word_hash(word), into);
        if word.chars().count() >= MIN_TYPO_WORD {
            deletion_hashes(word, |hash| look(hash, into));
        }
        into.sort_unstable();
        into.dedup();
    }
}

/// Approximate memory of an index, for benchmarks and operators.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexStats {
    pub records: usize,
    pub identifier_keys: usize,
    pub names: usize,
    pub words: usize,
    pub bytes: usize,
}

/// Records by identifier and name; see the module documentation.
#[derive(Debug, Default)]
pub struct Index {
    identifiers: HashedMap<Postings<u64>>,
    names: Vec<NameEntry>,
    free_names: Vec<u32>,
    /// Live names' normalised texts, back to back; removed names leave garbage that
    /// [`Index::remove`] compacts away once it is half of the text.
    text: String,
    garbage: usize,
    words: Words,
    records: usize,
}

impl Index {
    pub fn new() -> Index {
        Index::default()
    }

    /// Adds `record`'s identifiers and names. A record is inserted once until it is removed
    /// (the gateway numbers them by feed sequence or watch number); inserting one that is
    /// already held lists it twice.
    pub fn insert(&mut self, record: u64, subject: &Prepared) {
        self.records += 1;
        for identifier in &subject.identifiers {
            match self.identifiers.entry(identifier.hash) {
                std::collections::hash_map::Entry::Occupied(mut held) => {
                    held.get_mut().push(record)
                }
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(Postings::One(record));
                }
            }
        }
        for name in &subject.names {
            let text = &name.normalised.text;
            let start = u32::try_from(self.text.len()).unwrap_or(u32::MAX);
            self.text.push_str(text);
            let entry = NameEntry {
                record,
                start,
                len: u16::try_from(text.len()).unwrap_or(u16::MAX),
                class: name.class,
                live: true,
            };
            let id = match self.free_names.pop() {
                Some(id) => {
                    self.names[id as usize] = entry;
                    id
                }
                None => {
                    self.names.push(entry);
                    u32::try_from(self.names.len() - 1).unwrap_or(u32::MAX)
                }
            };
            let mut seen = Vec::new();
            for word in name.normalised.words() {
                let word_id = self.words.id_or_insert(word);
                if !seen.contains(&word_id) {
                    seen.push(word_id);
                    self.words.postings[word_id as usize].push(id);
                }
            }
        }
    }

    /// Removes what [`Index::insert`] added for `record` with the same `subject`.
    pub fn remove(&mut self, record: u64, subject: &Prepared) {
        self.records = self.records.saturating_sub(1);
        for identifier in &subject.identifiers {
            if let Some(held) = self.identifiers.get_mut(&identifier.hash)
                && held.remove(record)
            {
                self.identifiers.remove(&identifier.hash);
            }
        }
        for name in &subject.names {
            let word_ids: Vec<u32> = name
                .normalised
                .words()
                .filter_map(|word| self.words.ids.get(&word_hash(word)).copied())
                .collect();
            let Some(first) = word_ids.first() else {
                continue;
            };
            let found = self.words.postings[*first as usize]
                .iter()
                .copied()
                .find(|id| {
                    let entry = &self.names[*id as usize];
                    entry.live
                        && entry.record == record
                        && entry.class == name.class
                        && self.name_text(entry) == name.normalised.text
                });
            let Some(id) = found else {
                continue;
            };
            for word_id in word_ids {
                let postings = &mut self.words.postings[word_id as usize];
                if let Some(at) = postings.iter().position(|held| *held == id) {
                    postings.swap_remove(at);
                }
            }
            let entry = &mut self.names[id as usize];
            entry.live = false;
            self.garbage += entry.len as usize;
            self.free_names.push(id);
        }
        if self.garbage > 4096 && self.garbage * 2 > self.text.len() {
            self.compact();
        }
    }

    fn compact(&mut self) {
        let mut text = String::with_capacity(self.text.len() - self.garbage);
        for entry in self.names.iter_mut().filter(|entry| entry.live) {
            let start = entry.start as usize;
            let live = &self.text[start..start + entry.len as usize];
            entry.start = u32::try_from(text.len()).unwrap_or(u32::MAX);
            text.push_str(live);
        }
        self.text = text;
        self.garbage = 0;
    }

    fn name_text(&self, entry: &NameEntry) -> &str {
        let start = entry.start as usize;
        &self.text[start..start + entry.len as usize]
    }

    /// The records that may match `query`: those holding one of its identifiers (the most
    /// recent [`MAX_RECORDS_PER_KEY`] per identifier) and those with a name of the same class
    /// at least `name_threshold` similar to one of its names. Sorted, without repeats.
    pub fn candidates(&self, query: &Prepared, name_threshold: f64) -> Vec<u64> {
        let mut found = Vec::new();
        for identifier in &query.identifiers {
            if let Some(held) = self.identifiers.get(&identifier.hash) {
                found.extend(held.as_slice().iter().rev().take(MAX_RECORDS_PER_KEY));
            }
        }
        let mut similar = Vec::new();
        for name in &query.names {
            let comparator = NameComparator::new(&name.normalised);
            let mut lists: Vec<&Vec<u32>> = Vec::new();
            // Whether the query has a word that is not common (or not held at all).
            let mut distinctive = false;
            for word in name.normalised.words() {
                distinctive |= self
                    .words
                    .ids
                    .get(&word_hash(word))
                    .is_none_or(|id| self.words.postings[*id as usize].len() <= COMMON_WORD);
                similar.clear();
                self.words.similar(word, &mut similar);
                lists.extend(similar.iter().map(|id| &self.words.postings[*id as usize]));
            }
            // Rare words first: they say the most and cost the least.
            lists.sort_by_key(|list| list.len());
            // The names sharing words with the query's, with how many words they share.
            let mut ranked: Vec<(u32, u16)> = SHARED.with_borrow_mut(|shared| {
                if shared.len() < self.names.len() {
                    shared.resize(self.names.len(), 0);
                }
                let mut touched = Vec::new();
                let mut read = 0;
                for list in lists {
                    if read >= MAX_POSTINGS_READ || (distinctive && list.len() > COMMON_WORD) {
                        break;
                    }
                    for id in list.iter().take(MAX_POSTINGS_READ - read) {
                        let count = &mut shared[*id as usize];
                        if *count == 0 {
                            touched.push(*id);
                        }
                        *count = count.saturating_add(1);
                    }
                    read += list.len();
                }
                touched
                    .into_iter()
                    .map(|id| (id, std::mem::take(&mut shared[id as usize])))
                    .collect()
            });
            // The most words shared first, then the most recent; only the first
            // MAX_NAME_CANDIDATES are scored, in any order.
            let order = |a: &(u32, u16), b: &(u32, u16)| b.1.cmp(&a.1).then(b.0.cmp(&a.0));
            if ranked.len() > MAX_NAME_CANDIDATES {
                ranked.select_nth_unstable_by(MAX_NAME_CANDIDATES, order);
                ranked.truncate(MAX_NAME_CANDIDATES);
            }
            for (id, _) in ranked {
                let entry = &self.names[id as usize];
                // The length first: it is in the entry, the text is another cache miss away.
                if entry.live
                    && entry.class == name.class
                    && comparator.may_reach(usize::from(entry.len), name_threshold)
                    && comparator.reaches(self.name_text(entry), name_threshold)
                {
                    found.push(entry.record);
                }
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    }

    pub fn stats(&self) -> IndexStats {
        let map_bytes = |capacity: usize, entry: usize| capacity * (entry + 1);
        let identifier_bytes = map_bytes(
            self.identifiers.capacity(),
            std::mem::size_of::<(u64, Postings<u64>)>(),
        ) + self
            .identifiers
            .values()
            .map(Postings::heap_bytes)
            .sum::<usize>();
        let word_bytes = map_bytes(self.words.ids.capacity(), 12)
            + self.words.postings.capacity() * std::mem::size_of::<Vec<u32>>()
            + self
                .words
                .postings
                .iter()
                .map(|list| list.capacity() * 4)
                .sum::<usize>()
            + map_bytes(
                self.words.deletions.capacity(),
                std::mem::size_of::<(u64, Postings<u32>)>(),
            )
            + self
                .words
                .deletions
                .values()
                .map(Postings::heap_bytes)
                .sum::<usize>();
        let name_bytes = self.names.capacity() * std::mem::size_of::<NameEntry>()
            + self.text.capacity()
            + self.free_names.capacity() * 4;
        IndexStats {
            records: self.records,
            identifier_keys: self.identifiers.len(),
            names: self.names.len() - self.free_names.len(),
            words: self.words.postings.len(),
            bytes: identifier_bytes + word_bytes + name_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IdKind, Subject};

    fn subject(identifiers: &[(IdKind, &str)], names: &[(NameClass, &str)]) -> Prepared {
        let mut subject = Subject::default();
        for (kind, value) in identifiers {
            subject.identifier(*kind, value, "field");
        }
        for (class, value) in names {
            subject.name(*class, value, "name");
        }
        subject.prepare()
    }

    #[test]
    fn identifiers_and_names_find_their_records_until_removed() {
        let mut index = Index::new();
        let vessel = subject(
            &[(IdKind::Imo, "9234563")],
            &[(NameClass::Vessel, "MV EXAMPLE STAR")],
        );
        let broker = subject(
            &[(IdKind::Lei, "5493001KJTIIGC8Y1R12")],
            &[(NameClass::Party, "Example Trading FZE")],
        );
        index.insert(1, &vessel);
        index.insert(2, &broker);
        let check = |index: &Index, query: &Prepared, expected: &[u64]| {
            assert_eq!(index.candidates(query, 0.9), expected, "{query:?}");
        };
        check(&index, &subject(&[(IdKind::Imo, "IMO 9234563")], &[]), &[1]);
        check(&index, &subject(&[(IdKind::Mmsi, "923456300")], &[]), &[]);
        check(
            &index,
            &subject(&[], &[(NameClass::Party, "EXAMPLE TRADING F.Z.E.")]),
            &[2],
        );
        // One typo in each word.
        check(
            &index,
            &subject(&[], &[(NameClass::Party, "Exmple Tradinng")]),
            &[2],
        );
        // A vessel name does not find a party.
        check(
            &index,
            &subject(&[], &[(NameClass::Vessel, "Example Trading")]),
            &[],
        );
        check(
            &index,
            &subject(&[], &[(NameClass::Vessel, "M/V Example Star")]),
            &[1],
        );
        check(
            &index,
            &subject(
                &[
                    (IdKind::Imo, "9234563"),
                    (IdKind::Lei, "5493001kjtiigc8y1r12"),
                ],
                &[],
            ),
            &[1, 2],
        );
        index.remove(2, &broker);
        check(
            &index,
            &subject(&[], &[(NameClass::Party, "Example Trading")]),
            &[],
        );
        check(
            &index,
            &subject(&[(IdKind::Lei, "5493001KJTIIGC8Y1R12")], &[]),
            &[],
        );
        check(&index, &subject(&[(IdKind::Imo, "9234563")], &[]), &[1]);
        assert_eq!(index.stats().records, 1);
        assert_eq!(index.stats().names, 1);
    }

    #[test]
    fn common_keys_return_the_most_recent_records() {
        let mut index = Index::new();
        let bic = subject(&[(IdKind::Bic, "COBADEFF")], &[]);
        for record in 1..=200 {
            index.insert(record, &bic);
        }
        let found = index.candidates(&bic, 0.9);
        assert_eq!(found.len(), MAX_RECORDS_PER_KEY);
        assert_eq!(found.first(), Some(&151));
        assert_eq!(found.last(), Some(&200));
    }

    #[test]
    fn an_identifier_named_twice_by_a_record_lists_it_once() {
        let mut index = Index::new();
        let twice = subject(
            &[(IdKind::Imo, "9234563"), (IdKind::Imo, "IMO 9234563")],
            &[],
        );
        let last = 2 * MAX_RECORDS_PER_KEY as u64;
        for record in 1..=last {
            index.insert(record, &twice);
        }
        // Listed twice, a record would take two of the most recent places.
        let recent: Vec<u64> = (last - MAX_RECORDS_PER_KEY as u64 + 1..=last).collect();
        assert_eq!(index.candidates(&twice, 0.9), recent);
        // Removing one leaves the others, each once.
        index.remove(last, &twice);
        let recent: Vec<u64> = (last - MAX_RECORDS_PER_KEY as u64..last).collect();
        assert_eq!(index.candidates(&twice, 0.9), recent);
    }

    #[test]
    fn common_words_are_read_only_when_nothing_rarer_matched() {
        let mut index = Index::new();
        for record in 0..=COMMON_WORD as u64 {
            let name = format!("Trading {}", "x".repeat(record as usize % 7 + 1));
            index.insert(record, &subject(&[], &[(NameClass::Party, &name)]));
        }
        let rare = COMMON_WORD as u64 + 1;
        index.insert(rare, &subject(&[], &[(NameClass::Party, "Kabolu Trading")]));
        // A distinctive word: the names of "trading" are not read, found or not.
        assert_eq!(
            index.candidates(
                &subject(&[], &[(NameClass::Party, "Kaboluu Trading Ltd")]),
                0.9
            ),
            [rare]
        );
        assert!(
            index
                .candidates(
                    &subject(&[], &[(NameClass::Party, "Zemorata Trading Ltd")]),
                    0.5
                )
                .is_empty()
        );
        // Only common words in the query: their names are read (and scored).
        assert_eq!(
            index.candidates(&subject(&[], &[(NameClass::Party, "Trading x")]), 0.9),
            (0..=COMMON_WORD as u64)
                .filter(|record| record % 7 == 0)
                .rev()
                .take(MAX_NAME_CANDIDATES)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn removed_names_are_compacted_away() {
        let mut index = Index::new();
        let names: Vec<Prepared> = (0..2_000)
            .map(|number| {
                subject(
                    &[],
                    &[(NameClass::Party, &format!("Company {number} Holding"))],
                )
            })
            .collect();
        for (record, name) in names.iter().enumerate() {
            index.insert(record as u64, name);
        }
        let full = index.text.len();
        for (record, name) in names.iter().enumerate().take(1_500) {
            index.remove(record as u64, name);
        }
        assert!(
            index.text.len() < full / 2,
            "{} of {full}",
            index.text.len()
        );
        assert_eq!(
            index.candidates(
                &subject(&[], &[(NameClass::Party, "Company 1999 Holding")]),
                0.99
            ),
            [1999]
        );
        assert!(
            index
                .candidates(
                    &subject(&[], &[(NameClass::Party, "Company 10 Holding")]),
                    0.99
                )
                .is_empty()
        );
    }
}
