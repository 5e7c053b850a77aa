//! The runtime of one pair at this site, beside its persisted [`PairMeta`]:
//! the dirty bitmap, the adaptive queue, the semi-synchronous slot, the copy
//! progress (with the rate controller's limit) and the in-flight accounting.
//!
//! One rule serves every mode: a write gets a sequence number and sets its
//! blocks' dirty bits; the peer's acknowledgement of data that carried a
//! block as of sequence `s` clears the bit only if `s` is still that block's
//! latest. Copies (initial, resync, adaptive overflow) ship dirty blocks
//! read back from the volume, so they copy exactly what the other side lacks.

pub mod machine;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hbcore::control::{CopyProgress, HeldBy, VerdictInfo, VerifyProgress};
use hbcore::vocab::{PairSettings, PairState, Role};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::bitmap::DirtyMap;
use crate::link::{LinkError, Pending};
use crate::meta::PairMeta;
use crate::rate::{HostLoad, Limit, Recent, Stalls, Steer};
use hbcore::link::PeerReply;

/// A write waiting in memory to ship (adaptive mode).
pub struct Queued {
    /// Byte offset.
    pub offset: u64,
    /// The bytes (shared with the frame that ships them).
    pub data: bytes::Bytes,
    /// The write's sequence number.
    pub seq: u64,
    /// When the host wrote it.
    pub at: Instant,
}

/// The adaptive queue: writes in order, at most `skew` bytes; past that the
/// pair "overflows" and ships dirty blocks read back from the PVOL until the
/// bitmap is clean again.
#[derive(Default)]
pub struct Queue {
    /// Pending writes, oldest first.
    pub entries: VecDeque<Queued>,
    /// Bytes held.
    pub bytes: u64,
    /// Writes beyond the skew are tracked in the bitmap only.
    pub overflowed: bool,
}

impl Queue {
    /// Forgets everything held (its blocks stay dirty).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
        self.overflowed = true;
    }
}

#[derive(Default)]
struct Copy {
    running: bool,
    copied: u64,
    total: u64,
    skipped: u64,
    started: Option<Instant>,
    /// When it ended: a finished copy's rate stays what it was.
    ended: Option<Instant>,
    /// The rate controller of this copy.
    steer: Steer,
    /// Its recent rate, for the ETA.
    recent: Recent,
}

/// Byte offsets of differing blocks a verify reports.
const VERIFY_OFFSETS: usize = 16;

#[derive(Default)]
struct Verify {
    running: bool,
    checked: u64,
    total: u64,
    differing: u64,
    offsets: Vec<u64>,
    skipped_dirty: u64,
    stopped: Option<String>,
    started: Option<Instant>,
}

/// The host writes of a pair on the wire and not yet settled.
#[derive(Default)]
struct Flights {
    now: AtomicU64,
    max: AtomicU64,
    /// Told when `now` drops to 0.
    idle: Notify,
}

/// One host write on the wire: counted in flight until settled or dropped
/// (a write abandoned on an error path cannot leave the count stuck, which
/// would hold [`PairRt::drained`] forever).
pub struct Flight {
    pending: Pending,
    _counted: Counted,
}

/// Takes a flight off the count when dropped.
struct Counted(Arc<Flights>);

