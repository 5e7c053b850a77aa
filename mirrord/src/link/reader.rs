//! The receiving side of a session: the read half of its connection, one
//! message at a time.
//!
//! A large write (a copy frame, a host's 1 MiB) is read from the socket
//! straight into an aligned buffer from the site's pool, which the SVOL's
//! O_DIRECT write then takes as it is: its data is never copied in user
//! space. Only what arrived together with the frame's head (one read's
//! worth) is copied over. Everything else, small writes included (their
//! data comes in the same read as their head, and a copy of 4 KiB costs
//! less than a second read), goes through the codec from a read buffer.
//!
//! ```text
//!  socket ──read──> buffer ─┬ head of a write > SMALL_WRITE, data still to come:
//!                           │    what is buffered ──copy──> pooled aligned buffer <──read── socket
//!                           │    frame checked (CRC over head + data) ──> Write { data: that buffer }
//!                           └ anything else ──> LinkCodec::decode (a write's data: a slice of the buffer)
//! ```
//!
//! A sealed session ([`hbcore::link::seal`]) reads the same way: a large
//! write's head section is opened first (its counter checked and taken, in
//! order, here), its data section read into the pooled buffer and handed on
//! still sealed ([`Incoming::Sealed`]): the session's answerer task opens it
//! in place before applying it, while this task reads the next frame, so
//! that the AEAD is not on the one serial reader's path. A frame that does
//! not open, or comes out of counter order, ends the session before
//! anything of it is applied.

use std::sync::Arc;

use bytes::BytesMut;
use hbcore::frame::FrameError;
use hbcore::link::seal::{self, Opener, SealedData};
use hbcore::link::{LinkCodec, LinkError, Message, PeerRequest, WriteHead};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio_util::codec::Decoder;

use super::paths::PathLink;
use super::SMALL_WRITE;
use hbio::{AlignedBuf, BufPool};

/// What the reader took in.
pub(super) enum Incoming {
    /// A whole message, opened if sealed.
    Msg(Message),
    /// A large sealed write, its head opened and its data still sealed
    /// (boxed: its key is large beside a message).
    Sealed(Box<SealedWrite>),
}

/// A large sealed write whose data section is read and not yet opened
/// (read by the reader task, opened by the answerer task).
pub(super) struct SealedWrite {
    head: WriteHead,
    sealed: SealedData,
    data: AlignedBuf,
    tag: [u8; seal::TAG_LEN],
    pool: Arc<BufPool>,
}

impl SealedWrite {
    /// Opens the data in place: the request, or why the frame is refused
    /// (nothing of it is handed on; its buffer goes back to the pool).
    pub(super) fn open(mut self) -> Result<(u64, PeerRequest), LinkError> {
        if let Err(refused) = self.sealed.open(self.data.as_mut_slice(), &self.tag) {
            self.pool.give(self.data);
            return Err(refused.into());
        }
        let h = self.head;
        let data = BufPool::share(&self.pool, self.data);
        Ok((
            h.id,
            PeerRequest::Write {
                pair: h.pair,
                offset: h.offset,
                data,
            },
        ))
    }
}

/// Reads messages off one connection.
pub(super) struct FrameReader<R> {
    io: R,
    buf: BytesMut,
    codec: LinkCodec,
    /// Opens a sealed session's frames (`None`: unsealed).
    opener: Option<Opener>,
    /// Where large writes' buffers come from and go back to.
    pool: Arc<BufPool>,
    /// The path it reads from (bytes received are counted there).
    path: Option<Arc<PathLink>>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader of `io`, whose first bytes (read past the handshake) are `buf`.
    pub(super) fn new(
        io: R,
        codec: LinkCodec,
        buf: BytesMut,
        opener: Option<Opener>,
        pool: Arc<BufPool>,
        path: Option<Arc<PathLink>>,
    ) -> Self {
        FrameReader {
            io,
            buf,
            codec,
            opener,
            pool,
            path,
        }
    }

    fn note_received(&self, bytes: usize) {
        if let Some(p) = &self.path {
            p.note_received(bytes);
        }
    }

    /// The next message; `None` once the peer closed the connection between frames.
    pub(super) async fn next(&mut self) -> Option<Result<Incoming, LinkError>> {
        if self.opener.is_some() {
            return self.next_sealed().await;
        }
        self.next_plain().await.map(|r| r.map(Incoming::Msg))
    }

