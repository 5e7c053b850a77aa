//! The advancing rule (Fig 7 rule 3): a channel is alive while its messages
//! keep advancing, judged without any clock but the sender's own. A
//! [`Watch`] remembers the last accepted message ([`Mark`]) of each sender
//! on one channel and judges the next one ([`Claim`]):
//!
//! - from the same sender instance (one run of its hbd): newer if its serial
//!   is ahead (wrapping to 1 after the maximum) and its uptime (the sender's
//!   monotonic clock since that start) is later; a serial further ahead than
//!   that uptime allows is refused, and so is a newer serial whose time did
//!   not advance. The same message read again (a frozen SVOL), a duplicate
//!   or a replay of an older one is stale.
//! - from another instance (the sender restarted, or this is its first
//!   message): accepted only if it echoes a nonce this host issued recently
//!   ([`super::challenge`]), which no captured message can, and never an
//!   instance this watch has already left behind.
//!
//! No wall clock is read: a step of either host's clock changes nothing.
//! The marks are the channel's watermark: hbd persists them and seeds a new
//! [`Watch`] with them at start, so a replay is stale across restarts too.
//!
//! Touched by whichever task holds the checker's lock (the tick, a UDP
//! receiver).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::message::serial_ahead as ahead;

/// The shortest interval hbd accepts (config): a sender's serial cannot
/// advance faster than one per this many ms of its uptime.
pub const MIN_INTERVAL_MS: u64 = 10;
/// Instances of a sender left behind, remembered per channel (the oldest is forgotten).
const RETIRED_MAX: usize = 16;

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

/// Why an authentic message was refused (each counted by name in the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A newer serial whose sender time did not advance.
    TimeBack,
    /// A serial further ahead than the sender's uptime allows.
    SerialJump,
    /// A new sender instance that echoes no nonce this host issued recently:
    /// a replay, or a peer that has not heard this host yet.
    Unverified,
    /// An instance of the sender this channel has already left behind.
    Retired,
}

impl Refusal {
    /// The refusal's name (as in `rejected_*` and the log).
    pub fn kind(self) -> &'static str {
        match self {
            Refusal::TimeBack => "time went back",
            Refusal::SerialJump => "serial jumped",
            Refusal::Unverified => "no fresh echo",
            Refusal::Retired => "retired instance",
        }
    }
}

/// The last accepted message of one sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// The sender's instance (one run of its hbd); 0: unknown (an old table).
    pub instance: u64,
    /// Its serial.
    pub serial: u32,
    /// Its uptime, ms on the sender's monotonic clock.
    pub uptime_ms: u64,
}

/// What the watch judges of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The sender's instance.
    pub instance: u64,
    /// Its serial.
    pub serial: u32,
    /// Its uptime, ms.
    pub uptime_ms: u64,
    /// It echoes a nonce this host issued within the echo window.
    pub echoed: bool,
}

impl Claim {
    fn mark(&self) -> Mark {
        Mark {
            instance: self.instance,
            serial: self.serial,
            uptime_ms: self.uptime_ms,
        }
    }
}

#[derive(Debug, Clone)]
struct Sender {
    mark: Mark,
    retired: VecDeque<u64>,
}

/// The last accepted messages of a channel.
#[derive(Debug, Default, Clone)]
pub struct Watch {
    senders: BTreeMap<String, Sender>,
    /// When a message last advanced; none before the first.
    pub advanced_at: Option<Instant>,
    /// Why the channel is not valid now (unreadable, stale, a stranger), if known.
    pub problem: Option<String>,
    /// The last message refused (a slot read again is counted once).
    pub refused: Option<Mark>,
    /// Messages that advanced the channel since this hbd started.
    pub advances: u64,
}

