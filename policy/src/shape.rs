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
//! A shape is a 64-bit hash of:
//! - `input.recipient` and `input.context` whole, but for `context.now`;
//! - the indicator's label, by value: the fields in [`LABEL_FIELDS`];
//! - the rest of the indicator by structure: keys and value types, never the text or numbers.

use std::hash::{BuildHasher, Hash, Hasher};

use serde_json::Value;

/// Indicator fields whose values choose the policy's path (TLP, handling, who published it,
/// to whom it may go, its kind's status): hashed by value.
const LABEL_FIELDS: [&str; 7] = [
    "tlp",
    "protection",
    "severity",
    "originator",
    "publisher",
    "releasableTo",
    "handling",
];

/// The hasher of shapes: fixed, so shapes are stable within and across processes (nothing
/// depends on that, but a shape seen in a log means the same thing twice).
fn hasher() -> impl Hasher {
    foldhash::quality::FixedState::with_seed(0x636f_7264_6f6e).build_hasher()
}

/// The shape of a decision input (see the module documentation).
pub(crate) fn shape_of(input: &Value) -> u64 {
    let mut state = hasher();
    for part in ["recipient", "context"] {
        part.hash(&mut state);
        match input.get(part) {
            Some(Value::Object(fields)) => {
                for (key, value) in fields {
                    if part == "context" && key == "now" {
                        continue;
                    }
                    key.hash(&mut state);
                    by_value(value, &mut state);
                }
            }
            other => by_value(other.unwrap_or(&Value::Null), &mut state),
        }
    }
    "indicator".hash(&mut state);
    match input.get("indicator") {
        Some(Value::Object(fields)) => {
            for (key, value) in fields {
                key.hash(&mut state);
                if LABEL_FIELDS.contains(&key.as_str()) {
                    by_value(value, &mut state);
                } else {
                    by_structure(value, &mut state);
                }
            }
        }
        other => by_structure(other.unwrap_or(&Value::Null), &mut state),
    }
    // Keys not among the three are rare and few: their structure is enough.
    if let Value::Object(fields) = input {
        for (key, value) in fields {
            if !matches!(key.as_str(), "recipient" | "context" | "indicator") {
                key.hash(&mut state);
                by_structure(value, &mut state);
            }
        }
    }
    state.finish()
}

/// The value itself (serde_json's maps iterate in key order, so this is canonical).
fn by_value(value: &Value, state: &mut impl Hasher) {
    match value {
        Value::Null => 0u8.hash(state),
        Value::Bool(flag) => (1u8, flag).hash(state),
        Value::Number(number) => (2u8, number.to_string()).hash(state),
        Value::String(text) => (3u8, text).hash(state),
        Value::Array(items) => {
            (4u8, items.len()).hash(state);
            for item in items {
                by_value(item, state);
            }
        }
        Value::Object(fields) => {
            (5u8, fields.len()).hash(state);
            for (key, value) in fields {
                key.hash(state);
                by_value(value, state);
            }
        }
    }
}

/// Keys and types, not values. An array is the set of its items' structures, so a list of
/// ten containers and one of two have the same shape.
fn by_structure(value: &Value, state: &mut impl Hasher) {
    match value {
        Value::Null => 0u8.hash(state),
        Value::Bool(_) => 1u8.hash(state),
        Value::Number(_) => 2u8.hash(state),
        Value::String(_) => 3u8.hash(state),
        Value::Array(items) => {
            4u8.hash(state);
            let mut shapes: Vec<u64> = items
                .iter()
                .map(|item| {
                    let mut inner = hasher();
                    by_structure(item, &mut inner);
                    inner.finish()
                })
                .collect();
            shapes.sort_unstable();
            shapes.dedup();
            shapes.hash(state);
        }
        Value::Object(fields) => {
            (5u8, fields.len()).hash(state);
            for (key, value) in fields {
                key.hash(state);
                by_structure(value, state);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::shape_of;

    fn input(indicator: serde_json::Value, recipient: &str, now: &str) -> serde_json::Value {
        json!({
            "indicator": indicator,
            "recipient": {"id": recipient, "kind": "member", "member": recipient, "trust": 2},
            "context": {"gateway": "GH", "channel": "subscribe", "now": now},
        })
    }

    #[test]
    fn text_and_time_do_not_change_a_shape() {
        let a = input(
            json!({"id": "a", "tlp": "TLP_GREEN", "narrative": "one",
                   "vessel": {"imo": "9234563", "name": "SEA STAR"},
                   "consignment": {"containers": ["MSCU1234566"]}}),
            "NG",
            "2026-12-01T00:00:00Z",
        );
        let b = input(
            json!({"id": "b", "tlp": "TLP_GREEN", "narrative": "another",
                   "vessel": {"imo": "9074729", "name": "OCEAN"},
                   "consignment": {"containers": ["TGHU7654320", "MSCU1234566"]}}),
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
