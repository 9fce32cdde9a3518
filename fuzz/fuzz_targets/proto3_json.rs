//! The proto3 JSON form (the CLI's files, the demo, STIX-side tools): never a panic, errors
//! name a field path, and what parses prints back to JSON that parses to the same message.
#![no_main]

use cordon_proto::v1::{Declaration, Indicator};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(indicator) = serde_json::from_str::<Indicator>(text) {
        let printed = serde_json::to_string(&indicator).expect("prints");
        let again: Indicator = serde_json::from_str(&printed).expect("printed JSON parses");
        // Compared as printed: a float field may hold NaN, which is not equal to itself.
        assert_eq!(printed, serde_json::to_string(&again).expect("prints"));
    }
    if let Ok(declaration) = serde_json::from_str::<Declaration>(text) {
        let printed = serde_json::to_string(&declaration).expect("prints");
        let again: Declaration = serde_json::from_str(&printed).expect("printed JSON parses");
        assert_eq!(printed, serde_json::to_string(&again).expect("prints"));
    }
    let _ = cordon_gateway::cli::read_indicators(text.as_bytes(), "fuzz");
    let _ = cordon_gateway::cli::read_declarations(text.as_bytes(), "fuzz");
});
