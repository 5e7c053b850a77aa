//! The errors of hbio's own making (the OS's errors pass through as they
//! are). Callers get them inside an [`std::io::Error`] of the matching kind,
//! so a volume's error handling sees one error type; `get_ref` and
//! `downcast` reach the [`IoError`]. Made on whichever thread runs the op.

use std::io;

use crate::op::OpKind;

/// Why an op failed other than by the OS's say.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// A transfer came back with 0 bytes before its buffer was done.
    #[error("{kind:?} at offset {offset} reached the end of the backing store")]
    EndOfStore {
        /// Read or write.
        kind: OpKind,
        /// Where the transfer stood when it came back empty.
        offset: u64,
    },
    /// A read was asked into a buffer shared with a frame (never done).
    #[error("a read into a shared buffer")]
    ReadIntoShared,
    /// The ring thread no longer takes ops.
    #[error("the io_uring thread has stopped")]
    RingStopped,
    /// The ring thread dropped an op without an answer.
    #[error("the io_uring thread dropped a request")]
    RequestDropped,
    /// The ring failed before this op reached the kernel.
    #[error("the io_uring ring has failed")]
    RingFailed,
    /// The ring failed with this op in flight; its buffer is leaked.
    #[error("the io_uring ring failed with this request in flight")]
    FailedInFlight,
    /// The blocking-pool task of a pread/pwrite failed (panicked or was cancelled).
    #[error(transparent)]
    BlockingTask(#[from] tokio::task::JoinError),
}

impl From<IoError> for io::Error {
    fn from(e: IoError) -> io::Error {
        let kind = match e {
            IoError::EndOfStore { .. } => io::ErrorKind::UnexpectedEof,
            IoError::ReadIntoShared => io::ErrorKind::InvalidInput,
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

/// Why the io_uring engine did not start (the engine then falls back to pread/pwrite).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The kernel or a sandbox refuses io_uring (EPERM, ENOSYS).
    #[error("io_uring refused by the kernel or sandbox")]
    Refused(#[source] io::Error),
    /// No eventfd for waking the ring.
    #[error("cannot create the io_uring wake-up eventfd")]
    EventFd(#[source] io::Error),
    /// No thread for the ring.
    #[error("cannot start the io_uring thread")]
    Thread(#[source] io::Error),
}

impl StartError {
    /// The OS's error under it.
    pub fn source_io(&self) -> &io::Error {
        match self {
            StartError::Refused(e) | StartError::EventFd(e) | StartError::Thread(e) => e,
        }
    }
}
