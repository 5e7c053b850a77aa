//! One open session with a peer: the connection's write half shared by
//! every sender ([`Wire`]), a reader loop and an answerer task, until it breaks.
//!
//! ```text
//!  PeerLink::send ──(Wire lock, on the caller's thread)──frames──> TCP
//!  TCP ──frames──> reader loop ─┬ Response ──> waiting[id] (wakes the sender)
//!                               ├ Write <= 64 KiB, nothing queued or awaited ──> Handler::handle here,
//!                               │    answer written here (Wire::send_now, never waits)
//!                               ├ Ping ──> Pong written here (Wire::send_now)
//!                               └ other Request (a copy frame too) ──> answerer task ──> Handler::handle ──> Wire::send
//!  flusher task: what send_now could not write; a Ping when nothing went out for timeout / 4
//! ```
//!
//! One sync 4 KiB host write, as counted in this code (issue 13 counted 7
//! cross-thread wake-ups and 6 copies of the data before):
//!
//! ```text
//!  PVOL site, FUSE worker thread (Handle::block_on)        SVOL site, reader task (tokio worker)
//!   the host's data into a pooled aligned buffer,
//!     shared as Bytes (site::datapath) ............... copy 1
//!   PeerLink::send: lock, encode header + prefix into the
//!     Wire's buffer, writev(header, data) ............ (kernel copy)  ──> read into the reader's
//!                                                                          buffer (kernel copy)
//!   PVOL write: pwrite from the same buffer, on                          decode: the data is a slice
//!     this thread (hbio::inline_io)                                        of that buffer (LinkCodec)
//!                                                                        SVOL write: into a pooled
//!                                                                          aligned buffer ....... copy 2
//!                                                                          pwrite on this task
//!   waits for the answer                                                 answer: encode, write(2) here
//!   PVOL reader task: Response ──> oneshot ──> FUSE .. wake-up   <──
//! ```
//!
//! So the data is copied twice in user space, once at each site (was 6,
//! then 4: the frame's `to_vec` and postcard's `Vec` at the SVOL are gone),
//! plus the kernel's socket copies; a write not of whole blocks is copied once more
//! at the PVOL (its read-modify-write). Volume I/O is inline at both ends,
//! so of the wake-ups counted here (was 7) only the ack's is left: the
//! crate's tour counts the whole path's four. A write over 64 KiB (a copy
//! or resync frame, a host's 1 MiB) is copied in user space at neither
//! site: the PVOL reads or copies it into a pooled buffer and sends it from
//! there, and the SVOL's reader ([`super::reader`]) reads it from the socket
//! straight into a pooled aligned buffer that its disk write takes as it
//! is. For a 4 KiB write that would cost a second read per frame, more
//! than the copy it saves. Socket readiness (epoll waking the reader
//! tasks) is not counted, as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hbcore::link::seal::{Opener, Sealer};
use hbcore::link::{Message, PeerError, PeerReply, PeerRequest};
use hbcore::report::chain;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::handshake::Conn;
use super::reader::FrameReader;
use super::wire::Wire;
use super::{Handler, PeerLink};

/// Senders waiting for the answer to their request, by request id.
type Waiters = Mutex<HashMap<u64, oneshot::Sender<Result<PeerReply, PeerError>>>>;

/// One open session, as [`PeerLink::send`] uses it.
pub(super) struct Session {
    /// The connection's write half, which senders write their frames on.
    pub(super) wire: Arc<Wire>,
    /// Requests sent and not yet answered.
    pub(super) waiting: Waiters,
    /// The next request id.
    pub(super) next_id: AtomicU64,
    /// Cancelled when the session ends (or to end it).
    pub(super) closed: CancellationToken,
    /// The other end of the connection, to tell sessions apart in the log.
    remote: String,
}

