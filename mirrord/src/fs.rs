//! The site as hbfs sees it: [`hbfs::Volumes`] over [`Site`], blocking the
//! FUSE worker thread on the async host I/O path, whose volume I/O that
//! thread does itself ([`inline_io`]).

use std::sync::Arc;

use hbcore::report::chain;
use hbfs::{Errno, VolumeFile, Volumes};
use tokio::runtime::Handle;

use crate::site::{Site, SiteError};
use crate::volume::VolumeError;
use hbio::inline_io;

/// hbfs's view of a site.
pub struct SiteFiles {
    site: Arc<Site>,
    runtime: Handle,
}

impl SiteFiles {
    /// Serves `site` to FUSE threads, running its I/O on `runtime`.
    pub fn new(site: Arc<Site>, runtime: Handle) -> SiteFiles {
        SiteFiles { site, runtime }
    }
}

/// What the host sees of a failed operation. A disk error the host can act
/// on (a full or read-only backing store, a file too large, an I/O error)
/// reaches it as itself; anything else is EIO, and the log says what it was.
pub(crate) fn errno(e: SiteError) -> Errno {
    match e {
        SiteError::ReadOnly { .. } => Errno::EROFS,
        // Said once when the pair became outdated, not for every write.
        SiteError::Outdated { .. } => Errno::EROFS,
        SiteError::NoVolume(_) => Errno::ENOENT,
        SiteError::Volume(VolumeError::OutOfRange { .. }) => Errno::ENOSPC,
        fenced @ (SiteError::Fenced { .. } | SiteError::FencedSuspended(_)) => {
            tracing::warn!("host write refused: {}", chain(&fenced));
            Errno::EIO
        }
        other => {
            tracing::error!("host I/O failed: {}", chain(&other));
            os_error(&other).unwrap_or(Errno::EIO)
        }
    }
}

/// The OS error behind `e`, if it is one a host can act on.
fn os_error(e: &(dyn std::error::Error + 'static)) -> Option<Errno> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return match io.raw_os_error()? {
                libc::ENOSPC => Some(Errno::ENOSPC),
                libc::EDQUOT => Some(Errno::EDQUOT),
                libc::EROFS => Some(Errno::EROFS),
                libc::EFBIG => Some(Errno::EFBIG),
                libc::EIO => Some(Errno::EIO),
                _ => None,
            };
        }
        cause = c.source();
    }
    None
}

impl Volumes for SiteFiles {
    fn list(&self) -> Vec<VolumeFile> {
        self.site
            .volume_list()
            .into_iter()
            .map(|v| VolumeFile {
                name: v.name,
                size: v.size,
                writable: v.writable,
            })
            .collect()
    }

    fn stat(&self, name: &str) -> Option<VolumeFile> {
        self.site.volume_file(name)
    }

    fn read(&self, name: &str, offset: u64, len: u32) -> Result<Vec<u8>, Errno> {
        inline_io(|| {
            self.runtime
                .block_on(self.site.host_read(name, offset, len as usize))
        })
        .map_err(errno)
    }

    fn write(&self, name: &str, offset: u64, data: &[u8]) -> Result<(), Errno> {
        inline_io(|| {
            self.runtime
                .block_on(self.site.host_write(name, offset, data))
        })
        .map_err(errno)
    }

    fn sync(&self, name: &str) -> Result<(), Errno> {
        inline_io(|| self.runtime.block_on(self.site.host_sync(name))).map_err(errno)
    }
}
