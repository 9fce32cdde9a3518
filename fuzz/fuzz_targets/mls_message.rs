//! The MLS message path at a hub: any bytes sent as a circle message are parsed or refused;
//! never a panic.
#![no_main]

use cordon_gateway::circle::mls;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = mls::deserialize(data)
        && let Ok(protocol) = message.try_into_protocol_message()
    {
        let _ = protocol.group_id();
        let _ = protocol.epoch();
    }
});
