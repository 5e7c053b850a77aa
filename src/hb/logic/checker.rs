//! The decision (Fig 7): [`Checker`] holds the status table and a
//! [`Watch`] per channel; messages and read results go in with the time they
//! were observed, [`Checker::evaluate`] turns them into table entries and
//! transitions, [`Checker::failover_reason`] decides the standby's failover
//! and [`Checker::step_down_reason`] a returning production host's step-down
//! (the handover, production's own step-down, is [`super::handover`]'s).
//!
//! It is pure: the daemon supplies the clock, so every rule here is
//! unit-tested without waiting. A message is accepted on a channel that is
//! turned on (Fig 8) when it comes from an approved identifier and advances
//! its sender's watermark on that channel ([`super::watch`]: same instance,
//! serial and the sender's uptime ahead; a new instance must echo a nonce
//! of this host's, [`super::challenge`]; the watermark survives restarts).
//! A channel is valid while accepted messages keep arriving within the
//! timeout on this host's monotonic clock. No wall clock decides anything:
//! the sender's wall-clock time only gives the clock offset that is shown.
//! A stall of this host (its tick late) is forgiven: the silence it could
//! not hear is no evidence ([`Checker::ticked`]).
//!
//! Touched under the daemon's checker lock, by the tick and the UDP
//! receivers (`accept`: what a message does; `counting`: networks and counters).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use super::analysis::network_label;
use super::challenge::{echo_window, Challenges};
use super::counter::CounterRule;
use super::message::Beat;
use super::table::{now_ms, ArmPolicy, DeviceStatus, Direction, Enable, GroupStatus, Table};
use super::watch::{Mark, Watch};
use hbcore::vocab::Group;

mod accept;
mod clocks;
mod counting;
mod mismatch;

pub use clocks::{ClockChange, Identity};
pub use counting::CounterChange;

/// A moment, on both clocks: the monotonic one for timeouts, the wall
/// clock (ms since the epoch) for what is shown (last seen, clock offsets).
#[derive(Debug, Clone, Copy)]
pub struct At {
    /// Monotonic time.
    pub mono: Instant,
    /// Wall-clock time, ms since the epoch.
    pub wall_ms: u64,
}

impl At {
    /// Now.
    pub fn now() -> At {
        At {
            mono: Instant::now(),
            wall_ms: now_ms(),
        }
    }
}

/// The timing of the checks.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Silence after which a channel fails.
    pub timeout: Duration,
    /// Between heartbeats (and mirror reads).
    pub interval: Duration,
    /// A peer's clock further off than this is warned of (never acted on).
    pub clock_warn: Duration,
    /// The channels' counters.
    pub counter: CounterRule,
}

/// A change worth a log line and an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The channel: `network` or `mirror NAME`.
    pub channel: String,
    /// Failed (true) or recovered (false).
    pub failed: bool,
    /// Why.
    pub why: String,
}

/// A network datagram refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The kind of refusal (a log line is limited per sender address and kind).
    pub kind: &'static str,
    /// What was wrong with it.
    pub why: String,
}

/// The table and the per-channel watches behind it.
pub struct Checker {
    /// The table.
    pub table: Table,
    approved: Vec<String>,
    timeout: Duration,
    /// Mirrors are read once per interval, so a heartbeat is seen up to one
    /// interval after it was written: they get `timeout - interval` between
    /// observed advances, so that detection from the last write stays within
    /// timeout + interval on every channel.
    mirror_timeout: Duration,
    /// A peer clock offset past this is told (never acted on).
    clock_warn: Duration,
    /// Start of the grace period (start-up or re-arming).
    started: Instant,
    /// The nonces this host issued (their echoes prove a new sender run fresh).
    challenges: Challenges,
    /// The uptime of the last beat composed (they must advance).
    last_uptime_ms: u64,
    /// Channels whose peer clock offset is past `clock_warn` (warned once).
    clock_warned: BTreeSet<String>,
    /// Each network's watch, by network name.
    networks: BTreeMap<String, Watch>,
    devices: BTreeMap<String, Watch>,
    rule: CounterRule,
    /// Channels that went BAD or GOOD by their counters, not yet taken.
    counter_changes: Vec<CounterChange>,
    /// When a valid heartbeat last came on a network turned off here, by
    /// network name (configured networks only).
    heard_while_off: BTreeMap<String, Instant>,
}

