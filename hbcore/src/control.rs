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
use crate::vocab::{Backing, Fence, Kind, Mode, PairSettings, PairState, Role};

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
    /// At a PVOL: its SVOL was taken over, so host writes are refused (EROFS)
    /// until a person resolves the pair.
    #[serde(default)]
    pub outdated: bool,
    /// Why, when `outdated`: `taken over by site 'standby' at …`.
    #[serde(default)]
    pub outdated_reason: Option<String>,
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
    /// Copy ceiling in bytes per second (0: none).
    #[serde(default)]
    pub c_max_rate: u64,
    /// Least copy rate under competing host I/O, in bytes per second (0: host I/O does not slow a copy).
    #[serde(default)]
    pub c_min_rate: u64,
    /// Resyncs by itself after PSUE.
    pub auto_resync: bool,
    /// Installed for heartbeats (protected from split and delete).
    pub installed: bool,
    /// Whether the remote link to the peer is up.
    pub link_up: bool,
    /// Round-trip time of the link's last answered ping, in microseconds.
    #[serde(default)]
    pub link_rtt_us: Option<u64>,
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
    /// Resyncs compare digests first and send only blocks that differ.
    #[serde(default)]
    pub checksum_resync: bool,
    /// What a split brain found as the link returns does.
    #[serde(default)]
    pub split_brain: SplitBrainPolicy,
    /// This site's generation identifiers of the pair.
    #[serde(default)]
    pub generation: GenerationInfo,
    /// The last comparison of both sites' generations (none yet: `null`).
    #[serde(default)]
    pub verdict: Option<VerdictInfo>,
    /// The running or last online verify.
    #[serde(default)]
    pub verify: VerifyProgress,
}

/// A site's generation identifiers of a pair, as 16 hex digits each.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenerationInfo {
    /// The generation of the data here; `null` while a copy to this site is incomplete.
    pub current: Option<String>,
    /// The generation last shared with the other site, from which this site's
    /// changes are tracked; `null` while it wrote nothing on its own.
    pub bitmap: Option<String>,
    /// Older generations, newest first.
    pub history: Vec<String>,
}

/// What the comparison of both sites' generations says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictKind {
    /// Neither site wrote on its own since they last shared a generation.
    InSync,
    /// One site (`ahead`) holds changes the other lacks; a resync copies from it.
    Ahead,
    /// Both sites wrote since their common generation: a person chooses.
    SplitBrain,
    /// No generation in common: the copies are different data; refused to pair.
    Unrelated,
}

/// The last comparison of both sites' generations of a pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictInfo {
    /// The verdict.
    pub kind: VerdictKind,
    /// The site whose data a resync copies (`ahead`), if the generations say.
    pub ahead: Option<String>,
    /// The resync must copy the whole volume: the bitmaps do not cover the difference.
    pub full_copy: bool,
    /// The generation both sites last shared, if they have one.
    pub common: Option<String>,
    /// Blocks changed at this site since then (its dirty bitmap).
    pub local_changed_blocks: u64,
    /// Blocks changed at the other site since then.
    pub peer_changed_blocks: u64,
    /// The verdict in words, with the way out.
    pub detail: String,
}

/// Progress and result of an online verify.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerifyProgress {
    /// Whether a verify runs now.
    pub running: bool,
    /// Blocks compared so far.
    pub checked_blocks: u64,
    /// Blocks of the volume.
    pub total_blocks: u64,
    /// Blocks found different (marked dirty: `pair resync` copies them).
    pub differing_blocks: u64,
    /// Byte offsets of the first blocks found different.
    pub first_differing_offsets: Vec<u64>,
    /// Blocks skipped because they were being written (dirty) at the time.
    pub skipped_dirty_blocks: u64,
    /// checked / total, in percent.
    pub percent: f64,
    /// Average rate since the verify started, bytes per second.
    pub rate_bytes_per_s: f64,
    /// Why it stopped early, if it did.
    pub stopped: Option<String>,
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
    /// Average rate of the copy from its start to its end (to now while it
    /// runs), bytes per second.
    pub rate_bytes_per_s: f64,
    /// Checksum resync: dirty blocks not sent because the other copy held the same data.
    #[serde(default)]
    pub skipped_identical_blocks: u64,
    /// The rate controller's limit now, bytes per second (0: none): the
    /// ceiling, or lower (down to the floor) while competing host I/O is slowed.
    #[serde(default)]
    pub limit_bytes_per_s: u64,
    /// Whether host I/O at this site holds the copy back now (exactly when
    /// `held_by` is `host-io`; kept for the scripts that read it).
    #[serde(default)]
    pub held_by_host_io: bool,
    /// What holds the copy back now.
    #[serde(default)]
    pub held_by: HeldBy,
}

/// What holds a running copy back (`pair status`: `copy.held_by`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeldBy {
    /// Nothing (no copy runs, or none measured yet).
    #[default]
    None,
    /// Host I/O on data volumes of the copy's disk, slowed past its target
    /// latency: the rate controller holds the copy below its ceiling.
    HostIo,
    /// The pair's ceiling, `c_max_rate`.
    CMaxRate,
    /// The link: frames wait for the peer's acknowledgements (the network,
    /// or the SVOL's disk behind it).
    Link,
    /// This site's disk: the copy waits for its reads of the PVOL.
    Disk,
}

impl std::fmt::Display for HeldBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HeldBy::None => "none",
            HeldBy::HostIo => "host-io",
            HeldBy::CMaxRate => "c-max-rate",
            HeldBy::Link => "link",
            HeldBy::Disk => "disk",
        })
    }
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
