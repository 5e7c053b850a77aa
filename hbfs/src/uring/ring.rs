//! One ring entry and the thread that serves it: an io_uring of its own
//! (SQE128, single issuer, task work deferred to our own wait), one
//! FUSE_IO_URING_CMD_REGISTER, then one COMMIT_AND_FETCH per request, each
//! carrying the reply to the last request and waiting for the next: a
//! single io_uring_enter(2) per request.
//!
//! The kernel gives requests of a CPU to that CPU's queue (`qid` = CPU
//! number), to any of its entries that is free; several entries per queue,
//! each on its own thread, keep a CPU's other requests moving while one
//! waits for a synchronous mirror write. The threads are not pinned to their
//! queue's CPU (libfuse pins them): on this 2-vCPU machine pinning made no
//! difference beyond the benchmark's noise (null hop 9.4 µs either way),
//! and an unpinned handler can move to the other CPU when its own is busy.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use zerocopy::{FromBytes, IntoBytes};

use super::abi::*;
use super::proto;
use crate::ops::HbFs;

/// One entry's two buffers, lent to the kernel while a command of ours is
/// pending on them and ours between its completion and the next submission.
struct Buffers {
    header: *mut fuse_uring_req_header,
    payload: *mut u8,
    payload_len: usize,
    /// The iovec pair of the registration; the kernel reads it at submission.
    iov: [libc::iovec; 2],
}

impl Buffers {
    fn new(payload_len: usize) -> Buffers {
        let header = Box::into_raw(Box::new(fuse_uring_req_header {
            in_out: [0; FUSE_URING_IN_OUT_HEADER_SZ],
            op_in: [0; FUSE_URING_OP_IN_OUT_SZ],
            ring_ent_in_out: fuse_uring_ent_in_out::default(),
        }));
        let payload = Box::into_raw(vec![0u8; payload_len].into_boxed_slice()).cast::<u8>();
        let iov = [
            libc::iovec {
                iov_base: header.cast(),
                iov_len: std::mem::size_of::<fuse_uring_req_header>(),
            },
            libc::iovec {
                iov_base: payload.cast(),
                iov_len: payload_len,
            },
        ];
        Buffers {
            header,
            payload,
            payload_len,
            iov,
        }
    }

    /// The header and payload, for as long as the kernel has none of our
    /// commands pending on them.
    ///
    /// # Safety
    /// No command of this entry may be pending (its CQE was reaped, or it
    /// was never submitted), and the slices must be dropped before the next
    /// submission.
    unsafe fn borrow(&mut self) -> (&mut fuse_uring_req_header, &mut [u8]) {
        // SAFETY: both pointers come from Box::into_raw in `new` with these
        // sizes and stay allocated until `drop`; the caller guarantees the
        // kernel is not using them, and `&mut self` that nothing else is.
        unsafe {
            (
                &mut *self.header,
                std::slice::from_raw_parts_mut(self.payload, self.payload_len),
            )
        }
    }
}

impl Drop for Buffers {
    fn drop(&mut self) {
        // SAFETY: the pointers were made by Box::into_raw with these types
        // and lengths; a Buffers is only dropped when no command is pending
        // on it (see `Entry::run`), so the kernel holds no reference.
        unsafe {
            drop(Box::from_raw(self.header));
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                self.payload,
                self.payload_len,
            )));
        }
    }
}

/// How an entry's thread ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The connection ended (unmount, abort): the normal end.
    Disconnected,
    /// Something else; the message says what.
    Failed(String),
}

/// One ring entry of queue `qid`, served by the calling thread.
pub(crate) struct Entry {
    qid: u16,
    fd: RawFd,
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
    buffers: Buffers,
}

fn new_ring() -> io::Result<IoUring<squeue::Entry128, cqueue::Entry>> {
    // Single issuer with deferred task work: the kernel's hand-over of a
    // request runs in this thread when it waits, no extra wake-up.
    IoUring::<squeue::Entry128, cqueue::Entry>::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(4)
        .or_else(|_| IoUring::<squeue::Entry128, cqueue::Entry>::builder().build(4))
}

