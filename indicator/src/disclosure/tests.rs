//! The canonical form, commitments and refusals, case by case.

use super::*;
use cordon_proto::v1::{Source, Tlp, Vessel, indicator};
use serde_json::json;

fn sample() -> Indicator {
    Indicator {
        id: "0196f1a2-0000-7000-8000-000000000001".into(),
        originator: "GH".into(),
        tlp: Tlp::Green as i32,
        narrative: "seen at Tema".into(),
        tags: vec!["arms".into(), "tema".into()],
        source: Some(Source {
            description: "informant 7".into(),
            reliability: "B".into(),
            credibility: 2,
            ..Default::default()
        }),
        kind: Some(indicator::Kind::Vessel(Vessel {
            imo: "9234563".into(),
            name: "SEA LION".into(),
            ..Default::default()
        })),
        ..Default::default()
    }
}

fn counter() -> impl FnMut(&mut [u8]) -> Result<(), String> {
    let mut next = 0u8;
    move |salt: &mut [u8]| {
        next = next.wrapping_add(1);
        salt.fill(next);
        Ok(())
    }
}

fn sealed(indicator: &Indicator) -> (Indicator, Vec<u8>) {
    let (fields, bytes) = seal(indicator, counter()).unwrap();
    let mut signed = indicator.clone();
    signed.signature = Some(Signature {
        key_id: "GH:0".into(),
        signature: vec![0; 64],
        version: SIGNATURE_VERSION,
        fields,
    });
    (signed, bytes)
}

