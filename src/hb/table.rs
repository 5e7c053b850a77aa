//! The heartbeat status table (Fig 2): what hbd knows of each channel, as
//! data. It is what `hbctl hb status` shows, what `table.json` keeps across
//! restarts, and what the failover hook gets in `HBD_TABLE`; the rules that
//! fill it are the checker's.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::analysis::{network_label, Analysis, ChannelStatus, EchoMethod};
use super::counter::Counter;
use super::message::{Control, Procedure};
use hbcore::vocab::Group;

mod channels;

pub use channels::NetworkEntry;

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

/// When a standby may fail over after it starts (`[failover] arm`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArmPolicy {
    /// Only after it has seen production alive since it started: a standby
    /// started while production is down never fails over (no split brain
    /// from a standby that comes up cut off; no failover for a production
    /// that died while the standby was down).
    #[default]
    SeenAlive,
    /// From the start: if no enabled channel shows production alive within
    /// the timeout, it fails over (production that died while the standby was
    /// down is taken over; a standby that comes up cut off from a living
    /// production takes over too).
    AfterTimeout,
}

impl std::fmt::Display for ArmPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ArmPolicy::SeenAlive => "seen-alive",
            ArmPolicy::AfterTimeout => "after-timeout",
        })
    }
}

/// A `[[mirrors]]` entry of the config, as it seeded the table: an entry
/// seeds once; after that the table decides (install and uninstall survive
/// restarts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MirrorSeed {
    /// Mirror name.
    pub name: String,
    /// Its device address here.
    pub address: PathBuf,
    /// Written (PVOL) or read (SVOL) here.
    pub direction: Direction,
    /// The mirrord pair behind it.
    pub pair: Option<String>,
}

/// What [`Table::seed`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Seeding {
    /// Mirrors installed from entries new in the config.
    pub installed: Vec<String>,
    /// Mirrors de-installed because their entry left the config (name, pair).
    pub removed: Vec<(String, Option<String>)>,
}

