//! Properties of matching over generated identifiers and names.

use cordon_matching::{IdKind, Index, NameClass, Subject, compare, normalise, normalise_name};
use proptest::prelude::*;

fn kind() -> impl Strategy<Value = IdKind> {
    proptest::sample::select(IdKind::ALL.to_vec())
}

/// Identifiers as people write them: letters, digits, spaces, dashes, slashes, dots, any case.
fn written() -> impl Strategy<Value = String> {
    "[A-Za-z0-9 ./-]{0,24}"
}

fn party_name() -> impl Strategy<Value = String> {
    "[A-Za-zÀ-ÿ .,&'-]{1,40}"
}

proptest! {
    #[test]
    fn normalising_twice_changes_nothing(kind in kind(), raw in written()) {
        if let Some(once) = normalise(kind, &raw) {
            let twice = normalise(kind, &once.value).expect("a normalised value normalises");
            prop_assert_eq!(twice.key, once.key);
        }
    }

    #[test]
    fn separators_and_case_do_not_change_the_key(kind in kind(), raw in "[A-Z0-9]{2,20}") {
        let spaced: String = raw
            .chars()
            .enumerate()
            .flat_map(|(at, character)| {
                let separator = if at % 3 == 2 { Some(' ') } else { None };
                std::iter::once(character.to_ascii_lowercase()).chain(separator)
            })
            .collect();
        if matches!(kind, IdKind::Imo | IdKind::Bic) {
            // IMO drops an "IMO" prefix and BIC an "XXX" branch: covered by the unit tests.
            return Ok(());
        }
        let plain = normalise(kind, &raw).map(|normalised| normalised.key);
        let written = normalise(kind, &spaced).map(|normalised| normalised.key);
        prop_assert_eq!(plain, written);
    }

    #[test]
    fn names_normalise_to_themselves(raw in party_name()) {
        if let Some(once) = normalise_name(NameClass::Party, &raw) {
            let twice = normalise_name(NameClass::Party, &once.text).expect("words are left");
            prop_assert_eq!(twice.text, once.text);
        }
    }

    #[test]
    fn matching_is_symmetric(
        kind in kind(),
        a in written(),
        b in written(),
        name_a in party_name(),
        name_b in party_name(),
    ) {
        let subject = |value: &str, name: &str| {
            let mut subject = Subject::default();
            subject.identifier(kind, value, "id");
            subject.name(NameClass::Party, name, "name");
            subject.prepare()
        };
        let one = compare(&subject(&a, &name_a), &subject(&b, &name_b), 0.8);
        let other = compare(&subject(&b, &name_b), &subject(&a, &name_a), 0.8);
        prop_assert_eq!(one.len(), other.len());
        for (x, y) in one.iter().zip(&other) {
            prop_assert_eq!(x.feature, y.feature);
            prop_assert_eq!(x.method, y.method);
            prop_assert!((x.similarity - y.similarity).abs() < 1e-9);
        }
    }

    #[test]
    fn the_index_finds_every_record_its_subject_matches_until_removed(
        records in proptest::collection::vec((kind(), "[A-Z0-9]{3,12}", party_name()), 1..40),
        query in 0usize..40,
    ) {
        let subjects: Vec<_> = records
            .iter()
            .map(|(kind, value, name)| {
                let mut subject = Subject::default();
                subject.identifier(*kind, value, "id");
                subject.name(NameClass::Party, name, "name");
                subject.prepare()
            })
            .collect();
        let mut index = Index::new();
        for (record, subject) in subjects.iter().enumerate() {
            index.insert(record as u64, subject);
        }
        let asked = &subjects[query % subjects.len()];
        let found = index.candidates(asked, 0.9);
        // Every record whose identifier matches, or whose name is the same in one form, is
        // found (names with more than one typo per word may be similar enough to match and
        // still not be found: the index promises one typo per word).
        for (record, subject) in subjects.iter().enumerate() {
            let certain = compare(asked, subject, 0.9)
                .iter()
                .any(|found| found.feature != "party_name" || found.similarity == 1.0);
            if certain {
                prop_assert!(found.contains(&(record as u64)), "record {} matches but was not found", record);
            }
        }
        // And what is found is only what matches.
        for record in &found {
            prop_assert!(!compare(asked, &subjects[*record as usize], 0.9).is_empty());
        }
        for (record, subject) in subjects.iter().enumerate() {
            index.remove(record as u64, subject);
        }
        prop_assert!(index.candidates(asked, 0.9).is_empty());
        prop_assert_eq!(index.stats().identifier_keys, 0);
        prop_assert_eq!(index.stats().names, 0);
    }
}
