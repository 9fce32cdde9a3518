//! Version 1 signatures: the encoding of an indicator that its originator gateway signed
//! before version 2 ([`crate::disclosure`]); still verified during the transition window.
//!
//! Defined once, here: the bytes are [`SIGNING_CONTEXT`] followed by the protobuf
//! encoding of the `cordon.v1.Indicator` with its `signature` field unset, as prost
//! writes it: fields in field-number order, each present field once, repeated
//! scalars packed, no unknown fields (a decoder drops them). The indicator has no
//! map fields, so this encoding is deterministic for a given message. The
//! context string keeps a signature over an indicator from being valid for any
//! other kind of message.

use cordon_proto::v1::{Indicator, Retracted};
use prost::Message;

/// Domain separation for indicator signatures.
pub const SIGNING_CONTEXT: &[u8] = b"cordon.v1.Indicator signature 1\n";

/// Domain separation for retraction signatures.
pub const RETRACTION_SIGNING_CONTEXT: &[u8] = b"cordon.v1.Retracted signature 1\n";

/// The bytes an originator signs and a recipient verifies.
pub fn signing_bytes(indicator: &Indicator) -> Vec<u8> {
    let mut unsigned = indicator.clone();
    unsigned.signature = None;
    let mut bytes = Vec::with_capacity(SIGNING_CONTEXT.len() + unsigned.encoded_len());
    bytes.extend_from_slice(SIGNING_CONTEXT);
    unsigned.encode(&mut bytes).expect("a Vec grows as needed");
    bytes
}

/// The bytes an originator signs when it retracts an indicator, and every gateway the
/// retraction reaches verifies: [`RETRACTION_SIGNING_CONTEXT`] followed by the protobuf
/// encoding of the `cordon.v1.Retracted` (indicator id, originator, reason) with its
/// `signature` unset, under the same rules as [`signing_bytes`].
pub fn retraction_signing_bytes(retracted: &Retracted) -> Vec<u8> {
    let mut unsigned = retracted.clone();
    unsigned.signature = None;
    let mut bytes = Vec::with_capacity(RETRACTION_SIGNING_CONTEXT.len() + unsigned.encoded_len());
    bytes.extend_from_slice(RETRACTION_SIGNING_CONTEXT);
    unsigned.encode(&mut bytes).expect("a Vec grows as needed");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use cordon_proto::v1::{Signature, Tlp};

    #[test]
    fn the_signature_field_is_outside_what_is_signed_and_every_other_field_inside() {
        let indicator = Indicator {
            id: "x".into(),
            tlp: Tlp::Green as i32,
            narrative: "n".into(),
            ..Default::default()
        };
        let mut signed = indicator.clone();
        signed.signature = Some(Signature {
            key_id: "GH".into(),
            signature: vec![1, 2, 3],
            ..Default::default()
        });
        assert_eq!(signing_bytes(&indicator), signing_bytes(&signed));
        let mut altered = indicator.clone();
        altered.tlp = Tlp::Clear as i32;
        assert_ne!(signing_bytes(&indicator), signing_bytes(&altered));
        // Round trip through the wire form does not change the bytes.
        let decoded = Indicator::decode(indicator.encode_to_vec().as_slice()).unwrap();
        assert_eq!(signing_bytes(&decoded), signing_bytes(&indicator));
        assert!(signing_bytes(&indicator).starts_with(SIGNING_CONTEXT));
    }

    #[test]
    fn retractions_are_signed_apart_from_indicators() {
        let retracted = Retracted {
            indicator_id: "x".into(),
            originator: "GH".into(),
            reason: "error".into(),
            signature: None,
        };
        let mut signed = retracted.clone();
        signed.signature = Some(Signature {
            key_id: "GH".into(),
            signature: vec![1],
            ..Default::default()
        });
        assert_eq!(
            retraction_signing_bytes(&retracted),
            retraction_signing_bytes(&signed)
        );
        let mut other_reason = retracted.clone();
        other_reason.reason = "changed".into();
        assert_ne!(
            retraction_signing_bytes(&retracted),
            retraction_signing_bytes(&other_reason)
        );
        assert!(retraction_signing_bytes(&retracted).starts_with(RETRACTION_SIGNING_CONTEXT));
    }
}
