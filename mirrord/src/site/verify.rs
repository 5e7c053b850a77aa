//! Block digests (XXH3-128 of each 4 KiB block) and what compares them: the
//! online verify of a PAIR pair while host writes go on, and the checksum
//! resync, which sends only the dirty blocks whose data the SVOL lacks.
//!
//! ```text
//!  under the PVOL's order lock: read blocks here ─ note which are dirty ─ send Digests (its place on the wire
//!                               is after every write shipped before, so the SVOL hashes the same moment)
//!  lock released: the answer ─ compare the blocks clean at that moment ─ differing: dirty (verify)
//!                                                                       identical: clean (checksum resync)
//! ```
//!
//! The comparison itself ([`Digests`]) uses the I/O engine and the wire
//! only; the verify task (paced, stopped when the pair leaves PAIR) and the
//! peer's digest request are the site's. Run on a verify task, the copy
//! task (checksum resync) and the link's tasks (the peer's request).

use std::sync::Arc;
use std::time::{Duration, Instant};

use hbcore::control::PairVerify;
use hbcore::link::{PeerError, PeerReply, PeerRequest, MAX_DIGEST_BLOCKS};
use hbcore::report::chain;
use hbcore::size::Bytes;
use hbcore::vocab::{PairState, Role};

use super::error::refused;
use super::registry::Work;
use super::wire::Wire;
use super::{Site, SiteError};
use crate::bitmap::BLOCK;
use crate::link::Pending;
use hbio::IoEngine;

/// Default pace of a verify: bytes of each copy compared per second.
pub const DEFAULT_VERIFY_RATE: u64 = 64 << 20;

/// The digest of one block.
pub fn digest(block: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128(block)
}

/// Blocks read here, with their sequences and which were dirty then.
struct Read {
    first: u64,
    local: Vec<u128>,
    seqs: Vec<u64>,
    dirty: Vec<bool>,
}

/// What a comparison of both copies uses: the I/O engine that reads this
/// site's blocks, and the wire that asks the peer for its digests.
pub(super) struct Digests<'a> {
    pub(super) io: &'a IoEngine,
    pub(super) wire: &'a Wire,
}

impl Digests<'_> {
    /// Reads `count` blocks from `first` here and asks the peer for theirs,
    /// under the volume's order lock (no host write between the two).
    async fn read_and_ask(
        &self,
        name: &str,
        w: &Work,
        first: u64,
        count: u64,
    ) -> Result<(Read, Pending), SiteError> {
        let offset = first * BLOCK;
        let len = (count * BLOCK).min(w.volume.size - offset) as usize;
        let _order = w.volume.order.lock().await;
        Wire::settle_semi(&w.rt).await;
        let data = w.volume.read(self.io, offset, len).await?;
        let (seqs, dirty) = {
            let d = w.rt.dirty();
            let dirty = (first..first + count).map(|b| d.is_dirty(b)).collect();
            (d.seqs(first, count), dirty)
        };
        let pending = self
            .wire
            .link_of(&w.meta)?
            .send(PeerRequest::Digests {
                pair: name.into(),
                first,
                count: count as u32,
            })
            .await?;
        let read = Read {
            first,
            local: data.chunks(BLOCK as usize).map(digest).collect(),
            seqs,
            dirty,
        };
        Ok((read, pending))
    }

    /// The peer's digests for what [`Digests::read_and_ask`] read.
    async fn remote_digests(
        &self,
        name: &str,
        read: &Read,
        pending: Pending,
    ) -> Result<Vec<u128>, SiteError> {
        match pending.wait(self.wire.timeout()).await? {
            PeerReply::Digests { digests } if digests.len() == read.local.len() => Ok(digests),
            _ => Err(refused(format!(
                "the peer answered a digest request of pair '{name}' with something else"
            ))),
        }
    }

    /// Checksum resync: clears the dirty bits of blocks the SVOL already
    /// holds (same digest, no write since), so the copy sends only the rest.
    pub(super) async fn skip_identical(&self, name: &str, w: &Work) -> Result<u64, SiteError> {
        let mut skipped = 0;
        let mut from = 0;
        loop {
            let runs = w.rt.dirty().runs(from, u64::from(MAX_DIGEST_BLOCKS), 64);
            if runs.is_empty() {
                break;
            }
            for run in runs {
                from = run.first + run.len;
                let (c, pending) = self.read_and_ask(name, w, run.first, run.len).await?;
                let remote = self.remote_digests(name, &c, pending).await?;
                let mut d = w.rt.dirty();
                for (i, (mine, theirs)) in c.local.iter().zip(&remote).enumerate() {
                    let b = c.first + i as u64;
                    if mine == theirs && c.dirty[i] {
                        d.acked(b, &c.seqs[i..=i]);
                        if !d.is_dirty(b) {
                            skipped += 1;
                        }
                    }
                }
            }
        }
        if skipped > 0 {
            w.rt.skipped_identical(skipped);
            tracing::info!(
                pair = name,
                blocks = skipped,
                "checksum resync: dirty blocks the SVOL already holds are not sent"
            );
        }
        Ok(skipped)
    }
}