fn cmd_bytes(qid: u16, commit_id: u64) -> [u8; 80] {
    let req = fuse_uring_cmd_req {
        flags: 0,
        commit_id,
        qid,
        padding: [0; 6],
    };
    let mut cmd = [0u8; 80];
    cmd[..std::mem::size_of::<fuse_uring_cmd_req>()].copy_from_slice(req.as_bytes());
    cmd
}

/// Offset of `len` in `struct io_uring_sqe` (after opcode, flags, ioprio,
/// fd, off and addr); fixed by the io_uring ABI.
const SQE_LEN_OFFSET: usize = 24;

impl Entry {
    /// Creates the ring and registers the entry. Must be called on the
    /// thread that will [`Entry::run`] it (the ring has a single issuer).
    pub(crate) fn register(
        qid: u16,
        fd: RawFd,
        payload_len: usize,
        fs: &HbFs,
        served: &AtomicU64,
    ) -> Result<Entry, String> {
        let ring = new_ring().map_err(|e| format!("io_uring_setup (SQE128): {e}"))?;
        let mut entry = Entry {
            qid,
            fd,
            ring,
            buffers: Buffers::new(payload_len),
        };
        let sqe = opcode::UringCmd80::new(types::Fd(fd), FUSE_IO_URING_CMD_REGISTER)
            .cmd(cmd_bytes(qid, 0))
            .addr(Some(entry.buffers.iov.as_ptr() as u64))
            .build();
        // The kernel wants sqe->len = 2 (the iovec count), which
        // io-uring's UringCmd80 does not set: patch it in the raw SQE.
        // SAFETY: Entry128 is #[repr(C)] of a 64-byte io_uring_sqe and 64
        // command bytes, so it is exactly 128 plain bytes with no padding
        // and no invalid bit patterns; `len` is the u32 at byte 24.
        let sqe = unsafe {
            let mut raw: [u8; 128] = std::mem::transmute(sqe);
            raw[SQE_LEN_OFFSET..SQE_LEN_OFFSET + 4].copy_from_slice(&2u32.to_ne_bytes());
            std::mem::transmute::<[u8; 128], squeue::Entry128>(raw)
        };
        entry
            .push(&sqe)
            .map_err(|e| format!("queue the registration: {e}"))?;
        // A refused registration completes at once; an accepted one stays
        // pending until the first request. Give a refusal a moment to show.
        let wait = types::Timespec::from(Duration::from_millis(50));
        let args = types::SubmitArgs::new().timespec(&wait);
        match entry.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
            Err(e) => {
                // The command may be pending: its buffers must outlive it.
                let _ = entry.fail(String::new());
                return Err(format!("submit the registration: {e}"));
            }
        }
        let first = entry.ring.completion().next().map(|cqe| cqe.result());
        if let Some(res) = first {
            if res < 0 {
                return Err(format!(
                    "FUSE_IO_URING_CMD_REGISTER of queue {qid}: {}",
                    io::Error::from_raw_os_error(-res)
                ));
            }
            // A request arrived already: serve it first.
            served.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = entry.serve_with(fs) {
                // Its commit was not queued: no command is pending.
                return Err(format!("queue {qid}, first request: {e}"));
            }
        }
        Ok(entry)
    }

    fn push(&mut self, sqe: &squeue::Entry128) -> io::Result<()> {
        // SAFETY: the command's iovec and buffers live in `self.buffers`,
        // which outlives the command (it is dropped only after the ring has
        // no command pending, see `run`); the cmd bytes are copied into the SQE.
        unsafe { self.ring.submission().push(sqe) }
            .map_err(|_| io::Error::other("submission queue full"))
    }

    /// Serves the request now in the buffers and queues the commit of the
    /// reply, which fetches the next.
    fn serve_with(&mut self, fs: &HbFs) -> io::Result<()> {
        // SAFETY: called only after the entry's CQE was reaped (or before
        // any submission): no command is pending on the buffers, and the
        // borrows end before `push` below.
        let (header, payload) = unsafe { self.buffers.borrow() };
        let ent = header.ring_ent_in_out;
        let (h, _) = fuse_in_header::read_from_prefix(&header.in_out[..])
            .map_err(|_| io::Error::other("ring header too short"))?;
        let op_len = op_header_size(h.opcode).min(FUSE_URING_OP_IN_OUT_SZ);
        let used = (ent.payload_sz as usize).min(payload.len());
        let answer = proto::handle(fs, &h, &header.op_in[..op_len], &payload[..used]);
        // No reply is due only for FORGET/INTERRUPT, which the kernel sends
        // through /dev/fuse; the ring must commit something to fetch again.
        let (error, len) = proto::encode(&answer, payload).unwrap_or((0, 0));
        let out = fuse_out_header {
            len: (std::mem::size_of::<fuse_out_header>() + len) as u32,
            error,
            unique: h.unique,
        };
        header.in_out[..std::mem::size_of::<fuse_out_header>()].copy_from_slice(out.as_bytes());
        header.ring_ent_in_out.payload_sz = len as u32;
        let sqe = opcode::UringCmd80::new(types::Fd(self.fd), FUSE_IO_URING_CMD_COMMIT_AND_FETCH)
            .cmd(cmd_bytes(self.qid, ent.commit_id))
            .build();
        self.push(&sqe)
    }

    /// Serves requests until the connection ends.
    pub(crate) fn run(mut self, fs: &HbFs, served: &AtomicU64) -> End {
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return self.fail(format!("io_uring_enter: {e}")),
            }
            let Some(cqe) = self.ring.completion().next() else {
                continue;
            };
            let res = cqe.result();
            if res < 0 {
                return match -res {
                    libc::ENOTCONN | libc::ECANCELED | libc::ENODEV | libc::ECONNABORTED => {
                        End::Disconnected
                    }
                    e => End::Failed(format!(
                        "queue {}: {}",
                        self.qid,
                        io::Error::from_raw_os_error(e)
                    )),
                };
            }
            served.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = self.serve_with(fs) {
                let qid = self.qid;
                return self.fail(format!("queue {qid}: {e}"));
            }
        }
    }

    /// Ends after an error with a command possibly still pending on the
    /// buffers: they are leaked, never freed under the kernel.
    fn fail(self, why: String) -> End {
        std::mem::forget(self.buffers);
        End::Failed(why)
    }
}

