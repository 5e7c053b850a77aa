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
