//! A copy's recent rate and its ETA: samples of (time, bytes copied), one
//! per `GAP` at most, kept for `WINDOW`; the rate over what is kept and
//! the time the rest takes at that rate. The average since the copy began
//! says little of the end when a copy was held back for a while: the ETA
//! follows the last seconds. Pure: the copy task notes its bytes (through
//! the pair's runtime, under its copy lock), `pair status` reads.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How far back the rate looks.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Samples no closer than this.
const GAP: Duration = Duration::from_millis(250);
/// The rate needs this much time behind it to say anything.
const MIN_SPAN: Duration = Duration::from_secs(1);

/// The samples of one copy.
#[derive(Debug, Default, Clone)]
pub struct Recent {
    samples: VecDeque<(Instant, u64)>,
}

impl Recent {
    /// `copied` bytes in all at `now`.
    pub fn note(&mut self, now: Instant, copied: u64) {
        if self
            .samples
            .back()
            .is_none_or(|(t, _)| now.saturating_duration_since(*t) >= GAP)
        {
            self.samples.push_back((now, copied));
        }
        // Keep one sample at least WINDOW old: the rate spans the window.
        while self
            .samples
            .get(1)
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// Bytes per second over the kept samples up to `now` (`copied` then),
    /// once they span a second.
    pub fn rate(&self, now: Instant, copied: u64) -> Option<f64> {
        let (t0, c0) = *self.samples.front()?;
        let span = now.saturating_duration_since(t0);
        (span >= MIN_SPAN).then(|| copied.saturating_sub(c0) as f64 / span.as_secs_f64())
    }

    /// Seconds until `total` at the recent rate (none while it is unknown or 0).
    pub fn eta_s(&self, now: Instant, copied: u64, total: u64) -> Option<u64> {
        let rate = self.rate(now, copied).filter(|r| *r > 0.0)?;
        Some((total.saturating_sub(copied) as f64 / rate).ceil() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eta_follows_the_last_seconds_not_the_average() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut r = Recent::default();
        r.note(at(0), 0);
        assert_eq!(r.eta_s(at(500), 5, 100), None, "under a second: unknown");
        // 1 MB/s for 20 s (held back), then 10 MB/s.
        let mut copied = 0;
        for ms in (100..=20_000).step_by(100) {
            copied += 100_000;
            r.note(at(ms), copied);
        }
        for ms in (20_100..=40_000).step_by(100) {
            copied += 1_000_000;
            r.note(at(ms), copied);
        }
        let rate = r.rate(at(40_000), copied).expect("rate");
        assert!((rate - 10e6).abs() < 0.3e6, "{rate}");
        let total = copied + 100_000_000;
        let eta = r.eta_s(at(40_000), copied, total).expect("eta");
        assert!((9..=11).contains(&eta), "{eta} s for 100 MB at 10 MB/s");
        assert!(r.samples.len() <= 45, "bounded: {}", r.samples.len());
        // Nothing moves for a while: the rate falls, the ETA grows.
        let later = r.eta_s(at(45_000), copied, total).expect("eta");
        assert!(later > eta, "{later} after a pause, {eta} before");
        assert_eq!(r.eta_s(at(45_000), total, total), Some(0));
    }
}
