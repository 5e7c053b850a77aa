//! # hbfs: a site's volumes as plain files
//!
//! A FUSE filesystem with one flat directory: one regular file per volume,
//! named after it, as large as the volume. Unmodified programs (clusterware,
//! `dd`, a script) use heartbeat volumes with open/read/write/close.
//!
//! ```text
//!  open/read/write ─> kernel FUSE ─> HbFs (this crate) ─> dyn Volumes ─> mirrord
//!                                    │ direct I/O: no page cache, every read
//!                                    │ returns the volume's current contents
//! ```
//!
//! The crate knows nothing of pairs or links: the [`Volumes`] trait, which
//! mirrord implements, says which files exist, which are writable, and does
//! the I/O. [`mount`] mounts it (clearing a stale mount left by a crash).
//!
//! Semantics a host can rely on:
//! - writes beyond a volume's end fail with `ENOSPC` (a write that crosses the
//!   end is cut short at the end, as on a block device);
//! - a read-only volume (an SVOL) refuses writes, and opens for writing, with `EROFS`;
//! - volumes have a fixed size: truncation to another size fails with `EPERM`
//!   (write with `dd conv=notrunc`), and files cannot be created or removed here.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

pub use fuser::Errno;
use fuser::{
    FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, OpenAccMode,
    OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen,
    ReplyStatfs, ReplyWrite, Request, WriteFlags,
};

/// One file of the filesystem: a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeFile {
    /// File name (the volume's name).
    pub name: String,
    /// Size in bytes (fixed).
    pub size: u64,
    /// Whether hosts may write it now.
    pub writable: bool,
}

/// The volumes behind the filesystem; implemented by mirrord.
///
/// Calls come from FUSE worker threads and may block (a synchronous mirror
/// write waits for the peer).
pub trait Volumes: Send + Sync + 'static {
    /// The files to show, in a stable order.
    fn list(&self) -> Vec<VolumeFile>;
    /// One file, by name (asked on every lookup, getattr and open: keep it cheap).
    fn stat(&self, name: &str) -> Option<VolumeFile>;
    /// Reads up to `len` bytes at `offset` (short at the volume's end).
    fn read(&self, name: &str, offset: u64, len: u32) -> Result<Vec<u8>, Errno>;
    /// Writes `data` at `offset`; the range is within the volume.
    fn write(&self, name: &str, offset: u64, data: &[u8]) -> Result<(), Errno>;
    /// Makes earlier writes durable on the backing store.
    fn sync(&self, name: &str) -> Result<(), Errno>;
}

/// Attributes change under the kernel (a pair's role decides writability),
/// so the kernel is told not to cache them.
const TTL: Duration = Duration::ZERO;
const BLOCK: u32 = 4096;

/// The filesystem: inode numbers for volume names, and the [`Volumes`] behind them.
struct HbFs {
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
    fn ino_of(&self, name: &str) -> u64 {
        self.inodes.lock().map(|mut i| i.ino(name)).unwrap_or(0)
    }

    fn file(&self, ino: INodeNo) -> Option<VolumeFile> {
        let name = {
            let inodes = self.inodes.lock().ok()?;
            inodes
                .names
                .get(usize::try_from(ino.0.checked_sub(2)?).ok()?)?
                .clone()
        };
        self.volumes.stat(&name)
    }

    fn attr(&self, ino: u64, kind: FileType, size: u64, perm: u16) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: self.started,
            mtime: self.started,
            ctime: self.started,
            crtime: self.started,
            kind,
            perm,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: BLOCK,
            flags: 0,
        }
    }

    fn file_attr(&self, file: &VolumeFile) -> FileAttr {
        let perm = if file.writable { 0o644 } else { 0o444 };
        self.attr(
            self.ino_of(&file.name),
            FileType::RegularFile,
            file.size,
            perm,
        )
    }

    fn root_attr(&self) -> FileAttr {
        self.attr(INodeNo::ROOT.0, FileType::Directory, 0, 0o755)
    }
}

