//! The answers to the peer site: the one [`Handler`] of the link. Each
//! request is answered with a reply or a [`PeerError`] whose kind the asking
//! site can match; a session that opens re-attaches this site's PVOL pairs
//! (`site::connect`), one that closes suspends the pairs with that peer.
//! The attach of an SVOL touches only the record (`impl Registry`).

use std::sync::Arc;

use hbcore::control::IntegrityOptions;
use hbcore::link::{Attach, Generations, Lane, PeerError, PeerReply, PeerRequest};
use hbcore::report::chain;
use hbcore::vocab::{PairState, Role};

use super::error::paired_error;
use super::registry::{bitmap_path, changed, transition, Pair, Registry};
use super::resync::Keep;
use super::Site;
use crate::bitmap::DirtyMap;
use crate::generation;
use crate::link::Handler;
use crate::meta::PairMeta;
use crate::pair::machine::Event;
use crate::pair::PairRt;
use hbio::BufPool;

/// The link's view of a site.
pub struct SiteHandler(pub Arc<Site>);

impl Handler for SiteHandler {
    async fn handle(&self, peer: &str, request: PeerRequest) -> Result<PeerReply, PeerError> {
        self.0.handle_request(peer, request).await
    }

    fn link_up(self: &Arc<Self>, peer: &str, lane: Lane) {
        let site = Arc::clone(&self.0);
        let peer = peer.to_string();
        tokio::spawn(async move { site.reattach(&peer, lane).await });
    }

    fn buffers(&self) -> Arc<BufPool> {
        self.0.io.pool()
    }

    fn link_down(self: &Arc<Self>, peer: &str, lane: Lane) {
        let affected =
            (self.0.registry).pairs_where(|m| m.peer == peer && Lane::of(m.kind) == lane);
        for (pair, _, _) in affected {
            self.0.registry.suspend(
                &pair,
                &format!("remote link to '{peer}' ({lane} lane) lost"),
            );
        }
    }
}

/// A refusal for the peer, with the way out.
fn refusal(detail: String) -> PeerError {
    PeerError::Refused { detail }
}

impl Site {
    async fn handle_request(
        self: &Arc<Self>,
        peer: &str,
        request: PeerRequest,
    ) -> Result<PeerReply, PeerError> {
        match request {
            PeerRequest::Attach(request) => self.registry.attach(&self.name, peer, request),
            PeerRequest::Write { pair, offset, data } => {
                self.apply_write(&pair, offset, data).await
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
                    // Check before clearing anything: the table may refuse.
                    transition(&pair, meta.state, state)?;
                    if state == PairState::Copy && meta.role == Role::Svol {
                        // The PVOL merged this side's bitmap: it copies those blocks now.
                        self.registry
                            .work(&pair)?
                            .rt
                            .dirty()
                            .clear_all()
                            .map_err(|e| PeerError::Disk { detail: chain(&e) })?;
                        // Until the copy completes this side holds no consistent data.
                        self.registry
                            .change_generations(&pair, generation::become_target)?;
                    }
                    let why = format!("state set by site '{peer}'");
                    self.registry
                        .change_state(&pair, Event::PeerSet(state), &why)?;
                }
                Ok(PeerReply::Done)
            }
            PeerRequest::TakeBitmap { pair } => {
                self.peer_pair(peer, &pair)?;
                let bits = self.registry.work(&pair)?.rt.dirty().bits().to_vec();
                Ok(PeerReply::Bitmap { bits })
            }
            PeerRequest::Split { pair } => {
                self.peer_pair(peer, &pair)?;
                self.split_here(&pair).await?;
                Ok(PeerReply::Done)
            }
            PeerRequest::Resync { pair } => {
                self.peer_pair(peer, &pair)?;
                self.resync_here(&pair, Keep::AsUsual).await?;
                Ok(PeerReply::Done)
            }
            PeerRequest::Takeover { pair } => {
                self.peer_pair(peer, &pair)?;
                self.fence_taken_over(&pair, peer, "its takeover request");
                Ok(PeerReply::Done)
            }
            PeerRequest::Reverse { pair } => {
                let meta = self.peer_pair(peer, &pair)?;
                if meta.role != Role::Pvol {
                    return Err(refusal(format!(
                        "pair '{pair}' is not a PVOL at site '{}'; nothing to reverse",
                        self.name
                    )));
                }
                let w = self.registry.work(&pair)?;
                let _order = w.volume.order.lock().await;
                w.rt.queue().clear();
                let bits = {
                    let mut d = w.rt.dirty();
                    let bits = d.bits().to_vec();
                    d.clear_all()
                        .map_err(|e| PeerError::Disk { detail: chain(&e) })?;
                    bits
                };
                self.registry
                    .change_generations(&pair, generation::become_target)?;
                self.registry.swap_roles(&pair, Role::Svol)?;
                self.registry
                    .clear_outdated(&pair, "the roles reversed: this site holds the SVOL now");
                tracing::warn!(pair = %pair, "roles reversed by site '{peer}': this site's volume is the SVOL now (read-only, COPY)");
                Ok(PeerReply::Bitmap { bits })
            }
            PeerRequest::Detach { pair } => {
                if self.peer_pair(peer, &pair).is_ok() {
                    self.registry.remove_pair(&pair);
                    tracing::info!(pair = %pair, peer, "pair dissolved by the peer site");
                }
                Ok(PeerReply::Done)
            }
            PeerRequest::Generations {
                pair,
                generations,
                dirty_blocks,
            } => {
                let meta = self.peer_pair(peer, &pair)?;
                self.registry.answer_generations(
                    &self.name,
                    &meta,
                    &pair,
                    &generations,
                    dirty_blocks,
                )
            }
            PeerRequest::Join { pair, generation } => {
                self.peer_pair(peer, &pair)?;
                self.registry
                    .join_as_target(&self.name, &pair, generation)?;
                Ok(PeerReply::Done)
            }
            PeerRequest::Digests { pair, first, count } => {
                self.peer_pair(peer, &pair)?;
                let digests = self.local_digests(&pair, first, count).await?;
                Ok(PeerReply::Digests { digests })
            }
            PeerRequest::Options { pair, options } => {
                self.peer_pair(peer, &pair)?;
                self.registry.adopt_options(&pair, options);
                Ok(PeerReply::Done)
            }
            PeerRequest::KeepYours { pair } => {
                self.peer_pair(peer, &pair)?;
                tracing::warn!(pair = %pair, "site '{peer}' chose this site's data (--discard-local there): resyncing from here");
                self.keep_mine(&pair).await?;
                Ok(PeerReply::Done)
            }
        }
    }

    /// This site's record of `pair`, if it is paired with `peer`.
    fn peer_pair(&self, peer: &str, pair: &str) -> Result<PairMeta, PeerError> {
        self.registry
            .meta_of(pair)
            .filter(|m| m.peer == peer)
            .ok_or_else(|| PeerError::NoSuchPair { pair: pair.into() })
    }
}

