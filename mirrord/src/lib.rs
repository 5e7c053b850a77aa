//! # mirrord: the storage system of one site
//!
//! Modules in reading order:
//!
//! - [`config`]: the TOML configuration.
//! - The I/O engine (io_uring on a ring thread, pread/pwrite fallback) and
//!   its pooled aligned buffers are the `hbio` crate.
//! - [`volume`]: fixed-size volumes on files or block devices, aligned I/O.
//! - [`bitmap`]: the dirty bitmap of a pair, persisted so a crash never under-marks.
//! - [`generation`]: generation identifiers of a pair and their comparison (in sync, ahead, split brain, unrelated).
//! - [`meta`]: what survives a restart (volumes, pairs, clean-shutdown mark).
//! - [`pair`]: the runtime of a pair: bitmap, adaptive queue, semi-sync slot, progress;
//!   [`pair::machine`]: every decision about a pair, pure (the only caller of the
//!   transition table); [`pairsim`]: the deterministic simulation of two sites'
//!   machines (the `pairsim` binary).
//! - [`outdated`]: the record that a PVOL's SVOL was taken over (by whom,
//!   when, how this site learned it).
//! - [`fence`]: which host writes a PVOL refuses (an outdated one: all).
//! - [`rate`]: the copy rate controller that paces initial copies and
//!   resyncs: under a `c_max_rate` ceiling, lowered (down to `c_min_rate`)
//!   only while host I/O on data volumes of the copy's disk is slowed past
//!   its target latency.
//! - [`link`]: the remote link: sessions (`link::session`) after an HMAC
//!   handshake ([`link::handshake`]); it knows nothing of the site.
//! - [`site`]: the registry of volumes and pairs (one lock, persistence) and
//!   the parts that carry out the pair machine's decisions, each using only
//!   those before it: `site::generations`, `site::outdate`, `site::pace`,
//!   `site::ship` (writes onto the link, acks, suspend), `site::datapath`
//!   (host I/O in the machine's write policy; the SVOL's apply),
//!   `site::verify`, `site::copy` (copy engine, adaptive shipper),
//!   `site::volumes` and `site::ops` (admin operations), `site::resync`,
//!   `site::connect`, `site::peer` (the answers to the peer).
//! - [`fs`]: the site seen by hbfs; [`control`]: the control socket for hbctl;
//!   [`hosts`]: the host link (hosts elsewhere using this site's volumes and
//!   control API over the network, each with its own key).
//! - [`service`], [`metrics`]: systemd readiness and status; the OpenMetrics endpoint.
//! - [`daemon`]: start-up, signal, clean shutdown.
//!
//! A host write to a PVOL in synchronous mode, and the threads it crosses
//! (`══ name ══` marks the thread or task that runs what follows; four
//! wake-ups per write on an idle machine, marked ⇢):
//!
//! ```text
//!  PVOL site
//!  host write(2) ─> kernel FUSE ⇢ hbfs ─> fs::SiteFiles::write
//!  ══ FUSE worker thread ══ block_on(Site::host_write), volume I/O inline (hbio::inline_io)
//!   │ lock the volume's order; mark the blocks dirty (seq s)      (bitmap)
//!   ├─ ship: PeerLink::send ─> link::wire: the frame written on the socket
//!   │     by this thread (header + the data, one writev) ─> TCP ──────────────────┐
//!   ├─ PVOL write: pwrite on this thread                                          │
//!   │ unlock the volume's order (other writes of it go on the wire meanwhile)    │
//!   └─ wait for the ack <─oneshot⇢ ══ link reader task ══ <─ Response ─ TCP <──┐  │
//!      clear the bits of seq s (if no newer write); return to FUSE             │  │
//!                                                                              │  ▼
//!  SVOL site                                                                   │ TCP
//!  ══ link reader task ══ ⇠ Request::Write ─> Handler::handle                  │  │
//!     ─> site/peer ─> apply (site/datapath): pwrite on this task (≤ 64 KiB;    │  │
//!        larger writes go to ══ io_uring ring ══ and back)                     │  │
//!     ─> Response written on the socket by this task ──────────────────────────┘ <┘
//! ```
//!
//! Semi-sync returns after the PVOL write and settles the ack on a tokio task
//! before the next write; adaptive queues the write for a shipper task
//! (`site::copy`). A request other than a write (or a write behind one, or
//! any write while this site awaits answers of its own on the session, so
//! its acks never wait behind the peer's disk write) is answered at the peer
//! by the session's answerer task, in arrival order. Copies keep to the
//! pair's rate controller ([`rate`]); volume I/O buffers come from a pool.
//! A write's data is copied once in user space at each site: at the PVOL
//! into a pooled buffer that is both the frame's data and the PVOL's write,
//! at the SVOL from the frame (decoded in place) into the buffer it writes.

pub mod bitmap;
pub mod config;
pub mod control;
pub mod daemon;
pub mod fence;
pub mod fs;
pub mod generation;
pub mod hosts;
pub mod link;
pub mod meta;
pub mod metrics;
pub mod outdated;
pub mod pair;
pub mod pairsim;
pub mod rate;
pub mod service;
pub mod site;
pub mod volume;
