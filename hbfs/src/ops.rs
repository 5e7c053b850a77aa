//! What hbfs answers, whatever carried the request: one handler per FUSE
//! operation, each returning a typed result. The transports
//! ([`crate::classic`] through fuser, [`crate::uring`] through the kernel's
//! io_uring queues) only decode requests and encode these answers; the
//! semantics live here once.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use fuser::Errno;

use crate::{VolumeFile, Volumes};

/// Attributes change under the kernel (a pair's role decides writability),
/// so the kernel is told not to cache them.
pub(crate) const TTL: Duration = Duration::ZERO;
/// Block size reported for files and the filesystem.
pub(crate) const BLOCK: u32 = 4096;
/// Inode number of the root directory (the FUSE protocol's).
pub(crate) const ROOT: u64 = 1;

/// File kinds hbfs shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The root directory.
    Dir,
    /// A volume.
    File,
}

/// Attributes of one inode, in transport-neutral form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attr {
    pub ino: u64,
    pub size: u64,
    pub blocks: u64,
    pub time: SystemTime,
    pub kind: Kind,
    pub perm: u16,
    pub nlink: u32,
    pub blksize: u32,
}

/// One directory entry with the offset of the entry after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirEntry {
    pub ino: u64,
    pub next: u64,
    pub kind: Kind,
    pub name: String,
}

/// Filesystem totals for statfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Statfs {
    pub blocks: u64,
    pub files: u64,
    pub bsize: u32,
    pub namelen: u32,
}

/// The filesystem: inode numbers for volume names, and the [`Volumes`] behind them.
pub(crate) struct HbFs {
    volumes: Arc<dyn Volumes>,
    /// Inode number of each name ever seen; inode `n + 2` is `names[n]`.
    inodes: Mutex<Inodes>,
    started: SystemTime,
}

#[derive(Default)]
struct Inodes {
    names: Vec<String>,
    by_name: HashMap<String, u64>,
}

impl Inodes {
    fn ino(&mut self, name: &str) -> u64 {
        if let Some(ino) = self.by_name.get(name) {
            return *ino;
        }
        self.names.push(name.to_string());
        let ino = self.names.len() as u64 + 1;
        self.by_name.insert(name.to_string(), ino);
        ino
    }
}

impl HbFs {
    pub(crate) fn new(volumes: Arc<dyn Volumes>) -> HbFs {
        HbFs {
            volumes,
            inodes: Mutex::new(Inodes::default()),
            started: SystemTime::now(),
        }
    }

    fn ino_of(&self, name: &str) -> u64 {
        self.inodes.lock().map(|mut i| i.ino(name)).unwrap_or(0)
    }

    fn file(&self, ino: u64) -> Option<VolumeFile> {
        let name = {
            let inodes = self.inodes.lock().ok()?;
            inodes
                .names
                .get(usize::try_from(ino.checked_sub(2)?).ok()?)?
                .clone()
        };
        self.volumes.stat(&name)
    }

    fn attr(&self, ino: u64, kind: Kind, size: u64, perm: u16) -> Attr {
        Attr {
            ino,
            size,
            blocks: size.div_ceil(512),
            time: self.started,
            kind,
            perm,
            nlink: if kind == Kind::Dir { 2 } else { 1 },
            blksize: BLOCK,
        }
    }

    fn file_attr(&self, file: &VolumeFile) -> Attr {
        let perm = if file.writable { 0o644 } else { 0o444 };
        self.attr(self.ino_of(&file.name), Kind::File, file.size, perm)
    }

    fn root_attr(&self) -> Attr {
        self.attr(ROOT, Kind::Dir, 0, 0o755)
    }

    /// A name in the root directory.
    pub(crate) fn lookup(&self, parent: u64, name: &OsStr) -> Result<Attr, Errno> {
        if parent != ROOT {
            return Err(Errno::ENOENT);
        }
        // One volume looked up by name, not the whole list (which costs
        // every volume's pair at a site of 1,000 heartbeat mirrors).
        name.to_str()
            .and_then(|name| self.volumes.stat(name))
            .map(|file| self.file_attr(&file))
            .ok_or(Errno::ENOENT)
    }

