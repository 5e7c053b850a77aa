//! The link's codec against every message: the version's encoding kept,
//! round trips byte by byte, split frames, size limits before and after
//! authentication, flipped bits, cut streams, unknown messages named.

use super::*;
use crate::control::IntegrityOptions;
use crate::frame::FrameError;
use crate::vocab::{Fence, Kind, Mode, PairSettings, PairState};
use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

pub(super) fn samples() -> Vec<Message> {
    let pair = || "p".to_string();
    vec![
        Message::Hello {
            site: "prod".into(),
            to: "standby".into(),
            nonce: [7; 32],
            lane: Lane::Heartbeat,
            seal: true,
            incarnation: 77,
            resume: false,
        },
        Message::Challenge {
            site: "standby".into(),
            nonce: [9; 32],
            proof: vec![1; 32],
            seal: false,
            incarnation: u64::MAX,
            resume: true,
        },
        Message::Proof { proof: vec![2; 32] },
        Message::Welcome,
        Message::Refused {
            reason: "no".into(),
        },
        Message::Ping,
        Message::Request {
            id: 1,
            body: PeerRequest::Attach(Attach {
                pair: pair(),
                pvol: "a".into(),
                svol: "b".into(),
                size: 1 << 20,
                kind: Kind::Heartbeat,
                settings: PairSettings {
                    mode: Mode::Adaptive,
                    fence: Fence::Never,
                    skew: 4 << 20,
                    auto_resync: true,
                    installed: true,
                    c_max_rate: 0,
                    c_min_rate: 4 << 20,
                },
            }),
        },
        Message::Request {
            id: u64::MAX,
            body: PeerRequest::Write {
                pair: pair(),
                offset: 4096,
                data: vec![0xaa; 70_000].into(),
            },
        },
        Message::Request {
            id: 3,
            body: PeerRequest::Update {
                pair: pair(),
                state: Some(PairState::Pair),
                settings: None,
            },
        },
        Message::Request {
            id: 4,
            body: PeerRequest::Detach { pair: pair() },
        },
        Message::Request {
            id: 7,
            body: PeerRequest::TakeBitmap { pair: pair() },
        },
        Message::Request {
            id: 8,
            body: PeerRequest::Split { pair: pair() },
        },
        Message::Request {
            id: 9,
            body: PeerRequest::Resync { pair: pair() },
        },
        Message::Request {
            id: 10,
            body: PeerRequest::Takeover { pair: pair() },
        },
        Message::Request {
            id: 11,
            body: PeerRequest::Reverse { pair: pair() },
        },
        Message::Response {
            id: 12,
            result: Ok(PeerReply::Bitmap {
                bits: vec![0xf0; 512],
            }),
        },
        Message::Response {
            id: 5,
            result: Ok(PeerReply::Attached {
                previous: PairState::Smpl,
            }),
        },
        Message::Response {
            id: 6,
            result: Err(PeerError::WrongState {
                pair: pair(),
                state: PairState::Psus,
                detail: "split".into(),
            }),
        },
        Message::Response {
            id: 13,
            result: Err(PeerError::Disk {
                detail: "ENOSPC".into(),
            }),
        },
        Message::Request {
            id: 14,
            body: PeerRequest::Generations {
                pair: pair(),
                generations: Generations {
                    current: Some(u64::MAX),
                    bitmap: None,
                    history: vec![1, 2, 3],
                },
                dirty_blocks: 3,
            },
        },
        Message::Request {
            id: 15,
            body: PeerRequest::Join {
                pair: pair(),
                generation: 0x9e37_79b9_7f4a_7c15,
            },
        },
        Message::Request {
            id: 16,
            body: PeerRequest::Digests {
                pair: pair(),
                first: 1 << 40,
                count: MAX_DIGEST_BLOCKS,
            },
        },
        Message::Request {
            id: 17,
            body: PeerRequest::Options {
                pair: pair(),
                options: IntegrityOptions {
                    checksum_resync: true,
                    split_brain: crate::control::SplitBrainPolicy::DiscardLeastChanges,
                },
            },
        },
        Message::Request {
            id: 18,
            body: PeerRequest::KeepYours { pair: pair() },
        },
        Message::Response {
            id: 19,
            result: Ok(PeerReply::Generations {
                generations: Generations {
                    current: None,
                    bitmap: Some(7),
                    history: vec![],
                },
                dirty_blocks: 12,
                state: PairState::Ssws,
            }),
        },
        Message::Response {
            id: 20,
            result: Ok(PeerReply::Digests {
                digests: vec![u128::MAX, 0, 1 << 100],
            }),
        },
        Message::Pong,
    ]
}

