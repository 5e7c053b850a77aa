//! Volumes: fixed-size byte ranges backed by a regular file or a block
//! device, opened with O_DIRECT where the backing store allows it, read and
//! written through the [`IoEngine`] in 4 KiB-aligned
//! pieces (unaligned writes are read-modify-write of the covering blocks).

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use hbcore::vocab::Backing;

use hbio::{IoEngine, ALIGN};

/// Space on the filesystem that would hold a new volume file.
struct Space {
    /// Bytes an unprivileged writer may still use.
    available: u64,
    /// The filesystem's size.
    total: u64,
}

fn free_space(dir: &Path) -> io::Result<Space> {
    let s = nix::sys::statvfs::statvfs(dir).map_err(io::Error::from)?;
    let block = s.fragment_size() as u64;
    Ok(Space {
        available: (s.blocks_available() as u64).saturating_mul(block),
        total: (s.blocks() as u64).saturating_mul(block),
    })
}

/// Reserves `size` bytes for `file` (blocks allocated, reads as zeros).
fn reserve(file: &File, size: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(size).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: the descriptor is open for writing and owned by `file` for the
    // whole call; posix_fallocate reads no memory of ours.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if rc == 0 {
        Ok(())
    } else {
        // posix_fallocate returns the error number instead of setting errno.
        Err(io::Error::from_raw_os_error(rc))
    }
}

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
    /// The directory for the backing file does not exist.
    #[error("cannot create volume '{name}': directory {dir} does not exist; create it first (mirrord does not create directories it was not asked to)")]
    NoDirectory {
        /// Volume.
        name: String,
        /// Missing directory.
        dir: PathBuf,
    },
    /// The filesystem cannot hold a volume that large.
    #[error("cannot create volume '{name}' of {size} bytes: the filesystem of {dir} has room for {room} bytes{}", if *.sparse { " in all (a sparse file may not exceed the filesystem)" } else { "; choose a smaller --size, another --path, or --sparse to reserve nothing now (writes may then fail with ENOSPC)" })]
    NoRoom {
        /// Volume.
        name: String,
        /// Directory of the backing file.
        dir: PathBuf,
        /// Size asked for.
        size: u64,
        /// Bytes available (or in all, for a sparse file).
        room: u64,
        /// Whether a sparse file was asked for.
        sparse: bool,
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
    /// The device it lives on (a file's `st_dev`, a block device's own
    /// number): volumes on one device compete for one disk.
    pub device: u64,
    file: Arc<File>,
    /// Held by whoever writes, so that writes (and their copies to the peer)
    /// are applied in one order, and a read-modify-write is never interleaved.
    pub order: tokio::sync::Mutex<()>,
}

