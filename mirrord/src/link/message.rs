//! What travels on the remote link, inside frames.

use hbmirror::control::{Kind, PairSettings, PairState};
use serde::{Deserialize, Serialize};

/// Length of handshake nonces.
pub const NONCE_LEN: usize = 32;

/// One message of the link protocol (version [`super::frame::VERSION`]).
///
/// The handshake is `Hello` → `Challenge` → `Proof` → `Welcome` (or
/// `Refused` at any step); then both sides send `Request`s, `Response`s and
/// `Ping`s in any order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Dialer: who I am, whom I expect, and a fresh nonce.
    Hello {
        /// Dialer's site.
        site: String,
        /// Site the dialer expects to reach.
        to: String,
        /// Dialer's nonce.
        nonce: [u8; NONCE_LEN],
    },
    /// Listener: my nonce, and proof that I hold the key.
    Challenge {
        /// Listener's site.
        site: String,
        /// Listener's nonce.
        nonce: [u8; NONCE_LEN],
        /// HMAC-SHA256 proof of the listener.
        proof: Vec<u8>,
    },
    /// Dialer: proof that I hold the key.
    Proof {
        /// HMAC-SHA256 proof of the dialer.
        proof: Vec<u8>,
    },
    /// Listener: authenticated; the session is open.
    Welcome,
    /// Either side: the connection is refused, and why.
    Refused {
        /// The reason, for the other side's log.
        reason: String,
    },
    /// Keeps a quiet link observably alive.
    Ping,
    /// A request that expects one `Response` with the same id.
    Request {
        /// Chosen by the sender, unique per session.
        id: u64,
        /// What is asked.
        body: PeerRequest,
    },
    /// The answer to the `Request` with this id.
    Response {
        /// The request's id.
        id: u64,
        /// The answer, or why it was refused.
        result: Result<PeerReply, String>,
    },
}

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
        /// The bytes.
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
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
}
