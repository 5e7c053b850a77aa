//! `[cluster]` in hbd's config: this host is a member of a cluster (the
//! settings only; the member agent, which reads them, is `crate::cluster`).
//! Read once at start; no thread changes it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Default UDP port of the members' notices.
pub const DEFAULT_PORT: u16 = 7791;
/// Default control socket of `hbctl cluster`.
pub const DEFAULT_SOCKET: &str = "/run/hbmirror/cluster.sock";

/// `[cluster]`: the member agent's settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// UDP port of the notices, the same at every member; this host listens
    /// on it at each of its networks' addresses.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Control socket for `hbctl cluster` (mode 0600).
    #[serde(default = "default_socket")]
    pub control_socket: PathBuf,
    /// The MIB to start from when `data_dir/cluster.json` does not exist
    /// yet (JSON, or TOML if the name ends in `.toml`).
    #[serde(default)]
    pub mib: Option<PathBuf>,
    /// This host's site (the storage node whose volumes it sees), told at
    /// start of day (`hbctl cluster form`).
    #[serde(default)]
    pub site: Option<String>,
    /// The hosts of this host's group, in the order they become master
    /// (seed 000); the master alone sends and checks the heartbeats and
    /// keeps the table volume. Empty: this host is always its own master.
    #[serde(default)]
    pub group_members: Vec<String>,
    /// Milliseconds without a valid heartbeat from the master after which
    /// the next host of the group becomes master (the seed's 1 minute).
    #[serde(default = "default_master_timeout_ms")]
    pub master_timeout_ms: u64,
}

fn default_master_timeout_ms() -> u64 {
    60_000
}

fn default_port() -> u16 {
    DEFAULT_PORT
}

fn default_socket() -> PathBuf {
    PathBuf::from(DEFAULT_SOCKET)
}