impl Watch {
    /// What a message from `sender` would do to the channel.
    pub fn judge(&self, sender: &str, claim: &Claim) -> Result<Observation, Refusal> {
        match self.senders.get(sender) {
            Some(s) if s.mark.instance == claim.instance => {
                let Some(d) = ahead(s.mark.serial, claim.serial) else {
                    return Ok(Observation::Stale);
                };
                if claim.uptime_ms <= s.mark.uptime_ms {
                    return Err(Refusal::TimeBack);
                }
                let allowed = (claim.uptime_ms - s.mark.uptime_ms) / MIN_INTERVAL_MS + 2;
                if u64::from(d) > allowed {
                    return Err(Refusal::SerialJump);
                }
                Ok(Observation::Advanced)
            }
            other => {
                if other.is_some_and(|s| s.retired.contains(&claim.instance)) {
                    Err(Refusal::Retired)
                } else if !claim.echoed {
                    Err(Refusal::Unverified)
                } else {
                    Ok(Observation::Advanced)
                }
            }
        }
    }

    /// Takes a message from `sender` observed at `now`; remembers it if it advanced.
    pub fn observe(
        &mut self,
        sender: &str,
        claim: &Claim,
        now: Instant,
    ) -> Result<Observation, Refusal> {
        let seen = self.judge(sender, claim)?;
        if seen != Observation::Advanced {
            return Ok(seen);
        }
        match self.senders.get_mut(sender) {
            Some(s) => {
                if s.mark.instance != claim.instance {
                    s.retired.push_back(s.mark.instance);
                    if s.retired.len() > RETIRED_MAX {
                        s.retired.pop_front();
                    }
                }
                s.mark = claim.mark();
            }
            None => {
                self.senders.insert(
                    sender.to_string(),
                    Sender {
                        mark: claim.mark(),
                        retired: VecDeque::new(),
                    },
                );
            }
        }
        self.advanced_at = Some(now);
        self.problem = None;
        self.advances += 1;
        Ok(Observation::Advanced)
    }

    /// Starts from a persisted watermark: messages not newer are stale.
    /// The channel is not alive for it.
    pub fn seed(&mut self, sender: &str, mark: Mark) {
        self.senders.insert(
            sender.to_string(),
            Sender {
                mark,
                retired: VecDeque::new(),
            },
        );
    }

    /// The last accepted message of each sender.
    pub fn marks(&self) -> impl Iterator<Item = (&String, &Mark)> {
        self.senders.iter().map(|(k, s)| (k, &s.mark))
    }

    /// Forgets when the channel last advanced and why it failed (the
    /// watermark stays: an old message is old whatever became of the mirror).
    pub fn reset(&mut self) {
        self.advanced_at = None;
        self.problem = None;
    }

