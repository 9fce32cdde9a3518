//! Redaction: any path list on any indicator either removes exactly what it names or is
//! refused whole; never a panic, and never a protected field removed.
#![no_main]

use std::sync::OnceLock;

use cordon_gateway::release::redaction::RedactionSchema;
use cordon_proto::v1::Indicator;
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    static SCHEMA: OnceLock<RedactionSchema> = OnceLock::new();
    let schema = SCHEMA.get_or_init(RedactionSchema::cordon);
    // Paths on the first line (comma-separated), the indicator (protobuf) after it.
    let split = data
        .iter()
        .position(|byte| *byte == b'\n')
        .unwrap_or(data.len());
    let paths: Vec<String> = String::from_utf8_lossy(&data[..split])
        .split(',')
        .map(str::to_string)
        .collect();
    let Ok(indicator) = Indicator::decode(data.get(split + 1..).unwrap_or_default()) else {
        return;
    };
    let Ok(original) = serde_json::to_value(&indicator) else {
        return;
    };
    let mut redacted = original.clone();
    match schema.apply(&mut redacted, &paths) {
        Ok(()) => {
            for protected in ["id", "originator", "tlp"] {
                assert_eq!(
                    original.get(protected),
                    redacted.get(protected),
                    "{protected}"
                );
            }
        }
        Err(_) => assert_eq!(
            original, redacted,
            "a refused redaction changed the indicator"
        ),
    }
});