fn canonical(value: &Value) -> String {
    let mut out = Vec::new();
    write_canonical(value, "test", &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn canonical_json_sorts_members_escapes_as_rfc_8785_and_refuses_floats() {
    assert_eq!(
        canonical(&json!({"b": [1, true, null], "a": "x\u{1}\n\"\\é", "A": -3})),
        "{\"A\":-3,\"a\":\"x\\u0001\\n\\\"\\\\é\",\"b\":[1,true,null]}"
    );
    // UTF-16 order, not UTF-8: U+FB01 sorts after U+1F600's surrogates (0xD83D).
    assert_eq!(
        canonical(&json!({"\u{fb01}": 1, "\u{1f600}": 2})),
        "{\"\u{1f600}\":2,\"\u{fb01}\":1}"
    );
    assert_eq!(
        write_canonical(&json!({"x": 1.5}), "confidence", &mut Vec::new()),
        Err(DisclosureError::NotAnInteger("confidence".into()))
    );
}

#[test]
fn fixed_timestamps_are_signed_in_one_spelling() {
    for (written, canonical) in [
        ("2026-09-21T14:13:20+00:00", "2026-09-21T14:13:20Z"),
        ("2026-09-21T16:13:20+02:00", "2026-09-21T14:13:20Z"),
        ("2026-09-21T14:13:20.5Z", "2026-09-21T14:13:20.500Z"),
        ("2026-09-21T14:13:20.000001Z", "2026-09-21T14:13:20.000001Z"),
        (
            "2026-09-21T14:13:20.000000005Z",
            "2026-09-21T14:13:20.000000005Z",
        ),
    ] {
        let fields = Fields::of_json(json!({"created": written})).unwrap();
        assert_eq!(fields.fixed["created"], canonical, "{written}");
    }
    for wrong in ["tomorrow", "2026-12-31T23:59:60Z"] {
        assert_eq!(
            Fields::of_json(json!({"validUntil": wrong})),
            Err(DisclosureError::Timestamp("validUntil".into())),
            "{wrong}"
        );
    }
}

#[test]
fn fields_are_the_leaves_outside_the_fixed_members_and_the_signature() {
    let (signed, _) = sealed(&sample());
    let fields = Fields::of(&signed).unwrap();
    assert_eq!(
        fields.fixed.keys().collect::<Vec<_>>(),
        ["id", "originator", "tlp"]
    );
    assert_eq!(
        fields.committed.keys().collect::<Vec<_>>(),
        [
            "narrative",
            "source.credibility",
            "source.description",
            "source.reliability",
            "tags",
            "vessel.imo",
            "vessel.name"
        ]
    );
    assert_eq!(
        field_paths(&serde_json::to_value(&signed).unwrap()),
        fields.committed.keys().cloned().collect()
    );
}

#[test]
fn a_sealed_indicator_gives_back_the_signed_bytes_whole_or_with_fields_withheld() {
    let (signed, bytes) = sealed(&sample());
    assert_eq!(disclosed_signing_input(&signed).unwrap(), bytes);
    let mut redacted = signed.clone();
    redacted.source = None;
    let present = field_paths(&serde_json::to_value(&redacted).unwrap());
    withhold_absent(redacted.signature.as_mut().unwrap(), &present);
    assert_eq!(
        withheld_paths(&redacted),
        [
            "source.credibility",
            "source.description",
            "source.reliability"
        ]
    );
    assert_eq!(disclosed_signing_input(&redacted).unwrap(), bytes);
}

#[test]
fn malformed_commitments_and_swapped_kinds_are_refused() {
    let (signed, _) = sealed(&sample());
    let refused = |change: &dyn Fn(&mut Indicator), expected: DisclosureError| {
        let mut copy = signed.clone();
        change(&mut copy);
        assert_eq!(disclosed_signing_input(&copy), Err(expected));
    };
    fn fields(copy: &mut Indicator) -> &mut Vec<FieldCommitment> {
        &mut copy.signature.as_mut().unwrap().fields
    }
    refused(
        &|copy| {
            let mut tlp = fields(copy)[0].clone();
            tlp.path = "tlp".into();
            fields(copy).push(tlp);
        },
        DisclosureError::FixedCommitted("tlp".into()),
    );
    refused(
        &|copy| {
            let first = fields(copy)[0].clone();
            fields(copy).push(first);
        },
        DisclosureError::Duplicate("narrative".into()),
    );
    refused(
        &|copy| fields(copy)[0].digest.pop().map(drop).unwrap_or_default(),
        DisclosureError::BadDigest("narrative".into()),
    );
    refused(
        &|copy| fields(copy)[0].salt.truncate(8),
        DisclosureError::BadSalt {
            path: "narrative".into(),
            length: 8,
        },
    );
    refused(
        &|copy| fields(copy)[0].salt.clear(),
        DisclosureError::MissingSalt("narrative".into()),
    );
    refused(
        &|copy| copy.signature.as_mut().unwrap().version = 3,
        DisclosureError::WrongVersion(3),
    );
    // Every vessel field withheld, and an empty aircraft put in the vessel's place.
    refused(
        &|copy| {
            let present = field_paths(&serde_json::to_value(&*copy).unwrap());
            copy.kind = Some(indicator::Kind::Aircraft(Default::default()));
            let present = present
                .into_iter()
                .filter(|path| !path.starts_with("vessel."))
                .collect();
            withhold_absent(copy.signature.as_mut().unwrap(), &present);
        },
        DisclosureError::KindUncommitted("aircraft".into()),
    );
    assert_eq!(
        Fields::of_json(json!({"narrative": "x", "source": {"a.b": 1}})),
        Err(DisclosureError::BadName("a.b".into()))
    );
    let mut leap = sample();
    leap.created = Some(pbjson_types::Timestamp {
        seconds: 1_790_000_000,
        nanos: 1_500_000_000,
    });
    assert_eq!(
        seal(&leap, counter()).map(|_| ()),
        Err(DisclosureError::Timestamp("created".into()))
    );
}

#[test]
fn tampering_with_a_disclosure_is_named() {
    let (signed, bytes) = sealed(&sample());
    let mut altered = signed.clone();
    altered.narrative = "seen at Lomé".into();
    assert_eq!(
        disclosed_signing_input(&altered),
        Err(DisclosureError::Mismatch("narrative".into()))
    );
    let mut added = signed.clone();
    added.severity = 3;
    assert_eq!(
        disclosed_signing_input(&added),
        Err(DisclosureError::Uncovered("severity".into()))
    );
    let mut swapped = signed.clone();
    let fields = &mut swapped.signature.as_mut().unwrap().fields;
    let salt = fields[0].salt.clone();
    fields[0].salt = fields[1].salt.clone();
    fields[1].salt = salt;
    assert!(matches!(
        disclosed_signing_input(&swapped),
        Err(DisclosureError::Mismatch(_))
    ));
    // A fixed member changes the bytes signed, not a commitment.
    let mut relabelled = signed.clone();
    relabelled.tlp = Tlp::Clear as i32;
    assert_ne!(disclosed_signing_input(&relabelled).unwrap(), bytes);
}
