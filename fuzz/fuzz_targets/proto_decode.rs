//! Protobuf decoding of everything a peer or a client sends: never a panic, and what decodes
//! encodes back to bytes that decode to the same message.
#![no_main]

use cordon_proto::v1::{Declaration, Event, Indicator, PublishRequest, ScreenRequest};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(data: &[u8]) {
    if let Ok(message) = M::decode(data) {
        // Compared as bytes: a float field may hold NaN, which is not equal to itself.
        let bytes = message.encode_to_vec();
        let again = M::decode(bytes.as_slice()).expect("re-encoded message decodes");
        assert_eq!(bytes, again.encode_to_vec());
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Indicator>(data);
    round_trip::<Event>(data);
    round_trip::<Declaration>(data);
    round_trip::<PublishRequest>(data);
    round_trip::<ScreenRequest>(data);
});
