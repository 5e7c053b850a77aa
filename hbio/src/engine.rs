//! [`IoEngine`]: what volumes use. One per site (clones share it), called
//! from any thread or task: a FUSE worker, a link reader, the copy tasks,
//! hbd's slot I/O. Each op goes to one engine behind [`AsyncIo`]: the
//! inline one on a thread inside [`crate::inline_io`], else the io_uring
//! ring thread ([`crate::uring`]) or, where io_uring is refused or
//! `HBMIRROR_IO=pread`, pread/pwrite on tokio's blocking pool.
//!
//! Buffers are [`AlignedBuf`]s (4 KiB-aligned) so the same path serves
//! O_DIRECT files and block devices, taken from and given back to the
//! engine's [`BufPool`] ([`IoEngine::buffer`], [`IoEngine::recycle`]), or
//! shared as `Bytes` with a frame ([`IoEngine::share`]), in which case the
//! op holds a reference until the kernel is done.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;

use crate::align::AlignedBuf;
use crate::async_io::AsyncIo;
use crate::error::IoError;
use crate::inline::{self, Inline};
use crate::op::{Completion, OpBuf, OpKind, Request};
use crate::pool::BufPool;
use crate::pread::Pread;
use crate::uring::Uring;

/// The engine shared by all volumes of a site.
#[derive(Clone)]
pub struct IoEngine {
    backend: Backend,
    /// Buffers for the volumes' I/O, reused rather than allocated and zeroed per I/O.
    pool: Arc<BufPool>,
}

/// The engine ops go to when the calling thread is not inline.
#[derive(Clone)]
enum Backend {
    Uring(Uring),
    Pread(Pread),
}

impl AsyncIo for Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Uring(ring) => ring.name(),
            Backend::Pread(pread) => pread.name(),
        }
    }

    async fn submit(&self, request: Request) -> Completion {
        match self {
            Backend::Uring(ring) => ring.submit(request).await,
            Backend::Pread(pread) => pread.submit(request).await,
        }
    }
}

impl IoEngine {
    /// Starts the ring thread, or falls back to pread/pwrite (said in the log).
    pub fn start() -> IoEngine {
        if std::env::var("HBMIRROR_IO").as_deref() == Ok("pread") {
            tracing::info!("I/O engine: pread/pwrite (HBMIRROR_IO=pread)");
            return IoEngine::pread();
        }
        match Uring::start() {
            Ok(ring) => {
                tracing::info!("I/O engine: io_uring");
                IoEngine {
                    backend: Backend::Uring(ring),
                    pool: Arc::default(),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e.source_io(), "{e}; falling back to pread/pwrite");
                IoEngine::pread()
            }
        }
    }

    /// The pread/pwrite engine, whatever the kernel offers.
    pub fn pread() -> IoEngine {
        IoEngine {
            backend: Backend::Pread(Pread),
            pool: Arc::default(),
        }
    }

    /// A buffer of `len` bytes from the pool; its content is unspecified.
    pub fn buffer(&self, len: usize) -> AlignedBuf {
        self.pool.take(len)
    }

    /// Gives a buffer back to the pool.
    pub fn recycle(&self, buf: AlignedBuf) {
        self.pool.give(buf);
    }

    /// The pool itself, for buffers filled elsewhere (the link reads a
    /// large write's data into one).
    pub fn pool(&self) -> Arc<BufPool> {
        Arc::clone(&self.pool)
    }

    /// A pooled buffer as `Bytes`, to share between a volume write
    /// ([`IoEngine::write_shared_at`]) and a frame without copying: it
    /// returns to the pool when the last reference drops.
    pub fn share(&self, buf: AlignedBuf) -> Bytes {
        BufPool::share(&self.pool, buf)
    }

    /// Bytes the pool holds for reuse (tests count buffers taken and returned).
    pub fn pooled_bytes(&self) -> usize {
        self.pool.held_bytes()
    }

    /// Which engine runs: `io_uring` or `pread`.
    pub fn name(&self) -> &'static str {
        self.backend.name()
    }

    /// Fills `buf` from `file` at `offset`.
    pub async fn read_exact_at(
        &self,
        file: &Arc<File>,
        offset: u64,
        buf: AlignedBuf,
    ) -> io::Result<AlignedBuf> {
        let buf = OpBuf::Own(buf);
        Ok(self
            .transfer_all(OpKind::Read, file, offset, buf)
            .await?
            .into_owned())
    }

    /// Writes all of `buf` to `file` at `offset`.
    pub async fn write_all_at(
        &self,
        file: &Arc<File>,
        offset: u64,
        buf: AlignedBuf,
    ) -> io::Result<AlignedBuf> {
        let buf = OpBuf::Own(buf);
        Ok(self
            .transfer_all(OpKind::Write, file, offset, buf)
            .await?
            .into_owned())
    }

    /// Writes all of `data` to `file` at `offset` from where it lies (for
    /// O_DIRECT, 4 KiB-aligned: a buffer from [`IoEngine::share`]).
    pub async fn write_shared_at(
        &self,
        file: &Arc<File>,
        offset: u64,
        data: Bytes,
    ) -> io::Result<()> {
        let buf = OpBuf::Shared(data);
        self.transfer_all(OpKind::Write, file, offset, buf)
            .await
            .map(drop)
    }

    /// Makes earlier writes to `file` durable (fdatasync).
    pub async fn sync(&self, file: &Arc<File>) -> io::Result<()> {
        self.submit(OpKind::Sync, file, 0, OpBuf::empty(), 0..0)
            .await
            .0
            .map(|_| ())
    }

    /// The ring thread's handle, once: tests join it to see it exit.
    #[cfg(test)]
    fn take_ring_thread(&self) -> Option<std::thread::JoinHandle<()>> {
        match &self.backend {
            Backend::Uring(ring) => ring.take_thread(),
            Backend::Pread(_) => None,
        }
    }

    async fn transfer_all(
        &self,
        kind: OpKind,
        file: &Arc<File>,
        offset: u64,
        mut buf: OpBuf,
    ) -> io::Result<OpBuf> {
        let mut done = 0;
        while done < buf.len() {
            let range = done..buf.len();
            let (result, back) = self
                .submit(kind, file, offset + done as u64, buf, range)
                .await;
            buf = back;
            match result? {
                0 => {
                    let offset = offset + done as u64;
                    return Err(IoError::EndOfStore { kind, offset }.into());
                }
                n => done += n,
            }
        }
        Ok(buf)
    }

    async fn submit(
        &self,
        kind: OpKind,
        file: &Arc<File>,
        offset: u64,
        buf: OpBuf,
        range: Range<usize>,
    ) -> Completion {
        let request = Request {
            kind,
            file: Arc::clone(file),
            offset,
            buf,
            range,
        };
        if request.refused() {
            return (Err(IoError::ReadIntoShared.into()), request.buf);
        }
        if inline::active() {
            return Inline.submit(request).await;
        }
        self.backend.submit(request).await
    }
}

#[cfg(test)]
mod tests;
