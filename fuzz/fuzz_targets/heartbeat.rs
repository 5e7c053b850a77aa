//! A heartbeat as it arrives in a UDP datagram or a 4 KiB volume slot. A
//! valid tag cannot be forged by the fuzzer, so the checks before it (magic,
//! version, length, CRC) are what is exercised, plus the payload decoder
//! through frames the target signs itself.
#![no_main]

use hbmirror::hb::logic::message::{Beat, FORMAT};
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"fuzz-key-0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    let _ = Beat::decode(data, KEY);
    // The same bytes as a payload, correctly framed and signed: the postcard
    // decoder of Beat sees arbitrary input.
    if data.len() <= FORMAT.max_payload {
        if let Ok(frame) = FORMAT.encode(data, Some(KEY)) {
            if let Ok(beat) = Beat::decode(&frame, KEY) {
                let again = beat.encode(KEY).expect("a decoded beat re-encodes");
                assert!(Beat::decode(&again, KEY).is_ok());
            }
        }
    }
});
