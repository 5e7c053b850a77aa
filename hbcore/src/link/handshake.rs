//! Mutual authentication when a connection opens, for both links: between
//! two sites' mirrords (the remote link, on the sites' pre-shared key) and
//! between a host and its site's mirrord (the host link, [`Lane::Host`],
//! on that host's own key). HMAC-SHA256 challenge-response, then the
//! session's sealing keys ([`super::seal`]) from both fresh nonces.
//!
//! ```text
//!  dialer                                              listener
//!  Hello{site, to, nonce_d, lane, seal, inc_d} ──────>  knows `site`? is `to` me? same `seal`?
//!                         <──────  Challenge{site, nonce_l, mac("listener"), seal, inc_l}
//!  checks the listener's mac
//!  Proof{mac("dialer")}   ──────>  checks the dialer's mac
//!                         <──────  Welcome
//!  every frame after: sealed with the keys of (psk, nonce_d, nonce_l, sites, lane, direction)
//! ```
//! A host dials with `to` empty (any site: the key names the storage it
//! trusts); the listener's `admit` says whom it knows and with which key,
//! and which lane each may open.
//!
//! Each mac covers both nonces, both site names, the lane, the seal flag
//! and both incarnations, so a recorded exchange cannot be replayed and a
//! man in the middle cannot turn sealing off. Any failure sends
//! `Refused{reason}` and both sides log it.
//!
//! What an unauthenticated peer can make this side hold is bounded here: the
//! codec accepts frames of at most [`HANDSHAKE_MAX_PAYLOAD`] until the peer
//! has proved its key, and the whole exchange has one deadline (not one per
//! message, which a peer could stretch by trickling). How many handshakes run
//! at once is bounded by the caller (mirrord's `link::admission`).
//!
//! Runs on the task of the connection being opened (a dial or accept task).

use std::time::Duration;

use super::seal::{self, Opener, Role, Sealer};
use super::{Lane, LinkCodec, LinkError, Message, HANDSHAKE_MAX_PAYLOAD, NONCE_LEN};
use crate::auth;
use crate::frame::FrameError;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// An authenticated connection.
pub type Conn = Framed<TcpStream, LinkCodec>;

/// What this side brings to a handshake.
#[derive(Debug, Clone, Copy)]
pub struct Credentials<'a> {
    /// The sites' pre-shared key.
    pub key: &'a [u8],
    /// Whether this side seals frames (`[link] seal`); both sides must agree.
    pub seal: bool,
    /// This process, drawn at its start (see [`Message::Hello`]).
    pub incarnation: u64,
}

/// Whom the listener admits: for the dialer's name and the lane it opens,
/// the key it must prove, or why it is refused.
pub type Admit<'a> = &'a (dyn Fn(&str, Lane) -> Result<Vec<u8>, Refusal> + Sync);

/// What the listening side brings to a handshake.
#[derive(Clone, Copy)]
pub struct Listening<'a> {
    /// Whom it admits, with which key.
    pub admit: Admit<'a>,
    /// Whether this side seals frames; both sides must agree.
    pub seal: bool,
    /// This process, drawn at its start.
    pub incarnation: u64,
    /// Whether it resumes a dialer's lost session.
    pub resuming: Resuming<'a>,
}

impl std::fmt::Debug for Listening<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listening")
            .field("seal", &self.seal)
            .field("incarnation", &self.incarnation)
            .finish_non_exhaustive()
    }
}

/// The admission of a site's link: `peers` on `key`, on the two site lanes.
pub fn admit_sites<'a>(
    own: &'a str,
    peers: &'a [String],
    key: &'a [u8],
) -> impl Fn(&str, Lane) -> Result<Vec<u8>, Refusal> + Sync + 'a {
    move |site, lane| {
        if lane == Lane::Host {
            return Err(Refusal::WrongPort {
                who: site.into(),
                own: own.into(),
            });
        }
        if !peers.iter().any(|p| p == site) {
            return Err(Refusal::UnknownPeer {
                site: site.into(),
                own: own.into(),
            });
        }
        Ok(key.to_vec())
    }
}

