//! What mirrord answers about its volumes, pairs and links, as `volume
//! list`, `pair status` and `link status` show them (text and JSON): a
//! pair's state, generations and verdict, the progress of its verification
//! and of its copy; each peer's lanes and network paths.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::SplitBrainPolicy;
use crate::vocab::{Backing, Fence, Kind, Mode, PairState, Role};

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
    /// Frames the link on this pair's lane refused since mirrord started,
    /// by reason (`open_failed`, `replayed`, `skipped`, `truncated`, ...):
    /// each ended its session.
    #[serde(default)]
    pub link_frames_rejected: std::collections::BTreeMap<String, u64>,
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
    /// Seconds until the running copy ends at its rate of the last 10 s
    /// (none when no copy runs, or before its first second).
    #[serde(default)]
    pub eta_s: Option<u64>,
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

/// The remote link to one peer, as `link status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkInfo {
    /// The peer's site.
    pub peer: String,
    /// Whether frames are sealed (`[link] seal`).
    pub sealed: bool,
    /// Its two lanes.
    pub lanes: Vec<LaneInfo>,
    /// Its network paths, in configuration order.
    pub paths: Vec<PathInfo>,
}

/// One lane of a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LaneInfo {
    /// `bulk` or `heartbeat`.
    pub lane: String,
    /// Whether a session is open.
    pub up: bool,
    /// Whether a lost session's requests are held for the next one.
    pub resuming: bool,
    /// The path its session runs over.
    pub path: Option<String>,
    /// Round trip of the last answered ping, in microseconds.
    pub rtt_us: Option<u64>,
    /// Sessions opened since mirrord started.
    pub sessions: u64,
    /// Sessions that took over a lost one's requests (a path change).
    pub sessions_resumed: u64,
    /// The peer's requests that arrived again and were answered without
    /// being applied again.
    pub requests_repeated: u64,
    /// Frames refused, by reason; each ended its session.
    pub frames_rejected: std::collections::BTreeMap<String, u64>,
}

/// One network path to a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathInfo {
    /// Its name.
    pub name: String,
    /// This site's address on it, if configured.
    pub local: Option<String>,
    /// The peer's link address on it.
    pub remote: String,
    /// `up` (a lane runs over it), `down` (its last attempt or session
    /// failed) or `standby` (usable, unused).
    pub state: String,
    /// Since when (milliseconds since the Unix epoch).
    pub since: u64,
    /// Last round trip measured over it, in microseconds.
    pub rtt_us: Option<u64>,
    /// Bytes sent over it since mirrord started.
    pub bytes_sent: u64,
    /// Bytes received over it since mirrord started.
    pub bytes_received: u64,
    /// Lanes running over it now.
    pub lanes: Vec<String>,
}
