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
    /// The volume (a file, usually on this host's hbfs mount) where the
    /// group keeps a slot per host (see docs/clusters.md, "Inside a site"):
    /// writable by every host of the group, of this site's storage, not
    /// mirrored. Absent: hbd's `table_volume`, slots from 1 MiB. A group
    /// needs one or the other.
    #[serde(default)]
    pub group_volume: Option<PathBuf>,
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

impl ClusterConfig {
    /// Checks the group of `host` (hbd's `host`, with its `table_volume`
    /// and `interval_ms`): it is one of its group, each host once, a
    /// volume for the slots, and a master timeout whose half (the lease)
    /// outlasts two late slot writes.
    pub fn check_group(
        &self,
        host: &str,
        table_volume: Option<&std::path::Path>,
        interval_ms: u64,
    ) -> Result<(), String> {
        let members = &self.group_members;
        if members.is_empty() {
            return Ok(());
        }
        if !members.iter().any(|m| m == host) {
            return Err(format!(
                "[cluster] group_members = {members:?} does not list this host '{host}': list it where it stands in the order of masters"
            ));
        }
        if let Some(twice) = members
            .iter()
            .enumerate()
            .find(|(i, m)| members[..*i].contains(m))
        {
            return Err(format!(
                "[cluster] group_members lists '{}' twice: list each host once",
                twice.1
            ));
        }
        if self.group_volume.is_none() && table_volume.is_none() {
            return Err("a group ([cluster] group_members) keeps a slot per host on a volume of its site's storage: give [cluster] group_volume (a writable, unpaired volume every host of the group sees), or hbd's table_volume".into());
        }
        if self.master_timeout_ms < 4 * interval_ms {
            return Err(format!(
                "[cluster] master_timeout_ms = {} is less than 4 × interval_ms ({}): a master keeps its reign for half of it after each good write of its slot; give at least {}",
                self.master_timeout_ms,
                interval_ms,
                4 * interval_ms
            ));
        }
        Ok(())
    }
}
