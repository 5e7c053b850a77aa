//! Sealed frames: after the handshake, every link frame in both directions
//! is encrypted and authenticated with AES-256-GCM (`ring`), under a key of
//! its own per session, direction and lane, with a frame counter as the
//! nonce. A frame that does not open, repeats, or skips a counter is
//! refused with its reason ([`Rejection`]); nothing of it is decoded.
//!
//! ```text
//!  0      4   5      6           8         12          20
//!  │ HBLK │ v │flags │ head_len  │ len (LE) │counter(LE)│ section 0: ciphertext │ tag │ [section 1: ciphertext │ tag] │
//!                     (split only) plaintext   u64        head_len (split) or len bytes    len − head_len bytes (split)
//!  flags: 0x01 sealed (always), 0x02 split (a write: head and data sealed apart), 0x04 first frame under the next key
//! ```
//!
//! The 20 header bytes are the associated data of every section, so none of
//! them can be changed unnoticed; section `s` of the frame with counter `n`
//! is sealed under the nonce `s ‖ 0 0 0 ‖ n`. A write is split so that the
//! receiver can open its head (pair, offset, length), then read a large
//! data section straight into an aligned buffer and open it there.
//!
//! Key schedule (HKDF-SHA256, RFC 5869):
//!
//! ```text
//!  prk      = HKDF-Extract(salt = dialer nonce ‖ listener nonce, ikm = the sites' pre-shared key)
//!  key(g)   = HKDF-Expand(prk, info = "hbmirror-link-v5" ‖ direction ‖ lane ‖ dialer ‖ listener ‖ g, 32 bytes)
//! ```
//! (each field length-prefixed). Both nonces are fresh for each
//! connection, so each session has new keys. A sender moves to the next
//! generation `g + 1` (counter back to 0, flag 0x04 on its first frame)
//! after [`Limits`]: 2^32 frames or 64 GiB under one key, far inside
//! AES-GCM's limits and before the counter could wrap.
//!
//! Pure code: the session's writer holds its [`Sealer`] under the wire's
//! lock, its reader task holds the [`Opener`] and hands a large write's
//! [`SealedData`] to the task that applies it, which opens it there.

use bytes::{BufMut, Bytes, BytesMut};
use ring::{aead, hkdf};

use super::payload::{serialize_head, split_write};
pub use super::rejection::Rejection;
use super::{zero_copy, Lane, LinkError, Message, FORMAT, NONCE_LEN};

/// Length of a sealed frame's header (the associated data of its sections).
pub const HEADER_LEN: usize = 20;
/// Length of a section's tag.
pub const TAG_LEN: usize = 16;
/// Every sealed frame sets it.
pub const FLAG_SEALED: u8 = 0x01;
/// A write: its head and its data are sealed as two sections.
pub const FLAG_SPLIT: u8 = 0x02;
/// The first frame under the sender's next key generation.
pub const FLAG_REKEY: u8 = 0x04;
const KNOWN_FLAGS: u8 = FLAG_SEALED | FLAG_SPLIT | FLAG_REKEY;

/// When a sender moves to its next key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Frames under one key.
    pub frames: u64,
    /// Payload bytes under one key.
    pub bytes: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            frames: 1 << 32,
            bytes: 64 << 30,
        }
    }
}

/// Which side of the handshake this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The side that dialed.
    Dialer,
    /// The side that accepted.
    Listener,
}

/// What both sides of a handshake know, from which the session's keys come.
#[derive(Debug, Clone, Copy)]
pub struct Transcript<'a> {
    /// The dialing site.
    pub dialer: &'a str,
    /// The listening site.
    pub listener: &'a str,
    /// The dialer's fresh nonce.
    pub dialer_nonce: &'a [u8; NONCE_LEN],
    /// The listener's fresh nonce.
    pub listener_nonce: &'a [u8; NONCE_LEN],
    /// The session's lane.
    pub lane: Lane,
}

/// One direction's key schedule.
struct Schedule {
    prk: hkdf::Prk,
    /// The info without the generation.
    info: Vec<u8>,
}