    /// [`FrameReader::next`] for an unsealed session.
    async fn next_plain(&mut self) -> Option<Result<Message, LinkError>> {
        loop {
            match self.codec.large_write(&self.buf, SMALL_WRITE) {
                Ok(Some((head, frame_len))) => return Some(self.read_large(head, frame_len).await),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
            match self.codec.decode(&mut self.buf) {
                Ok(Some(msg)) => return Some(Ok(msg)),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) => return self.codec.decode_eof(&mut self.buf).transpose(),
                Ok(n) => self.note_received(n),
                Err(e) => return Some(Err(e.into())),
            }
        }
    }

    /// [`FrameReader::next`] for a sealed session.
    async fn next_sealed(&mut self) -> Option<Result<Incoming, LinkError>> {
        loop {
            let opener = self.opener.as_mut()?;
            match seal::header(&self.buf) {
                Err(rejected) => return Some(Err(rejected.into())),
                Ok(Some(h))
                    if h.split()
                        && h.data_len() > SMALL_WRITE
                        && (h.head_end()..h.frame_len()).contains(&self.buf.len()) =>
                {
                    return Some(
                        self.read_large_sealed(h)
                            .await
                            .map(|w| Incoming::Sealed(Box::new(w))),
                    )
                }
                Ok(_) => {}
            }
            match opener.decode(&mut self.buf) {
                Ok(Some(msg)) => return Some(Ok(Incoming::Msg(msg))),
                Ok(None) => {}
                Err(e) => return Some(Err(e)),
            }
            match self.io.read_buf(&mut self.buf).await {
                Ok(0) if self.buf.is_empty() => return None,
                Ok(0) => {
                    let need = seal::header(&self.buf)
                        .ok()
                        .flatten()
                        .map_or(seal::HEADER_LEN, |h| h.frame_len());
                    return Some(Err(LinkError::ClosedMidFrame {
                        have: self.buf.len(),
                        need,
                    }));
                }
                Ok(n) => self.note_received(n),
                Err(e) => return Some(Err(e.into())),
            }
        }
    }

