//! Host I/O per disk, as the copy rate controller sees it: counts and
//! summed latencies of the host's small reads and writes on volumes of data
//! pairs, per device, and the device's idle latencies learned from them.
//!
//! Written by whoever runs host I/O (FUSE worker threads, tokio tasks)
//! through a [`Timed`] guard; read by copy tasks once per frame. All
//! counters are atomics; the registry's mutex is held only for a lookup.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::SMALL_IO;

/// A host read or a host write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostOp {
    /// `host_read`.
    Read,
    /// `host_write`.
    Write,
}

/// A number of timed I/Os and their summed latency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Latencies {
    /// I/Os.
    pub count: u64,
    /// Their latencies added, nanoseconds.
    pub total_ns: u64,
}

impl Latencies {
    /// Mean latency in nanoseconds; None without I/O.
    pub fn mean_ns(&self) -> Option<f64> {
        (self.count > 0).then(|| self.total_ns as f64 / self.count as f64)
    }

    /// What was added since `earlier` (both running totals).
    pub fn since(&self, earlier: &Latencies) -> Latencies {
        Latencies {
            count: self.count.saturating_sub(earlier.count),
            total_ns: self.total_ns.saturating_sub(earlier.total_ns),
        }
    }
}

/// The idle latencies of a disk's host I/O, nanoseconds (0: not known yet).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Idle {
    /// Small writes.
    pub write_ns: u64,
    /// Small reads.
    pub read_ns: u64,
}

/// A plan period's mean counts toward the idle latency with at least this many I/Os.
const LEARN_MIN: u64 = 2;

impl Idle {
    /// The idle latencies after a period with `writes` and `reads`: the
    /// least period mean seen (the quietest the disk has been for them).
    pub fn learn(self, writes: &Latencies, reads: &Latencies) -> Idle {
        let one = |idle: u64, l: &Latencies| match l.mean_ns() {
            Some(mean) if l.count >= LEARN_MIN => {
                let mean = (mean as u64).max(1);
                if idle == 0 {
                    mean
                } else {
                    idle.min(mean)
                }
            }
            _ => idle,
        };
        Idle {
            write_ns: one(self.write_ns, writes),
            read_ns: one(self.read_ns, reads),
        }
    }
}

/// One counter pair per op.
#[derive(Default)]
struct Counter {
    count: AtomicU64,
    total_ns: AtomicU64,
}

impl Counter {
    fn add(&self, ns: u64) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.total_ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn read(&self) -> Latencies {
        Latencies {
            count: self.count.load(Ordering::Relaxed),
            total_ns: self.total_ns.load(Ordering::Relaxed),
        }
    }
}

/// The host I/O of one device (disk) on volumes of data pairs.
pub struct HostLoad {
    epoch: Instant,
    /// Nanoseconds after `epoch` of the last host I/O, plus one (0: never).
    last: AtomicU64,
    writes: Counter,
    reads: Counter,
    idle_write_ns: AtomicU64,
    idle_read_ns: AtomicU64,
}

impl Default for HostLoad {
    fn default() -> HostLoad {
        HostLoad {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
            writes: Counter::default(),
            reads: Counter::default(),
            idle_write_ns: AtomicU64::new(0),
            idle_read_ns: AtomicU64::new(0),
        }
    }
}

impl HostLoad {
    /// Notes a host I/O of `bytes` that took `took`; only small ones are timed.
    pub fn note(&self, op: HostOp, bytes: u64, took: Duration) {
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.last.store(now + 1, Ordering::Relaxed);
        if bytes <= SMALL_IO {
            let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
            match op {
                HostOp::Read => self.reads.add(ns),
                HostOp::Write => self.writes.add(ns),
            }
        }
    }

    /// Whether hosts did I/O here within the last `window`.
    pub fn within(&self, window: Duration) -> bool {
        match self.last.load(Ordering::Relaxed) {
            0 => false,
            last => {
                let now = self.epoch.elapsed().as_nanos();
                now.saturating_sub(u128::from(last - 1)) <= window.as_nanos()
            }
        }
    }

    /// Running totals of the small writes and reads timed.
    pub fn totals(&self) -> (Latencies, Latencies) {
        (self.writes.read(), self.reads.read())
    }

