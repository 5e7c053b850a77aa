//! [`PeerLink`]: the link to one peer site on one lane, its current session,
//! and the requests sent on it ([`PeerLink::send`], [`Pending`]). Called by
//! the site's tasks and threads (a FUSE worker's host write, copies, admin
//! operations); the session's reader task answers [`Pending`]s. Requests
//! carry ids of the link, not of a session, so that they can be re-sent on
//! the next session after a path change ([`super::resume`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hbcore::link::{Lane, Message, PeerError, PeerReply, PeerRequest};
use tokio::sync::oneshot;

use super::live::{Answer, Session, Waiter};
use super::paths::PathLink;
use super::resume::{Inbox, LinkState};
use super::wire::WireError;
use super::{stats, LinkError};

/// The link to one peer site on one lane.
pub struct PeerLink {
    /// The peer's site name.
    pub site: String,
    /// Which of the two connections to the peer this is.
    pub lane: Lane,
    /// The paths to the peer (shared with the other lane).
    pub paths: Arc<[Arc<PathLink>]>,
    /// The order this lane tries them in (indices into `paths`).
    pub(super) order: Vec<usize>,
    /// The open session and the requests held for the next one.
    pub(super) state: Mutex<LinkState>,
    /// The next request id.
    pub(super) next_id: AtomicU64,
    /// The answers given to the peer's requests, across sessions.
    pub(super) inbox: tokio::sync::Mutex<Inbox>,
    /// Sessions opened and the round trip of the pings.
    pub stats: stats::LinkStats,
}

/// An answer on its way.
pub struct Pending {
    site: String,
    answer: oneshot::Receiver<Result<PeerReply, PeerError>>,
}

impl Pending {
    /// Waits for the answer, at most `timeout`.
    pub async fn wait(self, timeout: Duration) -> Result<PeerReply, LinkError> {
        match tokio::time::timeout(timeout, self.answer).await {
            Err(_) => Err(LinkError::Timeout(self.site, timeout)),
            Ok(Err(_)) => Err(LinkError::Lost(self.site)),
            Ok(Ok(Err(reason))) => Err(LinkError::Refused(self.site, reason)),
            Ok(Ok(Ok(reply))) => Ok(reply),
        }
    }
}

impl PeerLink {
    /// The link to `site` on `lane` over `paths`, with no session yet.
    pub fn new(site: &str, lane: Lane, paths: Arc<[Arc<PathLink>]>) -> PeerLink {
        PeerLink {
            site: site.into(),
            lane,
            order: super::paths::order(&paths, lane),
            paths,
            state: Mutex::new(LinkState::default()),
            next_id: AtomicU64::new(1),
            inbox: tokio::sync::Mutex::new(Inbox::default()),
            stats: stats::LinkStats::default(),
        }
    }

    pub(super) fn current(&self) -> Option<Arc<Session>> {
        self.state.lock().ok().and_then(|s| s.session.clone())
    }

    /// Whether a session is open.
    pub fn is_up(&self) -> bool {
        self.current().is_some()
    }

    /// Whether requests are held for the next session (a path was lost).
    pub fn is_resuming(&self) -> bool {
        self.state.lock().is_ok_and(|s| s.hold.is_some())
    }

    /// Whether this side has not declared the link down since its last
    /// session with the peer's `incarnation` (any, if not known yet): it
    /// holds that session's requests, or the session is still open here.
    /// A new session resumes only if both sides say so.
    pub(super) fn would_resume(&self, incarnation: Option<u64>) -> bool {
        let same = |i: u64| incarnation.is_none_or(|want| want == i);
        self.state.lock().is_ok_and(|s| {
            s.hold.as_ref().is_some_and(|h| same(h.incarnation))
                || s.session.as_ref().is_some_and(|c| same(c.incarnation))
        })
    }

