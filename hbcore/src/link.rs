//! What travels on the remote link between two mirrords: [`Message`]s,
//! each a postcard payload in an `HBLK` frame ([`crate::frame`]), through
//! [`LinkCodec`].

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio_util::codec::{Decoder, Encoder};

use crate::control::IntegrityOptions;
use crate::frame::{Format, FrameError};
use crate::vocab::{Kind, PairSettings, PairState};

mod zero_copy;
pub use zero_copy::WriteHead;

/// The link's frames.
pub const FORMAT: Format = Format {
    magic: *b"HBLK",
    // 4: the copy rates appended to PairSettings (Attach, SetSettings).
    version: 4,
    // A copy chunk of 1 MiB plus room.
    max_payload: 4 << 20,
    signed: false,
};

/// Length of handshake nonces.
pub const NONCE_LEN: usize = 32;

/// One message of the link protocol (version [`FORMAT`]`.version`).
///
/// The handshake is `Hello` → `Challenge` → `Proof` → `Welcome` (or
/// `Refused` at any step); then both sides send `Request`s, `Response`s and
/// `Ping`s in any order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Dialer: who I am, whom I expect, and a fresh nonce.
    Hello {
        /// Dialer's site.
        site: String,
        /// Site the dialer expects to reach.
        to: String,
        /// Dialer's nonce.
        nonce: [u8; NONCE_LEN],
        /// Which of the two connections between the sites this is.
        lane: Lane,
    },
    /// Listener: my nonce, and proof that I hold the key.
    Challenge {
        /// Listener's site.
        site: String,
        /// Listener's nonce.
        nonce: [u8; NONCE_LEN],
        /// HMAC-SHA256 proof of the listener.
        proof: Vec<u8>,
    },
    /// Dialer: proof that I hold the key.
    Proof {
        /// HMAC-SHA256 proof of the dialer.
        proof: Vec<u8>,
    },
    /// Listener: authenticated; the session is open.
    Welcome,
    /// Either side: the connection is refused, and why.
    Refused {
        /// The reason, for the other side's log.
        reason: String,
    },
    /// Keeps a quiet link observably alive.
    Ping,
    /// A request that expects one `Response` with the same id.
    Request {
        /// Chosen by the sender, unique per session.
        id: u64,
        /// What is asked.
        body: PeerRequest,
    },
    /// The answer to the `Request` with this id.
    Response {
        /// The request's id.
        id: u64,
        /// The answer, or why it was refused.
        result: Result<PeerReply, PeerError>,
    },
    /// The answer to a `Ping`, by which the sender measures the link's round trip.
    Pong,
}

impl Message {
    /// The message's kind by name, for log lines (`Hello`, `Request`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "Hello",
            Message::Challenge { .. } => "Challenge",
            Message::Proof { .. } => "Proof",
            Message::Welcome => "Welcome",
            Message::Refused { .. } => "Refused",
            Message::Ping => "Ping",
            Message::Request { .. } => "Request",
            Message::Response { .. } => "Response",
            Message::Pong => "Pong",
        }
    }
}

/// The two connections between a pair of sites (seed Fig 1: the heartbeat
/// mirrors' remote link 150 beside the data link 151). Every request about
/// a pair travels on its kind's lane, so a heartbeat write never waits
/// behind the copy frames of a data pair, and a pair's requests keep their
/// order on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Lane {
    /// Data pairs: host writes, initial copies, resyncs, adaptive shipping.
    Bulk,
    /// Heartbeat pairs only: small writes that must not wait.
    Heartbeat,
}

impl Lane {
    /// Both lanes.
    pub const ALL: [Lane; 2] = [Lane::Bulk, Lane::Heartbeat];

    /// The lane of a pair of this kind.
    pub fn of(kind: Kind) -> Lane {
        match kind {
            Kind::Heartbeat => Lane::Heartbeat,
            Kind::Data => Lane::Bulk,
        }
    }
}

impl std::fmt::Display for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Lane::Bulk => "bulk",
            Lane::Heartbeat => "heartbeat",
        })
    }
}

