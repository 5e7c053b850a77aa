//! What a site does for its PVOL pairs when the link to their peer comes
//! up: compare both sites' generations, re-attach, and act on the verdict.
//! Only what the bitmaps cover in the usual direction resumes by itself
//! (back to PAIR, or an auto-resync); a split brain waits for a person
//! unless the pair's policy says otherwise; unrelated data is not
//! re-attached; a record too old for its bitmap waits for a full resync.

use std::sync::Arc;

use hbcore::link::{Lane, PeerError, PeerReply, PeerRequest};
use hbcore::report::chain;
use hbcore::size::Bytes;
use hbcore::vocab::{PairState, Role};

use super::generations::Compared;
use super::ops::attach_request;
use super::resync::Keep;
use super::{Site, SiteError};
use crate::bitmap::BLOCK;
use crate::generation::{Side, Verdict};
use crate::link::{LinkError, PeerLink};
use crate::meta::PairMeta;
use crate::pair::machine::{self, Divergence, Resume, StopWhy};

impl Site {
    /// After the link to `peer` on `lane` comes up: re-attach the PVOL pairs
    /// of that lane and decide for each whether it stays in sync, resyncs, or
    /// waits for a person.
    pub(super) async fn reattach(self: &Arc<Self>, peer: &str, lane: Lane) {
        let pairs = self
            .registry
            .pairs_where(|m| m.peer == peer && m.role == Role::Pvol && Lane::of(m.kind) == lane);
        let Ok(link) = self.wire.peer(peer, lane) else {
            return;
        };
        let link = Arc::clone(link);
        for (name, meta, size) in pairs {
            if let Err(e) = self.reattach_pair(&link, &name, &meta, size).await {
                tracing::warn!(pair = %name, "re-attach at '{peer}' failed: {}", chain(&e));
            }
        }
    }

    async fn reattach_pair(
        self: &Arc<Self>,
        link: &PeerLink,
        name: &str,
        meta: &PairMeta,
        size: u64,
    ) -> Result<(), SiteError> {
        let peer = meta.peer.as_str();
        let compared = match self.compare_with_peer(name).await {
            Ok(c) => Some(c),
            Err(SiteError::Link(LinkError::Refused(_, PeerError::NoSuchPair { .. }))) => None,
            Err(e) => return Err(e),
        };
        if let Some(c) = compared
            .as_ref()
            .filter(|c| c.verdict == Verdict::Unrelated)
        {
            // Not even re-attached: the peer's record and data are left alone.
            self.registry
                .suspend(name, &format!("unrelated data at site '{peer}'"));
            tracing::error!(pair = name, "not re-attached: {}", c.detail);
            return Ok(());
        }
        if compared
            .as_ref()
            .is_some_and(|c| c.peer_state == PairState::Ssws)
        {
            // Fenced before anything else: no host write is taken from here on.
            self.fence_taken_over(
                name,
                peer,
                "the reconnect's exchange of generations found the SVOL SSWS there",
            );
        }
        let previous = match link
            .call(
                PeerRequest::Attach(attach_request(name, meta, size)),
                self.wire.timeout(),
            )
            .await?
        {
            PeerReply::Attached { previous } => previous,
            _ => return Ok(()),
        };
        // The peer takes this site's integrity options, as it takes the settings.
        let _ = self.tell_options(name).await;
        let Some(compared) = compared else {
            // The peer had no record of the pair (lost or dissolved there): its
            // new SVOL holds data no bitmap describes.
            self.registry.work(name)?.rt.dirty().mark_all()?;
            let verdict = Verdict::Ahead {
                side: Side::Local,
                full: true,
                common: None,
            };
            let blocks = size.div_ceil(BLOCK);
            let detail = self
                .registry
                .record_verdict(&self.name, name, meta, verdict, blocks, 0);
            self.registry.suspend(
                name,
                &format!("site '{peer}' had no record of the pair: a full copy is needed"),
            );
            tracing::warn!(
                pair = name,
                "re-attached to a new SVOL: {detail}; `hbctl pair resync {name}` copies it"
            );
            return Ok(());
        };
        if self
            .act_on_divergence(name, meta, previous, &compared)
            .await?
        {
            return Ok(());
        }
        let w = self.registry.work(name)?;
        let dirty = w.rt.dirty().dirty_blocks();
        match machine::resume(&w.meta, previous, dirty) {
            Resume::Outdate => {
                self.fence_taken_over(name, peer, "its SVOL was SSWS when the link came up");
                tracing::warn!(pair = %name, "site '{peer}' took this pair over (SSWS): fail back with `hbctl pair resync {name} --reverse` there, or keep its data with `hbctl pair resync {name} --discard-local` here (`--discard-remote` here discards its changes)");
            }
            Resume::Wait => {
                tracing::warn!(pair = %name, "re-attached; outdated, so nothing resumes by itself: `hbctl pair resync {name} --discard-local` here keeps site '{peer}''s data, `--discard-remote` this site's");
            }
            Resume::Split => {
                self.registry
                    .split_by_peer(name, "the pair is split (PSUS)");
                tracing::info!(pair = %name, "re-attached; split (PSUS): `hbctl pair resync {name}` joins it again");
            }
            Resume::InSync => match link
                .call(
                    PeerRequest::Update {
                        pair: name.into(),
                        state: Some(PairState::Pair),
                        settings: None,
                    },
                    self.wire.timeout(),
                )
                .await
            {
                Ok(_) => tracing::info!(pair = %name, "re-attached; still in sync (PAIR)"),
                Err(e) => self.registry.suspend(name, &chain(&e)),
            },
            Resume::WaitResync => {
                tracing::info!(pair = %name, "re-attached; suspended (PSUE) with {} to copy: `hbctl pair resync {name}` (auto-resync is off)", Bytes(dirty * BLOCK));
            }
            Resume::Resync => {
                tracing::info!(pair = %name, "re-attached; resyncing {} (auto-resync)", Bytes(dirty * BLOCK));
                if let Err(e) = self.resync_here(name, Keep::AsUsual).await {
                    tracing::warn!(pair = %name, "resync failed: {}", chain(&e));
                }
            }
        }
        Ok(())
    }

