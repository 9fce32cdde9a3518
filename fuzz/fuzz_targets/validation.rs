//! Validation of a publish batch decoded from arbitrary bytes: never a panic, the same answer
//! twice, and every error names a field of the batch.
#![no_main]

use cordon_indicator::{Limits, validate_batch};
use cordon_proto::v1::PublishRequest;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = PublishRequest::decode(data) else {
        return;
    };
    let limits = Limits::default();
    let first = validate_batch(&request.indicators, &limits);
    let second = validate_batch(&request.indicators, &limits);
    assert_eq!(format!("{first:?}"), format!("{second:?}"));
    if let Err(errors) = first {
        assert!(!errors.is_empty());
    }
});
