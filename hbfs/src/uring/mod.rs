//! The io_uring transport (FUSE over io_uring, Linux 6.14+, protocol 7.42):
//! our own mount(2) and FUSE_INIT asking for the ring (`dev`), one
//! io_uring entry per thread on every CPU's queue (`ring`), one codec for
//! both the ring and /dev/fuse (`proto`), the kernel ABI in one place
//! (`abi`). No released Rust FUSE crate speaks this protocol (fuser 0.18
//! refuses the capability; fuse-backend-rs 0.12 has none), hence this module.

pub(crate) mod abi;
mod dev;
mod proto;
mod ring;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::mount::{umount2, MntFlags};

use crate::ops::HbFs;
use dev::Device;

/// Ring entries (each with its own thread) per CPU queue.
const ENTRIES_PER_QUEUE: usize = 3;
/// How long the first request may take to come back through the ring.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// The kernel module's switch.
pub(crate) const ENABLE_URING: &str = "/sys/module/fuse/parameters/enable_uring";

/// Why the io_uring transport could not serve a mount.
#[derive(Debug, thiserror::Error)]
pub enum UringError {
    /// The kernel does not offer FUSE over io_uring.
    #[error("the kernel does not offer FUSE over io_uring: {0}")]
    NotOffered(String),
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The kernel said something unexpected.
    #[error("FUSE protocol: {0}")]
    Protocol(String),
    /// A ring entry could not be registered.
    #[error("registering the ring entries: {0}")]
    Register(String),
    /// The ring did not serve the first request.
    #[error("the ring did not serve the first request within {0:?}")]
    NotReady(Duration),
}

impl UringError {
    pub(crate) fn io(what: &'static str, source: io::Error) -> UringError {
        UringError::Io { what, source }
    }
}

/// Whether this kernel offers FUSE over io_uring to new mounts; why not, if not.
pub(crate) fn offered() -> Result<(), String> {
    match std::fs::read_to_string(ENABLE_URING) {
        Ok(v) if v.trim() == "Y" || v.trim() == "1" => Ok(()),
        Ok(_) => Err(format!(
            "{ENABLE_URING} is N (the kernel has it, switched off; write Y as root to offer it)"
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(format!(
            "this kernel has no FUSE over io_uring (needs Linux 6.14+ built with CONFIG_FUSE_IO_URING; {ENABLE_URING} is missing)"
        )),
        Err(e) => Err(format!("cannot read {ENABLE_URING}: {e}")),
    }
}

/// The number of CPU queues the kernel makes: one per possible CPU.
fn possible_cpus() -> usize {
    let count = std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|text| {
            text.trim().split(',').try_fold(0usize, |n, range| {
                let mut ends = range.split('-').map(|x| x.parse::<usize>());
                let first = ends.next()?.ok()?;
                let last = ends.next().map_or(Ok(first), |r| r).ok()?;
                Some(n + last.checked_sub(first)? + 1)
            })
        });
    count.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// A mount served over io_uring.
pub(crate) struct Session {
    mountpoint: PathBuf,
    threads: Vec<JoinHandle<()>>,
    /// Requests served through the ring so far.
    pub(crate) ring_served: Arc<AtomicU64>,
    dev: Arc<Device>,
}

/// Mounts `fs` at `mountpoint` and serves it over io_uring. A failure
/// leaves nothing mounted.
pub(crate) fn mount(fs: Arc<HbFs>, mountpoint: &Path) -> Result<Session, UringError> {
    offered().map_err(UringError::NotOffered)?;
    let dev = Arc::new(Device::open()?);
    dev.mount(mountpoint)?;
    let undo = |e: UringError| {
        let _ = umount2(mountpoint, MntFlags::MNT_DETACH);
        e
    };
    let init = dev.init().map_err(undo)?;
    let queues = possible_cpus();
    tracing::debug!(
        kernel_minor = init.minor,
        queues,
        payload = init.payload,
        "FUSE_INIT done; registering ring entries"
    );
    let mut threads = Vec::new();
    let device_loop = {
        let (dev, fs) = (Arc::clone(&dev), Arc::clone(&fs));
        std::thread::Builder::new()
            .name("hbfs-dev".into())
            .spawn(move || dev::serve(dev, fs, init.payload))
            .map_err(|e| undo(UringError::io("spawn the /dev/fuse thread", e)))?
    };
    threads.push(device_loop);
    let ring_served = Arc::new(AtomicU64::new(0));
    let (tx, rx) = mpsc::channel();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&dev.fd());
    threads.extend(
        ring::spawn(
            queues,
            ENTRIES_PER_QUEUE,
            fd,
            init.payload,
            &fs,
            &ring_served,
            &tx,
        )
        .map_err(|e| undo(UringError::io("spawn the ring threads", e)))?,
    );
    drop(tx);
    for _ in 0..queues * ENTRIES_PER_QUEUE {
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => return Err(undo(UringError::Register(why))),
            Err(_) => return Err(undo(UringError::NotReady(READY_TIMEOUT))),
        }
    }
    let session = Session {
        mountpoint: mountpoint.to_path_buf(),
        threads,
        ring_served,
        dev,
    };
    session.check_served().map_err(undo)?;
    Ok(session)
}

impl Session {
    /// Asks the mount for its root's attributes and checks that the ring,
    /// not /dev/fuse, answered.
    fn check_served(&self) -> Result<(), UringError> {
        let (tx, rx) = mpsc::channel();
        let root = self.mountpoint.clone();
        // In a thread of its own: a ring that never became ready would hold it.
        std::thread::spawn(move || {
            let _ = tx.send(std::fs::metadata(&root));
        });
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(UringError::io("stat of the new mount", e)),
            Err(_) => return Err(UringError::NotReady(READY_TIMEOUT)),
        }
        if self.ring_served.load(Ordering::Relaxed) == 0 {
            return Err(UringError::Protocol(format!(
                "the kernel answered through /dev/fuse ({} requests), not the ring",
                self.dev.served.load(Ordering::Relaxed)
            )));
        }
        Ok(())
    }

    /// Unmounts and waits for the threads, which end when the kernel tears
    /// the connection down (their commands complete with ENOTCONN, /dev/fuse
    /// reads fail with ENODEV). A busy mount is an error, as with fuser.
    pub(crate) fn unmount(self) -> io::Result<()> {
        umount2(&self.mountpoint, MntFlags::empty()).map_err(io::Error::from)?;
        for thread in self.threads {
            let _ = thread.join();
        }
        Ok(())
    }
}
