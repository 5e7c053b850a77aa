//! Sealed frames against every message, every flipped bit, replays, skips,
//! other keys, lanes and directions, and key rotation.

use super::*;
use crate::link::tests::samples;
use crate::link::PeerRequest;

const PSK: &[u8] = b"0123456789abcdef0123456789abcdef";

fn transcript(lane: Lane) -> Transcript<'static> {
    Transcript {
        dialer: "prod",
        listener: "standby",
        dialer_nonce: &[1; NONCE_LEN],
        listener_nonce: &[2; NONCE_LEN],
        lane,
    }
}

/// The dialer's sealer and the listener's opener of one session.
fn session(lane: Lane) -> (Sealer, Opener) {
    let (sealer, _) = session_keys(PSK, &transcript(lane), Role::Dialer);
    let (_, opener) = session_keys(PSK, &transcript(lane), Role::Listener);
    (sealer, opener)
}

fn seal(sealer: &mut Sealer, msg: Message) -> BytesMut {
    let mut out = BytesMut::new();
    sealer.encode(msg, &mut out).expect("seal");
    out
}

fn write(len: usize) -> Message {
    Message::Request {
        id: 9,
        body: PeerRequest::Write {
            pair: "p".into(),
            offset: 4096,
            data: (0..len).map(|i| (i * 31) as u8).collect::<Vec<u8>>().into(),
        },
    }
}

fn open_one(opener: &mut Opener, frame: &[u8]) -> Result<Option<Message>, LinkError> {
    let mut buf = BytesMut::from(frame);
    opener.decode(&mut buf)
}

fn rejected(r: Result<Option<Message>, LinkError>) -> &'static str {
    match r {
        Err(e) => e.rejected().unwrap_or("not a rejection"),
        Ok(m) => panic!("accepted: {m:?}"),
    }
}

#[test]
fn every_message_round_trips_sealed_and_its_plaintext_is_not_on_the_wire() {
    let (mut sealer, mut opener) = session(Lane::Bulk);
    let mut messages = samples();
    messages.extend([write(1), write(4096), write(1 << 20)]);
    let mut stream = BytesMut::new();
    for msg in &messages {
        sealer.encode(msg.clone(), &mut stream).expect("seal");
    }
    // The pattern of the 1 MiB write appears nowhere on the wire.
    let pattern: Vec<u8> = (0..64).map(|i| (i * 31) as u8).collect();
    assert!(!stream.windows(64).any(|w| w == pattern.as_slice()));
    for msg in &messages {
        assert_eq!(
            opener.decode(&mut stream).expect("open").as_ref(),
            Some(msg)
        );
    }
    assert!(stream.is_empty());
}

#[test]
fn a_frame_arriving_in_pieces_waits_for_the_rest() {
    let (mut sealer, mut opener) = session(Lane::Heartbeat);
    let frame = seal(&mut sealer, write(4096));
    let mut buf = BytesMut::new();
    for byte in &frame[..frame.len() - 1] {
        buf.extend_from_slice(&[*byte]);
        assert!(opener.decode(&mut buf).expect("partial").is_none());
    }
    buf.extend_from_slice(&frame[frame.len() - 1..]);
    assert_eq!(opener.decode(&mut buf).expect("whole"), Some(write(4096)));
}

#[test]
fn every_flipped_bit_is_refused_and_nothing_is_decoded() {
    for msg in [Message::Ping, write(24)] {
        let (mut sealer, _) = session(Lane::Bulk);
        let frame = seal(&mut sealer, msg);
        for i in 0..frame.len() {
            for bit in 0..8 {
                let (_, mut opener) = session(Lane::Bulk);
                let mut bad = frame.to_vec();
                bad[i] ^= 1 << bit;
                match open_one(&mut opener, &bad) {
                    Ok(None) => assert!((8..12).contains(&i), "flip at {i}.{bit} waits"),
                    Ok(Some(m)) => panic!("flip at {i}.{bit} accepted: {m:?}"),
                    Err(e) => assert!(e.rejected().is_some(), "{e}"),
                }
            }
        }
    }
}

#[test]
fn replayed_and_skipped_frames_are_told_apart() {
    let (mut sealer, mut opener) = session(Lane::Bulk);
    let first = seal(&mut sealer, write(4096));
    let second = seal(&mut sealer, Message::Ping);
    let third = seal(&mut sealer, Message::Pong);
    assert!(open_one(&mut opener, &first).expect("first").is_some());
    assert_eq!(rejected(open_one(&mut opener, &first)), "replayed");
    assert_eq!(rejected(open_one(&mut opener, &third)), "skipped");
    assert!(open_one(&mut opener, &second).expect("second").is_some());
    let e = open_one(&mut opener, &first).expect_err("replay");
    assert!(e.to_string().contains("counter 0 where 2 was due"), "{e}");
}

#[test]
fn frames_of_another_key_lane_direction_or_session_do_not_open() {
    let (mut sealer, _) = session(Lane::Bulk);
    let frame = seal(&mut sealer, write(100));
    let other_psk = session_keys(b"another key", &transcript(Lane::Bulk), Role::Listener).1;
    let other_lane = session(Lane::Heartbeat).1;
    let own_direction = session_keys(PSK, &transcript(Lane::Bulk), Role::Dialer).1;
    let other_session = {
        let t = Transcript {
            listener_nonce: &[3; NONCE_LEN],
            ..transcript(Lane::Bulk)
        };
        session_keys(PSK, &t, Role::Listener).1
    };
    for mut opener in [other_psk, other_lane, own_direction, other_session] {
        assert_eq!(rejected(open_one(&mut opener, &frame)), "open_failed");
    }
}

