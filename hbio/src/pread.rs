//! The pread engine: pread/pwrite on tokio's blocking pool, where io_uring
//! is refused (EPERM/ENOSYS under a sandbox) or `HBMIRROR_IO=pread`. The
//! op runs on a blocking-pool thread; the caller's task awaits it.

use crate::async_io::AsyncIo;
use crate::error::IoError;
use crate::op::{Completion, OpBuf, Request};

/// pread/pwrite on the blocking pool.
#[derive(Clone, Copy, Default)]
pub(crate) struct Pread;

impl AsyncIo for Pread {
    fn name(&self) -> &'static str {
        "pread"
    }

    async fn submit(&self, request: Request) -> Completion {
        let joined = tokio::task::spawn_blocking(move || request.run_blocking()).await;
        joined.unwrap_or_else(|e| (Err(IoError::BlockingTask(e).into()), OpBuf::empty()))
    }
}
