//! The wire: this site's end of the remote link ([`Link`]) and the count
//! of what it put on it ([`Shipped`], for the metrics). It owns what goes
//! to the peer: a write shipped here is counted here, and every request of
//! a pair travels on its peer's link, on the lane of the pair's kind.
//!
//! Used from host-write tasks (sync, semi-sync, fenced writes), the copy
//! and adaptive shipper tasks, the link's tasks and the control socket; the
//! link's own tasks do the sending ([`crate::link`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hbcore::link::{Lane, PeerRequest};
use hbcore::report::chain;
use hbcore::vocab::PairState;

use super::shipped::Shipped;
use crate::link::{Link, LinkError, PeerLink, Pending};
use crate::meta::PairMeta;
use crate::pair::{Flight, PairRt};

/// This site's end of the link, and what it shipped.
pub(super) struct Wire {
    link: Arc<Link>,
    /// Writes and bytes put on the link, per pair (for the metrics).
    shipped: Shipped,
}

impl Wire {
    pub(super) fn new(link: Arc<Link>) -> Wire {
        Wire {
            link,
            shipped: Shipped::default(),
        }
    }

    /// The remote link.
    pub(super) fn link(&self) -> &Arc<Link> {
        &self.link
    }

    /// Writes and bytes put on the link, per pair.
    pub(super) fn shipped(&self) -> &Shipped {
        &self.shipped
    }

    /// How long a request waits for its answer.
    pub(super) fn timeout(&self) -> Duration {
        self.link.timeout()
    }

    /// The link to `peer` on `lane`.
    pub(super) fn peer(&self, peer: &str, lane: Lane) -> Result<&Arc<PeerLink>, LinkError> {
        self.link.peer(peer, lane)
    }

    /// The link a pair's requests travel on: its peer, on its kind's lane.
    pub(super) fn link_of(&self, meta: &PairMeta) -> Result<&Arc<PeerLink>, LinkError> {
        self.link.peer(&meta.peer, Lane::of(meta.kind))
    }

    /// Ships one write to the peer.
    pub(super) async fn ship(
        &self,
        meta: &PairMeta,
        pair: &str,
        offset: u64,
        data: Bytes,
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
        data: Bytes,
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

    /// Tells the peer (in the background, best effort) that the pair
    /// suspended here for a reason the link did not show, so its half
    /// suspends too instead of reporting PAIR.
    pub(super) fn tell_peer_suspended(&self, meta: &PairMeta, pair: &str) {
        let Ok(link) = self.link_of(meta) else {
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
}
