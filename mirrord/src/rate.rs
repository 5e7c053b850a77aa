//! The copy rate controller: paces a pair's copy frames (initial copy,
//! resync) under a ceiling, `c_max_rate`, and down to a floor, `c_min_rate`,
//! while hosts do I/O at this site (DRBD's knobs of the same names).
//!
//! Why a floor under host I/O: both copies of a pair share the disks of the
//! sites with everything else, and a disk serves a heartbeat's 4 KiB write
//! only after the copy frames queued before it. Paced to the floor in small
//! frames, a copy leaves the disk idle most of the time, so a host write
//! waits behind at most one small frame; with no host I/O it runs at the
//! ceiling (none by default: disk speed).
//!
//! ```text
//!  host_read / host_write ──note──> HostIo (last host I/O)
//!  copy task, per frame: limit = c_min_rate if host I/O in the last HOST_IO_WINDOW, else c_max_rate
//!                        frame = limit × FRAME_TIME (4 KiB .. 1 MiB) ── Pacer::admit sleeps until due ── read, ship
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hbcore::vocab::PairSettings;

use crate::bitmap::BLOCK;

/// Host I/O this recent holds copies at their floor.
pub const HOST_IO_WINDOW: Duration = Duration::from_millis(100);

/// Under a limit, a copy frame carries what the limit allows in this long,
/// so a host write queued behind one on the disk waits little.
const FRAME_TIME: Duration = Duration::from_millis(4);

/// Largest copy frame: 1 MiB.
pub const MAX_FRAME: u64 = 256 * BLOCK;

/// When a site's hosts last read or wrote any of its volumes.
pub struct HostIo {
    epoch: Instant,
    /// Nanoseconds after `epoch` of the last host I/O, plus one (0: never).
    last: AtomicU64,
}

impl Default for HostIo {
    fn default() -> HostIo {
        HostIo {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl HostIo {
    /// Notes a host read or write now.
    pub fn note(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.last.store(now + 1, Ordering::Relaxed);
    }

    /// Whether hosts did I/O within the last `window`.
    pub fn within(&self, window: Duration) -> bool {
        match self.last.load(Ordering::Relaxed) {
            0 => false,
            last => {
                let now = self.epoch.elapsed().as_nanos();
                now.saturating_sub(u128::from(last - 1)) <= window.as_nanos()
            }
        }
    }
}

/// The controller's limit for a copy now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limit {
    /// Bytes per second; 0 for none.
    pub bytes_per_s: u64,
    /// Whether host I/O holds the copy at its floor.
    pub held_by_host_io: bool,
}

impl Limit {
    /// No limit (what an adaptive overflow ships is host data, never paced).
    pub const NONE: Limit = Limit {
        bytes_per_s: 0,
        held_by_host_io: false,
    };

    /// The limit for a pair with `settings`, given whether hosts do I/O now.
    pub fn of(settings: &PairSettings, host_io: bool) -> Limit {
        let ceiling = settings.c_max_rate;
        let floor = settings.c_min_rate;
        // The floor applies only where it is below the ceiling (or there is none).
        if host_io && floor > 0 && (ceiling == 0 || floor < ceiling) {
            Limit {
                bytes_per_s: floor,
                held_by_host_io: true,
            }
        } else {
            Limit {
                bytes_per_s: ceiling,
                held_by_host_io: false,
            }
        }
    }

    /// Bytes of the next copy frame: all of [`MAX_FRAME`] with no limit,
    /// else what the limit allows in [`FRAME_TIME`], in whole blocks.
    pub fn frame_bytes(&self) -> u64 {
        if self.bytes_per_s == 0 {
            return MAX_FRAME;
        }
        let bytes = self.bytes_per_s as u128 * FRAME_TIME.as_nanos() / 1_000_000_000;
        let blocks = (bytes / u128::from(BLOCK)).max(1);
        (u64::try_from(blocks).unwrap_or(u64::MAX) * BLOCK).min(MAX_FRAME)
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
mod tests {
    use super::*;
    use hbcore::vocab::{Fence, Mode};

    fn settings(c_max_rate: u64, c_min_rate: u64) -> PairSettings {
        PairSettings {
            mode: Mode::Sync,
            fence: Fence::Never,
            skew: 4 << 20,
            auto_resync: false,
            installed: false,
            c_max_rate,
            c_min_rate,
        }
    }

    #[test]
    fn host_io_lowers_a_copy_to_its_floor_and_never_raises_it_over_the_ceiling() {
        let mib = 1 << 20;
        let both = settings(100 * mib, 4 * mib);
        assert_eq!(Limit::of(&both, false).bytes_per_s, 100 * mib);
        assert_eq!(
            Limit::of(&both, true),
            Limit {
                bytes_per_s: 4 * mib,
                held_by_host_io: true
            }
        );
        // No ceiling: unlimited until hosts do I/O.
        assert_eq!(Limit::of(&settings(0, 4 * mib), false).bytes_per_s, 0);
        assert_eq!(Limit::of(&settings(0, 4 * mib), true).bytes_per_s, 4 * mib);
        // A floor of 0: host I/O does not slow the copy.
        assert_eq!(Limit::of(&settings(0, 0), true).bytes_per_s, 0);
        // A floor above the ceiling: the ceiling holds.
        assert_eq!(Limit::of(&settings(mib, 8 * mib), true).bytes_per_s, mib);
    }

    #[test]
    fn frames_shrink_with_the_limit_in_whole_blocks() {
        let limit = |bytes_per_s| Limit {
            bytes_per_s,
            held_by_host_io: false,
        };
        assert_eq!(limit(0).frame_bytes(), MAX_FRAME);
        assert_eq!(limit(4 << 20).frame_bytes(), 4 * BLOCK);
        assert_eq!(limit(1).frame_bytes(), BLOCK);
        assert_eq!(limit(u64::MAX).frame_bytes(), MAX_FRAME);
    }

    #[test]
    fn host_io_counts_only_within_the_window() {
        let io = HostIo::default();
        assert!(!io.within(Duration::from_secs(3600)), "never");
        io.note();
        assert!(io.within(Duration::from_secs(3600)));
        std::thread::sleep(Duration::from_millis(5));
        assert!(!io.within(Duration::from_millis(1)));
    }
}
