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
use crate::vocab::{Fence, Kind, Mode, PairSettings};

mod info;

pub use info::*;

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
    /// Fence a PVOL whose SVOL was taken over (hbd's step-down).
    PairOutdate(PairOutdate),
    /// Install or de-install a heartbeat pair.
    PairInstall(PairInstall),
    /// Dissolve a pair.
    PairDelete(PairDelete),
    /// Compare the two copies of a pair block by block.
    PairVerify(PairVerify),
    /// The remote link to each peer: its lanes and its paths.
    LinkStatus,
}

/// What a pair does when the generations show a split brain (both sites
/// wrote since their common generation) as the link returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum SplitBrainPolicy {
    /// Nothing is copied until a person chooses with `pair resync
    /// --discard-local` or `--discard-remote`.
    #[default]
    Manual,
    /// The SVOL side's changes are discarded: the PVOL's data wins.
    DiscardSvol,
    /// The side with fewer changed blocks is discarded (a tie waits for a person).
    DiscardLeastChanges,
}

/// A pair's integrity options, the same at both sites.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrityOptions {
    /// A resync compares digests of the dirty blocks first and sends only those that differ.
    #[serde(default)]
    pub checksum_resync: bool,
    /// What a split brain found as the link returns does.
    #[serde(default)]
    pub split_brain: SplitBrainPolicy,
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
    /// Peer site that holds the SVOL (a `[[peers]]` entry of mirrord's config).
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
    /// The optional settings (unset: their defaults).
    #[command(flatten)]
    #[serde(flatten)]
    pub options: PairOptions,
}

/// A pair's optional settings: given at `pair create` (unset: the default
/// said here) and at `pair set` (unset: unchanged).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct PairOptions {
    /// Sync mode: `data` fails a write that cannot reach the SVOL with EIO
    /// (PVOL untouched); `never` (the default) keeps writing the PVOL and tracks the blocks.
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
    /// A resync compares digests of the dirty blocks with the other copy first
    /// and sends only the blocks that differ, on|off (default off).
    #[arg(long, value_parser = parse_on_off, value_name = "on|off")]
    #[serde(default)]
    pub checksum_resync: Option<bool>,
    /// After a split brain found as the link returns: `manual` (default: wait for
    /// `pair resync --discard-local|--discard-remote`), `discard-svol`, or
    /// `discard-least-changes`.
    #[arg(long, value_enum)]
    #[serde(default)]
    pub split_brain: Option<SplitBrainPolicy>,
    /// Copies (initial copy, resync): most bytes per second, e.g. 200MiB
    /// (DRBD's c-max-rate); 0 (the default) sets no ceiling.
    #[arg(long, value_parser = parse_size, value_name = "BYTES_PER_S")]
    #[serde(default)]
    pub c_max_rate: Option<u64>,
    /// Copies: the least rate kept while host I/O on data volumes of the
    /// copy's disk is slowed past its target latency (DRBD's c-min-rate);
    /// heartbeat I/O never slows a copy; default 4MiB; 0: host I/O does not slow a copy.
    #[arg(long, value_parser = parse_size, value_name = "BYTES_PER_S")]
    #[serde(default)]
    pub c_min_rate: Option<u64>,
}

impl PairOptions {
    /// `settings` and `integrity` with the options given put in.
    pub fn apply(&self, settings: &mut PairSettings, integrity: &mut IntegrityOptions) {
        settings.fence = self.fence.unwrap_or(settings.fence);
        settings.skew = self.skew.unwrap_or(settings.skew);
        settings.auto_resync = self.auto_resync.unwrap_or(settings.auto_resync);
        settings.c_max_rate = self.c_max_rate.unwrap_or(settings.c_max_rate);
        settings.c_min_rate = self.c_min_rate.unwrap_or(settings.c_min_rate);
        integrity.checksum_resync = self.checksum_resync.unwrap_or(integrity.checksum_resync);
        integrity.split_brain = self.split_brain.unwrap_or(integrity.split_brain);
    }
}

