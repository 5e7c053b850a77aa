//! One frame layout for everything that crosses a wire or a volume: the
//! remote link (`HBLK`, between mirrords) and the heartbeat message (`HBBT`,
//! a UDP datagram or a 4 KiB slot on a heartbeat volume).
//!
//! ```text
//!  0      4       5       6        8          12          16
//!  │magic │version│ flags │reserved│ len (LE) │crc32c (LE)│ payload (len bytes) │ [HMAC-SHA256, 32] │
//! ```
//! The CRC32C covers bytes 0..12 of the header and the payload, and tells a
//! damaged or torn frame. A [`Format`] that is `signed` (the heartbeat) adds
//! the HMAC-SHA256 tag of header and payload ([`crate::auth`]); the link is
//! authenticated once per connection instead, by its handshake.
//!
//! A frame with a bad magic, another version, a length over the format's
//! limit, a bad CRC or a bad tag is an error; what the payload means is the
//! caller's business (see [`crate::link::LinkCodec`] and hbd's message).

use bytes::BufMut;

use crate::auth;

/// Header length.
pub const HEADER_LEN: usize = 16;

/// A kind of frame: its magic, version and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// Magic bytes at the start of every frame.
    pub magic: [u8; 4],
    /// Version spoken by this build.
    pub version: u8,
    /// Largest payload accepted.
    pub max_payload: usize,
    /// Whether each frame carries an HMAC tag.
    pub signed: bool,
}

/// A frame that cannot be accepted.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed (only from stream codecs).
    #[error("link I/O failed")]
    Io(#[from] std::io::Error),
    /// Not a frame of this format (or an empty, never-written slot).
    #[error("bad frame magic {got:02x?} (expected {:?}): the sender does not speak this protocol", String::from_utf8_lossy(.expected))]
    BadMagic {
        /// The format's magic.
        expected: [u8; 4],
        /// What arrived.
        got: [u8; 4],
    },
    /// Another version of the protocol.
    #[error("frame version {got} is not supported (this build speaks version {speaks}); run the same hbmirror release at both ends")]
    Version {
        /// Version that arrived.
        got: u8,
        /// Version this build speaks.
        speaks: u8,
    },
    /// Flags or reserved bytes set: no release so far sets them.
    #[error("frame flags/reserved bytes {got:02x?} are not zero: the sender is another release or not this protocol")]
    Reserved {
        /// Bytes 5..8 of the header.
        got: [u8; 3],
    },
    /// Longer than any legitimate frame.
    #[error("frame payload of {len} bytes exceeds the limit of {max}")]
    Oversized {
        /// Length stated or asked for.
        len: usize,
        /// The format's limit.
        max: usize,
    },
    /// Shorter than its own header says.
    #[error("frame of {have} bytes is shorter than the {need} its header states")]
    Short {
        /// Bytes present.
        have: usize,
        /// Bytes the header needs.
        need: usize,
    },
    /// Damaged in transit, or torn by a concurrent write.
    #[error("frame CRC32C mismatch (computed {computed:#010x}, frame says {stated:#010x}): damaged or torn")]
    Crc {
        /// CRC of what arrived.
        computed: u32,
        /// CRC the frame carried.
        stated: u32,
    },
    /// Signed with another key.
    #[error(
        "frame HMAC mismatch: the sender uses another key (use the same psk_file at both ends)"
    )]
    Mac,
    /// A signed format was used without a key.
    #[error("a signed frame format needs a key")]
    NoKey,
}

fn crc(header: &[u8], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&header[..12]), payload)
}

impl Format {
    /// Bytes a frame with `payload_len` bytes of payload takes.
    pub fn frame_len(&self, payload_len: usize) -> usize {
        HEADER_LEN + payload_len + if self.signed { auth::TAG_LEN } else { 0 }
    }

