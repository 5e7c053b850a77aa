//! The decision (Fig 7): [`Checker`] holds the status table and a
//! [`Watch`] per channel; messages and read results go in with the time they
//! were observed, [`Checker::evaluate`] turns them into table entries and
//! transitions, and [`Checker::failover_reason`] decides.
//!
//! It is pure: the daemon supplies the clock, so every rule here is
//! unit-tested without waiting. Validity of a channel: its messages come
//! from an approved identifier and keep advancing (see [`super::watch`])
//! within the timeout.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::message::Beat;
use super::table::{now_ms, DeviceStatus, Direction, Enable, GroupStatus, Table};
use super::watch::{Observation, Watch};
use hbcore::vocab::Group;

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
    started: Instant,
    network: Watch,
    devices: BTreeMap<String, Watch>,
}

impl Checker {
    /// A checker around `table`, approving messages from `approved` senders;
    /// mirrors are read every `interval`.
    pub fn new(
        table: Table,
        approved: Vec<String>,
        timeout: Duration,
        interval: Duration,
        now: Instant,
    ) -> Checker {
        Checker {
            table,
            approved,
            timeout,
            mirror_timeout: timeout.saturating_sub(interval),
            started: now,
            network: Watch::default(),
            devices: BTreeMap::new(),
        }
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

    /// A message arrived on the network.
    pub fn network_beat(&mut self, beat: &Beat, now: Instant) -> Result<Observation, String> {
        self.approve(beat)?;
        let seen = self.network.observe(beat.serial, beat.time_ms, now);
        if seen == Observation::Advanced {
            self.table.network.count += 1;
            self.table.network.last_ms = Some(now_ms());
            self.table.network.last_serial = Some(beat.serial);
        }
        Ok(seen)
    }

    /// A receiving mirror was read: a message, or why none could be read.
    pub fn mirror_read(
        &mut self,
        name: &str,
        read: Result<&Beat, String>,
        now: Instant,
    ) -> Observation {
        let approved = read.and_then(|b| self.approve(b).map(|()| b));
        let watch = self.devices.entry(name.to_string()).or_default();
        let (seen, serial) = match approved {
            Ok(beat) => {
                let seen = watch.observe(beat.serial, beat.time_ms, now);
                if seen == Observation::Stale && !watch.alive(now, self.mirror_timeout) {
                    watch.problem = Some(format!("stale: the same heartbeat (serial {}) for over {:?}; the mirror may be split or frozen", beat.serial, self.mirror_timeout));
                }
                (seen, Some(beat.serial))
            }
            Err(why) => {
                watch.problem = Some(why);
                (Observation::Stale, None)
            }
        };
        if let Some(d) = self
            .table
            .devices
            .iter_mut()
            .find(|d| d.name == name && d.status != DeviceStatus::Null)
        {
            if seen == Observation::Advanced {
                d.seen.count += 1;
                d.seen.last_ms = Some(now_ms());
                d.seen.last_serial = serial;
            }
        }
        seen
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
                    d.seen.count += 1;
                    d.seen.last_ms = Some(now_ms());
                    d.seen.last_serial = Some(serial);
                    d.seen.problem = None;
                }
                Err(why) => d.seen.problem = Some(why),
            }
        }
    }

    /// Forgets what was seen on mirror `name` (installed anew or removed).
    pub fn reset_mirror(&mut self, name: &str) {
        self.devices.remove(name);
    }

    /// Brings the table up to date; returns the channels that failed or recovered.
    pub fn evaluate(&mut self, now: Instant) -> Vec<Transition> {
        let grace = self.in_grace(now);
        let (timeout, mirror_timeout) = (self.timeout, self.mirror_timeout);
        let mut changes = Vec::new();
        let mut change = |channel: String, failed: bool, why: String| {
            changes.push(Transition {
                channel,
                failed,
                why,
            })
        };

        // 200/210: the network.
        let t = &mut self.table;
        if !t.network_wanted || !t.network_configured {
            t.network_enable = Enable::Disable;
            t.remote_group_via_network = GroupStatus::Unknown;
        } else if self.network.alive(now, timeout) {
            if t.network_enable == Enable::Failed {
                change(
                    "network".into(),
                    false,
                    "valid heartbeats arrive again".into(),
                );
            }
            t.network_enable = Enable::Enable;
            t.remote_group_via_network = GroupStatus::Alive;
            t.network.problem = None;
        } else if grace && self.network.advanced_at.is_none() {
            t.network_enable = Enable::Enable;
            t.remote_group_via_network = GroupStatus::Unknown;
        } else {
            let why = format!("no valid heartbeat for over {timeout:?}");
            if t.network_enable != Enable::Failed {
                change("network".into(), true, why.clone());
            }
            t.network_enable = Enable::Failed;
            t.remote_group_via_network = GroupStatus::Failed;
            t.network.problem = Some(why);
        }

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
                Direction::Send => d.seen.problem.is_none(),
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
                change(channel, false, "valid heartbeats again".into());
                d.status = DeviceStatus::Enable;
            } else if !ok && d.status == DeviceStatus::Enable {
                change(channel, true, d.seen.problem.clone().unwrap_or_default());
                d.status = DeviceStatus::Failed;
            }
            if d.status == DeviceStatus::Failed {
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
        if t.remote_group_via_network == GroupStatus::Alive
            || t.remote_group_via_mirrors == GroupStatus::Alive
        {
            t.armed = true;
        }
        changes
    }

    /// How long since the last valid heartbeat on any channel.
    pub fn silent_for(&self, now: Instant) -> Option<Duration> {
        std::iter::once(&self.network)
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
            why.push(format!(
                "network: {}",
                t.network.problem.clone().unwrap_or_default()
            ));
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hb::message::SERIAL_MAX;

    const T: Duration = Duration::from_secs(1);

    fn beat(serial: u32, time_ms: u64) -> Beat {
        Beat {
            serial,
            time_ms,
            sender: "prod-a".into(),
            group: Group::Production,
            ack: 0,
            controls: vec![],
        }
    }

    fn standby(start: Instant) -> Checker {
        let mut t = Table::new("standby-a", Group::Standby, true);
        t.install("hb0", "/mnt/hbfs/hb0".into(), Direction::Receive, None);
        Checker::new(
            t,
            vec!["prod-a".into()],
            T,
            Duration::from_millis(200),
            start,
        )
    }

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn both_channels_alive_then_only_total_silence_fails_over() {
        let s = Instant::now();
        let mut c = standby(s);
        for i in 1..=5u32 {
            let now = at(s, u64::from(i) * 200);
            c.network_beat(&beat(i, 1000 + u64::from(i)), now)
                .expect("approved");
            c.mirror_read("hb0", Ok(&beat(i, 1000 + u64::from(i))), now);
            assert!(c.evaluate(now).is_empty());
        }
        assert_eq!(c.table.remote_group_via_network, GroupStatus::Alive);
        assert_eq!(c.table.remote_group_via_mirrors, GroupStatus::Alive);
        assert!(c.table.armed);
        // The network goes quiet; the mirror keeps advancing: reported, no failover.
        for i in 6..=15u32 {
            let now = at(s, u64::from(i) * 200);
            c.mirror_read("hb0", Ok(&beat(i, 1000 + u64::from(i))), now);
            c.evaluate(now);
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
            c.evaluate(now);
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
    fn mirror_loss_alone_never_fails_over_and_channels_recover() {
        let s = Instant::now();
        let mut c = standby(s);
        let mut transitions = vec![];
        for i in 1..=20u32 {
            let now = at(s, u64::from(i) * 200);
            c.network_beat(&beat(i, u64::from(i)), now)
                .expect("approved");
            let read = if !(3..=15).contains(&i) {
                Ok(beat(i, u64::from(i)))
            } else {
                Err("EIO".to_string())
            };
            c.mirror_read("hb0", read.as_ref().map_err(|e| e.clone()), now);
            transitions.extend(c.evaluate(now));
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
        let mut stranger = beat(1, 1);
        stranger.sender = "intruder".into();
        assert!(c
            .network_beat(&stranger, s)
            .expect_err("stranger")
            .contains("not an approved peer"));
        assert_eq!(c.network_beat(&beat(10, 100), s), Ok(Observation::Advanced));
        assert_eq!(
            c.network_beat(&beat(9, 99), s),
            Ok(Observation::Stale),
            "a replay of an older message"
        );
        assert_eq!(
            c.network_beat(&beat(11, 100), s),
            Ok(Observation::Stale),
            "time must advance too"
        );
        assert_eq!(
            c.network_beat(&beat(1, 200), s),
            Ok(Observation::Advanced),
            "a restarted sender counts from 1"
        );
        assert_eq!(
            c.network_beat(&beat(SERIAL_MAX, 300), s),
            Ok(Observation::Advanced)
        );
        assert_eq!(
            c.network_beat(&beat(1, 400), s),
            Ok(Observation::Advanced),
            "the serial wraps to 1"
        );
    }

    #[test]
    fn nothing_fails_over_before_the_peer_was_seen_or_when_all_is_disabled() {
        let s = Instant::now();
        let mut c = standby(s);
        c.evaluate(at(s, 5000));
        assert_eq!(c.table.remote_group_via_network, GroupStatus::Failed);
        assert_eq!(c.failover_reason(), None, "never seen: not armed");
        c.table.armed = true;
        assert!(c.failover_reason().is_some());
        c.table.network_wanted = false;
        c.table.mirrors_wanted = false;
        c.evaluate(at(s, 6000));
        assert_eq!(
            c.failover_reason(),
            None,
            "with every channel off there is no evidence"
        );
        assert_eq!(c.table.devices[0].status, DeviceStatus::Disable);
        c.table.mirrors_wanted = true;
        c.evaluate(at(s, 6001));
        assert_ne!(
            c.table.devices[0].status,
            DeviceStatus::Disable,
            "turning the mirrors back on restores the device"
        );
    }
}
