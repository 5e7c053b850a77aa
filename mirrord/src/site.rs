//! The site: one registry of its volumes and pairs behind one lock, persisted
//! through [`Meta`]. Every decision about a pair is the pair machine's
//! ([`crate::pair::machine`], pure, the only caller of the transition
//! table); the site reads a pair's record, asks the machine, and carries
//! out the answer (state changes through `Registry::change_state`).
//!
//! Its parts, each owning its state and naming what it uses (in the order
//! they build on each other; none uses one listed after it):
//!
//! - `error`: [`SiteError`], and what the peer is told of it; `shipped`:
//!   writes and bytes put on the link (for the metrics).
//! - `registry`: the record (`Registry`: the volumes and pairs behind the
//!   one lock, `Inner`, persisted through [`Meta`]; `change_state`,
//!   `swap_roles`, suspend and the peer's split, the lookups). Files below
//!   that add `impl Registry` touch the record and nothing else:
//!   `generations` (kept, changed, the verdict recorded), `outdate` (the
//!   outdated mark), `volumes` (the admin operations on volumes), `peer`
//!   (the peer's attach).
//! - `pace`: `Pacing` (host I/O timed per disk, a copy's limit per frame).
//! - `wire`: `Wire` (the link and the [`Shipped`] counts: a write put on
//!   the link, semi-sync settled, the peer told of a suspend).
//! - `ship`: `Pipeline`, a copy pass over the dirty bitmap, naming the
//!   parts it uses (registry, pacing, the I/O engine, wire).
//! - this file: [`Site`], the composition `{ name, io, registry, pacing,
//!   wire, stop }`; the files below orchestrate the parts as `impl Site`:
//! - `generations`, `outdate`: generations exchanged and compared with the
//!   peer; the fence of a PVOL whose SVOL was taken over.
//! - `datapath`: host reads, writes and syncs in the machine's write
//!   policy, the machine's answer to a failed write; the SVOL's apply.
//! - `verify`: online verify, block digests, checksum resync (`Digests`:
//!   the comparison, naming the I/O engine and the wire it uses).
//! - `copy`: the copy engine (initial copy, resync) and the adaptive shipper.
//! - `volumes`, `ops`: the admin operations on volumes and pairs.
//! - `resync`: plain, reversed, or a person's choice after a split brain.
//! - `connect`: what a site does for its pairs when the link comes up.
//! - [`peer`]: the answers to the peer (the only [`Handler`](crate::link::Handler)).
//!
//! ```text
//!  host_write ─ lock volume order ─ mark dirty (seq s) ─┬ sync:      ship ─ PVOL write ─ unlock ─ wait ack ─ clear(s) (fenced: ack before the PVOL write, locked)
//!                                                      ├ semi-sync: wait previous ack ─ ship ─ PVOL write ─ (ack settles later)
//!                                                      ├ adaptive:  PVOL write ─ queue (≤ skew) or overflow ─ shipper task
//!                                                      └ not mirrored (PSUE, PSUS, SSWS): PVOL write, bits stay set
//!  (the branch is the machine's policy, `machine::host_write`: an outdated PVOL refuses every host write, `crate::fence`; fenced: PSUE refuses)
//!  copy task ─ dirty runs ─ paced (crate::rate) ─ read ahead ─ ship under the order lock (read again if a write came) ─ ack clears ─ no write in flight, clean? ─ PAIR
//! ```
//!
//! **What an SVOL holds after a crash at any instant** (kill -9 of its
//! mirrord, while writes are in flight): the writes of a pair in the order
//! they left the PVOL, up to some point, applied one at a time (a small
//! one by the link's reader, a large one by the session's answerer:
//! `crate::link`), so never a write without one that had completed at the
//! PVOL before it was issued. Tested with eight writers at once and kill
//! -9 of the standby, sync and adaptive (`tests/write_order.rs`).
//! During a copy (initial copy, resync, an adaptive overflow) the SVOL is
//! inconsistent until PAIR, as with any block copy.
//!
//! The record lives in the registry's `Inner` behind a std mutex never
//! held across an await; every change of a volume or pair is persisted
//! through [`Meta`]. `Site` holds no state of its own but its name, the
//! I/O engine and the stop token.

mod connect;
mod copy;
mod datapath;
mod error;
mod generations;
mod ops;
mod outdate;
mod pace;
pub mod peer;
mod registry;
mod resync;
mod ship;
mod shipped;
#[cfg(test)]
mod tests;
mod verify;
mod volumes;
mod wire;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::link::Link;
#[cfg(doc)]
use crate::meta::Meta;
use hbio::IoEngine;

pub use error::SiteError;
use pace::Pacing;
use registry::Registry;
use ship::Pipeline;
pub use shipped::Shipped;
use wire::Wire;

/// One site's storage system.
pub struct Site {
    name: String,
    io: IoEngine,
    /// The volumes and pairs, and their record on disk.
    registry: Registry,
    /// The link, and what was put on it.
    wire: Wire,
    stop: CancellationToken,
    /// Host I/O per disk, and each copy's limit.
    pacing: Pacing,
}

impl Site {
    /// Opens the site's volumes, pairs and bitmaps from its metadata.
    ///
    /// After a crash (no clean shutdown recorded) a PVOL pair found `PAIR` or
    /// `COPY` is loaded `PSUE`: its bitmap (over-marked by the crash) says
    /// what the next resync copies.
    pub fn open(
        config: &Config,
        io: IoEngine,
        link: Arc<Link>,
        stop: CancellationToken,
    ) -> Result<Site, SiteError> {
        Ok(Site {
            name: config.site.clone(),
            io,
            registry: Registry::open(&config.data_dir)?,
            wire: Wire::new(link),
            stop,
            pacing: Pacing::default(),
        })
    }

    /// The remote link (for the metrics).
    pub fn link(&self) -> &Arc<Link> {
        self.wire.link()
    }

    /// Writes and bytes put on the link, per pair (for the metrics).
    pub fn shipped(&self) -> &Shipped {
        self.wire.shipped()
    }

    /// This site's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Writes exact bitmaps and records a clean shutdown.
    pub fn shutdown(&self) -> Result<(), SiteError> {
        self.registry.shutdown()
    }

    /// The parts a copy pass uses, named.
    fn pipeline(&self) -> Pipeline<'_> {
        Pipeline {
            registry: &self.registry,
            pacing: &self.pacing,
            io: &self.io,
            wire: &self.wire,
        }
    }
}
