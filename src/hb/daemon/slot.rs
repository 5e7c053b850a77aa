//! Heartbeat slots on volumes: a heartbeat is one 4 KiB aligned write at
//! offset 0 of a PVOL and one read of an SVOL (plain files, usually on
//! hbfs), with O_DIRECT where the filesystem takes it, so the page cache
//! never answers for the storage.
//!
//! The reads and writes go through one io_uring ring on its own thread
//! (hbio's [`IoEngine`], pread/pwrite where io_uring is refused), not a
//! blocking thread per mirror: a tick hands all its mirrors' writes to the
//! ring at once, which takes them in one submission; a write stuck on a
//! hung hbfs holds a ring entry, not a thread. Only opening a file (rare:
//! handles are kept) runs on a blocking thread.
//!
//! ```text
//!  tick ─ write_slot × N (joined) ─channel+eventfd─> ring thread ─ one submit of N SQEs ─> hbfs
//! ```

use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use crate::hb::logic::message::SLOT;
use hbio::{AlignedBuf, IoEngine};

/// Opens a heartbeat volume (file or device), with O_DIRECT where the filesystem allows it.
pub fn open_slot(path: &Path, write: bool) -> std::io::Result<File> {
    let open = |direct: bool| {
        let mut o = std::fs::OpenOptions::new();
        if write {
            o.write(true);
        } else {
            o.read(true);
        }
        if direct {
            o.custom_flags(libc::O_DIRECT);
        }
        o.open(path)
    };
    match open(true) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => open(false),
        other => other,
    }
}

/// Heartbeat files kept open between ticks (a FUSE open costs more round
/// trips than the write itself); a handle that fails is dropped and
/// reopened. Also the ring their I/O goes through, started at the first I/O.
#[derive(Default)]
pub struct OpenFiles {
    handles: Mutex<HashMap<(PathBuf, bool), Arc<File>>>,
    io: OnceLock<IoEngine>,
}

impl OpenFiles {
    fn handles(&self) -> MutexGuard<'_, HashMap<(PathBuf, bool), Arc<File>>> {
        // A map of handles stays valid across a panic elsewhere.
        self.handles.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn io(&self) -> &IoEngine {
        self.io.get_or_init(IoEngine::start)
    }

    async fn get(&self, path: &Path, write: bool) -> std::io::Result<Arc<File>> {
        let key = (path.to_path_buf(), write);
        if let Some(f) = self.handles().get(&key) {
            return Ok(Arc::clone(f));
        }
        let opening = path.to_path_buf();
        let f = tokio::task::spawn_blocking(move || open_slot(&opening, write))
            .await
            .map_err(std::io::Error::other)??;
        let f = Arc::new(f);
        self.handles().insert(key, Arc::clone(&f));
        Ok(f)
    }

    /// Runs `io` on the open file, reopening once if the kept handle failed.
    async fn with<T, F, Fut>(&self, path: &Path, write: bool, io: F) -> std::io::Result<T>
    where
        F: Fn(Arc<File>) -> Fut,
        Fut: Future<Output = std::io::Result<T>>,
    {
        match io(self.get(path, write).await?).await {
            Ok(v) => Ok(v),
            Err(_) => {
                self.handles().remove(&(path.to_path_buf(), write));
                io(self.get(path, write).await?).await
            }
        }
    }
}

/// Writes one message as slot 0 of a PVOL, with one aligned write.
pub async fn write_slot(files: &OpenFiles, path: &Path, frame: &[u8]) -> std::io::Result<()> {
    files
        .with(path, true, |f| async move {
            let mut buf = AlignedBuf::zeroed(SLOT);
            buf.as_mut_slice()[..frame.len()].copy_from_slice(frame);
            files.io().write_all_at(&f, 0, buf).await.map(|_| ())
        })
        .await
}

/// Reads slot 0 of an SVOL.
pub async fn read_slot(files: &OpenFiles, path: &Path) -> std::io::Result<AlignedBuf> {
    files
        .with(path, false, |f| async move {
            files
                .io()
                .read_exact_at(&f, 0, AlignedBuf::zeroed(SLOT))
                .await
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_slot_is_one_zero_padded_write_read_back_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hb0");
        std::fs::write(&path, vec![0xffu8; 2 * SLOT]).expect("volume");
        let files = OpenFiles::default();
        write_slot(&files, &path, b"first").await.expect("write");
        write_slot(&files, &path, b"2nd")
            .await
            .expect("write through the kept handle");
        let slot = read_slot(&files, &path).await.expect("read");
        assert_eq!(slot.as_slice().len(), SLOT);
        assert_eq!(&slot.as_slice()[..3], b"2nd");
        assert!(slot.as_slice()[3..].iter().all(|b| *b == 0), "zero-padded");
        let volume = std::fs::read(&path).expect("read back");
        assert!(volume[SLOT..].iter().all(|b| *b == 0xff), "slot 0 only");
    }
}
