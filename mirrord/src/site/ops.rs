//! The admin operations on pairs, as hbctl asks for them: create, set,
//! status, install, split, resync (also reversed), takeover, delete; each
//! refusal names the pair and the way out.

use std::sync::Arc;

use hbcore::control::{IntegrityOptions, PairCreate, PairInfo, PairSet, SplitBrainPolicy};
use hbcore::link::{Attach, Lane, PeerError, PeerReply, PeerRequest};
use hbcore::report::chain;
use hbcore::size::Bytes;
use hbcore::vocab::{
    Fence, Kind, Mode, PairSettings, PairState, Role, DEFAULT_C_MAX_RATE, DEFAULT_C_MIN_RATE,
    DEFAULT_SKEW,
};

use super::error::refused;
use super::generations::generation_info;
use super::registry::{bitmap_path, changed, illegal, transition, Pair, Registry};
use super::wire::Wire;
use super::{Site, SiteError};
use crate::bitmap::{DirtyMap, BLOCK};
use crate::config::check_name;
use crate::generation::{self, hex, Verdict};
use crate::link::LinkError;
use crate::meta::PairMeta;
use crate::pair::machine::{self, Event, SplitRefused};
use crate::pair::PairRt;

impl Site {
    /// Creates a pair with a local PVOL and an SVOL at a peer site, and starts the initial copy.
    pub async fn pair_create(self: &Arc<Self>, request: &PairCreate) -> Result<String, SiteError> {
        let PairCreate {
            name,
            pvol,
            peer,
            svol,
            kind,
            mode,
            options,
        } = request;
        let (name, pvol, peer, kind, mode) =
            (name.as_str(), pvol.as_str(), peer.as_str(), *kind, *mode);
        let svol = svol.as_deref();
        check_name("pair", name).map_err(SiteError::BadName)?;
        let mut settings = PairSettings {
            mode,
            fence: Fence::Never,
            skew: DEFAULT_SKEW,
            auto_resync: kind == Kind::Heartbeat,
            installed: kind == Kind::Heartbeat,
            c_max_rate: DEFAULT_C_MAX_RATE,
            c_min_rate: DEFAULT_C_MIN_RATE,
        };
        let mut integrity = IntegrityOptions::default();
        options.apply(&mut settings, &mut integrity);
        check_settings(&settings)?;
        let svol = svol.unwrap_or(pvol).to_string();
        let size = self.registry.room_for_pair(name, pvol, kind)?;
        let link = self.wire.peer(peer, Lane::of(kind))?;
        let meta = PairMeta {
            role: Role::Pvol,
            state: changed(name, Role::Pvol, PairState::Smpl, Event::Created)?.state,
            kind,
            settings,
            peer: peer.into(),
            pvol: pvol.into(),
            svol: svol.clone(),
            generations: Some(generation::new_pvol()),
            integrity,
            outdated: None,
        };
        // A pair of this name the peer kept (deleted here only, or created
        // there anew) holds data of its own: never copy over it unasked.
        let theirs = link
            .call(
                PeerRequest::Generations {
                    pair: name.into(),
                    generations: meta.generations(),
                    dirty_blocks: size.div_ceil(BLOCK),
                },
                self.wire.timeout(),
            )
            .await;
        match theirs {
            Ok(PeerReply::Generations { generations, .. }) => {
                if generation::compare(&meta.generations(), &generations) == Verdict::Unrelated {
                    return Err(SiteError::PeerHasOther {
                        pair: name.into(),
                        peer: peer.into(),
                        theirs: generations.current.map(hex).unwrap_or_default(),
                    });
                }
            }
            Ok(_) | Err(LinkError::Refused(_, PeerError::NoSuchPair { .. })) => {}
            Err(e) => return Err(e.into()),
        }
        link.call(
            PeerRequest::Attach(attach_request(name, &meta, size)),
            self.wire.timeout(),
        )
        .await?;
        let path = bitmap_path(self.registry.data_dir(), name);
        let _ = std::fs::remove_file(&path);
        let mut dirty = DirtyMap::open(&path, size)?;
        dirty.mark_all()?;
        let pair = Pair {
            meta,
            size,
            rt: Arc::new(PairRt::new(dirty)),
        };
        // Re-checked: another request may have raced us while we waited for the peer.
        if !self.registry.insert_new_pair(name, pvol, pair) {
            // The winner of the race attached the same pair name at the peer: leave it.
            return Err(SiteError::PairExists(name.into()));
        }
        self.registry.save()?;
        if integrity != IntegrityOptions::default() {
            self.tell_options(name).await?;
        }
        tracing::info!(pair = name, pvol, peer, svol = %svol, %mode, %kind, "pair created; initial copy starts");
        self.start_copy(name);
        self.ensure_shipper(name);
        Ok(format!(
            "pair '{name}' created: {pvol} -> {peer}:{svol}, {mode}, {kind}; initial copy of {} under way (COPY); `hbctl pair status {name} --watch` shows progress",
            Bytes(size)
        ))
    }

