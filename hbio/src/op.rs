//! One op as every engine takes it: what to do ([`OpKind`]), on which file,
//! where, with which buffer ([`OpBuf`]), and the one way to carry it out on
//! the calling thread ([`Request::run_blocking`]), which the inline and the
//! pread engines share. Built on the caller's thread; run on the caller's
//! thread (inline), a blocking-pool thread (pread) or the ring thread.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;

use crate::align::AlignedBuf;

/// What an op does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Fill the buffer's range from the file.
    Read,
    /// Write the buffer's range to the file.
    Write,
    /// fdatasync the file (no buffer).
    Sync,
}

/// The memory an op reads into or writes from.
pub(crate) enum OpBuf {
    /// Owned, handed back with the reply.
    Own(AlignedBuf),
    /// A write's data that a frame may hold too ([`crate::IoEngine::share`]):
    /// the op's reference keeps it alive, out of the pool, until the kernel
    /// is done. Never read into ([`crate::IoEngine`] refuses that).
    Shared(Bytes),
}

impl OpBuf {
    pub(crate) fn len(&self) -> usize {
        match self {
            OpBuf::Own(buf) => buf.len(),
            OpBuf::Shared(bytes) => bytes.len(),
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            OpBuf::Own(buf) => buf.as_slice(),
            OpBuf::Shared(bytes) => bytes,
        }
    }

    /// The owned buffer back (an empty one for a shared one, which has no owner to return).
    pub(crate) fn into_owned(self) -> AlignedBuf {
        match self {
            OpBuf::Own(buf) => buf,
            OpBuf::Shared(_) => AlignedBuf::zeroed(0),
        }
    }

    /// An empty owned buffer, for replies that lost theirs.
    pub(crate) fn empty() -> OpBuf {
        OpBuf::Own(AlignedBuf::zeroed(0))
    }
}

/// One transfer (or sync) of part of a buffer. It owns the file and the
/// buffer until the engine hands both back in a [`Completion`].
pub(crate) struct Request {
    pub(crate) kind: OpKind,
    pub(crate) file: Arc<File>,
    pub(crate) offset: u64,
    pub(crate) buf: OpBuf,
    /// The part of `buf` this transfer covers.
    pub(crate) range: Range<usize>,
}

/// An op's result (bytes transferred) and its buffer back.
pub(crate) type Completion = (io::Result<usize>, OpBuf);

impl Request {
    /// Whether no engine may run it (a read into a shared buffer).
    pub(crate) fn refused(&self) -> bool {
        matches!((self.kind, &self.buf), (OpKind::Read, OpBuf::Shared(_)))
    }

    /// Carries it out with pread/pwrite/fdatasync on this thread.
    pub(crate) fn run_blocking(mut self) -> Completion {
        let result = match (self.kind, &mut self.buf) {
            (OpKind::Read, OpBuf::Own(buf)) => self
                .file
                .read_at(&mut buf.as_mut_slice()[self.range], self.offset),
            (OpKind::Read, OpBuf::Shared(_)) => Err(io::ErrorKind::InvalidInput.into()),
            (OpKind::Write, buf) => self.file.write_at(&buf.as_slice()[self.range], self.offset),
            (OpKind::Sync, _) => self.file.sync_data().map(|()| 0),
        };
        (result, self.buf)
    }
}
