//! Version 2 signatures as a whole: any subset of disclosures gives back the bytes the
//! originator signed, any change to a value, salt, path or commitment does not, and the
//! form survives a change of schema (a field added to the proto) in both directions.

use cordon_indicator::disclosure::{
    SIGNATURE_VERSION, disclosed_signing_input, disclosed_signing_input_json, field_paths, seal,
    seal_json, withhold_absent,
};
use cordon_proto::v1::{Indicator, Signature, Source, Tlp, Vessel, indicator};
use proptest::prelude::*;
use prost::Message;
use serde_json::Value;

#[allow(clippy::all, clippy::pedantic, missing_docs, dead_code)]
mod next {
    include!(concat!(env!("OUT_DIR"), "/next/cordon.next.rs"));
    include!(concat!(env!("OUT_DIR"), "/next/cordon.next.serde.rs"));
}

/// Salts from a seeded generator: the properties need many, not secret ones.
fn salts(seed: u64) -> impl FnMut(&mut [u8]) -> Result<(), String> {
    let mut state = seed;
    move |salt: &mut [u8]| {
        for byte in salt.iter_mut() {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            *byte = (state >> 56) as u8;
        }
        Ok(())
    }
}

fn signed(mut indicator: Indicator, seed: u64) -> (Indicator, Vec<u8>) {
    let (fields, bytes) = seal(&indicator, salts(seed)).expect("seals");
    indicator.signature = Some(Signature {
        key_id: "GH:0123456789abcdef".into(),
        signature: vec![0; 64],
        version: SIGNATURE_VERSION,
        fields,
    });
    (indicator, bytes)
}

/// `indicator` without the fields at `paths`, its signature adjusted as a gateway's
/// redaction does it.
fn without(indicator: &Indicator, paths: &[String]) -> Indicator {
    let mut json = serde_json::to_value(indicator).expect("encodes");
    for path in paths {
        let segments: Vec<&str> = path.split('.').collect();
        let (last, parents) = segments.split_last().expect("a path");
        let mut current = &mut json;
        for segment in parents {
            current = current.get_mut(*segment).expect("the path exists");
        }
        current.as_object_mut().expect("an object").remove(*last);
    }
    let present = field_paths(&json);
    let mut redacted: Indicator = serde_json::from_value(json).expect("decodes");
    withhold_absent(redacted.signature.as_mut().expect("signed"), &present);
    redacted
}

fn committed_paths(indicator: &Indicator) -> Vec<String> {
    indicator
        .signature
        .as_ref()
        .map(|signature| {
            signature
                .fields
                .iter()
                .map(|field| field.path.clone())
                .collect()
        })
        .unwrap_or_default()
}

prop_compose! {
    fn arbitrary_indicator()(
        narrative in "\\PC{0,40}",
        tags in proptest::collection::vec("[a-z]{1,8}", 0..4),
        description in "\\PC{0,30}",
        reliability in "[ABCX]?",
        credibility in 0u32..5,
        name in "[A-Z ]{0,20}",
        confidence in 0u32..101,
        amber in any::<bool>(),
    ) -> Indicator {
        Indicator {
            id: "0196f1a2-0000-7000-8000-000000000001".into(),
            originator: "GH".into(),
            created: Some(pbjson_types::Timestamp { seconds: 1_790_000_000, nanos: 5 }),
            tlp: if amber { Tlp::Amber } else { Tlp::Green } as i32,
            confidence,
            narrative,
            tags,
            source: Some(Source {
                description,
                reliability,
                credibility,
                ..Default::default()
            }),
            kind: Some(indicator::Kind::Vessel(Vessel {
                imo: "9234563".into(),
                name,
                ..Default::default()
            })),
            ..Default::default()
        }
    }
}

