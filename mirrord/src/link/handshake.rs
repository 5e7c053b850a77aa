//! Mutual authentication when a link connection opens: HMAC-SHA256
//! challenge-response on the sites' pre-shared key.
//!
//! ```text
//!  dialer                                         listener
//!  Hello{site, to, nonce_d}  ───────────────────>  knows `site`? is `to` me?
//!                            <───────────────────  Challenge{site, nonce_l, mac("listener")}
//!  checks the listener's mac
//!  Proof{mac("dialer")}      ───────────────────>  checks the dialer's mac
//!                            <───────────────────  Welcome
//! ```
//! Each mac covers both nonces and both site names, so a recorded exchange
//! cannot be replayed. Any failure sends `Refused{reason}` and both sides log it.
//!
//! What an unauthenticated peer can make this side hold is bounded here: the
//! codec accepts frames of at most [`HANDSHAKE_MAX_PAYLOAD`] until the peer
//! has proved its key, and the whole exchange has one deadline (not one per
//! message, which a peer could stretch by trickling). How many handshakes run
//! at once is bounded by the caller (`link::admission`).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hbcore::auth;
use hbcore::frame::FrameError;
use hbcore::link::{Lane, LinkCodec, LinkError, Message, HANDSHAKE_MAX_PAYLOAD, NONCE_LEN};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// An authenticated connection.
pub type Conn = Framed<TcpStream, LinkCodec>;

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
    /// A proof that does not verify.
    #[error("authentication failed between '{dialer}' and '{listener}': the link keys differ; use the same psk_file contents at both sites")]
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
            },
        }
    }
}

/// The transcript one side signs: its role, both nonces, both site names.
fn transcript<'a>(
    role: &'a str,
    dialer_nonce: &'a [u8],
    listener_nonce: &'a [u8],
    dialer: &'a str,
    listener: &'a str,
) -> [&'a [u8]; 6] {
    [
        b"hbmirror-link-v1".as_slice(),
        role.as_bytes(),
        dialer_nonce,
        listener_nonce,
        dialer.as_bytes(),
        listener.as_bytes(),
    ]
}

fn proof(key: &[u8], parts: [&[u8]; 6]) -> Vec<u8> {
    auth::sign_parts(key, &parts).to_vec()
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
    key: &[u8],
    deadline: Duration,
) -> Result<Framed<S, LinkCodec>, HandshakeError> {
    within(deadline, dial_steps(stream, own, peer, lane, key)).await
}