#[test]
fn the_messages_of_version_2_keep_their_encoding() {
    // Bytes recorded from version 2 before the integrity messages were
    // appended: new variants at the end leave the old indices alone.
    // (Sample 6 as of version 4, which appended the copy rates to its
    // PairSettings: a frame's version keeps versions 3 and 4 apart.)
    let samples = samples();
    for (i, bytes) in [
        (
            6usize,
            &[
                6u8, 1, 0, 1, 112, 1, 97, 1, 98, 128, 128, 64, 0, 2, 0, 128, 128, 128, 2, 1, 1, 0,
                128, 128, 128, 2,
            ][..],
        ),
        (8, &[6, 3, 2, 1, 112, 1, 2, 0]),
        (9, &[6, 4, 8, 1, 112]),
        (10, &[6, 7, 3, 1, 112]),
        (11, &[6, 8, 4, 1, 112]),
        (12, &[6, 9, 5, 1, 112]),
        (13, &[6, 10, 6, 1, 112]),
        (14, &[6, 11, 7, 1, 112]),
        (16, &[7, 5, 0, 1, 0]),
        (17, &[7, 6, 1, 1, 1, 112, 3, 5, 115, 112, 108, 105, 116]),
        (18, &[7, 13, 1, 2, 6, 69, 78, 79, 83, 80, 67]),
    ] {
        let got = postcard::to_allocvec(&samples[i]).expect("encode");
        assert_eq!(got, bytes, "sample {i}: {:?}", samples[i]);
    }
}

#[test]
fn the_fuzz_seeds_speak_this_version() {
    // Seeds of another version only exercise the version check: when
    // FORMAT.version moves, re-frame them (fuzz/corpus/*/seed-*).
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut frames = 0;
    for target in ["link_codec", "handshake"] {
        let dir = std::fs::read_dir(corpus.join(target)).expect("the seed corpus");
        for entry in dir {
            let path = entry.expect("a seed").path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !name.starts_with("seed-") {
                continue;
            }
            let bytes = std::fs::read(&path).expect("read a seed");
            if bytes.starts_with(&FORMAT.magic) {
                assert_eq!(bytes[4], FORMAT.version, "{}", path.display());
                frames += 1;
            }
        }
    }
    assert!(frames > 10, "only {frames} seeds are link frames");
}

pub(super) fn session() -> LinkCodec {
    let mut codec = LinkCodec::handshake();
    codec.authenticated();
    codec
}

fn encode(msg: Message) -> BytesMut {
    let mut buf = BytesMut::new();
    session().encode(msg, &mut buf).expect("encode");
    buf
}

#[test]
fn every_message_round_trips_even_byte_by_byte() {
    for msg in samples() {
        let whole = encode(msg.clone());
        let mut buf = whole.clone();
        assert_eq!(
            session().decode(&mut buf).expect("decode"),
            Some(msg.clone())
        );
        assert!(buf.is_empty());
        // Arriving in pieces: nothing until the last byte.
        let mut trickle = BytesMut::new();
        for (i, b) in whole.iter().enumerate() {
            trickle.extend_from_slice(&[*b]);
            let got = session().decode(&mut trickle).expect("decode");
            assert_eq!(got.is_some(), i + 1 == whole.len());
        }
    }
}

#[test]
fn a_split_frame_is_the_frame_of_the_message_byte_for_byte() {
    let write = |len: usize| Message::Request {
        id: 300,
        body: PeerRequest::Write {
            pair: "pair".into(),
            offset: 1 << 33,
            data: (0..len).map(|i| i as u8).collect::<Vec<u8>>().into(),
        },
    };
    let mut messages = samples();
    messages.extend([0, 1, 127, 128, 4096, 16_383, 16_384, 1 << 20].map(write));
    // Frames already in the buffer stay as they are.
    let mut dst = BytesMut::from(&b"earlier"[..]);
    for msg in messages {
        let payload = postcard::to_allocvec(&msg).expect("postcard");
        let want = FORMAT.encode(&payload, None).expect("frame");
        dst.truncate(7);
        let tail = session()
            .encode_split(msg.clone(), &mut dst)
            .expect("split");
        assert_eq!(&dst[..7], b"earlier");
        let mut got = dst[7..].to_vec();
        got.extend_from_slice(&tail);
        assert_eq!(got, want, "{}", msg.kind());
        if let Message::Request {
            body: PeerRequest::Write { data, .. },
            ..
        } = &msg
        {
            assert_eq!(&tail, data);
            if !data.is_empty() {
                assert_eq!(tail.as_ptr(), data.as_ptr(), "handed back, not copied");
            }
        }
    }
}