proptest! {
    #[test]
    fn any_subset_of_disclosures_verifies(
        subject in arbitrary_indicator(),
        seed in any::<u64>(),
        mask in any::<u64>(),
    ) {
        let (signed, bytes) = signed(subject, seed);
        let paths = committed_paths(&signed);
        let withheld: Vec<String> = paths
            .iter()
            .enumerate()
            .filter(|(index, _)| mask & (1 << index) != 0)
            .map(|(_, path)| path.clone())
            .collect();
        let redacted = without(&signed, &withheld);
        prop_assert_eq!(disclosed_signing_input(&redacted), Ok(bytes.clone()));
        // No salt leaves with a withheld field; a further redaction also verifies.
        for field in &redacted.signature.as_ref().unwrap().fields {
            prop_assert_eq!(field.salt.is_empty(), withheld.contains(&field.path));
        }
        let all_but_fixed = without(&redacted, &field_paths(&serde_json::to_value(&redacted).unwrap()).into_iter().collect::<Vec<_>>());
        prop_assert_eq!(disclosed_signing_input(&all_but_fixed), Ok(bytes));
    }

    #[test]
    fn any_change_to_a_value_salt_path_or_commitment_fails(
        subject in arbitrary_indicator(),
        seed in any::<u64>(),
        pick in any::<prop::sample::Index>(),
        change in 0usize..5,
        withhold_first in any::<bool>(),
    ) {
        let (signed, bytes) = signed(subject, seed);
        let mut copy = if withhold_first {
            let first = committed_paths(&signed)[0].clone();
            without(&signed, &[first])
        } else {
            signed
        };
        let signature = copy.signature.as_mut().unwrap();
        let index = pick.index(signature.fields.len());
        let field = &mut signature.fields[index];
        let disclosed = !field.salt.is_empty();
        match change {
            0 if disclosed => field.salt[0] ^= 1,
            1 => field.digest[7] ^= 0x80,
            2 => field.path.push('x'),
            3 => {
                // Another field's commitment, as if moved here from elsewhere.
                let other = (index + 1) % signature.fields.len();
                if other == index {
                    signature.fields[index].digest = vec![0; 32];
                } else {
                    let digest = signature.fields[other].digest.clone();
                    signature.fields[index].digest = digest;
                }
            }
            _ if disclosed => {
                // The value itself: re-read through JSON with this one field changed.
                let path = field.path.clone();
                let mut json = serde_json::to_value(&copy).unwrap();
                let mut value = &mut json;
                for segment in path.split('.') {
                    value = value.get_mut(segment).unwrap();
                }
                *value = match value.take() {
                    Value::String(text) => Value::String(format!("{text}!")),
                    Value::Number(number) => Value::from(number.as_u64().unwrap_or(0) + 1),
                    Value::Array(mut items) => {
                        items.push(Value::String("more".into()));
                        Value::Array(items)
                    }
                    other => other,
                };
                copy = serde_json::from_value(json).unwrap();
            }
            // A withheld field's salt is already gone: change its commitment instead.
            _ => field.digest[0] ^= 1,
        }
        prop_assert_ne!(disclosed_signing_input(&copy), Ok(bytes));
    }
}