fn mirror_channel(name: &str) -> String {
    format!("mirror {name}")
}

impl Checker {
    /// A checker around `table` (resumed or fresh), approving messages from
    /// `approved` senders, arming failover by `policy`; its watches start
    /// from the table's watermarks.
    pub fn new(
        mut table: Table,
        approved: Vec<String>,
        timing: Timing,
        policy: ArmPolicy,
        now: Instant,
    ) -> Checker {
        table.arm_policy = policy;
        table.armed = policy == ArmPolicy::AfterTimeout;
        let mut networks: BTreeMap<String, Watch> = BTreeMap::new();
        let mut devices: BTreeMap<String, Watch> = BTreeMap::new();
        for w in &table.watermarks {
            let mark = Mark {
                instance: w.instance,
                serial: w.serial,
                uptime_ms: w.uptime_ms,
            };
            match (
                w.channel.strip_prefix("mirror "),
                w.channel.strip_prefix("network "),
            ) {
                (Some(name), _) => devices
                    .entry(name.into())
                    .or_default()
                    .seed(&w.sender, mark),
                (None, Some(name)) => networks
                    .entry(name.into())
                    .or_default()
                    .seed(&w.sender, mark),
                (None, None) => networks
                    .entry(w.channel.clone())
                    .or_default()
                    .seed(&w.sender, mark),
            }
        }
        let mut checker = Checker {
            table,
            approved,
            timeout: timing.timeout,
            mirror_timeout: timing.timeout.saturating_sub(timing.interval),
            clock_warn: timing.clock_warn,
            started: now,
            challenges: Challenges::new(echo_window(timing.timeout, timing.interval)),
            last_uptime_ms: 0,
            clock_warned: Default::default(),
            heard_while_off: BTreeMap::new(),
            networks,
            devices,
            rule: timing.counter,
            counter_changes: Vec::new(),
        };
        checker.open_counters(true);
        checker
    }

