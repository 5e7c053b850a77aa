//! The per-channel health counter of seed 002 (Fig 4), and the generator's
//! disconnect counter (Fig 5). Pure: the daemon feeds the messages and
//! calls the period; every rule is unit-tested with the seed's numbers.
//!
//! The monitor's counter starts at `start` (20) when the channel opens.
//! Each valid message adds the difference between its sequence number and
//! the last one counted on that channel (one, unless messages went missing:
//! the gap is counted as `missing`). Every period (`period_intervals`
//! heartbeat intervals; the seed's 5 s at its 1 s interval) the counter is
//! checked and then clamped to `max` (48), lowered by `decrement` (4) and
//! floored at 0. As the seed has it (Fig 4, step 426 before 428–436), the
//! channel has failed (BAD) when a period's check finds the counter at 0,
//! and the fault analyzer runs; a message brings it back (GOOD). From the
//! clamp, 48 / 4 = 12 periods of silence reach 0 (60 s at the seed's
//! timing) and the 13th period's check declares it (65 s). `[counter]
//! fail_at = "decrement"` declares it at the decrement that reaches 0
//! instead, one period earlier (hbd's behaviour before 2026-12-07).
//!
//! The generator's disconnect counter starts at `disconnect` (20) when its
//! socket opens and goes down by one per heartbeat sent; once it has run out,
//! a send on a channel whose receiver hears nothing closes and re-opens the
//! socket (and the counter starts again).

use serde::{Deserialize, Serialize};

use super::message::SERIAL_MAX;

/// The counters' numbers (`[counter]` in hbd's config); the defaults are the seed's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CounterRule {
    /// The counter of a channel that opens.
    pub start: u32,
    /// The clamp applied every period.
    pub max: u32,
    /// Taken off every period.
    pub decrement: u32,
    /// Heartbeat intervals per period (the seed: 5 s at 1 s).
    pub period_intervals: u32,
    /// The generator's disconnect counter: heartbeats sent on a socket
    /// before a silent channel's socket is closed and re-opened.
    pub disconnect: u32,
    /// When a channel at 0 is declared BAD: at the next period's check
    /// (`check`, the seed's Fig 4, the default) or at the decrement that
    /// reaches 0 (`decrement`, one period earlier).
    pub fail_at: FailAt,
}

/// When a counter at 0 fails its channel (`[counter] fail_at`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailAt {
    /// The period's check finds it at 0 (seed 002, Fig 4, step 426).
    #[default]
    Check,
    /// The period's decrement brings it to 0.
    Decrement,
}

impl Default for CounterRule {
    fn default() -> CounterRule {
        CounterRule {
            start: 20,
            max: 48,
            decrement: 4,
            period_intervals: 5,
            disconnect: 20,
            fail_at: FailAt::Check,
        }
    }
}

impl CounterRule {
    /// Periods of silence that take a counter from `max` to 0.
    pub fn periods_to_zero(&self) -> u32 {
        self.max.div_ceil(self.decrement.max(1))
    }
}

/// What a message or a period did to a channel's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The counter reached 0: the channel has failed.
    Bad,
    /// A message on a BAD channel: it is good again.
    Good,
}

/// One channel's counter, and the counts shown beside it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// Whether the channel is open (watched); a closed channel is not counted.
    pub open: bool,
    /// The counter: 0 is BAD.
    pub value: u32,
    /// Valid messages counted since this hbd started.
    pub received: u64,
    /// Messages missing (gaps in the sequence numbers) since this hbd started.
    pub missing: u64,
    /// The sequence number of the last message counted.
    pub last_serial: Option<u32>,
    /// `missing` at the last period (new gaps since then are a warning).
    #[serde(default)]
    pub missing_at_period: u64,
    /// Declared BAD (by a period; until a message arrives).
    #[serde(default)]
    pub failed: bool,
}

/// Sequence numbers within this distance of the wrap count as wrapped.
const WRAP_WINDOW: u32 = 1 << 16;