/// The last message accepted from a sender on a channel: a message is
/// accepted only if newer, across restarts too (a replay is not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// `network` or `mirror NAME`.
    pub channel: String,
    /// The sender's identifier.
    pub sender: String,
    /// Its serial.
    pub serial: u32,
    /// Its time of generation, ms since the epoch (the sender's wall clock; shown only).
    pub time_ms: u64,
    /// The sender's instance (0 in a table from before instances).
    #[serde(default)]
    pub instance: u64,
    /// Its uptime, ms on the sender's monotonic clock.
    #[serde(default)]
    pub uptime_ms: u64,
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
    /// The sender's wall clock minus this host's, ms, as last measured on
    /// this channel (an echo's round trip): shown, never acted on.
    #[serde(default)]
    pub clock_offset_ms: Option<i64>,
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
    /// Why its pair is not protected from split at mirrord, if it is not:
    /// the mirror is then FAILED and not written (checked at start, retried).
    #[serde(default)]
    pub pair_problem: Option<String>,
    /// Counts and last-seen time.
    pub seen: Seen,
    /// The counter of a receiving mirror (seed 002, Fig 4).
    #[serde(default)]
    pub counter: Counter,
    /// Slots written (a sending mirror).
    #[serde(default)]
    pub sent: u64,
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
    /// The networks' counts together (each network's are in `networks`).
    pub network: Seen,
    /// Each IP network: 200/210 per network, counter, counts.
    #[serde(default)]
    pub networks: Vec<NetworkEntry>,
    /// Every channel (each network, each mirror) with its counter: the
    /// status API of seed 002.
    #[serde(default)]
    pub channels: Vec<ChannelStatus>,
    /// The last fault analysis, with its evidence.
    #[serde(default)]
    pub analysis: Option<Analysis>,
    /// Why a due failover waits: this host cannot carry the duties (QoS).
    #[serde(default)]
    pub failover_held: Option<String>,
    /// How the local network check sends echo requests.
    #[serde(default)]
    pub echo_method: Option<EchoMethod>,
    /// Why it is limited (no raw socket, no ping socket), if it is.
    #[serde(default)]
    pub echo_note: Option<String>,
    /// Whether a network channel is configured at all.
    pub network_configured: bool,
    /// The person's choice for the network (Fig 8).
    pub network_wanted: bool,
    /// The person's choice for the mirrors (Fig 8).
    pub mirrors_wanted: bool,
    /// Failover may happen (see `arm_policy`).
    pub armed: bool,
    /// Failover has been done (it is done once).
    pub failed_over: bool,
    /// When a standby may fail over after it starts.
    #[serde(default)]
    pub arm_policy: ArmPolicy,
    /// This production host stepped down: the standby took over while it
    /// was away. It stays so until `hbctl hb rearm`.
    #[serde(default)]
    pub stepped_down: bool,
    /// The peer whose latest accepted heartbeat says it failed over.
    #[serde(default)]
    pub peer_failed_over: Option<String>,
    /// The peer's latest accepted heartbeat says it stepped down.
    #[serde(default)]
    pub peer_stepped_down: bool,
    /// Control messages wait: no enabled channel carries heartbeats to the peer.
    #[serde(default)]
    pub outbox_held: bool,
    /// Heartbeats refused for a newer serial whose sender time did not advance.
    #[serde(default)]
    pub rejected_time_back: u64,
    /// Heartbeats refused for a serial further ahead than the sender's uptime allows.
    #[serde(default)]
    pub rejected_serial_jump: u64,
    /// Heartbeats of a new sender instance that echo no nonce this host
    /// issued recently (a replay, or a peer that has not heard this host yet).
    #[serde(default)]
    pub rejected_echo: u64,
    /// Heartbeats of a sender instance a channel has already left behind.
    #[serde(default)]
    pub rejected_instance: u64,
    /// Network heartbeats rejected as not newer than the last accepted (replays).
    #[serde(default)]
    pub rejected_replayed: u64,
    /// Datagrams rejected as no valid heartbeat (damaged, other key or
    /// version, unapproved sender).
    #[serde(default)]
    pub rejected_invalid: u64,
    /// Datagrams that arrived while the network channel is DISABLE (ignored).
    #[serde(default)]
    pub ignored_disabled: u64,
    /// The last accepted message per channel and sender.
    #[serde(default)]
    pub watermarks: Vec<Watermark>,
    /// The latest nonce heard from each peer, echoed in this host's
    /// heartbeats (kept across restarts: see `challenge::hear`).
    #[serde(default)]
    pub heard_nonces: std::collections::BTreeMap<String, u64>,
    /// The config's `[[mirrors]]` entries that have seeded the table (none
    /// recorded: a table from before seeds were recorded).
    #[serde(default)]
    pub seeded: Option<Vec<MirrorSeed>>,
    /// When this table was saved, ms since the epoch.
    #[serde(default)]
    pub saved_ms: u64,
    /// Serial of the last heartbeat sent.
    pub serial: u32,
    /// Id of the last control message queued.
    pub last_control: u64,
    /// Highest control id received from the peer.
    pub received_control: u64,
    /// Control messages not yet acknowledged by the peer.
    pub outbox: Vec<Control>,
    /// The master host of this host's group (seed 000), when it is a
    /// cluster member with `[cluster] group_members`.
    #[serde(default)]
    pub master: Option<String>,
    /// The cluster instance id of that master's reign (raised by each election).
    #[serde(default)]
    pub master_instance: u64,
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
            networks: if network_configured {
                vec![NetworkEntry::new(crate::hb::config::LEGACY_NETWORK, true)]
            } else {
                Vec::new()
            },
            channels: Vec::new(),
            analysis: None,
            failover_held: None,
            echo_method: None,
            echo_note: None,
            network_configured,
            network_wanted: network_configured,
            mirrors_wanted: true,
            armed: false,
            failed_over: false,
            arm_policy: ArmPolicy::default(),
            stepped_down: false,
            peer_failed_over: None,
            peer_stepped_down: false,
            outbox_held: false,
            rejected_time_back: 0,
            rejected_serial_jump: 0,
            rejected_echo: 0,
            rejected_instance: 0,
            rejected_replayed: 0,
            rejected_invalid: 0,
            ignored_disabled: 0,
            watermarks: Vec::new(),
            heard_nonces: Default::default(),
            seeded: Some(Vec::new()),
            saved_ms: 0,
            serial: 0,
            last_control: 0,
            received_control: 0,
            outbox: Vec::new(),
            master: None,
            master_instance: 0,
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
            pair_problem: None,
            seen: Seen::default(),
            counter: Counter::default(),
            sent: 0,
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
                d.pair_problem = None;
                d.seen = Seen::default();
                d.counter = Counter::default();
                true
            }
            None => false,
        }
    }

    /// Whether the network channels are on (configured, and not turned off by a person).
    pub fn network_on(&self) -> bool {
        self.network_configured && self.network_wanted
    }

    /// Whether `d` is an installed mirror turned on (Fig 8).
    pub fn mirror_on(&self, d: &Device) -> bool {
        self.mirrors_wanted && d.wanted && d.status != DeviceStatus::Null
    }

    /// The enabled channels that carry heartbeats (and control messages)
    /// to the peer (`Direction::Send`) or the peer's here (`Receive`):
    /// `network`, `mirror NAME`.
    pub fn channels(&self, way: Direction) -> Vec<String> {
        let networks: Vec<String> = if self.network_on() {
            self.networks
                .iter()
                .map(|n| network_label(&n.name))
                .collect()
        } else {
            vec![]
        };
        networks
            .into_iter()
            .chain(
                self.devices
                    .iter()
                    .filter(|d| d.direction == way && self.mirror_on(d))
                    .map(|d| format!("mirror {}", d.name)),
            )
            .collect()
    }

    /// Whether an enabled channel carries heartbeats (and control messages) to the peer.
    pub fn sends_to_peer(&self) -> bool {
        !self.channels(Direction::Send).is_empty()
    }

    /// Whether an enabled channel carries the peer's heartbeats here.
    pub fn hears_peer(&self) -> bool {
        !self.channels(Direction::Receive).is_empty()
    }

    /// Fig 8, steps 810/820 (840/850 at the peer): the person's choice of
    /// channels. Returns what changed, in words.
    pub fn apply_procedure(&mut self, p: &Procedure) -> String {
        let mut said = vec![];
        if let Some(on) = p.network {
            self.network_wanted = on;
            said.push(format!("network {}", on_off(on)));
        }
        if let Some(on) = p.mirrors {
            self.mirrors_wanted = on;
            said.push(format!("mirrors {}", on_off(on)));
        }
        if let Some((name, on)) = &p.mirror.0 {
            if let Some(d) = self
                .devices
                .iter_mut()
                .find(|d| d.name == *name && d.status != DeviceStatus::Null)
            {
                d.wanted = *on;
                said.push(format!("mirror {name} {}", on_off(*on)));
            }
        }
        self.show_procedure();
        said.join(", ")
    }

    /// Shows at once what a person's choice turned off (DISABLE) or on
    /// (ENABLE until the checker finds otherwise), and whether control
    /// messages wait for a channel to the peer.
    pub fn show_procedure(&mut self) {
        let network_on = self.network_on();
        if !network_on {
            self.network_enable = Enable::Disable;
            self.remote_group_via_network = GroupStatus::Unknown;
        } else if self.network_enable == Enable::Disable {
            self.network_enable = Enable::Enable;
        }
        for n in &mut self.networks {
            if !network_on {
                n.enable = Enable::Disable;
                n.remote_group = GroupStatus::Unknown;
            } else if n.enable == Enable::Disable {
                n.enable = Enable::Enable;
            }
        }
        let mirrors_wanted = self.mirrors_wanted;
        for d in self
            .devices
            .iter_mut()
            .filter(|d| d.status != DeviceStatus::Null)
        {
            if !(mirrors_wanted && d.wanted) {
                d.status = DeviceStatus::Disable;
            } else if d.status == DeviceStatus::Disable {
                d.status = DeviceStatus::Enable;
            }
        }
        if !mirrors_wanted {
            self.remote_copy_enable = Enable::Disable;
            self.remote_group_via_mirrors = GroupStatus::Unknown;
        }
        self.outbox_held = !self.outbox.is_empty() && !self.sends_to_peer();
    }

    /// Seeds the table from the config's `[[mirrors]]`: an entry not seen
    /// before (new, or changed) is installed; an entry seen before is left
    /// to the table (a person may have de-installed it since); an entry that
    /// left the config de-installs its mirror if it is still installed as
    /// that entry made it. A table from before seeds were recorded takes
    /// the config as already seeded.
    pub fn seed(&mut self, config: &[MirrorSeed]) -> Seeding {
        let mut seeding = Seeding::default();
        let Some(before) = self.seeded.take() else {
            self.seeded = Some(config.to_vec());
            return seeding;
        };
        for gone in before.iter().filter(|s| !config.contains(s)) {
            let as_seeded = self.device(&gone.name).is_some_and(|d| {
                d.address.as_ref() == Some(&gone.address) && d.direction == gone.direction
            });
            if as_seeded && self.uninstall(&gone.name) {
                seeding.removed.push((gone.name.clone(), gone.pair.clone()));
            }
        }
        for new in config.iter().filter(|s| !before.contains(s)) {
            self.install(
                &new.name,
                new.address.clone(),
                new.direction,
                new.pair.clone(),
            );
            seeding.installed.push(new.name.clone());
        }
        self.seeded = Some(config.to_vec());
        seeding
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    fn seed(name: &str, direction: Direction) -> MirrorSeed {
        MirrorSeed {
            name: name.into(),
            address: format!("/mnt/hbfs/{name}").into(),
            direction,
            pair: (direction == Direction::Send).then(|| name.to_string()),
        }
    }

    #[test]
    fn config_entries_seed_once_and_the_table_decides_after() {
        let mut t = Table::new("h", Group::Production, true);
        let config = vec![
            seed("hb0", Direction::Send),
            seed("hb1", Direction::Receive),
        ];
        let first = t.seed(&config);
        assert_eq!(first.installed, vec!["hb0".to_string(), "hb1".to_string()]);
        assert_eq!(
            t.device("hb0").and_then(|d| d.pair.clone()),
            Some("hb0".into())
        );
        // A person de-installs hb0; the next start leaves it so.
        assert!(t.uninstall("hb0"));
        assert_eq!(t.seed(&config), Seeding::default());
        assert!(
            t.device("hb0").is_none(),
            "an uninstalled mirror stays uninstalled"
        );
        // A new entry seeds; an entry that left the config de-installs its mirror.
        let config = vec![seed("hb0", Direction::Send), seed("hb2", Direction::Send)];
        let second = t.seed(&config);
        assert_eq!(second.installed, vec!["hb2".to_string()]);
        assert_eq!(second.removed, vec![("hb1".to_string(), None)]);
        assert!(t.device("hb0").is_none());
        // A table from before seeds were recorded changes nothing.
        t.seeded = None;
        assert_eq!(t.seed(&[seed("hb9", Direction::Send)]), Seeding::default());
        assert!(t.device("hb9").is_none());
    }

    #[test]
    fn channels_each_way_follow_the_procedure() {
        let mut t = Table::new("h", Group::Production, true);
        t.install("hb0", "/hb0".into(), Direction::Send, None);
        t.install("hb1", "/hb1".into(), Direction::Receive, None);
        assert!(t.sends_to_peer() && t.hears_peer());
        let off = |network, mirror: Option<(&str, bool)>| Procedure {
            network,
            mirrors: None,
            mirror: crate::hb::message::MirrorChoice(mirror.map(|(n, on)| (n.to_string(), on))),
        };
        assert_eq!(t.apply_procedure(&off(Some(false), None)), "network off");
        assert!(t.sends_to_peer() && t.hears_peer(), "the mirrors remain");
        let mut u = t.clone();
        u.apply_procedure(&off(None, Some(("hb0", false))));
        assert!(!u.sends_to_peer() && u.hears_peer());
        let mut u = t.clone();
        u.apply_procedure(&off(None, Some(("hb1", false))));
        assert!(u.sends_to_peer() && !u.hears_peer());
        assert_eq!(t.channels(Direction::Send), vec!["mirror hb0".to_string()]);
        t.network_configured = false;
        t.network_wanted = true;
        assert!(!t.network_on(), "no [network], no network channel");
    }
}
