//! mirrord's control API: one struct per operation, used by the daemon
//! (deserialised from a JSON line, see [`crate::jsonl`]) and by hbctl
//! (parsed from the command line: the same struct is a clap `Args`), so the
//! fields of each operation, their help and their JSON names exist once.
//!
//! On the wire a request is its fields plus `"op"`:
//! `{"op":"pair_split","name":"data0","force":false}`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::size::parse_size;
use crate::vocab::{Backing, Fence, Kind, Mode, PairState, Role};

/// Where mirrord listens and hbctl connects unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/hbmirror/mirrord.sock";

/// Parses `on` / `off` (also `true` / `false`, `yes` / `no`) for a switch.
pub fn parse_on_off(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        other => Err(format!("'{other}' is not a switch; say on or off")),
    }
}

/// A request to mirrord.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Create a volume.
    VolumeCreate(VolumeCreate),
    /// List the volumes of this site.
    VolumeList,
    /// Forget a volume.
    VolumeDelete(VolumeDelete),
    /// Create a pair.
    PairCreate(PairCreate),
    /// Change settings of a live pair.
    PairSet(PairSet),
    /// Status of one pair, or of all.
    PairStatus(PairStatus),
    /// Split a pair.
    PairSplit(PairSplit),
    /// Resync a pair.
    PairResync(PairResync),
    /// Take over at the SVOL's site.
    PairTakeover(PairTakeover),
    /// Install or de-install a heartbeat pair.
    PairInstall(PairInstall),
    /// Dissolve a pair.
    PairDelete(PairDelete),
}

/// Create a volume: a new file of --size bytes, or an existing block device given by --path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct VolumeCreate {
    /// Volume name; also its file name on hbfs.
    pub name: String,
    /// Size: 4096, 64KiB, 1MiB, 1GiB (a multiple of 4KiB). Not needed for a block device.
    #[arg(long, value_parser = parse_size)]
    #[serde(default)]
    pub size: Option<u64>,
    /// Backing file to create, or an existing block device such as /dev/loop0.
    /// Default: <data_dir>/volumes/NAME.vol. Its directory must exist.
    #[arg(long)]
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Reserve no space now (a sparse file): creation is instant and takes no
    /// room, but a host write may later fail with ENOSPC when the filesystem
    /// fills. By default the whole size is reserved at creation.
    #[arg(long)]
    #[serde(default)]
    pub sparse: bool,
}

/// Forget a volume (refused while it is paired); its backing file is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct VolumeDelete {
    /// Volume name.
    pub name: String,
}

/// Pair a local PVOL with an SVOL at a peer site, copy it in full (COPY), then mirror it (PAIR).
///
/// The SVOL must already exist at the peer with exactly the PVOL's size.
/// Modes: `sync` (a write returns once both volumes hold it), `semi-sync`
/// (a write returns after the PVOL write; the next write waits for the
/// previous one's acknowledgement), `adaptive` (writes ship in the
/// background, at most --skew held in memory; the lag shows in `pair status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct PairCreate {
    /// Pair name, the same at both sites.
    pub name: String,
    /// Local volume to mirror (the PVOL).
    #[arg(long)]
    pub pvol: String,
    /// Peer site that holds the SVOL (a [[peers]] entry of mirrord's config).
    #[arg(long)]
    pub peer: String,
    /// SVOL name at the peer. Default: the PVOL's name.
    #[arg(long)]
    #[serde(default)]
    pub svol: Option<String>,
    /// Heartbeat pairs carry only heartbeats, resync by themselves, and are
    /// protected from split and delete while installed; data pairs carry data.
    #[arg(long, value_enum, default_value_t = Kind::Data)]
    #[serde(default)]
    pub kind: Kind,
    /// Remote-copy mode.
    #[arg(long, value_enum, default_value_t = Mode::Sync)]
    #[serde(default)]
    pub mode: Mode,
    /// Sync mode: `data` fails a write that cannot reach the SVOL with EIO
    /// (PVOL untouched); `never` keeps writing the PVOL and tracks the blocks.
    #[arg(long, value_enum)]
    #[serde(default)]
    pub fence: Option<Fence>,
    /// Adaptive mode: most pending write data held in memory (default 4MiB);
    /// beyond it blocks are only marked dirty and read back when they ship.
    #[arg(long, value_parser = parse_size)]
    #[serde(default)]
    pub skew: Option<u64>,
    /// Resync by itself when the link returns after PSUE, on|off (default: on for
    /// heartbeat pairs, off for data pairs).
    #[arg(long, value_parser = parse_on_off, value_name = "on|off")]
    #[serde(default)]
    pub auto_resync: Option<bool>,
}

/// Change the mode, fence, skew or auto-resync of a live pair (at either site).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct PairSet {
    /// Pair name.
    pub name: String,
    /// New remote-copy mode.
    #[arg(long, value_enum)]
    #[serde(default)]
    pub mode: Option<Mode>,
    /// New fence level (sync mode).
    #[arg(long, value_enum)]
    #[serde(default)]
    pub fence: Option<Fence>,
    /// New adaptive skew.
    #[arg(long, value_parser = parse_size)]
    #[serde(default)]
    pub skew: Option<u64>,
    /// Resync by itself after PSUE, on|off.
    #[arg(long, value_parser = parse_on_off, value_name = "on|off")]
    #[serde(default)]
    pub auto_resync: Option<bool>,
}

/// Show pairs: role, state (SMPL COPY PAIR PSUS PSUE SSWS), mode, lag, copy progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct PairStatus {
    /// Pair name; all pairs when omitted.
    #[serde(default)]
    pub name: Option<String>,
}