/// Runs a session with `peer` over `conn` until it breaks or `stop` is cancelled;
/// its frames are sealed with `keys` (`None`: unsealed).
/// A peer silent for `timeout` is dead; a quiet link carries a ping every `timeout / 4`.
pub(super) async fn run<H: Handler>(
    peer: Arc<PeerLink>,
    conn: Conn,
    keys: Option<(Sealer, Opener)>,
    handler: Arc<H>,
    stop: CancellationToken,
    timeout: Duration,
) {
    let closed = stop.child_token();
    let remote = conn
        .get_ref()
        .peer_addr()
        .map_or_else(|_| "an unknown address".to_string(), |a| a.to_string());
    // The handshake's reader may hold bytes past the Welcome: they stay first.
    let parts = conn.into_parts();
    let (read_half, write_half) = parts.io.into_split();
    let sealed = keys.is_some();
    let (sealer, opener) = keys.unzip();
    let mut stream = FrameReader::new(
        read_half,
        parts.codec,
        parts.read_buf,
        opener,
        handler.buffers(),
    );
    let wire = Arc::new(Wire::new(
        write_half,
        parts.codec,
        parts.write_buf,
        sealer,
        closed.clone(),
        peer.site.clone(),
        peer.lane,
    ));
    let session = Arc::new(Session {
        wire: Arc::clone(&wire),
        waiting: Mutex::new(HashMap::new()),
        next_id: AtomicU64::new(1),
        closed: closed.clone(),
        remote,
    });
    let replaced = peer
        .session
        .lock()
        .ok()
        .and_then(|mut s| s.replace(Arc::clone(&session)));
    if let Some(old) = replaced {
        // Only the peer's dialer opens sessions, one at a time: a new one
        // means it has given up the old connection, which is dead at its end.
        tracing::warn!(
            peer = %peer.site,
            lane = %peer.lane,
            "remote link: site '{}' opened a second session (from {}) while one (from {}) was open; \
             keeping the new session and closing the old one, because the peer dials again only \
             after losing its session",
            peer.site,
            session.remote,
            old.remote
        );
        old.closed.cancel();
    }
    tracing::info!(peer = %peer.site, lane = %peer.lane, remote = %session.remote, sealed, "remote link up");
    peer.stats.session_opened();
    handler.link_up(&peer.site, peer.lane);

    let flusher = tokio::spawn(Arc::clone(&wire).flush_and_ping(Arc::clone(&peer), timeout / 4));

    // Requests are answered in arrival order by their own task, so the
    // reader stays free to deliver responses to requests that a handler
    // itself sends to the peer (a forwarded split drains pending writes).
    let (requests, mut incoming) = mpsc::channel::<(u64, PeerRequest)>(1024);
    let queued = Arc::new(AtomicUsize::new(0));
    let answerer = {
        let (wire, site, handler, answered) = (
            Arc::clone(&wire),
            peer.site.clone(),
            Arc::clone(&handler),
            Arc::clone(&queued),
        );
        tokio::spawn(async move {
            while let Some((id, body)) = incoming.recv().await {
                let result = handler.handle(&site, body).await;
                answered.fetch_sub(1, Ordering::SeqCst);
                if wire.send(Message::Response { id, result }).await.is_err() {
                    break;
                }
            }
        })
    };

    let reason = loop {
        let next = tokio::select! {
            _ = closed.cancelled() => break "closed locally".to_string(),
            n = tokio::time::timeout(timeout, stream.next()) => n,
        };
        let msg = match next {
            Err(_) => break format!("nothing heard for {timeout:?}"),
            Ok(None) => break "the peer closed the connection".to_string(),
            Ok(Some(Err(e))) => {
                if let Some(reason) = e.rejected() {
                    peer.stats.frame_rejected(reason);
                }
                break format!("dropped the connection: {}", chain(&e));
            }
            Ok(Some(Ok(msg))) => msg,
        };
        match msg {
            Message::Ping => {
                if let Err(e) = wire.send_now(Message::Pong) {
                    break format!("cannot answer a ping: {}", chain(&e));
                }
            }
            Message::Pong => peer.stats.pong_received(),
            // A small write needs nothing from the peer: with no other
            // request queued, answering it here keeps the order and saves a
            // hop; unless this site awaits answers on this session (its own
            // writes' acks), which must not wait behind this disk write. A
            // large one (a copy frame, a host's 1 MiB) goes to the answerer,
            // so this reader takes in the next frame while the disk writes it.
            Message::Request { id, body }
                if matches!(&body, PeerRequest::Write { data, .. } if data.len() <= super::SMALL_WRITE)
                    && queued.load(Ordering::SeqCst) == 0
                    && session.waiting.lock().is_ok_and(|w| w.is_empty()) =>
            {
                let result = handler.handle(&peer.site, body).await;
                if let Err(e) = wire.send_now(Message::Response { id, result }) {
                    break format!("cannot answer a write: {}", chain(&e));
                }
            }
            Message::Request { id, body } => {
                queued.fetch_add(1, Ordering::SeqCst);
                if requests.send((id, body)).await.is_err() {
                    break "the request handler stopped".to_string();
                }
            }
            Message::Response { id, result } => {
                let waiter = session.waiting.lock().ok().and_then(|mut w| w.remove(&id));
                if let Some(w) = waiter {
                    let _ = w.send(result);
                }
            }
            Message::Refused { reason } => break format!("the peer closed the session: {reason}"),
            other => {
                break format!(
                    "dropped the connection: a {} message, which belongs to the handshake, in an open session",
                    other.kind()
                )
            }
        }
    };
    closed.cancel();
    drop(requests);
    answerer.abort();
    let _ = flusher.await;
    wire.shutdown().await;
    // Dropping the waiters fails every request still in flight.
    if let Ok(mut w) = session.waiting.lock() {
        w.clear();
    }
    let current = peer.session.lock().ok().map(|mut s| {
        let is_current = s.as_ref().is_some_and(|c| Arc::ptr_eq(c, &session));
        if is_current {
            *s = None;
        }
        is_current
    });
    if current == Some(true) {
        if stop.is_cancelled() {
            tracing::info!(peer = %peer.site, lane = %peer.lane, "remote link closed for shutdown");
        } else {
            tracing::warn!(peer = %peer.site, lane = %peer.lane, "remote link down: {reason}");
            handler.link_down(&peer.site, peer.lane);
        }
    }
}
