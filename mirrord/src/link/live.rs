//! A live session as its senders, its reader and the link's state share
//! it: the write half ([`Wire`]), the requests awaiting an answer, and how
//! it ends. Senders (any thread) register here; the session's tasks
//! (`super::session`) answer and end it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use hbcore::link::{PeerError, PeerReply, PeerRequest};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::wire::Wire;

/// A request's answer, as its sender waits for it.
pub(super) type Answer = Result<PeerReply, PeerError>;

/// A request sent and not yet answered: whom to tell, and what to re-send.
pub(super) struct Waiter {
    pub(super) tx: oneshot::Sender<Answer>,
    pub(super) body: PeerRequest,
}

/// Unanswered requests by id.
pub(super) type Waiting = HashMap<u64, Waiter>;

/// One open session, as [`PeerLink::send`] uses it.
pub(super) struct Session {
    /// The connection's write half, which senders write their frames on.
    pub(super) wire: Arc<Wire>,
    /// Requests sent on it and not yet answered.
    pub(super) waiting: Mutex<Waiting>,
    /// Cancelled when the session ends (or to end it).
    pub(super) closed: CancellationToken,
    /// The peer's incarnation.
    pub(super) incarnation: u64,
    /// Set when it is ended on purpose: its requests fail, not resume.
    pub(super) final_end: AtomicBool,
    /// Whether its frames are sealed (for the log).
    pub(super) sealed: bool,
    /// The other end of the connection, to tell sessions apart in the log.
    pub(super) remote: String,
}

impl Session {
    /// Its end will not be resumed.
    pub(super) fn no_resume(&self) {
        self.final_end.store(true, Ordering::Relaxed);
    }
}
