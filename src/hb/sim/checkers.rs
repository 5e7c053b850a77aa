//! The checkers: what a run's history must satisfy, judged from the
//! simulator's ground truth (which message each delivery carried, which
//! run of the sender made it, which nonces it echoed and when the receiver
//! issued them), never from the checker's own view. A delivery is *valid*
//! as the spec says (`checker`'s and `watch`'s headers), on a channel
//! turned on: from the sender run of the channel's last valid message, a
//! higher serial with a later uptime; from another run, one that echoes a
//! nonce the receiver's current run issued within the echo window, and not
//! a run the channel has left behind since the receiver started. No wall
//! clock is in the spec: a clock step, of any size, at either side, can
//! make no delivery invalid, so (a) counts a failover after one as false.
//!
//! - (a) no false failover: no failover while an enabled channel delivered
//!   a valid heartbeat within its window (the timeout for a network; a
//!   mirror is read once per interval, so timeout - interval, as stated
//!   in `checker`); the time the standby itself was stopped does not count
//!   towards the window (its silence is not production's). A clock step
//!   changes no delivery's validity, so a failover after one while
//!   production is heard is false too.
//! - (b) no missed failover: once the armed standby (two valid deliveries
//!   on a channel since its start or re-arm) has heard nothing valid on any
//!   enabled channel for the bound, timeout + interval (the detection
//!   window plus one tick), it has failed over. Measured from production's
//!   last heartbeat, add the channel's delay (network delay; for a mirror
//!   the replication delay and one interval until the next read).
//! - (c) exactly one failover per outage: at most one until the operator
//!   re-arms (restarts included), and (b) says at least one.
//! - (d) step-down: a production host that took a valid heartbeat saying
//!   the standby failed over steps down at its next tick; it never steps
//!   down without one (or a handover). Production never fails over; the
//!   standby never steps down.
//! - (e) handover: production steps down to hand over only when it cannot
//!   serve, and asks once until re-armed; the standby takes over on a
//!   request only while production has stepped down (never two sites
//!   active), only if it can carry the duties, and refuses only if it
//!   cannot; a takeover on a request is the outage's one failover (c). One
//!   exception, which no message can close: a copy of the request already
//!   in flight when the operator re-armed production (held in a stopped
//!   standby's socket) may still be taken; production then steps down when
//!   it hears of the takeover, as (d) demands (and mirrord's fence stops
//!   its writes meanwhile). While the standby cannot carry the duties its
//!   failover waits (QoS), so (b) counts its silence from when it can again.

use std::collections::BTreeMap;

use super::faults::{SideId, PROD, STANDBY};
use crate::hb::logic::message::serial_ahead;

/// What a message said, as its sender generated it.
#[derive(Debug, Clone)]
pub struct Truth {
    /// Its serial.
    pub serial: u32,
    /// Its generation time on the sender's wall clock (for the trace).
    pub time_ms: u64,
    /// The sender's run.
    pub instance: u64,
    /// Its uptime.
    pub uptime_ms: u64,
    /// The nonces it echoed.
    pub echoes: Vec<u64>,
    /// The sender had failed over.
    pub failed_over: bool,
}

/// The last valid message of a channel at a receiver.
#[derive(Debug, Clone, Default)]
struct ChannelMark {
    last: Option<(u64, u32, u64)>,
    retired: Vec<u64>,
}

/// The history so far, and what it broke.
pub struct Checkers {
    timeout: u64,
    interval: u64,
    echo_window: u64,
    /// The failover bound after the last valid delivery (b).
    pub bound: u64,
    marks: [BTreeMap<String, ChannelMark>; 2],
    /// The nonces each side's current run issued, with when.
    issued: [BTreeMap<u64, u64>; 2],
    last_valid: [BTreeMap<String, u64>; 2],
    since_arm: BTreeMap<String, u32>,
    standby_since: u64,
    epoch_failovers: u32,
    no_channel_at: Option<u64>,
    missed_said: bool,
    step_down_due: Option<u64>,
    step_down_allowed: bool,
    /// Handover requests production made since it was last re-armed.
    asked: u32,
    /// Production was re-armed while a request of its own could still be in flight.
    asked_before_rearm: bool,
    /// What went wrong, in words (with the time).
    pub violations: Vec<String>,
}

