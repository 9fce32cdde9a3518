//! Names of parties and vessels: brought to one form (transliterated to ASCII, lower case,
//! without punctuation, legal forms or vessel prefixes) and compared by similarity.
//!
//! `EXAMPLE TRADING F.Z.E.`, `Example Trading FZE` and `Example Trading` are one name; `Exmple
//! Trading` is a similar one (similarity 0.96). Similarity is rapidfuzz's Indel ratio (the
//! share of characters two strings have in common, in order: 1 for equal strings; the
//! `fuzz.ratio` of Python's RapidFuzz), taken on
//! the names as written and on their words sorted, whichever is higher, so that word order
//! does not count ("Trading Example" is "Example Trading").

use rapidfuzz::distance::indel::{BatchComparator, normalized_similarity};

/// Which names are compared with which: a company is never "similar" to a ship.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NameClass {
    /// People and organisations: parties, brokers, end users, account holders, payers.
    Party,
    /// Ships.
    Vessel,
}

impl NameClass {
    pub fn name(self) -> &'static str {
        match self {
            NameClass::Party => "party_name",
            NameClass::Vessel => "vessel_name",
        }
    }
}

/// What of a name is read at most: longer input is cut here, so that a name of 10,000
/// characters costs what one of 512 does.
pub const MAX_NAME_INPUT: usize = 512;
/// Words of a name kept at most, and their longest length.
pub const MAX_NAME_WORDS: usize = 12;
pub const MAX_WORD_LENGTH: usize = 32;

/// Legal forms, written without dots (`S.A.R.L.` reads as `sarl`). They say what kind of
/// company it is, not which: `Example Trading FZE` and `Example Trading LLC` may be the same
/// broker under two registrations.
const LEGAL_FORMS: [&str; 58] = [
    "ab",
    "ad",
    "ag",
    "aps",
    "as",
    "bhd",
    "bv",
    "cjsc",
    "co",
    "company",
    "corp",
    "corporation",
    "cv",
    "dmcc",
    "doo",
    "eood",
    "fz",
    "fzc",
    "fzco",
    "fze",
    "fzllc",
    "gmbh",
    "inc",
    "incorporated",
    "jsc",
    "kft",
    "kg",
    "limited",
    "llc",
    "llp",
    "lp",
    "ltd",
    "nv",
    "oao",
    "ojsc",
    "ood",
    "ooo",
    "oy",
    "pjsc",
    "plc",
    "pte",
    "pty",
    "pvt",
    "sa",
    "sae",
    "sal",
    "sarl",
    "sarlu",
    "sas",
    "sasu",
    "se",
    "sl",
    "spa",
    "sprl",
    "srl",
    "suarl",
    "zao",
    "zoo",
];

/// Words that precede a ship's name: `M/V`, `MV`, `MT`, `SS`, …
const VESSEL_PREFIXES: [&str; 9] = ["mv", "mt", "ms", "ss", "mts", "mfv", "fv", "my", "rv"];

/// A name in its one form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalisedName {
    /// The words, in order, separated by one space.
    pub text: String,
    /// The words sorted, separated by one space.
    pub sorted: String,
}

impl NormalisedName {
    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.text.split(' ')
    }
}

/// `raw` in its one form, or `None` when no word is left.
pub fn normalise_name(class: NameClass, raw: &str) -> Option<NormalisedName> {
    let mut end = raw.len().min(MAX_NAME_INPUT);
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    let ascii = deunicode::deunicode(&raw[..end]).to_ascii_lowercase();
    // Dots and apostrophes join what they separate (S.A.R.L., O'Brien); every other
    // non-alphanumeric character separates words.
    let mut cleaned = String::with_capacity(ascii.len());
    for character in ascii.chars() {
        match character {
            '.' | '\'' => {}
            character if character.is_ascii_alphanumeric() => cleaned.push(character),
            _ => cleaned.push(' '),
        }
    }
    let mut words: Vec<&str> = cleaned.split_whitespace().collect();
    if class == NameClass::Vessel {
        // `M/V` reads as `m v`.
        if words.len() > 2 && words[0] == "m" && matches!(words[1], "v" | "t" | "s") {
            words.drain(..2);
        } else if words.len() > 1 && VESSEL_PREFIXES.contains(&words[0]) {
            words.remove(0);
        }
    }
    let kept: Vec<&str> = words
        .iter()
        .copied()
        .filter(|word| !LEGAL_FORMS.contains(word))
        .collect();
    // A name that is nothing but legal forms keeps them.
    let mut words: Vec<String> = if kept.is_empty() { words } else { kept }
        .into_iter()
        .take(MAX_NAME_WORDS)
        .map(|word| word.chars().take(MAX_WORD_LENGTH).collect())
        .collect();
    if words.is_empty() {
        return None;
    }
    let text = words.join(" ");
    words.sort_unstable();
    Some(NormalisedName {
        text,
        sorted: words.join(" "),
    })
}