    /// Sends `body` to the peer: returns once its frame is in the socket,
    /// or held for the next session while a lost one is being replaced.
    /// Frames leave in the order of these calls (of the lock they take).
    pub async fn send(&self, body: PeerRequest) -> Result<Pending, LinkError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, answer) = oneshot::channel();
        let pending = Pending {
            site: self.site.clone(),
            answer,
        };
        let session = {
            let mut state = self
                .state
                .lock()
                .map_err(|_| LinkError::Down(self.site.clone()))?;
            match state.session.clone() {
                Some(session) => {
                    let waiter = Waiter {
                        tx,
                        body: body.clone(),
                    };
                    if let Ok(mut w) = session.waiting.lock() {
                        w.insert(id, waiter);
                    }
                    session
                }
                None if state.hold.is_some() => {
                    state.held.insert(id, Waiter { tx, body });
                    return Ok(pending);
                }
                None => return Err(LinkError::Down(self.site.clone())),
            }
        };
        let mut unsent = Unsent {
            link: self,
            id: Some(id),
        };
        // On this caller's thread: no task between it and the socket.
        match session.wire.send(Message::Request { id, body }).await {
            Ok(()) => {}
            // The session ended: the request is re-sent on the next one if
            // it resumes, and fails with it otherwise.
            Err(WireError::Closed | WireError::Io(_)) => {}
            Err(e @ WireError::Encode { .. }) => {
                return Err(LinkError::Refused(
                    self.site.clone(),
                    PeerError::Refused {
                        detail: hbcore::report::chain(&e),
                    },
                ))
            }
        }
        unsent.id = None;
        Ok(pending)
    }

    /// Sends `body` and waits for the answer, at most `timeout`.
    pub async fn call(&self, body: PeerRequest, timeout: Duration) -> Result<PeerReply, LinkError> {
        self.send(body).await?.wait(timeout).await
    }

    /// Drops the current session (the dialer reconnects); its requests fail
    /// rather than being re-sent.
    pub fn reset(&self) {
        if let Some(s) = self.current() {
            s.no_resume();
            s.closed.cancel();
        }
    }

    /// Forgets request `id` wherever it waits (its sender is gone).
    fn forget(&self, id: u64) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        state.held.remove(&id);
        if let Some(s) = &state.session {
            if let Ok(mut w) = s.waiting.lock() {
                w.remove(&id);
            }
        }
    }

    /// Answers the peer's request `id` through `handle`, unless it was
    /// answered before (re-sent after a path change): then the kept answer.
    pub(super) async fn answer<F>(&self, incarnation: u64, id: u64, handle: F) -> Answer
    where
        F: std::future::Future<Output = Answer>,
    {
        let mut inbox = self.inbox.lock().await;
        match inbox.seen(incarnation, id) {
            super::resume::Seen::Answered(answer) => {
                self.stats.request_repeated();
                answer
            }
            super::resume::Seen::Forgotten => Err(super::resume::forgotten(id)),
            super::resume::Seen::New => {
                let answer = handle.await;
                inbox.answered(id, &answer);
                answer
            }
        }
    }

    /// Takes the held requests for a new session, or, if none are left,
    /// makes `session` the current one (under the same lock, so that no
    /// request slips between). A session already current is replaced: its
    /// unanswered requests are taken to be re-sent first.
    pub(super) fn install(
        &self,
        session: &Arc<Session>,
        incarnation: u64,
        resume: bool,
    ) -> Install {
        let Ok(mut state) = self.state.lock() else {
            return Install::Current {
                failed: None,
                replaced: None,
            };
        };
        let mut replaced = None;
        if let Some(old) = state.session.take() {
            old.closed.cancel();
            let waiting = old
                .waiting
                .lock()
                .map(|mut w| std::mem::take(&mut *w))
                .unwrap_or_default();
            // Held while they are re-sent: senders meanwhile queue behind them.
            state.hold(waiting, old.incarnation);
            replaced = Some(old);
        }
        // A restarted peer does not know what the lost session applied;
        // a side that declared the link down meanwhile has moved on.
        if state
            .hold
            .as_ref()
            .is_some_and(|h| !resume || h.incarnation != incarnation)
        {
            let failed = std::mem::take(&mut state.held);
            state.hold = None;
            state.session = Some(Arc::clone(session));
            return Install::Current {
                failed: Some(failed),
                replaced,
            };
        }
        if !state.held.is_empty() {
            return Install::Resend {
                held: std::mem::take(&mut state.held),
                replaced,
            };
        }
        let resumed = state.hold.take().is_some();
        state.session = Some(Arc::clone(session));
        if resumed {
            Install::Resumed { replaced }
        } else {
            Install::Current {
                failed: None,
                replaced,
            }
        }
    }
}

/// What [`PeerLink::install`] did.
pub(super) enum Install {
    /// Re-send these on the new session first, then install again.
    Resend {
        /// The held requests, by id.
        held: BTreeMap<u64, Waiter>,
        /// The session it replaced.
        replaced: Option<Arc<Session>>,
    },
    /// The session is current; it took over held requests (no link_down was said).
    Resumed {
        /// The session it replaced.
        replaced: Option<Arc<Session>>,
    },
    /// The session is current, as a fresh one; `failed` are held requests
    /// that could not be resumed (the peer restarted, or one side declared
    /// the link down): the link is down, then up again.
    Current {
        /// Held requests to fail, when there was a hold (say link_down).
        failed: Option<BTreeMap<u64, Waiter>>,
        /// The session it replaced.
        replaced: Option<Arc<Session>>,
    },
}

/// A request whose frame is not out yet: if its sender is cancelled, nobody
/// waits for its answer (an entry left waiting would also keep the reader
/// from answering writes inline).
struct Unsent<'a> {
    link: &'a PeerLink,
    id: Option<u64>,
}

impl Drop for Unsent<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.link.forget(id);
        }
    }
}