impl Schedule {
    fn new(psk: &[u8], t: &Transcript<'_>, from_dialer: bool) -> Schedule {
        let mut salt = Vec::with_capacity(2 * NONCE_LEN);
        salt.extend_from_slice(t.dialer_nonce);
        salt.extend_from_slice(t.listener_nonce);
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(psk);
        let direction: &[u8] = if from_dialer {
            b"dialer to listener"
        } else {
            b"listener to dialer"
        };
        let lane = t.lane.to_string();
        let mut info = Vec::new();
        for part in [
            b"hbmirror-link-v5".as_slice(),
            direction,
            lane.as_bytes(),
            t.dialer.as_bytes(),
            t.listener.as_bytes(),
        ] {
            info.extend_from_slice(&(part.len() as u32).to_le_bytes());
            info.extend_from_slice(part);
        }
        Schedule { prk, info }
    }

    fn key(&self, generation: u32) -> aead::LessSafeKey {
        let mut info = self.info.clone();
        info.extend_from_slice(&generation.to_le_bytes());
        let key: aead::UnboundKey = self
            .prk
            .expand(&[&info], &aead::AES_256_GCM)
            .map(Into::into)
            // 32 bytes is far under HKDF-SHA256's limit of 255 × 32.
            .unwrap_or_else(|_| unreachable!("HKDF can expand 32 bytes"));
        aead::LessSafeKey::new(key)
    }
}

/// The keys of one session, for the side playing `role`.
pub fn session_keys(psk: &[u8], t: &Transcript<'_>, role: Role) -> (Sealer, Opener) {
    let mine = Schedule::new(psk, t, role == Role::Dialer);
    let theirs = Schedule::new(psk, t, role == Role::Listener);
    (Sealer::new(mine, Limits::default()), Opener::new(theirs))
}

fn nonce(section: u8, counter: u64) -> aead::Nonce {
    let mut n = [0u8; aead::NONCE_LEN];
    n[0] = section;
    n[4..].copy_from_slice(&counter.to_le_bytes());
    aead::Nonce::assume_unique_for_key(n)
}

/// The sending half: seals each frame under the next counter.
pub struct Sealer {
    schedule: Schedule,
    key: aead::LessSafeKey,
    generation: u32,
    counter: u64,
    bytes: u64,
    limits: Limits,
}

impl Sealer {
    fn new(schedule: Schedule, limits: Limits) -> Sealer {
        let key = schedule.key(0);
        Sealer {
            schedule,
            key,
            generation: 0,
            counter: 0,
            bytes: 0,
            limits,
        }
    }

    /// With other limits (tests drive key rotation with small ones).
    pub fn with_limits(mut self, limits: Limits) -> Sealer {
        self.limits = limits;
        self
    }

    /// The key generation now (0 until the first rotation).
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Appends the sealed frame of `msg` to `dst`; on an error `dst` is as it was.
    pub fn encode(&mut self, msg: Message, dst: &mut BytesMut) -> Result<(), LinkError> {
        let start = dst.len();
        let sealed = self.seal_into(msg, start, dst);
        if sealed.is_err() {
            dst.truncate(start);
        }
        sealed
    }

    fn seal_into(
        &mut self,
        msg: Message,
        start: usize,
        dst: &mut BytesMut,
    ) -> Result<(), LinkError> {
        let (msg, data) = split_write(msg);
        dst.put_bytes(0, HEADER_LEN);
        serialize_head(&msg, data.len(), dst)?;
        let head_len = dst.len() - start - HEADER_LEN;
        let len = head_len + data.len();
        let split = !data.is_empty();
        if len > FORMAT.max_payload || (split && head_len > usize::from(u16::MAX)) {
            return Err(LinkError::Frame(crate::frame::FrameError::Oversized {
                len,
                max: FORMAT.max_payload,
            }));
        }
        let mut flags = FLAG_SEALED;
        if self.counter >= self.limits.frames || self.bytes >= self.limits.bytes {
            self.generation += 1;
            self.key = self.schedule.key(self.generation);
            self.counter = 0;
            self.bytes = 0;
            flags |= FLAG_REKEY;
        }
        if split {
            flags |= FLAG_SPLIT;
        }
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(&FORMAT.magic);
        header[4] = FORMAT.version;
        header[5] = flags;
        if split {
            header[6..8].copy_from_slice(&(head_len as u16).to_le_bytes());
        }
        header[8..12].copy_from_slice(&(len as u32).to_le_bytes());
        header[12..20].copy_from_slice(&self.counter.to_le_bytes());
        dst[start..start + HEADER_LEN].copy_from_slice(&header);
        let counter = self.counter;
        self.seal_section(&header, 0, counter, start + HEADER_LEN, dst)?;
        if split {
            let at = dst.len();
            dst.extend_from_slice(&data);
            self.seal_section(&header, 1, counter, at, dst)?;
        }
        self.counter += 1;
        self.bytes += len as u64;
        Ok(())
    }

