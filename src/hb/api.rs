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
pub use super::logic::message::{Choice, Procedure};
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

/// Turn the network channel (every network, or one by name), the mirror
/// channel, or one mirror on or off, here and (over an enabled channel) at
/// the peer (Fig 8). A turned-off channel neither carries heartbeats nor
/// counts for the decision.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetProcedure {
    /// The channels to turn on or off.
    #[serde(flatten)]
    pub procedure: Procedure,
    /// One network on or off, by its name (`--network NAME on|off`).
    #[serde(default, skip_serializing_if = "Choice::is_none")]
    pub one_network: Choice,
    /// Change even what is refused (see `FORCE_HELP`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
}

/// What `--force` does, and what it risks.
const FORCE_HELP: &str = "Change even what is refused: turning off the last channel one way, \
leaving no channel on at both ends to carry the change, changing before the previous change \
reached the peer. The risk: the change waits for a channel to the peer, and meanwhile the two \
ends have different channels on; the peer then misses heartbeats on a channel it still checks \
and may fail that channel, and if every channel it checks goes silent it may take over a live \
production. `hbctl hb status` shows the change waiting, and a fault analysis says \
config-error, until both ends agree";

impl SetProcedure {
    /// Whether it changes nothing at all.
    pub fn is_empty(&self) -> bool {
        self.procedure.is_empty() && self.one_network.is_none()
    }
}

/// `on` or `off` as a bool, or an error naming the flag.
fn on_off(flag: &str, word: &str) -> Result<bool, clap::Error> {
    match word {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(clap::Error::raw(
            clap::error::ErrorKind::InvalidValue,
            format!("{flag} {other}: say on or off\n"),
        )),
    }
}

// By hand: `--network` takes one value (every network) or two (one network
// by name), `--mirror` two; clap's derive turns neither into these fields.
impl clap::Args for SetProcedure {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let flag = |name: &'static str| clap::Arg::new(name).long(name);
        cmd.about(
            "Turn the networks (all, or one by name), the mirror channel, or one mirror on or \
             off, here and (over an enabled channel) at the peer (Fig 8). A turned-off channel \
             neither carries heartbeats nor counts for the decision.",
        )
        .arg(
            flag("network")
                .num_args(1..=2)
                .value_names(["NAME", "on|off"])
                .help("Every network: on|off; one network: NAME on|off"),
        )
        .arg(
            flag("mirrors")
                .num_args(1)
                .value_name("on|off")
                .help("Send and check heartbeats through the heartbeat mirrors: on|off"),
        )
        .arg(
            flag("mirror")
                .num_args(2)
                .value_names(["NAME", "on|off"])
                .help("One mirror: NAME on|off"),
        )
        .arg(
            flag("force")
                .action(clap::ArgAction::SetTrue)
                .help(FORCE_HELP),
        )
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for SetProcedure {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let words = |id: &str| -> Option<Vec<String>> {
            matches.get_many::<String>(id).map(|w| w.cloned().collect())
        };
        let named = |flag: &str, name: &str, state: &str| -> Result<Choice, clap::Error> {
            let on = on_off(&format!("{flag} {name}"), state)?;
            Ok(Choice(Some((name.to_string(), on))))
        };
        let mut s = SetProcedure {
            force: matches.get_flag("force"),
            ..SetProcedure::default()
        };
        match words("network").as_deref() {
            None => {}
            Some([state]) => s.procedure.network = Some(on_off("--network", state)?),
            Some([name, state]) => s.one_network = named("--network", name, state)?,
            Some(_) => {
                return Err(clap::Error::raw(
                    clap::error::ErrorKind::WrongNumberOfValues,
                    "--network takes on|off, or NAME on|off\n",
                ))
            }
        }
        if let Some([state]) = words("mirrors").as_deref() {
            s.procedure.mirrors = Some(on_off("--mirrors", state)?);
        }
        if let Some([name, state]) = words("mirror").as_deref() {
            s.procedure.mirror = named("--mirror", name, state)?;
        }
        Ok(s)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
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
                        mirror: Choice(Some(("hb0".into(), true))),
                    },
                    one_network: Choice(None),
                    force: false,
                }),
                r#"{"op":"procedure","network":false,"mirrors":null,"mirror":["hb0",true]}"#,
            ),
            (
                HbRequest::Procedure(SetProcedure {
                    procedure: Procedure {
                        network: Some(false),
                        mirrors: Some(false),
                        mirror: Choice(None),
                    },
                    one_network: Choice(None),
                    force: true,
                }),
                r#"{"op":"procedure","network":false,"mirrors":false,"mirror":null,"force":true}"#,
            ),
            (
                HbRequest::Procedure(SetProcedure {
                    procedure: Procedure::default(),
                    one_network: Choice(Some(("wan".into(), false))),
                    force: false,
                }),
                r#"{"op":"procedure","network":null,"mirrors":null,"mirror":null,"one_network":["wan",false]}"#,
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
                one_network: Choice(None),
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

    #[test]
    fn a_procedure_reads_on_and_off_from_the_command_line() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            set: SetProcedure,
        }
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("hbctl").chain(args.iter().copied())).map(|c| c.set)
        };
        let set = parse(&["--network", "off", "--mirror", "hb0", "on"]).expect("parse");
        assert_eq!(
            set.procedure,
            Procedure {
                network: Some(false),
                mirrors: None,
                mirror: Choice(Some(("hb0".into(), true))),
            }
        );
        assert!(set.one_network.is_none() && !set.force);
        let one = parse(&["--network", "wan", "off", "--force"]).expect("parse");
        assert_eq!(one.one_network, Choice(Some(("wan".into(), false))));
        assert!(one.procedure.is_empty() && one.force && !one.is_empty());
        assert!(parse(&[]).expect("parse").is_empty());
        let e = parse(&["--mirror", "hb0", "maybe"]).expect_err("not a switch");
        assert!(
            e.to_string().contains("--mirror hb0 maybe: say on or off"),
            "{e}"
        );
        let e = parse(&["--network", "wan", "maybe"]).expect_err("not a switch");
        assert!(
            e.to_string().contains("--network wan maybe: say on or off"),
            "{e}"
        );
        assert!(parse(&["--network", "yes"]).is_err());
        assert!(parse(&["--network", "a", "on", "x"]).is_err());
    }
}