    /// This host was stopped for `stall` until `now`: the silence it could
    /// not hear is no evidence, so the channel's last advance moves on by
    /// the stall (never past `now`).
    pub fn forgive(&mut self, stall: Duration, now: Instant) {
        if let Some(t) = self.advanced_at.as_mut() {
            *t = (*t + stall).min(now);
        }
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
    use crate::hb::logic::message::SERIAL_MAX;

    const A: u64 = 0xA1;

    fn claim(instance: u64, serial: u32, uptime_ms: u64, echoed: bool) -> Claim {
        Claim {
            instance,
            serial,
            uptime_ms,
            echoed,
        }
    }

    #[test]
    fn a_first_message_needs_a_fresh_echo_and_then_advances_by_serial_and_time() {
        let now = Instant::now();
        let mut w = Watch::default();
        assert_eq!(
            w.observe("p", &claim(A, 10, 5_000, false), now),
            Err(Refusal::Unverified),
            "a stranger that echoes nothing of ours could be a replay"
        );
        assert_eq!(
            w.observe("p", &claim(A, 10, 5_000, true), now),
            Ok(Observation::Advanced)
        );
        // Later messages of the same instance need no echo (a one-way channel keeps working).
        assert_eq!(
            w.observe("p", &claim(A, 11, 5_200, false), now),
            Ok(Observation::Advanced)
        );
        // The same message again, a duplicate, an older one: stale.
        assert_eq!(
            w.observe("p", &claim(A, 11, 5_200, false), now),
            Ok(Observation::Stale)
        );
        assert_eq!(
            w.observe("p", &claim(A, 9, 4_800, true), now),
            Ok(Observation::Stale)
        );
        // A newer serial whose time went back, or one that jumps: refused.
        assert_eq!(
            w.observe("p", &claim(A, 12, 5_100, false), now),
            Err(Refusal::TimeBack)
        );
        assert_eq!(
            w.observe("p", &claim(A, 5_000, 5_400, false), now),
            Err(Refusal::SerialJump)
        );
        // After a long cut the serial is far ahead, and so is the time.
        assert_eq!(
            w.observe("p", &claim(A, 100_000, 3_600_000, false), now),
            Ok(Observation::Advanced)
        );
    }

    #[test]
    fn serials_wrap_to_one() {
        let now = Instant::now();
        let mut w = Watch::default();
        w.seed(
            "p",
            Mark {
                instance: A,
                serial: SERIAL_MAX,
                uptime_ms: 100,
            },
        );
        assert_eq!(
            w.observe("p", &claim(A, 1, 200, false), now),
            Ok(Observation::Advanced)
        );
    }

    #[test]
    fn a_restarted_sender_is_taken_once_it_echoes_and_its_old_instance_never_again() {
        let now = Instant::now();
        let mut w = Watch::default();
        w.seed(
            "p",
            Mark {
                instance: A,
                serial: 50,
                uptime_ms: 9_000,
            },
        );
        assert!(
            !w.alive(now, Duration::from_secs(1)),
            "a seed is no sign of life"
        );
        assert_eq!(
            w.observe("p", &claim(A, 40, 8_000, true), now),
            Ok(Observation::Stale),
            "a replay across this host's restart"
        );
        // The sender restarted (serial and uptime from the start again).
        assert_eq!(
            w.observe("p", &claim(0xB2, 1, 10, false), now),
            Err(Refusal::Unverified)
        );
        assert_eq!(
            w.observe("p", &claim(0xB2, 2, 110, true), now),
            Ok(Observation::Advanced)
        );
        // Its old instance's messages, even echoing a fresh nonce, are refused.
        assert_eq!(
            w.observe("p", &claim(A, 51, 9_100, true), now),
            Err(Refusal::Retired)
        );
        assert_eq!(
            w.observe("q", &claim(A, 40, 8_000, true), now),
            Ok(Observation::Advanced),
            "each sender has its own mark"
        );
        assert!(w.alive(now, Duration::from_secs(1)));
        w.reset();
        assert!(!w.alive(now, Duration::from_secs(1)));
        assert_eq!(
            w.observe("p", &claim(0xB2, 2, 110, true), now),
            Ok(Observation::Stale),
            "a reset keeps the watermark"
        );
    }

    #[test]
    fn an_instance_that_changes_every_message_keeps_memory_bounded() {
        let now = Instant::now();
        let mut w = Watch::default();
        for i in 1..1000u64 {
            let _ = w.observe("p", &claim(i, 1, 1, true), now);
        }
        let s = w.senders.get("p").expect("p");
        assert_eq!(s.retired.len(), RETIRED_MAX);
    }

    #[test]
    fn a_stall_is_forgiven_from_its_end() {
        let t0 = Instant::now();
        let mut w = Watch::default();
        w.observe("p", &claim(A, 1, 1, true), t0).expect("taken");
        // Stopped for 60 s right after the message: alive as it was before.
        let later = t0 + Duration::from_secs(60);
        assert!(!w.alive(later, Duration::from_secs(1)));
        w.forgive(Duration::from_secs(60), later);
        assert!(w.alive(later, Duration::from_secs(1)));
        // Silent 5 s before a 60 s stop: still silent for those 5 s.
        let mut w = Watch::default();
        w.observe("p", &claim(A, 1, 1, true), t0).expect("taken");
        let later = t0 + Duration::from_secs(65);
        w.forgive(Duration::from_secs(60), later);
        assert!(!w.alive(later, Duration::from_secs(1)));
        assert!(w.alive(later, Duration::from_secs(5)));
        let mut never = Watch::default();
        never.forgive(Duration::from_secs(60), later);
        assert!(never.advanced_at.is_none(), "nothing to forgive");
    }
}
