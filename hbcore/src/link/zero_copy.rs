//! A [`PeerRequest::Write`] decoded with its data a slice of the frame, not
//! a copy: postcard can only copy bytes into a `Bytes`, so the write's
//! prefix is parsed here by postcard's rules, and everything else (and
//! every payload postcard would refuse) is left to postcard.

use std::sync::LazyLock;

use bytes::Bytes;

use super::{LinkError, Message, PeerRequest};
use crate::frame::HEADER_LEN;

/// The variant indices that start a [`PeerRequest::Write`]'s payload
/// (`Message::Request`, then `PeerRequest::Write` after the id), taken from
/// postcard's own encoding of one, so they follow the enums' order.
static WRITE_TAGS: LazyLock<Option<(u8, u8)>> = LazyLock::new(|| {
    let sample = Message::Request {
        id: 0,
        body: PeerRequest::Write {
            pair: String::new(),
            offset: 0,
            data: Bytes::new(),
        },
    };
    // Indices under 128 are one varint byte: [request, id 0, write, "", 0, len 0].
    match postcard::to_allocvec(&sample).ok()?[..] {
        [request, 0, write, 0, 0, 0] => Some((request, write)),
        _ => None,
    }
});

/// A postcard varint of at most `max_len` bytes whose last byte is at most
/// `max_last`, as postcard reads one (non-minimal forms accepted).
fn varint(payload: &[u8], at: &mut usize, max_len: usize, max_last: u8) -> Option<u64> {
    let mut out = 0u64;
    for i in 0..max_len {
        let byte = *payload.get(*at)?;
        *at += 1;
        out |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return (i + 1 < max_len || byte <= max_last).then_some(out);
        }
    }
    None
}

/// A u64 (or, on 64-bit targets, usize) varint.
fn varint_u64(payload: &[u8], at: &mut usize) -> Option<u64> {
    varint(payload, at, 10, 1)
}

/// `n` bytes at `at`, advancing past them.
fn take(payload: &[u8], at: &mut usize, n: u64) -> Option<std::ops::Range<usize>> {
    let end = at.checked_add(usize::try_from(n).ok()?)?;
    (end <= payload.len()).then(|| std::mem::replace(at, end)..end)
}

/// What a write's payload says before its data: enough to place the data
/// before it has arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteHead {
    /// Request id.
    pub id: u64,
    /// Pair name.
    pub pair: String,
    /// Byte offset.
    pub offset: u64,
    /// Where the data lies in the payload (it may reach past what has arrived).
    pub data: std::ops::Range<usize>,
}

impl WriteHead {
    /// The request, with `data` as its bytes.
    pub fn into_message(self, data: Bytes) -> Message {
        Message::Request {
            id: self.id,
            body: PeerRequest::Write {
                pair: self.pair,
                offset: self.offset,
                data,
            },
        }
    }
}

/// The head of a write request from the start of its payload (`partial`
/// may end anywhere after the data's length), by postcard's rules. `None`
/// for any other message and anything postcard would refuse.
pub(super) fn head(partial: &[u8]) -> Option<WriteHead> {
    let (request, write) = (*WRITE_TAGS)?;
    let mut at = 0;
    // Variant indices are u32 varints: at most 5 bytes, the last under 16.
    if varint(partial, &mut at, 5, 0x0f)? != u64::from(request) {
        return None;
    }
    let id = varint_u64(partial, &mut at)?;
    if varint(partial, &mut at, 5, 0x0f)? != u64::from(write) {
        return None;
    }
    let len = varint_u64(partial, &mut at)?;
    let pair = std::str::from_utf8(&partial[take(partial, &mut at, len)?]).ok()?;
    let offset = varint_u64(partial, &mut at)?;
    let len = usize::try_from(varint_u64(partial, &mut at)?).ok()?;
    Some(WriteHead {
        id,
        pair: pair.to_string(),
        offset,
        data: at..at.checked_add(len)?,
    })
}

/// A write request decoded with its data a slice of `frame` rather than a
/// copy (postcard can only copy into a `Bytes`). `payload` lies in `frame`.
/// `None` for any other message and for any payload postcard would refuse:
/// the caller then decodes it with postcard, so results and errors are
/// postcard's in every case.
pub(super) fn write(frame: &Bytes, payload: &[u8]) -> Option<Message> {
    let head = head(payload)?;
    // Like postcard, bytes after the message are ignored.
    if head.data.end > payload.len() {
        return None;
    }
    let start = (payload.as_ptr() as usize).checked_sub(frame.as_ptr() as usize)?;
    let data = frame.slice(start + head.data.start..start + head.data.end);
    Some(head.into_message(data))
}

impl super::LinkCodec {
    /// If `buf` starts with a frame holding a write whose data is longer
    /// than `min` bytes and has not all arrived: the write's head and the
    /// whole frame's length. A reader can then read the data straight into
    /// a buffer of its own and check the frame with
    /// [`LinkCodec::check_split`](super::LinkCodec::check_split). `None` for
    /// anything else, which the decoder takes as usual; `Err` for a bad
    /// header, as the decoder would say.
    pub fn large_write(
        &self,
        buf: &[u8],
        min: usize,
    ) -> Result<Option<(WriteHead, usize)>, LinkError> {
        let Some(need) = self.format.check_header(buf)? else {
            return Ok(None);
        };
        if self.format.signed || buf.len() >= need {
            return Ok(None);
        }
        let Some(head) = head(&buf[HEADER_LEN..]) else {
            return Ok(None);
        };
        // Only data that ends the payload (postcard would ignore bytes after it).
        if head.data.end != need - HEADER_LEN || head.data.len() <= min {
            return Ok(None);
        }
        Ok(Some((head, need)))
    }

