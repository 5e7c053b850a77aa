//! The remote link's decoder as a peer's bytes reach it: before the
//! handshake (small frames only) and after it, frame after frame from one
//! buffer, as a TCP stream delivers them. Never a panic; a message decoded
//! before authentication is one that fits a handshake-sized frame; every
//! decoded message re-encodes and decodes to itself.
#![no_main]

use bytes::BytesMut;
use hbcore::link::LinkCodec;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, Encoder};

fuzz_target!(|data: &[u8]| {
    for authenticated in [false, true] {
        let mut codec = LinkCodec::handshake();
        if authenticated {
            codec.authenticated();
        }
        let mut buf = BytesMut::from(data);
        loop {
            let before = buf.len();
            let Ok(Some(message)) = codec.decode(&mut buf) else {
                break;
            };
            assert!(buf.len() < before, "a decoded frame is consumed");
            let mut again = BytesMut::new();
            codec
                .encode(message.clone(), &mut again)
                .expect("a decoded message re-encodes within the same limit");
            let back = codec.decode(&mut again).expect("re-decode");
            assert_eq!(back, Some(message));
        }
    }
});
