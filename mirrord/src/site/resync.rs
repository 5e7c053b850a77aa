//! Resync: from the PVOL (`pair resync`), reversed (`--reverse`, at the
//! site that took over), or with a person's choice of the data to keep
//! after a split brain (`--discard-local`, `--discard-remote`, at either
//! site). Each first compares both sites' generations: a plain resync goes
//! ahead only where they agree on the direction, or the divergence is a
//! person's split; everything else needs the explicit choice.

use std::sync::Arc;

use hbcore::control::PairResync;
use hbcore::link::{PeerReply, PeerRequest};
use hbcore::size::Bytes;
use hbcore::vocab::{PairState, Role};

use super::error::refused;
use super::generations::Compared;
use super::{Site, SiteError};
use crate::bitmap::BLOCK;
use crate::generation::Verdict;
use crate::pair::machine::{self, Event, ReverseRefused};

/// Whose data a resync from the PVOL keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Keep {
    /// A plain resync (or one by itself): the PVOL's, where the generations allow it.
    AsUsual,
    /// A person chose the PVOL's data, whatever the generations say.
    Pvol,
}

impl Site {
    /// Resyncs from the PVOL the blocks dirty on either side; with `reverse`
    /// (at the site that took over) the roles swap first.
    pub async fn pair_resync(
        self: &Arc<Self>,
        name: &str,
        reverse: bool,
    ) -> Result<String, SiteError> {
        self.resync_as_asked(&PairResync {
            name: name.into(),
            reverse,
            discard_local: false,
            discard_remote: false,
        })
        .await
    }

    /// Resyncs a pair as `pair resync` asks (see [`PairResync`]).
    pub async fn resync_as_asked(
        self: &Arc<Self>,
        request: &PairResync,
    ) -> Result<String, SiteError> {
        let PairResync {
            name,
            reverse,
            discard_local,
            discard_remote,
        } = request;
        let name = name.as_str();
        let meta = self.registry.pair_meta(name)?;
        let link = Arc::clone(self.wire.link_of(&meta)?);
        if usize::from(*reverse) + usize::from(*discard_local) + usize::from(*discard_remote) > 1 {
            return Err(refused(format!(
                "pair '{name}': choose one of --reverse, --discard-local and --discard-remote"
            )));
        }
        if *reverse || (*discard_remote && meta.role == Role::Svol) {
            return self.reverse_here(name, *discard_remote).await;
        }
        if *discard_local {
            // The other site's data wins: it resyncs from its side.
            link.call(
                PeerRequest::KeepYours { pair: name.into() },
                self.wire.timeout() * 4,
            )
            .await?;
            return Ok(match meta.role {
                Role::Pvol => format!(
                    "pair '{name}': this site's changes are discarded; site '{}' keeps its data, became the PVOL and copies it here (COPY)",
                    meta.peer
                ),
                Role::Svol => format!(
                    "pair '{name}': this site's changes are discarded; site '{}' copies the PVOL's data here (COPY)",
                    meta.peer
                ),
            });
        }
        match meta.role {
            Role::Pvol => {
                if !*discard_remote {
                    if let Err(outdated) = self.registry.refuse_if_outdated(name) {
                        // Its data would overwrite the site that took over: a
                        // person chooses (said as a split brain when it is one).
                        let c = self.compare_with_peer(name).await?;
                        plain_resync_allowed(name, meta.state, &c)?;
                        return Err(outdated);
                    }
                }
                let keep = if *discard_remote {
                    Keep::Pvol
                } else {
                    Keep::AsUsual
                };
                let bytes = self.resync_here(name, keep).await?;
                let discarded = if *discard_remote {
                    format!("; site '{}''s changes are discarded", meta.peer)
                } else {
                    String::new()
                };
                Ok(format!("pair '{name}' resyncing: {} to copy (COPY){discarded}; `hbctl pair status {name} --watch` shows progress", Bytes(bytes)))
            }
            Role::Svol => {
                link.call(
                    PeerRequest::Resync { pair: name.into() },
                    self.wire.timeout() * 4,
                )
                .await?;
                Ok(format!("pair '{name}' resyncing from site '{}' (COPY); this site's changes are overwritten", meta.peer))
            }
        }
    }

