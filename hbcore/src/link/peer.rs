//! What one site asks of its peer on the link ([`PeerRequest`]), the answer
//! ([`PeerReply`]) or refusal ([`PeerError`]), and the pair identities and
//! generations they carry. Plain data: made and read on whichever task
//! sends or answers a request.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::control::IntegrityOptions;
use crate::vocab::{Kind, PairSettings, PairState};

/// What one site asks of its peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Attach (or re-attach) an SVOL here for a pair whose PVOL is at the sender.
    Attach(Attach),
    /// Apply a write to the SVOL of `pair`.
    Write {
        /// Pair name.
        pair: String,
        /// Byte offset.
        offset: u64,
        /// The bytes (postcard's byte string, as `serde_bytes` wrote it):
        /// shared, so the decoder hands out a slice of the frame and a
        /// sender a pooled buffer, neither copied.
        data: Bytes,
    },
    /// The pair's state or settings changed at the sender; follow.
    Update {
        /// Pair name.
        pair: String,
        /// New state (entering COPY as SVOL clears its bitmap: the PVOL merged it).
        state: Option<PairState>,
        /// New settings.
        settings: Option<PairSettings>,
    },
    /// Send me your dirty bitmap (before a resync merges it).
    TakeBitmap {
        /// Pair name.
        pair: String,
    },
    /// SVOL site to PVOL site: split the pair (drain what is pending, then PSUS).
    Split {
        /// Pair name.
        pair: String,
    },
    /// SVOL site to PVOL site: resync from the PVOL.
    Resync {
        /// Pair name.
        pair: String,
    },
    /// SVOL site to PVOL site: the SVOL was taken over (SSWS).
    Takeover {
        /// Pair name.
        pair: String,
    },
    /// Taken-over site to old PVOL site: become the SVOL; answer with your bitmap.
    Reverse {
        /// Pair name.
        pair: String,
    },
    /// Dissolve the pair (the volumes stay).
    Detach {
        /// Pair name.
        pair: String,
    },
    // Variants below were added after version 2 shipped: appended, so the
    // encodings above keep their indices and version 2 peers still agree.
    /// Compare generations (at every (re)connect and resync): here are
    /// mine; answer with yours ([`PeerReply::Generations`]).
    Generations {
        /// Pair name.
        pair: String,
        /// The sender's generations of the pair.
        generations: Generations,
        /// Blocks the sender's dirty bitmap holds.
        dirty_blocks: u64,
    },
    /// PVOL site to SVOL site: the copy is complete; the SVOL's data is of
    /// this generation now, shared by both sites.
    Join {
        /// Pair name.
        pair: String,
        /// The PVOL's current generation.
        generation: u64,
    },
    /// Digests of `count` blocks of 4 KiB from block `first` of the
    /// receiver's volume of the pair ([`PeerReply::Digests`]).
    Digests {
        /// Pair name.
        pair: String,
        /// First block.
        first: u64,
        /// Number of blocks (at most [`MAX_DIGEST_BLOCKS`]).
        count: u32,
    },
    /// The pair's integrity options changed at the sender; follow.
    Options {
        /// Pair name.
        pair: String,
        /// The new options.
        options: IntegrityOptions,
    },
    /// A person chose the receiver's data (`pair resync --discard-local` at
    /// the sender): resync from the receiver's side, which becomes the PVOL
    /// if it is not.
    KeepYours {
        /// Pair name.
        pair: String,
    },
}

/// Most blocks one [`PeerRequest::Digests`] asks for (1 MiB of volume).
pub const MAX_DIGEST_BLOCKS: u32 = 256;

/// A pair's generation identifiers at one site, in the spirit of DRBD's
/// UUIDs (mirrord's `generation` module says how they change and compares two).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generations {
    /// The generation of the data this site holds; `None` while it is the
    /// target of a copy not yet complete (no consistent data of its own).
    pub current: Option<u64>,
    /// The generation both sites last shared, from which this site's dirty
    /// bitmap counts its own changes; `None` while it wrote nothing on its own.
    pub bitmap: Option<u64>,
    /// Older generations, newest first.
    pub history: Vec<u64>,
}

/// The identity of a pair, as the PVOL's site asks the peer to attach it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attach {
    /// Pair name.
    pub pair: String,
    /// PVOL name at the sender.
    pub pvol: String,
    /// SVOL name at the receiver.
    pub svol: String,
    /// PVOL size; the SVOL must have exactly this size.
    pub size: u64,
    /// Heartbeat or data.
    pub kind: Kind,
    /// Mode and the other settings.
    pub settings: PairSettings,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerReply {
    /// Done.
    Done,
    /// The SVOL is attached; the state it had before this request.
    Attached {
        /// SVOL-side state before the attach (`SMPL` if it was new).
        previous: PairState,
    },
    /// A dirty bitmap.
    Bitmap {
        /// One bit per 4 KiB block.
        #[serde(with = "serde_bytes")]
        bits: Vec<u8>,
    },
    // Appended after version 2 (see `PeerRequest`).
    /// The answer to [`PeerRequest::Generations`].
    Generations {
        /// The receiver's generations of the pair.
        generations: Generations,
        /// Blocks its dirty bitmap holds (its changes the other side lacks).
        dirty_blocks: u64,
        /// The pair's state at the receiver.
        state: PairState,
    },
    /// The answer to [`PeerRequest::Digests`]: XXH3-128 of each block, in order.
    Digests {
        /// One digest per block.
        digests: Vec<u128>,
    },
}

/// Why the peer refused or failed a request: a kind the asking side can
/// match, with the detail for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PeerError {
    /// The peer has no such pair (or it belongs to another site).
    #[error("site has no pair '{pair}' for this peer")]
    NoSuchPair {
        /// Pair name.
        pair: String,
    },
    /// The pair is in a state that does not allow the request.
    #[error("pair '{pair}' is {state} there: {detail}")]
    WrongState {
        /// Pair name.
        pair: String,
        /// Its state at the peer.
        state: PairState,
        /// What was asked and what to do.
        detail: String,
    },
    /// The peer's volume failed to read or write.
    #[error("disk error at the peer: {detail}")]
    Disk {
        /// The volume, offset and OS error.
        detail: String,
    },
    /// Refused for another reason (a name clash, a size mismatch, a protection).
    #[error("{detail}")]
    Refused {
        /// Why, and the way out.
        detail: String,
    },
}
