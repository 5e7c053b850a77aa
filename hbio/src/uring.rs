//! The io_uring engine: ops go to a dedicated ring thread ([`thread`]),
//! which the callers wake through an eventfd ([`eventfd`]).
//!
//! ```text
//!  async caller ──Op (file, offset, AlignedBuf, oneshot)──> channel ──┐
//!    ▲  │                                                             │ drained at every
//!    │  └─ then writes 1 to the eventfd ──> the ring's PollAdd on it ─┤ wake-up, then the
//!    │     (wakes the thread even mid-wait on a long transfer)        │ poll is re-armed
//!    │                                                                ▼
//!    │   local VecDeque ──> at most 255 ops in flight (+ the poll) ── ring thread
//!    │   (the CQ holds 2 × 256 entries, so it never overflows)        │
//!    │                                                                ▼ push SQE, submit_and_wait(1)
//!    └──────────────── oneshot reply (result, buffer back) <───────── CQE
//! ```
//!
//! The callers' side ([`Uring`]) runs on their own threads; the ring on
//! its thread only. The thread never returns while the kernel may still use
//! an op's buffer: when the last [`Uring`] is dropped it finishes every op
//! it accepted, then exits.

mod eventfd;
mod thread;

use std::sync::mpsc;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::async_io::AsyncIo;
use crate::error::{IoError, StartError};
use crate::op::{Completion, OpBuf, Request};
use eventfd::EventFd;
use thread::RingThread;

/// Submission queue entries the ring asks for; the kernel makes the
/// completion queue twice as large.
const RING_ENTRIES: u32 = 256;

/// One request to the ring thread. It owns the file and the buffer until the
/// kernel is done with them, then hands both back through `reply`.
struct Op {
    req: Request,
    reply: oneshot::Sender<Completion>,
}

/// The callers' end of the ring thread; clones share it.
#[derive(Clone)]
pub(crate) struct Uring {
    handle: Arc<RingHandle>,
}

/// Shared by all clones of a [`Uring`]; dropping the last one stops the thread.
struct RingHandle {
    /// `None` only once the handle is being dropped.
    tx: Option<mpsc::Sender<Op>>,
    /// Written after each send, so the ring notices new ops mid-wait.
    wake: Arc<EventFd>,
    /// The ring thread, for tests that check it exits.
    #[cfg(test)]
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for RingHandle {
    fn drop(&mut self) {
        // Close the channel first, then wake the ring: it sees the channel
        // closed, finishes everything already sent, and exits. (The other way
        // round, it could wake, find the channel still open, and sleep forever.)
        self.tx = None;
        self.wake.signal();
    }
}

impl Uring {
    /// Sets up a ring and starts its thread.
    pub(crate) fn start() -> Result<Uring, StartError> {
        let ring = io_uring::IoUring::new(RING_ENTRIES).map_err(StartError::Refused)?;
        let wake = Arc::new(EventFd::new().map_err(StartError::EventFd)?);
        let (tx, rx) = mpsc::channel();
        let thread = RingThread::new(ring, rx, Arc::clone(&wake));
        let handle = std::thread::Builder::new()
            .name("io-uring".into())
            .spawn(move || thread.run())
            .map_err(StartError::Thread)?;
        // Outside tests the thread is detached: it exits by itself once the
        // last engine is dropped and every op it accepted is done.
        #[cfg(not(test))]
        drop(handle);
        Ok(Uring {
            handle: Arc::new(RingHandle {
                tx: Some(tx),
                wake,
                #[cfg(test)]
                thread: std::sync::Mutex::new(Some(handle)),
            }),
        })
    }

    /// The ring thread's handle, once: tests join it to see it exit.
    #[cfg(test)]
    pub(crate) fn take_thread(&self) -> Option<std::thread::JoinHandle<()>> {
        self.handle.thread.lock().ok()?.take()
    }
}

impl AsyncIo for Uring {
    fn name(&self) -> &'static str {
        "io_uring"
    }

    async fn submit(&self, req: Request) -> Completion {
        let (reply, answer) = oneshot::channel();
        let op = Op { req, reply };
        let sent = match &self.handle.tx {
            Some(tx) => tx.send(op).map_err(|mpsc::SendError(op)| op),
            None => Err(op),
        };
        if let Err(op) = sent {
            return (Err(IoError::RingStopped.into()), op.req.buf);
        }
        // The ring may be waiting on a long transfer; without this it
        // would see the new op only when that transfer completes.
        self.handle.wake.signal();
        match answer.await {
            Ok(done) => done,
            Err(_) => (Err(IoError::RequestDropped.into()), OpBuf::empty()),
        }
    }
}
