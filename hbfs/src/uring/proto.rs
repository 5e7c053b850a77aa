//! FUSE requests decoded, handed to [`HbFs`], and its answers encoded: the
//! same code for the ring's buffers and for /dev/fuse (which still carries
//! FORGET, INTERRUPT, and requests from before the ring was ready).
//!
//! Operations hbfs does not implement get the answers fuser gives by
//! default (ENOSYS, or an empty success for OPENDIR/RELEASE/RELEASEDIR), so
//! both transports behave alike.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::time::UNIX_EPOCH;

use fuser::Errno;
use zerocopy::{FromBytes, IntoBytes};

use super::abi::*;
use crate::ops::{Attr, DirEntry, HbFs, Kind, Statfs, TTL};

/// Direct I/O, and several writes of one file at once (the mirror keeps
/// them in order: the volume's order lock).
const OPEN_FLAGS: u32 = FOPEN_DIRECT_IO | FOPEN_PARALLEL_DIRECT_WRITES;

/// One request's answer, before encoding.
#[derive(Debug)]
pub(crate) enum Reply {
    /// FORGET, BATCH_FORGET, INTERRUPT: the kernel expects no reply.
    None,
    Error(Errno),
    Empty,
    Entry(Attr),
    Attr(Attr),
    Open {
        flags: u32,
    },
    Data(Vec<u8>),
    Written(u32),
    Statfs(Statfs),
    Dir {
        entries: Vec<DirEntry>,
        max: usize,
    },
}

/// A malformed request (the kernel would never send one; answered with EIO).
fn malformed(opcode: u32) -> Reply {
    tracing::warn!(opcode, "malformed FUSE request");
    Reply::Error(Errno::EIO)
}

/// The name argument of LOOKUP, CREATE and UNLINK: NUL-terminated.
fn name(bytes: &[u8]) -> &OsStr {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    OsStr::from_bytes(&bytes[..end])
}

fn result<T>(r: Result<T, Errno>, ok: impl FnOnce(T) -> Reply) -> Reply {
    match r {
        Ok(v) => ok(v),
        Err(e) => Reply::Error(e),
    }
}

/// Serves one request: `op_in` is its per-op header, `payload` the rest.
pub(crate) fn handle(fs: &HbFs, h: &fuse_in_header, op_in: &[u8], payload: &[u8]) -> Reply {
    let ino = h.nodeid;
    match h.opcode {
        FUSE_LOOKUP => result(fs.lookup(ino, name(payload)), Reply::Entry),
        FUSE_GETATTR => result(fs.getattr(ino), Reply::Attr),
        FUSE_SETATTR => {
            let Ok((a, _)) = fuse_setattr_in::read_from_prefix(op_in) else {
                return malformed(h.opcode);
            };
            let size = (a.valid & FATTR_SIZE != 0).then_some(a.size);
            result(fs.setattr(ino, size), Reply::Attr)
        }
        FUSE_OPEN => {
            let Ok((o, _)) = fuse_open_in::read_from_prefix(op_in) else {
                return malformed(h.opcode);
            };
            let for_writing = o.flags & libc::O_ACCMODE as u32 != libc::O_RDONLY as u32;
            result(fs.open(ino, for_writing), |()| Reply::Open {
                flags: OPEN_FLAGS,
            })
        }
        FUSE_READ => {
            let Ok((r, _)) = fuse_read_in::read_from_prefix(op_in) else {
                return malformed(h.opcode);
            };
            result(fs.read(ino, r.offset, r.size), Reply::Data)
        }
        FUSE_WRITE => {
            let Ok((w, _)) = fuse_write_in::read_from_prefix(op_in) else {
                return malformed(h.opcode);
            };
            let Some(data) = payload.get(..w.size as usize) else {
                return malformed(h.opcode);
            };
            result(fs.write(ino, w.offset, data), Reply::Written)
        }
        FUSE_STATFS => Reply::Statfs(fs.statfs()),
        FUSE_FSYNC => result(fs.fsync(ino), |()| Reply::Empty),
        // Writes are not buffered here (direct I/O): nothing to flush on close.
        FUSE_FLUSH | FUSE_RELEASE | FUSE_RELEASEDIR | FUSE_DESTROY => Reply::Empty,
        FUSE_OPENDIR => Reply::Open { flags: 0 },
        FUSE_READDIR => {
            let Ok((r, _)) = fuse_read_in::read_from_prefix(op_in) else {
                return malformed(h.opcode);
            };
            result(fs.readdir(ino, r.offset), |entries| Reply::Dir {
                entries,
                max: r.size as usize,
            })
        }
        FUSE_CREATE => Reply::Error(fs.create(name(payload))),
        FUSE_UNLINK => Reply::Error(fs.unlink(name(payload))),
        FUSE_FORGET | FUSE_BATCH_FORGET | FUSE_INTERRUPT => Reply::None,
        _ => Reply::Error(Errno::ENOSYS),
    }
}