fn example() -> Indicator {
    Indicator {
        id: "0196f1a2-0000-7000-8000-000000000001".into(),
        originator: "GH".into(),
        created: Some(pbjson_types::Timestamp {
            seconds: 1_790_000_000,
            nanos: 0,
        }),
        tlp: Tlp::Green as i32,
        narrative: "seen at Tema".into(),
        source: Some(Source {
            description: "informant 7".into(),
            ..Default::default()
        }),
        kind: Some(indicator::Kind::Vessel(Vessel {
            imo: "9234563".into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// An indicator signed before a field was added to the proto verifies after it, and one
/// signed after (with the new field set) verifies at a gateway that does not know the
/// field yet, which reads it as withheld. Version 1 signatures fail the second case: that
/// is why version 2 exists.
#[test]
fn signatures_survive_a_field_added_to_the_schema() {
    // Signed under today's schema, read by a gateway that knows `observed_at`.
    let (before, bytes) = signed(example(), 7);
    let wire = before.encode_to_vec();
    let later = next::Indicator::decode(wire.as_slice()).expect("decodes under the next schema");
    assert!(later.observed_at.is_empty());
    let later_json = serde_json::to_value(&later).unwrap();
    let signature = later.signature.clone().unwrap();
    assert_eq!(
        disclosed_signing_input_json(later_json, &signature),
        Ok(bytes)
    );

    // Signed under the next schema with the new field set, read by today's gateway.
    let mut newer = next::Indicator::decode(example().encode_to_vec().as_slice()).unwrap();
    newer.observed_at = "GHTEM".into();
    let (fields, bytes) = seal_json(serde_json::to_value(&newer).unwrap(), salts(11)).unwrap();
    assert!(fields.iter().any(|field| field.path == "observedAt"));
    newer.signature = Some(Signature {
        key_id: "GH:0".into(),
        signature: vec![0; 64],
        version: SIGNATURE_VERSION,
        fields,
    });
    let today = Indicator::decode(newer.encode_to_vec().as_slice()).unwrap();
    assert_eq!(disclosed_signing_input(&today), Ok(bytes));
    // Further redaction at today's gateway still verifies, and the new field is withheld.
    let redacted = without(&today, &["narrative".to_string()]);
    let mut copy = redacted.clone();
    let (_, withheld) = cordon_indicator::disclosure::receive(&mut copy).unwrap();
    assert_eq!(withheld, ["narrative", "observedAt"]);
    assert!(disclosed_signing_input(&copy).is_ok());

    // Version 1 signed prost's re-encoding: the field today's gateway drops breaks it.
    let mut legacy = next::Indicator::decode(example().encode_to_vec().as_slice()).unwrap();
    legacy.observed_at = "GHTEM".into();
    let signed_by_next = legacy.encode_to_vec();
    let today = Indicator::decode(signed_by_next.as_slice()).unwrap();
    let mut signed_bytes = cordon_indicator::SIGNING_CONTEXT.to_vec();
    signed_bytes.extend_from_slice(&signed_by_next);
    assert_ne!(cordon_indicator::signing_bytes(&today), signed_bytes);
}

/// `tests/vectors/v2.json`, written by a second implementation (Python's `json` and
/// `hashlib`): the same indicator and salts give the same commitments and signed bytes here.
#[test]
fn vectors_match() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/v2.json"
    ))
    .unwrap();
    let vector: Value = serde_json::from_str(&text).unwrap();
    let indicator: Indicator = serde_json::from_value(vector["indicator"].clone()).unwrap();
    let expected = vector["fields"].as_array().unwrap();
    let mut salts = expected
        .iter()
        .map(|field| hex::decode(field["salt"].as_str().unwrap()).unwrap());
    let (fields, bytes) = seal(&indicator, |salt| {
        salt.copy_from_slice(&salts.next().ok_or("more fields than the vector has")?);
        Ok(())
    })
    .unwrap();
    assert_eq!(fields.len(), expected.len());
    for (field, expected) in fields.iter().zip(expected) {
        assert_eq!(field.path, expected["path"].as_str().unwrap());
        assert_eq!(
            hex::encode(&field.digest),
            expected["digest"].as_str().unwrap()
        );
        let preimage = expected["preimage"].as_str().unwrap();
        assert_eq!(
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(preimage.as_bytes())),
            expected["digest"].as_str().unwrap(),
            "{preimage}"
        );
    }
    assert_eq!(
        String::from_utf8(bytes.clone()).unwrap(),
        vector["signingInput"].as_str().unwrap()
    );
    let mut signed = indicator.clone();
    signed.signature = Some(Signature {
        version: SIGNATURE_VERSION,
        fields,
        ..Default::default()
    });
    assert_eq!(disclosed_signing_input(&signed), Ok(bytes));
}