    /// Changes settings of a live pair, here and (if reachable) at the peer.
    pub async fn pair_set(self: &Arc<Self>, request: &PairSet) -> Result<String, SiteError> {
        let PairSet {
            name,
            mode,
            options,
        } = request;
        let name = name.as_str();
        let before = self.registry.work(name)?;
        let mut settings = before.meta.settings;
        settings.mode = mode.unwrap_or(settings.mode);
        let mut integrity = before.meta.integrity;
        options.apply(&mut settings, &mut integrity);
        let mut integrity_note = String::new();
        if integrity != before.meta.integrity {
            self.registry.adopt_options(name, integrity);
            if self.tell_options(name).await.is_err() {
                integrity_note =
                    " (integrity options here only until the next change: the peer was not told)"
                        .into();
            }
        }
        check_settings(&settings)?;
        let note = self.apply_settings(name, settings).await;
        if before.meta.settings.mode != settings.mode {
            before.rt.reset_in_flight_max();
        }
        Ok(format!(
            "pair '{name}': mode {}, fence {}, skew {}, auto-resync {}, copy rate {}, checksum resync {}, split brain {}{note}{integrity_note}",
            settings.mode,
            settings.fence,
            Bytes(settings.skew),
            on_off(settings.auto_resync),
            rates(&settings),
            on_off(integrity.checksum_resync),
            split_brain_name(integrity.split_brain),
        ))
    }

