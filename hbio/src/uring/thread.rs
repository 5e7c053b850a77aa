//! The ring thread (`io-uring`): the only thread that touches the ring. It
//! takes [`Op`]s from the channel, turns them into SQEs, and CQEs back into
//! replies on each op's oneshot, which the caller's task awaits.
//!
//! At most `slots.len()` ops are in flight, plus the eventfd poll: never
//! more than the completion queue holds, so no completion is lost to a CQ
//! overflow. It never returns while the kernel may still use an op's buffer.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use super::eventfd::EventFd;
use super::Op;
use crate::error::IoError;
use crate::op::{OpBuf, OpKind};

/// `user_data` of the eventfd poll. Ops use their slot index, always smaller.
const WAKE: u64 = u64::MAX;

/// Consecutive fatal `submit_and_wait` errors (10 ms apart) after which the
/// ring counts as broken and its in-flight buffers are leaked.
const MAX_WAIT_FAILURES: u32 = 100;

/// The ring thread's state.
///
/// At most `slots.len()` ops are in flight, plus the eventfd poll: that is
/// never more than the completion queue holds, so no completion can be lost
/// to a CQ overflow. Ops beyond the bound wait in `queue`, never dropped.
pub(super) struct RingThread {
    ring: io_uring::IoUring,
    rx: mpsc::Receiver<Op>,
    wake: Arc<EventFd>,
    /// Ops the kernel may be using, indexed by `user_data`; `None` is free.
    /// Each op owns its buffer (a heap block that never moves) and its file
    /// until its completion arrives.
    slots: Vec<Option<Op>>,
    /// Indices of the free slots.
    free: Vec<usize>,
    /// Ops received but not yet submitted, oldest first.
    queue: VecDeque<Op>,
    /// Whether the eventfd poll is in flight.
    wake_armed: bool,
    /// Whether any [`crate::IoEngine`] is left to send ops.
    open: bool,
    /// Set by a fatal ring error: nothing more is submitted, queued and new
    /// ops get an error, and the thread exits once nothing is in flight.
    failed: bool,
}

impl RingThread {
    pub(super) fn new(
        ring: io_uring::IoUring,
        rx: mpsc::Receiver<Op>,
        wake: Arc<EventFd>,
    ) -> RingThread {
        let params = ring.params();
        // One entry of both queues stays for the eventfd poll.
        let bound = params.sq_entries().min(params.cq_entries()).max(2) as usize - 1;
        RingThread {
            ring,
            rx,
            wake,
            slots: (0..bound).map(|_| None).collect(),
            free: (0..bound).rev().collect(),
            queue: VecDeque::new(),
            wake_armed: false,
            open: true,
            failed: false,
        }
    }

    fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    pub(super) fn run(mut self) {
        let mut failures = 0;
        loop {
            self.receive();
            if self.failed {
                self.refuse_queued();
            } else {
                self.submit_queued();
                self.arm_wake();
            }
            // Never return with ops in flight: the kernel may still write
            // into their buffers. (The eventfd poll points at no memory.)
            if self.in_flight() == 0 && (self.failed || !self.open) {
                debug_assert!(self.queue.is_empty());
                return;
            }
            match self.ring.submit_and_wait(1) {
                Ok(_) => failures = 0,
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                // Short of memory, or completions to reap first: try again.
                Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EBUSY)) => {
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => {
                    failures += 1;
                    if !self.failed {
                        tracing::error!(error = %e, "io_uring wait failed; the ring thread stops once its in-flight ops complete");
                        self.failed = true;
                    }
                    if failures >= MAX_WAIT_FAILURES {
                        self.abandon();
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            self.reap();
        }
    }

    /// Moves every op waiting in the channel to the local queue.
    fn receive(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(op) => self.queue.push_back(op),
                Err(mpsc::TryRecvError::Empty) => return,
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.open = false;
                    return;
                }
            }
        }
    }

    /// Pushes queued ops into the submission queue while slots are free.
    fn submit_queued(&mut self) {
        use io_uring::{opcode, types};
        while !self.queue.is_empty() {
            // All slots busy: the rest waits in the queue for completions.
            let Some(slot) = self.free.pop() else { return };
            let Some(op) = self.queue.pop_front() else {
                return;
            };
            let op = self.slots[slot].insert(op);
            let fd = types::Fd(op.req.file.as_raw_fd());
            // A transfer longer than u32::MAX comes back short; transfer_all
            // then submits the rest.
            let len = u32::try_from(op.req.range.len()).unwrap_or(u32::MAX);
            let entry = match (op.req.kind, &mut op.req.buf) {
                (OpKind::Read, OpBuf::Own(buf)) => {
                    let ptr = buf.as_mut_slice()[op.req.range.clone()].as_mut_ptr();
                    opcode::Read::new(fd, ptr, len)
                        .offset(op.req.offset)
                        .build()
                }
                // Never sent (`submit` refuses it); completes with 0 bytes.
                (OpKind::Read, OpBuf::Shared(_)) => opcode::Nop::new().build(),
                (OpKind::Write, buf) => {
                    let ptr = buf.as_slice()[op.req.range.clone()].as_ptr();
                    opcode::Write::new(fd, ptr, len)
                        .offset(op.req.offset)
                        .build()
                }
                (OpKind::Sync, _) => opcode::Fsync::new(fd)
                    .flags(types::FsyncFlags::DATASYNC)
                    .build(),
            }
            .user_data(slot as u64);
            // SAFETY: the buffer and the file the entry points at are owned by
            // the op in `slots[slot]`, which stays there (its heap buffer never
            // moves or is freed) until this entry's completion is reaped, or is
            // leaked by `abandon`.
            let pushed = unsafe { self.ring.submission().push(&entry) };
            if pushed.is_err() {
                // Cannot happen: the SQ holds as many entries as may be in
                // flight. Should it, the op waits for the next round.
                if let Some(op) = self.slots[slot].take() {
                    self.queue.push_front(op);
                }
                self.free.push(slot);
                return;
            }
        }
    }

    /// Keeps a poll on the eventfd in flight while senders remain, so that
    /// `submit_and_wait` returns as soon as a new op is sent.
    fn arm_wake(&mut self) {
        use io_uring::{opcode, types};
        if self.wake_armed || !self.open {
            return;
        }
        let entry = opcode::PollAdd::new(types::Fd(self.wake.raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(WAKE);
        // SAFETY: a poll entry points at no memory; the eventfd it names is
        // kept open by `self.wake`, and once submitted the kernel holds its
        // own reference to it.
        self.wake_armed = unsafe { self.ring.submission().push(&entry) }.is_ok();
    }

    /// Answers the completions the kernel has posted.
    fn reap(&mut self) {
        debug_assert_eq!(self.ring.completion().overflow(), 0, "CQ overflow");
        let cqes: Vec<io_uring::cqueue::Entry> = self.ring.completion().collect();
        for cqe in cqes {
            if cqe.user_data() == WAKE {
                self.wake_armed = false;
                if cqe.result() < 0 {
                    // Without the poll, a waiting ring would miss new ops.
                    let e = io::Error::from_raw_os_error(-cqe.result());
                    tracing::error!(error = %e, "io_uring poll on the wake-up eventfd failed; the ring thread stops once its in-flight ops complete");
                    self.failed = true;
                }
                // Reset before `receive` drains the channel: an op sent after
                // that drain signals again and the re-armed poll fires at once.
                self.wake.reset();
                continue;
            }
            let slot = cqe.user_data() as usize;
            let Some(op) = self.slots.get_mut(slot).and_then(Option::take) else {
                tracing::warn!(
                    user_data = cqe.user_data(),
                    "io_uring completion for no request"
                );
                continue;
            };
            self.free.push(slot);
            let result = if cqe.result() < 0 {
                Err(io::Error::from_raw_os_error(-cqe.result()))
            } else {
                Ok(cqe.result() as usize)
            };
            // The waiter may have gone (its task was cancelled); nothing to do then.
            let _ = op.reply.send((result, op.req.buf));
        }
    }

    /// After a fatal error: queued ops get an error and their buffer back.
    fn refuse_queued(&mut self) {
        for op in self.queue.drain(..) {
            let _ = op.reply.send((Err(IoError::RingFailed.into()), op.req.buf));
        }
    }

    /// The ring is broken with ops still in flight. The kernel may still
    /// write into their buffers, so those are leaked (`mem::forget`), never
    /// freed; the callers get an error and an empty buffer. (Their files may
    /// close: the kernel holds its own reference to a file it is using, and
    /// entries still unsubmitted in the SQ die with the ring.)
    fn abandon(&mut self) {
        tracing::error!(
            in_flight = self.in_flight(),
            "io_uring keeps failing; leaking the buffers of the requests still in flight"
        );
        for op in self.slots.iter_mut().filter_map(Option::take) {
            // A shared buffer's reference is leaked too: it never returns to the pool.
            std::mem::forget(op.req.buf);
            let _ = op
                .reply
                .send((Err(IoError::FailedInFlight.into()), OpBuf::empty()));
        }
        self.receive();
        self.refuse_queued();
    }
}
