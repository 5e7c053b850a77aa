//! What the member keeps for two of its roles, as data: a start of day
//! under way at the console (`forming`) and this host's view of its
//! group's master (`master`). Held in the [`Member`](super::member::Member)
//! behind a lock each; read and changed by the notice receiver and the
//! member's run task, never across an await.

use std::net::IpAddr;
use std::time::Instant;

use super::mib::Mib;

/// A start of day under way at the console.
#[derive(Debug, Default)]
pub struct Forming {
    /// Who answered: node id, its address, its site.
    pub answers: Vec<(String, IpAddr, Option<String>)>,
    /// Who confirmed: node id, its copy, what its resources lack.
    pub confirms: Vec<(String, Mib, Option<String>)>,
    /// The stamp of the MIB proposed in this round (a late confirmation of
    /// an earlier round is not one of this).
    pub proposed_ms: Option<u64>,
}

/// This host's view of its group's master.
#[derive(Debug, Clone)]
pub struct MasterView {
    /// The master's host id.
    pub master: String,
    /// The cluster instance id of its reign.
    pub instance: u64,
    /// When its last valid heartbeat arrived (or the reign began).
    pub last_seen: Instant,
    /// The run and uptime of its last valid heartbeat (they must advance).
    pub last_time: Option<(u64, u64)>,
}