/// How many messages `serial` is after `last`: the difference, across the
/// wrap from [`SERIAL_MAX`] to 1 too; a sender that restarted counting
/// from 1 (a lower serial, not near the wrap) is one message on.
pub fn serial_delta(last: u32, serial: u32) -> u32 {
    if serial > last {
        serial - last
    } else if last > SERIAL_MAX - WRAP_WINDOW && serial < WRAP_WINDOW {
        (SERIAL_MAX - last).saturating_add(serial)
    } else {
        1
    }
}

impl Counter {
    /// Opens the channel: the counter starts at `rule.start` (the counts stay).
    pub fn open(&mut self, rule: &CounterRule) {
        self.open = true;
        self.value = rule.start;
        self.last_serial = None;
        self.missing_at_period = self.missing;
        self.failed = false;
    }

    /// Closes the channel (turned off): not counted until opened again.
    pub fn close(&mut self) {
        self.open = false;
        self.value = 0;
        self.last_serial = None;
        self.failed = false;
    }

    /// Whether the channel is GOOD (open, not declared BAD).
    pub fn good(&self) -> bool {
        self.open && !self.failed
    }

    /// A valid message with `serial`: adds the difference of sequence numbers.
    pub fn message(&mut self, serial: u32) -> Option<Change> {
        let delta = self
            .last_serial
            .map_or(1, |last| serial_delta(last, serial));
        self.last_serial = Some(serial);
        self.received += 1;
        self.missing += u64::from(delta.saturating_sub(1));
        if !self.open {
            return None;
        }
        self.value = self.value.saturating_add(delta);
        let was_bad = std::mem::take(&mut self.failed);
        was_bad.then_some(Change::Good)
    }

    /// The period's step (Fig 4, steps 425–436): a counter found at 0 fails
    /// the channel (step 426; with `fail_at = "decrement"`, the decrement
    /// that reaches 0 does); otherwise clamp to `max`, lower by `decrement`,
    /// floor at 0. Returns [`Change::Bad`] once, when the channel fails.
    pub fn period(&mut self, rule: &CounterRule) -> Option<Change> {
        self.missing_at_period = self.missing;
        if !self.open || self.failed {
            return None;
        }
        if self.value == 0 && rule.fail_at == FailAt::Check {
            self.failed = true;
            return Some(Change::Bad);
        }
        self.value = self.value.min(rule.max).saturating_sub(rule.decrement);
        if self.value == 0 && rule.fail_at == FailAt::Decrement {
            self.failed = true;
            return Some(Change::Bad);
        }
        None
    }

    /// Messages found missing since the last period.
    pub fn new_gaps(&self) -> u64 {
        self.missing.saturating_sub(self.missing_at_period)
    }
}

/// What the generator does with a channel's socket before a send (Fig 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketStep {
    /// Send on it.
    Send,
    /// Close it and open a new one, then send.
    Reopen,
}

/// The generator's disconnect counter of one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Disconnect {
    /// Sends left before the receiver is asked.
    pub left: u32,
}

impl Disconnect {
    /// A socket was opened: the counter starts.
    pub fn opened(&mut self, rule: &CounterRule) {
        self.left = rule.disconnect;
    }

