//! # hbfs: a site's volumes as plain files
//!
//! A FUSE filesystem with one flat directory: one regular file per volume,
//! named after it, as large as the volume. Unmodified programs (clusterware,
//! `dd`, a script) use heartbeat volumes with open/read/write/close.
//!
//! The crate knows nothing of pairs or links: the [`Volumes`] trait, which
//! mirrord implements, says which files exist, which are writable, and does
//! the I/O. [`mount`] mounts it (clearing a stale mount left by a crash)
//! over one of two transports, chosen by [`Transport`]:
//!
//! ## Modules
//! - `ops`: the semantics, once: one handler per FUSE operation (lookup,
//!   getattr, setattr, open, read, write, fsync, readdir, statfs, create,
//!   unlink), each returning a typed answer. Both transports call it.
//! - `classic`: the classic transport; fuser reads /dev/fuse and calls `ops`.
//! - `uring`: FUSE over io_uring (Linux 6.14+), written here since no Rust
//!   FUSE crate speaks it: `uring::abi` (the kernel structs, sizes asserted),
//!   `uring::dev` (mount(2), FUSE_INIT, the /dev/fuse loop), `uring::ring`
//!   (one io_uring and thread per ring entry), `uring::proto` (decode,
//!   call `ops`, encode; for the ring and /dev/fuse alike).
//! - `remote`, `config`: the `hbfs` binary on a host: [`remote::RemoteVolumes`]
//!   over the host link (hbcore's `HostClient`), its start and stop
//!   (`remote::daemon`), and its configuration (`hbfs.toml` or the options).
//!
//! ## Data paths
//!
//! Classic: two system calls and a thread wake-up per request.
//! ```text
//!  host write(2) ─> kernel FUSE ─> request queue ─┐
//!                                                 │ wakes one of 4 fuser workers
//!   fuser worker: read(2) /dev/fuse ─> classic ─> ops ─> dyn Volumes ─> mirrord
//!                 write(2) /dev/fuse <─ reply <───┘
//! ```
//!
//! io_uring: the request goes to the queue of the host's CPU, into the
//! buffers of a free ring entry; the entry's thread was waiting in
//! io_uring_enter(2) and runs the hand-over itself (task work). Its
//! next io_uring_enter both commits the reply and waits for the next request.
//! ```text
//!  host write(2) on CPU n ─> kernel FUSE ─> queue n ─> free entry's buffers
//!                                                     │ task work on the entry's thread
//!   hbfs-qn.k thread: CQE ─> proto ─> ops ─> dyn Volumes ─> mirrord
//!                     COMMIT_AND_FETCH (reply + wait) <─┘   one syscall per request
//!  /dev/fuse: FORGET, INTERRUPT (and requests from before the ring was
//!  ready) ─> hbfs-dev thread: read(2) ─> proto ─> ops ─> write(2)
//! ```
//! In both, direct I/O: no page cache, every read returns the volume's
//! current contents, and the handler blocks its thread (a synchronous
//! mirror write waits for the peer) while other threads serve other requests.
//!
//! Semantics a host can rely on, whatever the transport:
//! - writes beyond a volume's end fail with `ENOSPC` (a write that crosses the
//!   end is cut short at the end, as on a block device);
//! - a read-only volume (an SVOL) refuses writes, and opens for writing, with `EROFS`;
//! - volumes have a fixed size: truncation to another size fails with `EPERM`
//!   (write with `dd conv=notrunc`), and files cannot be created or removed here.

mod classic;
pub mod config;
mod ops;
pub mod remote;
pub mod uring;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use fuser::Errno;
pub use uring::UringError;

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

/// How hbfs talks to the kernel (mirrord's `fuse_transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// io_uring when the kernel offers it, else classic.
    #[default]
    Auto,
    /// FUSE over io_uring, or fail.
    Uring,
    /// read(2)/write(2) on /dev/fuse (fuser).
    Classic,
}

impl std::str::FromStr for Transport {
    type Err = String;

    fn from_str(s: &str) -> Result<Transport, String> {
        match s {
            "auto" => Ok(Transport::Auto),
            "uring" => Ok(Transport::Uring),
            "classic" => Ok(Transport::Classic),
            other => Err(format!(
                "'{other}' is not a FUSE transport: use auto, uring or classic"
            )),
        }
    }
}

/// The transport serving a mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serving {
    /// fuser on /dev/fuse.
    Classic,
    /// The kernel's io_uring queues.
    Uring,
}

