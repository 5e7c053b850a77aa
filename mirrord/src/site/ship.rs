//! A copy pass ([`Pipeline`]): every dirty block of a PVOL read back and
//! shipped, pipelined (a reader ahead, a sender with a window of bytes in
//! flight), the bits clearing as the peer's acknowledgements arrive. It
//! names the parts it uses: the registry (is the pair still copying?), the
//! pacing (each frame's limit), the I/O engine (the reads) and the wire.
//!
//! Run on the copy task (initial copy, resync), the adaptive shipper task
//! (after an overflow) and a split's task (the last dirty blocks, under
//! the order lock).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hbcore::vocab::{PairState, Role};

use super::error::{refused, SiteError};
use super::pace::Pacing;
use super::registry::{Registry, Work};
use super::wire::Wire;
use crate::bitmap::BLOCK;
use crate::link::Pending;
use crate::rate::steer::Stall;
use crate::rate::{Limit, Pacer, MAX_FRAME};
use hbio::IoEngine;

/// Writes of the adaptive shipper in flight at once.
pub(super) const SHIP_WINDOW: usize = 8;
/// Copy frames in flight at once while the rate controller limits the copy.
const LIMITED_WINDOW: usize = 2;
/// Copy frames read ahead of the one being sent.
const READ_AHEAD: usize = 2;
/// Bytes of copy frames in flight without a limit: at least this (the
/// SVOL's disk stays busy between acks on a short link) ...
const WINDOW_FLOOR: u64 = 8 * MAX_FRAME;
/// ... and at most this (memory at both sites, and a write of the other
/// direction's traffic waits behind no more).
const WINDOW_CAP: u64 = 32 * MAX_FRAME;

/// The bytes a copy keeps in flight: the link's bandwidth × delay product
/// (the rate acknowledged so far × the ping's round trip, doubled for
/// headroom), within [`WINDOW_FLOOR`]..=[`WINDOW_CAP`].
fn window_bytes(acked: u64, elapsed: Duration, rtt: Option<Duration>) -> u64 {
    let (Some(rtt), false) = (rtt, elapsed.is_zero()) else {
        return WINDOW_FLOOR;
    };
    let rate = acked as f64 / elapsed.as_secs_f64();
    let bdp = (2.0 * rate * rtt.as_secs_f64()).min(WINDOW_CAP as f64) as u64;
    bdp.clamp(WINDOW_FLOOR, WINDOW_CAP)
}

/// A frame read back from the PVOL, on its way to the wire.
pub(super) struct Frame {
    first: u64,
    blocks: u64,
    offset: u64,
    data: Bytes,
    /// The blocks' sequences when read (under the order lock).
    seqs: Vec<u64>,
    /// Whether the rate controller limited it.
    limited: bool,
}

/// A run of blocks on the wire, with the sequences it carries.
pub(super) struct Shipped {
    pending: Pending,
    first: u64,
    bytes: u64,
    seqs: Vec<u64>,
}

/// The parts a copy pass uses: the pair's record (is it still copying?),
/// the pacing, the I/O engine that reads the PVOL back, and the wire.
pub(super) struct Pipeline<'a> {
    pub(super) registry: &'a Registry,
    pub(super) pacing: &'a Pacing,
    pub(super) io: &'a IoEngine,
    pub(super) wire: &'a Wire,
}

