//! Aligned buffers kept for reuse: a volume read or write takes one of its
//! exact length and gives it back when done, so the hot paths (4 KiB host
//! and heartbeat writes, copy frames) neither allocate nor zero a buffer per
//! I/O. A taken buffer holds stale bytes: every user either reads into all
//! of it or overwrites all of it before it reaches the disk.
//!
//! A buffer can also be shared as [`Bytes`] ([`BufPool::share`]): a host
//! write's data is then one buffer for the PVOL's write and the frame to the
//! SVOL, and a copy frame's data goes from the read to the socket as is. It
//! comes back when the last reference drops, so never while the kernel (an
//! op holds a reference) or a frame still uses it.
//!
//! Bounded: at most `PER_LENGTH` (32) buffers of a length, lengths up to
//! `LARGEST` (1 MiB), and `MAX_BYTES` (32 MiB) in all; beyond that a
//! returned buffer is freed.
//!
//! Shared by every thread and task that does volume I/O (FUSE workers, link
//! readers, copy tasks, the ring thread's callers) behind one mutex, held
//! only to pop or push a buffer; a shared buffer comes back on whichever
//! thread drops its last reference.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::align::AlignedBuf;

/// Buffers kept per length.
const PER_LENGTH: usize = 32;
/// Longest buffer kept (a copy frame).
const LARGEST: usize = 1 << 20;
/// Bytes kept in all.
const MAX_BYTES: usize = 32 << 20;

/// Free buffers by length.
#[derive(Default)]
pub struct BufPool {
    free: Mutex<Free>,
}

#[derive(Default)]
struct Free {
    by_len: HashMap<usize, Vec<AlignedBuf>>,
    bytes: usize,
}

impl BufPool {
    /// A buffer of `len` bytes whose content is unspecified (stale or zero).
    pub fn take(&self, len: usize) -> AlignedBuf {
        let reused = self.free.lock().ok().and_then(|mut free| {
            let buf = free.by_len.get_mut(&len)?.pop()?;
            free.bytes -= len;
            Some(buf)
        });
        reused.unwrap_or_else(|| AlignedBuf::zeroed(len))
    }

    /// Gives a buffer back for reuse (or frees it, past the bounds).
    pub fn give(&self, buf: AlignedBuf) {
        let len = buf.len();
        if len == 0 || len > LARGEST {
            return;
        }
        if let Ok(mut free) = self.free.lock() {
            if free.bytes + len > MAX_BYTES {
                return;
            }
            let list = free.by_len.entry(len).or_default();
            if list.len() < PER_LENGTH {
                list.push(buf);
                free.bytes += len;
            }
        }
    }

    /// `buf` as shared bytes, given back to `pool` when the last reference drops.
    pub fn share(pool: &Arc<BufPool>, buf: AlignedBuf) -> Bytes {
        Bytes::from_owner(Pooled {
            buf: Some(buf),
            pool: Arc::clone(pool),
        })
    }

    /// Bytes held for reuse.
    pub fn held_bytes(&self) -> usize {
        self.free.lock().map_or(0, |free| free.bytes)
    }
}

/// The owner of a shared buffer, which `Bytes` drops with its last reference.
struct Pooled {
    /// `None` only while being dropped.
    buf: Option<AlignedBuf>,
    pool: Arc<BufPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_ref().map_or(&[], AlignedBuf::as_slice)
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.pool.give(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_returned_buffer_is_taken_again_and_the_bounds_hold() {
        let pool = BufPool::default();
        let mut buf = pool.take(4096);
        buf.as_mut_slice()[0] = 7;
        let at = buf.as_slice().as_ptr();
        pool.give(buf);
        let again = pool.take(4096);
        assert_eq!(again.as_slice().as_ptr(), at, "the same heap block");
        assert_eq!(pool.held_bytes(), 0);
        pool.give(again);
        pool.give(AlignedBuf::zeroed(LARGEST + 4096));
        assert_eq!(pool.held_bytes(), 4096, "a buffer past LARGEST is freed");
        for _ in 0..PER_LENGTH + 5 {
            pool.give(AlignedBuf::zeroed(8192));
        }
        assert_eq!(pool.held_bytes(), 4096 + PER_LENGTH * 8192);
    }

    #[test]
    fn a_shared_buffer_returns_with_its_last_reference() {
        let pool = Arc::new(BufPool::default());
        let buf = pool.take(4096);
        let at = buf.as_slice().as_ptr();
        let shared = BufPool::share(&pool, buf);
        assert_eq!(shared.as_ptr(), at, "shared, not copied");
        let frame = shared.clone();
        let part = shared.slice(100..200);
        drop(shared);
        drop(frame);
        assert_eq!(pool.held_bytes(), 0, "a slice still refers to it");
        drop(part);
        assert_eq!(pool.held_bytes(), 4096);
        assert_eq!(pool.take(4096).as_slice().as_ptr(), at);
    }
}
