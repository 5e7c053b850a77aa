//! Generations at the site: kept in each pair's record (`meta.json`),
//! changed at the events that can make the copies diverge, exchanged with
//! the peer at every (re)connect and resync, and compared
//! ([`crate::generation`]); the verdict is recorded for `pair status` and
//! said in the log once each time it changes.
//!
//! Keeping them is the record's (`impl Registry`: changed, diverged, the
//! verdict recorded, the peer's comparison answered); the exchange with
//! the peer is the site's (`impl Site`: compare, join, tell the options).

use hbcore::control::{GenerationInfo, IntegrityOptions, VerdictInfo, VerdictKind};
use hbcore::link::{Generations, PeerError, PeerReply, PeerRequest};
use hbcore::report::chain;
use hbcore::vocab::{PairState, Role};

use super::error::refused;
use super::registry::Registry;
use super::{Site, SiteError};
use crate::generation::{self, hex, Side, Verdict};
use crate::meta::PairMeta;

/// Both sites' generations compared, with what goes with them.
pub(super) struct Compared {
    /// The verdict, seen from this site.
    pub verdict: Verdict,
    /// Blocks this site's bitmap holds.
    pub local_dirty: u64,
    /// Blocks the peer's bitmap holds.
    pub peer_dirty: u64,
    /// The pair's state at the peer.
    pub peer_state: PairState,
    /// The verdict in words.
    pub detail: String,
}

/// What `pair status` shows of a site's generations.
pub(super) fn generation_info(g: &Generations) -> GenerationInfo {
    GenerationInfo {
        current: g.current.map(hex),
        bitmap: g.bitmap.map(hex),
        history: g.history.iter().copied().map(hex).collect(),
    }
}

impl Registry {
    /// Changes this site's generations of `pair`; if anything changed, the
    /// record is persisted (durably) before this returns. True if changed.
    pub(super) fn change_generations(
        &self,
        pair: &str,
        change: impl FnOnce(&mut Generations) -> bool,
    ) -> Result<bool, SiteError> {
        let changed = {
            let mut inner = self.inner();
            match inner.pairs.get_mut(pair) {
                Some(p) => change(p.meta.generations.get_or_insert_with(Generations::default)),
                None => false,
            }
        };
        if changed {
            self.save()?;
        }
        Ok(changed)
    }

    /// This site writes on its own from now on (`why`): a new generation if
    /// its current one may be shared, on disk before the write it precedes.
    pub(super) fn diverge(&self, pair: &str, why: &str) -> Result<(), SiteError> {
        if self.change_generations(pair, generation::diverge)? {
            let g = self
                .meta_of(pair)
                .map(|m| m.generations())
                .unwrap_or_default();
            tracing::info!(
                pair,
                generation = %g.current.map(hex).unwrap_or_default(),
                since = %g.bitmap.map(hex).unwrap_or_default(),
                "new generation: {why}; this site's changes are tracked from the generation both sites shared"
            );
        }
        Ok(())
    }

    /// Records `verdict` (seen from this site) for `pair status`, and says
    /// it in the log when it changed. Returns it in words.
    pub(super) fn record_verdict(
        &self,
        here: &str,
        name: &str,
        meta: &PairMeta,
        verdict: Verdict,
        local_dirty: u64,
        peer_dirty: u64,
    ) -> String {
        let info = verdict_info(here, name, meta, verdict, local_dirty, peer_dirty);
        let detail = info.detail.clone();
        let Ok(w) = self.work(name) else {
            return detail;
        };
        let before = w.rt.set_verdict(info.clone());
        let same = before.is_some_and(|b| {
            (b.kind, &b.ahead, b.full_copy) == (info.kind, &info.ahead, info.full_copy)
        });
        if !same {
            match info.kind {
                VerdictKind::SplitBrain | VerdictKind::Unrelated => {
                    tracing::error!(pair = name, verdict = ?info.kind, "{detail}")
                }
                _ if info.full_copy => tracing::warn!(pair = name, "{detail}"),
                _ => tracing::info!(pair = name, "generations compared: {detail}"),
            }
        }
        detail
    }

