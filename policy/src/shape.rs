//! The shape of a decision input: which live comparisons of the bytecode VM are worth their
//! cost.
//!
//! The interpreter takes about seven times the VM's time per decision. Comparing every
//! decision-cache miss made the VM useless wherever misses are the rule (a feed of new
//! indicators, screening against a million of them), yet sampling one miss in
//! [`crate::LIVE_COMPARISON_EVERY`] would let a VM that goes wrong on an input rarely seen
//! decide it unchecked. The VM's known failures are miscompiled constructs: they follow the
//! path a policy takes, and that path follows the recipient, the channel, the indicator's
//! label and which fields the indicator has, far more than the text in them. So the first
//! miss of every shape is compared, and the sample covers the rest.
//!
//! A shape is a 64-bit hash, keyed per process so that no one can craft an input whose shape
//! collides with one not yet seen, of:
//! - `input.recipient` and `input.context` whole (the recipient's facts from data included),
//!   but for `context.now`;
//! - the indicator's label, by value: the fields in [`LABEL_FIELDS`] (a list as the set of its
//!   values, so its order makes no new shape);
//! - the rest of the indicator by structure: keys and value types, never the text or numbers
//!   (`tags`, `confidence`, the times and everything inside the kind's object included: a
//!   policy that branches on those values is compared on the sample alone).

use std::hash::{BuildHasher, Hash, Hasher};

use foldhash::quality::{FoldHasher, RandomState};

use serde_json::Value;

/// Indicator fields whose values choose the policy's path (its TLP and protection, who
/// published it and where from, to whom it may go, how severe): hashed by value.
const LABEL_FIELDS: [&str; 6] = [
    "tlp",
    "protection",
    "severity",
    "originator",
    "publisher",
    "releasableTo",
];

/// The shape of a decision input (see the module documentation), hashed with `keys`.
pub(crate) fn shape_of(input: &Value, keys: &RandomState) -> u64 {
    let mut state = keys.build_hasher();
    for part in ["recipient", "context"] {
        part.hash(&mut state);
        match input.get(part) {
            Some(Value::Object(fields)) => {
                for (key, value) in fields {
                    if part == "context" && key == "now" {
                        continue;
                    }
                    key.hash(&mut state);
                    by_value(value, keys, &mut state);
                }
            }
            other => by_value(other.unwrap_or(&Value::Null), keys, &mut state),
        }
    }
    "indicator".hash(&mut state);
    match input.get("indicator") {
        Some(Value::Object(fields)) => {
            for (key, value) in fields {
                key.hash(&mut state);
                if LABEL_FIELDS.contains(&key.as_str()) {
                    by_value(value, keys, &mut state);
                } else {
                    by_structure(value, keys, &mut state);
                }
            }
        }
        other => by_structure(other.unwrap_or(&Value::Null), keys, &mut state),
    }
    // Keys not among the three are rare and few: their structure is enough.
    if let Value::Object(fields) = input {
        for (key, value) in fields {
            if !matches!(key.as_str(), "recipient" | "context" | "indicator") {
                key.hash(&mut state);
                by_structure(value, keys, &mut state);
            }
        }
    }
    state.finish()
}

/// How much of a JSON value makes a shape.
#[derive(Clone, Copy)]
enum Part {
    /// The value itself (serde_json's maps iterate in key order, so this is canonical).
    Value,
    /// Keys and types, not the text or numbers.
    Structure,
}

fn by_value(value: &Value, keys: &RandomState, state: &mut FoldHasher<'static>) {
    hash_json(value, Part::Value, keys, state);
}

fn by_structure(value: &Value, keys: &RandomState, state: &mut FoldHasher<'static>) {
    hash_json(value, Part::Structure, keys, state);
}