impl Volume {
    /// Creates a new backing file of `size` bytes in an existing directory.
    /// Unless `sparse`, the space is reserved now (posix_fallocate), so a
    /// full filesystem shows here and not at some later host write. A
    /// failure leaves nothing behind.
    pub fn create_file(
        name: &str,
        path: &Path,
        size: u64,
        sparse: bool,
    ) -> Result<Volume, VolumeError> {
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
        let dir = match path.parent() {
            Some(d) if d.as_os_str().is_empty() => Path::new("."),
            Some(d) => d,
            None => Path::new("/"),
        };
        if !dir.is_dir() {
            return Err(VolumeError::NoDirectory {
                name: name.into(),
                dir: dir.to_path_buf(),
            });
        }
        let space = free_space(dir).map_err(open_err)?;
        let room = if sparse { space.total } else { space.available };
        if size > room || i64::try_from(size).is_err() {
            return Err(VolumeError::NoRoom {
                name: name.into(),
                dir: dir.to_path_buf(),
                size,
                room,
                sparse,
            });
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
        // From here on, a failure removes the file it made.
        let made = || -> Result<(), io::Error> {
            if sparse {
                file.set_len(size)?;
            } else {
                reserve(&file, size)?;
            }
            file.sync_all()
        };
        if let Err(e) = made() {
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(open_err(e));
        }
        drop(file);
        Volume::open(name, path, Some(size)).inspect_err(|_| {
            let _ = std::fs::remove_file(path);
        })
    }

    /// Opens an existing file or block device; `expected` is the recorded size, if any.
    pub fn open(name: &str, path: &Path, expected: Option<u64>) -> Result<Volume, VolumeError> {
        let open_err = |source| VolumeError::Open {
            name: name.into(),
            path: path.to_path_buf(),
            source,
        };
        let metadata = std::fs::metadata(path).map_err(open_err)?;
        let kind = metadata.file_type();
        let device = if kind.is_block_device() {
            metadata.rdev()
        } else {
            metadata.dev()
        };
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
            device,
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
        // The pooled buffer goes back when the shared bytes drop.
        Ok(self.read_shared(io, offset, len).await?.to_vec())
    }

    /// Reads `len` bytes at `offset` into a pooled buffer, shared as is (a
    /// copy frame goes from here to the socket uncopied).
    pub async fn read_shared(
        &self,
        io: &IoEngine,
        offset: u64,
        len: usize,
    ) -> Result<Bytes, VolumeError> {
        self.check_range(offset, len as u64)?;
        let (start, end) = covering_blocks(offset, len);
        let buf = io
            .read_exact_at(&self.file, start, io.buffer((end - start) as usize))
            .await
            .map_err(self.io_err("read", offset, len as u64))?;
        let skip = (offset - start) as usize;
        Ok(io.share(buf).slice(skip..skip + len))
    }

    /// Writes `data` at `offset` from where it lies, if O_DIRECT can take
    /// it there (offset, length and address 4 KiB-aligned, as a buffer of
    /// [`IoEngine::share`] is); otherwise through a copy, as
    /// [`Volume::write`]. The caller holds [`Volume::order`].
    pub async fn write_shared(
        &self,
        io: &IoEngine,
        offset: u64,
        data: Bytes,
    ) -> Result<(), VolumeError> {
        let align = ALIGN as u64;
        let aligned =
            offset % align == 0 && data.len() % ALIGN == 0 && (data.as_ptr() as usize) % ALIGN == 0;
        if !aligned {
            return self.write(io, offset, &data).await;
        }
        self.check_range(offset, data.len() as u64)?;
        let err = self.io_err("write", offset, data.len() as u64);
        io.write_shared_at(&self.file, offset, data)
            .await
            .map_err(err)
    }

    /// Writes `data` at `offset`. The caller holds [`Volume::order`].
    pub async fn write(&self, io: &IoEngine, offset: u64, data: &[u8]) -> Result<(), VolumeError> {
        self.check_range(offset, data.len() as u64)?;
        let (start, end) = covering_blocks(offset, data.len());
        let len = (end - start) as usize;
        let err = self.io_err("write", offset, data.len() as u64);
        // A pooled buffer holds stale bytes: `data` covers all of it, or the
        // read below fills it before `data` goes over its part.
        let mut buf = if start == offset && len == data.len() {
            io.buffer(len)
        } else {
            // Partial blocks: bring in what the write does not cover.
            match io.read_exact_at(&self.file, start, io.buffer(len)).await {
                Ok(buf) => buf,
                Err(e) => return Err(err(e)),
            }
        };
        let skip = (offset - start) as usize;
        buf.as_mut_slice()[skip..skip + data.len()].copy_from_slice(data);
        let buf = io.write_all_at(&self.file, start, buf).await.map_err(err)?;
        io.recycle(buf);
        Ok(())
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
        let vol =
            Volume::create_file("v", &dir.path().join("v.vol"), 16384, false).expect("create");
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

    /// A shared aligned buffer is written from where it lies (no pooled
    /// buffer taken for a copy) and returns to the pool only with its last
    /// reference; unaligned data is copied; a shared read is the pooled buffer.
    #[tokio::test]
    async fn shared_buffers_are_written_and_read_without_copies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let vol =
            Volume::create_file("v", &dir.path().join("v.vol"), 65536, false).expect("create");
        for io in [IoEngine::start(), IoEngine::pread()] {
            let mut buf = io.buffer(8192);
            buf.as_mut_slice().fill(0x5a);
            let data = io.share(buf);
            let frame = data.clone();
            vol.write_shared(&io, 8192, data).await.expect("write");
            assert_eq!(
                io.pooled_bytes(),
                0,
                "no buffer for a copy; the frame holds this one"
            );
            drop(frame);
            assert_eq!(io.pooled_bytes(), 8192, "back with the last reference");
            // Whole blocks at an unaligned address: copied, through a pooled buffer.
            let odd = Bytes::from(vec![0xa5u8; 4097]).slice(1..);
            vol.write_shared(&io, 4096, odd).await.expect("write");
            assert_eq!(io.pooled_bytes(), 8192 + 4096);
            let back = vol.read_shared(&io, 4096, 8192).await.expect("read");
            assert_eq!(io.pooled_bytes(), 4096, "the read's buffer is the bytes");
            assert!(back[..4096].iter().all(|b| *b == 0xa5));
            assert!(back[4096..].iter().all(|b| *b == 0x5a));
            let part = vol.read_shared(&io, 4100, 10).await.expect("read");
            assert_eq!(&part[..], &[0xa5; 10]);
            let e = vol
                .write_shared(&io, 65536, back)
                .await
                .expect_err("beyond end");
            assert!(e.to_string().contains("beyond its end"), "{e}");
        }
    }

    #[test]
    fn sizes_must_be_whole_blocks_and_files_new() {
        let dir = tempfile::tempdir().expect("tempdir");
        let e = Volume::create_file("v", &dir.path().join("a"), 1000, false)
            .err()
            .expect("bad size");
        assert!(e.to_string().contains("multiple of 4096"), "{e}");
        Volume::create_file("v", &dir.path().join("b"), 4096, false).expect("create");
        let e = Volume::create_file("v", &dir.path().join("b"), 4096, false)
            .err()
            .expect("exists");
        assert!(e.to_string().contains("already exists"), "{e}");
    }
}
