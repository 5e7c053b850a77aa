//! The registry: this site's volumes and pairs behind one lock (`Inner`),
//! and their record on disk through [`Meta`] (`meta.json`, written whole
//! after every change, in order). It owns the record: a pair's state
//! changes here only (`change_state`, `swap_roles`, as the pair machine
//! decides), and every lookup of a volume or pair goes through it.
//!
//! Touched by every thread and task of the site: FUSE workers and tokio
//! tasks on host I/O (lookups), the link's tasks (the peer's requests),
//! copy and shipper tasks, the control socket. The std mutex is held for a
//! lookup or a change, never across an await; `save_lock` orders the saves.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hbcore::report::chain;
use hbcore::vocab::{IllegalTransition, Kind, PairState, Role};

use super::error::{paired_error, SiteError};
use crate::bitmap::DirtyMap;
use crate::meta::{Meta, MetaError, PairMeta, VolumeMeta};
use crate::pair::machine::{self, Change, Event, PeerSplit};
use crate::pair::PairRt;
use crate::volume::Volume;

/// A pair: what is persisted and what runs.
pub(super) struct Pair {
    pub(super) meta: PairMeta,
    pub(super) size: u64,
    pub(super) rt: Arc<PairRt>,
}

/// The pairs by name, and by the local volume each holds (every host I/O
/// finds its pair by volume: a lookup, not a scan of 1,000 pairs).
mod index {
    use std::collections::{BTreeMap, HashMap};
    use std::ops::Deref;

    use super::Pair;

    /// The fields are private to this module: pairs come and go only through
    /// [`Pairs::insert`] and [`Pairs::remove`], which keep the index. A pair's
    /// local volume never changes while it exists (a role swap swaps `pvol`
    /// and `svol` with the role), so changes through `get_mut` keep it too.
    #[derive(Default)]
    pub(in crate::site) struct Pairs {
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
        pub(in crate::site) fn insert(&mut self, name: String, pair: Pair) {
            self.by_name.insert(name, pair);
            self.reindex();
        }

        pub(in crate::site) fn remove(&mut self, name: &str) -> Option<Pair> {
            let removed = self.by_name.remove(name);
            self.reindex();
            removed
        }