/// Split a data pair (PSUS), e.g. for a backup: what is pending ships first, then the
/// SVOL becomes readable and writable at its site; both sides track their changes.
///
/// Refused for a heartbeat pair installed for heartbeats (a split heartbeat
/// mirror freezes the heartbeat and looks like a dead site): de-install it
/// first (`hbctl pair uninstall NAME`), or add --force (logged as a warning).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct PairSplit {
    /// Pair name.
    pub name: String,
    /// Split even a pair installed for heartbeats.
    #[arg(long)]
    #[serde(default)]
    pub force: bool,
}

/// Join a split or suspended pair again: copy from the PVOL exactly the blocks
/// changed on either side (COPY), then mirror (PAIR).
///
/// After a takeover, run `pair resync NAME --reverse` at the site that took
/// over: its volume becomes the PVOL and only the blocks changed on either
/// side since the split are copied back to the old PVOL. A plain `pair resync`
/// at the PVOL's site instead discards the SVOL's changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct PairResync {
    /// Pair name.
    pub name: String,
    /// Swap the roles (run at the site that took over, SSWS).
    #[arg(long)]
    #[serde(default)]
    pub reverse: bool,
}

/// At the SVOL's site: make the SVOL writable (SSWS) and track its changes,
/// also when the PVOL's site is unreachable (failover of a data pair).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct PairTakeover {
    /// Pair name.
    pub name: String,
}

/// Mark a heartbeat pair installed for heartbeats (split and delete refused), or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct PairInstall {
    /// Pair name.
    pub name: String,
    /// Installed (true) or de-installed (false); on the command line, the
    /// subcommand (`install` / `uninstall`) says which.
    #[arg(skip = true)]
    pub installed: bool,
}

/// Dissolve a pair at both sites; both volumes stay, in state SMPL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct PairDelete {
    /// Pair name.
    pub name: String,
    /// Dissolve it here even if the peer site cannot be told (it keeps its half
    /// until deleted there), and even a heartbeat pair installed for heartbeats.
    #[arg(long)]
    #[serde(default)]
    pub force: bool,
}

/// One volume as `volume list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeInfo {
    /// Volume name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Backing file or device.
    pub path: PathBuf,
    /// File or block device.
    pub backing: Backing,
    /// Pair this volume belongs to, if any.
    pub pair: Option<String>,
    /// Its role in that pair.
    pub role: Option<Role>,
    /// Whether hosts may write it.
    pub writable: bool,
}

/// One pair as `pair status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairInfo {
    /// Pair name.
    pub name: String,
    /// This site's role.
    pub role: Role,
    /// Pair state.
    pub state: PairState,
    /// Remote-copy mode.
    pub mode: Mode,
    /// Heartbeat or data.
    pub kind: Kind,
    /// The other site.
    pub peer: String,
    /// PVOL name (at the PVOL's site).
    pub pvol: String,
    /// SVOL name (at the SVOL's site).
    pub svol: String,
    /// Volume size in bytes.
    pub size: u64,
    /// Fence level.
    pub fence: Fence,
    /// Adaptive skew in bytes.
    pub skew: u64,
    /// Resyncs by itself after PSUE.
    pub auto_resync: bool,
    /// Installed for heartbeats (protected from split and delete).
    pub installed: bool,
    /// Whether the remote link to the peer is up.
    pub link_up: bool,
    /// Bytes of blocks changed here that the other side lacks (dirty bitmap).
    pub pending_bytes: u64,
    /// Adaptive mode: bytes of pending writes held in memory (at most the skew).
    pub queued_bytes: u64,
    /// Age of the oldest unshipped change, in milliseconds.
    pub oldest_pending_ms: Option<u64>,
    /// Most host writes of this pair ever unacknowledged at once since the mode was set (copies not counted).
    pub max_in_flight: u64,
    /// The running or last copy.
    pub copy: CopyProgress,
}

/// Progress of a copy (initial copy or resync).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CopyProgress {
    /// Whether a copy runs now.
    pub running: bool,
    /// Bytes copied.
    pub copied_bytes: u64,
    /// Bytes to copy (grows if hosts dirty more blocks meanwhile).
    pub total_bytes: u64,
    /// copied / total, in percent.
    pub percent: f64,
    /// Average rate since the copy started, bytes per second.
    pub rate_bytes_per_s: f64,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Reply {
    /// Done; a sentence saying what was done.
    Done(String),
    /// Volumes.
    Volumes(Vec<VolumeInfo>),
    /// Pairs.
    Pairs(Vec<PairInfo>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_their_fields_plus_op() {
        let req = Request::PairCreate(PairCreate {
            name: "hb0".into(),
            pvol: "hb0".into(),
            peer: "standby".into(),
            svol: None,
            kind: Kind::Heartbeat,
            mode: Mode::SemiSync,
            fence: None,
            skew: Some(crate::vocab::DEFAULT_SKEW),
            auto_resync: None,
        });
        let text = serde_json::to_string(&req).expect("serialize");
        assert!(
            text.starts_with(r#"{"op":"pair_create","name":"hb0""#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Request>(&text).expect("parse"), req);
        // Scripts may leave out what has a default.
        let short: Request =
            serde_json::from_str(r#"{"op":"pair_split","name":"d"}"#).expect("parse");
        assert_eq!(
            short,
            Request::PairSplit(PairSplit {
                name: "d".into(),
                force: false
            })
        );
        let list: Request = serde_json::from_str(r#"{"op":"volume_list"}"#).expect("parse");
        assert_eq!(list, Request::VolumeList);
    }

    #[test]
    fn switches_read_on_and_off() {
        assert_eq!(parse_on_off("on"), Ok(true));
        assert_eq!(parse_on_off("OFF"), Ok(false));
        assert!(parse_on_off("maybe").is_err_and(|e| e.contains("say on or off")));
    }
}
