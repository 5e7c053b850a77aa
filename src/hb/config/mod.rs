//! hbd's TOML configuration: this host, its group and peers, the channels
//! (network, heartbeat mirrors), the timing, the failover actions and the
//! local checks; checked as a whole when loaded. Loaded once at start
//! (before the runtime), then only read, by every task.
//!
//! - this file: the top level ([`Config`]) and what is derived from it;
//! - [`sections`]: the sections (networks, analysis, mirrors, failover, checks);
//! - [`cluster`]: `[cluster]`, the settings of the member agent;
//! - `check`: the config checked as a whole;
//! - [`resume`]: the status table a host starts with under its config.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use hbcore::config;
pub use hbcore::config::ConfigError;
use hbcore::host::Endpoint;
use hbcore::vocab::Group;

use crate::hb::logic::counter::CounterRule;
use crate::hb::logic::qos::QosRule;
use crate::hb::logic::table::{ArmPolicy, MirrorSeed, LEGACY_NETWORK};

mod check;
pub mod cluster;
pub mod resume;
pub mod sections;

pub use sections::{
    AnalysisConfig, CheckConfig, FailoverConfig, MirrorConfig, MirrordAt, NetworkConfig,
};

/// Where hbd listens and `hbctl hb` connects unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/hbmirror/hbd.sock";

/// The whole configuration of one host's hbd.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This host's identifier, carried in every message it sends.
    pub host: String,
    /// Its group.
    pub group: Group,
    /// Identifiers approved as senders (the peer group's hosts).
    pub peers: Vec<String>,
    /// Where the status table (`table.json`) and events (`events.jsonl`) live.
    pub data_dir: PathBuf,
    /// Control socket for `hbctl hb` (mode 0600).
    #[serde(default = "default_socket")]
    pub control_socket: PathBuf,
    /// Milliseconds between heartbeats (and checks).
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Milliseconds without an advancing heartbeat after which a channel fails.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Retired: refused with a message that says what replaced it (the
    /// heartbeats' time is judged on the sender's own monotonic clock and
    /// echoed nonces, never against this host's clock).
    #[serde(default, skip_serializing)]
    pub freshness_ms: Option<toml::Value>,
    /// A peer whose wall clock is further off than this (measured from the
    /// heartbeats' round trips) is warned of, in the log and the events;
    /// nothing else depends on the clocks. Default 1000.
    #[serde(default = "default_clock_warn_ms")]
    pub clock_warn_ms: u64,
    /// Pre-shared key of the heartbeat messages (network and volumes).
    pub psk_file: PathBuf,
    /// Directory where this host sees heartbeat volumes as files (its hbfs
    /// mount); a peer's activation names a volume, found here.
    #[serde(default)]
    pub volume_dir: Option<PathBuf>,
    /// Also keep the status table on this volume (a file path), besides `data_dir`.
    #[serde(default)]
    pub table_volume: Option<PathBuf>,
    /// The network channel (one network; or give `[[networks]]`).
    #[serde(default)]
    pub network: Option<NetworkConfig>,
    /// The IP networks between the hosts, each a channel of its own.
    #[serde(default)]
    pub networks: Vec<NetworkConfig>,
    /// The channels' counters (seed 002, Figs 4 and 5).
    #[serde(default)]
    pub counter: CounterRule,
    /// The fault analysis (seed 002, Figs 6–9).
    #[serde(default)]
    pub analysis: AnalysisConfig,
    /// Heartbeat mirrors that seed the status table (each entry once; then
    /// the table decides, so `hbctl hb mirror uninstall` survives restarts).
    #[serde(default)]
    pub mirrors: Vec<MirrorConfig>,
    /// What to do at failover, and where to reach mirrord.
    #[serde(default)]
    pub failover: FailoverConfig,
    /// Local checks whose failures are notified to the peer (Fig 10).
    #[serde(default)]
    pub checks: Vec<CheckConfig>,
    /// OpenMetrics endpoint (`GET /metrics`) address; none when absent (the default).
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// This host is a member of a cluster (the member agent is `crate::cluster`).
    #[serde(default)]
    pub cluster: Option<cluster::ClusterConfig>,
    /// Hosts of this host's group that must be alive for it to serve (this
    /// host included; the group is `[cluster] group_members`, or this host
    /// alone): production with fewer hands over to the standby, a standby
    /// with fewer refuses a handover. Default 1.
    #[serde(default = "default_min_hosts")]
    pub min_hosts: u32,
    /// The watchdog device hbd pets while this host is healthy and
    /// connected (Linux's `/dev/watchdog`, or softdog's); none when absent.
    #[serde(default)]
    pub watchdog_device: Option<PathBuf>,
    /// The watchdog's timeout, set on the device at start (whole seconds,
    /// rounded up): a host not petted for this long is reset. Default 5000.
    #[serde(default = "default_watchdog_timeout_ms")]
    pub watchdog_timeout_ms: u64,
    /// The time within which a host that lost both its LAN and its slot
    /// fences itself (the cluster member). Default 10000.
    #[serde(default = "default_fence_timeout_ms")]
    pub fence_timeout_ms: u64,
}