#[test]
fn headers_are_judged_before_the_payload_arrives() {
    let (mut sealer, mut opener) = session(Lane::Bulk);
    let frame = seal(&mut sealer, Message::Ping);
    let plain = FORMAT.encode(b"a plain frame", None).expect("plain frame");
    assert_eq!(rejected(open_one(&mut opener, &plain)), "not_sealed");
    let mut big = frame[..HEADER_LEN].to_vec();
    big[8..12].copy_from_slice(&((FORMAT.max_payload + 1) as u32).to_le_bytes());
    assert_eq!(rejected(open_one(&mut opener, &big)), "oversized");
    let mut flags = frame[..HEADER_LEN].to_vec();
    flags[5] |= 0x80;
    assert_eq!(rejected(open_one(&mut opener, &flags)), "bad_header");
    let mut head = frame[..HEADER_LEN].to_vec();
    head[6] = 1;
    assert_eq!(rejected(open_one(&mut opener, &head)), "bad_header");
}

#[test]
fn keys_rotate_before_the_limits_and_old_frames_stay_refused() {
    let (sealer, mut opener) = session(Lane::Bulk);
    let mut sealer = sealer.with_limits(Limits {
        frames: 3,
        bytes: u64::MAX,
    });
    let mut frames = Vec::new();
    for i in 0..10 {
        let msg = if i % 2 == 0 {
            write(512)
        } else {
            Message::Ping
        };
        let frame = seal(&mut sealer, msg.clone());
        assert_eq!(open_one(&mut opener, &frame).expect("open"), Some(msg));
        frames.push(frame);
    }
    assert_eq!(sealer.generation(), 3);
    // Frame 4 had counter 1 under generation 1; counter 1 is due now under generation 3.
    assert_eq!(rejected(open_one(&mut opener, &frames[4])), "open_failed");
    let (sealer, mut opener) = session(Lane::Bulk);
    let mut sealer = sealer.with_limits(Limits {
        frames: u64::MAX,
        bytes: 8 << 10,
    });
    for _ in 0..5 {
        let frame = seal(&mut sealer, write(4096));
        assert!(open_one(&mut opener, &frame).expect("open").is_some());
    }
    assert_eq!(sealer.generation(), 2);
}

#[test]
fn a_large_write_opens_in_two_sections() {
    let (mut sealer, mut opener) = session(Lane::Bulk);
    let frame = seal(&mut sealer, write(256 << 10));
    let h = header(&frame).expect("header").expect("whole header");
    assert!(h.split());
    let mut head = frame[..h.head_end()].to_vec();
    let (w, sealed) = opener.open_head(&h, &mut head).expect("head");
    assert_eq!(sealed.counter(), 0);
    assert_eq!(
        (w.pair.as_str(), w.offset, w.data.len()),
        ("p", 4096, 256 << 10)
    );
    let mut data = frame[h.head_end()..h.frame_len() - TAG_LEN].to_vec();
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&frame[h.frame_len() - TAG_LEN..]);
    let mut bad = data.clone();
    bad[1000] ^= 1;
    assert_eq!(
        sealed.open(&mut bad, &tag).expect_err("altered").reason(),
        "open_failed"
    );
    let mut short = data[1..].to_vec();
    assert_eq!(
        sealed.open(&mut short, &tag).expect_err("short").reason(),
        "open_failed"
    );
    sealed.open(&mut data, &tag).expect("data");
    assert_eq!(
        Message::Request {
            id: w.id,
            body: PeerRequest::Write {
                pair: w.pair,
                offset: w.offset,
                data: data.into()
            }
        },
        write(256 << 10)
    );
}

/// Heads opened in order, data opened later on other threads: each data
/// section opens with its own frame's key generation, though the opener has
/// moved on past a rotation, and with no other frame's key or tag.
#[test]
fn data_sections_open_on_another_thread_after_later_heads_and_a_rotation() {
    let (sealer, mut opener) = session(Lane::Bulk);
    let mut sealer = sealer.with_limits(Limits {
        frames: 2,
        bytes: u64::MAX,
    });
    let mut pending = Vec::new();
    for i in 0..5 {
        let frame = seal(&mut sealer, write(100_000 + i));
        let h = header(&frame).expect("header").expect("whole header");
        let mut head = frame[..h.head_end()].to_vec();
        let (w, sealed) = opener.open_head(&h, &mut head).expect("head");
        let data = frame[h.head_end()..h.frame_len() - TAG_LEN].to_vec();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&frame[h.frame_len() - TAG_LEN..]);
        pending.push((w, sealed, data, tag));
    }
    assert_eq!(sealer.generation(), 2);
    // The next frame is due in order, with its data sections still sealed.
    let ping = seal(&mut sealer, Message::Ping);
    assert_eq!(
        open_one(&mut opener, &ping).expect("ping"),
        Some(Message::Ping)
    );
    // Another frame's key or tag does not open a data section.
    let (mut data0, tag1) = (pending[0].2.clone(), pending[1].3);
    assert_eq!(
        pending[0]
            .1
            .open(&mut data0, &tag1)
            .expect_err("tag")
            .reason(),
        "open_failed"
    );
    let mut data2 = pending[2].2.clone();
    assert_eq!(
        pending[0]
            .1
            .open(&mut data2, &pending[2].3)
            .expect_err("key")
            .reason(),
        "open_failed"
    );
    let opened = std::thread::spawn(move || {
        pending
            .into_iter()
            .map(|(w, sealed, mut data, tag)| {
                sealed
                    .open(&mut data, &tag)
                    .map(|()| w.into_message(data.into()))
            })
            .collect::<Vec<_>>()
    })
    .join()
    .expect("thread");
    for (i, msg) in opened.into_iter().enumerate() {
        assert_eq!(msg, Ok(write(100_000 + i)));
    }
}
