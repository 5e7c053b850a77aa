//! The heartbeat status table (Fig 2): what hbd knows of each channel, as
//! data. It is what `hbctl hb status` shows, what `table.json` keeps across
//! restarts, and what the failover hook gets in `HBD_TABLE`; the rules that
//! fill it are the checker's. Data: whoever holds it (the checker, behind
//! the daemon's one lock) changes it.
//!
//! - this file: the [`Table`] and its channel list by direction;
//! - [`entries`]: the status codes and entries the table is made of;
//! - `channels`: each network's entry and the channels' statuses;
//! - `changes`: a procedure applied, the config's mirrors seeded.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::analysis::{network_label, Analysis, ChannelStatus, EchoMethod};
use super::counter::Counter;
use super::message::Control;
use hbcore::vocab::Group;

mod changes;
mod channels;
pub mod entries;

pub use channels::NetworkEntry;
pub use entries::{
    ArmPolicy, Device, DeviceStatus, Direction, Enable, GroupStatus, Handover, MirrorSeed, Seeding,
    Seen, Watermark,
};

/// The name of the network of a config's single `[network]` section.
pub const LEGACY_NETWORK: &str = "network";

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
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
    /// The last handover (production that cannot serve asked the standby
    /// to take over): the request and the answer, at either end; kept
    /// until `hbctl hb rearm`.
    #[serde(default)]
    pub handover: Option<Handover>,
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
    /// Where the two ends' checking procedures differ, as far as this end
    /// can tell: a change of its own not yet at the peer, a network off
    /// here on which the peer still sends (empty: none seen).
    #[serde(default)]
    pub procedure_mismatch: Vec<String>,
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
                vec![NetworkEntry::new(LEGACY_NETWORK, true)]
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
            handover: None,
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
            procedure_mismatch: Vec::new(),
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

    /// Whether the network channel is on: configured, not turned off by a
    /// person, and at least one of its networks on.
    pub fn network_on(&self) -> bool {
        self.network_configured && self.network_wanted && self.networks.iter().any(|n| n.wanted)
    }

    /// Whether network `name` is on: the network channel is, and so is it.
    pub fn network_is_on(&self, name: &str) -> bool {
        self.network_on() && self.networks.iter().any(|n| n.name == name && n.wanted)
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
                .filter(|n| n.wanted)
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
}

#[cfg(test)]
mod tests;
