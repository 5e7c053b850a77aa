//! The site: its volumes and pairs, the host I/O path in the three modes,
//! copies, the pair operations, and the answers to the peer's requests.
//!
//! ```text
//!  host_write ─ lock volume order ─ mark dirty (seq s) ─┬ sync:      ship ─ PVOL write ─ wait ack ─ clear(s)
//!                                                      ├ semi-sync: wait previous ack ─ ship ─ PVOL write ─ (ack settles later)
//!                                                      ├ adaptive:  PVOL write ─ queue (≤ skew) or overflow ─ shipper task
//!                                                      └ not mirrored (PSUE, PSUS, SSWS): PVOL write, bits stay set
//!  copy task ─ dirty runs ─ read back under the order lock ─ ship ─ ack clears ─ clean? ─ PAIR
//! ```
//!
//! State lives in [`Inner`] behind a std mutex never held across an await;
//! every change of a volume or pair is persisted through [`Meta`].

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hbcore::control::{PairInfo, VolumeInfo};
use hbcore::link::{Attach, PeerError, PeerReply, PeerRequest};
use hbcore::size::Bytes;
use hbcore::vocab::{Backing, Fence, Kind, Mode, PairSettings, PairState, Role, DEFAULT_SKEW};
use tokio_util::sync::CancellationToken;

use crate::bitmap::{BitmapError, DirtyMap, BLOCK};
use crate::config::{check_name, Config};
use crate::io::IoEngine;
use crate::link::{Handler, Link, LinkError, Pending};
use crate::meta::{Meta, MetaError, PairMeta, VolumeMeta};
use crate::pair::{host_writable, mirroring, PairRt, Queued};
use crate::volume::{Volume, VolumeError};

/// Blocks per Write frame of a copy (1 MiB).
const COPY_RUN_BLOCKS: u64 = 256;
/// Write frames of a copy or of the adaptive shipper in flight at once.
const SHIP_WINDOW: usize = 8;
/// Extents of the bitmap idle this long are rewritten exactly on disk.
const BITMAP_IDLE: Duration = Duration::from_secs(5);

