//! The copy rate controller: paces a pair's copy frames (initial copy,
//! resync) under a ceiling, `c_max_rate`, and lowers the rate (down to a
//! floor, `c_min_rate`) only while host I/O that competes with the copy is
//! slowed by it (DRBD's knobs of the same names, and the idea of its
//! c-plan-ahead / c-fill-target controller: steer toward a target, not a
//! fixed floor).
//!
//! What competes: host reads and writes of volumes of *data* pairs on the
//! copy's disk (the same device: `st_dev` of a volume file, the device of a
//! block device volume). Heartbeat pairs' I/O (hbd's slots, ten 4 KiB
//! writes a second at a 100 ms interval) and unpaired volumes' never hold a
//! copy back. How much it competes is measured, not assumed: every
//! [`PLAN_PERIOD`] the controller compares the mean latency of the host's
//! small I/O (≤ [`SMALL_IO`]) on the disk with a target, twice its idle
//! latency (the least period mean seen on that disk), and scales the copy's
//! rate by target / latency (at most halved or doubled per period).
//!
//! ```text
//!  host_read / host_write on a data pair's volume ──Timed──> HostLoad of its device (load.rs)
//!  copy task, per frame: Steer::limit (steer.rs), per PLAN_PERIOD: plan(limit, Sample, Idle) ─ learn
//!                        frame = limit × FRAME_TIME (4 KiB .. 1 MiB) ── Pacer::admit sleeps until due ── read, ship
//! ```
//!
//! The decisions ([`plan`], [`start`], [`rebound`], [`held_by`]) are pure
//! functions of measurements; `load` and `steer` hold the measuring. Host
//! I/O is timed on the FUSE worker threads and tokio's; the copy task reads
//! the counters (atomics) per frame.

pub mod load;
pub mod recent;
pub mod steer;

use std::time::{Duration, Instant};

use hbcore::control::HeldBy;
use hbcore::vocab::PairSettings;

use crate::bitmap::BLOCK;

pub use load::{HostIo, HostLoad, HostOp, Idle, Latencies, Timed};
pub use recent::Recent;
pub use steer::{Stalls, Steer};

/// How often the controller plans a copy's rate from what it measured.
pub const PLAN_PERIOD: Duration = Duration::from_millis(100);

/// Host I/O on the disk this long ago no longer holds a copy at all.
pub const QUIET: Duration = Duration::from_secs(1);

/// Host I/O up to this size is timed for its latency (larger I/O is bound
/// by bandwidth; its latency says little about the copy queued beside it).
pub const SMALL_IO: u64 = 64 << 10;

/// The target latency of the host's small I/O: this many times its idle latency.
pub const TARGET_FACTOR: f64 = 2.0;

/// Least and most a period may scale the rate by.
const STEP_DOWN: f64 = 0.5;
const STEP_UP: f64 = 2.0;

/// A period with host I/O on the disk recently but none timed in it: no
/// evidence of harm, the rate grows by this.
const STEP_NO_EVIDENCE: f64 = 1.5;

/// Under a limit, a copy frame carries what the limit allows in this long,
/// so a host write queued behind one on the disk waits little.
const FRAME_TIME: Duration = Duration::from_millis(4);

/// Largest copy frame: 1 MiB.
pub const MAX_FRAME: u64 = 256 * BLOCK;

/// The controller's limit for a copy now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limit {
    /// Bytes per second; 0 for none.
    pub bytes_per_s: u64,
    /// Whether competing host I/O holds the copy below its ceiling.
    pub held_by_host_io: bool,
}

impl Limit {
    /// No limit (what an adaptive overflow ships is host data, never paced).
    pub const NONE: Limit = Limit {
        bytes_per_s: 0,
        held_by_host_io: false,
    };

    /// The ceiling alone: no host I/O holds the copy.
    pub fn ceiling(settings: &PairSettings) -> Limit {
        Limit {
            bytes_per_s: settings.c_max_rate,
            held_by_host_io: false,
        }
    }

    /// Bytes of the next copy frame: all of [`MAX_FRAME`] with no limit,
    /// else what the limit allows in `FRAME_TIME`, in whole blocks.
    pub fn frame_bytes(&self) -> u64 {
        if self.bytes_per_s == 0 {
            return MAX_FRAME;
        }
        let bytes = self.bytes_per_s as u128 * FRAME_TIME.as_nanos() / 1_000_000_000;
        let blocks = (bytes / u128::from(BLOCK)).max(1);
        (u64::try_from(blocks).unwrap_or(u64::MAX) * BLOCK).min(MAX_FRAME)
    }
}

/// What one plan period measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// How long the period was.
    pub period: Duration,
    /// The host's small writes on the copy's disk in the period.
    pub writes: Latencies,
    /// The host's small reads on the copy's disk in the period.
    pub reads: Latencies,
    /// Bytes the copy moved (acknowledged) in the period.
    pub copied: u64,
    /// Whether hosts did I/O on data volumes of the disk within [`QUIET`].
    pub recent_host_io: bool,
}

/// Whether host I/O may slow a copy at all under `settings`: a floor of 0
/// says no, and so does a floor at or above the ceiling.
fn slowable(settings: &PairSettings) -> bool {
    let (ceiling, floor) = (settings.c_max_rate, settings.c_min_rate);
    floor > 0 && (ceiling == 0 || floor < ceiling)
}

/// The limit a copy starts with: its ceiling (the first period measures
/// whether host I/O suffers beside it).
pub fn start(settings: &PairSettings) -> Limit {
    Limit::ceiling(settings)
}

