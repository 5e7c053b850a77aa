//! The site: one registry of its volumes and pairs behind one lock, persisted
//! through [`Meta`]. Every decision about a pair is the pair machine's
//! ([`crate::pair::machine`], pure, the only caller of the transition
//! table); the site reads a pair's record, asks the machine, and carries
//! out the answer (state changes through `Site::change_state`).
//!
//! The parts, in the order they build on each other: each uses only the
//! registry and the parts listed before it (`peer`, the link's entry
//! point, uses them all):
//!
//! - `error`: [`SiteError`], and what the peer is told of it; `shipped`:
//!   writes and bytes put on the link (for the metrics).
//! - this file: the registry ([`Site`], `Inner`, `change_state`, persistence).
//! - `generations`: the pair's generations kept, changed, exchanged and
//!   compared ([`crate::generation`]); the verdict recorded.
//! - `outdate`: the fence of a PVOL whose SVOL was taken over (outdated,
//!   refusing host writes until a person resolves the pair).
//! - `pace`: host I/O timed per disk, and a copy's limit per frame.
//! - `ship`: putting writes on the link, settling their acks, suspending a
//!   pair, the machine's answer to a failed write.
//! - `datapath`: host reads, writes and syncs in the machine's write policy; the SVOL's apply.
//! - `verify`: online verify, block digests, checksum resync.
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
//! State lives in `Inner` behind a std mutex never held across an await;
//! every change of a volume or pair is persisted through [`Meta`].

mod connect;
mod copy;
mod datapath;
mod error;
mod generations;
mod ops;
mod outdate;
mod pace;
pub mod peer;
mod resync;
mod ship;
mod shipped;
#[cfg(test)]
mod tests;
mod verify;
mod volumes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hbcore::link::Lane;
use hbcore::report::chain;
use hbcore::vocab::{IllegalTransition, PairState, Role};
use tokio_util::sync::CancellationToken;

use crate::bitmap::DirtyMap;
use crate::config::Config;
use crate::link::{Link, LinkError, PeerLink};
use crate::meta::{Meta, MetaError, PairMeta, VolumeMeta};
use crate::pair::machine::{self, Change, Event};
use crate::pair::PairRt;
use crate::volume::Volume;
use hbio::IoEngine;

pub use error::SiteError;
pub use shipped::Shipped;

/// A pair: what is persisted and what runs.
struct Pair {
    meta: PairMeta,
    size: u64,
    rt: Arc<PairRt>,
}

/// The pairs by name, and by the local volume each holds (every host I/O
/// finds its pair by volume: a lookup, not a scan of 1,000 pairs).
mod registry {
    use std::collections::{BTreeMap, HashMap};
    use std::ops::Deref;

    use super::Pair;

    /// The fields are private to this module: pairs come and go only through
    /// [`Pairs::insert`] and [`Pairs::remove`], which keep the index. A pair's
    /// local volume never changes while it exists (a role swap swaps `pvol`
    /// and `svol` with the role), so changes through `get_mut` keep it too.
    #[derive(Default)]
    pub(super) struct Pairs {
        by_name: BTreeMap<String, Pair>,
        by_volume: HashMap<String, String>,
    }

    impl Deref for Pairs {
        type Target = BTreeMap<String, Pair>;
        fn deref(&self) -> &Self::Target {
            &self.by_name
        }
    }

    impl Pairs {
        pub(super) fn insert(&mut self, name: String, pair: Pair) {
            self.by_name.insert(name, pair);
            self.reindex();
        }

        pub(super) fn remove(&mut self, name: &str) -> Option<Pair> {
            let removed = self.by_name.remove(name);
            self.reindex();
            removed
        }

        pub(super) fn get_mut(&mut self, name: &str) -> Option<&mut Pair> {
            self.by_name.get_mut(name)
        }

        /// The one place the index is built: from the pairs themselves (an
        /// admin operation's cost, so it cannot drift from them).
        fn reindex(&mut self) {
            self.by_volume = self
                .by_name
                .iter()
                .map(|(n, p)| (p.meta.local_volume().to_string(), n.clone()))
                .collect();
        }

        /// The pair holding `volume` at this site.
        pub(super) fn of_volume(&self, volume: &str) -> Option<(&String, &Pair)> {
            let found = self
                .by_volume
                .get(volume)
                .and_then(|n| self.by_name.get_key_value(n));
            debug_assert!(found.is_none_or(|(_, p)| p.meta.local_volume() == volume));
            found
        }
    }
}

/// Everything the one lock guards.
#[derive(Default)]
struct Inner {
    volumes: BTreeMap<String, Arc<Volume>>,
    pairs: registry::Pairs,
}

