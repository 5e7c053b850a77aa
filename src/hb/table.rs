//! The heartbeat status table (Fig 2): what hbd knows of each channel, as
//! data. It is what `hbctl hb status` shows, what `table.json` keeps across
//! restarts, and what the failover hook gets in `HBD_TABLE`; the rules that
//! fill it are the checker's.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::message::Control;
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
}
