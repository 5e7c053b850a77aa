//! hbd's control API: JSON lines on its socket ([`hbcore::jsonl`]), spoken
//! by `hbctl hb`. Like mirrord's ([`hbcore::control`]), each operation with
//! fields is one struct, used by hbd (deserialised) and by hbctl (parsed
//! from the command line: the struct is a clap `Args`), so its fields, their
//! help and their JSON names exist once.
//!
//! On the wire a request is its fields plus `"op"`:
//! `{"op":"uninstall","name":"hb2"}`.
//!
//! Data only: built by `hbctl` and answered on the control server's tasks.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::logic::analysis::Analysis;
pub use super::logic::message::Procedure;
use super::logic::table::Table;
use hbcore::vocab::Level;

pub use super::config::DEFAULT_SOCKET;

/// A request to hbd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum HbRequest {
    /// The status table.
    Status,
    /// The latest events, newest last.
    Events(Events),
    /// Install a heartbeat mirror whose PVOL this host writes (Fig 4).
    Install(Install),
    /// De-install a heartbeat mirror (Fig 5).
    Uninstall(Uninstall),
    /// Change the checking procedure here and at the peer (Fig 8).
    Procedure(SetProcedure),
    /// At a standby, allow another failover after a failback; at a
    /// production host, end a step-down.
    Rearm,
    /// Run a fault analysis now (seed 002) and answer its verdict and evidence.
    Analyze,
}

/// Show recent events: channel failures and recoveries, failure notices, failover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
// hbctl's `hb events` command is named like it; one clap group of that name is enough.
#[group(skip)]
pub struct Events {
    /// How many, newest last.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

/// Install a heartbeat mirror whose PVOL this host writes (Fig 4): registers
/// it, enables it, protects its mirrord pair from split, and tells the peer
/// hbd, which registers its SVOL. Without --pvol, installs the `[[mirrors]]`
/// entry of hbd's config named by --name (again, after an uninstall).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct Install {
    /// The heartbeat PVOL as a file here (usually on hbfs).
    #[arg(long)]
    #[serde(default)]
    pub pvol: Option<PathBuf>,
    /// The mirrord pair behind it (must be a heartbeat pair with its PVOL here).
    #[arg(long)]
    pub pair: Option<String>,
    /// Mirror name. Default: the pair's name, else the PVOL file's name.
    #[arg(long)]
    pub name: Option<String>,
    /// SVOL volume name at the peer (found in its volume_dir). Default: the pair's SVOL.
    #[arg(long)]
    pub svol: Option<String>,
    /// Or the SVOL's full path at the peer.
    #[arg(long)]
    pub svol_path: Option<String>,
}

/// Turn the network channel, the mirror channel, or one mirror on or off,
/// here and (over an enabled channel) at the peer (Fig 8). A turned-off
/// channel neither carries heartbeats nor counts for the decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct SetProcedure {
    /// The channels to turn on or off.
    #[command(flatten)]
    #[serde(flatten)]
    pub procedure: Procedure,
    /// Change even what is refused: turning off the last channel one way,
    /// leaving no channel on at both ends to carry the change, changing
    /// before the previous change reached the peer. The change may then
    /// wait, and the two ends may have different channels on until it
    /// reaches the peer.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// De-install a heartbeat mirror (Fig 5): stops using it here and at the peer,
/// and lifts its pair's split protection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct Uninstall {
    /// Mirror name.
    pub name: String,
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
    /// A fault analysis's verdict and evidence, for the event that announces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Box<Analysis>>,
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
    /// A fault analysis, with its verdict and evidence.
    Analysis(Box<Analysis>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hb::logic::message::MirrorChoice;

    /// Each request and the JSON line hbd has always read for it.
    fn wire() -> Vec<(HbRequest, &'static str)> {
        vec![
            (HbRequest::Status, r#"{"op":"status"}"#),
            (
                HbRequest::Events(Events { limit: 5 }),
                r#"{"op":"events","limit":5}"#,
            ),
            (
                HbRequest::Install(Install {
                    pvol: Some("/mnt/hbfs/hb2".into()),
                    pair: Some("hb2".into()),
                    name: None,
                    svol: None,
                    svol_path: Some("/mnt/hbfs/x".into()),
                }),
                r#"{"op":"install","pvol":"/mnt/hbfs/hb2","pair":"hb2","name":null,"svol":null,"svol_path":"/mnt/hbfs/x"}"#,
            ),
            (
                HbRequest::Uninstall(Uninstall { name: "hb2".into() }),
                r#"{"op":"uninstall","name":"hb2"}"#,
            ),
            (
                HbRequest::Procedure(SetProcedure {
                    procedure: Procedure {
                        network: Some(false),
                        mirrors: None,
                        mirror: MirrorChoice(Some(("hb0".into(), true))),
                    },
                    force: false,
                }),
                r#"{"op":"procedure","network":false,"mirrors":null,"mirror":["hb0",true]}"#,
            ),
            (
                HbRequest::Procedure(SetProcedure {
                    procedure: Procedure {
                        network: Some(false),
                        mirrors: Some(false),
                        mirror: MirrorChoice(None),
                    },
                    force: true,
                }),
                r#"{"op":"procedure","network":false,"mirrors":false,"mirror":null,"force":true}"#,
            ),
            (HbRequest::Rearm, r#"{"op":"rearm"}"#),
            (HbRequest::Analyze, r#"{"op":"analyze"}"#),
        ]
    }

    #[test]
    fn requests_keep_their_json_lines() {
        for (request, line) in wire() {
            assert_eq!(serde_json::to_string(&request).expect("serialize"), line);
            assert_eq!(
                serde_json::from_str::<HbRequest>(line).expect("parse"),
                request
            );
        }
        // Scripts may leave out what is optional.
        let short: HbRequest =
            serde_json::from_str(r#"{"op":"install","pvol":"/p"}"#).expect("parse");
        assert!(matches!(
            short,
            HbRequest::Install(Install { pair: None, .. })
        ));
        let short: HbRequest =
            serde_json::from_str(r#"{"op":"procedure","network":true}"#).expect("parse");
        assert_eq!(
            short,
            HbRequest::Procedure(SetProcedure {
                procedure: Procedure {
                    network: Some(true),
                    ..Procedure::default()
                },
                force: false,
            })
        );
        let by_name: HbRequest =
            serde_json::from_str(r#"{"op":"install","name":"hb0"}"#).expect("parse");
        assert!(matches!(
            by_name,
            HbRequest::Install(Install { pvol: None, .. })
        ));
    }
}
