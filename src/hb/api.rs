//! hbd's control API: JSON lines on its socket, spoken by `hbctl hb`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::message::Procedure;
use super::table::Table;
use hbcore::vocab::Level;

/// Where hbd listens and `hbctl hb` connects unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/hbmirror/hbd.sock";

/// A request to hbd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum HbRequest {
    /// The status table.
    Status,
    /// The latest events, newest last.
    Events {
        /// How many.
        limit: usize,
    },
    /// Install a heartbeat mirror whose PVOL this host writes (Fig 4).
    Install {
        /// The PVOL's path here.
        pvol: PathBuf,
        /// The mirrord pair behind it (checked to be a heartbeat pair, then protected).
        pair: Option<String>,
        /// Mirror name; default: the pair's, else the PVOL file's name.
        name: Option<String>,
        /// SVOL volume name at the peer; default: the pair's SVOL, else the mirror name.
        svol: Option<String>,
        /// Or the SVOL's path at the peer.
        svol_path: Option<String>,
    },
    /// De-install a heartbeat mirror (Fig 5).
    Uninstall {
        /// Mirror name.
        name: String,
    },
    /// Change the checking procedure here and at the peer (Fig 8).
    Procedure(Procedure),
    /// Allow another failover after a failback.
    Rearm,
}

/// Where an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// This hbd.
    Local,
    /// The peer hbd (a failure notice).
    Peer,
}

/// Something that happened, as `hbctl hb events` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When, ms since the epoch.
    pub time_ms: u64,
    /// Local or from the peer.
    pub source: Source,
    /// The failure level, for failure notices.
    pub level: Option<Level>,
    /// The part concerned (channel, mirror, checked part).
    pub part: String,
    /// What happened.
    pub text: String,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum HbReply {
    /// Done; a sentence saying what was done.
    Done(String),
    /// The status table.
    Table(Box<Table>),
    /// Events, oldest first.
    Events(Vec<Event>),
}
