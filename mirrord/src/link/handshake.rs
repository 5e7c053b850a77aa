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

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hbcore::auth;
use hbcore::link::{LinkCodec, LinkError, Message, NONCE_LEN};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

/// An authenticated connection.
pub type Conn = Framed<TcpStream, LinkCodec>;

/// Longest a handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a connection was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Framing or socket failure.
    #[error(transparent)]
    Frame(#[from] LinkError),
    /// The other side closed the connection.
    #[error("the peer closed the connection during the handshake")]
    Closed,
    /// The other side took too long.
    #[error("no handshake answer within {HANDSHAKE_TIMEOUT:?}")]
    Timeout,
    /// The other side refused us.
    #[error("the peer refused the connection: {0}")]
    RefusedByPeer(String),
    /// We refused the other side.
    #[error("{0}")]
    Refused(String),
    /// A message out of turn.
    #[error("unexpected {0} during the handshake")]
    Unexpected(&'static str),
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

async fn next(conn: &mut Conn) -> Result<Message, HandshakeError> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, conn.next()).await {
        Err(_) => Err(HandshakeError::Timeout),
        Ok(None) => Err(HandshakeError::Closed),
        Ok(Some(Err(e))) => Err(e.into()),
        Ok(Some(Ok(Message::Refused { reason }))) => Err(HandshakeError::RefusedByPeer(reason)),
        Ok(Some(Ok(msg))) => Ok(msg),
    }
}

async fn refuse(conn: &mut Conn, reason: String) -> HandshakeError {
    // Best effort: the reason is for the other side's log.
    let _ = conn
        .send(Message::Refused {
            reason: reason.clone(),
        })
        .await;
    HandshakeError::Refused(reason)
}

/// Opens an authenticated connection to site `peer` as site `own`.
pub async fn dial(
    stream: TcpStream,
    own: &str,
    peer: &str,
    key: &[u8],
) -> Result<Conn, HandshakeError> {
    let mut conn = Framed::new(stream, LinkCodec::handshake());
    let mine = nonce();
    conn.send(Message::Hello {
        site: own.into(),
        to: peer.into(),
        nonce: mine,
    })
    .await?;
    let Message::Challenge {
        site,
        nonce: theirs,
        proof: their_proof,
    } = next(&mut conn).await?
    else {
        return Err(HandshakeError::Unexpected("message instead of Challenge"));
    };
    if site != peer {
        return Err(refuse(&mut conn, format!("expected site '{peer}' at this address but '{site}' answered; fix [[peers]] address")).await);
    }
    if !auth::verify_parts(
        key,
        &transcript("listener", &mine, &theirs, own, peer),
        &their_proof,
    ) {
        return Err(refuse(&mut conn, format!("authentication failed between '{own}' and '{peer}': the link keys differ; use the same psk_file contents at both sites")).await);
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
        _ => Err(HandshakeError::Unexpected("message instead of Welcome")),
    }
}

/// Admits a connection from one of `peers` as site `own`; returns the peer's site.
pub async fn accept(
    stream: TcpStream,
    own: &str,
    peers: &[String],
    key: &[u8],
) -> Result<(String, Conn), HandshakeError> {
    let mut conn = Framed::new(stream, LinkCodec::handshake());
    let Message::Hello {
        site,
        to,
        nonce: theirs,
    } = next(&mut conn).await?
    else {
        return Err(refuse(&mut conn, "expected Hello first".into()).await);
    };
    if to != own {
        return Err(refuse(&mut conn, format!("this is site '{own}', not '{to}'; fix the [[peers]] address of '{to}' at site '{site}'")).await);
    }
    if !peers.contains(&site) {
        return Err(refuse(&mut conn, format!("site '{site}' is not a configured peer of site '{own}'; add a [[peers]] entry for it at '{own}'")).await);
    }
    let mine = nonce();
    conn.send(Message::Challenge {
        site: own.into(),
        nonce: mine,
        proof: proof(key, transcript("listener", &theirs, &mine, &site, own)),
    })
    .await?;
    let Message::Proof { proof: their_proof } = next(&mut conn).await? else {
        return Err(refuse(&mut conn, "expected Proof".into()).await);
    };
    if !auth::verify_parts(
        key,
        &transcript("dialer", &theirs, &mine, &site, own),
        &their_proof,
    ) {
        return Err(refuse(&mut conn, format!("authentication failed between '{site}' and '{own}': the link keys differ; use the same psk_file contents at both sites")).await);
    }
    conn.send(Message::Welcome).await?;
    conn.codec_mut().authenticated();
    Ok((site, conn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn pair(
        dial_key: &'static [u8],
        listen_key: &'static [u8],
        dialer: &'static str,
    ) -> (
        Result<Conn, HandshakeError>,
        Result<(String, Conn), HandshakeError>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.expect("accept");
            accept(s, "standby", &["prod".to_string()], listen_key).await
        });
        let client = dial(
            TcpStream::connect(addr).await.expect("connect"),
            dialer,
            "standby",
            dial_key,
        )
        .await;
        (client, server.await.expect("join"))
    }

    #[tokio::test]
    async fn same_key_is_admitted() {
        let (c, s) = pair(b"0123456789abcdef", b"0123456789abcdef", "prod").await;
        assert!(c.is_ok());
        assert_eq!(s.expect("accepted").0, "prod");
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
}
