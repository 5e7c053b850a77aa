//! The site: its volumes and pairs, the host I/O path with synchronous
//! replication, the initial copy, and the answers to the peer's requests.
//!
//! ```text
//!  host_write ─ lock volume order ─┬─ Write frame to peer (queued first, so both writes overlap)
//!                                  ├─ PVOL write (io_uring)
//!                                  └─ wait for the peer's ack ── none: pair → PSUE, write stays local
//! ```
//!
//! State lives in [`Inner`] behind a std mutex that is never held across an
//! await; every change of a volume or pair is persisted through [`Meta`].

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use hbmirror::control::{Backing, Kind, Mode, PairInfo, PairState, Role, VolumeInfo};
use hbmirror::size::Bytes;

use crate::config::{check_name, Config};
use crate::io::IoEngine;
use crate::link::message::{Attach, PeerReply, PeerRequest};
use crate::link::{Handler, Link, LinkError};
use crate::meta::{Meta, MetaError, PairMeta, VolumeMeta};
use crate::volume::{Volume, VolumeError};

/// Bytes per Write frame of a copy.
const COPY_CHUNK: usize = 1 << 20;
/// Copy chunks in flight at once.
const COPY_WINDOW: usize = 4;

/// A refused or failed site operation; the text names the thing and the way out.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// A name that cannot be used.
    #[error("{0}")]
    BadName(String),
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
    #[error("volume '{volume}' belongs to pair '{pair}'; dissolve it first with `hbctl pair delete {pair}`")]
    Paired {
        /// Volume.
        volume: String,
        /// Pair.
        pair: String,
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
    /// The peer could not be told.
    #[error("{source}; the pair is kept: retry when the link is up, or add --force to dissolve only this site's half")]
    PeerUnreachable {
        /// Why.
        source: LinkError,
    },
    /// A volume operation failed.
    #[error(transparent)]
    Volume(#[from] VolumeError),
    /// The peer refused or could not be reached.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// Metadata could not be saved.
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// A pair as this site runs it.
struct Pair {
    meta: PairMeta,
    size: u64,
    copy_running: bool,
    copied: u64,
    copy_total: u64,
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
}

impl Site {
    /// Opens the site's volumes and pairs from its metadata.
    ///
    /// After a crash (no clean shutdown recorded) a PVOL pair found `PAIR` is
    /// loaded `PSUE`: a write may have reached the PVOL and not the SVOL.
    pub fn open(config: &Config, io: IoEngine, link: Arc<Link>) -> Result<Site, SiteError> {
        let meta_path = config.data_dir.join("meta.json");
        let meta = Meta::load(&meta_path)?;
        let mut inner = Inner::default();
        for (name, v) in &meta.volumes {
            inner.volumes.insert(
                name.clone(),
                Arc::new(Volume::open(name, &v.path, Some(v.size))?),
            );
        }
        for (name, p) in meta.pairs {
            let mut p = p;
            if !meta.clean_shutdown
                && p.role == Role::Pvol
                && matches!(p.state, PairState::Pair | PairState::Copy)
            {
                tracing::warn!(pair = %name, "mirrord did not shut down cleanly: pair suspended (PSUE) until it is copied again");
                p.state = PairState::Psue;
            }
            let size = inner.volumes.get(p.local_volume()).map_or(0, |v| v.size);
            inner.pairs.insert(
                name,
                Pair {
                    meta: p,
                    size,
                    copy_running: false,
                    copied: 0,
                    copy_total: 0,
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
        };
        site.save()?;
        Ok(site)
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

    /// Records a clean shutdown.
    pub fn shutdown(&self) -> Result<(), MetaError> {
        self.clean_shutdown.store(true, Ordering::SeqCst);
        self.save()
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

    /// Forgets a volume that is not paired; the backing store is kept.
    pub fn volume_delete(&self, name: &str) -> Result<String, SiteError> {
        let path = {
            let mut inner = self.inner();
            if let Some((pair, _)) = inner.pair_of_volume(name) {
                return Err(SiteError::Paired {
                    volume: name.into(),
                    pair: pair.clone(),
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
    pub async fn pair_create(
        self: &Arc<Self>,
        name: &str,
        pvol: &str,
        peer: &str,
        svol: Option<&str>,
        mode: Mode,
        kind: Kind,
    ) -> Result<String, SiteError> {
        check_name("pair", name).map_err(SiteError::BadName)?;
        let svol = svol.unwrap_or(pvol).to_string();
        let size = {
            let inner = self.inner();
            if inner.pairs.contains_key(name) {
                return Err(SiteError::PairExists(name.into()));
            }
            if let Some((pair, _)) = inner.pair_of_volume(pvol) {
                return Err(SiteError::Paired {
                    volume: pvol.into(),
                    pair: pair.clone(),
                });
            }
            inner.volume(pvol)?.size
        };
        let link = self.link.peer(peer)?;
        let meta = PairMeta {
            role: Role::Pvol,
            state: PairState::Copy,
            mode,
            kind,
            peer: peer.into(),
            pvol: pvol.into(),
            svol: svol.clone(),
        };
        link.call(
            PeerRequest::Attach(attach_request(name, &meta, size)),
            self.link.timeout(),
        )
        .await?;
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
                        copy_running: false,
                        copied: 0,
                        copy_total: 0,
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
        Ok(format!(
            "pair '{name}' created: {pvol} -> {peer}:{svol}, {mode}, {kind}; initial copy of {} under way (COPY); `hbctl pair status {name}` shows progress",
            Bytes(size)
        ))
    }

    /// Pair status, of one pair or all.
    pub fn pair_status(&self, name: Option<&str>) -> Result<Vec<PairInfo>, SiteError> {
        let inner = self.inner();
        if let Some(n) = name {
            if !inner.pairs.contains_key(n) {
                return Err(SiteError::NoPair(n.into()));
            }
        }
        Ok(inner
            .pairs
            .iter()
            .filter(|(n, _)| name.is_none_or(|want| want == n.as_str()))
            .map(|(n, p)| PairInfo {
                name: n.clone(),
                role: p.meta.role,
                state: p.meta.state,
                mode: p.meta.mode,
                kind: p.meta.kind,
                peer: p.meta.peer.clone(),
                pvol: p.meta.pvol.clone(),
                svol: p.meta.svol.clone(),
                size: p.size,
                link_up: self.link.peer(&p.meta.peer).is_ok_and(|l| l.is_up()),
                copied_bytes: p.copied,
                copy_total_bytes: p.copy_total,
            })
            .collect())
    }

    /// Dissolves a pair at both sites (or only here with `force` when the peer is unreachable).
    pub async fn pair_delete(&self, name: &str, force: bool) -> Result<String, SiteError> {
        let peer = self
            .inner()
            .pairs
            .get(name)
            .map(|p| p.meta.peer.clone())
            .ok_or_else(|| SiteError::NoPair(name.into()))?;
        let told = match self.link.peer(&peer) {
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
                format!(" here only (site '{peer}' keeps its half until `hbctl pair delete {name}` runs there)")
            }
            Err(source) => return Err(SiteError::PeerUnreachable { source }),
        };
        self.inner().pairs.remove(name);
        self.save()?;
        tracing::info!(pair = name, "pair dissolved{note}");
        Ok(format!(
            "pair '{name}' dissolved{note}; its volumes are SMPL"
        ))
    }

    fn set_state(&self, pair: &str, from: &[PairState], to: PairState, why: &str) -> bool {
        let changed = {
            let mut inner = self.inner();
            match inner.pairs.get_mut(pair) {
                Some(p) if from.contains(&p.meta.state) => {
                    p.meta.state = to;
                    true
                }
                _ => false,
            }
        };
        if changed {
            if to == PairState::Psue {
                tracing::warn!(
                    pair,
                    "pair suspended (PSUE): {why}; host writes continue on the PVOL"
                );
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

    // ----- the copy ------------------------------------------------------

    fn start_copy(self: &Arc<Self>, pair: &str) {
        {
            let mut inner = self.inner();
            let Some(p) = inner.pairs.get_mut(pair) else {
                return;
            };
            if p.copy_running || p.meta.role != Role::Pvol {
                return;
            }
            p.copy_running = true;
            p.copied = 0;
            p.copy_total = p.size;
        }
        let site = Arc::clone(self);
        let pair = pair.to_string();
        tokio::spawn(async move {
            let result = site.copy(&pair).await;
            if let Some(p) = site.inner().pairs.get_mut(&pair) {
                p.copy_running = false;
            }
            match result {
                Ok(bytes) => {
                    tracing::info!(pair = %pair, bytes, "copy complete: pair in sync (PAIR)")
                }
                Err(e) => site.suspend(&pair, &format!("copy stopped: {e}")),
            }
        });
    }

    /// Copies the whole PVOL to the SVOL, then sets both sides `PAIR`.
    async fn copy(&self, pair: &str) -> Result<u64, SiteError> {
        let (volume, meta) = {
            let inner = self.inner();
            let p = inner
                .pairs
                .get(pair)
                .ok_or_else(|| SiteError::NoPair(pair.into()))?;
            (inner.volume(&p.meta.pvol)?, p.meta.clone())
        };
        self.set_state(
            pair,
            &[PairState::Psue, PairState::Pair, PairState::Copy],
            PairState::Copy,
            "copy started (COPY)",
        );
        let link = self.link.peer(&meta.peer)?;
        let timeout = self.link.timeout();
        link.call(
            PeerRequest::SetState {
                pair: pair.into(),
                state: PairState::Copy,
            },
            timeout,
        )
        .await?;
        let mut in_flight = VecDeque::new();
        let mut offset = 0u64;
        while offset < volume.size {
            let len = (volume.size - offset).min(COPY_CHUNK as u64) as usize;
            let pending = {
                // Read and queue under the volume's order lock: a host write
                // to this range lands either in this chunk or after it on the wire.
                let _order = volume.order.lock().await;
                let data = volume.read(&self.io, offset, len).await?;
                link.send(PeerRequest::Write {
                    pair: pair.into(),
                    offset,
                    data,
                })
                .await?
            };
            in_flight.push_back((pending, len as u64));
            if in_flight.len() >= COPY_WINDOW {
                self.copy_acked(pair, in_flight.pop_front(), timeout)
                    .await?;
            }
            offset += len as u64;
            if !self.inner().pairs.contains_key(pair) {
                return Err(SiteError::NoPair(pair.into()));
            }
        }
        while let Some(next) = in_flight.pop_front() {
            self.copy_acked(pair, Some(next), timeout).await?;
        }
        link.call(
            PeerRequest::SetState {
                pair: pair.into(),
                state: PairState::Pair,
            },
            timeout,
        )
        .await?;
        self.set_state(
            pair,
            &[PairState::Copy],
            PairState::Pair,
            "copy done (PAIR)",
        );
        Ok(volume.size)
    }

    async fn copy_acked(
        &self,
        pair: &str,
        next: Option<(crate::link::Pending, u64)>,
        timeout: std::time::Duration,
    ) -> Result<(), SiteError> {
        if let Some((pending, len)) = next {
            pending.wait(timeout).await?;
            if let Some(p) = self.inner().pairs.get_mut(pair) {
                p.copied += len;
            }
        }
        Ok(())
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

    /// Writes a volume for a host; on a mirrored PVOL, returns once the peer holds it too
    /// (or the pair was suspended because it could not).
    pub async fn host_write(
        &self,
        volume: &str,
        offset: u64,
        data: &[u8],
    ) -> Result<(), SiteError> {
        let v = self.inner().volume(volume)?;
        let _order = v.order.lock().await;
        // Read the pair under the order lock: a state change cannot slip
        // between this check and the write's place on the wire.
        let target = {
            let inner = self.inner();
            match inner.pair_of_volume(volume) {
                Some((name, p)) if !host_writable(&p.meta) => {
                    return Err(SiteError::ReadOnly {
                        volume: volume.into(),
                        pair: name.clone(),
                    });
                }
                Some((name, p)) if matches!(p.meta.state, PairState::Pair | PairState::Copy) => {
                    Some((name.clone(), p.meta.peer.clone()))
                }
                _ => None,
            }
        };
        let mut pending = None;
        if let Some((pair, peer)) = &target {
            let sent = match self.link.peer(peer) {
                Ok(link) => {
                    link.send(PeerRequest::Write {
                        pair: pair.clone(),
                        offset,
                        data: data.to_vec(),
                    })
                    .await
                }
                Err(e) => Err(e),
            };
            match sent {
                Ok(p) => pending = Some(p),
                Err(e) => self.suspend(pair, &e.to_string()),
            }
        }
        // The PVOL write overlaps the transfer and the SVOL write.
        v.write(&self.io, offset, data).await?;
        if let (Some(p), Some((pair, peer))) = (pending, &target) {
            if let Err(e) = p.wait(self.link.timeout()).await {
                if matches!(e, LinkError::Timeout(..)) {
                    if let Ok(link) = self.link.peer(peer) {
                        link.reset();
                    }
                }
                self.suspend(pair, &e.to_string());
            }
        }
        Ok(())
    }

    /// Makes a volume's writes durable.
    pub async fn host_sync(&self, volume: &str) -> Result<(), SiteError> {
        let v = self.inner().volume(volume)?;
        Ok(v.sync(&self.io).await?)
    }

    /// Whether hosts may write `volume` now.
    pub fn host_writable(&self, volume: &str) -> bool {
        self.inner()
            .pair_of_volume(volume)
            .is_none_or(|(_, p)| host_writable(&p.meta))
    }

    // ----- the peer's requests -------------------------------------------

    fn attach(&self, peer: &str, request: Attach) -> Result<PeerReply, String> {
        let Attach {
            pair,
            pvol,
            svol,
            size,
            mode,
            kind,
        } = request;
        let previous = {
            let mut inner = self.inner();
            if let Some(p) = inner.pairs.get(&pair) {
                let same = p.meta.role == Role::Svol
                    && p.meta.peer == peer
                    && p.meta.pvol == pvol
                    && p.meta.svol == svol;
                if !same {
                    return Err(format!("pair '{pair}' already exists at site '{}' with other volumes or roles; delete it there or choose another pair name", self.name));
                }
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
                if let Some((other, _)) = inner.pair_of_volume(&svol) {
                    return Err(format!(
                        "volume '{svol}' at site '{}' already belongs to pair '{other}'",
                        self.name
                    ));
                }
            }
            let previous = inner
                .pairs
                .get(&pair)
                .map_or(PairState::Smpl, |p| p.meta.state);
            let meta = PairMeta {
                role: Role::Svol,
                state: PairState::Copy,
                mode,
                kind,
                peer: peer.into(),
                pvol,
                svol,
            };
            let entry = inner.pairs.entry(pair.clone()).or_insert(Pair {
                meta: meta.clone(),
                size,
                copy_running: false,
                copied: 0,
                copy_total: 0,
            });
            entry.meta = PairMeta {
                state: previous_or_copy(previous),
                ..meta
            };
            previous
        };
        self.save().map_err(|e| e.to_string())?;
        if previous == PairState::Smpl {
            tracing::info!(pair = %pair, peer, "attached as SVOL");
        }
        Ok(PeerReply::Attached { previous })
    }

    async fn apply_write(&self, pair: &str, offset: u64, data: &[u8]) -> Result<PeerReply, String> {
        let volume = {
            let inner = self.inner();
            let p = inner
                .pairs
                .get(pair)
                .ok_or_else(|| format!("no pair '{pair}' at site '{}'", self.name))?;
            if p.meta.role != Role::Svol {
                return Err(format!(
                    "pair '{pair}' at site '{}' is not an SVOL here; refusing a remote write",
                    self.name
                ));
            }
            inner.volume(&p.meta.svol).map_err(|e| e.to_string())?
        };
        let _order = volume.order.lock().await;
        volume
            .write(&self.io, offset, data)
            .await
            .map_err(|e| e.to_string())?;
        Ok(PeerReply::Done)
    }
}

/// What the PVOL's site asks the peer to attach for pair `name`.
fn attach_request(name: &str, meta: &PairMeta, size: u64) -> Attach {
    Attach {
        pair: name.into(),
        pvol: meta.pvol.clone(),
        svol: meta.svol.clone(),
        size,
        mode: meta.mode,
        kind: meta.kind,
    }
}

fn previous_or_copy(previous: PairState) -> PairState {
    // A re-attach keeps the state until the PVOL says otherwise; a new SVOL starts in COPY.
    if previous == PairState::Smpl {
        PairState::Copy
    } else {
        previous
    }
}

/// Whether hosts may write the local volume of a pair.
fn host_writable(meta: &PairMeta) -> bool {
    meta.role == Role::Pvol
}

fn backing_name(b: Backing) -> &'static str {
    match b {
        Backing::File => "file",
        Backing::Block => "block device",
    }
}

impl Handler for Site {
    async fn handle(&self, peer: &str, request: PeerRequest) -> Result<PeerReply, String> {
        match request {
            PeerRequest::Attach(request) => self.attach(peer, request),
            PeerRequest::Write { pair, offset, data } => {
                self.apply_write(&pair, offset, &data).await
            }
            PeerRequest::SetState { pair, state } => {
                let exists = self
                    .inner()
                    .pairs
                    .get(&pair)
                    .is_some_and(|p| p.meta.peer == peer);
                if !exists {
                    return Err(format!(
                        "no pair '{pair}' with site '{peer}' at site '{}'",
                        self.name
                    ));
                }
                let all = [
                    PairState::Smpl,
                    PairState::Copy,
                    PairState::Pair,
                    PairState::Psus,
                    PairState::Psue,
                    PairState::Ssws,
                ];
                self.set_state(
                    &pair,
                    &all,
                    state,
                    &format!("state set by the PVOL's site ({state})"),
                );
                Ok(PeerReply::Done)
            }
            PeerRequest::Detach { pair } => {
                let removed = {
                    let mut inner = self.inner();
                    match inner.pairs.get(&pair) {
                        Some(p) if p.meta.peer == peer => inner.pairs.remove(&pair).is_some(),
                        _ => false,
                    }
                };
                if removed {
                    self.save().map_err(|e| e.to_string())?;
                    tracing::info!(pair = %pair, peer, "pair dissolved by the peer site");
                }
                Ok(PeerReply::Done)
            }
        }
    }

    fn link_up(self: &Arc<Self>, peer: &str) {
        let site = Arc::clone(self);
        let peer = peer.to_string();
        tokio::spawn(async move { site.reattach(&peer).await });
    }

    fn link_down(self: &Arc<Self>, peer: &str) {
        let affected: Vec<String> = self
            .inner()
            .pairs
            .iter()
            .filter(|(_, p)| p.meta.peer == peer)
            .map(|(n, _)| n.clone())
            .collect();
        for pair in affected {
            self.suspend(&pair, &format!("remote link to '{peer}' lost"));
        }
    }
}

impl Site {
    /// After the link to `peer` comes up: re-attach its PVOL pairs; those in
    /// sync stay `PAIR`, the others are copied again.
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
            let attach = PeerRequest::Attach(attach_request(&name, &meta, size));
            if let Err(e) = link.call(attach, self.link.timeout()).await {
                tracing::warn!(pair = %name, "re-attach at '{peer}' failed: {e}");
                continue;
            }
            let in_sync = self
                .inner()
                .pairs
                .get(&name)
                .is_some_and(|p| p.meta.state == PairState::Pair);
            if in_sync {
                match link
                    .call(
                        PeerRequest::SetState {
                            pair: name.clone(),
                            state: PairState::Pair,
                        },
                        self.link.timeout(),
                    )
                    .await
                {
                    Ok(_) => tracing::info!(pair = %name, "re-attached; still in sync (PAIR)"),
                    Err(e) => self.suspend(&name, &e.to_string()),
                }
            } else {
                tracing::info!(pair = %name, "re-attached; copying the PVOL again");
                self.start_copy(&name);
            }
        }
    }
}
