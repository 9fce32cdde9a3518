//! Property tests of what the gateway reads from others, run in CI: the same properties the
//! fuzz targets in `fuzz/` check (see FUZZING.md), on inputs proptest generates. Any bytes or
//! text given to the decoders, the validation, the policy input builder, redaction, bundle
//! reading and the MLS message path get an answer or an error, never a panic; what decodes
//! round-trips; a refused redaction changes nothing; a failed decision denies.

use std::sync::OnceLock;

use cordon_gateway::circle::mls;
use cordon_gateway::release::redaction::RedactionSchema;
use cordon_indicator::{Limits, validate_batch};
use cordon_policy::{Channel, InputContext, Policy, write_reference_policy};
use cordon_proto::v1::{Declaration, Event, Indicator, PublishRequest, Tlp, Vessel, indicator};
use proptest::prelude::*;
use prost::Message;

fn reference_policy() -> &'static Policy {
    static POLICY: OnceLock<(tempfile::TempDir, Policy)> = OnceLock::new();
    &POLICY
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("temporary directory");
            write_reference_policy(dir.path()).expect("reference policy written");
            let policy = Policy::load(dir.path()).expect("the reference policy loads");
            (dir, policy)
        })
        .1
}

/// Indicators with arbitrary text where people write text.
fn indicators() -> impl Strategy<Value = Indicator> {
    (
        0i32..=5,
        0u32..200,
        ".{0,40}",
        "[0-9A-Za-z ]{0,12}",
        proptest::collection::vec("[a-z-]{0,10}", 0..4),
    )
        .prop_map(|(tlp, confidence, narrative, imo, tags)| Indicator {
            id: "019a0000-0000-7000-8000-000000000001".into(),
            originator: "GH".into(),
            tlp,
            confidence,
            narrative,
            tags,
            kind: Some(indicator::Kind::Vessel(Vessel {
                imo,
                ..Vessel::default()
            })),
            ..Indicator::default()
        })
}

/// GH's signing key, made once for the process.
fn gh_key() -> &'static cordon_gateway::signing::SigningKey {
    static KEY: OnceLock<(tempfile::TempDir, cordon_gateway::signing::SigningKey)> =
        OnceLock::new();
    &KEY.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("signing-key.pem");
        cordon_gateway::signing::generate_signing_key(&path).expect("a key");
        let key = cordon_gateway::signing::SigningKey::load(&path, "GH").expect("loads");
        (dir, key)
    })
    .1
}