/// Hashes `part` of `value`. An array is the set of its items, so a list of ten containers
/// and one of two have the same structure, and a list in another order the same value.
fn hash_json(value: &Value, part: Part, keys: &RandomState, state: &mut FoldHasher<'static>) {
    let by_value = matches!(part, Part::Value);
    match value {
        Value::Null => 0u8.hash(state),
        Value::Bool(flag) => (1u8, by_value && *flag).hash(state),
        Value::Number(number) => {
            2u8.hash(state);
            if by_value {
                number.to_string().hash(state);
            }
        }
        Value::String(text) => {
            3u8.hash(state);
            if by_value {
                text.hash(state);
            }
        }
        Value::Array(items) => {
            let mut hashes: Vec<u64> = items
                .iter()
                .map(|item| {
                    let mut inner = keys.build_hasher();
                    hash_json(item, part, keys, &mut inner);
                    inner.finish()
                })
                .collect();
            hashes.sort_unstable();
            hashes.dedup();
            (4u8, hashes).hash(state);
        }
        Value::Object(fields) => {
            (5u8, fields.len()).hash(state);
            for (key, value) in fields {
                key.hash(state);
                hash_json(value, part, keys, state);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use foldhash::quality::RandomState;

    use super::shape_of as keyed_shape_of;

    thread_local! {
        static KEYS: RandomState = RandomState::default();
    }

    fn shape_of(input: &serde_json::Value) -> u64 {
        KEYS.with(|keys| keyed_shape_of(input, keys))
    }

    fn input(indicator: serde_json::Value, recipient: &str, now: &str) -> serde_json::Value {
        json!({
            "indicator": indicator,
            "recipient": {"id": recipient, "kind": "member", "member": recipient, "trust": 2},
            "context": {"gateway": "GH", "channel": "subscribe", "now": now},
        })
    }

    #[test]
    fn text_time_and_list_order_do_not_change_a_shape() {
        let a = input(
            json!({"id": "a", "tlp": "TLP_GREEN", "narrative": "one",
                   "vessel": {"imo": "9234563", "name": "SEA STAR"},
                   "consignment": {"containers": ["MSCU1234566"]},
                   "releasableTo": ["NG", "SN"]}),
            "NG",
            "2026-12-01T00:00:00Z",
        );
        let b = input(
            json!({"id": "b", "tlp": "TLP_GREEN", "narrative": "another",
                   "vessel": {"imo": "9074729", "name": "OCEAN"},
                   "consignment": {"containers": ["TGHU7654320", "MSCU1234566"]},
                   "releasableTo": ["SN", "NG", "SN"]}),
            "NG",
            "2026-12-07T00:00:00Z",
        );
        assert_eq!(shape_of(&a), shape_of(&b));
    }

    #[test]
    fn recipient_label_channel_and_fields_present_change_a_shape() {
        let base = json!({"id": "a", "tlp": "TLP_GREEN", "vessel": {"imo": "9234563"}});
        let shape = shape_of(&input(base.clone(), "NG", "t"));
        let others = [
            input(base.clone(), "SN", "t"),
            input(
                json!({"id": "a", "tlp": "TLP_AMBER", "vessel": {"imo": "9234563"}}),
                "NG",
                "t",
            ),
            input(
                json!({"id": "a", "tlp": "TLP_GREEN", "vessel": {"imo": "9234563", "mmsi": "1"}}),
                "NG",
                "t",
            ),
            input(
                json!({"id": "a", "tlp": "TLP_GREEN", "vessel": {"imo": 9234563}}),
                "NG",
                "t",
            ),
            input(
                json!({"id": "a", "tlp": "TLP_GREEN", "vessel": {"imo": "9234563"},
                       "source": {"description": "x"}}),
                "NG",
                "t",
            ),
            input(
                json!({"id": "a", "tlp": "TLP_GREEN", "vessel": {"imo": "9234563"},
                       "releasableTo": ["NG"]}),
                "NG",
                "t",
            ),
            {
                let mut circle = input(base, "NG", "t");
                circle["context"]["channel"] = json!("circle");
                circle
            },
        ];
        for other in &others {
            assert_ne!(shape_of(other), shape, "{other}");
        }
    }
}