    /// Checks a frame that arrived in two parts, `head` (its header and its
    /// payload up to a write's data) and `data`, as the decoder checks one.
    pub fn check_split(&self, head: &[u8], data: &[u8]) -> Result<(), LinkError> {
        Ok(self.format.check_parts(head, data)?)
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use tokio_util::codec::Decoder;

    use super::super::tests::session;
    use super::super::{LinkError, FORMAT};
    use super::*;
    use crate::frame::HEADER_LEN;

    /// What postcard alone makes of `payload`, and what the codec makes of
    /// its frame (with the zero-copy path for writes).
    fn both_ways(
        payload: &[u8],
    ) -> (
        Result<Message, postcard::Error>,
        Result<Message, postcard::Error>,
    ) {
        let frame = FORMAT.encode(payload, None).expect("frame");
        let mut buf = BytesMut::from(&frame[..]);
        let codec = match session().decode(&mut buf) {
            Ok(Some(msg)) => Ok(msg),
            Err(LinkError::Malformed(e)) => Err(e),
            other => panic!("a whole intact frame: {other:?}"),
        };
        (postcard::from_bytes(payload), codec)
    }

    fn write_of(id: u64, pair: &str, offset: u64, len: usize) -> Message {
        Message::Request {
            id,
            body: PeerRequest::Write {
                pair: pair.into(),
                offset,
                data: (0..len).map(|i| (i * 7) as u8).collect::<Vec<u8>>().into(),
            },
        }
    }

    #[test]
    fn the_tags_of_a_write_are_postcards() {
        assert_eq!(
            *WRITE_TAGS,
            Some((6, 1)),
            "Message::Request, PeerRequest::Write"
        );
        // And a write's bytes are those its `serde_bytes` Vec<u8> had:
        // index, id, index, "p", offset 4096, then length 3 and the data.
        let payload = postcard::to_allocvec(&write_of(9, "p", 4096, 3)).expect("encode");
        assert_eq!(payload, [6, 9, 1, 1, b'p', 0x80, 0x20, 3, 0, 7, 14]);
    }

    #[test]
    fn a_decoded_write_is_postcards_with_its_data_in_the_frame() {
        let long = "x".repeat(200);
        let mut count = 0;
        for pair in ["", "p", "pärchen-01", &long] {
            for (id, offset) in [(0, 0), (127, 128), (128, 1 << 33), (u64::MAX, u64::MAX)] {
                for len in [0, 1, 127, 128, 4096, 16_384, 1 << 20] {
                    let msg = write_of(id, pair, offset, len);
                    let payload = postcard::to_allocvec(&msg).expect("encode");
                    let frame = Bytes::from(FORMAT.encode(&payload, None).expect("frame"));
                    let at = HEADER_LEN;
                    let fast = write(&frame, &frame[at..at + payload.len()]);
                    assert_eq!(fast.as_ref(), Some(&msg), "{pair} {offset} {len}");
                    // Through the codec, from a stream buffer: data points into it.
                    let mut buf = BytesMut::from(&frame[..]);
                    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
                    let got = session().decode(&mut buf).expect("decode");
                    assert_eq!(got.as_ref(), Some(&msg));
                    let Some(Message::Request {
                        body: PeerRequest::Write { data, .. },
                        ..
                    }) = got
                    else {
                        unreachable!("compared above")
                    };
                    if len > 0 {
                        assert!(range.contains(&(data.as_ptr() as usize)), "not copied");
                    }
                    count += 1;
                }
            }
        }
        assert_eq!(count, 4 * 4 * 7);
    }

    #[test]
    fn a_bad_or_odd_write_payload_decodes_as_postcard_decodes_it() {
        let payload = postcard::to_allocvec(&write_of(300, "pair", 4096, 200)).expect("encode");
        let mut cases: Vec<Vec<u8>> = Vec::new();
        // Truncated anywhere (a short varint, name or data).
        cases.extend((0..payload.len()).map(|n| payload[..n].to_vec()));
        // Trailing bytes, which postcard ignores.
        cases.push([&payload[..], &[1, 2, 3]].concat());
        // The data's length claims more than there is (200 → 201, 2-byte varint at 11).
        let mut overlong = payload.clone();
        assert_eq!(&overlong[11..13], &[0xc8, 0x01]);
        overlong[11] = 0xc9;
        cases.push(overlong);
        // Non-minimal varints (accepted), an 11-byte one and one too big for
        // its last byte (refused), an unknown body, a name that is not UTF-8.
        cases.push(vec![
            6, 0x81, 0x00, 1, 0x81, 0x00, b'p', 0x80, 0x00, 2, 9, 9,
        ]);
        cases.push([&[6u8][..], &[0xff; 10], &[0, 1, 1, b'p', 0, 0]].concat());
        cases.push([&[6u8][..], &[0xff; 9], &[2, 1, 1, b'p', 0, 0]].concat());
        cases.push(vec![6, 0, 0x81, 0x80, 0x80, 0x80, 0x10, 1, b'p', 0, 0]);
        cases.push(vec![6, 0, 1, 2, 0xc3, 0x28, 0, 1, 5]);
        cases.push(vec![6, 0, 99, 1, b'p', 0, 0]);
        // Bits flipped across the prefix.
        for i in 0..12 {
            for bit in 0..8 {
                let mut flipped = payload.clone();
                flipped[i] ^= 1 << bit;
                cases.push(flipped);
            }
        }
        let (mut ok, mut refused) = (0, 0);
        for case in &cases {
            let (postcard, codec) = both_ways(case);
            assert_eq!(codec, postcard, "{case:?}");
            if postcard.is_ok() {
                ok += 1;
            } else {
                refused += 1;
            }
        }
        assert!(ok > 10 && refused > 30, "{ok} accepted, {refused} refused");
    }
}
