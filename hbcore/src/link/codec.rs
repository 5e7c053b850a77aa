//! [`LinkCodec`]: [`Message`]s as `HBLK` frames on a byte stream, with a
//! small frame limit until the peer has proved its key, and the split
//! encoding that leaves a write's data out of the buffer for a vectored
//! write. Each session's reader and writers hold their own copy (it is `Copy`).

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::{zero_copy, Message, FORMAT};
use crate::frame::{Format, FrameError};

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
    /// A frame of a sealed session refused.
    #[error(transparent)]
    Rejected(#[from] super::rejection::Rejection),
}

impl LinkError {
    /// Why a frame was refused, in one fixed word (`link_frames_rejected{reason}`);
    /// `None` for a socket failure or an encoding error of this side.
    pub fn rejected(&self) -> Option<&'static str> {
        match self {
            LinkError::Rejected(r) => Some(r.reason()),
            LinkError::ClosedMidFrame { .. } => Some("truncated"),
            LinkError::Malformed(_) => Some("malformed"),
            LinkError::Frame(FrameError::Oversized { .. }) => Some("oversized"),
            LinkError::Frame(FrameError::Io(_)) | LinkError::Encode(_) => None,
            LinkError::Frame(_) => Some("bad_header"),
        }
    }
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
    /// The frame format and its size limit now (`zero_copy` reads it too).
    pub(super) format: Format,
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
    /// [`PeerRequest::Write`](super::PeerRequest::Write), which it hands back: on the wire that data
    /// follows `dst`, so one vectored write sends the frame without copying
    /// the data. Together they are byte for byte the frame
    /// [`Encoder::encode`] makes; the payload is serialized straight into
    /// `dst` (no intermediate buffer). On an error `dst` is as it was.
    pub fn encode_split(&self, msg: Message, dst: &mut BytesMut) -> Result<Bytes, LinkError> {
        let (msg, tail) = super::payload::split_write(msg);
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
        super::payload::serialize_head(msg, tail.len(), dst)?;
        let body = start + crate::frame::HEADER_LEN;
        let header = self.format.header_of(&[&dst[body..], tail])?;
        dst[start..body].copy_from_slice(&header);
        Ok(())
    }
}