fn fuse_attr(a: &Attr) -> fuse_attr {
    let since = a.time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let kind = match a.kind {
        Kind::Dir => libc::S_IFDIR,
        Kind::File => libc::S_IFREG,
    };
    fuse_attr {
        ino: a.ino,
        size: a.size,
        blocks: a.blocks,
        atime: since.as_secs(),
        mtime: since.as_secs(),
        ctime: since.as_secs(),
        atimensec: since.subsec_nanos(),
        mtimensec: since.subsec_nanos(),
        ctimensec: since.subsec_nanos(),
        mode: kind | u32::from(a.perm),
        nlink: a.nlink,
        blksize: a.blksize,
        ..fuse_attr::default()
    }
}

/// Copies `bytes` to the front of `out`; false when they do not fit.
fn put(out: &mut [u8], bytes: &[u8]) -> Option<usize> {
    out.get_mut(..bytes.len())?.copy_from_slice(bytes);
    Some(bytes.len())
}

fn dirents(entries: &[DirEntry], max: usize, out: &mut [u8]) -> usize {
    let mut at = 0;
    for e in entries {
        let len = std::mem::size_of::<fuse_dirent>() + e.name.len();
        let padded = len.next_multiple_of(8);
        if at + padded > max.min(out.len()) {
            break;
        }
        let d = fuse_dirent {
            ino: e.ino,
            off: e.next,
            namelen: e.name.len() as u32,
            typ: match e.kind {
                Kind::Dir => libc::DT_DIR,
                Kind::File => libc::DT_REG,
            }
            .into(),
        };
        let slot = &mut out[at..at + padded];
        slot[..24].copy_from_slice(d.as_bytes());
        slot[24..len].copy_from_slice(e.name.as_bytes());
        slot[len..].fill(0);
        at += padded;
    }
    at
}

/// Encodes `reply`'s arguments into `out`: `Some((error, bytes used))`, or
/// `None` when no reply is due. An answer too large for `out` becomes EIO.
pub(crate) fn encode(reply: &Reply, out: &mut [u8]) -> Option<(i32, usize)> {
    let ttl = TTL.as_secs();
    let ttl_nsec = TTL.subsec_nanos();
    let used = match reply {
        Reply::None => return None,
        Reply::Error(e) => return Some((-e.code(), 0)),
        Reply::Empty => Some(0),
        Reply::Entry(a) => put(
            out,
            fuse_entry_out {
                nodeid: a.ino,
                generation: 0,
                entry_valid: ttl,
                attr_valid: ttl,
                entry_valid_nsec: ttl_nsec,
                attr_valid_nsec: ttl_nsec,
                attr: fuse_attr(a),
            }
            .as_bytes(),
        ),
        Reply::Attr(a) => put(
            out,
            fuse_attr_out {
                attr_valid: ttl,
                attr_valid_nsec: ttl_nsec,
                dummy: 0,
                attr: fuse_attr(a),
            }
            .as_bytes(),
        ),
        Reply::Open { flags } => put(
            out,
            fuse_open_out {
                fh: 0,
                open_flags: *flags,
                backing_id: 0,
            }
            .as_bytes(),
        ),
        Reply::Data(data) => put(out, data),
        Reply::Written(n) => put(
            out,
            fuse_write_out {
                size: *n,
                padding: 0,
            }
            .as_bytes(),
        ),
        Reply::Statfs(s) => put(
            out,
            fuse_statfs_out {
                st: fuse_kstatfs {
                    blocks: s.blocks,
                    files: s.files,
                    bsize: s.bsize,
                    namelen: s.namelen,
                    frsize: s.bsize,
                    ..fuse_kstatfs::default()
                },
            }
            .as_bytes(),
        ),
        Reply::Dir { entries, max } => Some(dirents(entries, *max, out)),
    };
    Some(match used {
        Some(n) => (0, n),
        None => {
            tracing::error!("a FUSE reply did not fit its buffer");
            (-libc::EIO, 0)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(names: &[&str]) -> Vec<DirEntry> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| DirEntry {
                ino: i as u64 + 1,
                next: i as u64 + 1,
                kind: Kind::File,
                name: (*n).to_string(),
            })
            .collect()
    }

    #[test]
    fn dirents_are_padded_and_stop_when_full() {
        let mut out = vec![0xffu8; 256];
        let n = dirents(&entries(&["a", "bcdefghij"]), 256, &mut out);
        assert_eq!(n, 32 + 40);
        let (d, _) = fuse_dirent::read_from_prefix(&out[32..]).expect("dirent");
        assert_eq!((d.ino, d.off, d.namelen), (2, 2, 9));
        assert_eq!(&out[56..65], b"bcdefghij");
        assert!(out[65..72].iter().all(|b| *b == 0));
        assert_eq!(dirents(&entries(&["a", "b"]), 40, &mut out), 32);
    }

    #[test]
    fn errors_are_negative_and_no_reply_is_none() {
        let mut out = [0u8; 8];
        assert_eq!(
            encode(&Reply::Error(Errno::EROFS), &mut out),
            Some((-libc::EROFS, 0))
        );
        assert_eq!(encode(&Reply::None, &mut out), None);
        assert_eq!(encode(&Reply::Written(7), &mut out), Some((0, 8)));
        assert_eq!(
            encode(&Reply::Data(vec![1; 9]), &mut out),
            Some((-libc::EIO, 0))
        );
    }

    #[test]
    fn names_end_at_the_nul() {
        assert_eq!(name(b"hb0\0"), OsStr::new("hb0"));
        assert_eq!(name(b"hb0"), OsStr::new("hb0"));
    }
}