/// What one site asks of its peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Attach (or re-attach) an SVOL here for a pair whose PVOL is at the sender.
    Attach(Attach),
    /// Apply a write to the SVOL of `pair`.
    Write {
        /// Pair name.
        pair: String,
        /// Byte offset.
        offset: u64,
        /// The bytes (postcard's byte string, as `serde_bytes` wrote it):
        /// shared, so the decoder hands out a slice of the frame and a
        /// sender a pooled buffer, neither copied.
        data: Bytes,
    },
    /// The pair's state or settings changed at the sender; follow.
    Update {
        /// Pair name.
        pair: String,
        /// New state (entering COPY as SVOL clears its bitmap: the PVOL merged it).
        state: Option<PairState>,
        /// New settings.
        settings: Option<PairSettings>,
    },
    /// Send me your dirty bitmap (before a resync merges it).
    TakeBitmap {
        /// Pair name.
        pair: String,
    },
    /// SVOL site to PVOL site: split the pair (drain what is pending, then PSUS).
    Split {
        /// Pair name.
        pair: String,
    },
    /// SVOL site to PVOL site: resync from the PVOL.
    Resync {
        /// Pair name.
        pair: String,
    },
    /// SVOL site to PVOL site: the SVOL was taken over (SSWS).
    Takeover {
        /// Pair name.
        pair: String,
    },
    /// Taken-over site to old PVOL site: become the SVOL; answer with your bitmap.
    Reverse {
        /// Pair name.
        pair: String,
    },
    /// Dissolve the pair (the volumes stay).
    Detach {
        /// Pair name.
        pair: String,
    },
    // Variants below were added after version 2 shipped: appended, so the
    // encodings above keep their indices and version 2 peers still agree.
    /// Compare generations (at every (re)connect and resync): here are
    /// mine; answer with yours ([`PeerReply::Generations`]).
    Generations {
        /// Pair name.
        pair: String,
        /// The sender's generations of the pair.
        generations: Generations,
        /// Blocks the sender's dirty bitmap holds.
        dirty_blocks: u64,
    },
    /// PVOL site to SVOL site: the copy is complete; the SVOL's data is of
    /// this generation now, shared by both sites.
    Join {
        /// Pair name.
        pair: String,
        /// The PVOL's current generation.
        generation: u64,
    },
    /// Digests of `count` blocks of 4 KiB from block `first` of the
    /// receiver's volume of the pair ([`PeerReply::Digests`]).
    Digests {
        /// Pair name.
        pair: String,
        /// First block.
        first: u64,
        /// Number of blocks (at most [`MAX_DIGEST_BLOCKS`]).
        count: u32,
    },
    /// The pair's integrity options changed at the sender; follow.
    Options {
        /// Pair name.
        pair: String,
        /// The new options.
        options: IntegrityOptions,
    },
    /// A person chose the receiver's data (`pair resync --discard-local` at
    /// the sender): resync from the receiver's side, which becomes the PVOL
    /// if it is not.
    KeepYours {
        /// Pair name.
        pair: String,
    },
}

/// Most blocks one [`PeerRequest::Digests`] asks for (1 MiB of volume).
pub const MAX_DIGEST_BLOCKS: u32 = 256;

/// A pair's generation identifiers at one site, in the spirit of DRBD's
/// UUIDs (mirrord's `generation` module says how they change and compares two).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generations {
    /// The generation of the data this site holds; `None` while it is the
    /// target of a copy not yet complete (no consistent data of its own).
    pub current: Option<u64>,
    /// The generation both sites last shared, from which this site's dirty
    /// bitmap counts its own changes; `None` while it wrote nothing on its own.
    pub bitmap: Option<u64>,
    /// Older generations, newest first.
    pub history: Vec<u64>,
}