    /// Largest payload whose frame fits in `bytes` (0 if not even a header does).
    pub const fn payload_room(bytes: usize, signed: bool) -> usize {
        bytes.saturating_sub(HEADER_LEN + if signed { auth::TAG_LEN } else { 0 })
    }

    /// Appends the frame of `payload` to `dst` (signed with `key` if the format is).
    pub fn encode_into(
        &self,
        payload: &[u8],
        key: Option<&[u8]>,
        dst: &mut impl BufMut,
    ) -> Result<(), FrameError> {
        let tag = match (self.signed, key) {
            (false, _) => None,
            (true, None) => return Err(FrameError::NoKey),
            (true, Some(key)) => Some(key),
        };
        let header = self.header_of(&[payload])?;
        dst.put_slice(&header);
        dst.put_slice(payload);
        if let Some(key) = tag {
            dst.put_slice(&auth::sign_concat(key, &[&header, payload]));
        }
        Ok(())
    }

    /// The header of a frame whose payload is `parts`, one after the other:
    /// a caller can send header and parts with one vectored write and copy
    /// none of them. (A signed format's tag still has to follow.)
    pub fn header_of(&self, parts: &[&[u8]]) -> Result<[u8; HEADER_LEN], FrameError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > self.max_payload {
            return Err(FrameError::Oversized {
                len,
                max: self.max_payload,
            });
        }
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(&self.magic);
        header[4] = self.version;
        header[8..12].copy_from_slice(&(len as u32).to_le_bytes());
        let sum = parts
            .iter()
            .fold(crc32c::crc32c(&header[..12]), |sum, part| {
                crc32c::crc32c_append(sum, part)
            });
        header[12..16].copy_from_slice(&sum.to_le_bytes());
        Ok(header)
    }

    /// The frame of `payload`.
    pub fn encode(&self, payload: &[u8], key: Option<&[u8]>) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::new();
        self.encode_into(payload, key, &mut out)?;
        Ok(out)
    }

    /// Checks an unsigned frame that arrived in two parts, `head` (the header
    /// and the start of the payload) and `rest` (the rest of the payload), as
    /// [`Format::open`] checks a whole one: a reader can put the rest where
    /// it is wanted rather than after the head. A signed format is refused
    /// ([`FrameError::NoKey`]): its tag would have to be read too.
    pub fn check_parts(&self, head: &[u8], rest: &[u8]) -> Result<(), FrameError> {
        if self.signed {
            return Err(FrameError::NoKey);
        }
        let have = head.len() + rest.len();
        let need = self.check_header(head)?.ok_or(FrameError::Short {
            have,
            need: HEADER_LEN,
        })?;
        if have != need {
            return Err(FrameError::Short { have, need });
        }
        let stated = u32::from_le_bytes([head[12], head[13], head[14], head[15]]);
        let computed = crc32c::crc32c_append(crc(head, &head[HEADER_LEN..]), rest);
        if computed != stated {
            return Err(FrameError::Crc { computed, stated });
        }
        Ok(())
    }

    /// Checks the header at the start of `bytes` and returns the whole
    /// frame's length, or `None` while fewer than [`HEADER_LEN`] bytes are
    /// there. Bad magic, version or length are errors at once, before any
    /// payload is buffered.
    pub fn check_header(&self, bytes: &[u8]) -> Result<Option<usize>, FrameError> {
        if bytes.len() < HEADER_LEN {
            return Ok(None);
        }
        let mut got = [0u8; 4];
        got.copy_from_slice(&bytes[..4]);
        if got != self.magic {
            return Err(FrameError::BadMagic {
                expected: self.magic,
                got,
            });
        }
        if bytes[4] != self.version {
            return Err(FrameError::Version {
                got: bytes[4],
                speaks: self.version,
            });
        }
        if bytes[5..8] != [0, 0, 0] {
            return Err(FrameError::Reserved {
                got: [bytes[5], bytes[6], bytes[7]],
            });
        }
        let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
        if len > self.max_payload {
            return Err(FrameError::Oversized {
                len,
                max: self.max_payload,
            });
        }
        Ok(Some(self.frame_len(len)))
    }

    /// Checks a whole frame at the start of `bytes` (trailing bytes, such as a
    /// slot's padding, are ignored) and returns its payload.
    pub fn open<'a>(&self, bytes: &'a [u8], key: Option<&[u8]>) -> Result<&'a [u8], FrameError> {
        let need = self.check_header(bytes)?.ok_or(FrameError::Short {
            have: bytes.len(),
            need: HEADER_LEN,
        })?;
        if bytes.len() < need {
            return Err(FrameError::Short {
                have: bytes.len(),
                need,
            });
        }
        let len = need - self.frame_len(0);
        let (header, rest) = bytes.split_at(HEADER_LEN);
        let payload = &rest[..len];
        let stated = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
        let computed = crc(header, payload);
        if computed != stated {
            return Err(FrameError::Crc { computed, stated });
        }
        if self.signed {
            let key = key.ok_or(FrameError::NoKey)?;
            let signed = HEADER_LEN + len;
            if !auth::verify(key, &bytes[..signed], &bytes[signed..need]) {
                return Err(FrameError::Mac);
            }
        }
        Ok(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Format = Format {
        magic: *b"TEST",
        version: 3,
        max_payload: 1000,
        signed: false,
    };
    const SIGNED: Format = Format {
        signed: true,
        ..PLAIN
    };
    const KEY: &[u8] = b"0123456789abcdef";

    #[test]
    fn frames_round_trip_with_padding_ignored() {
        for format in [PLAIN, SIGNED] {
            let mut frame = format.encode(b"payload", Some(KEY)).expect("encode");
            assert_eq!(
                format.check_header(&frame).expect("header"),
                Some(frame.len())
            );
            frame.resize(4096, 0);
            assert_eq!(format.open(&frame, Some(KEY)).expect("open"), b"payload");
        }
    }

    #[test]
    fn every_flipped_bit_is_rejected() {
        for format in [PLAIN, SIGNED] {
            let frame = format.encode(b"some bytes", Some(KEY)).expect("encode");
            for i in 0..frame.len() {
                for bit in 0..8 {
                    let mut bad = frame.clone();
                    bad[i] ^= 1 << bit;
                    assert!(
                        format.open(&bad, Some(KEY)).is_err(),
                        "flip at {i}.{bit} accepted"
                    );
                }
            }
        }
    }

    #[test]
    fn errors_name_what_is_wrong() {
        let good = PLAIN.encode(b"x", None).expect("encode");
        let mut magic = good.clone();
        magic[0] = b'X';
        assert!(matches!(
            PLAIN.open(&magic, None),
            Err(FrameError::BadMagic { .. })
        ));
        let mut version = good.clone();
        version[4] = 9;
        assert!(matches!(
            PLAIN.open(&version, None),
            Err(FrameError::Version { got: 9, speaks: 3 })
        ));
        let mut big = good.clone();
        big[8..12].copy_from_slice(&1001u32.to_le_bytes());
        assert!(matches!(
            PLAIN.check_header(&big),
            Err(FrameError::Oversized {
                len: 1001,
                max: 1000
            })
        ));
        assert!(matches!(
            PLAIN.encode(&[0; 1001], None),
            Err(FrameError::Oversized { .. })
        ));
        assert!(matches!(
            PLAIN.open(&good[..HEADER_LEN], None),
            Err(FrameError::Short { .. })
        ));
        let signed = SIGNED.encode(b"x", Some(KEY)).expect("encode");
        assert!(matches!(
            SIGNED.open(&signed, Some(b"another key 12345")),
            Err(FrameError::Mac)
        ));
        assert!(matches!(SIGNED.encode(b"x", None), Err(FrameError::NoKey)));
    }
}
