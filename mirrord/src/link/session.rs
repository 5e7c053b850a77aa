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
//!                                   (a large sealed write's data is opened there, not in the reader)
//!  flusher task: what send_now could not write; a Ping when nothing went out for timeout / 8
//! ```
//!
//! A session opens by re-sending the requests a lost one left unanswered
//! (`super::resume`), and ends either resumable (a transport failure: its
//! requests are held for the next session, for `timeout / 2`) or not (a
//! refused frame, a reset, the peer's refusal: its requests fail and the
//! site is told, `Handler::link_down`). Silence for `timeout / 2` ends it,
//! so that a lost path and the move to the next fit in one link timeout.
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

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hbcore::link::seal::{Opener, Sealer};
use hbcore::link::{LinkError, Message, PeerRequest};
use hbcore::report::chain;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::handshake::Conn;
use super::live::{Session, Waiter, Waiting};
use super::paths::PathLink;
use super::peer_link::Install;
use super::reader::{FrameReader, Incoming, SealedWrite};
use super::wire::{Out, Wire};
use super::{Handler, PeerLink};

/// What a session brings beside its connection.
pub(super) struct Opened {
    /// Its sealing keys (`None`: unsealed).
    pub(super) keys: Option<(Sealer, Opener)>,
    /// The peer's incarnation.
    pub(super) incarnation: u64,
    /// The path it runs over, if known.
    pub(super) path: Option<Arc<PathLink>>,
    /// Both sides resume the lost session's requests.
    pub(super) resume: bool,
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ended {
    /// A transport failure: its requests wait for the next session.
    Resumable,
    /// Refused, reset or shut down.
    Final,
}

/// Runs a session with `peer` over `conn` until it breaks or `stop` is cancelled.
/// A peer silent for `timeout / 2` is dead; a quiet link carries a ping every `timeout / 8`.
pub(super) async fn run<H: Handler>(
    peer: Arc<PeerLink>,
    conn: Conn,
    opened: Opened,
    handler: Arc<H>,
    stop: CancellationToken,
    timeout: Duration,
) -> Ended {
    let closed = stop.child_token();
    let remote = conn
        .get_ref()
        .peer_addr()
        .map_or_else(|_| "an unknown address".to_string(), |a| a.to_string());
    // The handshake's reader may hold bytes past the Welcome: they stay first.
    let parts = conn.into_parts();
    let (read_half, write_half) = parts.io.into_split();
    let sealed = opened.keys.is_some();
    let (sealer, opener) = opened.keys.unzip();
    let path = opened.path;
    let mut stream = FrameReader::new(
        read_half,
        parts.codec,
        parts.read_buf,
        opener,
        handler.buffers(),
        path.clone(),
    );
    let wire = Arc::new(Wire::new(
        Out::new(write_half, parts.write_buf, sealer),
        parts.codec,
        closed.clone(),
        peer.site.clone(),
        peer.lane,
        path.clone(),
    ));
    let session = Arc::new(Session {
        wire: Arc::clone(&wire),
        waiting: Mutex::new(Waiting::new()),
        closed: closed.clone(),
        incarnation: opened.incarnation,
        final_end: AtomicBool::new(false),
        sealed,
        remote,
    });
    let silence = timeout / 2;
    if let Some(p) = &path {
        p.set_using(peer.lane, true, false);
    }
    let flusher = tokio::spawn(Arc::clone(&wire).flush_and_ping(Arc::clone(&peer), timeout / 8));
    let (reason, end) = match open(&peer, &session, &handler, opened.resume).await {
        Ok(()) => serve(&peer, &session, &mut stream, &handler, silence, &path).await,
        Err(reason) => (reason, Ended::Resumable),
    };
    closed.cancel();
    let _ = flusher.await;
    wire.shutdown().await;
    let end = if stop.is_cancelled() || session.final_end.load(Ordering::Relaxed) {
        Ended::Final
    } else {
        end
    };
    if let Some(p) = &path {
        p.set_using(peer.lane, false, end == Ended::Resumable);
    }
    finish(&peer, &session, &handler, &stop, end, &reason, silence);
    end
}

/// Re-sends what a lost session left unanswered, then makes the session current.
async fn open<H: Handler>(
    peer: &Arc<PeerLink>,
    session: &Arc<Session>,
    handler: &Arc<H>,
    resume: bool,
) -> Result<(), String> {
    let mut resent = 0usize;
    loop {
        match peer.install(session, session.incarnation, resume) {
            Install::Resend { held, replaced } => {
                say_replaced(peer, session, replaced.as_deref());
                for (id, Waiter { tx, body }) in held {
                    let msg = Message::Request {
                        id,
                        body: body.clone(),
                    };
                    if let Ok(mut w) = session.waiting.lock() {
                        w.insert(id, Waiter { tx, body });
                    }
                    if session.wire.send(msg).await.is_err() {
                        return Err("the connection failed while re-sending held requests".into());
                    }
                    resent += 1;
                }
            }
            Install::Resumed { replaced } => {
                say_replaced(peer, session, replaced.as_deref());
                peer.stats.session_opened();
                peer.stats.session_resumed();
                tracing::info!(peer = %peer.site, lane = %peer.lane, remote = %session.remote, sealed = session.sealed,
                    "remote link resumed on a new session ({resent} requests re-sent)");
                // Generations are compared at every new session, resumed or not.
                handler.link_up(&peer.site, peer.lane);
                return Ok(());
            }
            Install::Current { failed, replaced } => {
                say_replaced(peer, session, replaced.as_deref());
                if let Some(failed) = failed {
                    tracing::warn!(peer = %peer.site, lane = %peer.lane,
                        "remote link down: the new session cannot resume the lost one (site '{}' \
                         restarted, or one side declared the link down); {} held requests fail",
                        peer.site, failed.len());
                    drop(failed);
                    handler.link_down(&peer.site, peer.lane);
                }
                peer.stats.session_opened();
                tracing::info!(peer = %peer.site, lane = %peer.lane, remote = %session.remote, sealed = session.sealed, "remote link up");
                handler.link_up(&peer.site, peer.lane);
                return Ok(());
            }
        }
    }
}

fn say_replaced(peer: &PeerLink, session: &Session, old: Option<&Session>) {
    if let Some(old) = old {
        // Only the peer's dialer opens sessions, one at a time: a new one
        // means it has given up the old connection, which is dead at its end.
        tracing::warn!(
            peer = %peer.site,
            lane = %peer.lane,
            "remote link: site '{}' opened a second session (from {}) while one (from {}) was open; \
             keeping the new session and closing the old one, because the peer dials again only \
             after losing its session (its unanswered requests move to the new one)",
            peer.site,
            session.remote,
            old.remote
        );
    }
}

/// What the answerer task takes, in arrival order.
enum Job {
    /// A request, whole.
    Request(u64, PeerRequest),
    /// A large sealed write, opened by the answerer before it is applied.
    Sealed(Box<SealedWrite>),
}

/// The session's reader loop, until the session breaks: why, and whether
/// the break can be resumed.
async fn serve<H: Handler>(
    peer: &Arc<PeerLink>,
    session: &Arc<Session>,
    stream: &mut FrameReader<tokio::net::tcp::OwnedReadHalf>,
    handler: &Arc<H>,
    silence: Duration,
    path: &Option<Arc<PathLink>>,
) -> (String, Ended) {
    let wire = &session.wire;
    // Requests are answered in arrival order by their own task, so the
    // reader stays free to deliver responses to requests that a handler
    // itself sends to the peer (a forwarded split drains pending writes).
    let (requests, mut incoming) = mpsc::channel::<Job>(1024);
    let queued = Arc::new(AtomicUsize::new(0));
    // Why the answerer ended the session (a sealed write that did not open).
    let refused = Arc::new(Mutex::new(None::<String>));
    let answerer = {
        let (wire, peer, handler, answered, session, refused) = (
            Arc::clone(wire),
            Arc::clone(peer),
            Arc::clone(handler),
            Arc::clone(&queued),
            Arc::clone(session),
            Arc::clone(&refused),
        );
        let incarnation = session.incarnation;
        tokio::spawn(async move {
            while let Some(job) = incoming.recv().await {
                let (id, body) = match job {
                    Job::Request(id, body) => (id, body),
                    Job::Sealed(write) => match write.open() {
                        Ok(request) => request,
                        // Refused as the reader refuses a frame: counted,
                        // nothing applied, and the session ends for good.
                        Err(e) => {
                            let (why, _) = dropped(&peer, &e);
                            if let Ok(mut r) = refused.lock() {
                                *r = Some(why);
                            }
                            session.no_resume();
                            session.closed.cancel();
                            break;
                        }
                    },
                };
                let result = peer
                    .answer(incarnation, id, handler.handle(&peer.site, body))
                    .await;
                answered.fetch_sub(1, Ordering::SeqCst);
                if wire.send(Message::Response { id, result }).await.is_err() {
                    break;
                }
            }
        })
    };
    let closed = &session.closed;
    let ended = loop {
        let next = tokio::select! {
            _ = closed.cancelled() => break match refused.lock().ok().and_then(|mut r| r.take()) {
                Some(why) => (why, Ended::Final),
                None => ("closed locally".to_string(), Ended::Resumable),
            },
            n = tokio::time::timeout(silence, stream.next()) => n,
        };
        let msg = match next {
            Err(_) => break (format!("nothing heard for {silence:?}"), Ended::Resumable),
            Ok(None) => {
                break (
                    "the peer closed the connection".to_string(),
                    Ended::Resumable,
                )
            }
            Ok(Some(Err(e))) => break dropped(peer, &e),
            Ok(Some(Ok(Incoming::Msg(msg)))) => msg,
            Ok(Some(Ok(Incoming::Sealed(write)))) => {
                queued.fetch_add(1, Ordering::SeqCst);
                if requests.send(Job::Sealed(write)).await.is_err() {
                    break stopped(&refused);
                }
                continue;
            }
        };
        match msg {
            Message::Ping => {
                if let Err(e) = wire.send_now(Message::Pong) {
                    break (format!("cannot answer a ping: {}", chain(&e)), Ended::Resumable);
                }
            }
            Message::Pong => {
                peer.stats.pong_received();
                if let (Some(p), Some(rtt)) = (path, peer.stats.rtt()) {
                    p.note_rtt(rtt);
                }
            }
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
                let result = peer
                    .answer(session.incarnation, id, handler.handle(&peer.site, body))
                    .await;
                if let Err(e) = wire.send_now(Message::Response { id, result }) {
                    break (format!("cannot answer a write: {}", chain(&e)), Ended::Resumable);
                }
            }
            Message::Request { id, body } => {
                queued.fetch_add(1, Ordering::SeqCst);
                if requests.send(Job::Request(id, body)).await.is_err() {
                    break stopped(&refused);
                }
            }
            Message::Response { id, result } => {
                let waiter = session.waiting.lock().ok().and_then(|mut w| w.remove(&id));
                if let Some(w) = waiter {
                    let _ = w.tx.send(result);
                }
            }
            Message::Refused { reason } => {
                break (format!("the peer closed the session: {reason}"), Ended::Final)
            }
            other => {
                break (format!(
                    "dropped the connection: a {} message, which belongs to the handshake, in an open session",
                    other.kind()
                ), Ended::Final)
            }
        }
    };
    drop(requests);
    answerer.abort();
    ended
}