/// Whether this side would resume the session of `site` on `lane` whose
/// process is `incarnation` (see [`Message::Hello`]'s `resume`): asked by
/// the listener once it knows who dials.
pub type Resuming<'a> = &'a (dyn Fn(&str, Lane, u64) -> bool + Sync);

/// A connection admitted by the handshake.
pub struct Admitted<S> {
    /// The connection, its codec lifted to the full frame size.
    pub conn: Framed<S, LinkCodec>,
    /// The other side's site.
    pub site: String,
    /// The lane the session carries.
    pub lane: Lane,
    /// The other side's incarnation.
    pub incarnation: u64,
    /// The session's sealing keys: this side's sealer and opener (`None`
    /// when both sides have `seal = false`).
    pub keys: Option<(Sealer, Opener)>,
    /// Both sides resume the lost session's requests.
    pub resume: bool,
}

impl<S> std::fmt::Debug for Admitted<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admitted")
            .field("site", &self.site)
            .field("lane", &self.lane)
            .field("incarnation", &self.incarnation)
            .field("sealed", &self.keys.is_some())
            .field("resume", &self.resume)
            .finish_non_exhaustive()
    }
}

/// A byte stream the handshake runs over: a TCP connection in mirrord, an
/// in-memory pipe in the fuzz target.
pub trait Stream: AsyncRead + AsyncWrite + Unpin {}
impl<S: AsyncRead + AsyncWrite + Unpin> Stream for S {}

/// Why a connection was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Framing or socket failure.
    #[error(transparent)]
    Frame(#[from] LinkError),
    /// A frame longer than any handshake message.
    #[error("a frame of {len} bytes before authentication, where the limit is {HANDSHAKE_MAX_PAYLOAD}: not a mirrord peer")]
    Oversized {
        /// The length the frame's header stated.
        len: usize,
    },
    /// The other side closed the connection.
    #[error("the other side closed the connection during the handshake")]
    Closed,
    /// The whole exchange took too long.
    #[error("the handshake did not complete within {0:?} (link.timeout_ms)")]
    Timeout(Duration),
    /// The other side refused us.
    #[error("the peer refused the connection: {0}")]
    RefusedByPeer(String),
    /// We refused the other side (and told it why).
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// Why this side refused the other during the handshake; the text is sent to it too.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// A message out of turn.
    #[error("a {got} message where the handshake expects {expected}: not a mirrord peer, or another release")]
    OutOfTurn {
        /// The kind that arrived.
        got: &'static str,
        /// The kind the handshake is waiting for.
        expected: &'static str,
    },
    /// The dialer wants another site.
    #[error(
        "this is site '{own}', not '{to}'; fix the [[peers]] address of '{to}' at site '{from}'"
    )]
    NotMe {
        /// This site.
        own: String,
        /// The site the dialer expected.
        to: String,
        /// The dialer's site.
        from: String,
    },
    /// The dialer is no configured peer.
    #[error("site '{site}' is not a configured peer of site '{own}'; add a [[peers]] entry for it at '{own}'")]
    UnknownPeer {
        /// The dialer's site.
        site: String,
        /// This site.
        own: String,
    },
    /// A host dialed the sites' link port, or a site the hosts' port.
    #[error("'{who}' opened a connection of the wrong kind at site '{own}': hosts dial [hosts] listen, sites dial [link] listen; fix the address at '{who}'")]
    WrongPort {
        /// The dialer.
        who: String,
        /// This site.
        own: String,
    },
    /// The dialing host is not allowed here.
    #[error("host '{host}' is not allowed at site '{own}'; add a [[hosts.allow]] entry for it at '{own}'")]
    UnknownHost {
        /// The dialing host.
        host: String,
        /// This site.
        own: String,
    },
    /// Another site answered at the peer's address.
    #[error(
        "expected site '{expected}' at this address but '{got}' answered; fix [[peers]] address"
    )]
    WrongSite {
        /// The configured peer.
        expected: String,
        /// The site that answered.
        got: String,
    },
    /// One side seals frames and the other does not.
    #[error("site '{dialer}' has [link] seal = {dialer_seals} and site '{listener}' has seal = {listener_seals}; set the same at both sites (seal = true, the default, outside loopback tests)")]
    SealDiffers {
        /// The dialing site.
        dialer: String,
        /// Whether it seals.
        dialer_seals: bool,
        /// The listening site.
        listener: String,
        /// Whether it seals.
        listener_seals: bool,
    },
    /// A proof that does not verify.
    #[error("authentication failed between '{dialer}' and '{listener}': the link keys differ; use the same psk_file contents at both sites (for a host: the contents of the key_file of its [[hosts.allow]] entry)")]
    KeysDiffer {
        /// The dialing site.
        dialer: String,
        /// The listening site.
        listener: String,
    },
}

