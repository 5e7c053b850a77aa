//! The sending side of a session: the write half of its connection, which
//! every sender writes its own frame on, under one async lock.
//!
//! A sender ([`Wire::send`]: the FUSE worker's host write inside its
//! `block_on`, a resync, the answerer task) takes the lock, encodes its frame
//! into the buffer kept with the write half and writes it with one vectored
//! write: the header and the start of the message from the buffer, a write's
//! data straight from the caller's `Bytes`. Frames leave in the order senders
//! got the lock (the lock is fair), and a sender returns once its frame is
//! in the socket: no task between the caller and the socket.
//!
//! The reader never waits for the socket ([`Wire::send_now`]): with both
//! directions full, two readers each waiting to write would stop each other
//! reading. It writes its answer if the lock is free and the socket takes
//! it at once; what is left waits in the buffer or the backlog for the
//! flusher task ([`Wire::flush_and_ping`]), which also pings a quiet link.
//!
//! A sender cancelled in the middle of its frame leaves the rest of the
//! frame in the buffer (see [`Sending`]): the next holder of the lock, or the
//! flusher, finishes it before anything else, so the stream stays whole.
//!
//! A sealed session ([`hbcore::link::seal`]) seals every frame under the
//! lock, so counters leave in order: the reader's backlog holds messages,
//! not frames, and a write's data is copied into the buffer and sealed
//! there (the host's buffer is the PVOL's too, so it cannot be sealed in
//! place); only an unsealed session sends the data from the caller's bytes.

use std::io::IoSlice;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use hbcore::link::seal::Sealer;
use hbcore::link::{Lane, LinkCodec, LinkError as CodecError, Message};
use hbcore::report::chain;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Mutex, MutexGuard, Notify};
use tokio_util::sync::CancellationToken;

use super::paths::PathLink;
use super::PeerLink;

/// Why a frame did not reach the socket.
#[derive(Debug, thiserror::Error)]
pub(super) enum WireError {
    /// The session ended (before or during the write).
    #[error("the session is closed")]
    Closed,
    /// The message does not fit in a frame.
    #[error("cannot encode a {kind} message for the link")]
    Encode {
        /// The message's kind.
        kind: &'static str,
        /// What the codec said.
        #[source]
        source: CodecError,
    },
    /// The socket failed.
    #[error("the write to the connection failed")]
    Io(#[from] std::io::Error),
}

/// What the lock guards.
struct Out {
    /// `None` once the session has ended (which closes the connection).
    half: Option<OwnedWriteHalf>,
    /// Bytes not yet written: whole frames, except that the first may be the
    /// rest of a cancelled sender's frame. Reused from frame to frame.
    buf: BytesMut,
    /// Seals each frame, in the order they enter `buf` (`None`: unsealed).
    sealer: Option<Sealer>,
}

impl Out {
    /// Appends the frame of `msg` to the buffer; returns the bytes to send
    /// after it uncopied (an unsealed write's data), else nothing.
    fn encode(&mut self, codec: &LinkCodec, msg: Message) -> Result<Bytes, WireError> {
        let kind = msg.kind();
        let encoded = match &mut self.sealer {
            Some(sealer) => sealer.encode(msg, &mut self.buf).map(|()| Bytes::new()),
            None => codec.encode_split(msg, &mut self.buf),
        };
        encoded.map_err(|source| WireError::Encode { kind, source })
    }
}

/// The sending side of one session.
pub(super) struct Wire {
    out: Mutex<Out>,
    /// Messages of the reader that found the lock taken, for the next holder.
    backlog: std::sync::Mutex<Vec<Message>>,
    /// Wakes the flusher: something waits in the backlog or the buffer.
    kick: Notify,
    codec: LinkCodec,
    closed: CancellationToken,
    /// For the log: whom this session joins.
    peer: String,
    lane: Lane,
    /// The path it runs over (bytes sent are counted there).
    path: Option<Arc<PathLink>>,
    epoch: Instant,
    /// When a frame last went out, in microseconds since `epoch`.
    last_sent_us: AtomicU64,
}

impl Wire {
    /// The sending side over `half`; `pending` are bytes already framed
    /// (left by the handshake's writer), sent before anything else.
    #[allow(clippy::too_many_arguments)] // each is one part of the session it serves
    pub(super) fn new(
        half: OwnedWriteHalf,
        codec: LinkCodec,
        pending: BytesMut,
        sealer: Option<Sealer>,
        closed: CancellationToken,
        peer: String,
        lane: Lane,
        path: Option<Arc<PathLink>>,
    ) -> Wire {
        Wire {
            out: Mutex::new(Out {
                half: Some(half),
                buf: pending,
                sealer,
            }),
            backlog: std::sync::Mutex::new(Vec::new()),
            kick: Notify::new(),
            codec,
            closed,
            peer,
            lane,
            path,
            epoch: Instant::now(),
            last_sent_us: AtomicU64::new(0),
        }
    }

