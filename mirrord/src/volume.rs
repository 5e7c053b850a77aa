//! Volumes: fixed-size byte ranges backed by a regular file or a block
//! device, opened with O_DIRECT where the backing store allows it, read and
//! written through the [`IoEngine`](crate::io::IoEngine) in 4 KiB-aligned
//! pieces (unaligned writes are read-modify-write of the covering blocks).

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hbcore::vocab::Backing;

use crate::io::{AlignedBuf, IoEngine, ALIGN};

/// A volume operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// The backing file exists already.
    #[error("cannot create volume '{name}': {path} already exists; choose another --path, or remove the file first")]
    Exists {
        /// Volume.
        name: String,
        /// Backing path.
        path: PathBuf,
    },
    /// The backing file or device could not be opened or created.
    #[error("volume '{name}': cannot open {path}")]
    Open {
        /// Volume.
        name: String,
        /// Backing path.
        path: PathBuf,
        /// OS error.
        source: io::Error,
    },
    /// The path is neither a regular file nor a block device.
    #[error("volume '{name}': {path} is neither a regular file nor a block device")]
    NotAVolume {
        /// Volume.
        name: String,
        /// Backing path.
        path: PathBuf,
    },
    /// The backing store changed size since the volume was created.
    #[error("volume '{name}': {path} is {found} bytes but the volume was created with {expected}; restore the backing store or delete and re-create the volume")]
    SizeChanged {
        /// Volume.
        name: String,
        /// Backing path.
        path: PathBuf,
        /// Recorded size.
        expected: u64,
        /// Size found.
        found: u64,
    },
    /// A size that cannot be a volume's.
    #[error(
        "volume '{name}': size {size} is not a positive multiple of 4096 bytes; choose e.g. 1MiB"
    )]
    BadSize {
        /// Volume.
        name: String,
        /// Size asked for.
        size: u64,
    },
    /// An access outside the volume.
    #[error("volume '{name}': {len} bytes at offset {offset} lie beyond its end ({size} bytes)")]
    OutOfRange {
        /// Volume.
        name: String,
        /// Offset asked.
        offset: u64,
        /// Length asked.
        len: u64,
        /// Volume size.
        size: u64,
    },
    /// The backing store failed an I/O.
    #[error("volume '{name}': {op} of {len} bytes at offset {offset} failed")]
    Io {
        /// Volume.
        name: String,
        /// `read`, `write` or `sync`.
        op: &'static str,
        /// Offset.
        offset: u64,
        /// Length.
        len: u64,
        /// OS error.
        source: io::Error,
    },
}

/// An open volume.
pub struct Volume {
    /// Name, unique within the site.
    pub name: String,
    /// Backing file or device.
    pub path: PathBuf,
    /// Size in bytes, a multiple of 4 KiB.
    pub size: u64,
    /// File or block device.
    pub backing: Backing,
    file: Arc<File>,
    /// Held by whoever writes, so that writes (and their copies to the peer)
    /// are applied in one order, and a read-modify-write is never interleaved.
    pub order: tokio::sync::Mutex<()>,
}