impl Inner {
    fn pair_of_volume(&self, volume: &str) -> Option<(&String, &Pair)> {
        self.pairs.of_volume(volume)
    }

    fn volume(&self, name: &str) -> Result<Arc<Volume>, SiteError> {
        self.volumes
            .get(name)
            .cloned()
            .ok_or_else(|| SiteError::NoVolume(name.into()))
    }

    fn pair(&self, name: &str) -> Result<&Pair, SiteError> {
        self.pairs
            .get(name)
            .ok_or_else(|| SiteError::NoPair(name.into()))
    }
}

/// One pair's parts, taken out of the lock for work that awaits.
struct Work {
    meta: PairMeta,
    rt: Arc<PairRt>,
    volume: Arc<Volume>,
}

/// One site's storage system.
pub struct Site {
    name: String,
    data_dir: PathBuf,
    meta_path: PathBuf,
    io: IoEngine,
    link: Arc<Link>,
    inner: Mutex<Inner>,
    /// Serializes saves so the newest snapshot is the one written last.
    save_lock: Mutex<()>,
    clean_shutdown: AtomicBool,
    stop: CancellationToken,
    /// Writes and bytes put on the link, per pair (for the metrics).
    pub shipped: Shipped,
    /// Host I/O on data volumes, per disk (what the copy rate controller steers by).
    host_io: crate::rate::HostIo,
}

/// Checks `pair`'s change `from → to` against the transition table (through the machine).
fn transition(pair: &str, from: PairState, to: PairState) -> Result<PairState, SiteError> {
    machine::check(from, to).map_err(|e| illegal(pair, e))
}

/// The machine's refusal of a change, naming the pair.
fn illegal(pair: &str, e: IllegalTransition) -> SiteError {
    SiteError::IllegalTransition {
        pair: pair.into(),
        from: e.from,
        to: e.to,
    }
}

/// `pair`'s role and state after `event`, as the machine decides.
fn changed(pair: &str, role: Role, state: PairState, event: Event) -> Result<Change, SiteError> {
    machine::change(role, state, event).map_err(|e| illegal(pair, e))
}

