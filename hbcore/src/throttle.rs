//! Logging that cannot be flooded: repeated refusals (bad frames, failed
//! handshakes, malformed requests) are counted per source and reason and
//! said at most once per period, with the count of those not said, in
//! bounded memory.
//!
//! ```text
//!  note("10.0.0.9", "wrong key") ─> first time: Say { suppressed: 0 }
//!  note(...) × 500 within the period ─> Quiet (counted)
//!  note(...) after the period ─> Say { suppressed: 500 }
//! ```
//! Past [`Throttle::capacity`] distinct keys, newcomers share one extra
//! bucket (`"other sources"`), so an attacker with many addresses still costs a
//! fixed amount of memory and at most one line per period per bucket.
//!
//! A caller that counts the occurrences itself (the link's refusal log, whose
//! summary counts by reason) asks [`Throttle::due`] instead: the same
//! decision, with nothing counted here, so each occurrence has one counter.
//! A throttle is shared by the tasks that note into it (one lock).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The shared bucket of sources beyond the capacity.
pub const OTHER: &str = "other sources";

/// Whether to write a log line now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Say it, and how many like it were not said since the last line.
    Say {
        /// Occurrences counted but not logged since the last line.
        suppressed: u64,
    },
    /// Counted; stay quiet.
    Quiet,
}

struct Entry {
    said_at: Instant,
    suppressed: u64,
}

/// A per-(source, reason) log limiter.
pub struct Throttle {
    period: Duration,
    capacity: usize,
    entries: Mutex<HashMap<(String, String), Entry>>,
}

impl Throttle {
    /// At most one line per source and reason each `period`; at most
    /// `capacity` distinct (source, reason) keys plus the shared bucket.
    pub fn new(period: Duration, capacity: usize) -> Throttle {
        Throttle {
            period,
            capacity: capacity.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// How many distinct keys are remembered at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Counts one occurrence of `reason` from `source` and says whether to log it.
    pub fn note(&self, source: &str, reason: &str) -> Verdict {
        self.note_at(source, reason, Instant::now())
    }

    /// Whether to log this occurrence of `reason` from `source` now: the
    /// decision of [`Throttle::note`], for a caller that counts the quiet
    /// ones itself (this throttle does not count them).
    pub fn due(&self, source: &str, reason: &str) -> bool {
        let verdict = self.decide(source, reason, Instant::now(), false);
        matches!(verdict, Verdict::Say { .. })
    }

    fn note_at(&self, source: &str, reason: &str, now: Instant) -> Verdict {
        self.decide(source, reason, now, true)
    }

    /// The one decision: say it if its key was not said this period; else
    /// count it as suppressed if `count`.
    fn decide(&self, source: &str, reason: &str, now: Instant, count: bool) -> Verdict {
        // A poisoned lock only means another thread panicked mid-update of counters.
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            // Forget keys quiet for a whole period: their count was said or is stale.
            let period = self.period;
            entries.retain(|_, e| now.duration_since(e.said_at) < period || e.suppressed > 0);
        }
        let mut key = (source.to_string(), reason.to_string());
        if !entries.contains_key(&key) && entries.len() >= self.capacity {
            // Full: every newcomer shares one extra bucket.
            key = (OTHER.to_string(), String::new());
        }
        match entries.get_mut(&key) {
            None => {
                entries.insert(
                    key,
                    Entry {
                        said_at: now,
                        suppressed: 0,
                    },
                );
                Verdict::Say { suppressed: 0 }
            }
            Some(e) if now.duration_since(e.said_at) >= self.period => {
                let suppressed = e.suppressed;
                e.said_at = now;
                e.suppressed = 0;
                Verdict::Say { suppressed }
            }
            Some(e) => {
                if count {
                    e.suppressed += 1;
                }
                Verdict::Quiet
            }
        }
    }

    /// Keys remembered now (for tests and status).
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The text to append to a log line for `suppressed` occurrences not said.
pub fn suppressed_note(suppressed: u64, period: Duration) -> String {
    if suppressed == 0 {
        String::new()
    } else {
        format!(" ({suppressed} more like it in the last {period:?} not logged)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_period_with_the_count_of_the_rest() {
        let t = Throttle::new(Duration::from_secs(60), 16);
        let start = Instant::now();
        assert_eq!(t.note_at("a", "r", start), Verdict::Say { suppressed: 0 });
        for _ in 0..500 {
            assert_eq!(t.note_at("a", "r", start), Verdict::Quiet);
        }
        // Another source or another reason is its own line.
        assert_eq!(t.note_at("b", "r", start), Verdict::Say { suppressed: 0 });
        assert_eq!(
            t.note_at("a", "other", start),
            Verdict::Say { suppressed: 0 }
        );
        let later = start + Duration::from_secs(61);
        assert_eq!(t.note_at("a", "r", later), Verdict::Say { suppressed: 500 });
    }

    #[test]
    fn due_decides_as_note_does_and_counts_nothing() {
        let t = Throttle::new(Duration::from_secs(60), 16);
        assert!(t.due("a", "r"));
        for _ in 0..10 {
            assert!(!t.due("a", "r"));
        }
        assert!(t.due("b", "r"), "another source is its own line");
        let entries = t.entries.lock().expect("lock");
        assert!(
            entries.values().all(|e| e.suppressed == 0),
            "the caller counts the quiet ones"
        );
    }

    #[test]
    fn many_sources_cost_bounded_memory_and_lines() {
        let t = Throttle::new(Duration::from_secs(60), 64);
        let now = Instant::now();
        let said = (0..5000)
            .filter(|i| {
                matches!(
                    t.note_at(
                        &format!("10.0.{}.{}:{i}", i / 256, i % 256),
                        "bad frame",
                        now
                    ),
                    Verdict::Say { .. }
                )
            })
            .count();
        assert!(t.len() <= 65, "{} keys", t.len());
        assert!(said <= 65, "{said} lines for 5000 sources");
        assert_eq!(
            t.note_at("another", "bad frame", now),
            Verdict::Quiet,
            "beyond the capacity, new sources share the bucket"
        );
    }
}