    /// Writes `msg` on the connection, after the frames of the senders that
    /// took the lock first; returns once the whole frame is in the socket.
    /// A failure ends the session.
    pub(super) async fn send(&self, msg: Message) -> Result<(), WireError> {
        let out = tokio::select! {
            biased;
            _ = self.closed.cancelled() => return Err(WireError::Closed),
            out = self.out.lock() => out,
        };
        let sent = self.write_locked(out, Some(msg)).await;
        if let Err(e) = &sent {
            self.fail(e);
        }
        sent
    }

    /// Writes the backlog and `msg` (if any) under the lock, then whatever
    /// the reader added to the backlog meanwhile.
    async fn write_locked(
        &self,
        mut out: MutexGuard<'_, Out>,
        msg: Option<Message>,
    ) -> Result<(), WireError> {
        if self.closed.is_cancelled() {
            return Err(WireError::Closed);
        }
        self.take_backlog(&mut out)?;
        let tail = match msg {
            Some(msg) => out.encode(&self.codec, msg)?,
            None => Bytes::new(),
        };
        let mut sending = Sending {
            out,
            tail,
            sent: 0,
            kick: &self.kick,
        };
        self.write_out(&mut sending).await?;
        // Answers the reader queued while this frame went out.
        if self.take_backlog(&mut sending.out)? {
            self.write_out(&mut sending).await?;
        }
        Ok(())
    }

    async fn write_out(&self, sending: &mut Sending<'_>) -> Result<(), WireError> {
        let wrote = tokio::select! {
            biased;
            _ = self.closed.cancelled() => return Err(WireError::Closed),
            wrote = sending.write() => wrote?,
        };
        if wrote > 0 {
            self.note_sent();
            if let Some(p) = &self.path {
                p.note_sent(wrote);
            }
        }
        Ok(())
    }

    /// Writes `msg` if the lock is free and the socket takes it now; else
    /// leaves it to the flusher. Never waits: for the reader.
    pub(super) fn send_now(&self, msg: Message) -> Result<(), WireError> {
        let sent = self.try_send(msg);
        if let Err(e) = &sent {
            self.fail(e);
        }
        sent
    }

    fn try_send(&self, msg: Message) -> Result<(), WireError> {
        let Ok(mut out) = self.out.try_lock() else {
            self.backlog
                .lock()
                .map_err(|_| WireError::Closed)?
                .push(msg);
            self.kick.notify_one();
            return Ok(());
        };
        if self.closed.is_cancelled() {
            return Err(WireError::Closed);
        }
        self.take_backlog(&mut out)?;
        let tail = out.encode(&self.codec, msg)?;
        out.buf.extend_from_slice(&tail);
        let Out { half, buf, .. } = &mut *out;
        let half = half.as_ref().ok_or(WireError::Closed)?;
        while !buf.is_empty() {
            match half.try_write(buf) {
                Ok(0) => return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into()),
                Ok(n) => {
                    buf.advance(n);
                    if let Some(p) = &self.path {
                        p.note_sent(n);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e.into()),
            }
        }
        if buf.is_empty() {
            self.note_sent();
        } else {
            self.kick.notify_one();
        }
        Ok(())
    }

