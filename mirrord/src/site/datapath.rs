//! The host data path: reads, writes and syncs of a site's volumes (through
//! hbfs), a PVOL's writes mirrored in the pair's mode, and at the other end
//! the SVOL's apply of the writes its peer ships; a write that did not
//! reach the SVOL, answered as the machine says (`replication_failed`).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use hbcore::link::{PeerError, PeerReply};
use hbcore::report::chain;
use hbcore::vocab::PairState;

use super::outdate::taken_over_by;
use super::wire::Wire;
use super::{Site, SiteError};
use crate::bitmap::{DirtyMap, BLOCK};
use crate::fence::Refusal;
use crate::link::LinkError;
use crate::meta::PairMeta;
use crate::pair::machine::{self, Failure, NotApplied, OnFailure, WritePolicy};
use crate::pair::{mirroring, PairRt, Queued};
use crate::rate::HostOp;
use crate::volume::Volume;
use hbio::{IoEngine, ALIGN};

/// The blocks at the ends of a write of `len` bytes at `offset` that it
/// covers only in part (so its data is not the whole block).
fn partly_covered(offset: u64, len: u64) -> impl Iterator<Item = u64> {
    let end = offset + len;
    let (first, last) = (offset / BLOCK, end.saturating_sub(1) / BLOCK);
    let whole = move |b: u64| offset <= b * BLOCK && (b + 1) * BLOCK <= end;
    [first, last]
        .into_iter()
        .enumerate()
        .filter(move |(i, b)| len > 0 && !(*i == 1 && first == last) && !whole(*b))
        .map(|(_, b)| b)
}

/// Whether the SVOL refused a write before applying it (its state takes no
/// copies): then the write is on neither copy.
fn unapplied(e: &LinkError) -> bool {
    matches!(e, LinkError::Refused(_, PeerError::WrongState { .. }))
}

/// A mirrored host write's data, copied once: for a write of whole blocks
/// (what an O_DIRECT host sends) into a pooled aligned buffer that serves
/// both the frame and the PVOL's write ([`Volume::write_shared`]);
/// otherwise into plain bytes, which the PVOL's read-modify-write copies again.
fn shared_copy(io: &IoEngine, offset: u64, data: &[u8]) -> Bytes {
    if offset % ALIGN as u64 != 0 || data.len() % ALIGN != 0 {
        return Bytes::copy_from_slice(data);
    }
    let mut buf = io.buffer(data.len());
    buf.as_mut_slice().copy_from_slice(data);
    io.share(buf)
}