    /// Acts on a verdict that is not for the usual course (split brain, a
    /// record too old for its bitmap, the SVOL ahead while its state says it
    /// could not have written): the pair stops mirroring and waits for a
    /// person, or the split-brain policy resolves it. True if it acted.
    async fn act_on_divergence(
        self: &Arc<Self>,
        name: &str,
        meta: &PairMeta,
        previous: PairState,
        c: &Compared,
    ) -> Result<bool, SiteError> {
        let peer = meta.peer.as_str();
        let policy = meta.integrity.split_brain;
        let decided =
            machine::on_divergence(c.verdict, previous, policy, c.local_dirty, c.peer_dirty);
        match decided {
            Some(Divergence::KeepMine) => {
                tracing::warn!(pair = name, ?policy, "split brain resolved by the pair's policy: site '{peer}''s {} changed block(s) are discarded", c.peer_dirty);
                self.resync_here(name, Keep::Pvol).await?;
            }
            Some(Divergence::KeepTheirs) => {
                tracing::warn!(pair = name, ?policy, "split brain resolved by the pair's policy: this site's {} changed block(s) are discarded; site '{peer}' becomes the PVOL", c.local_dirty);
                self.wire
                    .link_of(meta)?
                    .call(
                        PeerRequest::KeepYours { pair: name.into() },
                        self.wire.timeout() * 4,
                    )
                    .await?;
            }
            Some(Divergence::Stop { split, why }) => {
                let why = match why {
                    StopWhy::SplitBrain => "split brain: both sites wrote".to_string(),
                    StopWhy::FullCopy => "a full copy is needed".to_string(),
                    StopWhy::PeerAhead => format!("site '{peer}' is ahead by its generations"),
                };
                if split {
                    self.registry.split_by_peer(name, &why);
                } else {
                    self.registry.suspend(name, &why);
                }
            }
            None => return Ok(false),
        }
        Ok(true)
    }
}