#[test]
fn a_frame_too_big_leaves_the_buffer_as_it_was() {
    let big = Message::Request {
        id: 1,
        body: PeerRequest::Write {
            pair: "p".into(),
            offset: 0,
            data: vec![0; FORMAT.max_payload].into(),
        },
    };
    let mut dst = BytesMut::from(&b"earlier"[..]);
    let e = session().encode_split(big, &mut dst).expect_err("too big");
    assert!(
        matches!(e, LinkError::Frame(FrameError::Oversized { .. })),
        "{e}"
    );
    assert_eq!(&dst[..], b"earlier");
}

#[test]
fn a_flipped_bit_anywhere_is_rejected() {
    let whole = encode(Message::Request {
        id: 9,
        body: PeerRequest::Write {
            pair: "p".into(),
            offset: 0,
            data: Bytes::from_static(&[1, 2, 3]),
        },
    });
    for i in 0..whole.len() {
        let mut bad = whole.clone();
        bad[i] ^= 0x10;
        // A longer length only makes the decoder wait for bytes that,
        // on a live link, fail the CRC (or the silence timeout) later.
        let result = session().decode(&mut bad);
        assert!(!matches!(result, Ok(Some(_))), "flip at byte {i} accepted");
    }
}

#[test]
fn before_authentication_only_handshake_sized_frames_are_accepted() {
    let write = encode(Message::Request {
        id: 1,
        body: PeerRequest::Write {
            pair: "p".into(),
            offset: 0,
            data: vec![0; 64 << 10].into(),
        },
    });
    // The header alone is enough to refuse: nothing of the payload is buffered.
    let mut header = BytesMut::from(&write[..crate::frame::HEADER_LEN]);
    assert!(matches!(
        LinkCodec::handshake().decode(&mut header),
        Err(LinkError::Frame(FrameError::Oversized {
            max: HANDSHAKE_MAX_PAYLOAD,
            ..
        }))
    ));
    let mut hello = encode(Message::Hello {
        site: "s".repeat(64),
        to: "t".repeat(64),
        nonce: [1; NONCE_LEN],
        lane: Lane::Bulk,
        seal: true,
        incarnation: u64::MAX,
        resume: true,
    });
    assert!(LinkCodec::handshake()
        .decode(&mut hello)
        .expect("hello")
        .is_some());
    let mut whole = write.clone();
    assert!(session().decode(&mut whole).expect("after auth").is_some());
}

#[test]
fn a_stream_that_ends_inside_a_frame_says_so_in_words() {
    let whole = encode(Message::Ping);
    let mut cut = BytesMut::from(&whole[..whole.len() - 1]);
    let e = session().decode_eof(&mut cut).expect_err("cut off");
    assert_eq!(
        e.to_string(),
        format!(
            "the connection closed in the middle of a frame ({} of {} bytes arrived)",
            whole.len() - 1,
            whole.len()
        )
    );
    let mut header_only = BytesMut::from(&whole[..5]);
    let e = session().decode_eof(&mut header_only).expect_err("cut off");
    assert!(e.to_string().contains("(5 of 16 bytes arrived)"), "{e}");
    let mut clean = whole.clone();
    assert_eq!(
        session().decode_eof(&mut clean).expect("whole"),
        Some(Message::Ping)
    );
    assert_eq!(session().decode_eof(&mut clean).expect("end"), None);
}

#[test]
fn message_kinds_are_named() {
    let kinds: Vec<&str> = samples().iter().map(Message::kind).collect();
    assert_eq!(
        &kinds[..7],
        [
            "Hello",
            "Challenge",
            "Proof",
            "Welcome",
            "Refused",
            "Ping",
            "Request"
        ]
    );
    assert_eq!(kinds.last(), Some(&"Pong"));
}

#[test]
fn an_intact_frame_with_an_unknown_message_is_named() {
    let frame = FORMAT.encode(&[200u8], None).expect("frame");
    let mut unknown = BytesMut::from(&frame[..]);
    let e = session().decode(&mut unknown).expect_err("unknown");
    assert!(matches!(e, LinkError::Malformed(_)), "{e}");
    assert!(
        e.to_string().contains(&format!(
            "no link message of protocol version {}",
            FORMAT.version
        )),
        "{e}"
    );
    let oversized = FORMAT.max_payload as u32 + 1;
    let mut big = encode(Message::Ping);
    big[8..12].copy_from_slice(&oversized.to_le_bytes());
    assert!(matches!(
        session().decode(&mut big),
        Err(LinkError::Frame(FrameError::Oversized { .. }))
    ));
}
