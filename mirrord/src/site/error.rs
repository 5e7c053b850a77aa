//! Why a site operation was refused or failed: [`SiteError`], whose text names
//! the thing and the way out (its cause, if any, is its `source`), and what
//! the peer is told of it ([`PeerError`], a kind the asking site can match).

use std::path::PathBuf;

use hbcore::link::PeerError;
use hbcore::report::chain;
use hbcore::vocab::{Kind, PairState};

use crate::bitmap::BitmapError;
use crate::link::LinkError;
use crate::meta::MetaError;
use crate::volume::VolumeError;

/// A refused or failed site operation; the text names the thing and the way out.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// A name that cannot be used.
    #[error("{0}")]
    BadName(String),
    /// A request that does not fit the pair's state or role.
    #[error("{0}")]
    Refused(String),
    /// No such volume.
    #[error("no volume '{0}' at this site; `hbctl volume list` shows the volumes")]
    NoVolume(String),
    /// The volume exists.
    #[error("volume '{0}' exists already; choose another name")]
    VolumeExists(String),
    /// Another volume uses that backing store.
    #[error("{path} already backs volume '{volume}'; a backing store holds one volume")]
    PathInUse {
        /// Path.
        path: PathBuf,
        /// Its volume.
        volume: String,
    },
    /// A file volume needs a size.
    #[error("volume '{0}': give --size to create a file (or --path of an existing block device)")]
    SizeNeeded(String),
    /// The size asked for does not match the block device.
    #[error("volume '{name}': {path} is a block device of {actual} bytes, not {asked}; leave out --size to take the device's size")]
    DeviceSize {
        /// Volume.
        name: String,
        /// Device.
        path: PathBuf,
        /// Size asked.
        asked: u64,
        /// Device size.
        actual: u64,
    },
    /// An existing regular file would be clobbered.
    #[error("volume '{name}': {path} exists; mirrord creates volume files itself (choose a new --path) or uses block devices as they are")]
    FileExists {
        /// Volume.
        name: String,
        /// Path.
        path: PathBuf,
    },
    /// The volume belongs to a pair.
    #[error("volume '{volume}' belongs to {kind} pair '{pair}'; {hint}")]
    Paired {
        /// Volume.
        volume: String,
        /// Pair.
        pair: String,
        /// Kind of that pair.
        kind: Kind,
        /// The way out.
        hint: String,
    },
    /// No such pair.
    #[error("no pair '{0}' at this site; `hbctl pair status` shows the pairs")]
    NoPair(String),
    /// The pair exists.
    #[error("pair '{0}' exists already; choose another name")]
    PairExists(String),
    /// A state change the transition table does not allow.
    #[error("pair '{pair}' is {from} and cannot go to {to}; `hbctl pair status {pair}` shows it")]
    IllegalTransition {
        /// Pair.
        pair: String,
        /// Its state.
        from: PairState,
        /// The state asked for.
        to: PairState,
    },
    /// The volume is read-only to hosts.
    #[error("volume '{volume}' is the SVOL of pair '{pair}' and read-only at this site")]
    ReadOnly {
        /// Volume.
        volume: String,
        /// Pair.
        pair: String,
    },
    /// A fenced write that could not reach the SVOL.
    #[error("pair '{pair}' is fenced (fence=data) and the SVOL cannot be reached; the write was refused and the PVOL left untouched")]
    Fenced {
        /// Pair.
        pair: String,
        /// Why the SVOL could not take it.
        source: LinkError,
    },
    /// A fenced write while the pair is suspended.
    #[error("pair '{0}' is fenced (fence=data) and suspended (PSUE); the write was refused and the PVOL left untouched until `hbctl pair resync {0}`")]
    FencedSuspended(String),
    /// A PVOL whose SVOL was taken over ([`crate::fence`]).
    #[error("pair '{pair}' is outdated: {reason}; host writes are refused until a person resolves it: `hbctl pair resync {pair} --discard-local` here keeps the other site's data (or `hbctl pair resync {pair} --reverse` there), `--discard-remote` here keeps this site's")]
    Outdated {
        /// Pair.
        pair: String,
        /// Who took it over, and when this site learned it.
        reason: String,
    },
    /// A heartbeat pair installed for heartbeats.
    #[error("pair '{0}' carries heartbeats (installed for heartbeats): splitting or deleting it would freeze the heartbeat and look like a dead site; de-install it first (`hbctl pair uninstall {0}`; hbd does this with `hbctl hb mirror uninstall`), or add --force")]
    Protected(String),
    /// The peer could not be told.
    #[error("pair '{pair}' is kept, as its peer cannot be told (retry when the link is up, or add --force to dissolve only this site's half)")]
    PeerUnreachable {
        /// Pair.
        pair: String,
        /// Why.
        source: LinkError,
    },
    /// The generations forbid the resync asked for without an explicit choice.
    #[error("pair '{pair}' was not resynced: {detail}")]
    Diverged {
        /// Pair.
        pair: String,
        /// The verdict and the way out.
        detail: String,
    },
    /// The peer holds a pair of that name with data of no common generation.
    #[error("pair '{pair}' was not created: site '{peer}' already has a pair '{pair}' whose data shares no generation with this new pair (generation {theirs}; it was deleted here and kept there, or created there anew). Nothing was changed. To pair anew and overwrite that copy, dissolve its half at site '{peer}' first (`hbctl pair delete {pair} --force` there; its volume's data stays), then create the pair again")]
    PeerHasOther {
        /// Pair.
        pair: String,
        /// The peer.
        peer: String,
        /// The peer's current generation, in hex.
        theirs: String,
    },
    /// mirrord's data directory could not be used.
    #[error("cannot use {path} under data_dir")]
    DataDir {
        /// Directory.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// A volume operation failed.
    #[error(transparent)]
    Volume(#[from] VolumeError),
    /// The dirty bitmap could not be persisted.
    #[error(transparent)]
    Bitmap(#[from] BitmapError),
    /// The peer refused or could not be reached.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// Metadata could not be saved.
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// A refusal, in words that name the thing and the way out.
pub(super) fn refused(text: String) -> SiteError {
    SiteError::Refused(text)
}

/// The refusal for a volume that already belongs to a pair.
pub(super) fn paired_error(volume: &str, pair: &str, has: Kind, wanted: Kind) -> SiteError {
    let hint = match (has, wanted) {
        (Kind::Data, Kind::Heartbeat) => "a heartbeat pair needs a volume of its own: heartbeat volumes carry only heartbeats, never production data".to_string(),
        (Kind::Heartbeat, Kind::Data) => "a volume that carries heartbeats cannot carry production data; give the data pair another volume".to_string(),
        _ => format!("dissolve it first with `hbctl pair delete {pair}`"),
    };
    SiteError::Paired {
        volume: volume.into(),
        pair: pair.into(),
        kind: has,
        hint,
    }
}

/// What the peer is told when a request it sent failed here.
impl From<SiteError> for PeerError {
    fn from(e: SiteError) -> PeerError {
        match e {
            SiteError::NoPair(pair) => PeerError::NoSuchPair { pair },
            SiteError::IllegalTransition { pair, from, to } => PeerError::WrongState {
                pair,
                state: from,
                detail: format!("it cannot go to {to}"),
            },
            SiteError::Volume(_) | SiteError::Bitmap(_) | SiteError::Meta(_) => {
                PeerError::Disk { detail: chain(&e) }
            }
            other => PeerError::Refused {
                detail: chain(&other),
            },
        }
    }
}
