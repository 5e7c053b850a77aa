//! The advancing rule (Fig 7): a channel is alive while its messages keep
//! advancing. A [`Watch`] remembers the last accepted message of each
//! sender on one channel and says whether the next one is newer: a newer
//! serial (or one wrapped to 1) not dated before the last by more than the
//! clock slack, or a lower serial (a restarted sender counts from 1 again)
//! with a newer time. The same message read again and again (a frozen SVOL
//! after a silent split) is stale, and so is a replay of an older one.
//!
//! The slack is the freshness window: a sender whose clock steps back (NTP
//! correcting it) keeps its channels alive as long as its messages stay
//! fresh, instead of going silent until its clock catches up; a replay
//! older than the window is refused by the freshness rule anyway.
//!
//! The last accepted messages are the channel's watermark: hbd persists
//! them and seeds a new [`Watch`] with them at start, so a replay is stale
//! across restarts too.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::message::SERIAL_MAX;

/// What one observation of a channel showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// A newer message: the channel is alive.
    Advanced,
    /// The same (or an older) message again.
    Stale,
    /// Not looked at: the channel is turned off (Fig 8).
    Ignored,
}

/// The last accepted message of one sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// Its serial.
    pub serial: u32,
    /// Its time of generation (the sender's clock), ms since the epoch.
    pub time_ms: u64,
}

/// The last accepted messages of a channel.
#[derive(Debug, Default, Clone)]
pub struct Watch {
    marks: BTreeMap<String, Mark>,
    /// When a message last advanced; none before the first.
    pub advanced_at: Option<Instant>,
    /// Why the channel is not valid now (unreadable, stale, a stranger), if known.
    pub problem: Option<String>,
    /// The last message refused as outside the freshness window (counted once).
    pub refused: Option<Mark>,
    /// Messages that advanced the channel since this hbd started.
    pub advances: u64,
}

/// Serial numbers within this distance of the wrap count as wrapped.
const WRAP_WINDOW: u32 = 1 << 16;

impl Watch {
    /// Whether a message from `sender` would advance the channel, allowing
    /// its clock to have stepped back by up to `slack_ms`.
    pub fn is_newer(&self, sender: &str, serial: u32, time_ms: u64, slack_ms: u64) -> bool {
        match self.marks.get(sender) {
            Some(m) => {
                let next = serial > m.serial
                    || (m.serial > SERIAL_MAX - WRAP_WINDOW && serial < WRAP_WINDOW);
                if next {
                    time_ms.saturating_add(slack_ms) > m.time_ms
                } else {
                    // A restarted sender counts from 1 again, with a newer time.
                    serial < m.serial && time_ms > m.time_ms
                }
            }
            None => true,
        }
    }

    /// Takes a message from `sender` observed at `now`; remembers it if it
    /// advanced (`slack_ms`: see [`Watch::is_newer`]).
    pub fn observe(
        &mut self,
        sender: &str,
        serial: u32,
        time_ms: u64,
        slack_ms: u64,
        now: Instant,
    ) -> Observation {
        if !self.is_newer(sender, serial, time_ms, slack_ms) {
            return Observation::Stale;
        }
        self.marks
            .insert(sender.to_string(), Mark { serial, time_ms });
        self.advanced_at = Some(now);
        self.problem = None;
        self.advances += 1;
        Observation::Advanced
    }

    /// Starts from a persisted watermark: messages not newer are stale.
    /// The channel is not alive for it.
    pub fn seed(&mut self, sender: &str, mark: Mark) {
        self.marks.insert(sender.to_string(), mark);
    }

    /// The last accepted message of each sender.
    pub fn marks(&self) -> impl Iterator<Item = (&String, &Mark)> {
        self.marks.iter()
    }

    /// Forgets when the channel last advanced and why it failed (the
    /// watermark stays: an old message is old whatever became of the mirror).
    pub fn reset(&mut self) {
        self.advanced_at = None;
        self.problem = None;
    }

    /// Whether a message advanced within `timeout` before `now`.
    pub fn alive(&self, now: Instant, timeout: Duration) -> bool {
        self.advanced_at
            .is_some_and(|t| now.saturating_duration_since(t) <= timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SLACK: u64 = 3000;

    #[test]
    fn a_clock_stepped_back_within_the_slack_keeps_the_channel_alive() {
        let now = Instant::now();
        let mut w = Watch::default();
        assert_eq!(
            w.observe("p", 10, 50_000, SLACK, now),
            Observation::Advanced
        );
        // NTP steps the sender's clock back 2 s: its next messages still count.
        assert_eq!(
            w.observe("p", 11, 48_100, SLACK, now),
            Observation::Advanced
        );
        assert_eq!(
            w.observe("p", 12, 48_200, SLACK, now),
            Observation::Advanced
        );
        // Back further than the slack: refused.
        assert_eq!(w.observe("p", 13, 45_000, SLACK, now), Observation::Stale);
        // A late, reordered message is not the sender restarting.
        assert_eq!(w.observe("p", 11, 48_100, SLACK, now), Observation::Stale);
        assert_eq!(w.observe("p", 9, 48_150, SLACK, now), Observation::Stale);
        // A restarted sender (serial 1, a newer time) is.
        assert_eq!(w.observe("p", 1, 60_000, SLACK, now), Observation::Advanced);
    }

    #[test]
    fn a_seeded_watch_refuses_what_it_had_and_takes_what_is_newer() {
        let now = Instant::now();
        let mut w = Watch::default();
        w.seed(
            "prod-a",
            Mark {
                serial: 50,
                time_ms: 5000,
            },
        );
        assert!(
            !w.alive(now, Duration::from_secs(1)),
            "a seed is no sign of life"
        );
        assert_eq!(
            w.observe("prod-a", 50, 5000, SLACK, now),
            Observation::Stale
        );
        assert_eq!(
            w.observe("prod-a", 40, 4000, SLACK, now),
            Observation::Stale,
            "a replay"
        );
        assert_eq!(
            w.observe("prod-b", 40, 4000, SLACK, now),
            Observation::Advanced,
            "each sender has its own mark"
        );
        assert_eq!(
            w.observe("prod-a", 51, 5100, SLACK, now),
            Observation::Advanced
        );
        assert!(w.alive(now, Duration::from_secs(1)));
        w.reset();
        assert!(!w.alive(now, Duration::from_secs(1)));
        assert_eq!(
            w.observe("prod-a", 51, 5100, SLACK, now),
            Observation::Stale,
            "a reset keeps the watermark"
        );
    }
}