async fn dial_steps<S: Stream>(
    stream: S,
    own: &str,
    peer: &str,
    lane: Lane,
    key: &[u8],
) -> Result<Framed<S, LinkCodec>, HandshakeError> {
    let mut conn = Framed::new(stream, LinkCodec::handshake());
    let mine = nonce();
    conn.send(Message::Hello {
        site: own.into(),
        to: peer.into(),
        nonce: mine,
        lane,
    })
    .await?;
    let (site, theirs, their_proof) = match next(&mut conn).await? {
        Message::Challenge { site, nonce, proof } => (site, nonce, proof),
        other => return Err(refuse(&mut conn, out_of_turn(&other, "Challenge")).await),
    };
    if site != peer {
        let wrong = Refusal::WrongSite {
            expected: peer.into(),
            got: site,
        };
        return Err(refuse(&mut conn, wrong).await);
    }
    if !auth::verify_parts(
        key,
        &transcript("listener", &mine, &theirs, own, peer),
        &their_proof,
    ) {
        return Err(refuse(&mut conn, keys_differ(own, peer)).await);
    }
    conn.send(Message::Proof {
        proof: proof(key, transcript("dialer", &mine, &theirs, own, peer)),
    })
    .await?;
    match next(&mut conn).await? {
        Message::Welcome => {
            conn.codec_mut().authenticated();
            Ok(conn)
        }
        other => Err(refuse(&mut conn, out_of_turn(&other, "Welcome")).await),
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

/// Admits a connection from one of `peers` as site `own`; returns the
/// peer's site and the lane it opened. The whole exchange must complete
/// within `deadline`.
pub async fn accept<S: Stream>(
    stream: S,
    own: &str,
    peers: &[String],
    key: &[u8],
    deadline: Duration,
) -> Result<(String, Lane, Framed<S, LinkCodec>), HandshakeError> {
    within(deadline, accept_steps(stream, own, peers, key)).await
}

async fn accept_steps<S: Stream>(
    stream: S,
    own: &str,
    peers: &[String],
    key: &[u8],
) -> Result<(String, Lane, Framed<S, LinkCodec>), HandshakeError> {
    let mut conn = Framed::new(stream, LinkCodec::handshake());
    let (site, to, theirs, lane) = match next(&mut conn).await? {
        Message::Hello {
            site,
            to,
            nonce,
            lane,
        } => (site, to, nonce, lane),
        other => return Err(refuse(&mut conn, out_of_turn(&other, "Hello")).await),
    };
    if to != own {
        let not_me = Refusal::NotMe {
            own: own.into(),
            to,
            from: site,
        };
        return Err(refuse(&mut conn, not_me).await);
    }
    if !peers.contains(&site) {
        let unknown = Refusal::UnknownPeer {
            site,
            own: own.into(),
        };
        return Err(refuse(&mut conn, unknown).await);
    }
    let mine = nonce();
    conn.send(Message::Challenge {
        site: own.into(),
        nonce: mine,
        proof: proof(key, transcript("listener", &theirs, &mine, &site, own)),
    })
    .await?;
    let their_proof = match next(&mut conn).await? {
        Message::Proof { proof } => proof,
        other => return Err(refuse(&mut conn, out_of_turn(&other, "Proof")).await),
    };
    if !auth::verify_parts(
        key,
        &transcript("dialer", &theirs, &mine, &site, own),
        &their_proof,
    ) {
        return Err(refuse(&mut conn, keys_differ(&site, own)).await);
    }
    conn.send(Message::Welcome).await?;
    conn.codec_mut().authenticated();
    Ok((site, lane, conn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    const DEADLINE: Duration = Duration::from_secs(5);

    /// The listener's verdict on a connection that sends `bytes` slowly: one
    /// byte every `gap`, then silence.
    async fn accept_trickle(bytes: Vec<u8>, gap: Duration, deadline: Duration) -> HandshakeError {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            for b in bytes {
                if s.write_all(&[b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(gap).await;
            }
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let (s, _) = listener.accept().await.expect("accept");
        let result = accept(s, "standby", &["prod".to_string()], b"k", deadline).await;
        client.abort();
        result.map(|_| ()).expect_err("refused")
    }

    async fn pair(
        dial_key: &'static [u8],
        listen_key: &'static [u8],
        dialer: &'static str,
    ) -> (
        Result<Conn, HandshakeError>,
        Result<(String, Lane, Conn), HandshakeError>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.expect("accept");
            accept(s, "standby", &["prod".to_string()], listen_key, DEADLINE).await
        });
        let client = dial(
            TcpStream::connect(addr).await.expect("connect"),
            dialer,
            "standby",
            Lane::Heartbeat,
            dial_key,
            DEADLINE,
        )
        .await;
        (client, server.await.expect("join"))
    }

    #[tokio::test]
    async fn same_key_is_admitted() {
        let (c, s) = pair(b"0123456789abcdef", b"0123456789abcdef", "prod").await;
        assert!(c.is_ok());
        let (site, lane, _) = s.expect("accepted");
        assert_eq!((site.as_str(), lane), ("prod", Lane::Heartbeat));
    }

    #[tokio::test]
    async fn different_keys_are_refused_on_both_sides() {
        let (c, s) = pair(b"0123456789abcdef", b"fedcba9876543210", "prod").await;
        let c = c.expect_err("dialer refuses");
        assert!(c.to_string().contains("link keys differ"), "{c}");
        let s = s.expect_err("listener refused");
        assert!(s.to_string().contains("link keys differ"), "{s}");
    }

    #[tokio::test]
    async fn unknown_sites_are_refused_by_name() {
        let (c, s) = pair(b"0123456789abcdef", b"0123456789abcdef", "intruder").await;
        assert!(c
            .expect_err("refused")
            .to_string()
            .contains("'intruder' is not a configured peer"));
        assert!(s.is_err());
    }

    #[tokio::test]
    async fn one_deadline_covers_the_whole_handshake_even_for_a_trickling_peer() {
        let hello = LinkCodec::handshake();
        let mut frame = bytes::BytesMut::new();
        tokio_util::codec::Encoder::encode(
            &mut hello.clone(),
            Message::Hello {
                site: "prod".into(),
                to: "standby".into(),
                nonce: [0; NONCE_LEN],
                lane: Lane::Bulk,
            },
            &mut frame,
        )
        .expect("encode");
        // Each byte comes well within the deadline; the whole Hello does not.
        let started = std::time::Instant::now();
        let e = accept_trickle(
            frame.to_vec(),
            Duration::from_millis(20),
            Duration::from_millis(300),
        )
        .await;
        assert!(matches!(e, HandshakeError::Timeout(_)), "{e}");
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(e.kind(), "handshake too slow");
    }

    #[tokio::test]
    async fn a_frame_longer_than_a_handshake_message_is_refused_at_its_header() {
        let mut header = hbcore::link::FORMAT
            .encode(b"x", None)
            .expect("frame")
            .to_vec();
        header.truncate(hbcore::frame::HEADER_LEN);
        header[8..12].copy_from_slice(&((4u32 << 20) - 1).to_le_bytes());
        let e = accept_trickle(header, Duration::ZERO, DEADLINE).await;
        assert!(
            matches!(e, HandshakeError::Oversized { len } if len == (4 << 20) - 1),
            "{e}"
        );
        assert!(e.to_string().contains("where the limit is 4096"), "{e}");
    }

    #[tokio::test]
    async fn a_message_out_of_turn_is_named_by_kind() {
        let mut frame = bytes::BytesMut::new();
        tokio_util::codec::Encoder::encode(&mut LinkCodec::handshake(), Message::Ping, &mut frame)
            .expect("encode");
        let e = accept_trickle(frame.to_vec(), Duration::ZERO, DEADLINE).await;
        assert_eq!(
            e.to_string(),
            "a Ping message where the handshake expects Hello: not a mirrord peer, or another release"
        );
    }
}