impl Checkers {
    /// Checkers for a timeout and interval (ms).
    pub fn new(timeout: u64, interval: u64) -> Checkers {
        Checkers {
            timeout,
            interval,
            echo_window: 2 * timeout + 2 * interval,
            bound: timeout + interval,
            marks: Default::default(),
            issued: Default::default(),
            last_valid: Default::default(),
            since_arm: BTreeMap::new(),
            standby_since: 0,
            epoch_failovers: 0,
            no_channel_at: None,
            missed_said: false,
            step_down_due: None,
            step_down_allowed: false,
            asked: 0,
            asked_before_rearm: false,
            violations: vec![],
        }
    }

    fn window(&self, channel: &str) -> u64 {
        if channel.starts_with("mirror") {
            self.timeout - self.interval
        } else {
            self.timeout
        }
    }

    fn violation(&mut self, t: u64, what: String) {
        self.violations.push(format!("at {t} ms: {what}"));
    }

    /// Side `side` sent a beat with `nonce` at `t`.
    pub fn issued(&mut self, side: SideId, nonce: u64, t: u64) {
        self.issued[side].insert(nonce, t);
    }

    /// Message `m` reached side `to` on `channel` at `t`; `enabled`: the
    /// channel is on there. Whether it was valid.
    pub fn delivered(
        &mut self,
        to: SideId,
        channel: &str,
        m: &Truth,
        enabled: bool,
        t: u64,
    ) -> bool {
        if !enabled {
            return false;
        }
        let fresh_echo = m.echoes.iter().any(|n| {
            self.issued[to]
                .get(n)
                .is_some_and(|&at| t - at <= self.echo_window)
        });
        let mark = self.marks[to].entry(channel.into()).or_default();
        let newer = match mark.last {
            Some((instance, serial, uptime)) if instance == m.instance => {
                serial_ahead(serial, m.serial).is_some() && m.uptime_ms > uptime
            }
            _ => fresh_echo && !mark.retired.contains(&m.instance),
        };
        if !newer {
            return false;
        }
        if let Some((old, _, _)) = mark.last {
            if old != m.instance {
                mark.retired.push(old);
            }
        }
        mark.last = Some((m.instance, m.serial, m.uptime_ms));
        self.last_valid[to].insert(channel.into(), t);
        if to == STANDBY {
            *self.since_arm.entry(channel.into()).or_default() += 1;
        } else if m.failed_over {
            self.step_down_due.get_or_insert(t);
            self.step_down_allowed = true;
        } else {
            self.step_down_due = None;
        }
        true
    }

    /// Side `side` wakes at `until` from a stall of `ms` (its first tick
    /// after it): the silence it could not hear is no evidence. Its last
    /// valid deliveries count as `ms` later (never past its waking), so a
    /// failover on waking, whatever order its tick and the queued
    /// datagrams run in, is a false one; a missed failover is measured from
    /// its waking.
    pub fn stalled(&mut self, side: SideId, ms: u64, until: u64) {
        for v in self.last_valid[side].values_mut() {
            *v = (*v + ms).min(until);
        }
        if side == STANDBY {
            self.standby_since = self.standby_since.max(until);
        }
    }

    /// Mirror `channel` was installed or removed at `side`: what it showed is forgotten.
    pub fn reset_channel(&mut self, side: SideId, channel: &str) {
        self.last_valid[side].remove(channel);
        if side == STANDBY {
            self.since_arm.remove(channel);
        }
    }

    /// hbd at `side` started again at `t`: what it persisted stays (the
    /// marks), what it held in memory goes (its nonces, the runs left behind).
    pub fn restarted(&mut self, side: SideId, t: u64) {
        self.issued[side].clear();
        for mark in self.marks[side].values_mut() {
            mark.retired.clear();
        }
        if side == STANDBY {
            self.since_arm.clear();
            self.standby_since = t;
        }
    }

    /// The operator re-armed `side` at `t` (the fail-back is done).
    pub fn rearmed(&mut self, side: SideId, t: u64) {
        if side == STANDBY {
            self.epoch_failovers = 0;
            self.missed_said = false;
            self.since_arm.clear();
            self.standby_since = t;
        } else {
            self.step_down_due = None;
            self.step_down_allowed = false;
            self.asked_before_rearm |= self.asked > 0;
            self.asked = 0;
        }
    }

