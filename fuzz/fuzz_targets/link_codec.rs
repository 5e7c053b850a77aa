//! The remote link's decoder as a peer's bytes reach it: before the
//! handshake (small frames only) and after it, frame after frame from one
//! buffer, as a TCP stream delivers them. Never a panic; a message decoded
//! before authentication is one that fits a handshake-sized frame; every
//! intact frame decodes (a write by the codec's own zero-copy parser) to
//! what postcard makes of its payload, or fails as postcard does; every
//! decoded message re-encodes and decodes to itself. The input is also
//! taken as a payload and framed intact (the CRC would stop most mutations
//! short of the payload's parsing): the codec must agree with postcard on it.
#![no_main]

use bytes::BytesMut;
use hbcore::frame::Format;
use hbcore::link::{LinkCodec, LinkError, Message, FORMAT};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::{Decoder, Encoder};

fuzz_target!(|data: &[u8]| {
    if let Ok(frame) = FORMAT.encode(data, None) {
        let mut codec = LinkCodec::handshake();
        codec.authenticated();
        let mut framed = BytesMut::from(&frame[..]);
        match (codec.decode(&mut framed), postcard::from_bytes::<Message>(data)) {
            (Ok(Some(got)), Ok(want)) => assert_eq!(got, want, "as postcard decodes it"),
            (Err(LinkError::Malformed(got)), Err(want)) => assert_eq!(got, want),
            (got, want) => panic!("postcard says {want:?}, the codec {got:?}"),
        }
    }
    for authenticated in [false, true] {
        let mut codec = LinkCodec::handshake();
        if authenticated {
            codec.authenticated();
        }
        let format = Format {
            max_payload: codec.max_payload(),
            ..FORMAT
        };
        let mut buf = BytesMut::from(data);
        loop {
            let before = buf.len();
            // What postcard alone makes of the next frame's payload, if it is whole and intact.
            let expected = match format.check_header(&buf) {
                Ok(Some(len)) if len <= buf.len() => format
                    .open(&buf[..len], None)
                    .ok()
                    .map(postcard::from_bytes::<Message>),
                _ => None,
            };
            let decoded = codec.decode(&mut buf);
            match (&decoded, &expected) {
                (Ok(Some(got)), Some(Ok(want))) => assert_eq!(got, want, "as postcard decodes it"),
                (Err(LinkError::Malformed(got)), Some(Err(want))) => assert_eq!(got, want),
                (_, Some(want)) => panic!("postcard says {want:?}, the codec {decoded:?}"),
                (_, None) => {}
            }
            let Ok(Some(message)) = decoded else {
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