impl std::fmt::Display for Serving {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Serving::Classic => "classic (/dev/fuse read/write)",
            Serving::Uring => "io_uring",
        })
    }
}

/// Why hbfs could not be mounted.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// Preparing the mount point, or the classic mount, failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `uring` was asked for and could not serve.
    #[error("fuse_transport = \"uring\": {0}")]
    Uring(#[from] UringError),
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> MountError {
    move |source| MountError::Io { what, source }
}

enum Session {
    Classic(fuser::BackgroundSession),
    Uring(uring::Session),
}

/// A mounted hbfs; unmounted when dropped (or by [`Mount::unmount`]).
pub struct Mount {
    session: Option<Session>,
    mountpoint: PathBuf,
    serving: Serving,
    why: String,
}

impl Mount {
    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The transport serving it.
    pub fn serving(&self) -> Serving {
        self.serving
    }

    /// Why that transport (for the log).
    pub fn why(&self) -> &str {
        &self.why
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
        // Both unmount and join their threads; if hosts hold files open the
        // kernel says busy, and the mount is detached lazily instead.
        let done = match session {
            Session::Classic(s) => s.umount_and_join(),
            Session::Uring(s) => s.unmount(),
        };
        done.or_else(|e| {
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

/// Mounts hbfs at `mountpoint` (created if missing), showing `volumes`,
/// served over `transport`; logs which transport serves and why.
///
/// A stale hbfs mount left there by a crashed mirrord ("Transport endpoint is
/// not connected") is detached first.
pub fn mount(
    volumes: Arc<dyn Volumes>,
    mountpoint: &Path,
    transport: Transport,
) -> Result<Mount, MountError> {
    clear_stale_mount(mountpoint).map_err(io_err("clearing a stale mount"))?;
    std::fs::create_dir_all(mountpoint).map_err(io_err("creating the mount point"))?;
    let fs = Arc::new(ops::HbFs::new(volumes));
    let uring = |why: String| -> Result<Mount, UringError> {
        let session = uring::mount(Arc::clone(&fs), mountpoint)?;
        Ok(Mount {
            session: Some(Session::Uring(session)),
            mountpoint: mountpoint.to_path_buf(),
            serving: Serving::Uring,
            why,
        })
    };
    let classic = |why: String| -> Result<Mount, MountError> {
        let session =
            classic::mount(Arc::clone(&fs), mountpoint).map_err(io_err("mounting hbfs"))?;
        Ok(Mount {
            session: Some(Session::Classic(session)),
            mountpoint: mountpoint.to_path_buf(),
            serving: Serving::Classic,
            why,
        })
    };
    let mount = match transport {
        Transport::Classic => classic("fuse_transport = \"classic\"".into())?,
        Transport::Uring => uring("fuse_transport = \"uring\"".into())?,
        Transport::Auto => match auto_choice() {
            Err(why) => classic(format!("fuse_transport = \"auto\": {why}"))?,
            Ok(why) => match uring(format!("fuse_transport = \"auto\": {why}")) {
                Ok(mount) => mount,
                Err(e) => {
                    tracing::warn!("hbfs: io_uring transport failed, falling back to classic: {e}");
                    classic(format!("fuse_transport = \"auto\": io_uring failed ({e})"))?
                }
            },
        },
    };
    tracing::info!(
        mountpoint = %mountpoint.display(),
        "hbfs transport: {} ({})",
        mount.serving,
        mount.why
    );
    Ok(mount)
}

/// What `auto` chooses: `Ok(why)` for io_uring, `Err(why)` for classic.
fn auto_choice() -> Result<String, String> {
    uring::offered()?;
    Ok("the kernel offers FUSE over io_uring".into())
}

/// Detaches a dead FUSE mount at `mountpoint`, if there is one. A dead
/// mount says ENOTCONN; one whose io_uring queues the kernel is still
/// tearing down after the crash may say ECONNABORTED or ECANCELED for a moment.
pub fn clear_stale_mount(mountpoint: &Path) -> io::Result<()> {
    match std::fs::metadata(mountpoint) {
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOTCONN | libc::ECONNABORTED | libc::ECANCELED)
            ) =>
        {
            tracing::warn!(mountpoint = %mountpoint.display(), "clearing a stale hbfs mount left by an earlier crash");
            nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH)
                .map_err(io::Error::from)
        }
        _ => Ok(()),
    }
}