/// The answerer stopped taking requests: why (its refusal of a frame, if that was it).
fn stopped(refused: &Mutex<Option<String>>) -> (String, Ended) {
    let why = refused.lock().ok().and_then(|mut r| r.take());
    (
        why.unwrap_or_else(|| "the request handler stopped".to_string()),
        Ended::Final,
    )
}

/// A frame that could not be read: a refused one ends the session for good
/// (counted by reason); a transport failure can be resumed.
fn dropped(peer: &PeerLink, e: &LinkError) -> (String, Ended) {
    let why = format!("dropped the connection: {}", chain(e));
    match e.rejected() {
        // A cut mid-frame is what a dying path looks like.
        Some(reason @ "truncated") => {
            peer.stats.frame_rejected(reason);
            (why, Ended::Resumable)
        }
        Some(reason) => {
            peer.stats.frame_rejected(reason);
            (why, Ended::Final)
        }
        None => (why, Ended::Resumable),
    }
}

/// After the session: its unanswered requests held for the next session
/// (resumable) or failed; the site told if the link is down.
fn finish<H: Handler>(
    peer: &Arc<PeerLink>,
    session: &Arc<Session>,
    handler: &Arc<H>,
    stop: &CancellationToken,
    end: Ended,
    reason: &str,
    grace: Duration,
) {
    let waiting = session
        .waiting
        .lock()
        .map(|mut w| std::mem::take(&mut *w))
        .unwrap_or_default();
    let Ok(mut state) = peer.state.lock() else {
        return;
    };
    let current = state
        .session
        .as_ref()
        .is_some_and(|c| Arc::ptr_eq(c, session));
    if !current {
        // Replaced: the new session took its requests when it was installed
        // (under this lock, so none were added since).
        return;
    }
    state.session = None;
    if stop.is_cancelled() {
        tracing::info!(peer = %peer.site, lane = %peer.lane, "remote link closed for shutdown");
        return;
    }
    if end == Ended::Resumable {
        let serial = state.hold(waiting, session.incarnation);
        drop(state);
        tracing::warn!(peer = %peer.site, lane = %peer.lane,
            "remote link session lost: {reason}; holding its requests for {grace:?} for a new session");
        let (peer, handler) = (Arc::clone(peer), Arc::clone(handler));
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            let expired = peer.state.lock().ok().and_then(|mut s| s.expire(serial));
            if let Some(failed) = expired {
                tracing::warn!(peer = %peer.site, lane = %peer.lane,
                    "remote link down: no new session within {grace:?}; {} requests fail", failed.len());
                drop(failed);
                handler.link_down(&peer.site, peer.lane);
            }
        });
        return;
    }
    // Its requests fail (their senders are dropped) and held ones with them.
    let held = std::mem::take(&mut state.held);
    state.hold = None;
    drop(state);
    drop((waiting, held));
    tracing::warn!(peer = %peer.site, lane = %peer.lane, "remote link down: {reason}");
    handler.link_down(&peer.site, peer.lane);
}
