//! The checkers: what a run's history must satisfy, judged from the
//! simulator's ground truth (which message each delivery carried, when it
//! was generated, whether it was a copy), never from the checker's own
//! view. A delivery is *valid* as the spec says (`checker`'s header): a
//! genuine heartbeat of the peer, within the freshness window of the
//! receiver's clock, newer than the last valid one on that channel (a
//! higher serial dated no more than the freshness window before it, or a
//! lower serial with a later time: a restarted sender counts again,
//! `watch`), on a channel turned on. (So a backward step of the sender's
//! clock within the freshness window changes nothing; a larger one makes
//! its heartbeats not fresh: the summary counts the failovers while
//! production was running.)
//!
//! - (a) no false failover: no failover while an enabled channel delivered
//!   a valid heartbeat within its window (the timeout for a network; a
//!   mirror is read once per interval, so timeout - interval, as stated
//!   in `checker`).
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
//!   down without one. Production never fails over; the standby never
//!   steps down.

use std::collections::BTreeMap;

use super::faults::{SideId, PROD, STANDBY};

/// What a message said, as its sender generated it.
#[derive(Debug, Clone, Copy)]
pub struct Truth {
    /// Its serial.
    pub serial: u32,
    /// Its generation time on the sender's wall clock.
    pub time_ms: u64,
    /// The sender had failed over.
    pub failed_over: bool,
}

/// The history so far, and what it broke.
pub struct Checkers {
    timeout: u64,
    interval: u64,
    freshness: u64,
    /// The failover bound after the last valid delivery (b).
    pub bound: u64,
    marks: [BTreeMap<String, (u32, u64)>; 2],
    last_valid: [BTreeMap<String, u64>; 2],
    since_arm: BTreeMap<String, u32>,
    standby_since: u64,
    epoch_failovers: u32,
    no_channel_at: Option<u64>,
    missed_said: bool,
    step_down_due: Option<u64>,
    step_down_allowed: bool,
    /// What went wrong, in words (with the time).
    pub violations: Vec<String>,
}

impl Checkers {
    /// Checkers for a timeout, interval and freshness window (ms).
    pub fn new(timeout: u64, interval: u64, freshness: u64) -> Checkers {
        Checkers {
            timeout,
            interval,
            freshness,
            bound: timeout + interval,
            marks: Default::default(),
            last_valid: Default::default(),
            since_arm: BTreeMap::new(),
            standby_since: 0,
            epoch_failovers: 0,
            no_channel_at: None,
            missed_said: false,
            step_down_due: None,
            step_down_allowed: false,
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

    /// Message `m` reached side `to` on `channel` at `t` (the receiver's
    /// wall clock `wall`); `enabled`: the channel is on there. Whether it
    /// was valid.
    pub fn delivered(
        &mut self,
        to: SideId,
        channel: &str,
        m: Truth,
        wall: u64,
        enabled: bool,
        t: u64,
    ) -> bool {
        if !enabled || m.time_ms.abs_diff(wall) > self.freshness {
            return false;
        }
        let slack = self.freshness;
        let newer = self.marks[to].get(channel).is_none_or(|&(serial, time)| {
            if m.serial > serial {
                m.time_ms + slack > time
            } else {
                m.serial < serial && m.time_ms > time
            }
        });
        if !newer {
            return false;
        }
        self.marks[to].insert(channel.into(), (m.serial, m.time_ms));
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

    /// Mirror `channel` was installed or removed at `side`: what it showed is forgotten.
    pub fn reset_channel(&mut self, side: SideId, channel: &str) {
        self.last_valid[side].remove(channel);
        if side == STANDBY {
            self.since_arm.remove(channel);
        }
    }

    /// hbd at `side` started again at `t`.
    pub fn restarted(&mut self, side: SideId, t: u64) {
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

    /// After the standby's tick at `t`: `channels`, its enabled receiving channels.
    pub fn standby_tick(&mut self, t: u64, channels: &[String]) {
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