fn default_watchdog_timeout_ms() -> u64 {
    5000
}

fn default_fence_timeout_ms() -> u64 {
    10_000
}

fn default_min_hosts() -> u32 {
    1
}

fn default_socket() -> PathBuf {
    PathBuf::from(DEFAULT_SOCKET)
}

fn default_interval_ms() -> u64 {
    1000
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_clock_warn_ms() -> u64 {
    1000
}

impl Config {
    /// Every network, named: `[[networks]]`, or the single `[network]`
    /// (named `network`).
    pub fn all_networks(&self) -> Vec<NetworkConfig> {
        match &self.network {
            Some(n) => vec![NetworkConfig {
                name: LEGACY_NETWORK.into(),
                ..n.clone()
            }],
            None => self.networks.clone(),
        }
    }

    /// The names of the networks, in the config's order.
    pub fn network_names(&self) -> Vec<String> {
        self.all_networks().into_iter().map(|n| n.name).collect()
    }

    /// The counter period: `counter.period_intervals` heartbeat intervals.
    pub fn counter_period(&self) -> Duration {
        self.interval() * self.counter.period_intervals
    }

    /// The QoS rule.
    pub fn qos_rule(&self) -> QosRule {
        QosRule {
            max_load_milli: self.analysis.max_load.map(|l| (l * 1000.0) as u32),
        }
    }

    /// The hosts of this host's group: `[cluster] group_members`, or this host alone.
    pub fn group_size(&self) -> u32 {
        self.cluster
            .as_ref()
            .map_or(0, |c| c.group_members.len() as u32)
            .max(1)
    }

    /// How long a local network check takes.
    pub fn echo_duration(&self) -> Duration {
        Duration::from_millis(self.analysis.echo_interval_ms) * self.analysis.echo_rounds
    }

    /// How long an analysis waits for the peer's report: its local check,
    /// and two timeouts for the reports to cross a surviving channel.
    pub fn answer_deadline(&self) -> Duration {
        self.echo_duration() + 2 * self.timeout() + 2 * self.interval()
    }

    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        config::load(path)
    }

    /// Parses and checks config text; `path` is only for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        config::parse(text, path)
    }

    /// The heartbeat interval.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// The channel timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The clock offset past which a peer's clock is warned of.
    pub fn clock_warn(&self) -> Duration {
        Duration::from_millis(self.clock_warn_ms)
    }

    /// The watchdog's timeout (`watchdog_timeout_ms`).
    pub fn watchdog_timeout(&self) -> Duration {
        Duration::from_millis(self.watchdog_timeout_ms)
    }

    /// The time within which a host cut off from its LAN and its slot
    /// fences itself (`fence_timeout_ms`).
    pub fn fence_timeout(&self) -> Duration {
        Duration::from_millis(self.fence_timeout_ms)
    }

    /// How long a taker waits for a poisoned host that does not acknowledge
    /// before it starts the host's applications (SBD's msgwait): twice the
    /// watchdog's timeout when a watchdog is configured (the host is reset
    /// by then), else twice `fence_timeout_ms` (it fenced itself by then).
    pub fn msgwait(&self) -> Duration {
        match self.watchdog_device {
            Some(_) => 2 * self.watchdog_timeout(),
            None => 2 * self.fence_timeout(),
        }
    }

    /// The standby's start-up policy.
    pub fn arm_policy(&self) -> ArmPolicy {
        self.failover.arm.unwrap_or_default()
    }

    /// The `[[mirrors]]` as seeds of the status table.
    pub fn seeds(&self) -> Vec<MirrorSeed> {
        self.mirrors.iter().filter_map(MirrorConfig::seed).collect()
    }

    /// Where hbd reaches mirrord's control: over the host link when
    /// `failover.mirrord` is given, else at `failover.mirrord_socket`.
    pub fn mirrord(&self) -> MirrordAt {
        let f = &self.failover;
        match &f.mirrord {
            None => MirrordAt::Socket(f.mirrord_socket.clone()),
            Some(url) => MirrordAt::Host {
                // Checked when loaded; a config built otherwise keeps its text.
                addrs: match Endpoint::parse(url) {
                    Ok(Endpoint::Tcp { addrs }) => addrs,
                    _ => vec![url.clone()],
                },
                key_file: f.mirrord_key.clone().unwrap_or_default(),
                host: f.mirrord_host.clone().unwrap_or_else(|| self.host.clone()),
            },
        }
    }

    /// Reads the pre-shared key.
    pub fn key(&self) -> Result<Vec<u8>, ConfigError> {
        config::read_key(&self.psk_file)
    }
}

#[cfg(test)]
mod tests;
