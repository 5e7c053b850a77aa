//! # mirrord: the storage system of one site
//!
//! Modules in reading order:
//!
//! - [`config`]: the TOML configuration.
//! - [`io`]: the I/O engine, io_uring on a ring thread (pread/pwrite fallback).
//! - [`volume`]: fixed-size volumes on files or block devices, aligned I/O.
//! - [`meta`]: what survives a restart (volumes, pairs, clean-shutdown mark).
//! - [`link`]: the remote link: frames with CRC32C, HMAC handshake, sessions.
//! - [`site`]: volumes and pairs; host writes replicated synchronously; copies.
//! - [`fs`]: the site seen by hbfs; [`control`]: the control socket for hbctl.
//! - [`daemon`]: start-up, signal, clean shutdown.
//!
//! The data path of a host write to a PVOL in synchronous mode:
//!
//! ```text
//!  host write(2) ─> FUSE ─> hbfs ─> fs::SiteFiles ─> Site::host_write
//!      │ lock volume order; queue Write frame ─> link session ─> TCP ─> peer Site::handle
//!      │ PVOL write ─> io::IoEngine ─> io_uring ─> file/device      │ SVOL write (io_uring)
//!      └ wait for the ack <──────────────────────────────────────── Response
//! ```

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