    /// Seals `dst[from..]` in place and appends its tag.
    fn seal_section(
        &self,
        header: &[u8; HEADER_LEN],
        section: u8,
        counter: u64,
        from: usize,
        dst: &mut BytesMut,
    ) -> Result<(), LinkError> {
        let tag = self
            .key
            .seal_in_place_separate_tag(
                nonce(section, counter),
                aead::Aad::from(header),
                &mut dst[from..],
            )
            .map_err(|_| LinkError::Encode(postcard::Error::SerdeSerCustom))?;
        dst.extend_from_slice(tag.as_ref());
        Ok(())
    }
}

/// A sealed frame's header, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    bytes: [u8; HEADER_LEN],
    /// Its flags.
    pub flags: u8,
    /// Plaintext payload bytes.
    pub len: usize,
    /// Bytes of the head section (the whole payload unless split).
    pub head_len: usize,
    /// Its counter.
    pub counter: u64,
}

impl Header {
    /// Whether a write's head and data are sealed apart.
    pub fn split(&self) -> bool {
        self.flags & FLAG_SPLIT != 0
    }

    /// Bytes of the data section (0 unless split).
    pub fn data_len(&self) -> usize {
        self.len - self.head_len
    }

    /// Bytes from the frame's start to the end of its head section's tag.
    pub fn head_end(&self) -> usize {
        HEADER_LEN + self.head_len + TAG_LEN
    }

    /// Bytes of the whole frame.
    pub fn frame_len(&self) -> usize {
        self.head_end()
            + if self.split() {
                self.data_len() + TAG_LEN
            } else {
                0
            }
    }
}

/// Reads the sealed header at the start of `bytes`; `None` while fewer than
/// [`HEADER_LEN`] bytes are there. Everything it can tell before the payload
/// arrives is an error at once, so a bad peer is refused before buffering.
pub fn header(bytes: &[u8]) -> Result<Option<Header>, Rejection> {
    if bytes.len() < HEADER_LEN {
        return Ok(None);
    }
    if bytes[..4] != FORMAT.magic {
        return Err(Rejection::BadHeader("not the link protocol's magic"));
    }
    if bytes[4] != FORMAT.version {
        return Err(Rejection::BadHeader("another protocol version"));
    }
    let flags = bytes[5];
    if flags & FLAG_SEALED == 0 {
        return Err(Rejection::NotSealed { flags });
    }
    if flags & !KNOWN_FLAGS != 0 {
        return Err(Rejection::BadHeader("unknown flags"));
    }
    let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    if len > FORMAT.max_payload {
        return Err(Rejection::Oversized {
            len,
            max: FORMAT.max_payload,
        });
    }
    let stated_head = usize::from(u16::from_le_bytes([bytes[6], bytes[7]]));
    let head_len = if flags & FLAG_SPLIT != 0 {
        if stated_head == 0 || stated_head >= len {
            return Err(Rejection::BadHeader(
                "a split frame's head is empty or as long as the frame",
            ));
        }
        stated_head
    } else {
        if stated_head != 0 {
            return Err(Rejection::BadHeader(
                "a head length in a frame that is not split",
            ));
        }
        len
    };
    let mut counter = [0u8; 8];
    counter.copy_from_slice(&bytes[12..20]);
    let mut raw = [0u8; HEADER_LEN];
    raw.copy_from_slice(&bytes[..HEADER_LEN]);
    Ok(Some(Header {
        bytes: raw,
        flags,
        len,
        head_len,
        counter: u64::from_le_bytes(counter),
    }))
}

/// The receiving half: opens each frame, in counter order only.
pub struct Opener {
    schedule: Schedule,
    key: aead::LessSafeKey,
    generation: u32,
    expected: u64,
}

impl Opener {
    fn new(schedule: Schedule) -> Opener {
        let key = schedule.key(0);
        Opener {
            schedule,
            key,
            generation: 0,
            expected: 0,
        }
    }

