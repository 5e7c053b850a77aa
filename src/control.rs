//! The control API of mirrord: one JSON request per line on a Unix socket,
//! one JSON response per line back. `hbctl` is its client; scripts may speak
//! it directly (`socat - UNIX-CONNECT:/run/hbmirror/mirrord.sock`). hbd's
//! API (`hb::api`) travels the same way through [`call_as`].

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where mirrord listens and hbctl connects unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/hbmirror/mirrord.sock";

/// Role of a volume in a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Primary: written by hosts, copied to the peer.
    Pvol,
    /// Secondary: receives the copies, read-only to hosts.
    Svol,
}

/// Pair states, with the names storage administrators know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PairState {
    /// No pair.
    #[serde(rename = "SMPL")]
    Smpl,
    /// Initial copy or resync under way.
    #[serde(rename = "COPY")]
    Copy,
    /// In sync: every host write reaches both volumes.
    #[serde(rename = "PAIR")]
    Pair,
    /// Split by a person; changes tracked.
    #[serde(rename = "PSUS")]
    Psus,
    /// Suspended by an error (link or peer lost); changes tracked.
    #[serde(rename = "PSUE")]
    Psue,
    /// The SVOL side took over and is writable.
    #[serde(rename = "SSWS")]
    Ssws,
}

/// Remote-copy mode of a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A host write returns once the PVOL holds it and the peer acknowledged the SVOL holds it.
    Sync,
    /// A host write returns after the PVOL write; its transfer starts at once, and the
    /// next write to the pair waits until it is acknowledged (at most one unacknowledged).
    SemiSync,
    /// A host write returns after the PVOL write; pending data ships when the link can
    /// take it, bounded in memory by the skew (beyond it, blocks are tracked and read back).
    Adaptive,
}

/// What a synchronous pair does with a write that cannot reach the SVOL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Fence {
    /// The write succeeds on the PVOL, the pair suspends (PSUE) and tracks it.
    Never,
    /// The write fails with EIO and the PVOL is left untouched: the copies never diverge.
    Data,
}

/// The adjustable settings of a pair, the same at both sites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairSettings {
    /// Remote-copy mode.
    pub mode: Mode,
    /// Fence level (sync mode).
    pub fence: Fence,
    /// Adaptive mode: most bytes of pending writes held in memory.
    pub skew: u64,
    /// Resynchronise by itself when the link returns after PSUE.
    pub auto_resync: bool,
    /// Heartbeat pairs: installed for heartbeats, hence protected from split and delete.
    pub installed: bool,
}

/// Default adaptive skew: 4 MiB.
pub const DEFAULT_SKEW: u64 = 4 << 20;

/// What a pair carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Heartbeat messages only; protected from split while installed for heartbeats.
    Heartbeat,
    /// Application data; may be split for backups.
    Data,
}

macro_rules! display_as_serde {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let v = serde_json::to_value(self).map_err(|_| fmt::Error)?;
                f.write_str(v.as_str().unwrap_or("?"))
            }
        }
    )*};
}
display_as_serde!(Role, PairState, Mode, Kind, Fence);

/// A request to mirrord.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Create a volume: a new file of `size` bytes, or an existing block device at `path`.
    VolumeCreate {
        /// Volume name (also its file name on hbfs).
        name: String,
        /// Size in bytes; ignored for block devices (their size is taken from the device).
        size: Option<u64>,
        /// Backing file or block device; default `<data_dir>/volumes/<name>.vol`.
        path: Option<PathBuf>,
    },
    /// List the volumes of this site.
    VolumeList,
    /// Forget a volume (its backing file is kept).
    VolumeDelete {
        /// Volume name.
        name: String,
    },
    /// Create a pair with a local PVOL and an SVOL at a peer site.
    PairCreate {
        /// Pair name, the same at both sites.
        name: String,
        /// Local volume to mirror.
        pvol: String,
        /// Peer site holding the SVOL.
        peer: String,
        /// SVOL name at the peer; default: the PVOL's name.
        svol: Option<String>,
        /// Heartbeat or data pair.
        kind: Kind,
        /// Remote-copy mode.
        mode: Mode,
        /// Fence level; default `never`.
        fence: Option<Fence>,
        /// Adaptive skew in bytes; default 4 MiB.
        skew: Option<u64>,
        /// Resync by itself after PSUE; default on for heartbeat pairs, off for data pairs.
        auto_resync: Option<bool>,
    },
    /// Change settings of a live pair (at either site).
    PairSet {
        /// Pair name.
        name: String,
        /// New mode.
        mode: Option<Mode>,
        /// New fence level.
        fence: Option<Fence>,
        /// New adaptive skew.
        skew: Option<u64>,
        /// New auto-resync setting.
        auto_resync: Option<bool>,
    },
    /// Status of one pair, or of all.
    PairStatus {
        /// Pair name; all pairs when absent.
        name: Option<String>,
    },
    /// Split a pair (PSUS): the SVOL becomes writable at its site, both sides track changes.
    PairSplit {
        /// Pair name.
        name: String,
        /// Split even a heartbeat pair installed for heartbeats.
        force: bool,
    },
    /// Copy the blocks dirty on either side from the PVOL (COPY → PAIR); with
    /// `reverse`, at the site that took over, make it the PVOL first.
    PairResync {
        /// Pair name.
        name: String,
        /// Swap the roles: the SVOL site (SSWS) becomes the PVOL site.
        reverse: bool,
    },
    /// At the SVOL's site: make the SVOL writable (SSWS), tracking its changes.
    PairTakeover {
        /// Pair name.
        name: String,
    },
    /// Mark a heartbeat pair installed for heartbeats (protected) or not.
    PairInstall {
        /// Pair name.
        name: String,
        /// Installed or de-installed.
        installed: bool,
    },
    /// Dissolve a pair at both sites.
    PairDelete {
        /// Pair name.
        name: String,
        /// Dissolve locally even when the peer cannot be told, and even an installed heartbeat pair.
        force: bool,
    },
}