/// A refused or failed site operation; the text names the thing and the way out.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// A name that cannot be used.
    #[error("{0}")]
    BadName(String),
    /// A request that does not fit the pair's state or role.
    #[error("{0}")]
    Refused(String),
    /// No such volume.
    #[error("no volume '{0}' at this site; `hbctl volume list` shows the volumes")]
    NoVolume(String),
    /// The volume exists.
    #[error("volume '{0}' exists already; choose another name")]
    VolumeExists(String),
    /// Another volume uses that backing store.
    #[error("{path} already backs volume '{volume}'; a backing store holds one volume")]
    PathInUse {
        /// Path.
        path: PathBuf,
        /// Its volume.
        volume: String,
    },
    /// A file volume needs a size.
    #[error("volume '{0}': give --size to create a file (or --path of an existing block device)")]
    SizeNeeded(String),
    /// The size asked for does not match the block device.
    #[error("volume '{name}': {path} is a block device of {actual} bytes, not {asked}; leave out --size to take the device's size")]
    DeviceSize {
        /// Volume.
        name: String,
        /// Device.
        path: PathBuf,
        /// Size asked.
        asked: u64,
        /// Device size.
        actual: u64,
    },
    /// An existing regular file would be clobbered.
    #[error("volume '{name}': {path} exists; mirrord creates volume files itself (choose a new --path) or uses block devices as they are")]
    FileExists {
        /// Volume.
        name: String,
        /// Path.
        path: PathBuf,
    },
    /// The volume belongs to a pair.
    #[error("volume '{volume}' belongs to {kind} pair '{pair}'; {hint}")]
    Paired {
        /// Volume.
        volume: String,
        /// Pair.
        pair: String,
        /// Kind of that pair.
        kind: Kind,
        /// The way out.
        hint: String,
    },
    /// No such pair.
    #[error("no pair '{0}' at this site; `hbctl pair status` shows the pairs")]
    NoPair(String),
    /// The pair exists.
    #[error("pair '{0}' exists already; choose another name")]
    PairExists(String),
    /// The volume is read-only to hosts.
    #[error("volume '{volume}' is the SVOL of pair '{pair}' and read-only at this site")]
    ReadOnly {
        /// Volume.
        volume: String,
        /// Pair.
        pair: String,
    },
    /// A fenced write that could not reach the SVOL.
    #[error("pair '{pair}' is fenced (fence=data) and the SVOL cannot be reached ({why}); the write was refused and the PVOL left untouched")]
    Fenced {
        /// Pair.
        pair: String,
        /// Why.
        why: String,
    },
    /// A heartbeat pair installed for heartbeats.
    #[error("pair '{0}' carries heartbeats (installed for heartbeats): splitting or deleting it would freeze the heartbeat and look like a dead site; de-install it first (`hbctl pair uninstall {0}`; hbd does this with `hbctl hb mirror uninstall`), or add --force")]
    Protected(String),
    /// The peer could not be told.
    #[error("{source}; the pair is kept: retry when the link is up, or add --force to dissolve only this site's half")]
    PeerUnreachable {
        /// Why.
        source: LinkError,
    },
    /// A volume operation failed.
    #[error(transparent)]
    Volume(#[from] VolumeError),
    /// The dirty bitmap could not be persisted.
    #[error(transparent)]
    Bitmap(#[from] BitmapError),
    /// The peer refused or could not be reached.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// Metadata could not be saved.
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// A pair: what is persisted and what runs.
struct Pair {
    meta: PairMeta,
    size: u64,
    rt: Arc<PairRt>,
}

#[derive(Default)]
struct Inner {
    volumes: BTreeMap<String, Arc<Volume>>,
    pairs: BTreeMap<String, Pair>,
}

impl Inner {
    fn pair_of_volume(&self, volume: &str) -> Option<(&String, &Pair)> {
        self.pairs
            .iter()
            .find(|(_, p)| p.meta.local_volume() == volume)
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

/// A run of blocks on the wire, with the sequences it carries.
struct Shipped {
    pending: Pending,
    first: u64,
    bytes: u64,
    seqs: Vec<u64>,
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
}

fn refused(text: String) -> SiteError {
    SiteError::Refused(text)
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
            if !meta.clean_shutdown
                && p.role == Role::Pvol
                && matches!(p.state, PairState::Pair | PairState::Copy)
            {
                tracing::warn!(pair = %name, "mirrord did not shut down cleanly: pair suspended (PSUE); a resync copies the blocks that were being written");
                p.state = PairState::Psue;
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
        };
        site.save()?;
        Ok(site)
    }

    /// Starts the background work: bitmap flushing and the adaptive shippers.
    pub fn start(self: &Arc<Self>) {
        let names: Vec<String> = self.inner().pairs.keys().cloned().collect();
        for name in names {
            self.ensure_shipper(&name);
        }
        let site = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = site.stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let rts = site.pair_runtimes();
                for rt in rts {
                    if let Err(e) = rt.dirty().flush_idle(BITMAP_IDLE) {
                        tracing::error!("{e}");
                    }
                }
            }
        });
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
            tracing::error!("cannot persist site metadata: {e}");
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

    fn meta_of(&self, pair: &str) -> Option<PairMeta> {
        self.inner().pairs.get(pair).map(|p| p.meta.clone())
    }

    /// Changes a pair's persisted record; true if it exists.
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

    fn set_state(&self, pair: &str, from: &[PairState], to: PairState, why: &str) -> bool {
        let changed = {
            let mut inner = self.inner();
            match inner.pairs.get_mut(pair) {
                Some(p) if from.contains(&p.meta.state) && p.meta.state != to => {
                    p.meta.state = to;
                    true
                }
                _ => false,
            }
        };
        if changed {
            if to == PairState::Psue {
                tracing::warn!(pair, "pair suspended (PSUE): {why}; host writes continue on the PVOL and are tracked");
            } else {
                tracing::info!(pair, state = %to, "{why}");
            }
            self.save_or_log();
        }
        changed
    }

    /// Suspends a mirrored pair after a replication failure.
    fn suspend(&self, pair: &str, why: &str) {
        self.set_state(
            pair,
            &[PairState::Pair, PairState::Copy],
            PairState::Psue,
            why,
        );
    }

    // ----- volumes -------------------------------------------------------

    /// Creates a volume (a new file, or an existing block device).
    pub fn volume_create(
        &self,
        name: &str,
        size: Option<u64>,
        path: Option<PathBuf>,
    ) -> Result<String, SiteError> {
        check_name("volume", name).map_err(SiteError::BadName)?;
        if self.inner().volumes.contains_key(name) {
            return Err(SiteError::VolumeExists(name.into()));
        }
        let path =
            path.unwrap_or_else(|| self.data_dir.join("volumes").join(format!("{name}.vol")));
        if let Some((other, _)) = self.inner().volumes.iter().find(|(_, v)| v.path == path) {
            return Err(SiteError::PathInUse {
                path,
                volume: other.clone(),
            });
        }
        let volume = match std::fs::metadata(&path) {
            Ok(m) if std::os::unix::fs::FileTypeExt::is_block_device(&m.file_type()) => {
                let v = Volume::open(name, &path, None)?;
                if let Some(asked) = size.filter(|s| *s != v.size) {
                    return Err(SiteError::DeviceSize {
                        name: name.into(),
                        path,
                        asked,
                        actual: v.size,
                    });
                }
                v
            }
            Ok(_) => {
                return Err(SiteError::FileExists {
                    name: name.into(),
                    path,
                })
            }
            Err(_) => Volume::create_file(
                name,
                &path,
                size.ok_or_else(|| SiteError::SizeNeeded(name.into()))?,
            )?,
        };
        let message = format!(
            "volume '{name}' created: {} on {} ({})",
            Bytes(volume.size),
            path.display(),
            backing_name(volume.backing)
        );
        {
            let mut inner = self.inner();
            if inner.volumes.contains_key(name) {
                return Err(SiteError::VolumeExists(name.into()));
            }
            inner.volumes.insert(name.into(), Arc::new(volume));
        }
        self.save()?;
        tracing::info!("{message}");
        Ok(message)
    }

    /// The volumes, as `volume list` shows them.
    pub fn volume_list(&self) -> Vec<VolumeInfo> {
        let inner = self.inner();
        inner
            .volumes
            .values()
            .map(|v| {
                let pair = inner.pair_of_volume(&v.name);
                VolumeInfo {
                    name: v.name.clone(),
                    size: v.size,
                    path: v.path.clone(),
                    backing: v.backing,
                    pair: pair.map(|(n, _)| n.clone()),
                    role: pair.map(|(_, p)| p.meta.role),
                    writable: pair.is_none_or(|(_, p)| host_writable(&p.meta)),
                }
            })
            .collect()
    }

    /// One volume as hbfs shows it: name, size, whether hosts may write it.
    pub fn volume_file(&self, name: &str) -> Option<hbfs::VolumeFile> {
        let inner = self.inner();
        let v = inner.volumes.get(name)?;
        let writable = inner
            .pair_of_volume(name)
            .is_none_or(|(_, p)| host_writable(&p.meta));
        Some(hbfs::VolumeFile {
            name: v.name.clone(),
            size: v.size,
            writable,
        })
    }

    /// Forgets a volume that is not paired; the backing store is kept.
    pub fn volume_delete(&self, name: &str) -> Result<String, SiteError> {
        let path = {
            let mut inner = self.inner();
            if let Some((pair, p)) = inner.pair_of_volume(name) {
                return Err(SiteError::Paired {
                    volume: name.into(),
                    pair: pair.clone(),
                    kind: p.meta.kind,
                    hint: format!("dissolve it first with `hbctl pair delete {pair}`"),
                });
            }
            inner
                .volumes
                .remove(name)
                .ok_or_else(|| SiteError::NoVolume(name.into()))?
                .path
                .clone()
        };
        self.save()?;
        let message = format!(
            "volume '{name}' deleted; its data stays in {}",
            path.display()
        );
        tracing::info!("{message}");
        Ok(message)
    }

    // ----- pairs ---------------------------------------------------------

    /// Creates a pair with local PVOL `pvol` and SVOL `svol` at `peer`, and starts the initial copy.
    #[allow(clippy::too_many_arguments)]
    pub async fn pair_create(
        self: &Arc<Self>,
        name: &str,
        pvol: &str,
        peer: &str,
        svol: Option<&str>,
        kind: Kind,
        mode: Mode,
        fence: Option<Fence>,
        skew: Option<u64>,
        auto_resync: Option<bool>,
    ) -> Result<String, SiteError> {
        check_name("pair", name).map_err(SiteError::BadName)?;
        let settings = PairSettings {
            mode,
            fence: fence.unwrap_or(Fence::Never),
            skew: skew.unwrap_or(DEFAULT_SKEW),
            auto_resync: auto_resync.unwrap_or(kind == Kind::Heartbeat),
            installed: kind == Kind::Heartbeat,
        };
        check_settings(&settings)?;
        let svol = svol.unwrap_or(pvol).to_string();
        let size = {
            let inner = self.inner();
            if inner.pairs.contains_key(name) {
                return Err(SiteError::PairExists(name.into()));
            }
            if let Some((pair, p)) = inner.pair_of_volume(pvol) {
                return Err(paired_error(pvol, pair, p.meta.kind, kind));
            }
            inner.volume(pvol)?.size
        };
        let link = self.link.peer(peer)?;
        let meta = PairMeta {
            role: Role::Pvol,
            state: PairState::Copy,
            kind,
            settings,
            peer: peer.into(),
            pvol: pvol.into(),
            svol: svol.clone(),
        };
        link.call(
            PeerRequest::Attach(attach_request(name, &meta, size)),
            self.link.timeout(),
        )
        .await?;
        let path = bitmap_path(&self.data_dir, name);
        let _ = std::fs::remove_file(&path);
        let mut dirty = DirtyMap::open(&path, size)?;
        dirty.mark_all()?;
        let raced = {
            let mut inner = self.inner();
            // Re-check: another request may have raced us while we waited for the peer.
            let raced = inner.pairs.contains_key(name) || inner.pair_of_volume(pvol).is_some();
            if !raced {
                inner.pairs.insert(
                    name.into(),
                    Pair {
                        meta,
                        size,
                        rt: Arc::new(PairRt::new(dirty)),
                    },
                );
            }
            raced
        };
        if raced {
            // The winner of the race attached the same pair name at the peer: leave it.
            return Err(SiteError::PairExists(name.into()));
        }
        self.save()?;
        tracing::info!(pair = name, pvol, peer, svol = %svol, %mode, %kind, "pair created; initial copy starts");
        self.start_copy(name);
        self.ensure_shipper(name);
        Ok(format!(
            "pair '{name}' created: {pvol} -> {peer}:{svol}, {mode}, {kind}; initial copy of {} under way (COPY); `hbctl pair status {name} --watch` shows progress",
            Bytes(size)
        ))
    }

    /// Changes settings of a live pair, here and (if reachable) at the peer.
    pub async fn pair_set(
        self: &Arc<Self>,
        name: &str,
        mode: Option<Mode>,
        fence: Option<Fence>,
        skew: Option<u64>,
        auto_resync: Option<bool>,
    ) -> Result<String, SiteError> {
        let before = self.work(name)?;
        let mut settings = before.meta.settings;
        settings.mode = mode.unwrap_or(settings.mode);
        settings.fence = fence.unwrap_or(settings.fence);
        settings.skew = skew.unwrap_or(settings.skew);
        settings.auto_resync = auto_resync.unwrap_or(settings.auto_resync);
        check_settings(&settings)?;
        let note = self.apply_settings(name, settings).await;
        if before.meta.settings.mode != settings.mode {
            before.rt.reset_in_flight_max();
        }
        Ok(format!(
            "pair '{name}': mode {}, fence {}, skew {}, auto-resync {}{note}",
            settings.mode,
            settings.fence,
            Bytes(settings.skew),
            on_off(settings.auto_resync)
        ))
    }

    /// Applies new settings here and tells the peer; returns a note for the answer.
    async fn apply_settings(self: &Arc<Self>, name: &str, settings: PairSettings) -> String {
        let Some(before) = self.meta_of(name) else {
            return String::new();
        };
        self.adopt_settings(name, settings);
        tracing::info!(pair = name, mode = %settings.mode, fence = %settings.fence, skew = settings.skew, auto_resync = settings.auto_resync, installed = settings.installed, "settings changed");
        let told = match self.link.peer(&before.peer) {
            Ok(link) => link
                .call(
                    PeerRequest::Update {
                        pair: name.into(),
                        state: None,
                        settings: Some(settings),
                    },
                    self.link.timeout(),
                )
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        match told {
            Ok(()) => String::new(),
            Err(e) => format!(
                " (here only: {e}; the peer takes the PVOL site's settings when the link returns)"
            ),
        }
    }

    /// Takes new settings locally; a mode change away from adaptive ships what the queue held.
    fn adopt_settings(self: &Arc<Self>, name: &str, settings: PairSettings) {
        let Some(before) = self.meta_of(name) else {
            return;
        };
        self.update(name, |m| m.settings = settings);
        if before.settings.mode == Mode::Adaptive
            && settings.mode != Mode::Adaptive
            && before.role == Role::Pvol
        {
            // Writes queued or tracked by adaptive mode are shipped by a copy pass.
            if let Ok(w) = self.work(name) {
                w.rt.queue().clear();
                if w.rt.dirty().dirty_blocks() > 0
                    && self.set_state(
                        name,
                        &[PairState::Pair],
                        PairState::Copy,
                        "mode changed: shipping what adaptive mode held (COPY)",
                    )
                {
                    self.start_copy(name);
                }
            }
        }
        if settings.mode == Mode::Adaptive {
            self.ensure_shipper(name);
        }
    }

    /// Pair status, of one pair or all.
    pub fn pair_status(&self, name: Option<&str>) -> Result<Vec<PairInfo>, SiteError> {
        let inner = self.inner();
        if let Some(n) = name {
            inner.pair(n)?;
        }
        Ok(inner
            .pairs
            .iter()
            .filter(|(n, _)| name.is_none_or(|want| want == n.as_str()))
            .map(|(n, p)| {
                let (pending, dirty_for) = {
                    let d = p.rt.dirty();
                    (d.dirty_blocks() * BLOCK, d.dirty_for())
                };
                let (queued, oldest_queued) = {
                    let q = p.rt.queue();
                    (q.bytes, q.entries.front().map(|e| e.at.elapsed()))
                };
                let oldest = oldest_queued.or(if pending > 0 { dirty_for } else { None });
                PairInfo {
                    name: n.clone(),
                    role: p.meta.role,
                    state: p.meta.state,
                    mode: p.meta.settings.mode,
                    kind: p.meta.kind,
                    peer: p.meta.peer.clone(),
                    pvol: p.meta.pvol.clone(),
                    svol: p.meta.svol.clone(),
                    size: p.size,
                    fence: p.meta.settings.fence,
                    skew: p.meta.settings.skew,
                    auto_resync: p.meta.settings.auto_resync,
                    installed: p.meta.settings.installed,
                    link_up: self.link.peer(&p.meta.peer).is_ok_and(|l| l.is_up()),
                    pending_bytes: pending,
                    queued_bytes: queued,
                    oldest_pending_ms: oldest.map(|d| d.as_millis() as u64),
                    max_in_flight: p.rt.max_in_flight(),
                    copy: p.rt.copy_progress(),
                }
            })
            .collect())
    }

    /// Marks a heartbeat pair installed for heartbeats (protected) or not.
    pub async fn pair_install(
        self: &Arc<Self>,
        name: &str,
        installed: bool,
    ) -> Result<String, SiteError> {
        let meta = self.pair_meta(name)?;
        if meta.kind != Kind::Heartbeat {
            return Err(refused(format!(
                "pair '{name}' is a data pair; only heartbeat pairs are installed for heartbeats"
            )));
        }
        let settings = PairSettings {
            installed,
            ..meta.settings
        };
        let note = self.apply_settings(name, settings).await;
        Ok(if installed {
            format!("pair '{name}' installed for heartbeats: split and delete are refused until it is de-installed{note}")
        } else {
            format!("pair '{name}' de-installed: it may now be split or deleted{note}")
        })
    }

    fn check_protection(
        &self,
        meta: &PairMeta,
        name: &str,
        force: bool,
        what: &str,
    ) -> Result<(), SiteError> {
        if meta.kind == Kind::Heartbeat && meta.settings.installed {
            if !force {
                return Err(SiteError::Protected(name.into()));
            }
            tracing::warn!(pair = name, "--force: {what} of a pair installed for heartbeats; the heartbeat over this mirror stops");
        }
        Ok(())
    }

    /// Splits a pair (PSUS): pending data ships first, then the SVOL becomes writable at its site.
    pub async fn pair_split(
        self: &Arc<Self>,
        name: &str,
        force: bool,
    ) -> Result<String, SiteError> {
        let meta = self.pair_meta(name)?;
        self.check_protection(&meta, name, force, "split")?;
        match meta.state {
            PairState::Psus => return Err(refused(format!("pair '{name}' is split already (PSUS); `hbctl pair resync {name}` joins it again"))),
            PairState::Ssws => return Err(refused(format!("pair '{name}' was taken over (SSWS); fail back with `hbctl pair resync {name} --reverse`, or `hbctl pair resync {name}` at the PVOL's site to discard the SVOL's changes"))),
            _ => {}
        }
        let link = self.link.peer(&meta.peer)?;
        let note = match meta.role {
            Role::Pvol => {
                let consistent = self.split_here(name).await?;
                match link.call(PeerRequest::Update { pair: name.into(), state: Some(PairState::Psus), settings: None }, self.link.timeout()).await {
                    Ok(_) => consistent,
                    Err(e) => format!("{consistent}; site '{}' not told ({e}): its SVOL stays read-only until the link returns and the pair is split again", meta.peer),
                }
            }
            Role::Svol => match link
                .call(
                    PeerRequest::Split { pair: name.into() },
                    self.link.timeout() * 4,
                )
                .await
            {
                Ok(_) => {
                    self.set_state(
                        name,
                        &[meta.state],
                        PairState::Psus,
                        "split (PSUS); the SVOL is writable here, changes tracked",
                    );
                    "the SVOL holds everything the PVOL had written".into()
                }
                Err(LinkError::Down(_)) => {
                    self.set_state(
                        name,
                        &[meta.state],
                        PairState::Psus,
                        "split here only (PSUS): the PVOL's site is unreachable",
                    );
                    format!("split here only: site '{}' is unreachable, so the SVOL may lack its latest writes", meta.peer)
                }
                Err(e) => return Err(e.into()),
            },
        };
        Ok(format!("pair '{name}' split (PSUS): {note}; both sides track changes, `hbctl pair resync {name}` joins it again"))
    }

    /// At the PVOL: drains what is pending to the SVOL (if mirroring), then PSUS. Returns a note.
    async fn split_here(self: &Arc<Self>, name: &str) -> Result<String, SiteError> {
        let w = self.work(name)?;
        let _order = w.volume.order.lock().await;
        Self::settle_semi(&w.rt).await;
        let mirrored = self
            .meta_of(name)
            .is_some_and(|m| m.state == PairState::Pair);
        let note = if mirrored {
            w.rt.queue().clear();
            match self.ship_dirty(name, &w, true).await {
                Ok(_) => "the SVOL holds everything written before the split".to_string(),
                Err(e) => format!("the SVOL may lack writes before the split ({e})"),
            }
        } else {
            "the pair was not in PAIR, so the SVOL is not a consistent copy".to_string()
        };
        w.rt.queue().clear();
        self.set_state(
            name,
            &[PairState::Pair, PairState::Copy, PairState::Psue],
            PairState::Psus,
            "split (PSUS); changes tracked",
        );
        Ok(note)
    }

    /// Resyncs from the PVOL the blocks dirty on either side; with `reverse`
    /// (at the site that took over) the roles swap first.
    pub async fn pair_resync(
        self: &Arc<Self>,
        name: &str,
        reverse: bool,
    ) -> Result<String, SiteError> {
        let meta = self.pair_meta(name)?;
        let link = self.link.peer(&meta.peer)?;
        if reverse {
            if meta.role != Role::Svol || !matches!(meta.state, PairState::Ssws | PairState::Psus) {
                return Err(refused(format!(
                    "`pair resync --reverse` runs at the site that took pair '{name}' over (its SVOL, in SSWS); here the pair is {} in {}",
                    meta.role, meta.state
                )));
            }
            let bits = match link
                .call(
                    PeerRequest::Reverse { pair: name.into() },
                    self.link.timeout(),
                )
                .await?
            {
                PeerReply::Bitmap { bits } => bits,
                _ => {
                    return Err(refused(format!(
                        "site '{}' answered the reverse of '{name}' without its bitmap",
                        meta.peer
                    )))
                }
            };
            let w = self.work(name)?;
            w.rt.dirty().merge(&bits)?;
            self.update(name, |m| {
                m.role = Role::Pvol;
                m.state = PairState::Copy;
                std::mem::swap(&mut m.pvol, &mut m.svol);
            });
            tracing::info!(pair = name, "roles reversed: this site holds the PVOL now; copying the blocks changed on either side");
            let bytes = w.rt.dirty().dirty_blocks() * BLOCK;
            self.start_copy(name);
            self.ensure_shipper(name);
            return Ok(format!(
                "pair '{name}' reversed: this site's volume is the PVOL now; copying {} changed on either side to site '{}' (COPY)",
                Bytes(bytes),
                meta.peer
            ));
        }
        match meta.role {
            Role::Pvol => {
                let bytes = self.resync_here(name).await?;
                Ok(format!("pair '{name}' resyncing: {} dirty on either side to copy (COPY); `hbctl pair status {name} --watch` shows progress", Bytes(bytes)))
            }
            Role::Svol => {
                link.call(
                    PeerRequest::Resync { pair: name.into() },
                    self.link.timeout(),
                )
                .await?;
                Ok(format!("pair '{name}' resyncing from site '{}' (COPY); this site's changes are overwritten", meta.peer))
            }
        }
    }

    /// At the PVOL: merges the SVOL's bitmap, puts both sides in COPY and starts the copy.
    async fn resync_here(self: &Arc<Self>, name: &str) -> Result<u64, SiteError> {
        let w = self.work(name)?;
        if w.meta.state == PairState::Pair && w.rt.dirty().dirty_blocks() == 0 {
            return Ok(0);
        }
        let link = self.link.peer(&w.meta.peer)?;
        let timeout = self.link.timeout();
        let bits = match link
            .call(PeerRequest::TakeBitmap { pair: name.into() }, timeout)
            .await?
        {
            PeerReply::Bitmap { bits } => bits,
            _ => {
                return Err(refused(format!(
                    "site '{}' answered without its bitmap",
                    w.meta.peer
                )))
            }
        };
        w.rt.dirty().merge(&bits)?;
        // The copy task tells the peer (which then clears its merged bitmap).
        self.set_state(
            name,
            &[
                PairState::Pair,
                PairState::Psue,
                PairState::Psus,
                PairState::Copy,
            ],
            PairState::Copy,
            "resync started (COPY)",
        );
        let bytes = w.rt.dirty().dirty_blocks() * BLOCK;
        self.start_copy(name);
        Ok(bytes)
    }

    /// At the SVOL's site: make the SVOL writable (SSWS), also when the PVOL's site is gone.
    pub async fn pair_takeover(self: &Arc<Self>, name: &str) -> Result<String, SiteError> {
        let meta = self.pair_meta(name)?;
        if meta.role != Role::Svol {
            return Err(refused(format!(
                "pair '{name}' has its PVOL here; take over at site '{}', which holds the SVOL",
                meta.peer
            )));
        }
        if meta.state == PairState::Ssws {
            return Ok(format!("pair '{name}' is taken over already (SSWS)"));
        }
        self.set_state(
            name,
            &[meta.state],
            PairState::Ssws,
            "taken over (SSWS): the SVOL is writable here, changes tracked",
        );
        let told = match self.link.peer(&meta.peer) {
            Ok(link) => link
                .call(
                    PeerRequest::Takeover { pair: name.into() },
                    self.link.timeout(),
                )
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        let note = match told {
            Ok(()) => format!(
                "site '{}' was told and suspended its PVOL (PSUS)",
                meta.peer
            ),
            Err(e) => format!("site '{}' could not be told ({e})", meta.peer),
        };
        Ok(format!(
            "pair '{name}' taken over (SSWS): volume '{}' is writable here; {note}. When both sites are back, `hbctl pair resync {name} --reverse` here makes this the PVOL and copies back only what changed",
            meta.svol
        ))
    }

    /// Dissolves a pair at both sites (or only here with `force` when the peer is unreachable).
    pub async fn pair_delete(&self, name: &str, force: bool) -> Result<String, SiteError> {
        let meta = self.pair_meta(name)?;
        self.check_protection(&meta, name, force, "delete")?;
        let told = match self.link.peer(&meta.peer) {
            Ok(link) => {
                link.call(
                    PeerRequest::Detach { pair: name.into() },
                    self.link.timeout(),
                )
                .await
            }
            Err(e) => Err(e),
        };
        let note = match told {
            Ok(_) => String::new(),
            Err(e) if force => {
                tracing::warn!(pair = name, "pair dissolved here only (--force): {e}");
                format!(" here only (site '{}' keeps its half until `hbctl pair delete {name}` runs there)", meta.peer)
            }
            Err(source) => return Err(SiteError::PeerUnreachable { source }),
        };
        self.remove_pair(name);
        tracing::info!(pair = name, "pair dissolved{note}");
        Ok(format!(
            "pair '{name}' dissolved{note}; its volumes are SMPL"
        ))
    }

    fn remove_pair(&self, name: &str) {
        let removed = self.inner().pairs.remove(name);
        if let Some(p) = removed {
            p.rt.queue().clear();
            p.rt.wake.notify_one();
            let _ = std::fs::remove_file(bitmap_path(&self.data_dir, name));
            self.save_or_log();
        }
    }

    // ----- shipping --------------------------------------------------------

    /// Ships one write to the peer.
    async fn ship(
        &self,
        meta: &PairMeta,
        pair: &str,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Pending, LinkError> {
        let request = PeerRequest::Write {
            pair: pair.into(),
            offset,
            data,
        };
        self.link.peer(&meta.peer)?.send(request).await
    }

    /// Ships a host write; counts it in flight until settled.
    async fn ship_host_write(
        &self,
        meta: &PairMeta,
        rt: &PairRt,
        pair: &str,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Pending, LinkError> {
        let pending = self.ship(meta, pair, offset, data).await?;
        rt.shipped();
        Ok(pending)
    }

    /// Semi-sync: waits until the one unacknowledged write is settled.
    async fn settle_semi(rt: &PairRt) {
        let mut slot = rt.semi.lock().await;
        if let Some(previous) = slot.take() {
            let _ = previous.await;
        }
    }

    /// Ships every dirty block of a PVOL, read back from the volume, until the
    /// bitmap is clean; `locked` if the caller holds the volume's order lock.
    async fn ship_dirty(&self, name: &str, w: &Work, locked: bool) -> Result<u64, SiteError> {
        let timeout = self.link.timeout();
        let mut window: VecDeque<Shipped> = VecDeque::new();
        let mut shipped = 0u64;
        let mut from = 0u64;
        loop {
            let runs = w.rt.dirty().runs(from, COPY_RUN_BLOCKS, 64);
            if runs.is_empty() {
                while let Some(next) = window.pop_front() {
                    self.acked(w, next, timeout).await?;
                }
                if w.rt.dirty().dirty_blocks() == 0 || from == 0 {
                    return Ok(shipped);
                }
                from = 0; // another pass: blocks dirtied behind us
                continue;
            }
            for run in runs {
                if !self.meta_of(name).is_some_and(|m| {
                    m.role == Role::Pvol
                        && matches!(m.state, PairState::Pair | PairState::Copy | PairState::Psue)
                }) {
                    return Err(refused(format!("pair '{name}' left the copy")));
                }
                let offset = run.first * BLOCK;
                let len = (run.len * BLOCK).min(w.volume.size - offset) as usize;
                let pending = {
                    // Read and queue under the volume's order lock: a host write
                    // to this range lands either in this chunk or after it on the wire.
                    let _order = if locked {
                        None
                    } else {
                        Some(w.volume.order.lock().await)
                    };
                    let data = w.volume.read(&self.io, offset, len).await?;
                    let seqs = w.rt.dirty().seqs(run.first, run.len);
                    Shipped {
                        pending: self.ship(&w.meta, name, offset, data).await?,
                        first: run.first,
                        bytes: len as u64,
                        seqs,
                    }
                };
                window.push_back(pending);
                shipped += len as u64;
                if window.len() >= SHIP_WINDOW {
                    if let Some(next) = window.pop_front() {
                        self.acked(w, next, timeout).await?;
                    }
                }
                from = run.first + run.len;
            }
        }
    }

    /// Waits for a shipped run and clears the bits it carried.
    async fn acked(&self, w: &Work, shipped: Shipped, timeout: Duration) -> Result<(), SiteError> {
        shipped.pending.wait(timeout).await?;
        w.rt.dirty().acked(shipped.first, &shipped.seqs);
        w.rt.copied(shipped.bytes);
        Ok(())
    }

    fn start_copy(self: &Arc<Self>, name: &str) {
        let Ok(w) = self.work(name) else { return };
        if w.meta.role != Role::Pvol || !w.rt.begin_copy() {
            return;
        }
        let site = Arc::clone(self);
        let name = name.to_string();
        tokio::spawn(async move {
            let result = site.copy(&name).await;
            if let Ok(w) = site.work(&name) {
                w.rt.end_copy();
            }
            match result {
                Ok(bytes) => {
                    tracing::info!(pair = %name, bytes, "copy complete: pair in sync (PAIR)")
                }
                Err(e) => site.suspend(&name, &format!("copy stopped: {e}")),
            }
        });
    }

    /// Copies the dirty blocks to the SVOL, then sets both sides `PAIR`.
    async fn copy(self: &Arc<Self>, name: &str) -> Result<u64, SiteError> {
        let w = self.work(name)?;
        let link = self.link.peer(&w.meta.peer)?;
        let timeout = self.link.timeout();
        self.set_state(
            name,
            &[PairState::Psue, PairState::Pair, PairState::Copy],
            PairState::Copy,
            "copy started (COPY)",
        );
        link.call(
            PeerRequest::Update {
                pair: name.into(),
                state: Some(PairState::Copy),
                settings: Some(w.meta.settings),
            },
            timeout,
        )
        .await?;
        let mut total = 0;
        loop {
            w.rt.copy_remaining(w.rt.dirty().dirty_blocks() * BLOCK);
            total += self.ship_dirty(name, &w, false).await?;
            // Clean under the order lock: no host write slips between the check and PAIR.
            let _order = w.volume.order.lock().await;
            if w.rt.dirty().dirty_blocks() == 0 {
                // The bits the copy cleared are cleared on disk too.
                w.rt.dirty().write_all()?;
                link.call(
                    PeerRequest::Update {
                        pair: name.into(),
                        state: Some(PairState::Pair),
                        settings: None,
                    },
                    timeout,
                )
                .await?;
                self.set_state(
                    name,
                    &[PairState::Copy],
                    PairState::Pair,
                    "copy done (PAIR)",
                );
                w.rt.queue().overflowed = false;
                return Ok(total);
            }
        }
    }

    /// Starts the adaptive shipper of a PVOL pair, if it does not run.
    fn ensure_shipper(self: &Arc<Self>, name: &str) {
        let Ok(w) = self.work(name) else { return };
        if w.meta.role != Role::Pvol
            || w.meta.settings.mode != Mode::Adaptive
            || w.rt.shipper.swap(true, Ordering::SeqCst)
        {
            return;
        }
        let site = Arc::clone(self);
        let name = name.to_string();
        tokio::spawn(async move {
            site.shipper(&name, &w.rt).await;
            w.rt.shipper.store(false, Ordering::SeqCst);
        });
    }

    /// Adaptive mode: ships queued writes in order; after an overflow, ships
    /// dirty blocks read back from the PVOL until the bitmap is clean.
    async fn shipper(self: &Arc<Self>, name: &str, rt: &Arc<PairRt>) {
        let timeout = self.link.timeout();
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = rt.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            let Ok(w) = self.work(name) else { return };
            if !Arc::ptr_eq(&w.rt, rt)
                || w.meta.role != Role::Pvol
                || w.meta.settings.mode != Mode::Adaptive
            {
                return;
            }
            if w.meta.state != PairState::Pair {
                continue;
            }
            let result: Result<(), SiteError> = async {
                let mut window: VecDeque<(Pending, Queued)> = VecDeque::new();
                loop {
                    let next = {
                        let mut q = rt.queue();
                        let e = q.entries.pop_front();
                        if let Some(e) = &e {
                            q.bytes -= e.data.len() as u64;
                        }
                        e
                    };
                    let Some(entry) = next else { break };
                    let pending = self
                        .ship_host_write(&w.meta, rt, name, entry.offset, entry.data.clone())
                        .await?;
                    window.push_back((pending, entry));
                    if window.len() >= SHIP_WINDOW {
                        if let Some((p, e)) = window.pop_front() {
                            rt.settle(p, timeout).await?;
                            rt.dirty().acked_write(e.offset, e.data.len() as u64, e.seq);
                        }
                    }
                }
                while let Some((p, e)) = window.pop_front() {
                    rt.settle(p, timeout).await?;
                    rt.dirty().acked_write(e.offset, e.data.len() as u64, e.seq);
                }
                if rt.queue().overflowed {
                    self.ship_dirty(name, &w, false).await?;
                    let _order = w.volume.order.lock().await;
                    if rt.dirty().dirty_blocks() == 0 {
                        let mut q = rt.queue();
                        if q.entries.is_empty() {
                            q.overflowed = false;
                        }
                    }
                }
                Ok(())
            }
            .await;
            if let Err(e) = result {
                rt.queue().clear();
                self.suspend(name, &format!("adaptive copy stopped: {e}"));
            }
        }
    }

    // ----- host I/O (through hbfs) ---------------------------------------

    /// Reads a volume for a host.
    pub async fn host_read(
        &self,
        volume: &str,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, SiteError> {
        let v = self.inner().volume(volume)?;
        Ok(v.read(&self.io, offset, len).await?)
    }

    /// Writes a volume for a host, mirroring it as the pair's mode says.
    pub async fn host_write(
        self: &Arc<Self>,
        volume: &str,
        offset: u64,
        data: &[u8],
    ) -> Result<(), SiteError> {
        let v = self.inner().volume(volume)?;
        let _order = v.order.lock().await;
        // Read the pair under the order lock: a state change cannot slip
        // between this check and the write's place on the wire.
        let pair = self
            .inner()
            .pair_of_volume(volume)
            .map(|(n, p)| (n.clone(), p.meta.clone(), Arc::clone(&p.rt)));
        let Some((name, meta, rt)) = pair else {
            return Ok(v.write(&self.io, offset, data).await?);
        };
        if !host_writable(&meta) {
            return Err(SiteError::ReadOnly {
                volume: volume.into(),
                pair: name,
            });
        }
        let fenced = meta.settings.mode == Mode::Sync && meta.settings.fence == Fence::Data;
        if fenced && !mirroring(&meta) && meta.role == Role::Pvol && meta.state == PairState::Psue {
            return Err(SiteError::Fenced {
                pair: name,
                why: "the pair is suspended (PSUE)".into(),
            });
        }
        let seq = rt.dirty().mark(offset, data.len() as u64)?;
        if !mirroring(&meta) {
            return Ok(v.write(&self.io, offset, data).await?);
        }
        let timeout = self.link.timeout();
        match meta.settings.mode {
            Mode::Sync if fenced => {
                // Remote first, local after: a write the SVOL cannot take never reaches the PVOL.
                let answer = match self
                    .ship_host_write(&meta, &rt, &name, offset, data.to_vec())
                    .await
                {
                    Ok(p) => rt.settle(p, timeout).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                if let Err(e) = answer {
                    self.replication_failed(&name, &meta, &e);
                    return Err(SiteError::Fenced {
                        pair: name,
                        why: e.to_string(),
                    });
                }
                v.write(&self.io, offset, data).await?;
                rt.dirty().acked_write(offset, data.len() as u64, seq);
            }
            Mode::Sync => {
                // Queued before the PVOL write, so the transfer and the SVOL write overlap it.
                let shipped = self
                    .ship_host_write(&meta, &rt, &name, offset, data.to_vec())
                    .await;
                v.write(&self.io, offset, data).await?;
                let answer = match shipped {
                    Ok(p) => rt.settle(p, timeout).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                match answer {
                    Ok(()) => rt.dirty().acked_write(offset, data.len() as u64, seq),
                    Err(e) => self.replication_failed(&name, &meta, &e),
                }
            }
            Mode::SemiSync => {
                Self::settle_semi(&rt).await;
                // Settling may have suspended the pair.
                let still = self.meta_of(&name).is_some_and(|m| mirroring(&m));
                let shipped = if still {
                    Some(
                        self.ship_host_write(&meta, &rt, &name, offset, data.to_vec())
                            .await,
                    )
                } else {
                    None
                };
                v.write(&self.io, offset, data).await?;
                match shipped {
                    Some(Ok(pending)) => {
                        let site = Arc::clone(self);
                        let rt2 = Arc::clone(&rt);
                        let len = data.len() as u64;
                        let settling = tokio::spawn(async move {
                            match rt2.settle(pending, timeout).await {
                                Ok(_) => rt2.dirty().acked_write(offset, len, seq),
                                Err(e) => site.replication_failed(&name, &meta, &e),
                            }
                        });
                        *rt.semi.lock().await = Some(settling);
                    }
                    Some(Err(e)) => self.replication_failed(&name, &meta, &e),
                    None => {}
                }
            }
            Mode::Adaptive => {
                v.write(&self.io, offset, data).await?;
                if meta.state == PairState::Pair {
                    let mut q = rt.queue();
                    if !q.overflowed && q.bytes + data.len() as u64 <= meta.settings.skew {
                        q.bytes += data.len() as u64;
                        q.entries.push_back(Queued {
                            offset,
                            data: data.to_vec(),
                            seq,
                            at: Instant::now(),
                        });
                    } else if !q.overflowed {
                        q.overflowed = true;
                        tracing::info!(pair = %name, skew = meta.settings.skew, "adaptive skew reached: further writes are tracked in the bitmap and read back when they ship");
                    }
                }
                rt.wake.notify_one();
            }
        }
        Ok(())
    }

    fn replication_failed(&self, name: &str, meta: &PairMeta, e: &LinkError) {
        if matches!(e, LinkError::Timeout(..)) {
            if let Ok(link) = self.link.peer(&meta.peer) {
                link.reset();
            }
        }
        self.suspend(name, &e.to_string());
    }

    /// Makes a volume's writes durable.
    pub async fn host_sync(&self, volume: &str) -> Result<(), SiteError> {
        let v = self.inner().volume(volume)?;
        Ok(v.sync(&self.io).await?)
    }

    // ----- the peer's requests -------------------------------------------

    fn attach(&self, peer: &str, request: Attach) -> Result<PeerReply, String> {
        let Attach {
            pair,
            pvol,
            svol,
            size,
            kind,
            settings,
        } = request;
        let previous = {
            let inner = self.inner();
            if let Some(p) = inner.pairs.get(&pair) {
                let same = p.meta.role == Role::Svol
                    && p.meta.peer == peer
                    && p.meta.pvol == pvol
                    && p.meta.svol == svol;
                if !same {
                    return Err(format!("pair '{pair}' already exists at site '{}' with other volumes or roles; delete it there or choose another pair name", self.name));
                }
                Some(p.meta.state)
            } else {
                let v = inner.volumes.get(&svol).ok_or_else(|| {
                    format!("no volume '{svol}' at site '{}'; create it there first with `hbctl volume create {svol} --size {size}`", self.name)
                })?;
                if v.size != size {
                    return Err(format!(
                        "volume '{svol}' at site '{}' is {} bytes but the PVOL '{pvol}' is {size}; an SVOL must have exactly the PVOL's size",
                        self.name, v.size
                    ));
                }
                if let Some((other, p)) = inner.pair_of_volume(&svol) {
                    return Err(format!(
                        "at site '{}': {}",
                        self.name,
                        paired_error(&svol, other, p.meta.kind, kind)
                    ));
                }
                None
            }
        };
        match previous {
            Some(previous) => {
                // A re-attach: the PVOL's settings win; the state stays until the PVOL says otherwise.
                self.update(&pair, |m| m.settings = settings);
                Ok(PeerReply::Attached { previous })
            }
            None => {
                let path = bitmap_path(&self.data_dir, &pair);
                let _ = std::fs::remove_file(&path);
                let dirty = DirtyMap::open(&path, size).map_err(|e| e.to_string())?;
                let meta = PairMeta {
                    role: Role::Svol,
                    state: PairState::Copy,
                    kind,
                    settings,
                    peer: peer.into(),
                    pvol,
                    svol,
                };
                self.inner().pairs.insert(
                    pair.clone(),
                    Pair {
                        meta,
                        size,
                        rt: Arc::new(PairRt::new(dirty)),
                    },
                );
                self.save().map_err(|e| e.to_string())?;
                tracing::info!(pair = %pair, peer, "attached as SVOL");
                Ok(PeerReply::Attached {
                    previous: PairState::Smpl,
                })
            }
        }
    }

    async fn apply_write(&self, pair: &str, offset: u64, data: &[u8]) -> Result<PeerReply, String> {
        let w = self.work(pair).map_err(|e| e.to_string())?;
        if w.meta.role != Role::Svol {
            return Err(format!(
                "pair '{pair}' at site '{}' is not an SVOL here; refusing a remote write",
                self.name
            ));
        }
        if !matches!(
            w.meta.state,
            PairState::Copy | PairState::Pair | PairState::Psue
        ) {
            return Err(format!(
                "pair '{pair}' is {} at site '{}': its SVOL takes no copies until `hbctl pair resync {pair}`",
                w.meta.state, self.name
            ));
        }
        let _order = w.volume.order.lock().await;
        w.volume
            .write(&self.io, offset, data)
            .await
            .map_err(|e| e.to_string())?;
        Ok(PeerReply::Done)
    }

    fn peer_pair(&self, peer: &str, pair: &str) -> Result<PairMeta, String> {
        self.meta_of(pair)
            .filter(|m| m.peer == peer)
            .ok_or_else(|| {
                format!(
                    "no pair '{pair}' with site '{peer}' at site '{}'",
                    self.name
                )
            })
    }

    async fn handle_request(
        self: &Arc<Self>,
        peer: &str,
        request: PeerRequest,
    ) -> Result<PeerReply, String> {
        match request {
            PeerRequest::Attach(request) => self.attach(peer, request),
            PeerRequest::Write { pair, offset, data } => {
                self.apply_write(&pair, offset, &data).await
            }
            PeerRequest::Update {
                pair,
                state,
                settings,
            } => {
                let meta = self.peer_pair(peer, &pair)?;
                if let Some(settings) = settings {
                    self.adopt_settings(&pair, settings);
                }
                if let Some(state) = state {
                    if state == PairState::Copy && meta.role == Role::Svol {
                        // The PVOL merged this side's bitmap: it copies those blocks now.
                        if let Ok(w) = self.work(&pair) {
                            w.rt.dirty().clear_all().map_err(|e| e.to_string())?;
                        }
                    }
                    let all = [
                        PairState::Smpl,
                        PairState::Copy,
                        PairState::Pair,
                        PairState::Psus,
                        PairState::Psue,
                        PairState::Ssws,
                    ];
                    self.set_state(&pair, &all, state, &format!("state set by site '{peer}'"));
                }
                Ok(PeerReply::Done)
            }
            PeerRequest::TakeBitmap { pair } => {
                self.peer_pair(peer, &pair)?;
                let w = self.work(&pair).map_err(|e| e.to_string())?;
                let bits = w.rt.dirty().bits().to_vec();
                Ok(PeerReply::Bitmap { bits })
            }
            PeerRequest::Split { pair } => {
                self.peer_pair(peer, &pair)?;
                self.split_here(&pair).await.map_err(|e| e.to_string())?;
                Ok(PeerReply::Done)
            }
            PeerRequest::Resync { pair } => {
                self.peer_pair(peer, &pair)?;
                self.resync_here(&pair).await.map_err(|e| e.to_string())?;
                Ok(PeerReply::Done)
            }
            PeerRequest::Takeover { pair } => {
                self.peer_pair(peer, &pair)?;
                if let Ok(w) = self.work(&pair) {
                    w.rt.queue().clear();
                }
                let all = [
                    PairState::Copy,
                    PairState::Pair,
                    PairState::Psus,
                    PairState::Psue,
                ];
                self.set_state(&pair, &all, PairState::Psus, &format!("site '{peer}' took the pair over (SSWS there): suspended here (PSUS), changes tracked"));
                Ok(PeerReply::Done)
            }
            PeerRequest::Reverse { pair } => {
                let meta = self.peer_pair(peer, &pair)?;
                if meta.role != Role::Pvol {
                    return Err(format!(
                        "pair '{pair}' is not a PVOL at site '{}'; nothing to reverse",
                        self.name
                    ));
                }
                let w = self.work(&pair).map_err(|e| e.to_string())?;
                let _order = w.volume.order.lock().await;
                w.rt.queue().clear();
                let bits = {
                    let mut d = w.rt.dirty();
                    let bits = d.bits().to_vec();
                    d.clear_all().map_err(|e| e.to_string())?;
                    bits
                };
                self.update(&pair, |m| {
                    m.role = Role::Svol;
                    m.state = PairState::Copy;
                    std::mem::swap(&mut m.pvol, &mut m.svol);
                });
                tracing::warn!(pair = %pair, "roles reversed by site '{peer}': this site's volume is the SVOL now (read-only, COPY)");
                Ok(PeerReply::Bitmap { bits })
            }
            PeerRequest::Detach { pair } => {
                if self.peer_pair(peer, &pair).is_ok() {
                    self.remove_pair(&pair);
                    tracing::info!(pair = %pair, peer, "pair dissolved by the peer site");
                }
                Ok(PeerReply::Done)
            }
        }
    }

    /// After the link to `peer` comes up: re-attach its PVOL pairs and decide
    /// for each whether it stays in sync, resyncs, or waits for a person.
    async fn reattach(self: &Arc<Self>, peer: &str) {
        let pairs: Vec<(String, PairMeta, u64)> = self
            .inner()
            .pairs
            .iter()
            .filter(|(_, p)| p.meta.peer == peer && p.meta.role == Role::Pvol)
            .map(|(n, p)| (n.clone(), p.meta.clone(), p.size))
            .collect();
        let Ok(link) = self.link.peer(peer) else {
            return;
        };
        for (name, meta, size) in pairs {
            let previous = match link
                .call(
                    PeerRequest::Attach(attach_request(&name, &meta, size)),
                    self.link.timeout(),
                )
                .await
            {
                Ok(PeerReply::Attached { previous }) => previous,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(pair = %name, "re-attach at '{peer}' failed: {e}");
                    continue;
                }
            };
            let Ok(w) = self.work(&name) else { continue };
            let dirty = w.rt.dirty().dirty_blocks();
            match (previous, w.meta.state) {
                (PairState::Ssws, _) => {
                    self.set_state(
                        &name,
                        &[PairState::Pair, PairState::Copy, PairState::Psue],
                        PairState::Psus,
                        "the peer took the pair over (SSWS)",
                    );
                    tracing::warn!(pair = %name, "site '{peer}' took this pair over (SSWS): fail back with `hbctl pair resync {name} --reverse` there, or discard its changes with `hbctl pair resync {name}` here");
                }
                (PairState::Psus, _) | (_, PairState::Psus) => {
                    self.set_state(
                        &name,
                        &[PairState::Pair, PairState::Copy, PairState::Psue],
                        PairState::Psus,
                        "the pair is split (PSUS)",
                    );
                    tracing::info!(pair = %name, "re-attached; split (PSUS): `hbctl pair resync {name}` joins it again");
                }
                (_, PairState::Pair) if dirty == 0 => match link
                    .call(
                        PeerRequest::Update {
                            pair: name.clone(),
                            state: Some(PairState::Pair),
                            settings: None,
                        },
                        self.link.timeout(),
                    )
                    .await
                {
                    Ok(_) => tracing::info!(pair = %name, "re-attached; still in sync (PAIR)"),
                    Err(e) => self.suspend(&name, &e.to_string()),
                },
                (_, PairState::Psue) if !w.meta.settings.auto_resync => {
                    tracing::info!(pair = %name, "re-attached; suspended (PSUE) with {} to copy: `hbctl pair resync {name}` (auto-resync is off)", Bytes(dirty * BLOCK));
                }
                _ => {
                    tracing::info!(pair = %name, "re-attached; resyncing {} (auto-resync)", Bytes(dirty * BLOCK));
                    if let Err(e) = self.resync_here(&name).await {
                        tracing::warn!(pair = %name, "resync failed: {e}");
                    }
                }
            }
        }
    }
}

/// The settings a pair may have.
fn check_settings(s: &PairSettings) -> Result<(), SiteError> {
    if s.fence == Fence::Data && s.mode != Mode::Sync {
        return Err(refused(format!(
            "fence 'data' applies to sync mode only (mode is {}); use --mode sync, or --fence never",
            s.mode
        )));
    }
    if s.skew < BLOCK {
        return Err(refused(format!(
            "skew {} is below one block (4KiB); choose e.g. 4MiB",
            s.skew
        )));
    }
    Ok(())
}

/// The refusal for a volume that already belongs to a pair.
fn paired_error(volume: &str, pair: &str, has: Kind, wanted: Kind) -> SiteError {
    let hint = match (has, wanted) {
        (Kind::Data, Kind::Heartbeat) => "a heartbeat pair needs a volume of its own: heartbeat volumes carry only heartbeats, never production data".to_string(),
        (Kind::Heartbeat, Kind::Data) => "a volume that carries heartbeats cannot carry production data; give the data pair another volume".to_string(),
        _ => format!("dissolve it first with `hbctl pair delete {pair}`"),
    };
    SiteError::Paired {
        volume: volume.into(),
        pair: pair.into(),
        kind: has,
        hint,
    }
}

/// What the PVOL's site asks the peer to attach for pair `name`.
fn attach_request(name: &str, meta: &PairMeta, size: u64) -> Attach {
    Attach {
        pair: name.into(),
        pvol: meta.pvol.clone(),
        svol: meta.svol.clone(),
        size,
        kind: meta.kind,
        settings: meta.settings,
    }
}

fn bitmap_path(data_dir: &std::path::Path, pair: &str) -> PathBuf {
    data_dir.join("bitmaps").join(format!("{pair}.bitmap"))
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

fn backing_name(b: Backing) -> &'static str {
    match b {
        Backing::File => "file",
        Backing::Block => "block device",
    }
}

/// The link's view of a site.
pub struct SiteHandler(pub Arc<Site>);

impl Handler for SiteHandler {
    async fn handle(&self, peer: &str, request: PeerRequest) -> Result<PeerReply, PeerError> {
        self.0
            .handle_request(peer, request)
            .await
            .map_err(|detail| PeerError::Refused { detail })
    }

    fn link_up(self: &Arc<Self>, peer: &str) {
        let site = Arc::clone(&self.0);
        let peer = peer.to_string();
        tokio::spawn(async move { site.reattach(&peer).await });
    }

    fn link_down(self: &Arc<Self>, peer: &str) {
        let affected: Vec<String> = self
            .0
            .inner()
            .pairs
            .iter()
            .filter(|(_, p)| p.meta.peer == peer)
            .map(|(n, _)| n.clone())
            .collect();
        for pair in affected {
            self.0
                .suspend(&pair, &format!("remote link to '{peer}' lost"));
        }
    }
}