impl HandshakeError {
    /// The reason in a few fixed words: what refusals are counted by in the log.
    pub fn kind(&self) -> &'static str {
        match self {
            HandshakeError::Frame(LinkError::Frame(frame)) => match frame {
                FrameError::BadMagic { .. } => "not the link protocol",
                FrameError::Version { .. } | FrameError::Reserved { .. } => {
                    "another protocol version"
                }
                FrameError::Crc { .. } | FrameError::Short { .. } => "damaged frame",
                FrameError::Oversized { .. } => "oversized frame",
                FrameError::Io(_) => "socket error",
                FrameError::Mac | FrameError::NoKey => "bad frame",
            },
            HandshakeError::Frame(LinkError::Malformed(_) | LinkError::Encode(_)) => {
                "unknown message"
            }
            HandshakeError::Frame(LinkError::ClosedMidFrame { .. }) => "closed mid-frame",
            // Sealed frames come only after the handshake.
            HandshakeError::Frame(LinkError::Rejected(_)) => "bad frame",
            HandshakeError::Oversized { .. } => "oversized frame",
            HandshakeError::Closed => "closed during the handshake",
            HandshakeError::Timeout(_) => "handshake too slow",
            HandshakeError::RefusedByPeer(_) => "refused by the peer",
            HandshakeError::Refused(r) => match r {
                Refusal::OutOfTurn { .. } => "message out of turn",
                Refusal::NotMe { .. } => "addressed to another site",
                Refusal::UnknownPeer { .. } => "unknown site",
                Refusal::WrongSite { .. } => "another site answered",
                Refusal::KeysDiffer { .. } => "link keys differ",
                Refusal::SealDiffers { .. } => "seal settings differ",
                Refusal::WrongPort { .. } => "wrong kind of connection",
                Refusal::UnknownHost { .. } => "unknown host",
            },
        }
    }
}

/// What both sides sign and derive keys from: the Hello's and the
/// Challenge's fields.
struct Exchange<'a> {
    dialer: &'a str,
    listener: &'a str,
    dialer_nonce: [u8; NONCE_LEN],
    listener_nonce: [u8; NONCE_LEN],
    lane: Lane,
    seal: bool,
    dialer_incarnation: u64,
    listener_incarnation: u64,
    /// The dialer's and the listener's `resume`.
    resume: [bool; 2],
}

impl Exchange<'_> {
    /// The mac of side `role` over the whole exchange.
    fn proof(&self, key: &[u8], role: &str) -> Vec<u8> {
        self.with_parts(role, |parts| auth::sign_parts(key, parts).to_vec())
    }

    /// Whether `proof` is `role`'s mac over the whole exchange.
    fn verify(&self, key: &[u8], role: &str, proof: &[u8]) -> bool {
        self.with_parts(role, |parts| auth::verify_parts(key, parts, proof))
    }

    fn with_parts<T>(&self, role: &str, f: impl FnOnce(&[&[u8]]) -> T) -> T {
        let lane = self.lane.to_string();
        let (d, l) = (
            self.dialer_incarnation.to_le_bytes(),
            self.listener_incarnation.to_le_bytes(),
        );
        f(&[
            b"hbmirror-link-v5".as_slice(),
            role.as_bytes(),
            &self.dialer_nonce,
            &self.listener_nonce,
            self.dialer.as_bytes(),
            self.listener.as_bytes(),
            lane.as_bytes(),
            &[u8::from(self.seal)],
            &d,
            &l,
            &self.resume.map(u8::from),
        ])
    }

    /// The session's keys for `role`, if it seals.
    fn keys(&self, key: &[u8], role: Role) -> Option<(Sealer, Opener)> {
        let t = seal::Transcript {
            dialer: self.dialer,
            listener: self.listener,
            dialer_nonce: &self.dialer_nonce,
            listener_nonce: &self.listener_nonce,
            lane: self.lane,
        };
        self.seal.then(|| seal::session_keys(key, &t, role))
    }
}

