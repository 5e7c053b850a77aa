//! The table's entries as types: the status codes of Fig 2 (200–241),
//! the arm policy, a config's seed, the watermark and what is seen of
//! each channel, each heartbeat mirror's device entry, and a handover as
//! either end sees it. Data only.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::hb::logic::counter::Counter;
use crate::hb::logic::message::{HandoverAnswer, HandoverRequest};

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

/// What [`Table::seed`](super::Table::seed) changed.
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

/// A handover (seed 000 Fig 1: production that can no longer carry its
/// duties fails over to the standby), as this host sees it: at production,
/// why it stepped down, the request it sent and the standby's answer; at
/// the standby, the request it took and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handover {
    /// The production host that asked.
    pub from: String,
    /// The standby asked (at production: its peers).
    pub to: String,
    /// Why production cannot serve.
    pub reason: String,
    /// When production stepped down for it (its wall clock, ms since the epoch).
    pub since_ms: u64,
    /// The request, once sent (production sends it after its step-down).
    pub request: Option<HandoverRequest>,
    /// The standby's answer, once given.
    pub answer: Option<HandoverAnswer>,
}

impl Handover {
    /// Where it stands, in a word: `stepping-down`, `asked`, `taken-over`, `refused`.
    pub fn state(&self) -> &'static str {
        match (&self.request, &self.answer) {
            (None, _) => "stepping-down",
            (Some(_), None) => "asked",
            (Some(_), Some(a)) if a.accepted => "taken-over",
            (Some(_), Some(_)) => "refused",
        }
    }

    /// Whether the standby took over on it.
    pub fn taken(&self) -> bool {
        self.answer.as_ref().is_some_and(|a| a.accepted)
    }
}