    /// The peer compares generations: record the verdict here too and answer with ours.
    pub(super) fn answer_generations(
        &self,
        here: &str,
        meta: &PairMeta,
        pair: &str,
        theirs: &Generations,
        their_dirty: u64,
    ) -> Result<PeerReply, PeerError> {
        let local_dirty = self.work(pair)?.rt.dirty().dirty_blocks();
        let verdict = generation::judge(&meta.generations(), theirs, local_dirty, their_dirty);
        self.record_verdict(here, pair, meta, verdict, local_dirty, their_dirty);
        Ok(PeerReply::Generations {
            generations: meta.generations(),
            dirty_blocks: local_dirty,
            state: meta.state,
        })
    }

    /// At the SVOL: the copy from the PVOL is complete; its data is of `generation` now.
    pub(super) fn join_as_target(
        &self,
        here: &str,
        pair: &str,
        generation: u64,
    ) -> Result<(), SiteError> {
        self.change_generations(pair, |g| {
            generation::joined_as_target(g, generation);
            true
        })?;
        self.record_in_sync(here, pair);
        Ok(())
    }

    /// Takes new integrity options locally.
    pub(super) fn adopt_options(&self, name: &str, options: IntegrityOptions) {
        self.update(name, |m| m.integrity = options);
    }

    /// Records that both sites hold the same generation now (`here` is this site).
    fn record_in_sync(&self, here: &str, name: &str) {
        if let Some(meta) = self.meta_of(name) {
            if let Some(common) = meta.generations().current {
                self.record_verdict(here, name, &meta, Verdict::InSync { common }, 0, 0);
            }
        }
    }
}

impl Site {
    /// Asks the peer for its generations of `name` and compares them with
    /// this site's; the verdict is recorded at both sites.
    pub(super) async fn compare_with_peer(&self, name: &str) -> Result<Compared, SiteError> {
        let meta = self.registry.pair_meta(name)?;
        let local_dirty = self.registry.work(name)?.rt.dirty().dirty_blocks();
        let link = self.wire.link_of(&meta)?;
        let request = PeerRequest::Generations {
            pair: name.into(),
            generations: meta.generations(),
            dirty_blocks: local_dirty,
        };
        let PeerReply::Generations {
            generations,
            dirty_blocks: peer_dirty,
            state: peer_state,
        } = link.call(request, self.wire.timeout()).await?
        else {
            return Err(refused(format!(
                "site '{}' answered the comparison of generations of '{name}' with something else",
                meta.peer
            )));
        };
        let verdict = generation::judge(&meta.generations(), &generations, local_dirty, peer_dirty);
        let detail =
            self.registry
                .record_verdict(&self.name, name, &meta, verdict, local_dirty, peer_dirty);
        Ok(Compared {
            verdict,
            local_dirty,
            peer_dirty,
            peer_state,
            detail,
        })
    }

    /// At the PVOL: the copy is complete; tells the SVOL the generation both share now.
    pub(super) async fn join(&self, name: &str) -> Result<(), SiteError> {
        let meta = self.registry.pair_meta(name)?;
        let Some(current) = meta.generations().current else {
            return Err(refused(format!(
                "pair '{name}' has no generation of its own at this site; `hbctl pair status {name}` shows its generations"
            )));
        };
        self.wire
            .link_of(&meta)?
            .call(
                PeerRequest::Join {
                    pair: name.into(),
                    generation: current,
                },
                self.wire.timeout(),
            )
            .await?;
        self.registry
            .change_generations(name, generation::joined_as_source)?;
        self.registry.record_in_sync(&self.name, name);
        Ok(())
    }

    /// Tells the peer the pair's integrity options (best effort: they follow
    /// again at the next change).
    pub(super) async fn tell_options(&self, name: &str) -> Result<(), SiteError> {
        let meta = self.registry.pair_meta(name)?;
        self.wire
            .link_of(&meta)?
            .call(
                PeerRequest::Options {
                    pair: name.into(),
                    options: meta.integrity,
                },
                self.wire.timeout(),
            )
            .await
            .map(|_| ())
            .map_err(|e| {
                tracing::warn!(
                    pair = name,
                    "integrity options not told to the peer: {}",
                    chain(&e)
                );
                e.into()
            })
    }
}