fn nonce() -> [u8; NONCE_LEN] {
    rand::random()
}

async fn next<S: Stream>(conn: &mut Framed<S, LinkCodec>) -> Result<Message, HandshakeError> {
    match conn.next().await {
        None => Err(HandshakeError::Closed),
        Some(Err(LinkError::Frame(FrameError::Oversized { len, .. }))) => {
            Err(HandshakeError::Oversized { len })
        }
        Some(Err(e)) => Err(e.into()),
        Some(Ok(Message::Refused { reason })) => Err(HandshakeError::RefusedByPeer(reason)),
        Some(Ok(msg)) => Ok(msg),
    }
}

async fn refuse<S: Stream>(conn: &mut Framed<S, LinkCodec>, refusal: Refusal) -> HandshakeError {
    // Best effort: the reason is for the other side's log.
    let _ = conn
        .send(Message::Refused {
            reason: refusal.to_string(),
        })
        .await;
    refusal.into()
}

/// Runs `steps` with one deadline for all of them.
async fn within<T>(
    deadline: Duration,
    steps: impl std::future::Future<Output = Result<T, HandshakeError>>,
) -> Result<T, HandshakeError> {
    tokio::time::timeout(deadline, steps)
        .await
        .unwrap_or(Err(HandshakeError::Timeout(deadline)))
}

/// Opens an authenticated connection for `lane` to site `peer` as site
/// `own`; the whole exchange must complete within `deadline`.
pub async fn dial<S: Stream>(
    stream: S,
    own: &str,
    peer: &str,
    lane: Lane,
    creds: Credentials<'_>,
    resume: bool,
    deadline: Duration,
) -> Result<Admitted<S>, HandshakeError> {
    within(deadline, dial_steps(stream, own, peer, lane, creds, resume)).await
}

async fn dial_steps<S: Stream>(
    stream: S,
    own: &str,
    peer: &str,
    lane: Lane,
    creds: Credentials<'_>,
    resume: bool,
) -> Result<Admitted<S>, HandshakeError> {
    let mut conn = Framed::new(stream, LinkCodec::handshake());
    let mine = nonce();
    conn.send(Message::Hello {
        site: own.into(),
        to: peer.into(),
        nonce: mine,
        lane,
        seal: creds.seal,
        incarnation: creds.incarnation,
        resume,
    })
    .await?;
    let (site, theirs, their_proof, their_seal, incarnation, their_resume) =
        match next(&mut conn).await? {
            Message::Challenge {
                site,
                nonce,
                proof,
                seal,
                incarnation,
                resume,
            } => (site, nonce, proof, seal, incarnation, resume),
            other => return Err(refuse(&mut conn, out_of_turn(&other, "Challenge")).await),
        };
    if !(peer.is_empty() && lane == Lane::Host) && site != peer {
        let wrong = Refusal::WrongSite {
            expected: peer.into(),
            got: site,
        };
        return Err(refuse(&mut conn, wrong).await);
    }
    let exchange = Exchange {
        dialer: own,
        listener: &site,
        dialer_nonce: mine,
        listener_nonce: theirs,
        lane,
        seal: creds.seal,
        dialer_incarnation: creds.incarnation,
        listener_incarnation: incarnation,
        resume: [resume, their_resume],
    };
    if their_seal != creds.seal {
        return Err(refuse(&mut conn, seal_differs(own, creds.seal, &site, their_seal)).await);
    }
    if !exchange.verify(creds.key, "listener", &their_proof) {
        return Err(refuse(&mut conn, keys_differ(own, &site)).await);
    }
    conn.send(Message::Proof {
        proof: exchange.proof(creds.key, "dialer"),
    })
    .await?;
    match next(&mut conn).await? {
        Message::Welcome => {
            conn.codec_mut().authenticated();
            let keys = exchange.keys(creds.key, Role::Dialer);
            Ok(Admitted {
                conn,
                site,
                lane,
                incarnation,
                keys,
                resume: resume && their_resume,
            })
        }
        other => Err(refuse(&mut conn, out_of_turn(&other, "Welcome")).await),
    }
}

