//! [`PeerLink`]: the link to one peer site on one lane, its current session,
//! and the requests sent on it ([`PeerLink::send`], [`Pending`]). Called by
//! the site's tasks and threads (a FUSE worker's host write, copies, admin
//! operations); the session's reader task answers [`Pending`]s.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hbcore::link::{Lane, Message, PeerError, PeerReply, PeerRequest};
use tokio::sync::oneshot;

use super::session::Session;
use super::{stats, LinkError};

/// The link to one peer site on one lane.
pub struct PeerLink {
    /// The peer's site name.
    pub site: String,
    /// Which of the two connections to the peer this is.
    pub lane: Lane,
    /// Where the dialer reaches the peer.
    pub(super) address: String,
    /// The open session, if any (set by the session task).
    pub(super) session: Mutex<Option<Arc<Session>>>,
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
    fn current(&self) -> Option<Arc<Session>> {
        self.session.lock().ok().and_then(|s| s.clone())
    }

    /// Whether a session is open.
    pub fn is_up(&self) -> bool {
        self.current().is_some()
    }

    /// Sends `body` to the peer: returns once its frame is in the socket.
    /// Frames leave in the order of these calls (of the lock they take).
    pub async fn send(&self, body: PeerRequest) -> Result<Pending, LinkError> {
        let session = self
            .current()
            .ok_or_else(|| LinkError::Down(self.site.clone()))?;
        let id = session.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, answer) = oneshot::channel();
        if let Ok(mut w) = session.waiting.lock() {
            w.insert(id, tx);
        }
        let mut unsent = Unsent {
            session: &session,
            id: Some(id),
        };
        // On this caller's thread: no task between it and the socket.
        session
            .wire
            .send(Message::Request { id, body })
            .await
            .map_err(|_| LinkError::Lost(self.site.clone()))?;
        unsent.id = None;
        Ok(Pending {
            site: self.site.clone(),
            answer,
        })
    }

    /// Sends `body` and waits for the answer, at most `timeout`.
    pub async fn call(&self, body: PeerRequest, timeout: Duration) -> Result<PeerReply, LinkError> {
        self.send(body).await?.wait(timeout).await
    }

    /// Drops the current session (the dialer reconnects).
    pub fn reset(&self) {
        if let Some(s) = self.current() {
            s.closed.cancel();
        }
    }
}

/// A request whose frame is not out yet: if its sender fails or is
/// cancelled, nobody waits for its answer (an entry left in `waiting` would
/// also keep the reader from answering writes inline).
struct Unsent<'a> {
    session: &'a Session,
    id: Option<u64>,
}

impl Drop for Unsent<'_> {
    fn drop(&mut self) {
        if let (Some(id), Ok(mut w)) = (self.id, self.session.waiting.lock()) {
            w.remove(&id);
        }
    }
}