/// The identity of a pair, as the PVOL's site asks the peer to attach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attach {
    /// Pair name.
    pub pair: String,
    /// PVOL name at the sender.
    pub pvol: String,
    /// SVOL name at the receiver.
    pub svol: String,
    /// PVOL size; the SVOL must have exactly this size.
    pub size: u64,
    /// Heartbeat or data.
    pub kind: Kind,
    /// Mode and the other settings.
    pub settings: PairSettings,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerReply {
    /// Done.
    Done,
    /// The SVOL is attached; the state it had before this request.
    Attached {
        /// SVOL-side state before the attach (`SMPL` if it was new).
        previous: PairState,
    },
    /// A dirty bitmap.
    Bitmap {
        /// One bit per 4 KiB block.
        #[serde(with = "serde_bytes")]
        bits: Vec<u8>,
    },
    // Appended after version 2 (see `PeerRequest`).
    /// The answer to [`PeerRequest::Generations`].
    Generations {
        /// The receiver's generations of the pair.
        generations: Generations,
        /// Blocks its dirty bitmap holds (its changes the other side lacks).
        dirty_blocks: u64,
        /// The pair's state at the receiver.
        state: PairState,
    },
    /// The answer to [`PeerRequest::Digests`]: XXH3-128 of each block, in order.
    Digests {
        /// One digest per block.
        digests: Vec<u128>,
    },
}

/// Why the peer refused or failed a request: a kind the asking side can
/// match, with the detail for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PeerError {
    /// The peer has no such pair (or it belongs to another site).
    #[error("site has no pair '{pair}' for this peer")]
    NoSuchPair {
        /// Pair name.
        pair: String,
    },
    /// The pair is in a state that does not allow the request.
    #[error("pair '{pair}' is {state} there: {detail}")]
    WrongState {
        /// Pair name.
        pair: String,
        /// Its state at the peer.
        state: PairState,
        /// What was asked and what to do.
        detail: String,
    },
    /// The peer's volume failed to read or write.
    #[error("disk error at the peer: {detail}")]
    Disk {
        /// The volume, offset and OS error.
        detail: String,
    },
    /// Refused for another reason (a name clash, a size mismatch, a protection).
    #[error("{detail}")]
    Refused {
        /// Why, and the way out.
        detail: String,
    },
}