    /// Applies new settings here and tells the peer; returns a note for the answer.
    async fn apply_settings(self: &Arc<Self>, name: &str, settings: PairSettings) -> String {
        let Some(before) = self.registry.meta_of(name) else {
            return String::new();
        };
        self.adopt_settings(name, settings);
        tracing::info!(pair = name, mode = %settings.mode, fence = %settings.fence, skew = settings.skew, auto_resync = settings.auto_resync, installed = settings.installed, "settings changed");
        let told = match self.wire.link_of(&before) {
            Ok(link) => link
                .call(
                    PeerRequest::Update {
                        pair: name.into(),
                        state: None,
                        settings: Some(settings),
                    },
                    self.wire.timeout(),
                )
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        match told {
            Ok(()) => String::new(),
            Err(e) => format!(
                " (here only: {}; the peer takes the PVOL site's settings when the link returns)",
                chain(&e)
            ),
        }
    }

    /// Takes new settings locally; a mode change away from adaptive ships what the queue held.
    pub(super) fn adopt_settings(self: &Arc<Self>, name: &str, settings: PairSettings) {
        let Some(before) = self.registry.meta_of(name) else {
            return;
        };
        self.registry.update(name, |m| m.settings = settings);
        if before.settings.mode == Mode::Adaptive
            && settings.mode != Mode::Adaptive
            && before.role == Role::Pvol
        {
            // Writes queued or tracked by adaptive mode are shipped by a copy pass.
            if let Ok(w) = self.registry.work(name) {
                w.rt.queue().clear();
                if w.rt.dirty().dirty_blocks() > 0 {
                    let shipping = self.registry.change_state(
                        name,
                        Event::AdaptiveDrained,
                        "mode changed: shipping what adaptive mode held (COPY)",
                    );
                    match shipping {
                        Ok(true) => self.start_copy(name),
                        Ok(false) => {}
                        Err(e) => tracing::error!("{}", chain(&e)),
                    }
                }
            }
        }
        if settings.mode == Mode::Adaptive {
            self.ensure_shipper(name);
        }
    }

    /// Pair status, of one pair or all.
    pub fn pair_status(&self, name: Option<&str>) -> Result<Vec<PairInfo>, SiteError> {
        self.registry.status(name, &self.wire)
    }

    /// Marks a heartbeat pair installed for heartbeats (protected) or not.
    pub async fn pair_install(
        self: &Arc<Self>,
        name: &str,
        installed: bool,
    ) -> Result<String, SiteError> {
        let meta = self.registry.pair_meta(name)?;
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
        let meta = self.registry.pair_meta(name)?;
        self.check_protection(&meta, name, force, "split")?;
        self.registry.refuse_if_outdated(name)?;
        match machine::may_split(meta.state) {
            Err(SplitRefused::Already) => return Err(refused(format!("pair '{name}' is split already (PSUS); `hbctl pair resync {name}` joins it again"))),
            Err(SplitRefused::TakenOver) => return Err(refused(format!("pair '{name}' was taken over (SSWS); fail back with `hbctl pair resync {name} --reverse`, or `hbctl pair resync {name}` at the PVOL's site to discard the SVOL's changes"))),
            Err(SplitRefused::Copying) => return Err(refused(format!("pair '{name}' is copying (COPY): its SVOL is no consistent copy to split off yet; split it once it is PAIR (`hbctl pair status {name} --watch`), or dissolve it with `hbctl pair delete {name}`"))),
            Err(SplitRefused::Illegal(e)) => return Err(illegal(name, e)),
            Ok(()) => {}
        }
        let link = self.wire.link_of(&meta)?;
        let note = match meta.role {
            Role::Pvol => {
                let consistent = self.split_here(name).await?;
                match link.call(PeerRequest::Update { pair: name.into(), state: Some(PairState::Psus), settings: None }, self.wire.timeout()).await {
                    Ok(_) => consistent,
                    Err(e) => format!("{consistent}; site '{}' not told ({}): its SVOL stays read-only until the link returns and the pair is split again", meta.peer, chain(&e)),
                }
            }
            Role::Svol => match link
                .call(
                    PeerRequest::Split { pair: name.into() },
                    self.wire.timeout() * 4,
                )
                .await
            {
                Ok(_) => {
                    self.registry.change_state(
                        name,
                        Event::SplitSvol(meta.state),
                        "split (PSUS); the SVOL is writable here, changes tracked",
                    )?;
                    "the SVOL holds everything the PVOL had written".into()
                }
                Err(LinkError::Down(_)) => {
                    self.registry.change_state(
                        name,
                        Event::SplitSvol(meta.state),
                        "split here only (PSUS): the PVOL's site is unreachable",
                    )?;
                    format!("split here only: site '{}' is unreachable, so the SVOL may lack its latest writes", meta.peer)
                }
                Err(e) => return Err(e.into()),
            },
        };
        Ok(format!("pair '{name}' split (PSUS): {note}; both sides track changes, `hbctl pair resync {name}` joins it again"))
    }

    /// At the PVOL: drains what is pending to the SVOL (if mirroring), then PSUS. Returns a note.
    pub(super) async fn split_here(self: &Arc<Self>, name: &str) -> Result<String, SiteError> {
        let w = self.registry.work(name)?;
        // Refuse before draining anything: a pair still copying cannot be split.
        transition(name, w.meta.state, PairState::Psus)?;
        let _order = w.volume.order.lock().await;
        Wire::settle_semi(&w.rt).await;
        let mirrored = self
            .registry
            .meta_of(name)
            .is_some_and(|m| m.state == PairState::Pair);
        let note = if mirrored {
            w.rt.queue().clear();
            match self.pipeline().ship_dirty(name, &w, true, false).await {
                Ok(_) => "the SVOL holds everything written before the split".to_string(),
                Err(e) => format!("the SVOL may lack writes before the split ({})", chain(&e)),
            }
        } else {
            "the pair was not in PAIR, so the SVOL is not a consistent copy".to_string()
        };
        w.rt.queue().clear();
        self.registry
            .change_state(name, Event::Split, "split (PSUS); changes tracked")?;
        Ok(note)
    }

    /// At the SVOL's site: make the SVOL writable (SSWS), also when the PVOL's site is gone.
    pub async fn pair_takeover(self: &Arc<Self>, name: &str) -> Result<String, SiteError> {
        let meta = self.registry.pair_meta(name)?;
        if meta.role != Role::Svol {
            return Err(refused(format!(
                "pair '{name}' has its PVOL here; take over at site '{}', which holds the SVOL",
                meta.peer
            )));
        }
        if meta.state == PairState::Ssws {
            return Ok(format!("pair '{name}' is taken over already (SSWS)"));
        }
        self.registry.change_state(
            name,
            Event::Takeover(meta.state),
            "taken over (SSWS): the SVOL is writable here, changes tracked",
        )?;
        self.registry.diverge(name, "taken over (SSWS)")?;
        let told = match self.wire.link_of(&meta) {
            Ok(link) => link
                .call(
                    PeerRequest::Takeover { pair: name.into() },
                    self.wire.timeout(),
                )
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        let note = match told {
            Ok(()) => format!("site '{}' was told and suspended its PVOL", meta.peer),
            Err(e) => format!("site '{}' could not be told ({})", meta.peer, chain(&e)),
        };
        Ok(format!(
            "pair '{name}' taken over (SSWS): volume '{}' is writable here; {note}. When both sites are back, `hbctl pair resync {name} --reverse` here makes this the PVOL and copies back only what changed",
            meta.svol
        ))
    }

    /// Dissolves a pair at both sites (or only here with `force` when the peer is unreachable).
    pub async fn pair_delete(&self, name: &str, force: bool) -> Result<String, SiteError> {
        let meta = self.registry.pair_meta(name)?;
        self.check_protection(&meta, name, force, "delete")?;
        let told = match self.wire.link_of(&meta) {
            Ok(link) => {
                link.call(
                    PeerRequest::Detach { pair: name.into() },
                    self.wire.timeout(),
                )
                .await
            }
            Err(e) => Err(e),
        };
        let note = match told {
            Ok(_) => String::new(),
            Err(e) if force => {
                tracing::warn!(
                    pair = name,
                    "pair dissolved here only (--force): {}",
                    chain(&e)
                );
                format!(" here only (site '{}' keeps its half until `hbctl pair delete {name}` runs there)", meta.peer)
            }
            Err(source) => {
                return Err(SiteError::PeerUnreachable {
                    pair: name.into(),
                    source,
                })
            }
        };
        self.registry.remove_pair(name);
        tracing::info!(pair = name, "pair dissolved{note}");
        Ok(format!(
            "pair '{name}' dissolved{note}; its volumes are SMPL"
        ))
    }
}

/// Pair status reads the record and the links, nothing else.
impl Registry {
    /// Pair status, of one pair or all: the record, and each pair's link
    /// as `wire` sees it.
    fn status(&self, name: Option<&str>, wire: &Wire) -> Result<Vec<PairInfo>, SiteError> {
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
                    outdated: p.meta.outdated.is_some(),
                    outdated_reason: p.meta.outdated.as_ref().map(|o| o.reason()),
                    mode: p.meta.settings.mode,
                    kind: p.meta.kind,
                    peer: p.meta.peer.clone(),
                    pvol: p.meta.pvol.clone(),
                    svol: p.meta.svol.clone(),
                    size: p.size,
                    fence: p.meta.settings.fence,
                    skew: p.meta.settings.skew,
                    c_max_rate: p.meta.settings.c_max_rate,
                    c_min_rate: p.meta.settings.c_min_rate,
                    auto_resync: p.meta.settings.auto_resync,
                    installed: p.meta.settings.installed,
                    link_up: wire.link_of(&p.meta).is_ok_and(|l| l.is_up()),
                    link_rtt_us: wire
                        .link_of(&p.meta)
                        .ok()
                        .and_then(|l| l.stats.rtt())
                        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
                    link_frames_rejected: wire
                        .link_of(&p.meta)
                        .map(|l| l.stats.rejected())
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(reason, n)| (reason.to_string(), n))
                        .collect(),
                    pending_bytes: pending,
                    queued_bytes: queued,
                    oldest_pending_ms: oldest.map(|d| d.as_millis() as u64),
                    max_in_flight: p.rt.max_in_flight(),
                    copy: p.rt.copy_progress(),
                    checksum_resync: p.meta.integrity.checksum_resync,
                    split_brain: p.meta.integrity.split_brain,
                    generation: generation_info(&p.meta.generations()),
                    verdict: p.rt.verdict(),
                    verify: p.rt.verify_progress(),
                }
            })
            .collect())
    }
}