impl Site {
    /// Reads a volume for a host.
    pub async fn host_read(
        &self,
        volume: &str,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, SiteError> {
        let v = self.registry.volume(volume)?;
        let on_data_pair = self.registry.on_data_pair(volume);
        let _timed = self
            .pacing
            .time_host_io(&v, on_data_pair, HostOp::Read, len as u64);
        Ok(v.read(&self.io, offset, len).await?)
    }

    /// Writes a volume for a host, mirroring it as the pair's mode says.
    pub async fn host_write(
        self: &Arc<Self>,
        volume: &str,
        offset: u64,
        data: &[u8],
    ) -> Result<(), SiteError> {
        let v = self.registry.volume(volume)?;
        let on_data_pair = self.registry.on_data_pair(volume);
        let _timed = self
            .pacing
            .time_host_io(&v, on_data_pair, HostOp::Write, data.len() as u64);
        let order = v.order.lock().await;
        // Read the pair under the order lock: a state change cannot slip
        // between this check and the write's place on the wire.
        let Some((name, meta, rt)) = self.registry.pair_holding(volume) else {
            return Ok(v.write(&self.io, offset, data).await?);
        };
        let policy = match machine::host_write(&meta) {
            WritePolicy::Refuse(Refusal::ReadOnly) => {
                return Err(SiteError::ReadOnly {
                    volume: volume.into(),
                    pair: name,
                })
            }
            WritePolicy::Refuse(Refusal::Outdated(reason)) => {
                return Err(SiteError::Outdated { pair: name, reason })
            }
            WritePolicy::Refuse(Refusal::Fenced) => return Err(SiteError::FencedSuspended(name)),
            policy => policy,
        };
        self.write_in_mode(&v, &name, &meta, &rt, policy, offset, data, order)
            .await?;
        // Nothing is acknowledged once this site knows the SVOL was taken
        // over: a write under way when it learned it fails too.
        match self.registry.is_outdated(&name) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A host write to a PVOL (or a writable SVOL) as the machine's `policy`
    /// says, under the volume's `order` lock.
    #[allow(clippy::too_many_arguments)]
    async fn write_in_mode(
        self: &Arc<Self>,
        v: &Volume,
        name: &str,
        meta: &PairMeta,
        rt: &Arc<PairRt>,
        policy: WritePolicy,
        offset: u64,
        data: &[u8],
        order: tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<(), SiteError> {
        let fenced = policy == WritePolicy::Fenced;
        // Marked before anything is written or shipped: whatever fails
        // below, the block stays dirty until the SVOL acknowledges it, so a
        // resync makes the two copies equal again.
        let (seq, clean_before) = {
            let mut dirty = rt.dirty();
            let clean = fenced
                && DirtyMap::blocks_of(offset, data.len() as u64).all(|b| !dirty.is_dirty(b));
            if meta.state == PairState::Copy && mirroring(meta) {
                // A dirty block the copy has yet to ship is old at the SVOL:
                // a write into part of it must not clear it when acknowledged.
                let partial = partly_covered(offset, data.len() as u64);
                let pending: Vec<u64> = partial.filter(|b| dirty.is_dirty(*b)).collect();
                dirty.mark_differing(&pending)?;
            }
            (dirty.mark(offset, data.len() as u64)?, clean)
        };
        let timeout = self.wire.timeout();
        match policy {
            // Refused before the write reached here.
            WritePolicy::Refuse(_) => return Err(SiteError::FencedSuspended(name.into())),
            WritePolicy::Alone { diverge } => {
                // This site writes on its own: a generation of its own first, on disk.
                if diverge {
                    self.registry
                        .diverge(name, &format!("a host write while {}", meta.state))?;
                }
                return Ok(v.write(&self.io, offset, data).await?);
            }
            WritePolicy::Fenced => {
                let shared = shared_copy(&self.io, offset, data);
                // Remote first, local after: a write the SVOL cannot take never
                // reaches the PVOL. The order lock is held until the ack: one write outstanding.
                let answer = match self
                    .wire
                    .ship_host_write(meta, rt, name, offset, shared.clone())
                    .await
                {
                    Ok(p) => rt.settle(p, timeout).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                if let Err(source) = answer {
                    if clean_before && unapplied(&source) {
                        // Neither copy took it: its blocks are as they were
                        // on both sides, so they stay clean (a verdict then
                        // counts no change of this site's that it never made).
                        rt.dirty().acked_write(offset, data.len() as u64, seq);
                    }
                    self.replication_failed(name, meta, &source);
                    if let Some(outdated) = self.registry.is_outdated(name) {
                        return Err(outdated);
                    }
                    return Err(SiteError::Fenced {
                        pair: name.into(),
                        source,
                    });
                }
                self.pvol_write(name, v, offset, shared.clone()).await?;
                rt.dirty().acked_write(offset, data.len() as u64, seq);
            }
            WritePolicy::Sync => {
                let shared = shared_copy(&self.io, offset, data);
                // Pipelined: the order lock covers the write's place on the
                // wire and on the PVOL, not the wait for the SVOL's ack, so
                // several writes of one volume are in flight at once. Why
                // the guarantees hold:
                // - both copies apply writes in one order: frames leave in
                //   the order of `send` (taken under the lock), the SVOL
                //   applies them in arrival order, and the PVOL write is done
                //   under the lock too, so overlapping writes land alike;
                // - the bits are set (durably) before shipping, and only the
                //   ack of the block's latest write clears them
                //   (`acked_write` compares the sequence: an older write's
                //   ack after a newer write leaves the bit set);
                // - a failed write sets its bits again with a new sequence
                //   (below), so a later write's ack into the same block
                //   (which may have been applied at the SVOL while this one
                //   was not) cannot leave it clean;
                // - a split (`split_here`) ships every dirty block under the
                //   lock, in-flight writes included, after them on the wire;
                //   a copy reaches PAIR only once, under the lock, no write is
                //   in flight (`PairRt::drained`) and the bitmap is clean.
                // Fenced sync and semi-sync keep one write outstanding.
                // Queued before the PVOL write, so the transfer and the SVOL write overlap it.
                let shipped = self
                    .wire
                    .ship_host_write(meta, rt, name, offset, shared.clone())
                    .await;
                // On a PVOL failure the flight is dropped unsettled: the bits stay set.
                self.pvol_write(name, v, offset, shared.clone()).await?;
                drop(order);
                let answer = match shipped {
                    Ok(p) => rt.settle(p, timeout).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                match answer {
                    Ok(()) => rt.dirty().acked_write(offset, data.len() as u64, seq),
                    Err(e) => {
                        if let Err(m) = rt.dirty().mark(offset, data.len() as u64) {
                            tracing::error!(pair = name, "{}", chain(&m));
                        }
                        self.replication_failed(name, meta, &e);
                    }
                }
            }
            WritePolicy::SemiSync => {
                let shared = shared_copy(&self.io, offset, data);
                Wire::settle_semi(rt).await;
                // Settling may have found the SVOL taken over ...
                if let Some(outdated) = self.registry.is_outdated(name) {
                    return Err(outdated);
                }
                // ... or suspended the pair.
                let still = self
                    .registry
                    .meta_of(name)
                    .is_some_and(|m| machine::still_mirroring(&m));
                let shipped = if still {
                    Some(
                        self.wire
                            .ship_host_write(meta, rt, name, offset, shared.clone())
                            .await,
                    )
                } else {
                    None
                };
                self.pvol_write(name, v, offset, shared.clone()).await?;
                match shipped {
                    Some(Ok(pending)) => {
                        let site = Arc::clone(self);
                        let rt2 = Arc::clone(rt);
                        let (name, meta) = (name.to_string(), meta.clone());
                        let len = data.len() as u64;
                        let settling = tokio::spawn(async move {
                            match rt2.settle(pending, timeout).await {
                                Ok(_) => rt2.dirty().acked_write(offset, len, seq),
                                Err(e) => site.replication_failed(&name, &meta, &e),
                            }
                        });
                        *rt.semi.lock().await = Some(settling);
                    }
                    Some(Err(e)) => self.replication_failed(name, meta, &e),
                    None => {}
                }
            }
            WritePolicy::Adaptive { queue } => {
                let shared = shared_copy(&self.io, offset, data);
                self.pvol_write(name, v, offset, shared.clone()).await?;
                if queue {
                    let mut q = rt.queue();
                    if !q.overflowed && q.bytes + data.len() as u64 <= meta.settings.skew {
                        q.bytes += data.len() as u64;
                        q.entries.push_back(Queued {
                            offset,
                            data: shared.clone(),
                            seq,
                            at: Instant::now(),
                        });
                    } else if !q.overflowed {
                        q.overflowed = true;
                        tracing::info!(pair = name, skew = meta.settings.skew, "adaptive skew reached: further writes are tracked in the bitmap and read back when they ship");
                    }
                }
                rt.wake.notify_one();
            }
        }
        Ok(())
    }

    /// The PVOL's own write of a mirrored host write. If it fails, the SVOL
    /// may hold (or be about to hold) data the host is told failed: the pair
    /// suspends at both sites, the block stays dirty (it was marked before
    /// shipping), and a resync copies the PVOL's block over the SVOL's.
    async fn pvol_write(
        self: &Arc<Self>,
        pair: &str,
        v: &Volume,
        offset: u64,
        data: Bytes,
    ) -> Result<(), SiteError> {
        let Err(e) = v.write_shared(&self.io, offset, data).await else {
            return Ok(());
        };
        let why = format!(
            "the PVOL write failed ({}); the block is tracked, and once the disk is repaired \
             `hbctl pair resync {pair}` makes both copies equal",
            chain(&e)
        );
        tracing::error!(pair, "{why}");
        self.registry.suspend(pair, &why);
        if let Some(meta) = self.registry.meta_of(pair) {
            self.wire.tell_peer_suspended(&meta, pair);
        }
        Err(e.into())
    }

    /// Makes a volume's writes durable.
    pub async fn host_sync(&self, volume: &str) -> Result<(), SiteError> {
        let v = self.registry.volume(volume)?;
        Ok(v.sync(&self.io).await?)
    }

    /// At the SVOL: applies a write the PVOL's site shipped, in arrival order.
    pub(super) async fn apply_write(
        &self,
        pair: &str,
        offset: u64,
        data: Bytes,
    ) -> Result<PeerReply, PeerError> {
        let w = self.registry.work(pair)?;
        match machine::accepts_copies(w.meta.role, w.meta.state) {
            Ok(()) => {}
            Err(NotApplied::NotSvol) => {
                return Err(PeerError::Refused {
                    detail: format!(
                        "pair '{pair}' at site '{}' is not an SVOL here; refusing a remote write",
                        self.name
                    ),
                })
            }
            Err(NotApplied::WrongState(state)) => {
                return Err(PeerError::WrongState {
                    pair: pair.into(),
                    state,
                    detail: format!(
                        "its SVOL at site '{}' takes no copies until `hbctl pair resync {pair}`",
                        self.name
                    ),
                })
            }
        }
        let _order = w.volume.order.lock().await;
        // A large write's data was read into an aligned buffer and is
        // written from there; a small one's is a slice of the reader's
        // buffer, copied once into an aligned one (this site's one copy).
        let len = data.len();
        let write = w.volume.write_shared(&self.io, offset, data);
        // A small write (a heartbeat, a host's 4 KiB) is done by the task
        // that received it: the ring's two wake-ups cost as much as the
        // write. Copy frames (up to 1 MiB) go to the ring.
        let written = if len <= crate::link::SMALL_WRITE {
            hbio::inline_io_of(write).await
        } else {
            write.await
        };
        if let Err(e) = written {
            // Said here too, not only at the PVOL: this site's disk is the one to repair.
            let why = format!(
                "the SVOL write failed ({}); repair this site's volume, then `hbctl pair resync {pair}` at the PVOL's site",
                chain(&e)
            );
            tracing::error!(pair, "{why}");
            self.registry.suspend(pair, &why);
            return Err(PeerError::Disk { detail: chain(&e) });
        }
        Ok(PeerReply::Done)
    }

    /// A host write did not reach the SVOL: the pair stops mirroring, in the
    /// state the kind of failure calls for.
    pub(super) fn replication_failed(self: &Arc<Self>, name: &str, meta: &PairMeta, e: &LinkError) {
        let taken_over = taken_over_by(e);
        let failure = match e {
            _ if taken_over.is_some() => Failure::TakenOver,
            // The SVOL was split at its site (this site is told separately):
            // a person's decision, so PSUS rather than an error.
            LinkError::Refused(
                _,
                PeerError::WrongState {
                    state: PairState::Psus,
                    ..
                },
            ) => Failure::SplitThere,
            LinkError::Refused(_, PeerError::Disk { .. }) => Failure::Disk,
            LinkError::Timeout(..) => Failure::Timeout,
            _ => Failure::Other,
        };
        match (machine::write_failed(failure), e) {
            (OnFailure::Outdate, _) => {
                // The SVOL was taken over: this PVOL is outdated from now on.
                let site = taken_over.unwrap_or(&meta.peer);
                self.fence_taken_over(name, site, "a write was refused: the SVOL is SSWS there");
            }
            (OnFailure::SplitByPeer, LinkError::Refused(site, _)) => self
                .registry
                .split_by_peer(name, &format!("the SVOL is PSUS at site '{site}'")),
            // The SVOL's disk failed: nothing to retry until someone repairs it there.
            (OnFailure::Suspend { .. }, LinkError::Refused(site, PeerError::Disk { .. })) => {
                let why = format!(
                    "{}; repair the SVOL's volume at site '{site}', then `hbctl pair resync {name}`",
                    chain(e)
                );
                tracing::error!(pair = name, "{why}");
                self.registry.suspend(name, &why);
            }
            (OnFailure::Suspend { reset_link }, _) => {
                // A link that timed out is dropped, so the dialer reconnects afresh.
                if reset_link {
                    if let Ok(link) = self.wire.link_of(meta) {
                        link.reset();
                    }
                }
                self.registry.suspend(name, &chain(e));
            }
            (OnFailure::SplitByPeer, _) => self.registry.suspend(name, &chain(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_aligned_host_write_is_copied_once_into_a_pooled_buffer() {
        let io = IoEngine::pread();
        let pooled = io.buffer(8192);
        let at = pooled.as_slice().as_ptr();
        io.recycle(pooled);
        let host: Vec<u8> = (0..8192).map(|i| i as u8).collect();
        let shared = shared_copy(&io, 4096, &host);
        assert_eq!(shared, host);
        assert_eq!(
            shared.as_ptr(),
            at,
            "the pooled buffer, for frame and PVOL alike"
        );
        drop(shared);
        assert_eq!(io.pooled_bytes(), 8192, "back once unused");
        // Not whole blocks: plain bytes (the PVOL's write reads around them).
        for (offset, len) in [(4096, 100), (100, 4096)] {
            let shared = shared_copy(&io, offset, &host[..len]);
            assert_eq!(shared, host[..len]);
            assert_eq!(io.pooled_bytes(), 8192, "no pooled buffer taken");
        }
    }
}
