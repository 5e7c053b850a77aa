//! The fence at the site: a PVOL learns that its SVOL was taken over and
//! becomes *outdated* ([`crate::fence::Outdated`], persisted in the pair's
//! record, state PSUE), refusing host writes with `EROFS` until a person
//! resolves the pair. Called from host-write tasks (a write refused for
//! SSWS), the link's tasks (the peer's takeover request, the reconnect's
//! exchange) and the control socket (hbd's step-down: `pair outdate`).
//!
//! The mark is the record's (`impl Registry`: marked, cleared, read); the
//! fence is the site's (`impl Site`: marked, then the generations compared
//! again with the peer once the writes under way landed).

use std::sync::Arc;

use hbcore::link::PeerError;
use hbcore::report::chain;
use hbcore::vocab::{PairState, Role};

use super::registry::Registry;
use super::{Site, SiteError};
use crate::fence::Outdated;
use crate::link::LinkError;
use crate::pair::machine;

/// The site that refused a write because it took the pair over (SSWS), if
/// that is what `e` says.
pub(super) fn taken_over_by(e: &LinkError) -> Option<&str> {
    match e {
        LinkError::Refused(
            site,
            PeerError::WrongState {
                state: PairState::Ssws,
                ..
            },
        ) => Some(site),
        _ => None,
    }
}

impl Registry {
    /// Marks this site's PVOL of `pair` outdated (and PSUE), learned `how`,
    /// on disk before it returns; its adaptive queue is dropped (the blocks
    /// stay dirty). Nothing for an SVOL or a pair outdated already. True if
    /// it became outdated now.
    pub(super) fn mark_outdated(&self, pair: &str, by: &str, how: &str) -> bool {
        let marked = {
            let mut inner = self.inner();
            match inner.pairs.get_mut(pair) {
                Some(p) => machine::outdate(&p.meta).map(|state| {
                    p.meta.state = state;
                    let record = Outdated::now(by, how);
                    let reason = record.reason();
                    p.meta.outdated = Some(record);
                    (reason, Arc::clone(&p.rt))
                }),
                None => None,
            }
        };
        let Some((reason, rt)) = marked else {
            return false;
        };
        rt.queue().clear();
        if let Err(e) = self.save() {
            // The fence holds in memory; said loudly, as a restart would lose it.
            tracing::error!(
                pair,
                "the outdated mark could not be persisted: {}",
                chain(&e)
            );
        }
        tracing::error!(
            pair,
            "pair outdated (PSUE): {reason}; host writes are refused (EROFS) until a person resolves it: `hbctl pair resync {pair} --discard-local` here keeps site '{by}''s data, or `hbctl pair resync {pair} --reverse` at '{by}'"
        );
        true
    }

    /// The pair is resolved (`why`): host writes are taken again as its
    /// state allows.
    pub(super) fn clear_outdated(&self, pair: &str, why: &str) {
        let mut cleared = false;
        self.update(pair, |m| cleared = m.outdated.take().is_some());
        if cleared {
            tracing::warn!(pair, "pair no longer outdated: {why}");
        }
    }

    /// The refusal of a plain resync (or an automatic one) at an outdated
    /// PVOL: copying its data would overwrite the site that took over.
    pub(super) fn refuse_if_outdated(&self, pair: &str) -> Result<(), SiteError> {
        match self.meta_of(pair).and_then(|m| m.outdated) {
            Some(o) => Err(SiteError::Outdated {
                pair: pair.into(),
                reason: o.reason(),
            }),
            None => Ok(()),
        }
    }

    /// Whether this site's PVOL of `pair` is outdated (read per host write).
    pub(super) fn is_outdated(&self, pair: &str) -> Option<SiteError> {
        let inner = self.inner();
        let o = inner.pairs.get(pair)?.meta.outdated.as_ref()?;
        Some(SiteError::Outdated {
            pair: pair.into(),
            reason: o.reason(),
        })
    }
}

impl Site {
    /// [`Site::mark_outdated`], then (in the background) waits for the
    /// writes under way to land and compares generations with the peer
    /// again, so the verdict counts every write this site took.
    pub(super) fn fence_taken_over(self: &Arc<Self>, pair: &str, by: &str, how: &str) {
        if !self.registry.mark_outdated(pair, by, how) {
            return;
        }
        let (site, pair) = (Arc::clone(self), pair.to_string());
        tokio::spawn(async move {
            if let Ok(w) = site.registry.work(&pair) {
                drop(w.volume.order.lock().await);
            }
            if let Err(e) = site.compare_with_peer(&pair).await {
                tracing::debug!(
                    pair,
                    "generations not compared after the fence: {}",
                    chain(&e)
                );
            }
        });
    }

    /// `pair outdate`: hbd stepped down (or a person says so): this site's
    /// PVOL refuses host writes from now on, whether or not the peer can be
    /// reached to confirm the takeover.
    pub fn pair_outdate(self: &Arc<Self>, name: &str, reason: &str) -> Result<String, SiteError> {
        let meta = self.registry.pair_meta(name)?;
        if meta.role != Role::Pvol {
            return Ok(format!(
                "pair '{name}' has its SVOL here (read-only to hosts while mirrored); nothing to fence"
            ));
        }
        if let Some(o) = &meta.outdated {
            return Ok(format!("pair '{name}' is outdated already: {}", o.reason()));
        }
        let how = if reason.is_empty() {
            "`hbctl pair outdate`".to_string()
        } else {
            reason.to_string()
        };
        self.fence_taken_over(name, &meta.peer, &how);
        let now = self.registry.pair_meta(name)?;
        let said = now.outdated.map(|o| o.reason()).unwrap_or_default();
        Ok(format!(
            "pair '{name}' outdated (PSUE): {said}; host writes are refused (EROFS) until `hbctl pair resync {name} --discard-local` here or `hbctl pair resync {name} --reverse` at site '{}'",
            meta.peer
        ))
    }
}