impl Filesystem for HbFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        if parent != INodeNo::ROOT {
            return reply.error(Errno::ENOENT);
        }
        let found = self
            .volumes
            .list()
            .into_iter()
            .find(|f| OsStr::new(&f.name) == name);
        match found {
            Some(file) => reply.entry(&TTL, &self.file_attr(&file), Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        if ino == INodeNo::ROOT {
            return reply.attr(&TTL, &self.root_attr());
        }
        match self.file(ino) {
            Some(file) => reply.attr(&TTL, &self.file_attr(&file)),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        if ino == INodeNo::ROOT {
            return reply.attr(&TTL, &self.root_attr());
        }
        let Some(file) = self.file(ino) else {
            return reply.error(Errno::ENOENT);
        };
        match size {
            Some(size) if size != file.size => {
                tracing::warn!(
                    volume = %file.name,
                    asked = size,
                    size = file.size,
                    "refused to truncate: volumes have a fixed size (write with `dd conv=notrunc`)"
                );
                reply.error(Errno::EPERM)
            }
            // Owner, mode and times are not stored: a volume has no such metadata.
            _ => reply.attr(&TTL, &self.file_attr(&file)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let Some(file) = self.file(ino) else {
            return reply.error(Errno::ENOENT);
        };
        if flags.acc_mode() != OpenAccMode::O_RDONLY && !file.writable {
            tracing::debug!(volume = %file.name, "open for writing refused: volume is read-only (SVOL)");
            return reply.error(Errno::EROFS);
        }
        // Direct I/O: no page cache between hosts and the volume, so a
        // replicated write is visible to the next read at once.
        reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let Some(file) = self.file(ino) else {
            return reply.error(Errno::ENOENT);
        };
        if offset >= file.size {
            return reply.data(&[]);
        }
        let len = (file.size - offset).min(u64::from(size)) as u32;
        match self.volumes.read(&file.name, offset, len) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let Some(file) = self.file(ino) else {
            return reply.error(Errno::ENOENT);
        };
        if !file.writable {
            return reply.error(Errno::EROFS);
        }
        if offset >= file.size {
            return reply.error(Errno::ENOSPC);
        }
        // A write crossing the end is cut short there, as on a block device;
        // the caller's next write then gets ENOSPC.
        let len = (file.size - offset).min(data.len() as u64) as usize;
        match self.volumes.write(&file.name, offset, &data[..len]) {
            Ok(()) => reply.written(len as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        // Writes are not buffered here (direct I/O): nothing to flush on close.
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let Some(file) = self.file(ino) else {
            return reply.error(Errno::ENOENT);
        };
        match self.volumes.sync(&file.name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        if ino != INodeNo::ROOT {
            return reply.error(Errno::ENOTDIR);
        }
        let mut entries = vec![
            (INodeNo::ROOT.0, FileType::Directory, ".".to_string()),
            (INodeNo::ROOT.0, FileType::Directory, "..".to_string()),
        ];
        for file in self.volumes.list() {
            entries.push((self.ino_of(&file.name), FileType::RegularFile, file.name));
        }
        for (i, (ino, kind, name)) in entries.into_iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let files = self.volumes.list();
        let blocks: u64 = files
            .iter()
            .map(|f| f.size.div_ceil(u64::from(BLOCK)))
            .sum();
        // Volumes are preallocated and fixed: the space is all in use, none free.
        reply.statfs(blocks, 0, 0, files.len() as u64, 0, BLOCK, 255, BLOCK);
    }

    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: fuser::ReplyCreate,
    ) {
        tracing::warn!(
            ?name,
            "refused to create a file on hbfs: create volumes with `hbctl volume create`"
        );
        reply.error(Errno::EPERM);
    }

    fn unlink(&self, _req: &Request, _parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        tracing::warn!(
            ?name,
            "refused to remove a file on hbfs: delete volumes with `hbctl volume delete`"
        );
        reply.error(Errno::EPERM);
    }
}

/// A mounted hbfs; unmounted when dropped (or by [`Mount::unmount`]).
pub struct Mount {
    session: Option<fuser::BackgroundSession>,
    mountpoint: PathBuf,
}

impl Mount {
    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmounts. If hosts still hold files open, the mount is detached lazily
    /// (it disappears from the namespace now, open files fail once this process ends).
    pub fn unmount(mut self) -> io::Result<()> {
        self.unmount_inner()
    }

    fn unmount_inner(&mut self) -> io::Result<()> {
        use nix::mount::{umount2, MntFlags};
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        // fuser unmounts and joins its workers; if hosts hold files open the
        // kernel says busy, and the mount is detached lazily instead.
        session.umount_and_join().or_else(|e| {
            tracing::warn!(mountpoint = %self.mountpoint.display(), error = %e, "hbfs busy (files open); detaching it lazily");
            umount2(&self.mountpoint, MntFlags::MNT_DETACH).map_err(io::Error::from)
        })
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(e) = self.unmount_inner() {
            tracing::warn!(mountpoint = %self.mountpoint.display(), error = %e, "unmount");
        }
    }
}

/// Mounts hbfs at `mountpoint` (created if missing), showing `volumes`.
///
/// A stale hbfs mount left there by a crashed mirrord ("Transport endpoint is
/// not connected") is detached first.
pub fn mount(volumes: Arc<dyn Volumes>, mountpoint: &Path) -> io::Result<Mount> {
    clear_stale_mount(mountpoint)?;
    std::fs::create_dir_all(mountpoint)?;
    let fs = HbFs {
        volumes,
        inodes: Mutex::new(Inodes::default()),
        started: SystemTime::now(),
    };
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName("hbfs".into()),
        fuser::MountOption::Subtype("hbfs".into()),
        fuser::MountOption::NoExec,
        fuser::MountOption::NoSuid,
        fuser::MountOption::NoDev,
    ];
    // Hosts run as any user (clusterware often is not root).
    config.acl = fuser::SessionACL::All;
    // A synchronous mirror write blocks its worker for a network round trip;
    // more workers keep other files (and reads) moving meanwhile.
    config.n_threads = Some(4);
    config.clone_fd = true;
    let session = fuser::spawn_mount(fs, mountpoint, &config)?;
    Ok(Mount {
        session: Some(session),
        mountpoint: mountpoint.to_path_buf(),
    })
}

/// Detaches a dead FUSE mount at `mountpoint`, if there is one.
pub fn clear_stale_mount(mountpoint: &Path) -> io::Result<()> {
    match std::fs::metadata(mountpoint) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            tracing::warn!(mountpoint = %mountpoint.display(), "clearing a stale hbfs mount left by an earlier crash");
            nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH)
                .map_err(io::Error::from)
        }
        _ => Ok(()),
    }
}