    /// Opens a large sealed write's head, reads its data section into a
    /// pooled aligned buffer and hands it on still sealed.
    async fn read_large_sealed(&mut self, h: seal::Header) -> Result<SealedWrite, LinkError> {
        let mut head = self.buf.split_to(h.head_end());
        let opener = self
            .opener
            .as_mut()
            .ok_or(LinkError::ClosedMidFrame { have: 0, need: 0 })?;
        let (write, sealed) = opener.open_head(&h, &mut head)?;
        let len = h.data_len();
        let mut data = self.pool.take(len);
        // The frame is not all here: what is buffered is the start of the
        // data section, and perhaps of its tag.
        let have = self.buf.len().min(len);
        data.as_mut_slice()[..have].copy_from_slice(&self.buf[..have]);
        let mut tag = [0u8; seal::TAG_LEN];
        let tag_have = self.buf.len() - have;
        tag[..tag_have].copy_from_slice(&self.buf[have..]);
        let arrived = h.head_end() + self.buf.len();
        self.buf.clear();
        let mut read = self.io.read_exact(&mut data.as_mut_slice()[have..]).await;
        if read.is_ok() {
            read = self.io.read_exact(&mut tag[tag_have..]).await;
        }
        if let Some(p) = &self.path {
            p.note_received(len - have + seal::TAG_LEN - tag_have);
        }
        match read {
            Ok(_) => Ok(SealedWrite {
                head: write,
                sealed,
                data,
                tag,
                pool: Arc::clone(&self.pool),
            }),
            Err(e) => {
                self.pool.give(data);
                Err(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    LinkError::ClosedMidFrame {
                        have: arrived,
                        need: h.frame_len(),
                    }
                } else {
                    LinkError::Frame(FrameError::Io(e))
                })
            }
        }
    }

    /// Reads the rest of a large write's data into a pooled aligned buffer.
    async fn read_large(
        &mut self,
        head: hbcore::link::WriteHead,
        frame_len: usize,
    ) -> Result<Message, LinkError> {
        let at = hbcore::frame::HEADER_LEN + head.data.start;
        let mut data = self.pool.take(head.data.len());
        // The frame is not all here (`large_write` says so): what is
        // buffered past the head is the start of the data, and nothing else.
        let have = self.buf.len() - at;
        data.as_mut_slice()[..have].copy_from_slice(&self.buf[at..]);
        let read = self.io.read_exact(&mut data.as_mut_slice()[have..]).await;
        self.note_received(data.len() - have);
        let checked = match read {
            Ok(_) => self.codec.check_split(&self.buf[..at], data.as_slice()),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                Err(LinkError::ClosedMidFrame {
                    have: self.buf.len(),
                    need: frame_len,
                })
            }
            Err(e) => Err(LinkError::Frame(FrameError::Io(e))),
        };
        self.buf.clear();
        match checked {
            Ok(()) => Ok(head.into_message(BufPool::share(&self.pool, data))),
            Err(e) => {
                self.pool.give(data);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use hbcore::link::PeerRequest;
    use tokio::io::AsyncWriteExt;

    use super::*;

    fn filled(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| seed.wrapping_add((i % 251) as u8))
            .collect()
    }

    fn session_codec() -> LinkCodec {
        let mut codec = LinkCodec::handshake();
        codec.authenticated();
        codec
    }

    fn write(id: u64, len: usize, seed: u8) -> Message {
        Message::Request {
            id,
            body: PeerRequest::Write {
                pair: "bulk".into(),
                offset: 4096 * id,
                data: Bytes::from(filled(len, seed)),
            },
        }
    }

    fn frame(msg: &Message) -> Vec<u8> {
        let mut out = BytesMut::new();
        session_codec()
            .encode_split(msg.clone(), &mut out)
            .map(|data| [&out[..], &data[..]].concat())
            .expect("encode")
    }

    /// Feeds `bytes` in pieces of `piece` bytes and reads messages until the end.
    async fn read_all(bytes: Vec<u8>, piece: usize) -> (Vec<Result<Message, String>>, Vec<bool>) {
        let (mut tx, rx) = tokio::io::duplex(64 << 10);
        let feeder = tokio::spawn(async move {
            for chunk in bytes.chunks(piece) {
                if tx.write_all(chunk).await.is_err() {
                    return;
                }
            }
        });
        let pool = Arc::new(BufPool::default());
        let mut reader = FrameReader::new(rx, session_codec(), BytesMut::new(), None, pool, None);
        let (mut got, mut aligned) = (Vec::new(), Vec::new());
        while let Some(next) = reader.next_plain().await {
            let failed = next.is_err();
            if let Ok(Message::Request {
                body: PeerRequest::Write { data, .. },
                ..
            }) = &next
            {
                if data.len() > SMALL_WRITE {
                    aligned.push(data.as_ptr() as usize % hbio::ALIGN == 0);
                }
            }
            got.push(next.map_err(|e| e.to_string()));
            if failed {
                break;
            }
        }
        feeder.abort();
        (got, aligned)
    }

    #[tokio::test]
    async fn large_writes_land_in_aligned_buffers_and_everything_reads_back_as_sent() {
        let msgs = [
            write(1, 1 << 20, 1),
            Message::Ping,
            write(2, 4096, 2),
            write(3, (64 << 10) + 4096, 3),
            Message::Pong,
            write(4, 1 << 20, 4),
        ];
        let bytes: Vec<u8> = msgs.iter().flat_map(frame).collect();
        for piece in [1000, 4096, 65_536, 1 << 20] {
            let (got, aligned) = read_all(bytes.clone(), piece).await;
            let want: Vec<Result<Message, String>> = msgs.iter().cloned().map(Ok).collect();
            assert_eq!(got, want, "pieces of {piece}");
            // The large ones were read straight into aligned buffers.
            assert_eq!(aligned, [true, true, true], "pieces of {piece}");
        }
    }

    #[tokio::test]
    async fn a_large_write_with_a_bad_crc_or_cut_short_is_refused_as_the_codec_refuses_it() {
        let mut bad = frame(&write(1, 1 << 20, 9));
        let last = bad.len() - 1;
        bad[last] ^= 1;
        let (got, _) = read_all(bad, 4096).await;
        assert!(
            matches!(&got[..], [Err(e)] if e.contains("CRC32C mismatch")),
            "{got:?}"
        );
        let whole = frame(&write(1, 1 << 20, 9));
        let cut = whole[..whole.len() - 100].to_vec();
        let (got, _) = read_all(cut, 4096).await;
        assert!(
            matches!(&got[..], [Err(e)] if e.contains("closed in the middle of a frame")),
            "{got:?}"
        );
    }
}
