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

use std::io::IoSlice;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use hbcore::link::{Lane, LinkCodec, LinkError as CodecError, Message};
use hbcore::report::chain;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Mutex, MutexGuard, Notify};
use tokio_util::sync::CancellationToken;

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
}

/// The sending side of one session.
pub(super) struct Wire {
    out: Mutex<Out>,
    /// Frames of the reader that found the lock taken, for the next holder.
    backlog: std::sync::Mutex<BytesMut>,
    /// Wakes the flusher: something waits in the backlog or the buffer.
    kick: Notify,
    codec: LinkCodec,
    closed: CancellationToken,
    /// For the log: whom this session joins.
    peer: String,
    lane: Lane,
    epoch: Instant,
    /// When a frame last went out, in microseconds since `epoch`.
    last_sent_us: AtomicU64,
}

impl Wire {
    /// The sending side over `half`; `pending` are bytes already framed
    /// (left by the handshake's writer), sent before anything else.
    pub(super) fn new(
        half: OwnedWriteHalf,
        codec: LinkCodec,
        pending: BytesMut,
        closed: CancellationToken,
        peer: String,
        lane: Lane,
    ) -> Wire {
        Wire {
            out: Mutex::new(Out {
                half: Some(half),
                buf: pending,
            }),
            backlog: std::sync::Mutex::new(BytesMut::new()),
            kick: Notify::new(),
            codec,
            closed,
            peer,
            lane,
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
        self.take_backlog(&mut out.buf);
        let tail = match msg {
            Some(msg) => {
                let kind = msg.kind();
                self.codec
                    .encode_split(msg, &mut out.buf)
                    .map_err(|source| WireError::Encode { kind, source })?
            }
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
        if self.take_backlog(&mut sending.out.buf) {
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
        if wrote {
            self.note_sent();
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
        let kind = msg.kind();
        let encode = |msg, buf: &mut BytesMut| {
            let tail = self
                .codec
                .encode_split(msg, buf)
                .map_err(|source| WireError::Encode { kind, source })?;
            buf.extend_from_slice(&tail);
            Ok::<(), WireError>(())
        };
        let Ok(mut out) = self.out.try_lock() else {
            let mut backlog = self.backlog.lock().map_err(|_| WireError::Closed)?;
            encode(msg, &mut backlog)?;
            drop(backlog);
            self.kick.notify_one();
            return Ok(());
        };
        if self.closed.is_cancelled() {
            return Err(WireError::Closed);
        }
        let Out { half, buf } = &mut *out;
        let half = half.as_ref().ok_or(WireError::Closed)?;
        encode(msg, buf)?;
        while !buf.is_empty() {
            match half.try_write(buf) {
                Ok(0) => return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into()),
                Ok(n) => buf.advance(n),
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

    /// Moves the reader's queued frames into `buf`; whether there were any.
    fn take_backlog(&self, buf: &mut BytesMut) -> bool {
        let Ok(mut backlog) = self.backlog.lock() else {
            return false;
        };
        if backlog.is_empty() {
            return false;
        }
        buf.extend_from_slice(&backlog);
        backlog.clear();
        true
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
    /// Writes the buffer, then the data; whether there was anything to write.
    async fn write(&mut self) -> Result<bool, WireError> {
        let Sending {
            out, tail, sent, ..
        } = self;
        let Out { half, buf } = &mut **out;
        let half = half.as_mut().ok_or(WireError::Closed)?;
        let any = !buf.is_empty() || *sent < tail.len();
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
        }
        Ok(any)
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
mod tests {
    use std::sync::Mutex as StdMutex;

    use hbcore::link::{PeerError, PeerReply, PeerRequest};
    use tokio::runtime::Runtime;
    use tokio_util::codec::FramedRead;

    use super::super::tests::config;
    use super::super::{Handler, Link};
    use super::*;

    /// Records the writes that arrive; holds a write to pair `held` until released.
    struct Recorder {
        held: &'static str,
        release: Notify,
        /// (pair, length, whether the bytes are the pattern `data` makes).
        seen: StdMutex<Vec<(String, usize, bool)>>,
    }

    impl Recorder {
        fn new(held: &'static str) -> Arc<Recorder> {
            Arc::new(Recorder {
                held,
                release: Notify::new(),
                seen: StdMutex::new(Vec::new()),
            })
        }

        fn seen(&self) -> Vec<(String, usize, bool)> {
            self.seen.lock().expect("seen").clone()
        }

        /// Waits (on this thread) until `pair`'s write has arrived.
        fn wait_for(&self, pair: &str) -> (String, usize, bool) {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Some(w) = self.seen().into_iter().find(|w| w.0 == pair) {
                    return w;
                }
                assert!(Instant::now() < deadline, "write '{pair}' never arrived");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    impl Handler for Recorder {
        async fn handle(&self, _peer: &str, request: PeerRequest) -> Result<PeerReply, PeerError> {
            if let PeerRequest::Write { pair, data, .. } = request {
                let intact = data == self::data(data.len());
                let held = pair == self.held;
                self.seen
                    .lock()
                    .expect("seen")
                    .push((pair, data.len(), intact));
                if held {
                    self.release.notified().await;
                }
            }
            Ok(PeerReply::Done)
        }
        fn link_up(self: &Arc<Self>, _peer: &str, _lane: Lane) {}
        fn link_down(self: &Arc<Self>, _peer: &str, _lane: Lane) {}
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i % 251) as u8).collect()
    }

    fn write(pair: &str, len: usize) -> PeerRequest {
        PeerRequest::Write {
            pair: pair.into(),
            offset: 0,
            data: data(len).into(),
        }
    }

    fn runtime(workers: usize) -> Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .expect("runtime")
    }

    /// Sites `a` (on `rt_a`) and `b` (on `rt_b`) linked on loopback, both lanes up.
    fn linked(
        dir: &std::path::Path,
        (rt_a, at_a): (&Runtime, Arc<Recorder>),
        (rt_b, at_b): (&Runtime, Arc<Recorder>),
        stop: &CancellationToken,
    ) -> (Arc<Link>, Arc<Link>) {
        let listen = || {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.set_nonblocking(true).expect("nonblocking");
            l
        };
        let (la, lb) = (listen(), listen());
        let (aa, ba) = (
            la.local_addr().expect("addr"),
            lb.local_addr().expect("addr"),
        );
        let key = b"a link test key of enough bytes".to_vec();
        let a = Arc::new(Link::new(
            &config(dir, "a", aa, "b", ba.to_string()),
            key.clone(),
        ));
        let b = Arc::new(Link::new(&config(dir, "b", ba, "a", aa.to_string()), key));
        rt_b.block_on(async {
            let lb = tokio::net::TcpListener::from_std(lb).expect("listener");
            b.start(lb, at_b, stop.clone());
        });
        rt_a.block_on(async {
            let la = tokio::net::TcpListener::from_std(la).expect("listener");
            a.start(la, at_a, stop.clone());
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while !Lane::ALL.iter().all(|l| {
            a.peer("b", *l).is_ok_and(|p| p.is_up()) && b.peer("a", *l).is_ok_and(|p| p.is_up())
        }) {
            assert!(Instant::now() < deadline, "both lanes up");
            std::thread::sleep(Duration::from_millis(10));
        }
        (a, b)
    }

    /// Two linked sites: `a` on a runtime of `workers.0` threads, `b` on one
    /// of `workers.1`, `b` holding writes to pair `held` until released.
    struct Sites {
        a: Arc<Link>,
        _b: Arc<Link>,
        stop: CancellationToken,
        at_b: Arc<Recorder>,
        rt_a: Runtime,
        _rt_b: Runtime,
        _dir: tempfile::TempDir,
    }

    fn sites(workers: (usize, usize), held: &'static str) -> Sites {
        let dir = tempfile::tempdir().expect("tempdir");
        let (rt_a, rt_b) = (runtime(workers.0), runtime(workers.1));
        let stop = CancellationToken::new();
        let at_b = Recorder::new(held);
        let (a, b) = linked(
            dir.path(),
            (&rt_a, Recorder::new("none")),
            (&rt_b, Arc::clone(&at_b)),
            &stop,
        );
        Sites {
            a,
            _b: b,
            stop,
            at_b,
            rt_a,
            _rt_b: rt_b,
            _dir: dir,
        }
    }

    impl Sites {
        /// `a`'s link to `b` on `lane`.
        fn peer(&self, lane: Lane) -> Arc<PeerLink> {
            Arc::clone(self.a.peer("b", lane).expect("lane"))
        }
    }

    /// The FUSE worker sends inside `Handle::block_on`: its frame must leave
    /// from that thread, not wait for a task on the runtime's workers (here
    /// the only one is busy).
    #[test]
    fn a_senders_frame_leaves_from_its_own_thread_with_every_worker_busy() {
        let t = sites((1, 2), "none");
        let peer = t.peer(Lane::Bulk);
        let (busy_tx, busy_rx) = std::sync::mpsc::channel::<()>();
        let (free_tx, free_rx) = std::sync::mpsc::channel::<()>();
        t.rt_a.spawn(async move {
            let _ = busy_tx.send(());
            let _ = free_rx.recv(); // blocks a's only worker
        });
        busy_rx.recv().expect("a's worker is busy");
        let pending = t
            .rt_a
            .handle()
            .block_on(peer.send(write("x", 4096)))
            .expect("sent");
        assert_eq!(t.at_b.wait_for("x"), ("x".to_string(), 4096, true));
        free_tx.send(()).expect("free a's worker");
        let answer = t.rt_a.block_on(pending.wait(Duration::from_secs(10)));
        assert!(matches!(answer, Ok(PeerReply::Done)), "{answer:?}");
        t.stop.cancel();
    }

    /// The reader's answer, written while a sender holds the lock on a full
    /// socket, waits in the backlog and follows in a whole frame once the
    /// peer reads again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_answer_the_reader_could_not_write_follows_once_the_socket_drains() {
        use futures_util::StreamExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (server, _) = accepted.expect("accept");
        let (_read, half) = client.expect("connect").into_split();
        let mut codec = LinkCodec::handshake();
        codec.authenticated();
        let closed = CancellationToken::new();
        let wire = Arc::new(Wire::new(
            half,
            codec,
            BytesMut::new(),
            closed.clone(),
            "b".into(),
            Lane::Bulk,
        ));
        let peer = Arc::new(PeerLink {
            site: "b".into(),
            lane: Lane::Bulk,
            address: addr.to_string(),
            session: std::sync::Mutex::new(None),
            stats: Default::default(),
        });
        tokio::spawn(Arc::clone(&wire).flush_and_ping(peer, Duration::from_secs(60)));
        let big = hbcore::link::FORMAT.max_payload - 64;
        let sender = {
            let wire = Arc::clone(&wire);
            tokio::spawn(async move {
                for id in 0..8 {
                    let body = write("big", big);
                    wire.send(Message::Request { id, body })
                        .await
                        .expect("sent");
                }
            })
        };
        // 32 MiB do not fit in the socket's buffers: the sender waits with the lock.
        let deadline = Instant::now() + Duration::from_secs(20);
        while wire.out.try_lock().is_ok() {
            assert!(Instant::now() < deadline, "the sender never held the lock");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        wire.send_now(Message::Pong)
            .expect("queued, not waited for");
        let mut stream = FramedRead::new(server, codec);
        let (mut writes, mut pong) = (0, false);
        let read = async {
            while writes < 8 || !pong {
                match stream
                    .next()
                    .await
                    .expect("the stream goes on")
                    .expect("a whole frame")
                {
                    Message::Request {
                        body: PeerRequest::Write { data, .. },
                        ..
                    } => {
                        assert!(data == self::data(big), "write {writes} intact");
                        writes += 1;
                    }
                    Message::Pong => pong = true,
                    Message::Ping => {}
                    other => panic!("unexpected {}", other.kind()),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(30), read)
            .await
            .expect("every frame arrived");
        sender.await.expect("the sender finished");
        closed.cancel();
    }

    /// Pings go from the flusher alone: a quiet link still measures its
    /// round trip (and the peer hears from it before its timeout).
    #[test]
    fn a_quiet_link_pings_and_times_the_pong() {
        let t = sites((1, 1), "none");
        let peer = t.peer(Lane::Heartbeat);
        let deadline = Instant::now() + Duration::from_secs(20);
        while peer.stats.pongs() < 2 {
            assert!(Instant::now() < deadline, "no round trips measured");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(peer.stats.rtt().is_some());
        assert_eq!(peer.stats.sessions(), 1);
        t.stop.cancel();
    }

    /// A sender cancelled while its frame is half in the socket: the rest
    /// goes out before the next frame, so the peer reads whole frames and
    /// the session lives on.
    #[test]
    fn a_sender_cancelled_mid_frame_leaves_the_stream_whole() {
        let t = sites((2, 2), "stuck");
        let peer = t.peer(Lane::Bulk);
        let big = hbcore::link::FORMAT.max_payload - 64;
        let cancelled = t.rt_a.block_on(async {
            // b's reader applies this one inline and stops reading...
            let _stuck = peer.send(write("stuck", 4096)).await.expect("sent");
            t.at_b.wait_for("stuck");
            // ...so the socket fills, and a send that waits is given up.
            for i in 0..256 {
                let name = format!("big{i}");
                let send = peer.send(write(&name, big));
                if tokio::time::timeout(Duration::from_millis(200), send)
                    .await
                    .is_err()
                {
                    return name;
                }
            }
            panic!("the socket never filled");
        });
        t.at_b.release.notify_one();
        let answer = t
            .rt_a
            .block_on(peer.call(write("after", 4096), Duration::from_secs(20)));
        assert!(matches!(answer, Ok(PeerReply::Done)), "{answer:?}");
        assert_eq!(t.at_b.wait_for(&cancelled), (cancelled, big, true));
        assert!(
            t.at_b.seen().iter().all(|(_, _, intact)| *intact),
            "every write arrived whole"
        );
        assert_eq!(peer.stats.sessions(), 1, "the session lived on");
        t.stop.cancel();
    }
}