/// `limit` kept within changed `settings` (`pair set` mid-copy).
pub fn rebound(limit: Limit, settings: &PairSettings) -> Limit {
    if !limit.held_by_host_io || !slowable(settings) {
        return Limit::ceiling(settings);
    }
    let (ceiling, floor) = (settings.c_max_rate, settings.c_min_rate);
    let rate = limit.bytes_per_s.max(floor);
    if ceiling != 0 && rate >= ceiling {
        return Limit::ceiling(settings);
    }
    Limit {
        bytes_per_s: rate,
        held_by_host_io: true,
    }
}

/// How far the host's I/O in `s` is from its target: mean latency over
/// [`TARGET_FACTOR`] × idle, the worse of reads and writes. `None`: none
/// timed; `Some(None)`: timed, but the idle latency is not known yet.
fn pressure(s: &Sample, idle: &Idle) -> Option<Option<f64>> {
    let one = |l: &Latencies, idle_ns: u64| {
        let mean = l.mean_ns()?;
        Some((idle_ns > 0).then(|| mean / (TARGET_FACTOR * idle_ns as f64)))
    };
    match (one(&s.writes, idle.write_ns), one(&s.reads, idle.read_ns)) {
        (None, None) => None,
        (Some(None), _) | (_, Some(None)) => Some(None),
        (w, r) => Some(w.flatten().into_iter().chain(r.flatten()).reduce(f64::max)),
    }
}

/// The next period's limit, from the last (`prev`), what the period
/// measured (`s`) and the disk's idle latency (`idle`).
///
/// - No host I/O on data volumes of the disk within [`QUIET`] (or a floor
///   of 0): the ceiling.
/// - Host I/O timed, idle latency unknown: the floor for a period, whose
///   latency then teaches the idle one (the least period mean).
/// - Otherwise the rate the copy runs at (the limit, or what it moved if
///   less, when lowering) × target / latency, within ×0.5..×2; none timed
///   this period: × 1.5. Below the floor: the floor. At the ceiling, or
///   grown past twice what the copy moves (something else holds it): the
///   ceiling, no longer held by host I/O.
pub fn plan(prev: Limit, s: &Sample, idle: &Idle, settings: &PairSettings) -> Limit {
    let free = Limit::ceiling(settings);
    if !slowable(settings) || !s.recent_host_io {
        return free;
    }
    let (ceiling, floor) = (settings.c_max_rate, settings.c_min_rate);
    let held = |rate: u64| Limit {
        bytes_per_s: rate,
        held_by_host_io: true,
    };
    let step = match pressure(s, idle) {
        Some(None) => return held(floor),
        Some(Some(p)) if p > 0.0 => (1.0 / p).clamp(STEP_DOWN, STEP_UP),
        Some(Some(_)) => STEP_UP,
        None if !prev.held_by_host_io => return free,
        None => STEP_NO_EVIDENCE,
    };
    let moved = (u128::from(s.copied) * 1_000_000_000)
        .checked_div(s.period.as_nanos())
        .map_or(0.0, |r| r as f64);
    let base = match prev.bytes_per_s {
        0 if moved > 0.0 => moved,
        0 => floor as f64,
        limit if step < 1.0 && moved > 0.0 => (limit as f64).min(moved),
        limit => limit as f64,
    };
    if step >= 1.0 && !prev.held_by_host_io {
        // The host's I/O is within its target beside the copy as it runs.
        return free;
    }
    if step >= 1.0 && moved > 0.0 && moved * 2.0 < base {
        // The limit no longer binds: the link or the disk holds the copy.
        return free;
    }
    let next = (base * step).round() as u64;
    if ceiling != 0 && next >= ceiling {
        return free;
    }
    held(next.max(floor))
}

/// Where a copy's tasks spent one plan period (nanoseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StallSample {
    /// The sender waiting for frames from the reader.
    pub starved: u64,
    /// The sender putting frames on the link and waiting for acks.
    pub link: u64,
    /// The reader waiting for the pacer (the limit).
    pub paced: u64,
    /// The reader reading the PVOL.
    pub read: u64,
}

/// What holds a copy back, from its limit and where its tasks waited.
pub fn held_by(limit: Limit, d: StallSample) -> HeldBy {
    if limit.held_by_host_io {
        HeldBy::HostIo
    } else if d == StallSample::default() {
        HeldBy::None
    } else if d.link > d.starved {
        HeldBy::Link
    } else if limit.bytes_per_s != 0 && d.paced >= d.read {
        HeldBy::CMaxRate
    } else {
        HeldBy::Disk
    }
}

/// Spaces a copy's frames so their bytes keep to the limit of each.
#[derive(Debug, Default)]
pub struct Pacer {
    /// When the next frame may go.
    next: Option<Instant>,
}

impl Pacer {
    /// Waits until a frame of `bytes` may go under `limit`, and books it.
    pub async fn admit(&mut self, bytes: u64, limit: Limit) {
        if limit.bytes_per_s == 0 {
            self.next = None;
            return;
        }
        let now = Instant::now();
        // A pause (no frame for a while) earns no burst beyond one frame.
        let at = self.next.filter(|n| *n > now).unwrap_or(now);
        if at > now {
            tokio::time::sleep_until(at.into()).await;
        }
        let spacing = Duration::from_nanos(
            u64::try_from(bytes as u128 * 1_000_000_000 / u128::from(limit.bytes_per_s))
                .unwrap_or(u64::MAX),
        );
        self.next = Some(at + spacing);
    }
}

#[cfg(test)]
mod tests;