    /// Before a send (Fig 5, steps 518–526): while the counter lasts, send
    /// and count down; once it has run out, send if this channel's receiver
    /// hears the peer (`hears`), else re-open the socket.
    pub fn before_send(&mut self, hears: bool, rule: &CounterRule) -> SocketStep {
        if self.left > 0 {
            self.left -= 1;
            SocketStep::Send
        } else if hears {
            SocketStep::Send
        } else {
            self.left = rule.disconnect;
            SocketStep::Reopen
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_numbers_forty_eight_to_zero_in_sixty_seconds_at_one_second() {
        let rule = CounterRule::default();
        assert_eq!(rule.periods_to_zero(), 12);
        // A channel heard every second: each period (every 5 s of 1 s
        // intervals) gains 5 and loses 4, so from 20 it climbs to the clamp
        // (at 120 s) and then stays between 44 and 49, never BAD.
        let mut c = Counter::default();
        c.open(&rule);
        assert_eq!(c.value, 20, "starts at 20 when the channel opens");
        let mut serial = 0;
        for second in 1..=200u32 {
            serial += 1;
            c.message(serial);
            if second % rule.period_intervals == 0 {
                assert_eq!(c.period(&rule), None);
            }
            if second >= 125 {
                assert!((44..=49).contains(&c.value), "{second}: {}", c.value);
            }
        }
        // Four more messages: the counter is at its maximum, 48. Then
        // silence: no message for 60 s brings it to 0, not one second less.
        for _ in 0..4 {
            serial += 1;
            c.message(serial);
        }
        assert_eq!(c.value, 48);
        let mut bad_at = None;
        let mut zero_at = None;
        for second in 1..=100u32 {
            if second % rule.period_intervals == 0 && c.period(&rule) == Some(Change::Bad) {
                bad_at = Some(second);
            }
            if c.value == 0 {
                zero_at.get_or_insert(second);
            }
            assert_eq!(c.good(), second < 65, "{second} s of silence");
        }
        // Zero after 60 s, declared at the next period's check (step 426).
        assert_eq!((zero_at, bad_at), (Some(60), Some(65)));
        assert_eq!(c.missing, 0);
        // At the decrement instead, when the config says so.
        let early = CounterRule {
            fail_at: FailAt::Decrement,
            ..rule
        };
        let mut c = Counter::default();
        c.open(&early);
        c.value = 48;
        let bad = (1..=20).find(|_| c.period(&early) == Some(Change::Bad));
        assert_eq!(bad, Some(12), "60 s");
    }

    #[test]
    fn at_the_clamp_twelve_periods_reach_zero_and_the_thirteenths_check_fails_it() {
        let rule = CounterRule::default();
        let mut c = Counter::default();
        c.open(&rule);
        for s in 1..=40 {
            c.message(s);
        }
        assert_eq!(c.value, 60);
        for _ in 0..11 {
            assert_eq!(c.period(&rule), None);
        }
        assert_eq!(c.value, 48 - 44, "48 - 11 x 4");
        assert_eq!(c.period(&rule), None, "the twelfth takes it to 0");
        assert_eq!(c.value, 0);
        assert!(c.good(), "not failed before a check finds it at 0");
        assert_eq!(c.period(&rule), Some(Change::Bad));
        assert!(!c.good());
        assert_eq!(c.period(&rule), None, "floored at 0, reported once");
        assert_eq!(c.message(41), Some(Change::Good));
        assert_eq!(c.value, 1);
    }

    #[test]
    fn a_new_channel_fails_after_five_silent_periods() {
        let rule = CounterRule::default();
        let mut c = Counter::default();
        c.open(&rule);
        let bad = (1..=10).find(|_| c.period(&rule) == Some(Change::Bad));
        assert_eq!(
            bad,
            Some(6),
            "20 / 4 periods to 0, the sixth finds it: 30 s"
        );
    }

    #[test]
    fn gaps_add_their_difference_and_are_counted_missing() {
        let rule = CounterRule::default();
        let mut c = Counter::default();
        c.open(&rule);
        c.message(10);
        c.message(11);
        c.message(15);
        assert_eq!(c.value, 20 + 1 + 1 + 4, "+1, +1, +4");
        assert_eq!((c.received, c.missing), (3, 3));
        assert_eq!(c.new_gaps(), 3);
        c.period(&rule);
        assert_eq!(c.new_gaps(), 0);
        // Across the wrap to 1, and a restarted sender counting from 1.
        assert_eq!(serial_delta(SERIAL_MAX - 1, 2), 3);
        assert_eq!(serial_delta(500_000, 1), 1);
        // A closed channel counts nothing toward its state.
        c.close();
        assert_eq!(c.message(16), None);
        assert!(!c.good());
    }

    #[test]
    fn the_disconnect_counter_reopens_only_a_silent_channel() {
        let rule = CounterRule::default();
        let mut d = Disconnect::default();
        d.opened(&rule);
        for _ in 0..20 {
            assert_eq!(d.before_send(false, &rule), SocketStep::Send);
        }
        assert_eq!(
            d.before_send(true, &rule),
            SocketStep::Send,
            "run out, but the receiver hears the peer"
        );
        assert_eq!(d.before_send(false, &rule), SocketStep::Reopen);
        assert_eq!(d.left, 20, "the new socket's counter starts again");
    }
}
