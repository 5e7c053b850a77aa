//! The group volume's I/O: this host's slot written, every slot and
//! mailbox read, a poison written into another host's mailbox. Each is
//! one aligned O_DIRECT read or write (where the filesystem takes it) on
//! a blocking thread, bounded by a deadline: a hung hbfs makes the I/O
//! fail late, never stalls the member's run task, and holds at most one
//! blocking thread per kind of I/O (the next one waits for it to end).
//!
//! Called by the member's run task (every interval) and by a takeover's
//! fence task; the handle is shared behind a lock held only to clone it.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hbio::AlignedBuf;

use super::slot::{slot_offset, BlockError, Poison, Slot, BLOCK, PER_HOST};
use crate::hb::daemon::lock::lock;
use crate::hb::daemon::slot::open_slot;

/// A failed group-volume I/O (the volume is named by the caller).
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The read or write failed.
    #[error("I/O failed")]
    Io(#[source] std::io::Error),
    /// It did not end within its deadline (a hung storage path).
    #[error("no answer within {0:?}")]
    Hung(Duration),
    /// The previous I/O of this kind has not ended yet.
    #[error("the previous one has not ended yet (a hung storage path)")]
    Busy,
    /// A block could not be encoded.
    #[error("cannot encode the block")]
    Encode(#[source] BlockError),
}

/// What one read of the group volume found for one host.
#[derive(Debug)]
pub struct Read {
    /// The host's slot (None: never written), or why it was refused.
    pub slot: Result<Option<Slot>, BlockError>,
    /// Its mailbox.
    pub mailbox: Result<Option<Poison>, BlockError>,
}

/// The group volume of this host's group.
pub struct GroupVolume {
    /// The volume (a file, usually on hbfs).
    pub path: PathBuf,
    /// Where the slots begin.
    pub base: u64,
    /// The group's hosts, in slot order.
    pub hosts: Vec<String>,
    key: Vec<u8>,
    deadline: Duration,
    /// The handles kept: for reading, for writing.
    files: Mutex<[Option<Arc<File>>; 2]>,
    reading: tokio::sync::Mutex<()>,
    writing: tokio::sync::Mutex<()>,
}

impl GroupVolume {
    /// The group volume at `path`, slots from `base`, for `hosts`.
    pub fn new(
        path: PathBuf,
        base: u64,
        hosts: Vec<String>,
        key: Vec<u8>,
        deadline: Duration,
    ) -> GroupVolume {
        GroupVolume {
            path,
            base,
            hosts,
            key,
            deadline,
            files: Mutex::new([None, None]),
            reading: tokio::sync::Mutex::new(()),
            writing: tokio::sync::Mutex::new(()),
        }
    }

    /// The slot index of `host`.
    pub fn index(&self, host: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h == host)
    }

    fn file(&self, write: bool) -> std::io::Result<Arc<File>> {
        let mut files = lock(&self.files);
        let kept = &mut files[usize::from(write)];
        if let Some(f) = kept {
            return Ok(Arc::clone(f));
        }
        let f = Arc::new(open_slot(&self.path, write)?);
        *kept = Some(Arc::clone(&f));
        Ok(f)
    }

    fn forget(&self, write: bool) {
        lock(&self.files)[usize::from(write)] = None;
    }

    /// Runs `io` on the volume on a blocking thread within the deadline,
    /// one at a time per kind (`write`).
    async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        write: bool,
        io: impl FnOnce(&File) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, DiskError> {
        let one = if write { &self.writing } else { &self.reading };
        let Ok(_one) = one.try_lock() else {
            return Err(DiskError::Busy);
        };
        let me = Arc::clone(self);
        let task = tokio::task::spawn_blocking(move || {
            let f = me.file(write)?;
            io(&f).inspect_err(|_| me.forget(write))
        });
        match tokio::time::timeout(self.deadline, task).await {
            Ok(Ok(r)) => r.map_err(DiskError::Io),
            Ok(Err(join)) => Err(DiskError::Io(std::io::Error::other(join))),
            Err(_) => Err(DiskError::Hung(self.deadline)),
        }
    }

    /// Reads every host's slot and mailbox in one read.
    pub async fn read_all(self: &Arc<Self>) -> Result<Vec<Read>, DiskError> {
        let len = self.hosts.len() * PER_HOST as usize;
        let base = self.base;
        let buf = self
            .run(false, move |f| {
                let mut buf = AlignedBuf::zeroed(len);
                f.read_exact_at(buf.as_mut_slice(), base)?;
                Ok(buf)
            })
            .await?;
        let bytes = buf.as_slice();
        Ok(self
            .hosts
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let at = i * PER_HOST as usize;
                Read {
                    slot: Slot::decode(&bytes[at..at + BLOCK], &self.key, host),
                    mailbox: Poison::decode(&bytes[at + BLOCK..at + 2 * BLOCK], &self.key, host),
                }
            })
            .collect())
    }

    /// Writes `slot` into its owner's slot (the owner must be of the group).
    pub async fn write_slot(self: &Arc<Self>, index: usize, slot: &Slot) -> Result<(), DiskError> {
        let block = slot.encode(&self.key).map_err(DiskError::Encode)?;
        self.write_block(slot_offset(self.base, index), block).await
    }

    /// Writes `poison` into the mailbox of host `index`.
    pub async fn write_poison(
        self: &Arc<Self>,
        index: usize,
        poison: &Poison,
    ) -> Result<(), DiskError> {
        let block = poison.encode(&self.key).map_err(DiskError::Encode)?;
        self.write_block(slot_offset(self.base, index) + BLOCK as u64, block)
            .await
    }

    async fn write_block(self: &Arc<Self>, at: u64, block: Vec<u8>) -> Result<(), DiskError> {
        self.run(true, move |f| {
            let mut buf = AlignedBuf::zeroed(BLOCK);
            buf.as_mut_slice().copy_from_slice(&block);
            f.write_all_at(buf.as_slice(), at)?;
            f.sync_data()
        })
        .await
    }
}

/// Checks at start that `path` holds the group's slots from `base`: it
/// opens for writing and is large enough. The error says how to fix it.
pub fn check(path: &Path, base: u64, hosts: usize) -> Result<(), String> {
    let need = base + hosts as u64 * PER_HOST;
    let len = open_slot(path, true)
        .and_then(|f| f.metadata())
        .map_err(|e| format!("cannot open the group volume {} for writing: {e}; give [cluster] group_volume (or hbd's table_volume) a writable, unpaired volume of this site's storage", path.display()))?
        .len();
    if len < need {
        return Err(format!(
            "the group volume {} holds {len} bytes, but the slots of {hosts} hosts from offset {base} need {need}; give a larger volume",
            path.display()
        ));
    }
    Ok(())
}
