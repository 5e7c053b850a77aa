//! The sealed frame opener (`hbcore::link::seal`) as a peer's bytes reach
//! it after the handshake, decoded frame after frame from one buffer as a
//! TCP stream delivers them, three ways:
//!
//! 1. the bytes alone, to a fresh session's opener;
//! 2. the bytes after one genuine sealed frame of the session (a Ping,
//!    which must open), so they meet an opener that expects counter 1;
//! 3. the bytes as edits (position, xor) of a stream of genuine frames (a
//!    Ping, a 4 KiB write, a 1-byte write, a Pong; a write's head and data
//!    are sealed as two sections whatever its size): every frame that
//!    opens is the very message that was sealed, in its place; decoding
//!    stops at the first refused frame, as the session ends there.
//!
//! Never a panic; bounded memory: no stated frame is larger than the
//! header, 4 MiB and two tags, and the buffer never grows past that.
//! Seeds (`fuzz/corpus/sealed_frame/`): genuine frames of this session,
//! which a fresh opener opens; `SEALED_FRAME_SEEDS=DIR` writes them again.
#![no_main]

use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use hbcore::link::seal::{self, Opener, Role, Sealer, Transcript};
use hbcore::link::{Lane, Message, PeerRequest, FORMAT, NONCE_LEN};
use libfuzzer_sys::fuzz_target;

const PSK: &[u8] = b"fuzz-key-0123456789abcdef";

/// The largest frame a session's opener may ever wait for.
const MAX_FRAME: usize = seal::HEADER_LEN + 4 * 1024 * 1024 + 2 * seal::TAG_LEN;

fn transcript() -> Transcript<'static> {
    Transcript {
        dialer: "prod",
        listener: "standby",
        dialer_nonce: &[1; NONCE_LEN],
        listener_nonce: &[2; NONCE_LEN],
        lane: Lane::Bulk,
    }
}

/// The listening side's opener of the session, fresh (counter 0).
fn opener() -> Opener {
    seal::session_keys(PSK, &transcript(), Role::Listener).1
}

/// The dialing side's sealer of the same session.
fn sealer() -> Sealer {
    seal::session_keys(PSK, &transcript(), Role::Dialer).0
}

fn write(id: u64, len: usize) -> Message {
    Message::Request {
        id,
        body: PeerRequest::Write {
            pair: "d0".into(),
            offset: 8192,
            data: Bytes::from((0..len).map(|i| (i * 31) as u8).collect::<Vec<u8>>()),
        },
    }
}

/// The genuine messages of variant 3, in order.
fn messages() -> Vec<Message> {
    // Small, as every execution opens them all under coverage
    // instrumentation (with a 100 KiB write: 3 ms an execution); the seeds
    // bring the large split write.
    vec![Message::Ping, write(1, 4096), write(2, 1), Message::Pong]
}

/// Each message of [`messages`] sealed in turn by one sealer: (frame, message).
fn genuine() -> &'static [(Vec<u8>, Message)] {
    static FRAMES: OnceLock<Vec<(Vec<u8>, Message)>> = OnceLock::new();
    FRAMES.get_or_init(|| {
        let mut sealer = sealer();
        messages()
            .into_iter()
            .map(|msg| {
                let mut frame = BytesMut::new();
                sealer.encode(msg.clone(), &mut frame).expect("seal");
                (frame.to_vec(), msg)
            })
            .collect()
    })
}

/// Decodes `buf` until it needs more bytes or refuses a frame; returns the
/// messages opened, and whether a frame was refused. Checks the memory bound
/// at every step.
fn drain(opener: &mut Opener, buf: &mut BytesMut) -> (Vec<Message>, bool) {
    let limit = 2 * buf.capacity().max(MAX_FRAME);
    let mut opened = Vec::new();
    loop {
        let before = buf.len();
        if let Ok(Some(h)) = seal::header(buf) {
            assert!(
                h.frame_len() <= MAX_FRAME,
                "a frame of {} bytes",
                h.frame_len()
            );
        }
        let decoded = opener.decode(buf);
        assert!(
            buf.capacity() <= limit,
            "buffer of {} bytes",
            buf.capacity()
        );
        match decoded {
            Ok(Some(msg)) => {
                assert!(buf.len() < before, "an opened frame is consumed");
                opened.push(msg);
            }
            Ok(None) => return (opened, false),
            Err(e) => {
                // Every refusal has its reason in fixed words.
                let _ = e.rejected();
                return (opened, true);
            }
        }
    }
}

fuzz_target!(
    init: {
        if let Some(dir) = std::env::var_os("SEALED_FRAME_SEEDS") {
            let dir = std::path::PathBuf::from(dir);
            for (name, msg) in [
                ("seed-ping", Message::Ping),
                ("seed-write-4k", write(1, 4096)),
                ("seed-write-100k", write(2, 100 << 10)),
            ] {
                let mut frame = BytesMut::new();
                sealer().encode(msg, &mut frame).expect("seal");
                std::fs::write(dir.join(name), &frame).expect("write a seed");
            }
        }
        let _ = genuine();
    },
    |data: &[u8]| {
        assert_eq!(FORMAT.max_payload, 4 << 20);

        // 1. The bytes alone.
        drain(&mut opener(), &mut BytesMut::from(data));

        // 2. After one genuine frame, which must open.
        let mut opener2 = opener();
        let mut buf = BytesMut::from(&genuine()[0].0[..]);
        buf.extend_from_slice(data);
        let (opened, _) = drain(&mut opener2, &mut buf);
        assert_eq!(opened.first(), Some(&Message::Ping), "the genuine frame opens");

        // 3. Genuine frames edited: what opens is what was sealed, in order.
        let mut stream: Vec<u8> = genuine().iter().flat_map(|(f, _)| f.clone()).collect();
        let mut edited = false;
        for edit in data.chunks_exact(4) {
            let at = u32::from_le_bytes([edit[0], edit[1], edit[2], 0]) as usize % stream.len();
            stream[at] ^= edit[3];
            edited |= edit[3] != 0;
        }
        let mut buf = BytesMut::from(&stream[..]);
        let (opened, refused) = drain(&mut opener(), &mut buf);
        for (got, (_, want)) in opened.iter().zip(genuine()) {
            assert_eq!(got, want, "an edited stream opened into another message");
        }
        if !edited {
            assert_eq!(opened.len(), genuine().len(), "the genuine stream opens whole");
            assert!(!refused && buf.is_empty());
        }
    }
);