/// Starts the threads of `entries` entries on each of `queues` queues; each
/// reports its registration on `registered` and then serves.
pub(crate) fn spawn(
    queues: usize,
    entries: usize,
    fd: RawFd,
    payload_len: usize,
    fs: &Arc<HbFs>,
    served: &Arc<AtomicU64>,
    registered: &Sender<Result<(), String>>,
) -> io::Result<Vec<std::thread::JoinHandle<()>>> {
    let mut threads = Vec::new();
    for qid in 0..queues {
        for n in 0..entries {
            let (fs, served, registered) = (Arc::clone(fs), Arc::clone(served), registered.clone());
            let thread = std::thread::Builder::new()
                .name(format!("hbfs-q{qid}.{n}"))
                .spawn(move || {
                    let entry = match Entry::register(qid as u16, fd, payload_len, &fs, &served) {
                        Ok(entry) => {
                            let _ = registered.send(Ok(()));
                            entry
                        }
                        Err(e) => {
                            let _ = registered.send(Err(e));
                            return;
                        }
                    };
                    drop(registered);
                    match entry.run(&fs, &served) {
                        End::Disconnected => {
                            tracing::debug!(qid, "hbfs ring entry ends: disconnected")
                        }
                        End::Failed(why) => tracing::error!("hbfs ring entry failed: {why}"),
                    }
                })?;
            threads.push(thread);
        }
    }
    Ok(threads)
}