    /// At the PVOL: compares generations, merges the SVOL's bitmap (or marks
    /// everything for a full copy), puts both sides in COPY and starts the
    /// copy. Returns the bytes to copy.
    pub(super) async fn resync_here(
        self: &Arc<Self>,
        name: &str,
        keep: Keep,
    ) -> Result<u64, SiteError> {
        let w = self.registry.work(name)?;
        if w.meta.role != Role::Pvol {
            return Err(refused(format!(
                "pair '{name}' has its SVOL here; a resync copies from the PVOL at site '{}'",
                w.meta.peer
            )));
        }
        if w.meta.state == PairState::Pair && w.rt.dirty().dirty_blocks() == 0 {
            return Ok(0);
        }
        let compared = self.compare_with_peer(name).await?;
        let full = match keep {
            Keep::Pvol => compared.verdict.full_copy(),
            Keep::AsUsual => plain_resync_allowed(name, w.meta.state, &compared)?,
        };
        if let Verdict::SplitBrain { .. } = compared.verdict {
            tracing::warn!(
                pair = name,
                "split brain resolved: the {} block(s) site '{}' changed are discarded, the PVOL's data is kept",
                compared.peer_dirty,
                w.meta.peer
            );
        }
        if full {
            tracing::warn!(
                pair = name,
                "a full copy: the bitmaps do not cover the difference"
            );
            w.rt.dirty().mark_all()?;
        }
        let link = self.wire.link_of(&w.meta)?;
        let timeout = self.wire.timeout();
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
        self.registry
            .change_state(name, Event::ResyncStarted, "resync started (COPY)")?;
        self.registry
            .clear_outdated(name, "a resync from this site: its data is kept");
        let bytes = w.rt.dirty().dirty_blocks() * BLOCK;
        self.start_copy(name);
        Ok(bytes)
    }

    /// At the SVOL's site: makes this site's volume the PVOL and copies the
    /// blocks changed on either side to the old PVOL (its changes are
    /// discarded). `chosen`: a person chose this site's data (`--discard-remote`
    /// here, `--discard-local` there), whatever the generations say.
    pub(super) async fn reverse_here(
        self: &Arc<Self>,
        name: &str,
        chosen: bool,
    ) -> Result<String, SiteError> {
        let meta = self.registry.pair_meta(name)?;
        if !machine::may_reverse(&meta, chosen) {
            return Err(refused(format!(
                "`pair resync --reverse` runs at the site that took pair '{name}' over (its SVOL, in SSWS); here the pair is {} in {}",
                meta.role, meta.state
            )));
        }
        let compared = self.compare_with_peer(name).await?;
        match machine::reverse_allowed(compared.verdict, chosen) {
            Err(ReverseRefused::NothingToKeep) => {
                return Err(SiteError::Diverged {
                    pair: name.into(),
                    detail: format!("{}; this site holds no consistent copy to keep", compared.detail),
                })
            }
            Err(ReverseRefused::Diverged) => {
                return Err(SiteError::Diverged {
                    pair: name.into(),
                    detail: format!(
                        "{}; `hbctl pair resync {name} --discard-remote` here keeps this site's data anyway",
                        compared.detail
                    ),
                })
            }
            Ok(()) => {}
        }
        let full = compared.verdict.full_copy();
        self.registry.diverge(
            name,
            "the roles reverse: this site's data becomes the PVOL's",
        )?;
        let link = self.wire.link_of(&meta)?;
        let bits = match link
            .call(
                PeerRequest::Reverse { pair: name.into() },
                self.wire.timeout(),
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
        let w = self.registry.work(name)?;
        w.rt.dirty().merge(&bits)?;
        if full {
            w.rt.dirty().mark_all()?;
        }
        self.registry.swap_roles(name, Role::Pvol)?;
        tracing::info!(pair = name, "roles reversed: this site holds the PVOL now; copying the blocks changed on either side");
        let bytes = w.rt.dirty().dirty_blocks() * BLOCK;
        self.start_copy(name);
        self.ensure_shipper(name);
        Ok(format!(
            "pair '{name}' reversed: this site's volume is the PVOL now; copying {} changed on either side to site '{}' (COPY)",
            Bytes(bytes),
            meta.peer
        ))
    }

    /// A person at the peer chose this site's data (`--discard-local` there).
    pub(super) async fn keep_mine(self: &Arc<Self>, name: &str) -> Result<(), SiteError> {
        let meta = self.registry.pair_meta(name)?;
        match meta.role {
            Role::Pvol => self.resync_here(name, Keep::Pvol).await.map(|_| ()),
            Role::Svol => self.reverse_here(name, true).await.map(|_| ()),
        }
    }
}

/// Whether a plain resync (the PVOL's data wins) may go ahead at the PVOL in
/// `state` after `compared`; if so, whether it copies the whole volume.
fn plain_resync_allowed(
    name: &str,
    state: PairState,
    compared: &Compared,
) -> Result<bool, SiteError> {
    let allowed = machine::plain_resync(state, compared.verdict, compared.peer_state);
    allowed.ok_or_else(|| SiteError::Diverged {
        pair: name.into(),
        detail: format!(
            "{}. A plain resync copies from the PVOL and would discard the other side's data without that choice",
            compared.detail
        ),
    })
}