    /// The flusher: writes what the reader could not, and a ping when
    /// nothing went out for `ping_every`, or at least every `4 × ping_every`
    /// (so the round trip in `pair status` stays fresh on a busy link).
    pub(super) async fn flush_and_ping(self: Arc<Self>, peer: Arc<PeerLink>, ping_every: Duration) {
        let fresh_every = ping_every * 4;
        // None: the first ping goes at once (a round trip to show soon).
        let mut last_ping: Option<Instant> = None;
        loop {
            let due = last_ping.map_or_else(Instant::now, |at| {
                (self.last_sent() + ping_every).min(at + fresh_every)
            });
            tokio::select! {
                biased;
                _ = self.closed.cancelled() => return,
                _ = self.kick.notified() => {}
                _ = tokio::time::sleep_until(due.into()) => {}
            }
            let out = tokio::select! {
                biased;
                _ = self.closed.cancelled() => return,
                out = self.out.lock() => out,
            };
            let now = Instant::now();
            let ping = now >= self.last_sent() + ping_every
                || last_ping.is_none_or(|at| now >= at + fresh_every);
            if ping {
                peer.stats.ping_sent();
                last_ping = Some(now);
            }
            let written = self.write_locked(out, ping.then_some(Message::Ping)).await;
            if let Err(e) = &written {
                self.fail(e);
                return;
            }
        }
    }

    /// Closes the connection (the session has ended).
    pub(super) async fn shutdown(&self) {
        let mut out = self.out.lock().await;
        out.half = None;
        out.buf = BytesMut::new();
    }

    /// Encodes the reader's queued messages into the buffer, after what is
    /// there; whether there were any.
    fn take_backlog(&self, out: &mut Out) -> Result<bool, WireError> {
        let queued = match self.backlog.lock() {
            Ok(mut backlog) if !backlog.is_empty() => std::mem::take(&mut *backlog),
            _ => return Ok(false),
        };
        for msg in queued {
            // Whole frames only: an unsealed write's data is copied in too.
            let tail = out.encode(&self.codec, msg)?;
            out.buf.extend_from_slice(&tail);
        }
        Ok(true)
    }

    /// The name of the path it runs over, if known.
    pub(super) fn path_name(&self) -> Option<String> {
        self.path.as_ref().map(|p| p.name.clone())
    }

    fn note_sent(&self) {
        let us = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.last_sent_us.store(us, Ordering::Relaxed);
    }

    fn last_sent(&self) -> Instant {
        self.epoch + Duration::from_micros(self.last_sent_us.load(Ordering::Relaxed))
    }

    /// Ends the session after a failed write (as the writer task did).
    fn fail(&self, e: &WireError) {
        if !matches!(e, WireError::Closed) {
            tracing::warn!(peer = %self.peer, lane = %self.lane, "remote link send failed: {}", chain(e));
        }
        self.closed.cancel();
    }
}

/// A frame on its way out, under the lock. Dropped before the end (its
/// sender cancelled), it moves the unsent rest of the data into the buffer,
/// where the next holder of the lock finds it first.
struct Sending<'a> {
    out: MutexGuard<'a, Out>,
    /// The data of a write, sent after `out.buf` without being copied.
    tail: Bytes,
    /// Bytes of `tail` written.
    sent: usize,
    kick: &'a Notify,
}

impl Sending<'_> {
    /// Writes the buffer, then the data; how many bytes that was.
    async fn write(&mut self) -> Result<usize, WireError> {
        let Sending {
            out, tail, sent, ..
        } = self;
        let Out { half, buf, .. } = &mut **out;
        let half = half.as_mut().ok_or(WireError::Closed)?;
        let mut wrote = 0;
        while !buf.is_empty() || *sent < tail.len() {
            let rest = &tail[*sent..];
            let n = if rest.is_empty() {
                half.write(buf).await?
            } else if buf.is_empty() {
                half.write(rest).await?
            } else {
                half.write_vectored(&[IoSlice::new(buf), IoSlice::new(rest)])
                    .await?
            };
            if n == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
            }
            let from_buf = n.min(buf.len());
            buf.advance(from_buf);
            *sent += n - from_buf;
            wrote += n;
        }
        Ok(wrote)
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        if self.sent < self.tail.len() {
            let rest = &self.tail[self.sent..];
            self.out.buf.extend_from_slice(rest);
        }
        if !self.out.buf.is_empty() {
            self.kick.notify_one();
        }
    }
}

#[cfg(test)]
mod tests;