/// Change the mode, fence, skew, auto-resync or copy rates of a live pair (at either site).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct PairSet {
    /// Pair name.
    pub name: String,
    /// New remote-copy mode.
    #[arg(long, value_enum)]
    #[serde(default)]
    pub mode: Option<Mode>,
    /// The settings to change (unset: unchanged).
    #[command(flatten)]
    #[serde(flatten)]
    pub options: PairOptions,
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
/// side since the split are copied back to the old PVOL.
///
/// The old PVOL is *outdated* once its site learns of the takeover: it
/// refuses host writes (EROFS) and a plain resync there, as its data would
/// overwrite the site that took over. Resolve it with `--reverse` at the site
/// that took over, or `--discard-local` at the outdated PVOL's site (the same
/// result: the other site's data is kept and copied here), or
/// `--discard-remote` there to keep the old PVOL's data instead.
///
/// After a split brain (both sites wrote since their common generation, see
/// `pair status`), a plain resync is refused unless the pair was split by a
/// person: choose with --discard-local (the other site's data wins) or
/// --discard-remote (this site's data wins), at either site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct PairResync {
    /// Pair name.
    pub name: String,
    /// Swap the roles (run at the site that took over, SSWS).
    #[arg(long)]
    #[serde(default)]
    pub reverse: bool,
    /// After a split brain (or unrelated data), or at an outdated PVOL:
    /// discard this site's changes since the common generation; the other
    /// site's data wins and is copied here (roles swap if needed). Clears
    /// the outdated mark.
    #[arg(long, conflicts_with_all = ["reverse", "discard_remote"])]
    #[serde(default)]
    pub discard_local: bool,
    /// After a split brain (or unrelated data), or at an outdated PVOL:
    /// discard the other site's changes; this site's data wins and is copied
    /// there (roles swap if needed). Clears the outdated mark.
    #[arg(long, conflicts_with = "reverse")]
    #[serde(default)]
    pub discard_remote: bool,
}

/// At the PVOL's site: compare the two copies of a PAIR pair block by block
/// (XXH3-128 digests) while host writes go on; blocks that differ are marked
/// dirty and reported (`pair status`: `verify`), and `pair resync` copies them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct PairVerify {
    /// Pair name.
    pub name: String,
    /// Most bytes compared per second (of each copy), e.g. 64MiB (the default).
    #[arg(long, value_parser = parse_size)]
    #[serde(default)]
    pub rate: Option<u64>,
}

/// At the SVOL's site: make the SVOL writable (SSWS) and track its changes,
/// also when the PVOL's site is unreachable (failover of a data pair).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct PairTakeover {
    /// Pair name.
    pub name: String,
}

/// At the PVOL's site: mark the pair outdated, as its SVOL was (or is about
/// to be) taken over at the other site: host writes to the PVOL are refused
/// with EROFS from now on, also across restarts, until a person resolves the
/// pair (`pair resync NAME --discard-local` here, `pair resync NAME
/// --reverse` at the other site, or `--discard-remote` here to keep this
/// site's data). hbd sends this for its `take_over` pairs when it steps down;
/// mirrord does it by itself when it learns of a takeover from the peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, clap::Args)]
pub struct PairOutdate {
    /// Pair name.
    pub name: String,
    /// Why, as `pair status` shows it (e.g. which host stepped down).
    #[arg(long, default_value = "")]
    #[serde(default)]
    pub reason: String,
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
    /// The remote link to each peer.
    Links(Vec<LinkInfo>),
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
            options: PairOptions {
                skew: Some(crate::vocab::DEFAULT_SKEW),
                checksum_resync: Some(true),
                ..PairOptions::default()
            },
        });
        let text = serde_json::to_string(&req).expect("serialize");
        assert!(
            text.starts_with(r#"{"op":"pair_create","name":"hb0""#),
            "{text}"
        );
        // The options are keys of the request itself, as scripts write them.
        assert!(
            text.contains(r#","checksum_resync":true,"#) && !text.contains("options"),
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
