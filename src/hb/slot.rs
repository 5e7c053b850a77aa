//! Heartbeat slots on volumes: a heartbeat is one 4 KiB aligned write at
//! offset 0 of a PVOL and one read of an SVOL (plain files, usually on
//! hbfs), with O_DIRECT where the filesystem takes it, so the page cache
//! never answers for the storage.
//!
//! Everything here blocks (a write on hbfs waits for mirrord and, in sync
//! mode, for the peer site): callers run it on tokio's blocking threads.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::message::SLOT;
use hbcore::align::AlignedBuf;

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
/// trips than the write itself); a handle that fails is dropped and reopened.
#[derive(Default)]
pub struct OpenFiles(Mutex<HashMap<(PathBuf, bool), Arc<File>>>);

impl OpenFiles {
    fn handles(&self) -> MutexGuard<'_, HashMap<(PathBuf, bool), Arc<File>>> {
        // A map of handles stays valid across a panic elsewhere.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get(&self, path: &Path, write: bool) -> std::io::Result<Arc<File>> {
        let key = (path.to_path_buf(), write);
        if let Some(f) = self.handles().get(&key) {
            return Ok(Arc::clone(f));
        }
        let f = Arc::new(open_slot(path, write)?);
        self.handles().insert(key, Arc::clone(&f));
        Ok(f)
    }

    /// Runs `io` on the open file, reopening once if the kept handle failed.
    fn with<T>(
        &self,
        path: &Path,
        write: bool,
        io: impl Fn(&File) -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        match io(self.get(path, write)?.as_ref()) {
            Ok(v) => Ok(v),
            Err(_) => {
                self.handles().remove(&(path.to_path_buf(), write));
                io(self.get(path, write)?.as_ref())
            }
        }
    }
}

/// Writes one message as slot 0 of a PVOL, with one aligned write.
pub fn write_slot(files: &OpenFiles, path: &Path, frame: &[u8]) -> std::io::Result<()> {
    let mut buf = AlignedBuf::zeroed(SLOT);
    buf.as_mut_slice()[..frame.len()].copy_from_slice(frame);
    files.with(path, true, |f| f.write_all_at(buf.as_slice(), 0))
}

/// Reads slot 0 of an SVOL.
pub fn read_slot(files: &OpenFiles, path: &Path) -> std::io::Result<AlignedBuf> {
    files.with(path, false, |f| {
        let mut buf = AlignedBuf::zeroed(SLOT);
        f.read_exact_at(buf.as_mut_slice(), 0)?;
        Ok(buf)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_one_zero_padded_write_read_back_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("hb0");
        std::fs::write(&path, vec![0xffu8; 2 * SLOT]).expect("volume");
        let files = OpenFiles::default();
        write_slot(&files, &path, b"first").expect("write");
        write_slot(&files, &path, b"2nd").expect("write through the kept handle");
        let slot = read_slot(&files, &path).expect("read");
        assert_eq!(slot.as_slice().len(), SLOT);
        assert_eq!(&slot.as_slice()[..3], b"2nd");
        assert!(slot.as_slice()[3..].iter().all(|b| *b == 0), "zero-padded");
        let volume = std::fs::read(&path).expect("read back");
        assert!(volume[SLOT..].iter().all(|b| *b == 0xff), "slot 0 only");
    }
}
