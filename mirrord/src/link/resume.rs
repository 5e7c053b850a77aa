//! Requests that outlive the session they were sent on: a lane whose path
//! dies moves to another path without failing, losing or repeating a
//! request.
//!
//! ```text
//!  sender (either site)                               receiver
//!  send: id from the PeerLink (unique per incarnation)
//!  session dies of a transport failure (silence, reset, cut mid-frame):
//!    its unanswered requests are held ([`LinkState`]) for a grace period;
//!    new requests join them; the pairs are not told
//!  a new session opens (next path, or the peer's dial):     Inbox: each answer kept by id;
//!    held requests re-sent first, in id order ──────────>     a request seen before gets its
//!    then it carries new requests                             kept answer, not a second apply
//!  no new session within the grace: held requests fail, the pairs are told (link_down)
//! ```
//!
//! A session ended by a frame that was refused (altered, replayed,
//! skipped) is not resumed: that is a link loss, as before. Neither is one
//! whose peer restarted meanwhile (another incarnation): what it applied
//! before is unknown, so the held requests fail and the pairs resync.
//!
//! Touched by senders (any thread), the sessions' reader and answerer
//! tasks, and the grace timer task of a lost session.

use std::collections::BTreeMap;
use std::sync::Arc;

use hbcore::link::{PeerError, PeerReply};

use super::live::{Answer, Session, Waiter, Waiting};

/// A lost session's requests, waiting for the next session.
pub(super) struct Hold {
    /// The peer's incarnation on the lost session.
    pub(super) incarnation: u64,
    /// Tells one hold from the next (for its timer).
    pub(super) serial: u64,
}

/// What a [`super::PeerLink`]'s state lock guards.
#[derive(Default)]
pub(super) struct LinkState {
    /// The open session, if any.
    pub(super) session: Option<Arc<Session>>,
    /// Requests to re-send on the next session, by id (sent in this order).
    pub(super) held: BTreeMap<u64, Waiter>,
    /// Set while requests are held after a transport failure.
    pub(super) hold: Option<Hold>,
    /// The last hold's serial.
    pub(super) holds: u64,
}

impl LinkState {
    /// Starts holding `waiting`, or adds them to the hold in place; the
    /// hold's serial, for the timer that ends it.
    pub(super) fn hold(&mut self, waiting: Waiting, incarnation: u64) -> u64 {
        self.held.extend(waiting);
        if let Some(h) = &self.hold {
            return h.serial;
        }
        self.holds += 1;
        self.hold = Some(Hold {
            incarnation,
            serial: self.holds,
        });
        self.holds
    }

    /// Ends the hold `serial` if no session has taken it: the requests to fail.
    pub(super) fn expire(&mut self, serial: u64) -> Option<BTreeMap<u64, Waiter>> {
        match &self.hold {
            Some(h) if h.serial == serial && self.session.is_none() => {
                self.hold = None;
                Some(std::mem::take(&mut self.held))
            }
            _ => None,
        }
    }
}

/// Most answers kept for re-sent requests.
const KEPT: usize = 4096;

/// What the peer's request `id` is to this side.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Seen {
    /// Not seen: apply it.
    New,
    /// Answered before: send this answer again, apply nothing.
    Answered(Answer),
    /// Perhaps applied, its answer no longer kept: refuse it.
    Forgotten,
}

/// The answers given to one peer's requests on one lane, across its
/// sessions, so that a request re-sent after a path change is applied once.
#[derive(Default)]
pub(super) struct Inbox {
    incarnation: Option<u64>,
    /// Answers by request id; `None` for an answer too large to keep.
    answers: BTreeMap<u64, Option<Answer>>,
    /// Every id at or below it may have been answered and forgotten.
    floor: u64,
}

impl Inbox {
    /// What request `id` of the peer's `incarnation` is; a new incarnation
    /// (the peer restarted) starts afresh.
    pub(super) fn seen(&mut self, incarnation: u64, id: u64) -> Seen {
        if self.incarnation != Some(incarnation) {
            *self = Inbox {
                incarnation: Some(incarnation),
                ..Inbox::default()
            };
        }
        match self.answers.get(&id) {
            Some(Some(answer)) => Seen::Answered(answer.clone()),
            Some(None) => Seen::Forgotten,
            None if id <= self.floor => Seen::Forgotten,
            None => Seen::New,
        }
    }

    /// Keeps the answer to `id` (a large one only as "answered").
    pub(super) fn answered(&mut self, id: u64, answer: &Answer) {
        let large = matches!(
            answer,
            Ok(PeerReply::Bitmap { .. } | PeerReply::Digests { .. })
        );
        self.answers.insert(id, (!large).then(|| answer.clone()));
        while self.answers.len() > KEPT {
            if let Some((oldest, _)) = self.answers.pop_first() {
                self.floor = self.floor.max(oldest);
            }
        }
    }
}

/// The refusal of a re-sent request whose answer is gone.
pub(super) fn forgotten(id: u64) -> PeerError {
    PeerError::Refused {
        detail: format!(
            "request {id} was re-sent after a path change, but its answer is no longer kept \
             here and it may have been applied; the pair resyncs"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hbcore::link::PeerRequest;
    use std::collections::HashMap;
    use tokio::sync::oneshot;

    #[test]
    fn a_request_is_applied_once_per_incarnation_and_old_ones_are_refused() {
        let mut inbox = Inbox::default();
        assert_eq!(inbox.seen(1, 5), Seen::New);
        inbox.answered(5, &Ok(PeerReply::Done));
        assert_eq!(inbox.seen(1, 5), Seen::Answered(Ok(PeerReply::Done)));
        // The peer restarted: its ids start again.
        assert_eq!(inbox.seen(2, 5), Seen::New);
        for id in 1..=(KEPT as u64 + 10) {
            inbox.answered(id, &Ok(PeerReply::Done));
        }
        assert_eq!(inbox.seen(2, 3), Seen::Forgotten);
        assert_eq!(
            inbox.seen(2, KEPT as u64 + 10),
            Seen::Answered(Ok(PeerReply::Done))
        );
        assert_eq!(inbox.seen(2, KEPT as u64 + 11), Seen::New);
    }

    #[test]
    fn a_hold_expires_only_if_no_session_took_it() {
        let mut state = LinkState::default();
        let (tx, _rx) = oneshot::channel();
        let waiting = HashMap::from([(
            3,
            Waiter {
                tx,
                body: PeerRequest::TakeBitmap { pair: "p".into() },
            },
        )]);
        let serial = state.hold(waiting, 9);
        assert_eq!(state.hold(Waiting::new(), 9), serial);
        let failed = state.expire(serial).expect("expired");
        assert_eq!(failed.keys().copied().collect::<Vec<_>>(), [3]);
        assert!(state.expire(serial).is_none());
    }
}