/// The peer's attach touches only the record.
impl Registry {
    /// Attaches (or re-attaches) an SVOL for a pair whose PVOL is at `peer`
    /// (`here` is this site, named in the refusals).
    fn attach(&self, here: &str, peer: &str, request: Attach) -> Result<PeerReply, PeerError> {
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
                    return Err(refusal(format!("pair '{pair}' already exists at site '{}' with other volumes or roles; delete it there or choose another pair name", here)));
                }
                Some(p.meta.state)
            } else {
                let v = inner.volumes.get(&svol).ok_or_else(|| {
                    refusal(format!("no volume '{svol}' at site '{}'; create it there first with `hbctl volume create {svol} --size {size}`", here))
                })?;
                if v.size != size {
                    return Err(refusal(format!(
                        "volume '{svol}' at site '{}' is {} bytes but the PVOL '{pvol}' is {size}; an SVOL must have exactly the PVOL's size",
                        here, v.size
                    )));
                }
                if let Some((other, p)) = inner.pair_of_volume(&svol) {
                    return Err(refusal(format!(
                        "at site '{}': {}",
                        here,
                        paired_error(&svol, other, p.meta.kind, kind)
                    )));
                }
                None
            }
        };
        if let Some(previous) = previous {
            // A re-attach: the PVOL's settings win; the state stays until the PVOL says otherwise.
            self.update(&pair, |m| m.settings = settings);
            return Ok(PeerReply::Attached { previous });
        }
        let path = bitmap_path(self.data_dir(), &pair);
        let _ = std::fs::remove_file(&path);
        let dirty =
            DirtyMap::open(&path, size).map_err(|e| PeerError::Disk { detail: chain(&e) })?;
        let meta = PairMeta {
            role: Role::Svol,
            state: changed(&pair, Role::Svol, PairState::Smpl, Event::Created)?.state,
            kind,
            settings,
            peer: peer.into(),
            pvol,
            svol,
            // The target of the initial copy: no consistent data of its own yet.
            generations: Some(Generations::default()),
            integrity: IntegrityOptions::default(),
            outdated: None,
        };
        self.inner().pairs.insert(
            pair.clone(),
            Pair {
                meta,
                size,
                rt: Arc::new(PairRt::new(dirty)),
            },
        );
        self.save()
            .map_err(|e| PeerError::Disk { detail: chain(&e) })?;
        tracing::info!(pair = %pair, peer, "attached as SVOL");
        Ok(PeerReply::Attached {
            previous: PairState::Smpl,
        })
    }
}
