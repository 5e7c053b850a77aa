//! The sections of hbd's config besides its top level: a network
//! (`[network]`, `[[networks]]`), `[analysis]`, `[[mirrors]]`, `[failover]`,
//! `[[checks]]`. Read once at start; no thread changes them.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use hbcore::vocab::Level;

use crate::hb::logic::table::{ArmPolicy, Direction, MirrorSeed};

/// A network heartbeat channel (UDP): `[network]`, or one of `[[networks]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// The network's name, the same at both hosts (`[[networks]]` only).
    #[serde(default)]
    pub name: String,
    /// This host's address on the network: heartbeats are received on it
    /// and sent from it.
    pub listen: SocketAddr,
    /// The peer hbd's address(es) on the network; each gets every heartbeat.
    pub peers: Vec<String>,
    /// Where the local check sends its echo requests (e.g. the network's
    /// gateway); default: the first peer.
    #[serde(default)]
    pub probe: Option<IpAddr>,
}

/// `[analysis]`: the local network check and what a verdict may do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisConfig {
    /// Rounds of echo requests on every network (Fig 8).
    pub echo_rounds: u32,
    /// Milliseconds between rounds.
    pub echo_interval_ms: u64,
    /// A host whose 1-minute load average per CPU is above this cannot carry
    /// the duties (QoS); none: no limit.
    pub max_load: Option<f64>,
    /// Standby only: fail over on a `remote-fault` verdict when its QoS
    /// exceeds production's and it can carry the duties (Fig 6, 634–638).
    pub failover_on_fault: bool,
}

impl Default for AnalysisConfig {
    fn default() -> AnalysisConfig {
        AnalysisConfig {
            echo_rounds: 3,
            echo_interval_ms: 1000,
            max_load: None,
            failover_on_fault: false,
        }
    }
}

/// One heartbeat mirror: a PVOL path this host writes and/or an SVOL path it reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// Name, the same at both hosts.
    pub name: String,
    /// Heartbeat PVOL to write (sending).
    #[serde(default)]
    pub pvol: Option<PathBuf>,
    /// Heartbeat SVOL to read (receiving).
    #[serde(default)]
    pub svol: Option<PathBuf>,
    /// The mirrord pair behind it (protected from split while installed).
    #[serde(default)]
    pub pair: Option<String>,
}

/// Failover actions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverConfig {
    /// Command run (by `sh -c`) once at failover, with the reason and the table in its environment.
    #[serde(default)]
    pub hook: Option<String>,
    /// Data pairs to take over through mirrord at failover.
    #[serde(default)]
    pub take_over: Vec<String>,
    /// mirrord's control socket (pair takeover, heartbeat-pair protection),
    /// when mirrord runs on this machine; unused when `mirrord` is given.
    #[serde(default = "default_mirrord_socket")]
    pub mirrord_socket: PathBuf,
    /// mirrord on another machine, over the host link:
    /// `tcp://ADDR:PORT[,ADDR2:PORT]` (its `[hosts] listen`, a second
    /// address tried when the first does not answer). Given, it is used
    /// instead of `mirrord_socket`.
    #[serde(default)]
    pub mirrord: Option<String>,
    /// With `mirrord`: this host's key for the host link (the file mirrord's
    /// `[[hosts.allow]]` entry for it names; mode 0600 or stricter).
    #[serde(default)]
    pub mirrord_key: Option<PathBuf>,
    /// With `mirrord`: the host id given on the host link (mirrord's
    /// `[[hosts.allow]] host`); default: `host`. Filled in when loaded.
    #[serde(default)]
    pub mirrord_host: Option<String>,
    /// Command run for received SYSTEM DOWN and SERIOUS notices.
    #[serde(default)]
    pub alert: Option<String>,
    /// When a standby may fail over after it starts: `seen-alive` (default)
    /// or `after-timeout`.
    #[serde(default)]
    pub arm: Option<ArmPolicy>,
    /// Command run (by `sh -c`) once when a production host steps down
    /// because the standby took over while it was away.
    #[serde(default)]
    pub step_down: Option<String>,
}

/// A local check: exactly one of `command`, `writable`, `network`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// The part's identifier (host, volume, link...).
    pub part: String,
    /// Level of its failure.
    pub level: Level,
    /// Fails when this command (run by `sh -c`) exits non-zero.
    #[serde(default)]
    pub command: Option<String>,
    /// Fails when this volume (file) cannot be opened for writing.
    #[serde(default)]
    pub writable: Option<PathBuf>,
    /// Fails when a TCP connection to this `host:port` cannot be made within the interval.
    #[serde(default)]
    pub network: Option<String>,
}

impl MirrorConfig {
    /// The entry as a seed of the status table (none if it names no device).
    pub fn seed(&self) -> Option<MirrorSeed> {
        let (address, direction) = match (&self.pvol, &self.svol) {
            (Some(p), _) => (p.clone(), Direction::Send),
            (None, Some(s)) => (s.clone(), Direction::Receive),
            (None, None) => return None,
        };
        Some(MirrorSeed {
            name: self.name.clone(),
            address,
            direction,
            pair: self.pair.clone(),
        })
    }
}

// Written out (not derived) so that a config without [failover] gets the
// same mirrord socket as one with an incomplete [failover], not an empty path.
impl Default for FailoverConfig {
    fn default() -> FailoverConfig {
        FailoverConfig {
            hook: None,
            take_over: Vec::new(),
            mirrord_socket: default_mirrord_socket(),
            mirrord: None,
            mirrord_key: None,
            mirrord_host: None,
            alert: None,
            arm: None,
            step_down: None,
        }
    }
}

fn default_mirrord_socket() -> PathBuf {
    PathBuf::from(hbcore::control::DEFAULT_SOCKET)
}

/// Where hbd reaches mirrord's control: the `[failover]` keys resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MirrordAt {
    /// Its control socket on this machine (`mirrord_socket`).
    Socket(PathBuf),
    /// Over the host link (`mirrord`, `mirrord_key`, `mirrord_host`).
    Host {
        /// `ADDR:PORT` of each of its `[hosts] listen`, in the order tried.
        addrs: Vec<String>,
        /// This host's key file.
        key_file: PathBuf,
        /// The host id given.
        host: String,
    },
}

impl std::fmt::Display for MirrordAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MirrordAt::Socket(path) => write!(f, "{}", path.display()),
            MirrordAt::Host { addrs, .. } => write!(f, "tcp://{}", addrs.join(",")),
        }
    }
}
