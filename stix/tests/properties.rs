//! Properties of the readers over arbitrary input: a bundle, an envelope or a MISP event of
//! any shape is read or refused with an error, never a panic; what is read accounts for every
//! object once; and an indicator read from a pattern maps back to the same pattern.

use cordon_stix::{Export, misp, read_bundle, read_envelope, to_stix};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// JSON values of any shape, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-z_:\\[\\]' =0-9-]{0,24}".prop_map(Value::String),
        prop::sample::select(vec![
            "indicator",
            "bundle",
            "2.1",
            "2.0",
            "stix",
            "salw-vessel",
            "identity",
            "relationship",
            "related-to",
            "tlp:red",
            "iban",
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "type",
                        "id",
                        "spec_version",
                        "objects",
                        "pattern",
                        "pattern_type",
                        "valid_from",
                        "labels",
                        "confidence",
                        "object_marking_refs",
                        "extensions",
                        "Event",
                        "Attribute",
                        "Object",
                        "Tag",
                        "name",
                        "value",
                        "object_relation",
                        "source_ref",
                        "target_ref",
                        "relationship_type",
                        "revoked",
                        "granular_markings",
                        "created",
                    ]),
                    inner,
                ),
                0..8,
            )
            .prop_map(|pairs| {
                Value::Object(
                    pairs
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

/// STIX indicators whose patterns compare SALW properties, well formed or nearly so.
fn salw_indicator() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(vec![
            "salw-vessel",
            "salw-party",
            "salw-euc",
            "salw-consignment",
        ]),
        prop::sample::select(vec![
            "imo", "name", "number", "route", "role", "flag", "country",
        ]),
        prop::option::of(0usize..3),
        "[A-Za-z0-9 '\\\\]{0,12}",
        prop::sample::select(vec![" AND ", " OR ", " and "]),
    )
        .prop_map(|(object_type, property, index, value, join)| {
            let escaped = value.replace('\\', "\\\\").replace('\'', "\\'");
            let path = match index {
                Some(i) => format!("{object_type}:{property}[{i}]"),
                None => format!("{object_type}:{property}"),
            };
            json!({
                "type": "indicator",
                "spec_version": "2.1",
                "id": "indicator--1d6b8c7a-4a3e-4a7b-9c1e-2f3a4b5c6d7e",
                "created": "2026-10-01T00:00:00.000Z",
                "modified": "2026-10-01T00:00:00.000Z",
                "valid_from": "2026-10-01T00:00:00Z",
                "pattern": format!("[{path} = '{escaped}'{join}{object_type}:name = 'x']"),
                "pattern_type": "stix",
            })
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn any_document_is_read_or_refused_never_a_panic(document in any_json()) {
        if let Ok(import) = read_bundle(&document) {
            let objects = document["objects"].as_array().map_or(0, Vec::len);
            prop_assert!(import.indicators.len() + import.unmapped.len() <= objects);
        }
        if let Ok(import) = read_envelope(&document) {
            let objects = document["objects"].as_array().map_or(0, Vec::len);
            prop_assert!(import.indicators.len() + import.unmapped.len() <= objects);
        }
        let _ = misp::read_event(&document);
        let _ = cordon_stix::from_stix(&document);
        let _ = to_stix(&document, Export::default());
    }

    #[test]
    fn an_indicator_read_from_its_pattern_writes_the_same_pattern(indicator in salw_indicator()) {
        let envelope = json!({"objects": [indicator.clone()]});
        let import = read_envelope(&envelope).expect("a well-formed envelope");
        prop_assert_eq!(import.indicators.len() + import.unmapped.len(), 1);
        for imported in import.indicators {
            // Give it what a gateway gives at publication, then map it back to STIX.
            let mut stored = imported.indicator.clone();
            stored["id"] = json!("0193a0c4-5e1f-7a2b-8c3d-4e5f60718293");
            stored["created"] = json!("2026-10-01T00:00:00Z");
            let objects = to_stix(&stored, Export::default()).expect("maps back");
            let written = objects.iter().find(|o| o["type"] == "indicator").expect("an indicator");
            let again = cordon_stix::from_stix(written).expect("reads again");
            prop_assert_eq!(&again.indicator["vessel"], &imported.indicator["vessel"]);
            prop_assert_eq!(&again.indicator["entity"], &imported.indicator["entity"]);
            prop_assert_eq!(&again.indicator["endUserCertificate"], &imported.indicator["endUserCertificate"]);
            prop_assert_eq!(&again.indicator["consignment"], &imported.indicator["consignment"]);
        }
    }
}
