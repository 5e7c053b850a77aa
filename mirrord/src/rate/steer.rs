//! One copy's controller state: the limit in force, the plan period being
//! measured (where the host's counters and the copy's bytes stood at its
//! start), and where the copy's tasks waited ([`Stalls`]), from which
//! `pair status` says what holds the copy back.
//!
//! [`Steer`] sits in the pair's copy progress (behind its mutex) and is
//! called by the copy's reader task once per frame; [`Stalls`] is added to
//! by the reader and sender tasks of the copy (atomics).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hbcore::control::HeldBy;
use hbcore::vocab::PairSettings;

use super::{
    held_by, plan, rebound, start, HostLoad, Latencies, Limit, Sample, StallSample, PLAN_PERIOD,
    QUIET,
};

/// Where a copy's tasks waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// The sender, for a frame from the reader.
    Starved,
    /// The sender, putting a frame on the link or waiting for an ack.
    Link,
    /// The reader, for the pacer.
    Paced,
    /// The reader, for its read of the PVOL.
    Read,
}

/// Nanoseconds a copy's tasks waited, per [`Stall`], since last taken.
#[derive(Debug, Default)]
pub struct Stalls {
    starved: AtomicU64,
    link: AtomicU64,
    paced: AtomicU64,
    read: AtomicU64,
}

impl Stalls {
    /// Adds `took` to `stall`.
    pub fn add(&self, stall: Stall, took: Duration) {
        let at = match stall {
            Stall::Starved => &self.starved,
            Stall::Link => &self.link,
            Stall::Paced => &self.paced,
            Stall::Read => &self.read,
        };
        at.fetch_add(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// What was added since the last take, and starts afresh.
    pub fn take(&self) -> StallSample {
        let take = |a: &AtomicU64| a.swap(0, Ordering::Relaxed);
        StallSample {
            starved: take(&self.starved),
            link: take(&self.link),
            paced: take(&self.paced),
            read: take(&self.read),
        }
    }
}

/// Where the counters stood when a plan period began.
#[derive(Debug, Clone, Copy)]
struct Period {
    at: Instant,
    writes: Latencies,
    reads: Latencies,
    copied: u64,
}

/// One copy's controller.
#[derive(Debug, Default)]
pub struct Steer {
    limit: Limit,
    held_by: HeldBy,
    period: Option<Period>,
}

impl Steer {
    /// The limit for a copy's next frame at `now`, given its settings, the
    /// host load of its disk, the bytes it moved so far and where its tasks
    /// waited; plans afresh once a [`PLAN_PERIOD`] has passed.
    pub fn limit(
        &mut self,
        now: Instant,
        settings: &PairSettings,
        load: &HostLoad,
        copied: u64,
        stalls: &Stalls,
    ) -> Limit {
        let (writes, reads) = load.totals();
        let begin = Period {
            at: now,
            writes,
            reads,
            copied,
        };
        let Some(p) = self.period else {
            self.limit = start(settings);
            self.held_by = HeldBy::None;
            self.period = Some(begin);
            stalls.take();
            return self.limit;
        };
        // `pair set` takes effect at the next frame.
        let limit = rebound(self.limit, settings);
        if limit.held_by_host_io != self.limit.held_by_host_io {
            self.held_by = held_by(limit, StallSample::default());
        }
        self.limit = limit;
        let elapsed = now.saturating_duration_since(p.at);
        if elapsed < PLAN_PERIOD {
            return self.limit;
        }
        let sample = Sample {
            period: elapsed,
            writes: writes.since(&p.writes),
            reads: reads.since(&p.reads),
            copied: copied.saturating_sub(p.copied),
            recent_host_io: load.within(QUIET),
        };
        self.limit = plan(self.limit, &sample, &load.idle(), settings);
        load.learn(&sample.writes, &sample.reads);
        self.held_by = held_by(self.limit, stalls.take());
        self.period = Some(begin);
        self.limit
    }

    /// The limit in force.
    pub fn current(&self) -> Limit {
        self.limit
    }

    /// What held the copy back in the last period.
    pub fn held_by(&self) -> HeldBy {
        self.held_by
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate::tests::settings;
    use crate::rate::HostOp;

    #[test]
    fn a_copy_is_slowed_when_the_host_suffers_beside_it_and_freed_when_it_stops() {
        let mib = 1 << 20;
        let s = settings(0, 4 * mib);
        let (load, stalls) = (HostLoad::default(), Stalls::default());
        let mut steer = Steer::default();
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(steer.limit(t0, &s, &load, 0, &stalls), Limit::NONE);
        assert_eq!(steer.held_by(), HeldBy::None);
        // Host writes at 1 ms each, idle latency unknown: a period at the floor.
        for _ in 0..10 {
            load.note(HostOp::Write, 4096, Duration::from_millis(1));
        }
        stalls.add(Stall::Link, Duration::from_millis(80));
        let l = steer.limit(ms(100), &s, &load, 50 * mib, &stalls);
        assert_eq!((l.bytes_per_s, l.held_by_host_io), (4 * mib, true));
        assert_eq!(steer.held_by(), HeldBy::HostIo);
        // At the floor they take 100 us: the idle latency (it was learned as 1 ms).
        for _ in 0..10 {
            load.note(HostOp::Write, 4096, Duration::from_micros(100));
        }
        let l = steer.limit(ms(200), &s, &load, 50 * mib + (400 << 10), &stalls);
        assert_eq!(load.idle().write_ns, 100_000);
        assert_eq!(l.bytes_per_s, 8 * mib, "doubled: well under the target");
        // Within a period nothing changes, but `pair set` does at once.
        let lower = settings(2 * mib, mib);
        assert_eq!(
            steer.limit(ms(250), &lower, &load, 0, &stalls),
            Limit::ceiling(&lower)
        );
        assert_eq!(steer.held_by(), HeldBy::None);
    }

    #[test]
    fn stalls_add_up_per_kind_until_taken() {
        let stalls = Stalls::default();
        stalls.add(Stall::Read, Duration::from_nanos(5));
        stalls.add(Stall::Read, Duration::from_nanos(5));
        stalls.add(Stall::Paced, Duration::from_nanos(1));
        let d = stalls.take();
        assert_eq!((d.read, d.paced, d.link, d.starved), (10, 1, 0, 0));
        assert_eq!(stalls.take(), StallSample::default());
    }
}
