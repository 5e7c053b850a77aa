//! The decision (Fig 7): [`Checker`] holds the status table and a
//! [`Watch`] per channel; messages and read results go in with the time they
//! were observed, [`Checker::evaluate`] turns them into table entries and
//! transitions, [`Checker::failover_reason`] decides the standby's failover
//! and [`Checker::step_down_reason`] a returning production host's step-down.
//!
//! It is pure: the daemon supplies the clock, so every rule here is
//! unit-tested without waiting. A message is accepted on a channel that is
//! turned on (Fig 8) when it comes from an approved identifier, was
//! generated within the freshness window of this host's clock, and is newer
//! than the last one accepted from its sender on that channel (see
//! [`super::watch`]; the watermark survives restarts). A channel is valid
//! while accepted messages keep arriving within the timeout.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::analysis::network_label;
use super::counter::{Change, CounterRule};
use super::message::Beat;
use super::table::{
    now_ms, ArmPolicy, DeviceStatus, Direction, Enable, GroupStatus, Table, Watermark,
};
use super::watch::{Mark, Observation, Watch};
use hbcore::vocab::Group;

mod counting;

pub use counting::CounterChange;

/// A moment, on both clocks: the monotonic one for timeouts, the wall
/// clock (ms since the epoch) for the messages' times.
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
    /// A message generated further than this from this host's clock (either
    /// way) is refused.
    pub freshness: Duration,
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
    freshness: Duration,
    /// Start of the grace period (start-up or re-arming).
    started: Instant,
    /// Each network's watch, by network name.
    networks: BTreeMap<String, Watch>,
    devices: BTreeMap<String, Watch>,
    rule: CounterRule,
    /// Channels that went BAD or GOOD by their counters, not yet taken.
    counter_changes: Vec<CounterChange>,
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
                serial: w.serial,
                time_ms: w.time_ms,
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
            freshness: timing.freshness,
            started: now,
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

    /// How far back a sender's clock may step between two of its messages
    /// (the freshness window, `watch`).
    fn clock_slack(&self) -> u64 {
        self.freshness.as_millis() as u64
    }

    /// Rule (3), against this host's clock: generated within the freshness window.
    pub fn fresh(&self, beat: &Beat, wall_ms: u64) -> Result<(), String> {
        let window = self.freshness.as_millis() as u64;
        if beat.time_ms.saturating_add(window) < wall_ms {
            Err(format!(
                "heartbeat {} of '{}' was generated {} ms ago, beyond the freshness window of {window} ms: a replay, or the sites' clocks are apart",
                beat.serial,
                beat.sender,
                wall_ms - beat.time_ms
            ))
        } else if beat.time_ms > wall_ms.saturating_add(window) {
            Err(format!(
                "heartbeat {} of '{}' is dated {} ms ahead of this host's clock, beyond the freshness window of {window} ms: the sites' clocks are apart",
                beat.serial,
                beat.sender,
                beat.time_ms - wall_ms
            ))
        } else {
            Ok(())
        }
    }

    /// A datagram arrived on network `name`: a message, or why it is none.
    pub fn network_beat(
        &mut self,
        name: &str,
        read: Result<&Beat, String>,
        at: At,
    ) -> Result<Observation, Rejection> {
        if !self.table.network_on() {
            // Fig 8: a DISABLEd network is not checked.
            self.table.ignored_disabled += 1;
            return Ok(Observation::Ignored);
        }
        let rejection = |kind, why| Rejection { kind, why };
        let beat = read.map_err(|why| {
            self.table.rejected_invalid += 1;
            rejection("invalid frame", why)
        })?;
        if let Err(why) = self.approve(beat) {
            self.table.rejected_invalid += 1;
            return Err(rejection("unapproved sender", why));
        }
        if let Err(why) = self.fresh(beat, at.wall_ms) {
            self.table.rejected_stale += 1;
            return Err(rejection("outside the freshness window", why));
        }
        let slack = self.clock_slack();
        let seen = self.networks.entry(name.to_string()).or_default().observe(
            &beat.sender,
            beat.serial,
            beat.time_ms,
            slack,
            at.mono,
        );
        if seen == Observation::Advanced {
            let n = &mut self.table.network;
            n.count += 1;
            n.last_ms = Some(at.wall_ms);
            n.last_serial = Some(beat.serial);
            self.counted_network(name, beat.serial, at.wall_ms);
            self.accepted(&network_label(name), beat);
        } else {
            self.table.rejected_replayed += 1;
        }
        Ok(seen)
    }

    /// A receiving mirror was read: a message, or why none could be read.
    pub fn mirror_read(&mut self, name: &str, read: Result<&Beat, String>, at: At) -> Observation {
        let checked = match read.and_then(|b| self.approve(b).map(|()| b)) {
            Ok(b) => match self.fresh(b, at.wall_ms) {
                Ok(()) => Ok(b),
                Err(why) => {
                    self.refused_on_mirror(name, b);
                    Err(format!("stale: {why}"))
                }
            },
            Err(why) => Err(why),
        };
        let slack = self.clock_slack();
        let watch = self.devices.entry(name.to_string()).or_default();
        let seen = match &checked {
            Ok(beat) => {
                let seen = watch.observe(&beat.sender, beat.serial, beat.time_ms, slack, at.mono);
                if seen == Observation::Stale && !watch.alive(at.mono, self.mirror_timeout) {
                    watch.problem = Some(format!("stale: the same heartbeat (serial {}) for over {:?}; the mirror may be split or frozen", beat.serial, self.mirror_timeout));
                }
                seen
            }
            Err(why) => {
                watch.problem = Some(why.clone());
                Observation::Stale
            }
        };
        if let (Observation::Advanced, Ok(beat)) = (seen, checked) {
            if let Some(d) = self
                .table
                .devices
                .iter_mut()
                .find(|d| d.name == name && d.status != DeviceStatus::Null)
            {
                d.seen.count += 1;
                d.seen.last_ms = Some(at.wall_ms);
                d.seen.last_serial = Some(beat.serial);
                if d.counter.message(beat.serial) == Some(Change::Good) {
                    self.counter_changes.push(CounterChange {
                        channel: mirror_channel(name),
                        change: Change::Good,
                    });
                }
            }
            self.accepted(&mirror_channel(name), beat);
        }
        seen
    }

    /// Counts a message on mirror `name` refused as outside the freshness
    /// window once, however often the same slot is read again.
    fn refused_on_mirror(&mut self, name: &str, beat: &Beat) {
        let mark = Mark {
            serial: beat.serial,
            time_ms: beat.time_ms,
        };
        let watch = self.devices.entry(name.to_string()).or_default();
        if watch.refused != Some(mark) {
            watch.refused = Some(mark);
            self.table.rejected_stale += 1;
        }
    }

    /// Keeps the watermark of an accepted message in the table (persisted
    /// with it) and what it says of its sender's state.
    fn accepted(&mut self, channel: &str, beat: &Beat) {
        let t = &mut self.table;
        match t
            .watermarks
            .iter_mut()
            .find(|w| w.channel == channel && w.sender == beat.sender)
        {
            Some(w) => {
                w.serial = beat.serial;
                w.time_ms = beat.time_ms;
            }
            None => t.watermarks.push(Watermark {
                channel: channel.into(),
                sender: beat.sender.clone(),
                serial: beat.serial,
                time_ms: beat.time_ms,
            }),
        }
        t.peer_failed_over = beat.failed_over.then(|| beat.sender.clone());
        t.peer_stepped_down = beat.stepped_down;
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
        if (t.network_on() && self.networks.values().any(|w| seen_alive(w, timeout)))
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
                if was {
                    "step-down ended: this production host is active again; should the standby still report that it failed over, this host steps down again at once (fail back and re-arm the standby first)".into()
                } else {
                    "this production host has not stepped down; nothing to re-arm".into()
                }
            }
            Group::Standby => {
                t.failed_over = false;
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
mod tests {
    use super::*;
    use crate::hb::analysis::ChannelState;
    use crate::hb::message::{Control, ControlBody, Procedure, SERIAL_MAX};

    const T: Duration = Duration::from_secs(1);
    /// The wall clock at the test's start.
    const W: u64 = 1_700_000_000_000;

    fn beat(serial: u32, ms: u64) -> Beat {
        Beat {
            serial,
            time_ms: W + ms,
            sender: "prod-a".into(),
            group: Group::Production,
            ack: 0,
            controls: vec![],
            failed_over: false,
            stepped_down: false,
        }
    }

    fn timing() -> Timing {
        Timing {
            timeout: T,
            interval: Duration::from_millis(200),
            freshness: Duration::from_secs(3),
            counter: CounterRule::default(),
        }
    }

    fn checker(start: Instant, group: Group, policy: ArmPolicy) -> Checker {
        let (host, peer, direction) = match group {
            Group::Standby => ("standby-a", "prod-a", Direction::Receive),
            Group::Production => ("prod-a", "standby-a", Direction::Send),
        };
        let mut t = Table::new(host, group, true);
        t.install("hb0", "/mnt/hbfs/hb0".into(), direction, None);
        Checker::new(t, vec![peer.into()], timing(), policy, start)
    }

    fn standby(start: Instant) -> Checker {
        checker(start, Group::Standby, ArmPolicy::SeenAlive)
    }

    fn at(start: Instant, ms: u64) -> At {
        At {
            mono: start + Duration::from_millis(ms),
            wall_ms: W + ms,
        }
    }

    #[test]
    fn both_channels_alive_then_only_total_silence_fails_over() {
        let s = Instant::now();
        let mut c = standby(s);
        for i in 1..=5u32 {
            let now = at(s, u64::from(i) * 200);
            c.network_beat("network", Ok(&beat(i, 1000 + u64::from(i))), now)
                .expect("approved");
            c.mirror_read("hb0", Ok(&beat(i, 1000 + u64::from(i))), now);
            assert!(c.evaluate(now.mono).is_empty());
        }
        assert_eq!(c.table.remote_group_via_network, GroupStatus::Alive);
        assert_eq!(c.table.remote_group_via_mirrors, GroupStatus::Alive);
        assert!(c.table.armed);
        // The network goes quiet; the mirror keeps advancing: reported, no failover.
        for i in 6..=15u32 {
            let now = at(s, u64::from(i) * 200);
            c.mirror_read("hb0", Ok(&beat(i, 1000 + u64::from(i))), now);
            c.evaluate(now.mono);
            assert_eq!(
                c.failover_reason(),
                None,
                "network loss alone must not fail over"
            );
        }
        assert_eq!(c.table.network_enable, Enable::Failed);
        assert_eq!(c.table.remote_group_via_network, GroupStatus::Failed);
        // Then the mirror freezes (a silent split): the same message again and again.
        for i in 16..=30u32 {
            let now = at(s, u64::from(i) * 200);
            c.mirror_read("hb0", Ok(&beat(15, 1015)), now);
            c.evaluate(now.mono);
        }
        assert_eq!(c.table.devices[0].status, DeviceStatus::Failed);
        assert!(
            c.table.devices[0]
                .seen
                .problem
                .as_deref()
                .unwrap_or("")
                .starts_with("stale"),
            "{:?}",
            c.table.devices[0].seen
        );
        let reason = c.failover_reason().expect("every channel failed");
        assert!(
            reason.contains("network") && reason.contains("mirror hb0"),
            "{reason}"
        );
        c.table.failed_over = true;
        assert_eq!(c.failover_reason(), None, "failover happens once");
    }

    #[test]
    fn a_failing_write_of_this_hosts_own_pvol_does_not_hold_the_failover() {
        let s = Instant::now();
        let mut c = standby(s);
        c.table
            .install("own", "/mnt/hbfs/own".into(), Direction::Send, None);
        for i in 1..=3u32 {
            let now = at(s, u64::from(i) * 200);
            let b = beat(i, u64::from(i) * 200);
            c.network_beat("network", Ok(&b), now).expect("approved");
            c.mirror_read("hb0", Ok(&b), now);
            c.mirror_written("own", Ok(i));
            c.evaluate(now.mono);
        }
        assert!(c.table.armed);
        c.mirror_written("own", Err("EIO".into()));
        for i in 4..=20u32 {
            c.evaluate(at(s, u64::from(i) * 200).mono);
        }
        assert_eq!(c.table.remote_group_via_mirrors, GroupStatus::Failed);
        assert!(
            c.failover_reason().is_some(),
            "production is silent on every channel that brings its heartbeats"
        );
    }

    #[test]
    fn mirror_loss_alone_never_fails_over_and_channels_recover() {
        let s = Instant::now();
        let mut c = standby(s);
        let mut transitions = vec![];
        for i in 1..=20u32 {
            let now = at(s, u64::from(i) * 200);
            c.network_beat("network", Ok(&beat(i, u64::from(i) * 200)), now)
                .expect("approved");
            let read = if !(3..=15).contains(&i) {
                Ok(beat(i, u64::from(i) * 200))
            } else {
                Err("EIO".to_string())
            };
            c.mirror_read("hb0", read.as_ref().map_err(|e| e.clone()), now);
            transitions.extend(c.evaluate(now.mono));
            assert_eq!(c.failover_reason(), None);
        }
        assert_eq!(transitions.len(), 2, "{transitions:?}");
        assert!(transitions[0].failed && transitions[0].channel == "mirror hb0");
        assert!(
            !transitions[1].failed,
            "a failed mirror delivering valid heartbeats returns to ENABLE"
        );
        assert_eq!(c.table.devices[0].status, DeviceStatus::Enable);
    }

    #[test]
    fn strangers_replays_and_restarts() {
        let s = Instant::now();
        let mut c = standby(s);
        let now = at(s, 1000);
        let mut stranger = beat(1, 1);
        stranger.sender = "intruder".into();
        let refused = c
            .network_beat("network", Ok(&stranger), now)
            .expect_err("stranger");
        assert!(refused.why.contains("not an approved peer"), "{refused:?}");
        assert_eq!(c.table.rejected_invalid, 1);
        assert_eq!(
            c.network_beat("network", Ok(&beat(10, 100)), now),
            Ok(Observation::Advanced)
        );
        assert_eq!(
            c.network_beat("network", Ok(&beat(9, 99)), now),
            Ok(Observation::Stale),
            "a replay of an older message"
        );
        assert_eq!(
            c.network_beat("network", Ok(&beat(11, 100)), now),
            Ok(Observation::Advanced),
            "the next serial, its clock stepped back (within the freshness window)"
        );
        assert_eq!(
            c.network_beat("network", Ok(&beat(11, 101)), now),
            Ok(Observation::Stale),
            "the same serial again is no restart"
        );
        assert_eq!(c.table.rejected_replayed, 2);
        assert_eq!(
            c.network_beat("network", Ok(&beat(1, 200)), now),
            Ok(Observation::Advanced),
            "a restarted sender counts from 1"
        );
        assert_eq!(
            c.network_beat("network", Ok(&beat(SERIAL_MAX, 300)), now),
            Ok(Observation::Advanced)
        );
        assert_eq!(
            c.network_beat("network", Ok(&beat(1, 400)), now),
            Ok(Observation::Advanced),
            "the serial wraps to 1"
        );
        let junk = c
            .network_beat("network", Err("bad frame".into()), now)
            .expect_err("junk");
        assert_eq!(junk.kind, "invalid frame");
        assert_eq!(c.table.rejected_invalid, 2);
    }

    #[test]
    fn nothing_fails_over_before_the_peer_was_seen_or_when_all_is_disabled() {
        let s = Instant::now();
        let mut c = standby(s);
        c.evaluate(at(s, 5000).mono);
        assert_eq!(c.table.remote_group_via_network, GroupStatus::Failed);
        assert_eq!(c.failover_reason(), None, "never seen: not armed");
        c.table.armed = true;
        assert!(c.failover_reason().is_some());
        c.table.network_wanted = false;
        c.table.mirrors_wanted = false;
        c.evaluate(at(s, 6000).mono);
        assert_eq!(
            c.failover_reason(),
            None,
            "with every channel off there is no evidence"
        );
        assert_eq!(c.table.devices[0].status, DeviceStatus::Disable);
        c.table.mirrors_wanted = true;
        c.evaluate(at(s, 6001).mono);
        assert_ne!(
            c.table.devices[0].status,
            DeviceStatus::Disable,
            "turning the mirrors back on restores the device"
        );
    }

    #[test]
    fn after_timeout_arms_at_start_and_seen_alive_waits_for_the_peer() {
        let s = Instant::now();
        let mut late = checker(s, Group::Standby, ArmPolicy::AfterTimeout);
        let mut safe = standby(s);
        for c in [&mut late, &mut safe] {
            c.evaluate(at(s, 500).mono);
            assert_eq!(
                c.failover_reason(),
                None,
                "within the timeout: no verdict yet"
            );
            c.evaluate(at(s, 1500).mono);
        }
        assert!(late.failover_reason().is_some(), "after-timeout fails over");
        assert_eq!(
            safe.failover_reason(),
            None,
            "seen-alive never saw production"
        );
        assert!(!safe.table.armed);
        // Re-arming starts a new grace period.
        late.table.failed_over = true;
        late.rearm(at(s, 2000).mono);
        late.evaluate(at(s, 2500).mono);
        assert_eq!(late.failover_reason(), None);
        late.evaluate(at(s, 3500).mono);
        assert!(late.failover_reason().is_some());
    }

    #[test]
    fn each_network_is_a_channel_with_its_counter_and_only_all_of_them_silent_count() {
        let s = Instant::now();
        let mut t = Table::new("standby-a", Group::Standby, true);
        t.set_networks(&["net0".into(), "net1".into()]);
        t.install("hb0", "/mnt/hbfs/hb0".into(), Direction::Receive, None);
        let mut c = Checker::new(t, vec!["prod-a".into()], timing(), ArmPolicy::SeenAlive, s);
        assert_eq!(c.table.networks[0].counter.value, 20, "opened at start");
        // Both networks and the mirror heard, then net1 goes silent.
        let mut bad_at = None;
        for i in 1..=60u32 {
            let now = at(s, u64::from(i) * 200);
            let b = beat(i, u64::from(i) * 200);
            c.network_beat("net0", Ok(&b), now).expect("approved");
            if i <= 10 {
                c.network_beat("net1", Ok(&b), now).expect("approved");
            }
            c.mirror_read("hb0", Ok(&b), now);
            c.evaluate(now.mono);
            if i % 5 == 0 {
                c.counter_period();
            }
            let changes = c.take_counter_changes();
            if let Some(ch) = changes.first() {
                assert_eq!(ch.channel, "network net1");
                assert_eq!(ch.change, Change::Bad);
                bad_at.get_or_insert(i);
            }
            assert_eq!(c.failover_reason(), None);
        }
        // 20 + 10 heard - 2 periods = 22 at the 10th interval, then 4 off
        // every 5 intervals: 0 six periods later.
        assert_eq!(bad_at, Some(40));
        let t = &c.table;
        assert_eq!(t.networks[1].enable, Enable::Failed, "the timeout rule");
        assert_eq!(t.networks[0].enable, Enable::Enable);
        assert_eq!(
            t.network_enable,
            Enable::Enable,
            "one network alive is enough"
        );
        assert_eq!(t.remote_group_via_network, GroupStatus::Alive);
        assert_eq!(t.channels.len(), 3);
        assert_eq!(t.channels[1].state, ChannelState::Bad);
        assert_eq!(t.channels[0].state, ChannelState::Good);
        assert_eq!(t.channels[0].received, 60);
        let net1 = format!("{:?}", t.watermarks);
        assert!(net1.contains("network net1"), "{net1}");
        // net1 heard again, with a gap: GOOD, the gap counted.
        let now = at(s, 61 * 200);
        c.network_beat("net1", Ok(&beat(61, 61 * 200)), now)
            .expect("approved");
        let back = c.take_counter_changes();
        assert_eq!(back[0].change, Change::Good);
        assert_eq!(c.table.networks[1].counter.missing, 50);
        // Every network and the mirror silent: the failover rule (after the timeout).
        for i in 62..=80u32 {
            let now = at(s, u64::from(i) * 200);
            c.evaluate(now.mono);
        }
        assert!(c.all_channels_failed());
        let reason = c.failover_reason().expect("every channel failed");
        assert!(
            reason.contains("network net0") && reason.contains("network net1"),
            "{reason}"
        );
    }

    #[test]
    fn a_disabled_network_is_neither_checked_nor_counted() {
        let s = Instant::now();
        let mut c = standby(s);
        c.table.apply_procedure(&Procedure {
            network: Some(false),
            ..Procedure::default()
        });
        let now = at(s, 100);
        assert_eq!(
            c.network_beat("network", Ok(&beat(1, 100)), now),
            Ok(Observation::Ignored)
        );
        assert_eq!(
            c.network_beat("network", Err("junk".into()), now),
            Ok(Observation::Ignored),
            "not even decoded"
        );
        assert_eq!((c.table.network.count, c.table.ignored_disabled), (0, 2));
        c.evaluate(now.mono);
        assert_eq!(c.table.network_enable, Enable::Disable);
        assert!(c.table.watermarks.is_empty(), "nothing was accepted");
    }

    #[test]
    fn old_and_future_messages_are_refused_and_counted() {
        let s = Instant::now();
        let mut c = standby(s);
        let now = at(s, 10_000);
        let old = c
            .network_beat("network", Ok(&beat(5, 6_000)), now)
            .expect_err("4 s old, the window is 3 s");
        assert_eq!(old.kind, "outside the freshness window");
        assert!(old.why.contains("4000 ms ago"), "{}", old.why);
        let ahead = c
            .network_beat("network", Ok(&beat(6, 14_000)), now)
            .expect_err("4 s ahead");
        assert!(ahead.why.contains("ahead"), "{}", ahead.why);
        assert_eq!(c.table.rejected_stale, 2);
        assert_eq!(
            c.network_beat("network", Ok(&beat(7, 8_000)), now),
            Ok(Observation::Advanced),
            "2 s old is within the window"
        );
        // A frozen slot read again and again counts once.
        for i in 0..3 {
            let seen = c.mirror_read("hb0", Ok(&beat(4, 5_000)), at(s, 10_000 + i * 200));
            assert_eq!(seen, Observation::Stale);
        }
        assert_eq!(c.table.rejected_stale, 3);
        c.evaluate(at(s, 10_600).mono);
        let problem = c.table.devices[0].seen.problem.clone().unwrap_or_default();
        assert!(problem.starts_with("stale: heartbeat 4"), "{problem}");
    }

    #[test]
    fn watermarks_survive_a_restart_so_replays_are_stale() {
        let s = Instant::now();
        let mut before = standby(s);
        let now = at(s, 1000);
        before
            .network_beat("network", Ok(&beat(10, 900)), now)
            .expect("accepted");
        before.mirror_read("hb0", Ok(&beat(10, 900)), now);
        assert_eq!(before.table.watermarks.len(), 2);
        // Restarted with the persisted table, production dead: its last
        // messages are replayed (and the SVOL still holds the last one).
        let mut after = Checker::new(
            before.table.clone(),
            vec!["prod-a".into()],
            timing(),
            ArmPolicy::SeenAlive,
            s,
        );
        for i in 0..5 {
            let now = at(s, 1100 + i * 200);
            assert_eq!(
                after.network_beat("network", Ok(&beat(10, 900)), now),
                Ok(Observation::Stale)
            );
            assert_eq!(
                after.network_beat("network", Ok(&beat(9, 800)), now),
                Ok(Observation::Stale)
            );
            assert_eq!(
                after.mirror_read("hb0", Ok(&beat(10, 900)), now),
                Observation::Stale
            );
            after.evaluate(now.mono);
        }
        assert_eq!(after.table.rejected_replayed, 10);
        assert_ne!(after.table.remote_group_via_network, GroupStatus::Alive);
        assert_ne!(after.table.remote_group_via_mirrors, GroupStatus::Alive);
        assert!(!after.table.armed, "a replay is no sign of life");
        assert_eq!(
            after.network_beat("network", Ok(&beat(11, 2000)), at(s, 2000)),
            Ok(Observation::Advanced)
        );
    }

    #[test]
    fn the_last_heartbeat_left_on_a_mirror_does_not_arm_a_restarted_standby() {
        let s = Instant::now();
        let mut c = standby(s);
        c.table.network_wanted = false;
        // Production wrote serial 12 just before it died and this hbd started.
        let seen = c.mirror_read("hb0", Ok(&beat(12, 900)), at(s, 1000));
        assert_eq!(seen, Observation::Advanced, "newer than anything seen");
        c.evaluate(at(s, 1000).mono);
        assert!(!c.table.armed, "one message is no sign of life since start");
        c.mirror_read("hb0", Ok(&beat(13, 1100)), at(s, 1100));
        c.evaluate(at(s, 1100).mono);
        assert!(c.table.armed, "a second one is");
    }

    #[test]
    fn production_steps_down_once_when_the_standby_says_it_failed_over() {
        let s = Instant::now();
        let mut c = checker(s, Group::Production, ArmPolicy::SeenAlive);
        let mut from_standby = beat(1, 100);
        from_standby.sender = "standby-a".into();
        c.network_beat("network", Ok(&from_standby), at(s, 100))
            .expect("accepted");
        assert_eq!(c.step_down_reason(), None);
        from_standby.serial = 2;
        from_standby.time_ms += 100;
        from_standby.failed_over = true;
        c.network_beat("network", Ok(&from_standby), at(s, 200))
            .expect("accepted");
        let reason = c.step_down_reason().expect("the standby took over");
        assert!(reason.contains("standby-a"), "{reason}");
        c.table.stepped_down = true;
        assert_eq!(c.step_down_reason(), None, "once");
        assert!(c.rearm(at(s, 300).mono).starts_with("step-down ended"));
        assert!(!c.table.stepped_down);
        assert_eq!(
            c.step_down_reason(),
            None,
            "until the standby says so again"
        );
        from_standby.serial = 3;
        from_standby.time_ms += 100;
        c.network_beat("network", Ok(&from_standby), at(s, 300))
            .expect("accepted");
        assert!(c.step_down_reason().is_some());
        // A standby never steps down.
        let mut st = standby(s);
        let mut odd = beat(1, 100);
        odd.failed_over = true;
        st.network_beat("network", Ok(&odd), at(s, 100))
            .expect("accepted");
        assert_eq!(st.step_down_reason(), None);
    }

    #[test]
    fn control_messages_wait_while_no_channel_reaches_the_peer() {
        let s = Instant::now();
        let mut c = checker(s, Group::Production, ArmPolicy::SeenAlive);
        c.table.outbox.push(Control {
            id: 1,
            body: ControlBody::Deactivate {
                mirror: "hb9".into(),
            },
        });
        c.evaluate(at(s, 100).mono);
        assert!(!c.table.outbox_held);
        c.table.apply_procedure(&Procedure {
            network: Some(false),
            mirrors: Some(false),
            ..Procedure::default()
        });
        c.evaluate(at(s, 200).mono);
        assert!(c.table.outbox_held);
    }
}
