//! The host link: what a host (its `hbfs` mount, `hbctl --storage`, hbd's
//! `mirrord = "tcp://…"`) asks its site's mirrord over the network, and
//! what it is answered. The frames, the handshake and the sealing are the
//! remote link's ([`crate::link`]) on [`crate::link::Lane::Host`], each
//! host authenticated by its own key; the messages are
//! [`Message::HostCall`](crate::link::Message::HostCall) and
//! [`Message::HostAnswer`](crate::link::Message::HostAnswer).
//!
//! ```text
//!  host: hbfs / hbctl / hbd                                mirrord ([hosts] listen)
//!  HostClient::call ─ HostCall{id, Write{..}} ── sealed ──> allowed? ─> Site::host_write
//!        <────────── HostAnswer{id, Ok(Done) | Err(errno, text)} <──┘
//! ```
//!
//! - this file: [`HostRequest`], [`HostReply`], [`HostError`];
//! - [`client`]: [`client::HostClient`], reconnecting, one deadline per call;
//! - [`endpoint`]: where a control client finds mirrord (socket or `tcp://`).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub mod client;
pub mod endpoint;
pub use endpoint::Endpoint;

/// What a host asks its site's mirrord.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostRequest {
    /// Claims this host's mount (one hbfs per host id at a time); answered
    /// with the volumes it may see.
    Mount,
    /// The volumes this host may see.
    List,
    /// One volume, if this host may see it.
    Stat {
        /// The volume.
        volume: String,
    },
    /// Reads up to `len` bytes at `offset` (short at the volume's end).
    Read {
        /// The volume.
        volume: String,
        /// Byte offset.
        offset: u64,
        /// Bytes wanted.
        len: u32,
    },
    /// Writes `data` at `offset`, answered once the write is where the
    /// pair's mode says (the SVOL too, for a synchronous pair).
    Write {
        /// The volume.
        volume: String,
        /// Byte offset.
        offset: u64,
        /// The bytes.
        data: Bytes,
        /// The client's id of this write, unique per client process: a
        /// write re-sent after a lost connection is applied once.
        write: u64,
    },
    /// Makes earlier writes durable (fsync).
    Sync {
        /// The volume.
        volume: String,
    },
    /// One control request, the JSON line hbctl sends to the control
    /// socket; answered with the line the socket would answer.
    Control {
        /// The request line.
        json: String,
    },
}

impl HostRequest {
    /// What is asked, for refusals and logs: `write to 'hb0'`.
    pub fn what(&self) -> String {
        match self {
            HostRequest::Mount => "a mount".into(),
            HostRequest::List => "the volume list".into(),
            HostRequest::Stat { volume } => format!("the size of '{volume}'"),
            HostRequest::Read { volume, .. } => format!("a read of '{volume}'"),
            HostRequest::Write { volume, .. } => format!("a write to '{volume}'"),
            HostRequest::Sync { volume } => format!("an fsync of '{volume}'"),
            HostRequest::Control { .. } => "a control request".into(),
        }
    }
}

/// One volume as a host sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostVolume {
    /// The volume's name (its file name in hbfs).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Whether the host may write it now (a PVOL or a simplex volume).
    pub writable: bool,
}

/// mirrord's answer to a [`HostRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HostReply {
    /// The volumes (to `Mount` and `List`).
    Volumes(Vec<HostVolume>),
    /// One volume, or none (to `Stat`).
    Volume(Option<HostVolume>),
    /// The bytes read.
    Data(Bytes),
    /// Done (a write, an fsync).
    Done,
    /// The control socket's answer line.
    Control {
        /// The answer line.
        json: String,
    },
}

/// A request refused or failed: the errno the host's program sees, and
/// the text (naming the host and what it asked) for its log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct HostError {
    /// The errno (`EROFS`, `ENOENT`, `EACCES`, `EBUSY`, `ENOSPC`, `EIO`, …).
    pub errno: i32,
    /// What happened, and the way out.
    pub message: String,
}