impl Site {
    /// The parts a comparison of both copies uses, named.
    pub(super) fn digests(&self) -> Digests<'_> {
        Digests {
            io: &self.io,
            wire: &self.wire,
        }
    }

    /// Digests of `count` blocks from block `first` of this site's volume of
    /// `pair` (the peer asks, in order with the writes it shipped before).
    pub(super) async fn local_digests(
        &self,
        pair: &str,
        first: u64,
        count: u32,
    ) -> Result<Vec<u128>, PeerError> {
        let w = self.registry.work(pair)?;
        let blocks = w.volume.size.div_ceil(BLOCK);
        if count > MAX_DIGEST_BLOCKS || first >= blocks {
            return Err(PeerError::Refused {
                detail: format!(
                    "digests of blocks {first}..+{count} of pair '{pair}': volume '{}' has {blocks} blocks, at most {MAX_DIGEST_BLOCKS} per request",
                    w.volume.name
                ),
            });
        }
        let count = u64::from(count).min(blocks - first);
        let offset = first * BLOCK;
        let len = (count * BLOCK).min(w.volume.size - offset) as usize;
        let _order = w.volume.order.lock().await;
        let data = w
            .volume
            .read(&self.io, offset, len)
            .await
            .map_err(|e| PeerError::Disk { detail: chain(&e) })?;
        Ok(data.chunks(BLOCK as usize).map(digest).collect())
    }

    /// Starts an online verify of a PAIR pair (at its PVOL's site).
    pub fn pair_verify(self: &Arc<Self>, request: &PairVerify) -> Result<String, SiteError> {
        let PairVerify { name, rate } = request;
        let name = name.as_str();
        let w = self.registry.work(name)?;
        if w.meta.role != Role::Pvol {
            return Err(refused(format!(
                "pair '{name}' has its SVOL here; run `hbctl pair verify {name}` at the PVOL's site '{}'",
                w.meta.peer
            )));
        }
        if w.meta.state != PairState::Pair {
            return Err(refused(format!(
                "pair '{name}' is {}: verify compares the copies of a pair in PAIR; `hbctl pair resync {name}` brings it there",
                w.meta.state
            )));
        }
        let rate = rate.unwrap_or(DEFAULT_VERIFY_RATE);
        if rate < BLOCK {
            return Err(refused(format!(
                "a verify rate of {} per second is below one block (4KiB); choose e.g. 64MiB",
                Bytes(rate)
            )));
        }
        let blocks = w.volume.size.div_ceil(BLOCK);
        if !w.rt.begin_verify(blocks) {
            return Err(refused(format!(
                "a verify of pair '{name}' runs already; `hbctl pair status {name}` shows its progress"
            )));
        }
        let site = Arc::clone(self);
        let pair = name.to_string();
        tokio::spawn(async move {
            let result = site.verify(&pair, &w, rate).await;
            let stopped = result.as_ref().err().map(|e| chain(e));
            w.rt.end_verify(stopped.clone());
            let v = w.rt.verify_progress();
            match stopped {
                Some(why) => tracing::warn!(pair, "verify stopped after {} of {} blocks: {why}", v.checked_blocks, v.total_blocks),
                None if v.differing_blocks == 0 => tracing::info!(pair, blocks = v.checked_blocks, skipped = v.skipped_dirty_blocks, "verify complete: the copies are identical"),
                None => tracing::warn!(pair, "verify complete: {} block(s) differ, first at byte offsets {:?}; they are marked dirty, `hbctl pair resync {pair}` copies them", v.differing_blocks, v.first_differing_offsets),
            }
        });
        Ok(format!(
            "verify of pair '{name}' started: {blocks} blocks, at most {}/s; `hbctl pair status {name}` shows its progress (`verify`)",
            Bytes(rate)
        ))
    }

    /// Compares both copies block by block, paced at `rate` bytes per second.
    async fn verify(&self, name: &str, w: &Work, rate: u64) -> Result<(), SiteError> {
        let blocks = w.volume.size.div_ceil(BLOCK);
        let started = Instant::now();
        let mut first = 0;
        while first < blocks {
            let now = self.registry.meta_of(name);
            if now.as_ref().is_none_or(|m| m.state != PairState::Pair) || self.stop.is_cancelled() {
                return Err(refused(format!(
                    "pair '{name}' left PAIR ({})",
                    now.map_or("dissolved".to_string(), |m| m.state.to_string())
                )));
            }
            let count = u64::from(MAX_DIGEST_BLOCKS).min(blocks - first);
            let (c, pending) = self.digests().read_and_ask(name, w, first, count).await?;
            let remote = self.digests().remote_digests(name, &c, pending).await?;
            let mut differing = Vec::new();
            let mut skipped = 0;
            for (i, (mine, theirs)) in c.local.iter().zip(&remote).enumerate() {
                if c.dirty[i] {
                    // Being written (or known to differ): a copy ships it anyway.
                    skipped += 1;
                } else if mine != theirs {
                    differing.push(c.first + i as u64);
                }
            }
            if !differing.is_empty() {
                w.rt.dirty().mark_differing(&differing)?;
                for b in &differing {
                    tracing::warn!(
                        pair = name,
                        offset = b * BLOCK,
                        "verify: block differs between the copies"
                    );
                }
            }
            let offsets: Vec<u64> = differing.iter().map(|b| b * BLOCK).collect();
            w.rt.verified(count - skipped, skipped, &offsets);
            first += count;
            // Pace: never ahead of `rate`.
            let due = Duration::from_secs_f64((first * BLOCK) as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::select! {
                    _ = self.stop.cancelled() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
        Ok(())
    }
}
