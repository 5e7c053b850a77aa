//! The one frame layout (HBLK and HBBT): header checks, CRC, HMAC. A frame
//! that opens must re-encode to the same bytes.
#![no_main]

use hbcore::frame::Format;
use libfuzzer_sys::fuzz_target;

const KEY: &[u8] = b"fuzz-key-0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    for signed in [false, true] {
        let format = Format {
            magic: *b"FUZZ",
            version: 1,
            max_payload: 4096,
            signed,
        };
        let _ = format.check_header(data);
        if let Ok(payload) = format.open(data, Some(KEY)) {
            let again = format.encode(payload, Some(KEY)).expect("an opened payload re-encodes");
            assert_eq!(&data[..again.len()], &again[..]);
        }
    }
});
