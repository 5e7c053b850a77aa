//! A do-nothing store behind hbfs: the same mount code and FUSE settings as
//! mirrord's, one file whose writes are dropped and whose reads are zeros.
//! A 4 KiB write to it costs the FUSE hop alone, so the benchmark can show
//! the FUSE share of a write through hbfs.

use std::path::Path;
use std::sync::Arc;

use hbfs::{Errno, Transport, VolumeFile, Volumes};

/// The one file's name.
pub const NULL_FILE: &str = "null";

struct NullStore {
    size: u64,
}

impl Volumes for NullStore {
    fn list(&self) -> Vec<VolumeFile> {
        vec![VolumeFile {
            name: NULL_FILE.into(),
            size: self.size,
            writable: true,
        }]
    }

    fn stat(&self, name: &str) -> Option<VolumeFile> {
        (name == NULL_FILE).then(|| VolumeFile {
            name: NULL_FILE.into(),
            size: self.size,
            writable: true,
        })
    }

    fn read(&self, _: &str, _: u64, len: u32) -> Result<Vec<u8>, Errno> {
        Ok(vec![0; len as usize])
    }

    fn write(&self, _: &str, _: u64, _: &[u8]) -> Result<(), Errno> {
        Ok(())
    }

    fn sync(&self, _: &str) -> Result<(), Errno> {
        Ok(())
    }
}

/// Why the null store could not be served.
#[derive(Debug, thiserror::Error)]
pub enum NullStoreError {
    /// SIGINT and SIGTERM could not be blocked or waited for.
    #[error("cannot wait for SIGINT/SIGTERM")]
    Signals(#[source] nix::Error),
    /// hbfs did not mount.
    #[error("cannot mount the null store")]
    Mount(#[source] hbfs::MountError),
    /// hbfs did not unmount.
    #[error("cannot unmount the null store")]
    Unmount(#[source] std::io::Error),
}

/// Mounts the null store at `mountpoint` and serves it until SIGINT or
/// SIGTERM; returns the transport that served.
pub fn serve(mountpoint: &Path, size: u64, transport: Transport) -> Result<String, NullStoreError> {
    use nix::sys::signal::{SigSet, Signal};
    // Blocked before the FUSE threads start, so they inherit the mask and
    // the signal waits for `wait` below.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    signals.thread_block().map_err(NullStoreError::Signals)?;
    let mount = hbfs::mount(Arc::new(NullStore { size }), mountpoint, transport)
        .map_err(NullStoreError::Mount)?;
    let serving = format!("{:?} ({})", mount.serving(), mount.why());
    eprintln!(
        "hbbench: null store at {} over {serving}",
        mountpoint.display()
    );
    signals.wait().map_err(NullStoreError::Signals)?;
    mount.unmount().map_err(NullStoreError::Unmount)?;
    Ok(serving)
}