fn round_trips<M: Message + Default + PartialEq + std::fmt::Debug>(bytes: &[u8]) {
    if let Ok(message) = M::decode(bytes) {
        // Compared as bytes: a float field may hold NaN, which is not equal to itself.
        let encoded = message.encode_to_vec();
        let again = M::decode(encoded.as_slice()).expect("re-encoded decodes");
        assert_eq!(encoded, again.encode_to_vec());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn protobuf_decoding_never_panics_and_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        round_trips::<Indicator>(&bytes);
        round_trips::<Event>(&bytes);
        round_trips::<Declaration>(&bytes);
        round_trips::<PublishRequest>(&bytes);
    }

    #[test]
    fn proto3_json_parses_or_names_the_line(text in ".{0,200}", indicator in indicators()) {
        let _ = cordon_gateway::cli::read_indicators(text.as_bytes(), "input");
        let _ = cordon_gateway::cli::read_declarations(text.as_bytes(), "input");
        let printed = serde_json::to_string(&indicator).expect("prints");
        let (parsed, lines) = cordon_gateway::cli::read_indicators(printed.as_bytes(), "input").expect("parses");
        prop_assert_eq!(lines, vec![1]);
        prop_assert_eq!(&parsed[0], &indicator);
        if let Err(error) = cordon_gateway::cli::read_indicators(format!("{printed}\n{text}\n").as_bytes(), "input") {
            prop_assert!(format!("{error:#}").contains("input line 2"), "{error:#}");
        }
    }

    #[test]
    fn validation_is_deterministic_and_names_fields(batch in proptest::collection::vec(indicators(), 0..4)) {
        let limits = Limits::default();
        let first = validate_batch(&batch, &limits);
        prop_assert_eq!(format!("{first:?}"), format!("{:?}", validate_batch(&batch, &limits)));
        if let Err(errors) = first {
            prop_assert!(!errors.is_empty());
        }
    }

    #[test]
    fn a_failed_decision_denies(indicator in indicators(), recipient in "[A-Z]{2}(/[a-z]{1,8})?|.{0,12}", narrative in ".{0,40}") {
        let policy = reference_policy();
        let mut json = serde_json::to_value(&indicator).expect("JSON");
        json["narrative"] = serde_json::Value::String(narrative);
        for channel in Channel::ALL {
            let context = InputContext { gateway: "GH", channel, now: "2026-12-01T00:00:00Z" };
            let decision = policy.decide(&policy.decision_input(json.clone(), &recipient, context));
            if decision.error.is_some() {
                prop_assert!(!decision.allow, "{decision:?}");
            }
            if indicator.tlp == Tlp::Red as i32 && decision.allow {
                prop_assert!(!decision.reasons.is_empty());
            }
        }
    }

    #[test]
    fn verifying_any_bytes_answers_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(indicator) = Indicator::decode(bytes.as_slice()) {
            let key = gh_key();
            let _ = cordon_gateway::signing::verify(&indicator, "GH", key.public_key());
            let mut copy = indicator;
            let _ = cordon_gateway::signing::verify_received(&mut copy, "GH", key.public_key());
        }
    }

    #[test]
    fn redaction_is_all_or_nothing(indicator in indicators(), paths in proptest::collection::vec("narrative|tags|vessel\\.imo|vessel|source|id|tlp|no\\.such|[a-z.]{0,12}", 0..4)) {
        static SCHEMA: OnceLock<RedactionSchema> = OnceLock::new();
        let schema = SCHEMA.get_or_init(RedactionSchema::cordon);
        let original = serde_json::to_value(&indicator).expect("JSON");
        let mut redacted = original.clone();
        match schema.apply(&mut redacted, &paths) {
            Ok(()) => {
                for protected in ["id", "originator", "tlp"] {
                    prop_assert_eq!(original.get(protected), redacted.get(protected));
                }
                for path in &paths {
                    let segments: Vec<&str> = path.split('.').collect();
                    let mut value = &redacted;
                    let mut present = true;
                    for segment in &segments {
                        match value.get(segment) {
                            Some(inner) => value = inner,
                            None => { present = false; break; }
                        }
                    }
                    prop_assert!(!present, "{path} is still in {redacted}");
                }
            }
            Err(_) => prop_assert_eq!(&original, &redacted),
        }
    }

    #[test]
    fn mls_messages_parse_or_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(message) = mls::deserialize(&bytes) {
            let _ = message.try_into_protocol_message();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn policy_bundles_of_any_bytes_are_refused(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("bundle.tar.gz");
        std::fs::write(&path, &bytes).expect("write");
        prop_assert!(Policy::load(&path).is_err());
    }
}

/// The input the `proto_decode` fuzz target found: a declaration whose goods value is NaN
/// decodes and round-trips (as bytes: NaN is not equal to itself, so struct equality is not
/// the property).
#[test]
fn a_nan_value_round_trips_as_bytes() {
    let declaration = Declaration {
        goods: vec![cordon_proto::v1::declaration::Goods {
            value: f64::NAN,
            ..Default::default()
        }],
        ..Default::default()
    };
    let bytes = declaration.encode_to_vec();
    round_trips::<Declaration>(&bytes);
    let again = Declaration::decode(bytes.as_slice()).expect("decodes");
    assert!(again.goods[0].value.is_nan());
}
