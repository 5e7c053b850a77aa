//! The one interface of the engines (after cloud-hypervisor's `AsyncIo`):
//! take a [`Request`], carry it out, give back the result and the buffer.
//! [`crate::IoEngine`] picks the engine per op; the engines know nothing of
//! volumes, pairs or sites (as firecracker's io_uring module knows nothing
//! of devices). Called on the thread that awaits the op.

use std::future::Future;

use crate::op::{Completion, Request};

/// A way of carrying out volume I/O.
pub(crate) trait AsyncIo: Send + Sync {
    /// Which engine this is: `io_uring`, `pread` or `inline`.
    fn name(&self) -> &'static str;

    /// Carries out `request` (a single transfer, possibly short) and hands
    /// back its result with its buffer. The buffer never comes back while
    /// the kernel may still use it.
    fn submit(&self, request: Request) -> impl Future<Output = Completion> + Send;
}