        pub(in crate::site) fn get_mut(&mut self, name: &str) -> Option<&mut Pair> {
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
        pub(in crate::site) fn of_volume(&self, volume: &str) -> Option<(&String, &Pair)> {
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
pub(super) struct Inner {
    pub(super) volumes: BTreeMap<String, Arc<Volume>>,
    pub(super) pairs: index::Pairs,
}

impl Inner {
    pub(super) fn pair_of_volume(&self, volume: &str) -> Option<(&String, &Pair)> {
        self.pairs.of_volume(volume)
    }

    pub(super) fn volume(&self, name: &str) -> Result<Arc<Volume>, SiteError> {
        self.volumes
            .get(name)
            .cloned()
            .ok_or_else(|| SiteError::NoVolume(name.into()))
    }

    pub(super) fn pair(&self, name: &str) -> Result<&Pair, SiteError> {
        self.pairs
            .get(name)
            .ok_or_else(|| SiteError::NoPair(name.into()))
    }
}

/// One pair's parts, taken out of the lock for work that awaits.
pub(super) struct Work {
    pub(super) meta: PairMeta,
    pub(super) rt: Arc<PairRt>,
    pub(super) volume: Arc<Volume>,
}

/// Checks `pair`'s change `from → to` against the transition table (through the machine).
pub(super) fn transition(
    pair: &str,
    from: PairState,
    to: PairState,
) -> Result<PairState, SiteError> {
    machine::check(from, to).map_err(|e| illegal(pair, e))
}

/// The machine's refusal of a change, naming the pair.
pub(super) fn illegal(pair: &str, e: IllegalTransition) -> SiteError {
    SiteError::IllegalTransition {
        pair: pair.into(),
        from: e.from,
        to: e.to,
    }
}

/// `pair`'s role and state after `event`, as the machine decides.
pub(super) fn changed(
    pair: &str,
    role: Role,
    state: PairState,
    event: Event,
) -> Result<Change, SiteError> {
    machine::change(role, state, event).map_err(|e| illegal(pair, e))
}

pub(super) fn bitmap_path(data_dir: &Path, pair: &str) -> PathBuf {
    data_dir.join("bitmaps").join(format!("{pair}.bitmap"))
}

/// The volumes and pairs of one site, and their record on disk.
pub(super) struct Registry {
    data_dir: PathBuf,
    meta_path: PathBuf,
    inner: Mutex<Inner>,
    /// Serializes saves so the newest snapshot is the one written last.
    save_lock: Mutex<()>,
    clean_shutdown: AtomicBool,
}

impl Registry {
    /// Opens the volumes, pairs and bitmaps recorded in `data_dir`.
    ///
    /// After a crash (no clean shutdown recorded) a PVOL pair found `PAIR` or
    /// `COPY` is loaded `PSUE`: its bitmap (over-marked by the crash) says
    /// what the next resync copies.
    pub(super) fn open(data_dir: &Path) -> Result<Registry, SiteError> {
        let meta_path = data_dir.join("meta.json");
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
            let dirty = DirtyMap::open(&bitmap_path(data_dir, &name), size)?;
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
        let registry = Registry {
            data_dir: data_dir.to_path_buf(),
            meta_path,
            inner: Mutex::new(inner),
            save_lock: Mutex::new(()),
            clean_shutdown: AtomicBool::new(false),
        };
        registry.save()?;
        Ok(registry)
    }

    /// mirrord's data directory (volume files, bitmaps).
    pub(super) fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub(super) fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent maps (no partial
        // updates span an unwind point), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn save(&self) -> Result<(), MetaError> {
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

    pub(super) fn save_or_log(&self) {
        if let Err(e) = self.save() {
            tracing::error!("cannot persist site metadata: {}", chain(&e));
        }
    }

    /// The runtimes of all pairs (for work outside the lock).
    pub(super) fn pair_runtimes(&self) -> Vec<Arc<PairRt>> {
        self.inner()
            .pairs
            .values()
            .map(|p| Arc::clone(&p.rt))
            .collect()
    }

    /// Writes exact bitmaps and records a clean shutdown.
    pub(super) fn shutdown(&self) -> Result<(), SiteError> {
        let rts = self.pair_runtimes();
        for rt in rts {
            rt.dirty().write_all()?;
        }
        self.clean_shutdown.store(true, Ordering::SeqCst);
        Ok(self.save()?)
    }

    pub(super) fn work(&self, pair: &str) -> Result<Work, SiteError> {
        let inner = self.inner();
        let p = inner.pair(pair)?;
        Ok(Work {
            meta: p.meta.clone(),
            rt: Arc::clone(&p.rt),
            volume: inner.volume(p.meta.local_volume())?,
        })
    }

    pub(super) fn pair_meta(&self, pair: &str) -> Result<PairMeta, SiteError> {
        self.meta_of(pair)
            .ok_or_else(|| SiteError::NoPair(pair.into()))
    }

    pub(super) fn meta_of(&self, pair: &str) -> Option<PairMeta> {
        self.inner().pairs.get(pair).map(|p| p.meta.clone())
    }

    /// Changes a pair's persisted record (not its state: see [`Registry::change_state`]); true if it exists.
    pub(super) fn update(&self, pair: &str, change: impl FnOnce(&mut PairMeta)) -> bool {
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
    pub(super) fn change_state(
        &self,
        pair: &str,
        event: Event,
        why: &str,
    ) -> Result<bool, SiteError> {
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
    pub(super) fn swap_roles(&self, pair: &str, role: Role) -> Result<(), SiteError> {
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
    pub(super) fn remove_pair(&self, name: &str) {
        let removed = self.inner().pairs.remove(name);
        if let Some(p) = removed {
            p.rt.queue().clear();
            p.rt.wake.notify_one();
            let _ = std::fs::remove_file(bitmap_path(self.data_dir(), name));
            self.save_or_log();
        }
    }

    /// The volume `name`, open.
    pub(super) fn volume(&self, name: &str) -> Result<Arc<Volume>, SiteError> {
        self.inner().volume(name)
    }

    /// The names of all pairs.
    pub(super) fn pair_names(&self) -> Vec<String> {
        self.inner().pairs.keys().cloned().collect()
    }

    /// The pair holding `volume` at this site: its name, record and runtime.
    pub(super) fn pair_holding(&self, volume: &str) -> Option<(String, PairMeta, Arc<PairRt>)> {
        self.inner()
            .pair_of_volume(volume)
            .map(|(n, p)| (n.clone(), p.meta.clone(), Arc::clone(&p.rt)))
    }

    /// The pairs whose record `keep` accepts: name, record, size.
    pub(super) fn pairs_where(
        &self,
        keep: impl Fn(&PairMeta) -> bool,
    ) -> Vec<(String, PairMeta, u64)> {
        self.inner()
            .pairs
            .iter()
            .filter(|(_, p)| keep(&p.meta))
            .map(|(n, p)| (n.clone(), p.meta.clone(), p.size))
            .collect()
    }

    /// The size of volume `pvol`, if a new pair `name` of `kind` may hold it.
    pub(super) fn room_for_pair(
        &self,
        name: &str,
        pvol: &str,
        kind: Kind,
    ) -> Result<u64, SiteError> {
        let inner = self.inner();
        if inner.pairs.contains_key(name) {
            return Err(SiteError::PairExists(name.into()));
        }
        if let Some((pair, p)) = inner.pair_of_volume(pvol) {
            return Err(paired_error(pvol, pair, p.meta.kind, kind));
        }
        Ok(inner.volume(pvol)?.size)
    }

    /// Adds a new pair `name` on volume `pvol`, unless a pair of that name
    /// or on that volume came meanwhile. True if added.
    pub(super) fn insert_new_pair(&self, name: &str, pvol: &str, pair: Pair) -> bool {
        let mut inner = self.inner();
        let raced = inner.pairs.contains_key(name) || inner.pair_of_volume(pvol).is_some();
        if !raced {
            inner.pairs.insert(name.into(), pair);
        }
        !raced
    }

    /// Whether `volume` is a data pair's (its host I/O competes with copies).
    pub(super) fn on_data_pair(&self, volume: &str) -> bool {
        self.inner()
            .pair_of_volume(volume)
            .is_some_and(|(_, p)| p.meta.kind == Kind::Data)
    }

    /// Suspends a mirrored pair (PAIR or COPY) after a replication failure.
    pub(super) fn suspend(&self, pair: &str, why: &str) {
        if let Err(e) = self.change_state(pair, Event::Suspend, why) {
            tracing::error!("{}", chain(&e));
        }
    }

    /// The peer split or took over the pair: PSUS here, changes tracked. A
    /// pair still copying has no consistent SVOL to split off, so its copy
    /// stops and it suspends (PSUE) instead, as the transition table says.
    ///
    /// With fence `data` the pair suspends (PSUE) instead: it cannot reach
    /// its SVOL, so it takes no host writes until a resync.
    pub(super) fn split_by_peer(&self, pair: &str, why: &str) {
        let Some(meta) = self.meta_of(pair) else {
            return;
        };
        match machine::split_by_peer(&meta) {
            PeerSplit::Nothing => {} // fenced already: PSUE until a person resolves it
            PeerSplit::SuspendFenced => self.suspend(
                pair,
                &format!("{why}; fence data: suspended, host writes refused until `hbctl pair resync {pair}`"),
            ),
            PeerSplit::Split => {
                let as_split = format!("{why}: split here too (PSUS), changes tracked");
                if let Err(e) = self.change_state(pair, Event::PeerSplit, &as_split) {
                    tracing::error!("{}", chain(&e));
                }
            }
            // Split already (nothing to do: a suspend leaves PSUS as it is), or copying.
            PeerSplit::Suspend => self.suspend(pair, &format!("{why}; the copy stopped")),
        }
    }
}