    pub(crate) fn getattr(&self, ino: u64) -> Result<Attr, Errno> {
        if ino == ROOT {
            return Ok(self.root_attr());
        }
        self.file(ino)
            .map(|file| self.file_attr(&file))
            .ok_or(Errno::ENOENT)
    }

    /// Only the size matters: a volume's size is fixed.
    pub(crate) fn setattr(&self, ino: u64, size: Option<u64>) -> Result<Attr, Errno> {
        if ino == ROOT {
            return Ok(self.root_attr());
        }
        let file = self.file(ino).ok_or(Errno::ENOENT)?;
        match size {
            Some(size) if size != file.size => {
                tracing::warn!(
                    volume = %file.name,
                    asked = size,
                    size = file.size,
                    "refused to truncate: volumes have a fixed size (write with `dd conv=notrunc`)"
                );
                Err(Errno::EPERM)
            }
            // Owner, mode and times are not stored: a volume has no such metadata.
            _ => Ok(self.file_attr(&file)),
        }
    }

    /// Checks an open; the file is then served with direct I/O (no page
    /// cache between hosts and the volume, so a replicated write is visible
    /// to the next read at once).
    pub(crate) fn open(&self, ino: u64, for_writing: bool) -> Result<(), Errno> {
        let file = self.file(ino).ok_or(Errno::ENOENT)?;
        if for_writing && !file.writable {
            tracing::debug!(volume = %file.name, "open for writing refused: volume is read-only (SVOL)");
            return Err(Errno::EROFS);
        }
        Ok(())
    }

    pub(crate) fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let file = self.file(ino).ok_or(Errno::ENOENT)?;
        if offset >= file.size {
            return Ok(Vec::new());
        }
        let len = (file.size - offset).min(u64::from(size)) as u32;
        self.volumes.read(&file.name, offset, len)
    }

    /// Returns the bytes written.
    pub(crate) fn write(&self, ino: u64, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        let file = self.file(ino).ok_or(Errno::ENOENT)?;
        if !file.writable {
            return Err(Errno::EROFS);
        }
        if offset >= file.size {
            return Err(Errno::ENOSPC);
        }
        // A write crossing the end is cut short there, as on a block device;
        // the caller's next write then gets ENOSPC.
        let len = (file.size - offset).min(data.len() as u64) as usize;
        self.volumes.write(&file.name, offset, &data[..len])?;
        Ok(len as u32)
    }

    pub(crate) fn fsync(&self, ino: u64) -> Result<(), Errno> {
        let file = self.file(ino).ok_or(Errno::ENOENT)?;
        self.volumes.sync(&file.name)
    }

    /// The root's entries after `offset` (`.` and `..` first).
    pub(crate) fn readdir(&self, ino: u64, offset: u64) -> Result<Vec<DirEntry>, Errno> {
        if ino != ROOT {
            return Err(Errno::ENOTDIR);
        }
        let mut entries = vec![
            (ROOT, Kind::Dir, ".".to_string()),
            (ROOT, Kind::Dir, "..".to_string()),
        ];
        for file in self.volumes.list() {
            entries.push((self.ino_of(&file.name), Kind::File, file.name));
        }
        Ok(entries
            .into_iter()
            .enumerate()
            .skip(usize::try_from(offset).unwrap_or(usize::MAX))
            .map(|(i, (ino, kind, name))| DirEntry {
                ino,
                next: i as u64 + 1,
                kind,
                name,
            })
            .collect())
    }

    /// Volumes are preallocated and fixed: the space is all in use, none free.
    pub(crate) fn statfs(&self) -> Statfs {
        let files = self.volumes.list();
        Statfs {
            blocks: files
                .iter()
                .map(|f| f.size.div_ceil(u64::from(BLOCK)))
                .sum(),
            files: files.len() as u64,
            bsize: BLOCK,
            namelen: 255,
        }
    }

    pub(crate) fn create(&self, name: &OsStr) -> Errno {
        tracing::warn!(
            ?name,
            "refused to create a file on hbfs: create volumes with `hbctl volume create`"
        );
        Errno::EPERM
    }

    pub(crate) fn unlink(&self, name: &OsStr) -> Errno {
        tracing::warn!(
            ?name,
            "refused to remove a file on hbfs: delete volumes with `hbctl volume delete`"
        );
        Errno::EPERM
    }
}
