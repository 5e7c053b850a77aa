//! A control-socket line, as both daemons parse it: mirrord's requests and
//! hbd's. A request that parses must serialise and parse to the same value.
#![no_main]

use hbcore::control::Request;
use hbmirror::hb::api::HbRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(request) = serde_json::from_str::<Request>(line) {
        let text = serde_json::to_string(&request).expect("serialise");
        assert_eq!(serde_json::from_str::<Request>(&text).ok(), Some(request));
    }
    if let Ok(request) = serde_json::from_str::<HbRequest>(line) {
        let text = serde_json::to_string(&request).expect("serialise");
        assert_eq!(serde_json::from_str::<HbRequest>(&text).ok(), Some(request));
    }
});