/// Why a link frame could not be decoded into a [`Message`].
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The frame itself is bad (or the socket failed).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// An intact frame whose payload is no message of this version.
    #[error(
        "an intact frame that holds no link message of protocol version {}: an unknown \
         message kind or field value (is the other end a mirrord of the same release?)",
        FORMAT.version
    )]
    Malformed(#[source] postcard::Error),
    /// The stream ended inside a frame.
    #[error("the connection closed in the middle of a frame ({have} of {need} bytes arrived)")]
    ClosedMidFrame {
        /// Bytes of the frame that arrived.
        have: usize,
        /// Bytes the frame needs (the header's length, or just the header when it is incomplete).
        need: usize,
    },
    /// A message this side could not encode.
    #[error("cannot encode a link message")]
    Encode(#[source] postcard::Error),
}

impl From<std::io::Error> for LinkError {
    fn from(e: std::io::Error) -> LinkError {
        LinkError::Frame(FrameError::Io(e))
    }
}

/// Largest payload accepted before the handshake completes: handshake
/// messages are a few hundred bytes, so an unauthenticated peer can make
/// mirrord buffer at most this much per connection.
pub const HANDSHAKE_MAX_PAYLOAD: usize = 4 << 10;

/// Encodes and decodes [`Message`]s as `HBLK` frames on a byte stream.
///
/// A new codec accepts only handshake-sized frames; [`LinkCodec::authenticated`]
/// lifts the limit to the link's full frame size once the peer has proved its key.
#[derive(Debug, Clone, Copy)]
pub struct LinkCodec {
    format: Format,
}

impl Default for LinkCodec {
    fn default() -> LinkCodec {
        LinkCodec::handshake()
    }
}

impl LinkCodec {
    /// For a connection whose peer has not authenticated yet.
    pub fn handshake() -> LinkCodec {
        LinkCodec {
            format: Format {
                max_payload: HANDSHAKE_MAX_PAYLOAD,
                ..FORMAT
            },
        }
    }

    /// Lifts the frame limit to the full size, after authentication.
    pub fn authenticated(&mut self) {
        self.format = FORMAT;
    }

    /// The largest payload accepted now.
    pub fn max_payload(&self) -> usize {
        self.format.max_payload
    }
}

impl Decoder for LinkCodec {
    type Item = Message;
    type Error = LinkError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, LinkError> {
        let Some(len) = self.format.check_header(src)? else {
            return Ok(None);
        };
        if src.len() < len {
            src.reserve(len - src.len());
            return Ok(None);
        }
        let frame = src.split_to(len).freeze();
        let payload = self.format.open(&frame, None)?;
        if let Some(write) = zero_copy::write(&frame, payload) {
            return Ok(Some(write));
        }
        let message = postcard::from_bytes(payload).map_err(LinkError::Malformed)?;
        Ok(Some(message))
    }

    /// Names a frame cut off by the end of the stream (the default says
    /// only "bytes remaining on stream").
    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Message>, LinkError> {
        match self.decode(src)? {
            Some(message) => Ok(Some(message)),
            None if src.is_empty() => Ok(None),
            None => Err(LinkError::ClosedMidFrame {
                have: src.len(),
                need: self
                    .format
                    .check_header(src)
                    .ok()
                    .flatten()
                    .unwrap_or(crate::frame::HEADER_LEN),
            }),
        }
    }
}

impl Encoder<Message> for LinkCodec {
    type Error = LinkError;

    fn encode(&mut self, msg: Message, dst: &mut BytesMut) -> Result<(), LinkError> {
        let tail = self.encode_split(msg, dst)?;
        dst.extend_from_slice(&tail);
        Ok(())
    }
}

impl LinkCodec {
    /// Appends the frame of `msg` to `dst`, all but the data of a
    /// [`PeerRequest::Write`], which it hands back: on the wire that data
    /// follows `dst`, so one vectored write sends the frame without copying
    /// the data. Together they are byte for byte the frame
    /// [`Encoder::encode`] makes; the payload is serialized straight into
    /// `dst` (no intermediate buffer). On an error `dst` is as it was.
    pub fn encode_split(&self, msg: Message, dst: &mut BytesMut) -> Result<Bytes, LinkError> {
        let (msg, tail) = match msg {
            Message::Request {
                id,
                body: PeerRequest::Write { pair, offset, data },
            } => (
                Message::Request {
                    id,
                    body: PeerRequest::Write {
                        pair,
                        offset,
                        data: Bytes::new(),
                    },
                },
                data,
            ),
            other => (other, Bytes::new()),
        };
        let start = dst.len();
        let framed = self.frame_into(&msg, &tail, dst);
        if framed.is_err() {
            dst.truncate(start);
        }
        framed.map(|()| tail)
    }

    fn frame_into(&self, msg: &Message, tail: &[u8], dst: &mut BytesMut) -> Result<(), LinkError> {
        use bytes::BufMut;
        let start = dst.len();
        dst.put_bytes(0, crate::frame::HEADER_LEN);
        postcard::to_io(msg, (&mut *dst).writer()).map_err(LinkError::Encode)?;
        if !tail.is_empty() {
            // The data is the message's last field, so its postcard form
            // ends the payload: the length (a varint, 0 as serialized
            // above), then the bytes, which follow on the wire.
            if dst.last() != Some(&0) {
                return Err(LinkError::Encode(postcard::Error::SerdeSerCustom));
            }
            dst.truncate(dst.len() - 1);
            let mut len = tail.len();
            while len >= 0x80 {
                dst.put_u8((len as u8) | 0x80);
                len >>= 7;
            }
            dst.put_u8(len as u8);
        }
        let body = start + crate::frame::HEADER_LEN;
        let header = self.format.header_of(&[&dst[body..], tail])?;
        dst[start..body].copy_from_slice(&header);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::{Fence, Mode};

    fn samples() -> Vec<Message> {
        let pair = || "p".to_string();
        vec![
            Message::Hello {
                site: "prod".into(),
                to: "standby".into(),
                nonce: [7; 32],
                lane: Lane::Heartbeat,
            },
            Message::Challenge {
                site: "standby".into(),
                nonce: [9; 32],
                proof: vec![1; 32],
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
                    6u8, 1, 0, 1, 112, 1, 97, 1, 98, 128, 128, 64, 0, 2, 0, 128, 128, 128, 2, 1, 1,
                    0, 128, 128, 128, 2,
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
}
