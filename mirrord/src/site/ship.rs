//! Shipping: putting a PVOL's writes on the link, settling the peer's
//! acknowledgements (which clear dirty bits), and suspending a pair when
//! they cannot reach the SVOL.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use hbcore::link::{PeerError, PeerRequest};
use hbcore::report::chain;
use hbcore::vocab::{PairState, Role};

use super::error::refused;
use super::{Site, SiteError, Work};
use crate::bitmap::BLOCK;
use crate::link::{LinkError, Pending};
use crate::meta::PairMeta;
use crate::pair::{Flight, PairRt};
use crate::rate::{Limit, Pacer, HOST_IO_WINDOW, MAX_FRAME};

/// Write frames of a copy or of the adaptive shipper in flight at once.
pub(super) const SHIP_WINDOW: usize = 8;
/// Copy frames in flight at once while the rate controller limits the copy.
const LIMITED_WINDOW: usize = 2;

/// A run of blocks on the wire, with the sequences it carries.
struct Shipped {
    pending: Pending,
    first: u64,
    bytes: u64,
    seqs: Vec<u64>,
}

impl Site {
    /// Ships one write to the peer.
    async fn ship(
        &self,
        meta: &PairMeta,
        pair: &str,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Pending, LinkError> {
        let bytes = data.len();
        let request = PeerRequest::Write {
            pair: pair.into(),
            offset,
            data,
        };
        let pending = self.link_of(meta)?.send(request).await?;
        self.shipped.note(pair, bytes);
        Ok(pending)
    }

    /// Ships a host write; counts it in flight until settled.
    pub(super) async fn ship_host_write(
        &self,
        meta: &PairMeta,
        rt: &PairRt,
        pair: &str,
        offset: u64,
        data: Vec<u8>,
    ) -> Result<Flight, LinkError> {
        let pending = self.ship(meta, pair, offset, data).await?;
        Ok(rt.shipped(pending))
    }

    /// Semi-sync: waits until the one unacknowledged write is settled.
    pub(super) async fn settle_semi(rt: &PairRt) {
        let mut slot = rt.semi.lock().await;
        if let Some(previous) = slot.take() {
            let _ = previous.await;
        }
    }

    /// Ships every dirty block of a PVOL, read back from the volume, until the
    /// bitmap is clean; `locked` if the caller holds the volume's order lock;
    /// `paced` for a copy (initial, resync), which keeps to the pair's rate
    /// controller ([`crate::rate`]). Returns the bytes shipped.
    pub(super) async fn ship_dirty(
        &self,
        name: &str,
        w: &Work,
        locked: bool,
        paced: bool,
    ) -> Result<u64, SiteError> {
        let timeout = self.link.timeout();
        let mut window: VecDeque<Shipped> = VecDeque::new();
        let mut pacer = Pacer::default();
        let mut shipped = 0u64;
        let mut from = 0u64;
        loop {
            let runs = w.rt.dirty().runs(from, MAX_FRAME / BLOCK, 64);
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
                let end = run.first + run.len;
                let mut first = run.first;
                while first < end {
                    let Some(meta) = self.meta_of(name).filter(|m| {
                        m.role == Role::Pvol
                            && matches!(
                                m.state,
                                PairState::Pair | PairState::Copy | PairState::Psue
                            )
                    }) else {
                        return Err(refused(format!("pair '{name}' left the copy")));
                    };
                    // Read per frame: `pair set` and host I/O change the limit mid-copy.
                    let limit = if paced {
                        let limit = Limit::of(&meta.settings, self.host_io.within(HOST_IO_WINDOW));
                        w.rt.pacing(limit);
                        limit
                    } else {
                        Limit::NONE
                    };
                    let blocks = (limit.frame_bytes() / BLOCK).min(end - first);
                    let offset = first * BLOCK;
                    let len = (blocks * BLOCK).min(w.volume.size - offset) as usize;
                    pacer.admit(len as u64, limit).await;
                    let pending = {
                        // Read and queue under the volume's order lock: a host write
                        // to this range lands either in this frame or after it on the wire.
                        let _order = if locked {
                            None
                        } else {
                            Some(w.volume.order.lock().await)
                        };
                        let data = w.volume.read(&self.io, offset, len).await?;
                        let seqs = w.rt.dirty().seqs(first, blocks);
                        Shipped {
                            pending: self.ship(&w.meta, name, offset, data).await?,
                            first,
                            bytes: len as u64,
                            seqs,
                        }
                    };
                    window.push_back(pending);
                    shipped += len as u64;
                    // Under a limit, little stays queued at the SVOL's disk
                    // (where a host's write would wait behind it).
                    let room = if limit.bytes_per_s == 0 {
                        SHIP_WINDOW
                    } else {
                        LIMITED_WINDOW
                    };
                    while window.len() >= room {
                        if let Some(next) = window.pop_front() {
                            self.acked(w, next, timeout).await?;
                        }
                    }
                    first += blocks;
                }
                from = end;
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

    /// Suspends a mirrored pair (PAIR or COPY) after a replication failure.
    pub(super) fn suspend(&self, pair: &str, why: &str) {
        let mirrored = [PairState::Pair, PairState::Copy];
        if let Err(e) = self.set_state(pair, &mirrored, PairState::Psue, why) {
            tracing::error!("{}", chain(&e));
        }
    }

    /// Tells the peer (in the background, best effort) that the pair
    /// suspended here for a reason the link did not show, so its half
    /// suspends too instead of reporting PAIR.
    pub(super) fn tell_peer_suspended(&self, pair: &str) {
        let Some(meta) = self.meta_of(pair) else {
            return;
        };
        let Ok(link) = self.link_of(&meta) else {
            return;
        };
        let (link, pair, timeout) = (Arc::clone(link), pair.to_string(), self.link.timeout());
        tokio::spawn(async move {
            let update = PeerRequest::Update {
                pair: pair.clone(),
                state: Some(PairState::Psue),
                settings: None,
            };
            if let Err(e) = link.call(update, timeout).await {
                tracing::warn!(
                    pair,
                    "could not tell the peer the pair suspended: {}",
                    chain(&e)
                );
            }
        });
    }

    /// The peer split or took over the pair: PSUS here, changes tracked. A
    /// pair still copying has no consistent SVOL to split off, so its copy
    /// stops and it suspends (PSUE) instead, as the transition table says.
    pub(super) fn split_by_peer(&self, pair: &str, why: &str) {
        let split = [PairState::Pair, PairState::Psue];
        let as_split = format!("{why}: split here too (PSUS), changes tracked");
        match self.set_state(pair, &split, PairState::Psus, &as_split) {
            Ok(true) => {}
            // Split already (nothing to do), or copying.
            Ok(false) => self.suspend(pair, &format!("{why}; the copy stopped")),
            Err(e) => tracing::error!("{}", chain(&e)),
        }
    }

    /// A host write did not reach the SVOL: the pair stops mirroring, in the
    /// state the kind of failure calls for.
    pub(super) fn replication_failed(&self, name: &str, meta: &PairMeta, e: &LinkError) {
        match e {
            // The SVOL was split or taken over at its site (this site is told
            // separately): a person's decision, so PSUS rather than an error.
            LinkError::Refused(
                site,
                PeerError::WrongState {
                    state: state @ (PairState::Psus | PairState::Ssws),
                    ..
                },
            ) => self.split_by_peer(name, &format!("the SVOL is {state} at site '{site}'")),
            // The SVOL's disk failed: nothing to retry until someone repairs it there.
            LinkError::Refused(site, PeerError::Disk { .. }) => {
                let why = format!(
                    "{}; repair the SVOL's volume at site '{site}', then `hbctl pair resync {name}`",
                    chain(e)
                );
                tracing::error!(pair = name, "{why}");
                self.suspend(name, &why);
            }
            // A link that timed out is dropped, so the dialer reconnects afresh.
            LinkError::Timeout(..) => {
                if let Ok(link) = self.link_of(meta) {
                    link.reset();
                }
                self.suspend(name, &chain(e));
            }
            _ => self.suspend(name, &chain(e)),
        }
    }
}
