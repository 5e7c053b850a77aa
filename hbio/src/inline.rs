//! The inline engine: pread/pwrite on the calling thread itself, for a
//! thread that exists only to wait for this I/O (an hbfs FUSE worker,
//! blocked on the host's request anyway): no hand-off to the ring thread
//! and back, two thread wake-ups fewer per host write. So does the SVOL's
//! apply of a small mirrored write ([`inline_io_of`]).
//!
//! A thread opts in with [`inline_io`]; the flag is per thread (a
//! thread-local), so only the thread that set it, during the closure, does
//! its I/O inline, whatever engine it would use otherwise.

use std::cell::Cell;

use crate::async_io::AsyncIo;
use crate::op::{Completion, Request};

thread_local! {
    /// Set by [`inline_io`]: this thread may block in the I/O itself.
    static INLINE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with this thread's I/O done inline (pread/pwrite on this
/// thread). Only for threads that would otherwise block waiting for the
/// ring anyway (a FUSE worker inside `block_on`): never a runtime worker.
pub fn inline_io<T>(f: impl FnOnce() -> T) -> T {
    let was = INLINE.with(|i| i.replace(true));
    let out = f();
    INLINE.with(|i| i.set(was));
    out
}

/// Polls `f` with its I/O done inline on whichever runtime worker polls it
/// (the flag is set only during its own polls, never for other tasks).
/// For small writes on a task that would only wait for them: a 4 KiB
/// O_DIRECT write blocks the worker for about as long as the two thread
/// wake-ups to the ring and back would take on an idle machine.
pub async fn inline_io_of<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    std::future::poll_fn(move |cx| inline_io(|| f.as_mut().poll(cx))).await
}

/// Whether this thread does its I/O inline now.
pub(crate) fn active() -> bool {
    INLINE.with(Cell::get)
}

/// The engine of a thread inside [`inline_io`]: the op runs on the first poll.
pub(crate) struct Inline;

impl AsyncIo for Inline {
    fn name(&self) -> &'static str {
        "inline"
    }

    async fn submit(&self, request: Request) -> Completion {
        request.run_blocking()
    }
}