    /// Opens one section in place (`section` = ciphertext then tag).
    fn open_section(&mut self, h: &Header, index: u8, section: &mut [u8]) -> Result<(), Rejection> {
        let failed = Rejection::OpenFailed { counter: h.counter };
        let rekey = h.flags & FLAG_REKEY != 0 && index == 0;
        let next;
        let key = if rekey {
            next = self.schedule.key(self.generation + 1);
            &next
        } else {
            &self.key
        };
        key.open_in_place(nonce(index, h.counter), aead::Aad::from(&h.bytes), section)
            .map_err(|_| failed)?;
        // Genuine, so its counter tells what happened to the stream.
        let expected = if rekey { 0 } else { self.expected };
        if h.counter < expected {
            return Err(Rejection::Replayed {
                got: h.counter,
                expected,
            });
        }
        if h.counter > expected {
            return Err(Rejection::Skipped {
                got: h.counter,
                expected,
            });
        }
        if rekey {
            self.generation += 1;
            self.key = self.schedule.key(self.generation);
            self.expected = 0;
        }
        Ok(())
    }

    /// Opens the head section of a split frame: `head` is the frame up to
    /// [`Header::head_end`]. The frame's counter is taken; its data section
    /// is opened with what comes back ([`SealedData::open`]), on any task.
    pub fn open_head(
        &mut self,
        h: &Header,
        head: &mut [u8],
    ) -> Result<(zero_copy::WriteHead, SealedData), LinkError> {
        let section = head
            .get_mut(HEADER_LEN..h.head_end())
            .ok_or(Rejection::BadHeader("a head section cut short"))?;
        self.open_section(h, 0, section)?;
        let plain = &head[HEADER_LEN..HEADER_LEN + h.head_len];
        match zero_copy::head(plain) {
            Some(w) if w.data.start == h.head_len && w.data.len() == h.data_len() => {
                self.expected += 1;
                // The key of this frame's generation (a rekey took effect above).
                Ok((
                    w,
                    SealedData {
                        header: *h,
                        key: self.key.clone(),
                    },
                ))
            }
            _ => Err(LinkError::Malformed(
                postcard::Error::DeserializeUnexpectedEnd,
            )),
        }
    }

    /// The next whole message at the start of `src`, as a decoder: `None`
    /// until its frame has arrived. A write's data is a slice of the frame.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, LinkError> {
        let Some(h) = header(src)? else {
            return Ok(None);
        };
        let len = h.frame_len();
        if src.len() < len {
            src.reserve(len - src.len());
            return Ok(None);
        }
        let mut frame = src.split_to(len);
        if !h.split() {
            self.open_section(&h, 0, &mut frame[HEADER_LEN..])?;
            self.expected += 1;
            let payload = &frame[HEADER_LEN..HEADER_LEN + h.len];
            return postcard::from_bytes(payload)
                .map(Some)
                .map_err(LinkError::Malformed);
        }
        let (head, sealed) = self.open_head(&h, &mut frame[..h.head_end()])?;
        let (at, tail) = (h.head_end(), h.head_end() + h.data_len());
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&frame[tail..]);
        sealed.open(&mut frame[at..tail], &tag)?;
        let frame: Bytes = frame.freeze();
        Ok(Some(head.into_message(frame.slice(at..tail))))
    }
}

/// A split frame's data section, still sealed, once its head has opened:
/// the frame's header and its key generation's key, so that another task
/// than the reader can open it while the reader reads the next frame.
#[derive(Clone)]
pub struct SealedData {
    header: Header,
    key: aead::LessSafeKey,
}

impl SealedData {
    /// The frame's counter.
    pub fn counter(&self) -> u64 {
        self.header.counter
    }

    /// Opens the data section in place, its tag given apart.
    pub fn open(&self, data: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), Rejection> {
        let failed = Rejection::OpenFailed {
            counter: self.header.counter,
        };
        if data.len() != self.header.data_len() {
            return Err(failed);
        }
        self.key
            .open_in_place_separate_tag(
                nonce(1, self.header.counter),
                aead::Aad::from(&self.header.bytes),
                aead::Tag::from(*tag),
                data,
                0..,
            )
            .map(|_| ())
            .map_err(|_| failed)
    }
}

#[cfg(test)]
mod tests;
