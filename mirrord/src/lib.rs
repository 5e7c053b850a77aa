//! # mirrord: the storage system of one site
//!
//! Modules in reading order:
//!
//! - [`config`]: the TOML configuration.
//! - [`io`]: the I/O engine, io_uring on a ring thread (pread/pwrite fallback).
//! - [`volume`]: fixed-size volumes on files or block devices, aligned I/O.
//! - [`bitmap`]: the dirty bitmap of a pair, persisted so a crash never under-marks.
//! - [`meta`]: what survives a restart (volumes, pairs, clean-shutdown mark).
//! - [`pair`]: the runtime of a pair: bitmap, adaptive queue, semi-sync slot, progress.
//! - [`link`]: the remote link: frames with CRC32C, HMAC handshake, sessions.
//! - [`site`]: volumes and pairs; host writes in the three modes; copies;
//!   split, resync, takeover, reverse; the answers to the peer.
//! - [`fs`]: the site seen by hbfs; [`control`]: the control socket for hbctl.
//! - [`daemon`]: start-up, signal, clean shutdown.
//!
//! The data path of a host write to a PVOL in synchronous mode:
//!
//! ```text
//!  host write(2) ─> FUSE ─> hbfs ─> fs::SiteFiles ─> Site::host_write
//!      │ lock volume order; mark dirty (bitmap); queue Write frame ─> link ─> TCP ─> peer site
//!      │ PVOL write ─> io::IoEngine ─> io_uring ─> file/device             │ SVOL write (io_uring)
//!      └ wait for the ack, clear the dirty bits <──────────────────────── Response
//! ```
//! Semi-sync returns after the PVOL write and settles the ack before the next
//! write; adaptive queues the write for a shipper task (see [`site`]).

pub mod bitmap;
pub mod config;
pub mod control;
pub mod daemon;
pub mod fs;
pub mod io;
pub mod link;
pub mod meta;
pub mod pair;
pub mod site;
pub mod volume;