impl Volume {
    /// Creates a new backing file of `size` bytes.
    pub fn create_file(name: &str, path: &Path, size: u64) -> Result<Volume, VolumeError> {
        if size == 0 || size % ALIGN as u64 != 0 {
            return Err(VolumeError::BadSize {
                name: name.into(),
                size,
            });
        }
        let open_err = |source| VolumeError::Open {
            name: name.into(),
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(open_err)?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    VolumeError::Exists {
                        name: name.into(),
                        path: path.to_path_buf(),
                    }
                } else {
                    open_err(e)
                }
            })?;
        file.set_len(size).map_err(open_err)?;
        file.sync_all().map_err(open_err)?;
        drop(file);
        Volume::open(name, path, Some(size))
    }

    /// Opens an existing file or block device; `expected` is the recorded size, if any.
    pub fn open(name: &str, path: &Path, expected: Option<u64>) -> Result<Volume, VolumeError> {
        let open_err = |source| VolumeError::Open {
            name: name.into(),
            path: path.to_path_buf(),
            source,
        };
        let kind = std::fs::metadata(path).map_err(open_err)?.file_type();
        let backing = if kind.is_block_device() {
            Backing::Block
        } else if kind.is_file() {
            Backing::File
        } else {
            return Err(VolumeError::NotAVolume {
                name: name.into(),
                path: path.to_path_buf(),
            });
        };
        let mut file = match open_rw(path, true) {
            Ok(file) => file,
            // tmpfs and some others refuse O_DIRECT; the page cache then sits
            // between us and the store, and fsync still reaches it.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::info!(volume = name, path = %path.display(), "O_DIRECT refused by this filesystem; using buffered I/O");
                open_rw(path, false).map_err(open_err)?
            }
            Err(e) => return Err(open_err(e)),
        };
        let size = file.seek(SeekFrom::End(0)).map_err(open_err)?;
        if let Some(expected) = expected {
            if expected != size {
                return Err(VolumeError::SizeChanged {
                    name: name.into(),
                    path: path.to_path_buf(),
                    expected,
                    found: size,
                });
            }
        }
        if size == 0 || size % ALIGN as u64 != 0 {
            return Err(VolumeError::BadSize {
                name: name.into(),
                size,
            });
        }
        Ok(Volume {
            name: name.into(),
            path: path.to_path_buf(),
            size,
            backing,
            file: Arc::new(file),
            order: tokio::sync::Mutex::new(()),
        })
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<(), VolumeError> {
        match offset.checked_add(len) {
            Some(end) if end <= self.size => Ok(()),
            _ => Err(VolumeError::OutOfRange {
                name: self.name.clone(),
                offset,
                len,
                size: self.size,
            }),
        }
    }

    fn io_err(
        &self,
        op: &'static str,
        offset: u64,
        len: u64,
    ) -> impl FnOnce(io::Error) -> VolumeError + '_ {
        move |source| VolumeError::Io {
            name: self.name.clone(),
            op,
            offset,
            len,
            source,
        }
    }

    /// Reads `len` bytes at `offset`.
    pub async fn read(
        &self,
        io: &IoEngine,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, VolumeError> {
        self.check_range(offset, len as u64)?;
        let (start, end) = covering_blocks(offset, len);
        let buf = AlignedBuf::zeroed((end - start) as usize);
        let buf = io
            .read_exact_at(&self.file, start, buf)
            .await
            .map_err(self.io_err("read", offset, len as u64))?;
        let skip = (offset - start) as usize;
        Ok(buf.as_slice()[skip..skip + len].to_vec())
    }

    /// Writes `data` at `offset`. The caller holds [`Volume::order`].
    pub async fn write(&self, io: &IoEngine, offset: u64, data: &[u8]) -> Result<(), VolumeError> {
        self.check_range(offset, data.len() as u64)?;
        let (start, end) = covering_blocks(offset, data.len());
        let len = (end - start) as usize;
        let err = self.io_err("write", offset, data.len() as u64);
        let mut buf = if start == offset && len == data.len() {
            AlignedBuf::zeroed(len)
        } else {
            // Partial blocks: bring in what the write does not cover.
            match io
                .read_exact_at(&self.file, start, AlignedBuf::zeroed(len))
                .await
            {
                Ok(buf) => buf,
                Err(e) => return Err(err(e)),
            }
        };
        let skip = (offset - start) as usize;
        buf.as_mut_slice()[skip..skip + data.len()].copy_from_slice(data);
        io.write_all_at(&self.file, start, buf)
            .await
            .map(|_| ())
            .map_err(err)
    }

    /// Makes earlier writes durable.
    pub async fn sync(&self, io: &IoEngine) -> Result<(), VolumeError> {
        io.sync(&self.file).await.map_err(self.io_err("sync", 0, 0))
    }
}

fn open_rw(path: &Path, direct: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if direct {
        options.custom_flags(libc::O_DIRECT);
    }
    options.open(path)
}

/// The 4 KiB-aligned byte range `[start, end)` covering `len` bytes at `offset`.
fn covering_blocks(offset: u64, len: usize) -> (u64, u64) {
    let align = ALIGN as u64;
    let start = offset / align * align;
    let end = (offset + len as u64).div_ceil(align) * align;
    (start, end.max(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering_blocks_round_out() {
        assert_eq!(covering_blocks(0, 4096), (0, 4096));
        assert_eq!(covering_blocks(100, 10), (0, 4096));
        assert_eq!(covering_blocks(4000, 200), (0, 8192));
        assert_eq!(covering_blocks(8192, 0), (8192, 8192));
    }

    #[tokio::test]
    async fn unaligned_writes_keep_their_neighbours() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vol = Volume::create_file("v", &dir.path().join("v.vol"), 16384).expect("create");
        let io = IoEngine::start();
        vol.write(&io, 0, &[7u8; 16384]).await.expect("fill");
        vol.write(&io, 4090, b"hello world").await.expect("write");
        let back = vol.read(&io, 4080, 32).await.expect("read");
        assert_eq!(&back[..10], &[7u8; 10]);
        assert_eq!(&back[10..21], b"hello world");
        assert_eq!(&back[21..], &[7u8; 11]);
        let err = vol
            .write(&io, 16380, b"too long")
            .await
            .expect_err("beyond end");
        assert!(err.to_string().contains("beyond its end"), "{err}");
    }

    #[test]
    fn sizes_must_be_whole_blocks_and_files_new() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = Volume::create_file("v", &dir.path().join("a"), 1000)
            .err()
            .expect("bad size");
        assert!(e.to_string().contains("multiple of 4096"), "{e}");
        Volume::create_file("v", &dir.path().join("b"), 4096).expect("create");
        let e = Volume::create_file("v", &dir.path().join("b"), 4096)
            .err()
            .expect("exists");
        assert!(e.to_string().contains("already exists"), "{e}");
    }
}
