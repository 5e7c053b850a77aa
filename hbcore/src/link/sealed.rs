//! A sealed session's two halves over any byte stream, once the handshake
//! has admitted it: [`SealedWriter::send`] seals and writes one message,
//! [`SealedReader::next`] reads and opens the next. The host link uses
//! them as they are; the remote link has its own pipelined reader and
//! writer (mirrord's `link::{reader, wire}`) over the same [`super::seal`]
//! layer.
//!
//! Each half is owned by one task (the session's reader or writer task).

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::handshake::Admitted;
use super::seal::{Opener, Sealer};
use super::{LinkError, Message};

/// The sending half.
pub struct SealedWriter<W> {
    io: W,
    sealer: Sealer,
    buf: BytesMut,
}

/// The receiving half.
pub struct SealedReader<R> {
    io: R,
    opener: Opener,
    buf: BytesMut,
}

/// A connection admitted without sealing keys, where this link requires them.
#[derive(Debug, thiserror::Error)]
#[error("the session is not sealed; this link seals every frame")]
pub struct NotSealed;

/// The halves of an admitted, sealed connection; `split` divides its stream.
pub fn halves<S, R, W>(
    admitted: Admitted<S>,
    split: impl FnOnce(S) -> (R, W),
) -> Result<(SealedReader<R>, SealedWriter<W>), NotSealed> {
    let (sealer, opener) = admitted.keys.ok_or(NotSealed)?;
    let parts = admitted.conn.into_parts();
    // What the peer sent right after the handshake is already read.
    let buf = parts.read_buf;
    let (r, w) = split(parts.io);
    Ok((
        SealedReader { io: r, opener, buf },
        SealedWriter {
            io: w,
            sealer,
            buf: BytesMut::new(),
        },
    ))
}

impl<W: AsyncWrite + Unpin> SealedWriter<W> {
    /// Seals `msg` and writes it whole.
    pub async fn send(&mut self, msg: Message) -> Result<(), LinkError> {
        self.buf.clear();
        self.sealer.encode(msg, &mut self.buf)?;
        self.io.write_all(&self.buf).await?;
        // A large frame's buffer is not kept between messages.
        if self.buf.capacity() > 256 << 10 {
            self.buf = BytesMut::new();
        }
        Ok(())
    }

    /// Closes the sending direction.
    pub async fn shutdown(&mut self) {
        let _ = self.io.shutdown().await;
    }
}

impl<R: AsyncRead + Unpin> SealedReader<R> {
    /// The next message; `None` when the peer closed the connection
    /// between frames. A frame that does not open ends the session.
    pub async fn next(&mut self) -> Result<Option<Message>, LinkError> {
        loop {
            if let Some(msg) = self.opener.decode(&mut self.buf)? {
                return Ok(Some(msg));
            }
            if self.buf.capacity() - self.buf.len() < 16 << 10 {
                self.buf.reserve(64 << 10);
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                return Err(LinkError::ClosedMidFrame {
                    have: self.buf.len(),
                    need: super::seal::header(&self.buf)
                        .ok()
                        .flatten()
                        .map_or(self.buf.len() + 1, |h| h.frame_len()),
                });
            }
        }
    }
}