/// The similarity of two normalised names, from 0 (nothing in common) to 1 (the same).
pub fn similarity(a: &NormalisedName, b: &NormalisedName) -> f64 {
    if a.text == b.text {
        return 1.0;
    }
    normalized_similarity(a.text.chars(), b.text.chars())
        .max(normalized_similarity(a.sorted.chars(), b.sorted.chars()))
}

/// Compares one name with many, preparing it once.
pub struct NameComparator {
    name: NormalisedName,
    // rapidfuzz's Indel comparator, prepared once (its `fuzz::RatioBatchComparator` does not
    // give `fuzz::ratio`'s values in rapidfuzz 0.5; this one does, and the test below holds it).
    text: BatchComparator<char>,
    sorted: BatchComparator<char>,
    /// Characters in the name.
    chars: usize,
}

fn char_count(text: &str) -> usize {
    if text.is_ascii() {
        text.len()
    } else {
        text.chars().count()
    }
}

impl std::fmt::Debug for NameComparator {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("NameComparator")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl NameComparator {
    pub fn new(name: &NormalisedName) -> NameComparator {
        NameComparator {
            name: name.clone(),
            text: BatchComparator::new(name.text.chars()),
            sorted: BatchComparator::new(name.sorted.chars()),
            chars: char_count(&name.text),
        }
    }

    /// [`similarity`] of the prepared name and `other`.
    pub fn similarity(&self, other: &NormalisedName) -> f64 {
        if self.name.text == other.text {
            return 1.0;
        }
        self.text
            .normalized_similarity(other.text.chars())
            .max(self.sorted.normalized_similarity(other.sorted.chars()))
    }

    /// Whether [`NameComparator::similarity_to_text`] of `text` is at least `threshold`, worked
    /// out with as little as it takes: a similarity is at most `2·min(a, b) / (a + b)` for
    /// names of `a` and `b` characters, so a name much longer or shorter than this one is not
    /// compared at all, and the sorted words are compared only when the text fell short.
    pub fn reaches(&self, text: &str, threshold: f64) -> bool {
        if self.name.text == text {
            return true;
        }
        if !self.may_reach(char_count(text), threshold) {
            return false;
        }
        if self.text.normalized_similarity(text.chars()) >= threshold {
            return true;
        }
        self.sorted
            .normalized_similarity(sorted_words(text).chars())
            >= threshold
    }

    /// Whether a name of `chars` characters may be at least `threshold` similar to this one:
    /// a similarity is at most `2·min(a, b) / (a + b)`. An equal name always may. A normalised
    /// name is ASCII, so its length in bytes is its length in characters: the index asks
    /// this before it reads the name's text.
    pub fn may_reach(&self, chars: usize, threshold: f64) -> bool {
        let own = self.chars;
        // The margin keeps rounding (1 - d/n against 2m/n) from refusing a name on the edge.
        own + chars != 0 && 2.0 * own.min(chars) as f64 / ((own + chars) as f64) >= threshold - 1e-9
    }