fn seal_differs(dialer: &str, dialer_seals: bool, listener: &str, listener_seals: bool) -> Refusal {
    Refusal::SealDiffers {
        dialer: dialer.into(),
        dialer_seals,
        listener: listener.into(),
        listener_seals,
    }
}

fn out_of_turn(got: &Message, expected: &'static str) -> Refusal {
    Refusal::OutOfTurn {
        got: got.kind(),
        expected,
    }
}

fn keys_differ(dialer: &str, listener: &str) -> Refusal {
    Refusal::KeysDiffer {
        dialer: dialer.into(),
        listener: listener.into(),
    }
}

/// Admits a connection as site `own` from whom `listening.admit` knows:
/// the dialer's name, the lane it opened, its incarnation and the
/// session's keys. The whole exchange must complete within `deadline`.
pub async fn accept<S: Stream>(
    stream: S,
    own: &str,
    listening: Listening<'_>,
    deadline: Duration,
) -> Result<Admitted<S>, HandshakeError> {
    within(deadline, accept_steps(stream, own, listening)).await
}

async fn accept_steps<S: Stream>(
    stream: S,
    own: &str,
    listening: Listening<'_>,
) -> Result<Admitted<S>, HandshakeError> {
    let Listening {
        admit,
        seal: our_seal,
        incarnation: our_incarnation,
        resuming,
    } = listening;
    let mut conn = Framed::new(stream, LinkCodec::handshake());
    let (site, to, theirs, lane, their_seal, incarnation, their_resume) =
        match next(&mut conn).await? {
            Message::Hello {
                site,
                to,
                nonce,
                lane,
                seal,
                incarnation,
                resume,
            } => (site, to, nonce, lane, seal, incarnation, resume),
            other => return Err(refuse(&mut conn, out_of_turn(&other, "Hello")).await),
        };
    if !(to.is_empty() && lane == Lane::Host) && to != own {
        let not_me = Refusal::NotMe {
            own: own.into(),
            to,
            from: site,
        };
        return Err(refuse(&mut conn, not_me).await);
    }
    let key = match admit(&site, lane) {
        Ok(key) => key,
        Err(refusal) => return Err(refuse(&mut conn, refusal).await),
    };
    if their_seal != our_seal {
        return Err(refuse(&mut conn, seal_differs(&site, their_seal, own, our_seal)).await);
    }
    let exchange = Exchange {
        dialer: &site,
        listener: own,
        dialer_nonce: theirs,
        listener_nonce: nonce(),
        lane,
        seal: our_seal,
        dialer_incarnation: incarnation,
        listener_incarnation: our_incarnation,
        resume: [their_resume, resuming(&site, lane, incarnation)],
    };
    conn.send(Message::Challenge {
        site: own.into(),
        nonce: exchange.listener_nonce,
        proof: exchange.proof(&key, "listener"),
        seal: our_seal,
        incarnation: our_incarnation,
        resume: exchange.resume[1],
    })
    .await?;
    let their_proof = match next(&mut conn).await? {
        Message::Proof { proof } => proof,
        other => return Err(refuse(&mut conn, out_of_turn(&other, "Proof")).await),
    };
    if !exchange.verify(&key, "dialer", &their_proof) {
        return Err(refuse(&mut conn, keys_differ(&site, own)).await);
    }
    conn.send(Message::Welcome).await?;
    conn.codec_mut().authenticated();
    let keys = exchange.keys(&key, Role::Listener);
    let resume = exchange.resume == [true, true];
    Ok(Admitted {
        conn,
        site,
        lane,
        incarnation,
        keys,
        resume,
    })
}

#[cfg(test)]
mod tests;