/// How a volume is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backing {
    /// A regular file.
    File,
    /// A block device.
    Block,
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

/// A daemon's answer to one request (mirrord's replies by default; hbd has its own).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response<R = Reply> {
    /// The request succeeded.
    Ok(R),
    /// The request was refused or failed; the text names the thing and the way out.
    Error(String),
}

/// Why a control call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot reach the daemon at {path}: {source}; is it running? (give the socket with --socket or HBCTL_SOCKET)")]
    Connect {
        /// Socket path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The conversation broke off.
    #[error("control socket {path}: {source}")]
    Io {
        /// Socket path.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// The daemon answered something unreadable.
    #[error("unreadable answer from {path}: {source}")]
    Protocol {
        /// Socket path.
        path: PathBuf,
        /// Parse error.
        source: serde_json::Error,
    },
    /// mirrord refused the request.
    #[error("{0}")]
    Refused(String),
}

/// Binds a daemon's control socket (mode 0600), replacing a stale socket
/// file but refusing one a running daemon still answers on.
pub fn bind_socket(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "{} is in use by a running daemon; stop it or choose another control_socket",
                    path.display()
                ),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answers one client of a daemon's control socket: a JSON request per line,
/// a JSON [`Response`] per line, until the client hangs up. `what` names the
/// request type in the error for a malformed line.
pub async fn serve_client<Q, R, F, Fut>(stream: tokio::net::UnixStream, what: &str, mut answer: F)
where
    Q: serde::de::DeserializeOwned,
    R: Serialize,
    F: FnMut(Q) -> Fut,
    Fut: std::future::Future<Output = Result<R, String>>,
{
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let (read, mut write) = stream.into_split();
    let mut lines = tokio::io::BufReader::new(read).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let response = match serde_json::from_str::<Q>(&line) {
            Ok(request) => match answer(request).await {
                Ok(reply) => Response::Ok(reply),
                Err(e) => Response::Error(e),
            },
            Err(e) => Response::Error(format!(
                "malformed control request: {e}; see {what} for the format"
            )),
        };
        let Ok(mut text) = serde_json::to_string(&response) else {
            return;
        };
        text.push('\n');
        if write.write_all(text.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Sends one request to mirrord at `socket` and waits for its answer.
pub fn call(socket: &Path, request: &Request) -> Result<Reply, ClientError> {
    call_as(socket, request)
}

/// Sends one request to the daemon at `socket` (mirrord or hbd) and waits for its answer.
pub fn call_as<Q: Serialize, R: serde::de::DeserializeOwned>(
    socket: &Path,
    request: &Q,
) -> Result<R, ClientError> {
    let io = |source| ClientError::Io {
        path: socket.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(|source| ClientError::Connect {
        path: socket.to_path_buf(),
        source,
    })?;
    let mut line = serde_json::to_string(request).map_err(|source| ClientError::Protocol {
        path: socket.to_path_buf(),
        source,
    })?;
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
    if answer.is_empty() {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "mirrord closed the connection without answering",
        )));
    }
    match serde_json::from_str::<Response<R>>(&answer).map_err(|source| ClientError::Protocol {
        path: socket.to_path_buf(),
        source,
    })? {
        Response::Ok(reply) => Ok(reply),
        Response::Error(message) => Err(ClientError::Refused(message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_json() {
        let req = Request::PairCreate {
            name: "hb0".into(),
            pvol: "hb0".into(),
            peer: "standby".into(),
            svol: None,
            kind: Kind::Heartbeat,
            mode: Mode::SemiSync,
            fence: None,
            skew: Some(DEFAULT_SKEW),
            auto_resync: None,
        };
        let text = serde_json::to_string(&req).expect("serialize");
        assert!(text.contains(r#""op":"pair_create""#), "{text}");
        assert_eq!(serde_json::from_str::<Request>(&text).expect("parse"), req);
    }

    #[test]
    fn states_use_the_storage_names() {
        assert_eq!(PairState::Psue.to_string(), "PSUE");
        assert_eq!(Role::Svol.to_string(), "svol");
        assert_eq!(Mode::SemiSync.to_string(), "semi-sync");
        assert_eq!(Fence::Data.to_string(), "data");
    }
}