impl Drop for Counted {
    fn drop(&mut self) {
        if self.0.now.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// One pair as this site runs it.
pub struct PairRt {
    /// Dirty bitmap.
    pub dirty: Mutex<DirtyMap>,
    /// Adaptive queue.
    pub queue: Mutex<Queue>,
    /// Wakes the adaptive shipper.
    pub wake: Notify,
    /// Semi-sync: the settling of the one unacknowledged write.
    pub semi: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    /// Whether the adaptive shipper task runs.
    pub shipper: AtomicBool,
    copy: Mutex<Copy>,
    verify: Mutex<Verify>,
    verdict: Mutex<Option<VerdictInfo>>,
    flights: Arc<Flights>,
    /// Where the copy's tasks waited (what holds it back).
    pub stalls: Stalls,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values stay consistent across a panic (no multi-step
    // invariants span an unwind point), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PairRt {
    /// A runtime around a bitmap.
    pub fn new(dirty: DirtyMap) -> PairRt {
        PairRt {
            dirty: Mutex::new(dirty),
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            semi: tokio::sync::Mutex::new(None),
            shipper: AtomicBool::new(false),
            copy: Mutex::new(Copy::default()),
            verify: Mutex::new(Verify::default()),
            verdict: Mutex::new(None),
            flights: Arc::new(Flights::default()),
            stalls: Stalls::default(),
        }
    }

    /// The bitmap, locked.
    pub fn dirty(&self) -> MutexGuard<'_, DirtyMap> {
        lock(&self.dirty)
    }

    /// The adaptive queue, locked.
    pub fn queue(&self) -> MutexGuard<'_, Queue> {
        lock(&self.queue)
    }

    /// Counts a write put on the wire, until the returned flight settles or drops.
    pub fn shipped(&self, pending: Pending) -> Flight {
        let now = self.flights.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.flights.max.fetch_max(now, Ordering::SeqCst);
        Flight {
            pending,
            _counted: Counted(Arc::clone(&self.flights)),
        }
    }

    /// Waits for the answer to a shipped write, and counts it settled.
    pub async fn settle(&self, flight: Flight, timeout: Duration) -> Result<PeerReply, LinkError> {
        let Flight { pending, _counted } = flight;
        pending.wait(timeout).await
        // `_counted` drops here: the write is counted settled.
    }

    /// Waits until no host write of this pair is in flight. With the
    /// volume's order lock held, none can start meanwhile, so after this
    /// every host write has settled (acknowledged, or failed and handled).
    pub async fn drained(&self) {
        loop {
            let idle = self.flights.idle.notified();
            tokio::pin!(idle);
            // Registered before the check: a drop to 0 in between is not missed.
            idle.as_mut().enable();
            if self.flights.now.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Starts counting in-flight writes afresh (after a mode change).
    pub fn reset_in_flight_max(&self) {
        self.flights
            .max
            .store(self.flights.now.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// Claims the copy; false if one runs already.
    pub fn begin_copy(&self) -> bool {
        let mut c = lock(&self.copy);
        if c.running {
            return false;
        }
        let now = Instant::now();
        *c = Copy {
            running: true,
            started: Some(now),
            ..Copy::default()
        };
        c.recent.note(now, 0);
        true
    }

    /// Sets the bytes a copy still has to move (the bitmap grows while hosts write).
    pub fn copy_remaining(&self, remaining: u64) {
        let mut c = lock(&self.copy);
        c.total = c.copied + remaining;
    }

    /// Counts bytes copied.
    pub fn copied(&self, bytes: u64) {
        let mut c = lock(&self.copy);
        c.copied += bytes;
        let copied = c.copied;
        c.recent.note(Instant::now(), copied);
    }

    /// Counts dirty blocks a checksum resync found identical (not sent).
    pub fn skipped_identical(&self, blocks: u64) {
        lock(&self.copy).skipped += blocks;
    }

    /// The rate controller's limit for the copy's next frame, under
    /// `settings`, with `load` the host I/O of the PVOL's disk.
    pub fn steer(&self, settings: &PairSettings, load: &HostLoad) -> Limit {
        let mut c = lock(&self.copy);
        let copied = c.copied;
        c.steer
            .limit(Instant::now(), settings, load, copied, &self.stalls)
    }

    /// The copy ended.
    pub fn end_copy(&self) {
        let mut c = lock(&self.copy);
        c.running = false;
        c.ended = Some(Instant::now());
    }

    /// What `pair status` shows of the copy.
    pub fn copy_progress(&self) -> CopyProgress {
        let c = lock(&self.copy);
        let held_by = if c.running {
            c.steer.held_by()
        } else {
            HeldBy::None
        };
        let secs = c.started.map_or(0.0, |t| {
            c.ended
                .unwrap_or_else(Instant::now)
                .saturating_duration_since(t)
                .as_secs_f64()
        });
        CopyProgress {
            running: c.running,
            copied_bytes: c.copied,
            total_bytes: c.total,
            percent: if c.total == 0 {
                100.0
            } else {
                c.copied as f64 * 100.0 / c.total as f64
            },
            rate_bytes_per_s: if secs > 0.0 {
                c.copied as f64 / secs
            } else {
                0.0
            },
            skipped_identical_blocks: c.skipped,
            limit_bytes_per_s: if c.running {
                c.steer.current().bytes_per_s
            } else {
                0
            },
            held_by_host_io: held_by == HeldBy::HostIo,
            held_by,
            eta_s: if c.running {
                c.recent.eta_s(Instant::now(), c.copied, c.total)
            } else {
                None
            },
        }
    }

    /// Claims the verify of `total` blocks; false if one runs already.
    pub fn begin_verify(&self, total: u64) -> bool {
        let mut v = lock(&self.verify);
        if v.running {
            return false;
        }
        *v = Verify {
            running: true,
            total,
            started: Some(Instant::now()),
            ..Verify::default()
        };
        true
    }

    /// Counts `checked` blocks compared, `skipped` passed over (dirty), and
    /// the differing blocks found among them (by byte offset).
    pub fn verified(&self, checked: u64, skipped: u64, differing: &[u64]) {
        let mut v = lock(&self.verify);
        v.checked += checked + skipped;
        v.skipped_dirty += skipped;
        v.differing += differing.len() as u64;
        let room = VERIFY_OFFSETS.saturating_sub(v.offsets.len());
        v.offsets.extend(differing.iter().take(room));
    }

    /// The verify ended; `stopped` says why if it did not reach the end.
    pub fn end_verify(&self, stopped: Option<String>) {
        let mut v = lock(&self.verify);
        v.running = false;
        v.stopped = stopped;
    }

    /// What `pair status` shows of the verify.
    pub fn verify_progress(&self) -> VerifyProgress {
        let v = lock(&self.verify);
        let secs = v.started.map_or(0.0, |t| t.elapsed().as_secs_f64());
        VerifyProgress {
            running: v.running,
            checked_blocks: v.checked,
            total_blocks: v.total,
            differing_blocks: v.differing,
            first_differing_offsets: v.offsets.clone(),
            skipped_dirty_blocks: v.skipped_dirty,
            percent: if v.total == 0 {
                100.0
            } else {
                v.checked as f64 * 100.0 / v.total as f64
            },
            rate_bytes_per_s: if secs > 0.0 {
                (v.checked * crate::bitmap::BLOCK) as f64 / secs
            } else {
                0.0
            },
            stopped: v.stopped.clone(),
        }
    }

    /// The last comparison of both sites' generations.
    pub fn verdict(&self) -> Option<VerdictInfo> {
        lock(&self.verdict).clone()
    }

    /// Records a comparison; returns the one it replaces.
    pub fn set_verdict(&self, verdict: VerdictInfo) -> Option<VerdictInfo> {
        lock(&self.verdict).replace(verdict)
    }

    /// The most writes ever in flight at once.
    pub fn max_in_flight(&self) -> u64 {
        self.flights.max.load(Ordering::SeqCst)
    }
}

/// Whether hosts may write this site's volume of a pair.
pub fn host_writable(meta: &PairMeta) -> bool {
    match meta.role {
        Role::Pvol => true,
        Role::Svol => matches!(meta.state, PairState::Psus | PairState::Ssws),
    }
}

/// Whether host writes to the PVOL are copied to the SVOL as they happen.
pub fn mirroring(meta: &PairMeta) -> bool {
    meta.role == Role::Pvol && matches!(meta.state, PairState::Pair | PairState::Copy)
}