    /// The idle latencies learned so far.
    pub fn idle(&self) -> Idle {
        Idle {
            write_ns: self.idle_write_ns.load(Ordering::Relaxed),
            read_ns: self.idle_read_ns.load(Ordering::Relaxed),
        }
    }

    /// Learns from a period's `writes` and `reads` (see [`Idle::learn`]).
    pub fn learn(&self, writes: &Latencies, reads: &Latencies) {
        // Several copies may learn at once: each keeps the least.
        let learned = Idle::default().learn(writes, reads);
        let least = |at: &AtomicU64, ns: u64| {
            if ns > 0 {
                let _ = at.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    (v == 0 || ns < v).then_some(ns)
                });
            }
        };
        least(&self.idle_write_ns, learned.write_ns);
        least(&self.idle_read_ns, learned.read_ns);
    }
}

/// The host I/O of a site's devices.
#[derive(Default)]
pub struct HostIo {
    devices: Mutex<HashMap<u64, Arc<HostLoad>>>,
}

impl HostIo {
    /// The load of `device` (a volume's [`device`](crate::volume::Volume::device)).
    pub fn device(&self, device: u64) -> Arc<HostLoad> {
        // A map of counters stays valid across a panic elsewhere.
        let mut devices = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(devices.entry(device).or_default())
    }

    /// Times one host I/O of `bytes` on `device` until the guard drops.
    pub fn time(&self, device: u64, op: HostOp, bytes: u64) -> Timed {
        Timed {
            load: Some(self.device(device)),
            op,
            bytes,
            started: Instant::now(),
        }
    }
}

/// One host I/O being timed; noted on its device when dropped (whichever
/// way the I/O ended).
pub struct Timed {
    load: Option<Arc<HostLoad>>,
    op: HostOp,
    bytes: u64,
    started: Instant,
}

impl Timed {
    /// A guard that notes nothing (I/O that does not compete with copies).
    pub fn untimed() -> Timed {
        Timed {
            load: None,
            op: HostOp::Read,
            bytes: 0,
            started: Instant::now(),
        }
    }
}

impl Drop for Timed {
    fn drop(&mut self) {
        if let Some(load) = &self.load {
            load.note(self.op, self.bytes, self.started.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_host_io_is_timed_per_device_and_large_only_marks_it_recent() {
        let io = HostIo::default();
        assert!(!io.device(1).within(Duration::from_secs(3600)), "never");
        drop(io.time(1, HostOp::Write, 4096));
        drop(io.time(1, HostOp::Read, 4096));
        drop(io.time(1, HostOp::Write, 1 << 20));
        let (w, r) = io.device(1).totals();
        assert_eq!((w.count, r.count), (1, 1), "the 1 MiB write is not timed");
        assert!(io.device(1).within(Duration::from_secs(3600)));
        assert_eq!(io.device(2).totals(), Default::default(), "another disk");
        drop(Timed::untimed());
        std::thread::sleep(Duration::from_millis(5));
        assert!(!io.device(1).within(Duration::from_millis(1)));
    }

    #[test]
    fn the_idle_latency_is_the_least_period_mean_of_enough_ios() {
        let l = |count, total_ns| Latencies { count, total_ns };
        let idle = Idle::default().learn(&l(4, 400_000), &l(1, 10));
        assert_eq!(
            idle,
            Idle {
                write_ns: 100_000,
                read_ns: 0
            },
            "one read is too few"
        );
        let idle = idle.learn(&l(2, 1_000_000), &l(3, 30_000));
        assert_eq!(
            idle,
            Idle {
                write_ns: 100_000,
                read_ns: 10_000
            }
        );
        let idle = idle.learn(&l(2, 100_000), &Latencies::default());
        assert_eq!(idle.write_ns, 50_000);
        assert_eq!(l(3, 30).since(&l(1, 10)), l(2, 20));
        let load = HostLoad::default();
        load.learn(&l(2, 200), &l(0, 0));
        load.learn(&l(2, 400), &l(0, 0));
        assert_eq!(
            load.idle(),
            Idle {
                write_ns: 100,
                read_ns: 0
            }
        );
    }
}