fn bitmap_path(data_dir: &Path, pair: &str) -> PathBuf {
    data_dir.join("bitmaps").join(format!("{pair}.bitmap"))
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
        let meta_path = config.data_dir.join("meta.json");
        let meta = Meta::load(&meta_path)?;
        let mut inner = Inner::default();
        for (name, v) in &meta.volumes {
            inner.volumes.insert(
                name.clone(),
                Arc::new(Volume::open(name, &v.path, Some(v.size))?),
            );
        }
        for (name, mut p) in meta.pairs {
            if p.generations.is_none() {
                // Recorded before generations: both sites derive the same one.
                p.generations = Some(crate::generation::legacy(&name, &p.pvol, &p.svol));
            }
            if !meta.clean_shutdown
                && p.role == Role::Pvol
                && matches!(p.state, PairState::Pair | PairState::Copy)
            {
                tracing::warn!(pair = %name, "mirrord did not shut down cleanly: pair suspended (PSUE); a resync copies the blocks that were being written");
                p.state = changed(&name, p.role, p.state, Event::LoadedAfterCrash)?.state;
            }
            let size = inner.volume(p.local_volume())?.size;
            let dirty = DirtyMap::open(&bitmap_path(&config.data_dir, &name), size)?;
            let rt = PairRt::new(dirty);
            // Adaptive data left unshipped is read back from the PVOL.
            let pending = rt.dirty().dirty_blocks() > 0;
            rt.queue().overflowed = pending;
            inner.pairs.insert(
                name,
                Pair {
                    meta: p,
                    size,
                    rt: Arc::new(rt),
                },
            );
        }
        let site = Site {
            name: config.site.clone(),
            data_dir: config.data_dir.clone(),
            meta_path,
            io,
            link,
            inner: Mutex::new(inner),
            save_lock: Mutex::new(()),
            clean_shutdown: AtomicBool::new(false),
            stop,
            shipped: Shipped::default(),
            host_io: crate::rate::HostIo::default(),
        };
        site.save()?;
        Ok(site)
    }

    /// The remote link (for the metrics).
    pub fn link(&self) -> &Arc<Link> {
        &self.link
    }

    /// This site's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent maps (no partial
        // updates span an unwind point), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self) -> Result<(), MetaError> {
        let _order = self.save_lock.lock().unwrap_or_else(|e| e.into_inner());
        let meta = {
            let inner = self.inner();
            Meta {
                clean_shutdown: self.clean_shutdown.load(Ordering::SeqCst),
                volumes: inner
                    .volumes
                    .iter()
                    .map(|(n, v)| {
                        (
                            n.clone(),
                            VolumeMeta {
                                path: v.path.clone(),
                                size: v.size,
                            },
                        )
                    })
                    .collect(),
                pairs: inner
                    .pairs
                    .iter()
                    .map(|(n, p)| (n.clone(), p.meta.clone()))
                    .collect(),
            }
        };
        meta.save(&self.meta_path)
    }

    fn save_or_log(&self) {
        if let Err(e) = self.save() {
            tracing::error!("cannot persist site metadata: {}", chain(&e));
        }
    }

    /// The runtimes of all pairs (for work outside the lock).
    fn pair_runtimes(&self) -> Vec<Arc<PairRt>> {
        self.inner()
            .pairs
            .values()
            .map(|p| Arc::clone(&p.rt))
            .collect()
    }

    /// Writes exact bitmaps and records a clean shutdown.
    pub fn shutdown(&self) -> Result<(), SiteError> {
        let rts = self.pair_runtimes();
        for rt in rts {
            rt.dirty().write_all()?;
        }
        self.clean_shutdown.store(true, Ordering::SeqCst);
        Ok(self.save()?)
    }

    fn work(&self, pair: &str) -> Result<Work, SiteError> {
        let inner = self.inner();
        let p = inner.pair(pair)?;
        Ok(Work {
            meta: p.meta.clone(),
            rt: Arc::clone(&p.rt),
            volume: inner.volume(p.meta.local_volume())?,
        })
    }

    fn pair_meta(&self, pair: &str) -> Result<PairMeta, SiteError> {
        self.meta_of(pair)
            .ok_or_else(|| SiteError::NoPair(pair.into()))
    }

    /// The link a pair's requests travel on: its peer, on its kind's lane.
    fn link_of(&self, meta: &PairMeta) -> Result<&Arc<PeerLink>, LinkError> {
        self.link.peer(&meta.peer, Lane::of(meta.kind))
    }

    fn meta_of(&self, pair: &str) -> Option<PairMeta> {
        self.inner().pairs.get(pair).map(|p| p.meta.clone())
    }

    /// Changes a pair's persisted record (not its state: see [`Site::change_state`]); true if it exists.
    fn update(&self, pair: &str, change: impl FnOnce(&mut PairMeta)) -> bool {
        let found = self
            .inner()
            .pairs
            .get_mut(pair)
            .map(|p| change(&mut p.meta))
            .is_some();
        if found {
            self.save_or_log();
        }
        found
    }

    /// Moves `pair` as the machine decides after `event` (in states the
    /// event does not apply to, or if the pair is gone, nothing happens).
    /// True if the state changed.
    fn change_state(&self, pair: &str, event: Event, why: &str) -> Result<bool, SiteError> {
        let to = {
            let mut inner = self.inner();
            match inner.pairs.get_mut(pair) {
                Some(p) => {
                    let c = changed(pair, p.meta.role, p.meta.state, event)?;
                    p.meta.state = c.state;
                    if c.drop_queue {
                        p.rt.queue().clear();
                    }
                    c.changed.then_some(c.state)
                }
                None => None,
            }
        };
        let Some(to) = to else {
            return Ok(false);
        };
        if to == PairState::Psue {
            tracing::warn!(
                pair,
                "pair suspended (PSUE): {why}; host writes continue on the PVOL and are tracked"
            );
        } else {
            tracing::info!(pair, state = %to, "{why}");
        }
        self.save_or_log();
        Ok(true)
    }

    /// Gives this site the `role` in `pair` (a reverse resync swaps the
    /// roles), and starts the pair over in COPY.
    fn swap_roles(&self, pair: &str, role: Role) -> Result<(), SiteError> {
        {
            let mut inner = self.inner();
            let p = inner
                .pairs
                .get_mut(pair)
                .ok_or_else(|| SiteError::NoPair(pair.into()))?;
            let c = changed(pair, p.meta.role, p.meta.state, Event::Reversed(role))?;
            p.meta.state = c.state;
            if c.drop_queue {
                p.rt.queue().clear();
            }
            if p.meta.role != c.role {
                p.meta.role = c.role;
                std::mem::swap(&mut p.meta.pvol, &mut p.meta.svol);
            }
        }
        self.save_or_log();
        Ok(())
    }

    /// Forgets a pair and its bitmap (its volume stays).
    fn remove_pair(&self, name: &str) {
        let removed = self.inner().pairs.remove(name);
        if let Some(p) = removed {
            p.rt.queue().clear();
            p.rt.wake.notify_one();
            let _ = std::fs::remove_file(bitmap_path(&self.data_dir, name));
            self.save_or_log();
        }
    }
}
