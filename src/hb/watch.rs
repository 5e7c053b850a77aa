//! The advancing rule (Fig 7): a channel is alive while its messages keep
//! advancing. A [`Watch`] remembers the last accepted message of one channel
//! and says whether the next one is newer: a newer generation time, and a
//! newer serial (or one wrapped to 1, or restarted by a restarted sender).
//! The same message read again and again (a frozen SVOL after a silent
//! split) is stale.

use std::time::{Duration, Instant};

use super::message::SERIAL_MAX;

/// What one observation of a channel showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// A newer message: the channel is alive.
    Advanced,
    /// The same (or an older) message again.
    Stale,
}

/// The last accepted message of a channel.
#[derive(Debug, Default, Clone)]
pub struct Watch {
    serial: Option<u32>,
    time_ms: Option<u64>,
    /// When a message last advanced; none before the first.
    pub advanced_at: Option<Instant>,
    /// Why the channel is not valid now (unreadable, stale, a stranger), if known.
    pub problem: Option<String>,
}

/// Serial numbers within this distance of the wrap count as wrapped.
const WRAP_WINDOW: u32 = 1 << 16;

impl Watch {
    /// Takes a message observed at `now`; remembers it if it advanced.
    pub fn observe(&mut self, serial: u32, time_ms: u64, now: Instant) -> Observation {
        let advanced = match (self.serial, self.time_ms) {
            (Some(s), Some(t)) => {
                let newer_serial =
                    serial > s || (s > SERIAL_MAX - WRAP_WINDOW && serial < WRAP_WINDOW);
                // A restarted sender counts from 1 again, with a newer time.
                time_ms > t && (newer_serial || serial < s)
            }
            _ => true,
        };
        if advanced {
            self.serial = Some(serial);
            self.time_ms = Some(time_ms);
            self.advanced_at = Some(now);
            self.problem = None;
            Observation::Advanced
        } else {
            Observation::Stale
        }
    }

    /// Whether a message advanced within `timeout` before `now`.
    pub fn alive(&self, now: Instant, timeout: Duration) -> bool {
        self.advanced_at
            .is_some_and(|t| now.saturating_duration_since(t) <= timeout)
    }
}