    /// [`similarity`] of the prepared name and a normalised name's text, whose sorted words
    /// are worked out here.
    pub fn similarity_to_text(&self, text: &str) -> f64 {
        if self.name.text == text {
            return 1.0;
        }
        let by_text = self.text.normalized_similarity(text.chars());
        by_text.max(
            self.sorted
                .normalized_similarity(sorted_words(text).chars()),
        )
    }
}

/// A normalised name's text with its words in order, as [`NormalisedName::sorted`] holds it.
fn sorted_words(text: &str) -> String {
    let mut words: Vec<&str> = text.split(' ').collect();
    words.sort_unstable();
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(class: NameClass, raw: &str, expected: Option<&str>) {
        let normalised = normalise_name(class, raw);
        assert_eq!(
            normalised.as_ref().map(|name| name.text.as_str()),
            expected,
            "{raw:?}"
        );
    }

    #[test]
    fn names_in_one_form() {
        use NameClass::*;
        check(Party, "EXAMPLE TRADING F.Z.E.", Some("example trading"));
        check(Party, "Example Trading FZE", Some("example trading"));
        check(Party, "Example Trading, Ltd.", Some("example trading"));
        check(
            Party,
            "Example Security Services S.A.R.L.",
            Some("example security services"),
        );
        check(
            Party,
            "Société Générale d'Études",
            Some("societe generale detudes"),
        );
        check(Party, "ООО Пример Трейдинг", Some("primer treiding"));
        check(Party, "  ", None);
        check(Party, "LLC", Some("llc"));
        check(Party, "O'Brien & Sons (Pty) Ltd", Some("obrien sons"));
        check(Vessel, "M/V Example Star", Some("example star"));
        check(Vessel, "MV EXAMPLE STAR", Some("example star"));
        check(Vessel, "MV", Some("mv"));
        check(Party, "MV Example Star", Some("mv example star"));
    }

    #[test]
    fn long_names_are_cut() {
        let long = "word ".repeat(2_000);
        let name = normalise_name(NameClass::Party, &long).unwrap();
        assert_eq!(name.words().count(), MAX_NAME_WORDS);
        let one_word = "x".repeat(10_000);
        let name = normalise_name(NameClass::Party, &one_word).unwrap();
        assert_eq!(name.text.len(), MAX_WORD_LENGTH);
        // Cut inside a multi-byte character: still a name.
        let accented = "é".repeat(400);
        assert!(normalise_name(NameClass::Party, &accented).is_some());
    }

    fn name(raw: &str) -> NormalisedName {
        normalise_name(NameClass::Party, raw).unwrap()
    }

    #[test]
    fn similarity_of_names() {
        let base = name("Example Trading FZE");
        assert_eq!(similarity(&base, &name("EXAMPLE TRADING F.Z.E.")), 1.0);
        assert_eq!(similarity(&base, &name("Trading Example")), 1.0);
        let typo = similarity(&base, &name("Exmple Trading"));
        assert!(typo > 0.9 && typo < 1.0, "{typo}");
        let other = similarity(&base, &name("Accra Hospital Equipment"));
        assert!(other < 0.5, "{other}");
        let comparator = NameComparator::new(&base);
        for other in [
            "Exmple Trading",
            "Trading Example",
            "Accra Hospital Equipment",
        ] {
            let other = name(other);
            assert_eq!(comparator.similarity(&other), similarity(&base, &other));
            assert_eq!(
                comparator.similarity_to_text(&other.text),
                similarity(&base, &other)
            );
        }
    }

    #[test]
    fn reaching_a_threshold_agrees_with_the_similarity() {
        let names = [
            "Example Trading",
            "Exmple Trading",
            "Trading Example",
            "Example",
            "Examples Trading International Holdings",
            "Ex",
            "Zürich Maschinen",
            "Zurich Maschinen",
            "Accra Hospital Equipment",
            "Exampel Tradign",
        ];
        let mut reached = 0;
        for query in names {
            let query = name(query);
            let comparator = NameComparator::new(&query);
            for other in names {
                let other = name(other);
                let similarity = comparator.similarity_to_text(&other.text);
                for threshold in [0.0, 0.5, 0.8, 0.85, 0.9, 1.0, similarity] {
                    let reaches = comparator.reaches(&other.text, threshold);
                    assert_eq!(
                        reaches,
                        similarity >= threshold,
                        "{query:?} vs {other:?} at {threshold}: {similarity}"
                    );
                    reached += usize::from(reaches);
                }
            }
        }
        // Both answers occur: the check is not vacuous.
        assert!(reached > 0 && reached < names.len() * names.len() * 7);
    }
}
