//! /dev/fuse for the io_uring transport: the mount(2) with our own fd, the
//! FUSE_INIT handshake that asks for the ring, and the device loop that
//! serves what still comes through read(2) (FORGET and INTERRUPT always,
//! requests queued before the ring was ready).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use zerocopy::{FromBytes, IntoBytes};

use super::abi::*;
use super::{proto, UringError};
use crate::ops::HbFs;

/// The largest write the kernel sends in one request; the ring's payload
/// buffers are this large. fuser's own limit is larger, but the kernel cuts
/// direct I/O at `max_pages` pages (256 by default) either way.
pub(crate) const MAX_WRITE: u32 = 1 << 20;

/// An open /dev/fuse, one per mount.
pub(crate) struct Device {
    file: File,
    /// Requests (not FORGET/INTERRUPT) served through read(2): none once the ring is ready.
    pub(crate) served: AtomicU64,
}

/// What the kernel agreed to at FUSE_INIT.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Init {
    pub(crate) minor: u32,
    /// Payload buffer size each ring entry must have (the kernel checks it).
    pub(crate) payload: usize,
}

impl Device {
    pub(crate) fn open() -> Result<Device, UringError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .map_err(|e| UringError::io("open /dev/fuse", e))?;
        Ok(Device {
            file,
            served: AtomicU64::new(0),
        })
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// One request; retried on EINTR and on ENOENT (a request interrupted
    /// before it was read). ENODEV once the connection is gone.
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match (&self.file).read(buf) {
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::ENOENT | libc::EAGAIN)
                    ) => {}
                other => return other,
            }
        }
    }

    /// Writes one reply: the out header, then `args` (one write(2), as the kernel wants).
    fn reply(&self, unique: u64, error: i32, args: &[u8], buf: &mut Vec<u8>) -> io::Result<()> {
        let header = fuse_out_header {
            len: (std::mem::size_of::<fuse_out_header>() + args.len()) as u32,
            error,
            unique,
        };
        buf.clear();
        buf.extend_from_slice(header.as_bytes());
        buf.extend_from_slice(args);
        match (&self.file).write(buf) {
            // The request was interrupted and is gone: nothing to answer.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Mounts the filesystem of this device at `mountpoint` (hbfs's options:
    /// fsname and subtype hbfs, nosuid, nodev, noexec, allow_other).
    pub(crate) fn mount(&self, mountpoint: &Path) -> Result<(), UringError> {
        use nix::mount::MsFlags;
        let data = format!(
            "fd={},rootmode=40000,user_id={},group_id={},allow_other",
            self.file.as_raw_fd(),
            nix::unistd::geteuid(),
            nix::unistd::getegid()
        );
        nix::mount::mount(
            Some(crate::classic::FSNAME),
            mountpoint,
            Some("fuse.hbfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(data.as_str()),
        )
        .map_err(|e| UringError::io("mount(2) of fuse.hbfs", e.into()))
    }

    /// Reads FUSE_INIT and answers it asking for io_uring; fails (answering
    /// the kernel with an error) when the kernel does not offer it.
    pub(crate) fn init(&self) -> Result<Init, UringError> {
        let mut buf = vec![0u8; FUSE_MIN_READ_BUFFER];
        let n = self
            .read(&mut buf)
            .map_err(|e| UringError::io("read FUSE_INIT from /dev/fuse", e))?;
        let (h, rest) = fuse_in_header::read_from_prefix(&buf[..n])
            .map_err(|_| UringError::Protocol("short FUSE_INIT request".into()))?;
        if h.opcode != FUSE_INIT {
            return Err(UringError::Protocol(format!(
                "expected FUSE_INIT, got opcode {}",
                h.opcode
            )));
        }
        // Older kernels send a shorter fuse_init_in; the missing fields are zero.
        let mut init_in = fuse_init_in::default();
        let have = rest.len().min(std::mem::size_of::<fuse_init_in>());
        init_in.as_mut_bytes()[..have].copy_from_slice(&rest[..have]);
        let offered = u64::from(init_in.flags) | (u64::from(init_in.flags2) << 32);
        let mut reply = Vec::new();
        let refuse = |why: String| -> Result<Init, UringError> {
            // The connection is unusable without an answer; EPROTO ends it.
            let _ = self.reply(h.unique, -libc::EPROTO, &[], &mut Vec::new());
            Err(UringError::NotOffered(why))
        };
        if init_in.major != FUSE_KERNEL_VERSION || init_in.minor < FUSE_KERNEL_MINOR_VERSION {
            return refuse(format!(
                "the kernel speaks FUSE {}.{}; io_uring needs 7.{FUSE_KERNEL_MINOR_VERSION} (Linux 6.14)",
                init_in.major, init_in.minor
            ));
        }
        if offered & FUSE_INIT_EXT == 0 || offered & FUSE_OVER_IO_URING == 0 {
            return refuse(
                "the kernel did not offer FUSE_OVER_IO_URING at FUSE_INIT \
                 (is /sys/module/fuse/parameters/enable_uring Y?)"
                    .into(),
            );
        }
        // The same capabilities fuser asks for, plus the ring.
        let wanted =
            FUSE_ASYNC_READ | FUSE_ASYNC_DIO | FUSE_BIG_WRITES | FUSE_MAX_PAGES | FUSE_INIT_EXT;
        let flags = (offered & wanted) | FUSE_OVER_IO_URING;
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|p| usize::try_from(p).ok())
            .unwrap_or(4096);
        let max_pages = (MAX_WRITE as usize).div_ceil(page) as u16;
        let out = fuse_init_out {
            major: FUSE_KERNEL_VERSION,
            minor: FUSE_KERNEL_MINOR_VERSION,
            max_readahead: init_in.max_readahead,
            flags: flags as u32,
            max_background: 16,
            congestion_threshold: 12,
            max_write: MAX_WRITE,
            time_gran: 1,
            max_pages,
            flags2: (flags >> 32) as u32,
            ..fuse_init_out::default()
        };
        self.reply(h.unique, 0, out.as_bytes(), &mut reply)
            .map_err(|e| UringError::io("answer FUSE_INIT", e))?;
        Ok(Init {
            minor: init_in.minor,
            payload: FUSE_MIN_READ_BUFFER
                .max(MAX_WRITE as usize)
                .max(usize::from(max_pages) * page),
        })
    }
}

/// Serves /dev/fuse until the connection ends (unmount, or abort).
pub(crate) fn serve(dev: Arc<Device>, fs: Arc<HbFs>, payload: usize) {
    let mut buf = vec![0u8; payload + 4096];
    let mut out = vec![0u8; payload];
    let mut reply = Vec::with_capacity(payload + 64);
    loop {
        let n = match dev.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => return,
            Err(e) => {
                tracing::error!(error = %e, "hbfs: reading /dev/fuse failed; its device loop ends");
                return;
            }
        };
        let Ok((h, body)) = fuse_in_header::read_from_prefix(&buf[..n]) else {
            tracing::warn!(bytes = n, "short FUSE request on /dev/fuse");
            continue;
        };
        let split = op_header_size(h.opcode).min(body.len());
        let (op_in, payload_in) = body.split_at(split);
        let answer = proto::handle(&fs, &h, op_in, payload_in);
        let Some((error, len)) = proto::encode(&answer, &mut out) else {
            continue;
        };
        dev.served.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = dev.reply(h.unique, error, &out[..len], &mut reply) {
            if e.raw_os_error() == Some(libc::ENODEV) {
                return;
            }
            tracing::warn!(error = %e, opcode = h.opcode, "hbfs: a reply on /dev/fuse failed");
        }
    }
}
