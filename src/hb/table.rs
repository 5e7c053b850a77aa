//! The heartbeat status table (Fig 2) and the checks that fill it (Fig 7).
//!
//! [`Checker`] is pure: messages and read results go in with the time they
//! were observed; [`Checker::evaluate`] turns them into table entries and
//! transitions; [`Checker::failover_reason`] is the decision. The daemon
//! supplies the clock, so every rule here is unit-tested without waiting.
//!
//! Validity of a channel: its messages come from an approved identifier and
//! keep advancing: a newer generation time (and a newer serial, or a serial
//! restarted by a restarted sender) within the timeout. A volume read again and
//! again with the same message (a frozen SVOL after a silent split) is stale.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::message::{Beat, Control, SERIAL_MAX};
use hbcore::vocab::Group;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Network Heartbeat Enable (200) and Remote Copy Heartbeat Enable (220).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Enable {
    /// In use.
    Enable,
    /// Turned off by a person (Fig 8).
    Disable,
    /// Found failed; still watched, and back to ENABLE when valid heartbeats return.
    Failed,
}

/// Device Status (241).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DeviceStatus {
    /// In use.
    Enable,
    /// Turned off by a person.
    Disable,
    /// Found failed (unreadable, unwritable or stale).
    Failed,
    /// A vacant entry (de-installed).
    Null,
}

/// Remote Group Status (210 via the network, 230 via mirrors).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum GroupStatus {
    /// Valid heartbeats arrive.
    Alive,
    /// None did within the timeout.
    Failed,
    /// Not checked (channel off, nothing to read) or too early to tell.
    Unknown,
}

/// Which way a heartbeat mirror carries heartbeats at this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// This host writes the PVOL.
    Send,
    /// This host reads the SVOL.
    Receive,
}

/// Per-channel facts shown beside the table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// Valid, advancing heartbeats received (or written, for a sending mirror).
    pub count: u64,
    /// When the last one was, ms since the epoch.
    pub last_ms: Option<u64>,
    /// Its serial.
    pub last_serial: Option<u32>,
    /// Why the channel is not valid now, if it is not.
    pub problem: Option<String>,
}

/// One entry of Device Address (240) and Device Status (241).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Mirror name (the same at both hosts).
    pub name: String,
    /// Device address: the PVOL or SVOL path at this host; none when vacant.
    pub address: Option<PathBuf>,
    /// Send (PVOL) or receive (SVOL).
    pub direction: Direction,
    /// Device status.
    pub status: DeviceStatus,
    /// The person's choice for this mirror (Fig 8); off shows as DISABLE.
    pub wanted: bool,
    /// The mirrord pair behind it, if known.
    pub pair: Option<String>,
    /// Counts and last-seen time.
    pub seen: Seen,
}

/// The heartbeat status table (Fig 2), with what hbd keeps beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Table {
    /// This host.
    pub host: String,
    /// Its group.
    pub group: Group,
    /// 200: Network Heartbeat Enable.
    pub network_enable: Enable,
    /// 210: Remote Group Status via the network.
    pub remote_group_via_network: GroupStatus,
    /// 220: Remote Copy Heartbeat Enable.
    pub remote_copy_enable: Enable,
    /// 230: Remote Group Status via mirrors.
    pub remote_group_via_mirrors: GroupStatus,
    /// 240/241: heartbeat mirrors.
    pub devices: Vec<Device>,
    /// The network channel's counts.
    pub network: Seen,
    /// Whether a network channel is configured at all.
    pub network_configured: bool,
    /// The person's choice for the network (Fig 8).
    pub network_wanted: bool,
    /// The person's choice for the mirrors (Fig 8).
    pub mirrors_wanted: bool,
    /// The peer was seen alive since this hbd started (failover is armed).
    pub armed: bool,
    /// Failover has been done (it is done once).
    pub failed_over: bool,
    /// Serial of the last heartbeat sent.
    pub serial: u32,
    /// Id of the last control message queued.
    pub last_control: u64,
    /// Highest control id received from the peer.
    pub received_control: u64,
    /// Control messages not yet acknowledged by the peer.
    pub outbox: Vec<Control>,
}

impl Table {
    /// A fresh table.
    pub fn new(host: &str, group: Group, network_configured: bool) -> Table {
        Table {
            host: host.into(),
            group,
            network_enable: if network_configured {
                Enable::Enable
            } else {
                Enable::Disable
            },
            remote_group_via_network: GroupStatus::Unknown,
            remote_copy_enable: Enable::Enable,
            remote_group_via_mirrors: GroupStatus::Unknown,
            devices: Vec::new(),
            network: Seen::default(),
            network_configured,
            network_wanted: network_configured,
            mirrors_wanted: true,
            armed: false,
            failed_over: false,
            serial: 0,
            last_control: 0,
            received_control: 0,
            outbox: Vec::new(),
        }
    }

    /// The installed device called `name`.
    pub fn device(&self, name: &str) -> Option<&Device> {
        self.devices
            .iter()
            .find(|d| d.name == name && d.status != DeviceStatus::Null)
    }

    /// Registers a device in a vacant entry (or a new one); replaces one of the same name.
    pub fn install(
        &mut self,
        name: &str,
        address: PathBuf,
        direction: Direction,
        pair: Option<String>,
    ) {
        let device = Device {
            name: name.into(),
            address: Some(address),
            direction,
            status: DeviceStatus::Enable,
            wanted: true,
            pair,
            seen: Seen::default(),
        };
        let slot = self
            .devices
            .iter()
            .position(|d| d.name == name)
            .or_else(|| {
                self.devices
                    .iter()
                    .position(|d| d.status == DeviceStatus::Null)
            });
        match slot {
            Some(i) => self.devices[i] = device,
            None => self.devices.push(device),
        }
    }

    /// Vacates the entry of `name` (NULL); true if it was installed.
    pub fn uninstall(&mut self, name: &str) -> bool {
        match self
            .devices
            .iter_mut()
            .find(|d| d.name == name && d.status != DeviceStatus::Null)
        {
            Some(d) => {
                d.address = None;
                d.status = DeviceStatus::Null;
                d.pair = None;
                d.seen = Seen::default();
                true
            }
            None => false,
        }
    }
}

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
struct Watch {
    serial: Option<u32>,
    time_ms: Option<u64>,
    advanced_at: Option<Instant>,
    problem: Option<String>,
}

/// Serial numbers within this distance of the wrap count as wrapped.
const WRAP_WINDOW: u32 = 1 << 16;

impl Watch {
    fn observe(&mut self, serial: u32, time_ms: u64, now: Instant) -> Observation {
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

    fn alive(&self, now: Instant, timeout: Duration) -> bool {
        self.advanced_at
            .is_some_and(|t| now.saturating_duration_since(t) <= timeout)
    }
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

    #[test]
    fn install_reuses_vacant_entries() {
        let mut t = Table::new("h", Group::Production, false);
        t.install("a", "/a".into(), Direction::Send, None);
        t.install("b", "/b".into(), Direction::Send, None);
        assert!(t.uninstall("a"));
        assert_eq!(t.devices[0].status, DeviceStatus::Null);
        assert!(!t.uninstall("a"));
        t.install("c", "/c".into(), Direction::Receive, None);
        assert_eq!(t.devices.len(), 2);
        assert_eq!(t.devices[0].name, "c");
    }
}