/// The verdict for `pair status`, with the sites named and the way out.
fn verdict_info(
    here: &str,
    name: &str,
    meta: &PairMeta,
    verdict: Verdict,
    local_dirty: u64,
    peer_dirty: u64,
) -> VerdictInfo {
    let there = meta.peer.as_str();
    let site = |side: Side| match side {
        Side::Local => here,
        Side::Remote => there,
    };
    let (pvol_site, svol_site, pvol_dirty) = match meta.role {
        Role::Pvol => (here, there, local_dirty),
        Role::Svol => (there, here, peer_dirty),
    };
    let common = verdict.common().map(hex);
    let since = common.clone().unwrap_or_else(|| "-".into());
    let (kind, ahead, detail) = match verdict {
        Verdict::InSync { .. } if local_dirty + peer_dirty == 0 => (
            VerdictKind::InSync,
            None,
            format!("in sync: both sites hold generation {since}"),
        ),
        Verdict::InSync { .. } => (
            VerdictKind::Ahead,
            Some(pvol_site.to_string()),
            format!(
                "both sites hold generation {since}; site '{pvol_site}' (PVOL) has {pvol_dirty} block(s) not yet at site '{svol_site}': a resync copies them from '{pvol_site}' to '{svol_site}'"
            ),
        ),
        Verdict::Ahead { side, full, common } => {
            let (a, b) = (site(side), site(other(side)));
            let changed = if side == Side::Local { local_dirty } else { peer_dirty };
            let detail = if full {
                format!(
                    "site '{a}' is ahead of site '{b}' by more than its bitmap covers: the record at '{b}' is older than the generations '{a}' went through since {since} (its meta.json restored from a backup, or the pair lost there); a resync copies the whole volume from '{a}' to '{b}' and nothing is copied by itself"
                )
            } else if common.is_none() {
                format!(
                    "a copy from site '{a}' to site '{b}' is incomplete; a resync from '{a}' continues it"
                )
            } else {
                format!(
                    "site '{a}' is ahead: it wrote {changed} block(s) since generation {since}, which site '{b}' still holds; a resync copies them from '{a}' to '{b}'"
                )
            };
            (VerdictKind::Ahead, Some(a.to_string()), detail)
        }
        Verdict::SplitBrain { full, .. } => (
            VerdictKind::SplitBrain,
            None,
            format!(
                "split brain: both sites wrote since their common generation {since} ('{here}': {local_dirty} block(s), '{there}': {peer_dirty}){}; nothing is copied until a person chooses whose data to keep: site '{there}''s with `hbctl pair resync {name} --discard-local` at '{here}' (or --discard-remote at '{there}'), site '{here}''s with `hbctl pair resync {name} --discard-remote` at '{here}' (or --discard-local at '{there}')",
                if full { "; the bitmaps do not cover it all, so the resync copies the whole volume" } else { "" }
            ),
        ),
        Verdict::Unrelated => (
            VerdictKind::Unrelated,
            None,
            format!(
                "unrelated data: the records of pair '{name}' at '{here}' and '{there}' share no generation (the pair was deleted and created anew at one site, or a volume replaced); the pair is not resumed. Keep one side's data with `hbctl pair resync {name} --discard-local` or `--discard-remote` (copies the whole volume), or dissolve the pair"
            ),
        ),
    };
    VerdictInfo {
        kind,
        full_copy: verdict.full_copy() && kind != VerdictKind::InSync,
        ahead,
        common,
        local_changed_blocks: local_dirty,
        peer_changed_blocks: peer_dirty,
        detail,
    }
}

fn other(side: Side) -> Side {
    match side {
        Side::Local => Side::Remote,
        Side::Remote => Side::Local,
    }
}