    /// `side` failed over at `t`, its enabled receiving channels `enabled`.
    pub fn failed_over(&mut self, side: SideId, t: u64, enabled: &[String]) {
        if side == PROD {
            return self.violation(t, "production failed over".into());
        }
        if self.epoch_failovers > 0 {
            self.violation(
                t,
                "a second failover before the operator re-armed (one per outage)".into(),
            );
        }
        self.epoch_failovers += 1;
        for ch in enabled {
            if let Some(&d) = self.last_valid[STANDBY].get(ch) {
                let window = self.window(ch);
                if t - d <= window {
                    self.violation(t, format!("false failover: {ch} delivered a valid heartbeat {} ms before (window {window} ms)", t - d));
                }
            }
        }
    }

    /// `side` stepped down at `t`.
    pub fn stepped_down(&mut self, side: SideId, t: u64) {
        if side == STANDBY {
            return self.violation(t, "the standby stepped down".into());
        }
        if !self.step_down_allowed {
            self.violation(
                t,
                "step-down without a valid heartbeat saying the standby failed over".into(),
            );
        }
        self.step_down_due = None;
    }

    /// `side` stepped down to hand over at `t` (and asked); `cannot`: it
    /// could not serve (its SYSTEM DOWN check failed).
    pub fn handed_over(&mut self, side: SideId, t: u64, cannot: bool) {
        if side == STANDBY {
            return self.violation(t, "the standby stepped down to hand over".into());
        }
        if !cannot {
            self.violation(t, "production handed over while it could serve".into());
        }
        self.asked += 1;
        // Its step-down again: a late copy of the old request finds it stepped down.
        self.asked_before_rearm = false;
        if self.asked > 1 {
            self.violation(
                t,
                format!("production asked for a handover {} times before it was re-armed (once per step-down)", self.asked),
            );
        }
    }

    /// `side` decided on a handover request at `t`: `accepted`, `take` (it
    /// fails over now); `prod_stepped_down`: production's table says it
    /// stepped down; `carry`: the side can carry the duties (truth).
    pub fn handover_decided(
        &mut self,
        side: SideId,
        t: u64,
        accepted: bool,
        take: bool,
        prod_stepped_down: bool,
        carry: bool,
    ) {
        if side == PROD {
            if take {
                self.violation(t, "production took over on a handover request".into());
            }
            return;
        }
        if take {
            if !prod_stepped_down && !self.asked_before_rearm {
                self.violation(t, "the standby took over on a request while production had not stepped down: two sites active".into());
            }
            if !carry {
                self.violation(
                    t,
                    "the standby took over on a request though it cannot carry the duties".into(),
                );
            }
            if self.epoch_failovers > 0 {
                self.violation(
                    t,
                    "a second failover (a handover) before the operator re-armed (one per outage)"
                        .into(),
                );
            }
            self.epoch_failovers += 1;
        } else if !accepted && carry {
            self.violation(
                t,
                "the standby refused a handover though it can carry the duties".into(),
            );
        }
        // A request in flight at the re-arm is decided now, or never.
        self.asked_before_rearm = false;
    }

    /// After the standby's tick at `t`: `channels`, its enabled receiving
    /// channels; `carry`: it can carry the duties (truth).
    pub fn standby_tick(&mut self, t: u64, channels: &[String], carry: bool) {
        if !carry {
            // Its failover waits (QoS): the bound counts from when it can.
            self.standby_since = t;
            return;
        }
        if channels.is_empty() {
            self.no_channel_at = Some(t);
            return;
        }
        if self.epoch_failovers > 0 || self.missed_said || !self.since_arm.values().any(|&n| n >= 2)
        {
            return;
        }
        let last = channels
            .iter()
            .filter_map(|ch| self.last_valid[STANDBY].get(ch))
            .max()
            .copied()
            .unwrap_or(self.standby_since);
        let quiet_since = last.max(self.standby_since);
        if t > quiet_since + self.bound && self.no_channel_at.is_none_or(|n| n < quiet_since) {
            self.violation(t, format!("missed failover: the armed standby heard nothing valid for {} ms (bound {} ms) and did not fail over", t - quiet_since, self.bound));
            // Said once per outage.
            self.missed_said = true;
        }
    }

    /// After production's tick at `t`; `stepped_down`: its table says so.
    pub fn production_tick(&mut self, t: u64, stepped_down: bool) {
        if let Some(d) = self.step_down_due {
            if t > d && !stepped_down {
                self.violation(t, format!("missed step-down: production took a heartbeat saying the standby failed over at {d} ms and did not step down"));
                self.step_down_due = None;
            }
        }
    }
}
