//! This host's clocks as hbd's daemon reads them: the instance id drawn at
//! start, the uptime its heartbeats carry (CLOCK_BOOTTIME since start, so a
//! suspend counts and the time always advances within one run), and how far
//! CLOCK_BOOTTIME ran ahead of the monotonic clock between two ticks (a
//! suspend, which the monotonic clock does not see). The wall clock is read
//! only for what is shown.
//!
//! The stall watch is a thread of its own that wakes every few ms and adds
//! up how late it woke: when it did not run, neither did the rest of hbd
//! (SIGSTOP, a frozen VM, a starved host), and what hbd did not hear then
//! is no evidence. A tick that is late because of its own slow I/O is not a
//! stall: the watch runs beside it.
//!
//! Read by the tick task (and an install's probe beat); a lock guards the
//! last tick's readings; the stall watch's thread adds to an atomic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::time::{clock_gettime, ClockId};

/// CLOCK_BOOTTIME now (the monotonic clock, where it cannot be read).
fn boottime(fallback: Instant, origin: Instant) -> Duration {
    match clock_gettime(ClockId::CLOCK_BOOTTIME) {
        Ok(t) => Duration::from(t),
        Err(_) => fallback.saturating_duration_since(origin),
    }
}

/// The instance, the uptime and the suspend detector of one hbd run.
#[derive(Debug)]
pub struct HostClock {
    /// A random number drawn at start (never 0: 0 is "unknown" in a table).
    pub instance: u64,
    origin: Instant,
    boot_at_start: Duration,
    last: Mutex<Option<(Instant, Duration)>>,
    /// µs the stall watch found this process not running, not yet taken.
    stopped_us: Arc<AtomicU64>,
}

impl Default for HostClock {
    fn default() -> HostClock {
        HostClock::new()
    }
}

impl HostClock {
    /// Starts now, with a fresh instance id.
    pub fn new() -> HostClock {
        let origin = Instant::now();
        HostClock {
            instance: rand::random::<u64>().max(1),
            origin,
            boot_at_start: boottime(origin, origin),
            last: Mutex::new(None),
            stopped_us: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Starts the stall watch: a thread that wakes every `period` and adds
    /// how much later than that it woke, beyond one more `period` of slack.
    pub fn watch_stalls(&self, period: Duration) -> std::io::Result<()> {
        let stopped = Arc::clone(&self.stopped_us);
        std::thread::Builder::new()
            .name("hbd-stall-watch".into())
            .spawn(move || loop {
                let before = Instant::now();
                std::thread::sleep(period);
                let late = before.elapsed().saturating_sub(period);
                if late > period {
                    stopped.fetch_add(late.as_micros() as u64, Ordering::Relaxed);
                }
            })
            .map(drop)
    }

    /// How long the process was found not running since the last call.
    pub fn take_stopped(&self) -> Duration {
        Duration::from_micros(self.stopped_us.swap(0, Ordering::Relaxed))
    }

    /// Ms since start on CLOCK_BOOTTIME.
    pub fn uptime_ms(&self) -> u64 {
        let now = boottime(Instant::now(), self.origin);
        now.saturating_sub(self.boot_at_start).as_millis() as u64
    }

    /// How much further CLOCK_BOOTTIME ran than the monotonic clock since
    /// the last call (a suspend of the host), and notes `now`.
    pub fn suspended(&self, now: Instant) -> Duration {
        let boot = boottime(now, self.origin);
        // The readings stay consistent across a panic: a poisoned lock is usable.
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        match last.replace((now, boot)) {
            Some((mono0, boot0)) => boot
                .saturating_sub(boot0)
                .saturating_sub(now.saturating_duration_since(mono0)),
            None => Duration::ZERO,
        }
    }
}

/// A fresh nonce for the next heartbeat.
pub fn nonce() -> u64 {
    rand::random()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uptime_advances_and_no_suspend_is_seen_without_one() {
        let c = HostClock::new();
        assert_ne!(c.instance, 0);
        assert_ne!(HostClock::new().instance, c.instance, "fresh per start");
        let a = c.uptime_ms();
        std::thread::sleep(Duration::from_millis(20));
        assert!(c.uptime_ms() >= a + 19);
        assert_eq!(c.suspended(Instant::now()), Duration::ZERO);
        std::thread::sleep(Duration::from_millis(20));
        assert!(c.suspended(Instant::now()) < Duration::from_millis(5));
    }

    #[test]
    fn the_stall_watch_sees_a_stopped_process() {
        let c = HostClock::new();
        c.watch_stalls(Duration::from_millis(5)).expect("thread");
        std::thread::sleep(Duration::from_millis(50));
        assert!(c.take_stopped() < Duration::from_millis(20), "running");
        // SIGSTOP of this very process is not for a unit test: the
        // integration tests stop hbd for real (tests/hb_clock.rs).
    }
}
