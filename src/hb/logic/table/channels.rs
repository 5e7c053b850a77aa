//! The table's networks and its list of channels (seed 002's status API):
//! each network's entry with its counter, and every channel (network or
//! mirror) with its state by the counter.

use serde::{Deserialize, Serialize};

use super::{DeviceStatus, Direction, Enable, GroupStatus, Seen, Table};
use crate::hb::logic::analysis::{network_label, ChannelKind, ChannelState, ChannelStatus};
use crate::hb::logic::counter::Counter;

/// One IP network of the table: 200/210 for that network, with its counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkEntry {
    /// The network's name (`network` for a config's single `[network]`).
    pub name: String,
    /// Its heartbeat enable (timeout rule): ENABLE / DISABLE / FAILED.
    pub enable: Enable,
    /// Remote group status via this network.
    pub remote_group: GroupStatus,
    /// Counts and last-seen time.
    pub seen: Seen,
    /// Its counter (seed 002, Fig 4).
    #[serde(default)]
    pub counter: Counter,
    /// Datagrams sent on it.
    #[serde(default)]
    pub sent: u64,
    /// Why its socket is closed or its sends fail, if so.
    #[serde(default)]
    pub socket_problem: Option<String>,
    /// Times its socket was closed and re-opened (Fig 5).
    #[serde(default)]
    pub reopened: u64,
    /// A person's choice for this network alone (`hbctl hb procedure
    /// --network NAME on|off`); the network channel as a whole is `network_wanted`.
    #[serde(default = "on")]
    pub wanted: bool,
}

fn on() -> bool {
    true
}

impl NetworkEntry {
    pub(super) fn new(name: &str, on: bool) -> NetworkEntry {
        NetworkEntry {
            name: name.into(),
            enable: if on { Enable::Enable } else { Enable::Disable },
            remote_group: GroupStatus::Unknown,
            seen: Seen::default(),
            counter: Counter::default(),
            sent: 0,
            socket_problem: None,
            reopened: 0,
            wanted: true,
        }
    }
}

impl Table {
    /// Makes the table's networks the config's `names` (in that order):
    /// entries of networks still configured are kept, new ones added.
    pub fn set_networks(&mut self, names: &[String]) {
        let on = self.network_wanted;
        let mut before = std::mem::take(&mut self.networks);
        self.networks = names
            .iter()
            .map(|n| match before.iter().position(|e| e.name == *n) {
                Some(i) => before.swap_remove(i),
                None => NetworkEntry::new(n, on),
            })
            .collect();
        self.network_configured = !names.is_empty();
    }

    /// The network entry called `name`.
    pub fn network_entry(&mut self, name: &str) -> Option<&mut NetworkEntry> {
        self.networks.iter_mut().find(|n| n.name == name)
    }

    /// Each channel that receives (`network NAME`, `mirror NAME`) with the
    /// peer clock offset last measured on it, if any.
    pub fn clock_offsets(&self) -> impl Iterator<Item = (String, Option<i64>)> + '_ {
        let networks = self
            .networks
            .iter()
            .map(|n| (network_label(&n.name), n.seen.clock_offset_ms));
        let mirrors = self
            .devices
            .iter()
            .map(|d| (format!("mirror {}", d.name), d.seen.clock_offset_ms));
        networks.chain(mirrors)
    }

    /// Every channel with its counter, as `channels` shows them.
    pub fn channel_statuses(&self) -> Vec<ChannelStatus> {
        let networks = self.networks.iter().map(|n| ChannelStatus {
            name: n.name.clone(),
            kind: ChannelKind::Network,
            state: state_of(self.network_on() && n.wanted, &n.counter),
            status: word(&n.enable),
            direction: None,
            counter: n.counter.open.then_some(n.counter.value),
            sent: n.sent,
            received: n.counter.received,
            missing: n.counter.missing,
            last_ms: n.seen.last_ms,
            problem: n.seen.problem.clone().or_else(|| n.socket_problem.clone()),
            clock_offset_ms: n.seen.clock_offset_ms,
        });
        let mirrors = self
            .devices
            .iter()
            .filter(|d| d.status != DeviceStatus::Null)
            .map(|d| {
                let on = self.mirror_on(d);
                let (state, counter) = match d.direction {
                    Direction::Receive => (
                        state_of(on, &d.counter),
                        d.counter.open.then_some(d.counter.value),
                    ),
                    Direction::Send if !on => (ChannelState::Off, None),
                    Direction::Send if d.seen.problem.is_some() => (ChannelState::Bad, None),
                    Direction::Send => (ChannelState::Good, None),
                };
                ChannelStatus {
                    name: d.name.clone(),
                    kind: ChannelKind::Mirror,
                    state,
                    status: word(&d.status),
                    direction: Some(word(&d.direction)),
                    counter,
                    sent: d.sent,
                    received: d.counter.received,
                    missing: d.counter.missing,
                    last_ms: d.seen.last_ms,
                    problem: d.seen.problem.clone(),
                    clock_offset_ms: d.seen.clock_offset_ms,
                }
            });
        networks.chain(mirrors).collect()
    }
}

/// GOOD / BAD by the counter, OFF when the channel is turned off.
fn state_of(on: bool, c: &Counter) -> ChannelState {
    if !on {
        ChannelState::Off
    } else if c.good() {
        ChannelState::Good
    } else {
        ChannelState::Bad
    }
}

/// The table's word for a value (ENABLE, FAILED, receive), as in JSON.
fn word<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}
