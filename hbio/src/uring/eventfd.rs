//! The ring's wake-up: a non-blocking eventfd that callers add to after
//! sending an op (on their own thread) and the ring thread polls (through
//! an io_uring `PollAdd`) and resets.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A non-blocking eventfd: callers add to its counter, the ring polls it.
pub(crate) struct EventFd(OwnedFd);

impl EventFd {
    pub(crate) fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers; it returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned open by eventfd and nothing else owns it.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// The descriptor, for the ring's poll on it.
    pub(crate) fn raw_fd(&self) -> i32 {
        self.0.as_raw_fd()
    }

    /// Adds 1 to the counter: the fd turns readable and the ring's poll completes.
    pub(crate) fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes the 8 bytes of a live local u64 to a descriptor we own.
        let written = unsafe {
            libc::write(
                self.0.as_raw_fd(),
                std::ptr::from_ref(&one).cast(),
                std::mem::size_of::<u64>(),
            )
        };
        if written < 0 {
            let e = io::Error::last_os_error();
            // EAGAIN means the counter is near overflow: readable anyway.
            if e.kind() != io::ErrorKind::WouldBlock {
                tracing::warn!(error = %e, "cannot wake the io_uring thread");
            }
        }
    }

    /// Sets the counter back to 0, so the next poll waits for a new signal.
    pub(crate) fn reset(&self) {
        let mut count: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live local u64 from a descriptor
        // we own. The result is not needed: EAGAIN means it was already 0.
        let _ = unsafe {
            libc::read(
                self.0.as_raw_fd(),
                std::ptr::from_mut(&mut count).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}