/// The copy rates as `pair set` says them.
fn rates(s: &PairSettings) -> String {
    let per_s = |r: u64| format!("{}/s", Bytes(r));
    let ceiling = match s.c_max_rate {
        0 => "no ceiling".to_string(),
        r => format!("ceiling {}", per_s(r)),
    };
    match s.c_min_rate {
        0 => format!("{ceiling}, not slowed by host I/O"),
        r => format!("{ceiling}, at least {} under competing host I/O", per_s(r)),
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
    for (knob, rate) in [("c-max-rate", s.c_max_rate), ("c-min-rate", s.c_min_rate)] {
        if rate != 0 && rate < BLOCK {
            return Err(refused(format!(
                "{knob} {rate} bytes per second is below one block (4KiB) per second; choose e.g. 100MiB, or 0 for {}",
                if knob == "c-max-rate" { "no ceiling" } else { "a copy not slowed by host I/O" }
            )));
        }
    }
    if s.skew < BLOCK {
        return Err(refused(format!(
            "skew {} is below one block (4KiB); choose e.g. 4MiB",
            s.skew
        )));
    }
    Ok(())
}

/// What the PVOL's site asks the peer to attach for pair `name`.
pub(super) fn attach_request(name: &str, meta: &PairMeta, size: u64) -> Attach {
    Attach {
        pair: name.into(),
        pvol: meta.pvol.clone(),
        svol: meta.svol.clone(),
        size,
        kind: meta.kind,
        settings: meta.settings,
    }
}

fn split_brain_name(p: SplitBrainPolicy) -> String {
    serde_json::to_value(p)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}