    fn in_grace(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.started) <= self.timeout
    }

    /// Rule (1): the sender is an approved member.
    pub fn approve(&self, beat: &Beat) -> Result<(), String> {
        if self.approved.contains(&beat.sender) {
            Ok(())
        } else {
            Err(format!(
                "heartbeat from '{}', which is not an approved peer ({})",
                beat.sender,
                self.approved.join(", ")
            ))
        }
    }

    /// A sending mirror was written (or not).
    pub fn mirror_written(&mut self, name: &str, written: Result<u32, String>) {
        if let Some(d) = self
            .table
            .devices
            .iter_mut()
            .find(|d| d.name == name && d.status != DeviceStatus::Null)
        {
            match written {
                Ok(serial) => {
                    d.sent += 1;
                    d.seen.count += 1;
                    d.seen.last_ms = Some(now_ms());
                    d.seen.last_serial = Some(serial);
                    d.seen.problem = None;
                }
                Err(why) => d.seen.problem = Some(why),
            }
        }
    }

    /// Forgets what was seen on mirror `name` (installed anew or removed);
    /// its watermark stays.
    pub fn reset_mirror(&mut self, name: &str) {
        if let Some(w) = self.devices.get_mut(name) {
            w.reset();
        }
    }

    /// Brings the table up to date; returns the channels that failed or recovered.
    pub fn evaluate(&mut self, now: Instant) -> Vec<Transition> {
        let grace = self.in_grace(now);
        let (timeout, mirror_timeout) = (self.timeout, self.mirror_timeout);
        let mut changes = Vec::new();

        // 200/210: each network, and the networks together.
        self.evaluate_networks(now, grace, &mut changes);
        self.note_mismatches(now);
        self.open_counters(false);
        let t = &mut self.table;

        // 241: each mirror.
        let mut receiving = 0;
        let mut alive = 0;
        let mut failed = 0;
        for d in t
            .devices
            .iter_mut()
            .filter(|d| d.status != DeviceStatus::Null)
        {
            if !t.mirrors_wanted || !d.wanted {
                d.status = DeviceStatus::Disable;
                continue;
            }
            if d.status == DeviceStatus::Disable {
                // Turned back on: in use until found failed.
                d.status = DeviceStatus::Enable;
            }
            let ok = match d.direction {
                Direction::Send => match &d.pair_problem {
                    // Not written while its pair may be split (Fig 5).
                    Some(why) => {
                        d.seen.problem = Some(why.clone());
                        false
                    }
                    None => d.seen.problem.is_none(),
                },
                Direction::Receive => {
                    receiving += 1;
                    let watch = self.devices.entry(d.name.clone()).or_default();
                    let ok =
                        watch.alive(now, mirror_timeout) || (grace && watch.advanced_at.is_none());
                    if ok {
                        d.seen.problem = None;
                    } else {
                        d.seen.problem = Some(watch.problem.clone().unwrap_or_else(|| {
                            format!("no valid heartbeat for over {mirror_timeout:?}")
                        }));
                    }
                    if watch.alive(now, mirror_timeout) {
                        alive += 1;
                    }
                    ok
                }
            };
            let channel = format!("mirror {}", d.name);
            if ok && d.status == DeviceStatus::Failed {
                changes.push(Transition {
                    channel,
                    failed: false,
                    why: "valid heartbeats again".into(),
                });
                d.status = DeviceStatus::Enable;
            } else if !ok && d.status == DeviceStatus::Enable {
                changes.push(Transition {
                    channel,
                    failed: true,
                    why: d.seen.problem.clone().unwrap_or_default(),
                });
                d.status = DeviceStatus::Failed;
            }
            // Only the mirrors that bring the peer's heartbeats say whether
            // it is alive: a failed write of this host's own PVOL says
            // nothing of the peer (counted, it kept the standby from ever
            // failing over while its PVOL failed; found by the simulation).
            if d.status == DeviceStatus::Failed && d.direction == Direction::Receive {
                failed += 1;
            }
        }

        // 220/230: the mirrors as a whole.
        let usable = t.devices.iter().any(|d| d.status == DeviceStatus::Enable);
        t.remote_copy_enable = if !t.mirrors_wanted {
            Enable::Disable
        } else if usable {
            Enable::Enable
        } else {
            Enable::Failed
        };
        t.remote_group_via_mirrors = if !t.mirrors_wanted || receiving == 0 {
            GroupStatus::Unknown
        } else if alive > 0 {
            GroupStatus::Alive
        } else if failed == receiving {
            GroupStatus::Failed
        } else {
            GroupStatus::Unknown
        };
        // Seen alive: a channel that advanced twice since start and is alive
        // (the first read of a mirror may be production's last heartbeat
        // from before this hbd started, no sign of life since).
        let seen_alive = |w: &Watch, timeout| w.advances >= 2 && w.alive(now, timeout);
        if self
            .networks
            .iter()
            .any(|(name, w)| t.network_is_on(name) && seen_alive(w, timeout))
            || t.devices.iter().any(|d| {
                d.direction == Direction::Receive
                    && t.mirror_on(d)
                    && self
                        .devices
                        .get(&d.name)
                        .is_some_and(|w| seen_alive(w, mirror_timeout))
            })
        {
            t.armed = true;
        }
        // Fig 8: control messages travel on enabled channels only.
        t.outbox_held = !t.outbox.is_empty() && !t.sends_to_peer();
        t.channels = t.channel_statuses();
        changes
    }

    /// How long since the last valid heartbeat on any channel.
    pub fn silent_for(&self, now: Instant) -> Option<Duration> {
        self.networks
            .values()
            .chain(self.devices.values())
            .filter_map(|w| w.advanced_at)
            .max()
            .map(|t| now.saturating_duration_since(t))
    }

    /// The failover decision (after [`Checker::evaluate`]): the standby fails
    /// over once, only when at least one channel is enabled and no enabled
    /// channel shows the peer alive. Returns the reason.
    pub fn failover_reason(&self) -> Option<String> {
        let t = &self.table;
        if t.group != Group::Standby || !t.armed || t.failed_over {
            return None;
        }
        let network = (t.network_enable != Enable::Disable).then_some(t.remote_group_via_network);
        let receiving = t.devices.iter().any(|d| {
            d.direction == Direction::Receive
                && matches!(d.status, DeviceStatus::Enable | DeviceStatus::Failed)
        });
        let mirrors = (t.mirrors_wanted && receiving).then_some(t.remote_group_via_mirrors);
        let evidence: Vec<GroupStatus> = [network, mirrors].into_iter().flatten().collect();
        if evidence.is_empty() || evidence.iter().any(|g| *g != GroupStatus::Failed) {
            return None;
        }
        let mut why = vec![];
        if network.is_some() {
            for n in &t.networks {
                why.push(format!(
                    "{}: {}",
                    network_label(&n.name),
                    n.seen.problem.clone().unwrap_or_default()
                ));
            }
        }
        for d in t
            .devices
            .iter()
            .filter(|d| d.direction == Direction::Receive && d.status == DeviceStatus::Failed)
        {
            why.push(format!(
                "mirror {}: {}",
                d.name,
                d.seen.problem.clone().unwrap_or_default()
            ));
        }
        Some(format!(
            "every enabled channel says the production group is dead ({})",
            why.join("; ")
        ))
    }

    /// The step-down decision: a production host that hears (on any
    /// channel) that the standby failed over does not resume as active; it
    /// steps down once and stays so until re-armed. Returns the reason.
    pub fn step_down_reason(&self) -> Option<String> {
        let t = &self.table;
        if t.group != Group::Production || t.stepped_down {
            return None;
        }
        let peer = t.peer_failed_over.as_ref()?;
        Some(format!(
            "{peer} reports that it failed over (took over from this site) while this host was away; stepping down so that one site only is active"
        ))
    }

    /// `hbctl hb rearm`: at a standby, allows the next failover (by the arm
    /// policy, the grace period starting now); at a production host, ends a
    /// step-down. Returns what was done.
    pub fn rearm(&mut self, now: Instant) -> String {
        let t = &mut self.table;
        match t.group {
            Group::Production => {
                let was = std::mem::take(&mut t.stepped_down);
                t.peer_failed_over = None;
                let handover = t.withdraw_handover().map_or(String::new(), |h| {
                    format!(
                        "; the handover ({}) is forgotten: should this host still be unable to serve, it steps down and asks the standby again",
                        h.state()
                    )
                });
                if was {
                    format!("step-down ended: this production host is active again; should the standby still report that it failed over, this host steps down again at once (fail back and re-arm the standby first){handover}")
                } else {
                    format!(
                        "this production host has not stepped down; nothing to re-arm{handover}"
                    )
                }
            }
            Group::Standby => {
                t.failed_over = false;
                t.handover = None;
                self.started = now;
                t.armed = t.arm_policy == ArmPolicy::AfterTimeout;
                match t.arm_policy {
                    ArmPolicy::SeenAlive => "failover re-armed: it happens again once the peer has been seen alive and then every channel fails".into(),
                    ArmPolicy::AfterTimeout => "failover re-armed (arm = after-timeout): it happens again when no enabled channel shows the peer alive for the timeout".into(),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