impl Pipeline<'_> {
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
        let mut shipped = 0;
        loop {
            // Blocks dirtied behind a pass are found by the next.
            let pass = self.ship_pass(name, w, locked, paced).await?;
            shipped += pass;
            if pass == 0 || w.rt.dirty().dirty_blocks() == 0 {
                return Ok(shipped);
            }
        }
    }

    /// One sweep of the bitmap, pipelined: a reader reads the dirty runs
    /// ahead (up to [`READ_AHEAD`] frames) while a sender puts earlier frames
    /// on the wire and takes their acks, with a window of bytes in flight
    /// ([`window_bytes`]). Bits clear only as each ack arrives; on any
    /// error both stop and the bits of every frame not acknowledged stay set.
    async fn ship_pass(
        &self,
        name: &str,
        w: &Work,
        locked: bool,
        paced: bool,
    ) -> Result<u64, SiteError> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Frame>(READ_AHEAD);
        let reader = async move {
            let mut pacer = Pacer::default();
            let mut from = 0u64;
            loop {
                let runs = w.rt.dirty().runs(from, MAX_FRAME / BLOCK, 64);
                if runs.is_empty() {
                    return Ok::<(), SiteError>(()); // `tx` drops: the sender drains
                }
                for run in runs {
                    let end = run.first + run.len;
                    let mut first = run.first;
                    while first < end {
                        let frame = self.read_frame(name, w, locked, paced, first, end, &mut pacer);
                        let frame = frame.await?;
                        first += frame.blocks;
                        if tx.send(frame).await.is_err() {
                            return Ok(()); // the sender stopped; its error is the one reported
                        }
                    }
                    from = end;
                }
            }
        };
        let sender = async move {
            let timeout = self.wire.timeout();
            let rtt = self.wire.link_of(&w.meta).ok().and_then(|l| l.stats.rtt());
            let started = Instant::now();
            let mut window: VecDeque<Shipped> = VecDeque::new();
            let (mut in_window, mut acked, mut shipped) = (0u64, 0u64, 0u64);
            // Where the sender waits says what holds a paced copy back.
            let stalled = |stall, since: Instant| {
                if paced {
                    w.rt.stalls.add(stall, since.elapsed());
                }
            };
            loop {
                let waiting = Instant::now();
                let Some(frame) = rx.recv().await else { break };
                stalled(Stall::Starved, waiting);
                let sending = Instant::now();
                let limited = frame.limited;
                let next = self.send_frame(name, w, locked, frame).await?;
                in_window += next.bytes;
                shipped += next.bytes;
                window.push_back(next);
                // Under a limit, little stays queued at the SVOL's disk
                // (where a host's write would wait behind it).
                let room = window_bytes(acked, started.elapsed(), rtt);
                while window.len() > 1
                    && (in_window > room || (limited && window.len() >= LIMITED_WINDOW))
                {
                    if let Some(oldest) = window.pop_front() {
                        in_window -= oldest.bytes;
                        acked += oldest.bytes;
                        self.acked(w, oldest, timeout).await?;
                    }
                }
                stalled(Stall::Link, sending);
            }
            while let Some(oldest) = window.pop_front() {
                self.acked(w, oldest, timeout).await?;
            }
            Ok::<u64, SiteError>(shipped)
        };
        let ((), shipped) = tokio::try_join!(reader, sender)?;
        Ok(shipped)
    }

    /// Reads the next frame of a dirty run `first..end`, paced, with the
    /// blocks' sequences taken under the order lock before the read (no
    /// host write is then half on the PVOL).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn read_frame(
        &self,
        name: &str,
        w: &Work,
        locked: bool,
        paced: bool,
        first: u64,
        end: u64,
        pacer: &mut Pacer,
    ) -> Result<Frame, SiteError> {
        let Some(meta) = self.registry.meta_of(name).filter(|m| {
            m.role == Role::Pvol
                && matches!(m.state, PairState::Pair | PairState::Copy | PairState::Psue)
        }) else {
            return Err(refused(format!("pair '{name}' left the copy")));
        };
        // Read per frame: `pair set` and host I/O change the limit mid-copy.
        let limit = if paced {
            self.pacing.copy_limit(w, &meta.settings)
        } else {
            Limit::NONE
        };
        let blocks = (limit.frame_bytes() / BLOCK).min(end - first);
        let offset = first * BLOCK;
        let len = (blocks * BLOCK).min(w.volume.size - offset) as usize;
        let stalled = |stall, since: Instant| {
            if paced {
                w.rt.stalls.add(stall, since.elapsed());
            }
        };
        let pacing = Instant::now();
        pacer.admit(len as u64, limit).await;
        stalled(Stall::Paced, pacing);
        let seqs = if locked {
            w.rt.dirty().seqs(first, blocks)
        } else {
            let _order = w.volume.order.lock().await;
            w.rt.dirty().seqs(first, blocks)
        };
        let reading = Instant::now();
        let data = w.volume.read_shared(self.io, offset, len).await?;
        stalled(Stall::Read, reading);
        Ok(Frame {
            first,
            blocks,
            offset,
            data,
            seqs,
            limited: limit.bytes_per_s != 0,
        })
    }

    /// Puts a frame on the wire under the volume's order lock: a host write
    /// to its range lands either in it or after it on the wire. If one came
    /// since the frame was read (a block's sequence moved), the frame is
    /// read again now, when none can.
    pub(super) async fn send_frame(
        &self,
        name: &str,
        w: &Work,
        locked: bool,
        frame: Frame,
    ) -> Result<Shipped, SiteError> {
        let _order = if locked {
            None
        } else {
            Some(w.volume.order.lock().await)
        };
        let Frame {
            first,
            blocks,
            offset,
            mut data,
            mut seqs,
            ..
        } = frame;
        let now = w.rt.dirty().seqs(first, blocks);
        if now != seqs {
            data = w.volume.read_shared(self.io, offset, data.len()).await?;
            seqs = now;
        }
        let bytes = data.len() as u64;
        Ok(Shipped {
            pending: self.wire.ship(&w.meta, name, offset, data).await?,
            first,
            bytes,
            seqs,
        })
    }

    /// Waits for a shipped run and clears the bits it carried.
    pub(super) async fn acked(
        &self,
        w: &Work,
        shipped: Shipped,
        timeout: Duration,
    ) -> Result<(), SiteError> {
        shipped.pending.wait(timeout).await?;
        w.rt.dirty().acked(shipped.first, &shipped.seqs);
        w.rt.copied(shipped.bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_window_is_bandwidth_times_delay_within_its_bounds() {
        let ms = Duration::from_millis;
        // Nothing measured yet: the floor.
        assert_eq!(window_bytes(0, Duration::ZERO, Some(ms(1))), WINDOW_FLOOR);
        assert_eq!(window_bytes(1 << 30, ms(1000), None), WINDOW_FLOOR);
        // 1 GiB/s over a 10 ms round trip: doubled for headroom.
        let bdp = window_bytes(1 << 30, ms(1000), Some(ms(10)));
        assert!(bdp.abs_diff(2 * (1 << 30) / 100) <= 2, "{bdp}");
        // A loopback round trip: the floor; a long fat link: the cap.
        assert_eq!(window_bytes(1 << 30, ms(1000), Some(ms(0))), WINDOW_FLOOR);
        assert_eq!(window_bytes(1 << 30, ms(1000), Some(ms(500))), WINDOW_CAP);
    }
}
