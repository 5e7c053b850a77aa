//! What travels on the remote link between two mirrords: [`Message`]s,
//! each a postcard payload in an `HBLK` frame ([`crate::frame`]), through
//! [`LinkCodec`].
//!
//! - this file: the frame format, [`Message`] and the [`Lane`]s;
//! - `peer`: the requests, answers and refusals between sites;
//! - `codec`: [`LinkCodec`] and its errors ([`LinkError`]);
//! - `zero_copy`: a write's data decoded in place, and split frames checked;
//! - [`seal`]: sealed frames (AES-256-GCM) after the handshake, and their key schedule;
//! - [`handshake`]: mutual authentication and the session's keys, for both links;
//! - [`sealed`]: a sealed session's two halves over any byte stream (the host link's).
//!
//! The host link (a host's hbfs, hbctl or hbd to its site's mirrord) speaks
//! the same frames and handshake on [`Lane::Host`], with
//! [`Message::HostCall`] and [`Message::HostAnswer`] ([`crate::host`]).

use serde::{Deserialize, Serialize};

use crate::frame::Format;
use crate::vocab::Kind;

mod codec;
pub mod handshake;
mod payload;
mod peer;
mod rejection;
pub mod seal;
pub mod sealed;
mod zero_copy;
pub use codec::{LinkCodec, LinkError, HANDSHAKE_MAX_PAYLOAD};
pub use peer::{Attach, Generations, PeerError, PeerReply, PeerRequest, MAX_DIGEST_BLOCKS};
pub use zero_copy::WriteHead;

/// The link's frames.
pub const FORMAT: Format = Format {
    magic: *b"HBLK",
    // 4: the copy rates appended to PairSettings (Attach, SetSettings).
    // 5: sealed frames after the handshake (`seal`); `seal` and
    //    `incarnation` in Hello and Challenge.
    version: 5,
    // A copy chunk of 1 MiB plus room.
    max_payload: 4 << 20,
    signed: false,
};

/// Length of handshake nonces.
pub const NONCE_LEN: usize = 32;

/// One message of the link protocol (version [`FORMAT`]`.version`).
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
        /// Which of the two connections between the sites this is.
        lane: Lane,
        /// Whether the dialer seals the session's frames (`[link] seal`).
        seal: bool,
        /// The dialer's process, drawn at its start: requests carry ids
        /// unique within one incarnation, so a request re-sent on a new
        /// session is recognised, and a restarted peer is not.
        incarnation: u64,
        /// The dialer has not declared this lane's link down since its
        /// last session: it holds that session's unanswered requests (or
        /// has none) and resumes if the listener does too.
        resume: bool,
    },
    /// Listener: my nonce, and proof that I hold the key.
    Challenge {
        /// Listener's site.
        site: String,
        /// Listener's nonce.
        nonce: [u8; NONCE_LEN],
        /// HMAC-SHA256 proof of the listener.
        proof: Vec<u8>,
        /// Whether the listener seals the session's frames.
        seal: bool,
        /// The listener's process (see `Hello`).
        incarnation: u64,
        /// The listener has not declared the link down (see `Hello`).
        resume: bool,
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
        result: Result<PeerReply, PeerError>,
    },
    /// The answer to a `Ping`, by which the sender measures the link's round trip.
    Pong,
    /// Host link: a host's request to its site's mirrord, answered by one
    /// `HostAnswer` with the same id.
    HostCall {
        /// Chosen by the host, unique per session.
        id: u64,
        /// What is asked.
        body: crate::host::HostRequest,
    },
    /// Host link: mirrord's answer to the `HostCall` with this id.
    HostAnswer {
        /// The call's id.
        id: u64,
        /// The answer, or the refusal with the errno the host's program sees.
        result: Result<crate::host::HostReply, crate::host::HostError>,
    },
}

impl Message {
    /// The message's kind by name, for log lines (`Hello`, `Request`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "Hello",
            Message::Challenge { .. } => "Challenge",
            Message::Proof { .. } => "Proof",
            Message::Welcome => "Welcome",
            Message::Refused { .. } => "Refused",
            Message::Ping => "Ping",
            Message::Request { .. } => "Request",
            Message::Response { .. } => "Response",
            Message::Pong => "Pong",
            Message::HostCall { .. } => "HostCall",
            Message::HostAnswer { .. } => "HostAnswer",
        }
    }
}

/// The two connections between a pair of sites (seed Fig 1: the heartbeat
/// mirrors' remote link 150 beside the data link 151). Every request about
/// a pair travels on its kind's lane, so a heartbeat write never waits
/// behind the copy frames of a data pair, and a pair's requests keep their
/// order on one connection.
/// (Named in lowercase in config files; postcard sends the index.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lane {
    /// Data pairs: host writes, initial copies, resyncs, adaptive shipping.
    Bulk,
    /// Heartbeat pairs only: small writes that must not wait.
    Heartbeat,
    /// Not between sites: a host's connection to its site's mirrord (the
    /// host link), on the hosts' port.
    Host,
}

impl Lane {
    /// Both lanes between sites.
    pub const ALL: [Lane; 2] = [Lane::Bulk, Lane::Heartbeat];

    /// The lane of a pair of this kind.
    pub fn of(kind: Kind) -> Lane {
        match kind {
            Kind::Heartbeat => Lane::Heartbeat,
            Kind::Data => Lane::Bulk,
        }
    }
}

impl std::fmt::Display for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Lane::Bulk => "bulk",
            Lane::Heartbeat => "heartbeat",
            Lane::Host => "host",
        })
    }
}

#[cfg(test)]
mod tests;
