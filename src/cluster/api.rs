//! The requests `hbctl cluster` sends to the member agent, and its answers
//! (JSON lines on the `[cluster] control_socket`).

use serde::{Deserialize, Serialize};

use super::mib::Mib;

/// A request to the member agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ClusterRequest {
    /// This member's MIB and what it noticed.
    Show,
    /// Hot add: a new node, DOWN until it validated its resources.
    Add(Add),
    /// Hot remove: a node out of the cluster.
    Remove(Remove),
    /// Start of day: form the cluster from the members that answer.
    Form(Form),
}

/// Start of day (Fig 7): broadcast on the cluster's networks, collect the
/// members' answers, send each the generated MIB, have each confirm its
/// resources and return its copy, compare, confirm. The applications and
/// storage nodes come from this member's MIB; the nodes from the answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct Form {
    /// Milliseconds to wait for the answers, and again for the confirmations.
    #[arg(long, default_value_t = 1000)]
    #[serde(default = "default_wait_ms")]
    pub wait_ms: u64,
}

fn default_wait_ms() -> u64 {
    1000
}

/// Puts a new node in the cluster as DOWN; the node validates itself (it
/// reaches the applications' volumes through its mirrord, their executables
/// are there, start and pass their check (then are stopped), their floating
/// IPs can be assumed on one of its interfaces)
/// and becomes STANDBY, or stays DOWN with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct Add {
    /// The node's id (the `host` of its hbd).
    #[arg(long)]
    pub id: String,
    /// Its primary IP address (its hbd listens for notices there).
    #[arg(long)]
    pub ip: std::net::IpAddr,
    /// Its site: the id of the storage node whose volumes it sees.
    #[arg(long)]
    #[serde(default)]
    pub site: Option<String>,
    /// Applications it stands by for (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    #[serde(default)]
    pub standby_for: Vec<String>,
}

/// Takes a node out of the cluster; refused while it runs an application
/// or is the last standby of one that runs, unless forced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct Remove {
    /// The node's id.
    pub id: String,
    /// Remove it even so (the application runs without a standby).
    #[arg(long)]
    #[serde(default)]
    pub force: bool,
}

/// This member's view: its MIB, flattened, and beside it who it is, the
/// conflicts it refused, and its last takeover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    /// The MIB (`cluster_id`, `version`, `nodes`, `applications`, `storage`...).
    #[serde(flatten)]
    pub mib: Mib,
    /// The node answering.
    pub member: String,
    /// Copies refused as conflicting (same version, other content), with what differed.
    #[serde(default)]
    pub conflicts: Vec<String>,
    /// The takeovers this member did.
    #[serde(default)]
    pub takeovers: Vec<Takeover>,
    /// Its group's volume: the slots as last seen, LAN faults, a fence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<super::group::GroupView>,
}

/// One takeover done by this member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Takeover {
    /// The application.
    pub application: String,
    /// The node it was taken from.
    pub from: Option<String>,
    /// Milliseconds from the DOWN reaching this member to the floating IPs
    /// assumed (and the gratuitous ARP sent).
    pub down_to_ip_ms: u64,
}

/// The agent's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum ClusterReply {
    /// The member's view.
    View(Box<View>),
    /// Done, with what was done.
    Done(String),
}
