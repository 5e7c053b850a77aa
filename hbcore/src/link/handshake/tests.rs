//! The handshake against real connections on loopback: matching keys
//! admitted with matching session keys, differing keys and seal settings
//! refused on both sides, unknown sites named, one deadline for a
//! trickling peer, oversized and out-of-turn frames refused.

use super::*;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

const DEADLINE: Duration = Duration::from_secs(5);

fn creds(key: &[u8]) -> Credentials<'_> {
    Credentials {
        key,
        seal: true,
        incarnation: 7,
    }
}

fn listening<'a>(admit: Admit<'a>, seal: bool) -> Listening<'a> {
    Listening {
        admit,
        seal,
        incarnation: 7,
        resuming: &|_, _, _| true,
    }
}

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
    let peers = ["prod".to_string()];
    let admit = admit_sites("standby", &peers, b"k");
    let result = accept(s, "standby", listening(&admit, true), deadline).await;
    client.abort();
    result.map(|_| ()).expect_err("refused")
}

type Side = Result<Admitted<TcpStream>, HandshakeError>;

async fn pair(
    dial_key: &'static [u8],
    listen_key: &'static [u8],
    dialer: &'static str,
) -> (Side, Side) {
    pair_sealing(dial_key, listen_key, dialer, true, true).await
}

async fn pair_sealing(
    dial_key: &'static [u8],
    listen_key: &'static [u8],
    dialer: &'static str,
    dial_seal: bool,
    listen_seal: bool,
) -> (Side, Side) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move {
        let (s, _) = listener.accept().await.expect("accept");
        let peers = ["prod".to_string()];
        let admit = admit_sites("standby", &peers, listen_key);
        let mut l = listening(&admit, listen_seal);
        l.incarnation = 2;
        accept(s, "standby", l, DEADLINE).await
    });
    let client = dial(
        TcpStream::connect(addr).await.expect("connect"),
        dialer,
        "standby",
        Lane::Heartbeat,
        Credentials {
            seal: dial_seal,
            incarnation: 1,
            ..creds(dial_key)
        },
        true,
        DEADLINE,
    )
    .await;
    (client, server.await.expect("join"))
}

#[tokio::test]
async fn same_key_is_admitted_with_matching_session_keys() {
    let (c, s) = pair(b"0123456789abcdef", b"0123456789abcdef", "prod").await;
    let c = c.expect("admitted");
    let s = s.expect("accepted");
    assert_eq!((s.site.as_str(), s.lane), ("prod", Lane::Heartbeat));
    assert_eq!((c.incarnation, s.incarnation), (2, 1));
    // What one side seals the other opens, in both directions.
    let ((mut c_seal, mut c_open), (mut s_seal, mut s_open)) =
        (c.keys.expect("keys"), s.keys.expect("keys"));
    for (sealer, opener) in [(&mut c_seal, &mut s_open), (&mut s_seal, &mut c_open)] {
        let mut buf = bytes::BytesMut::new();
        sealer.encode(Message::Ping, &mut buf).expect("seal");
        assert_eq!(opener.decode(&mut buf).expect("open"), Some(Message::Ping));
    }
}

#[tokio::test]
async fn both_sides_must_agree_on_sealing() {
    let key = b"0123456789abcdef";
    let (c, s) = pair_sealing(key, key, "prod", false, true).await;
    let s = s.map(|_| ()).expect_err("listener refuses");
    assert_eq!(s.kind(), "seal settings differ");
    assert!(
        s.to_string()
            .contains("site 'prod' has [link] seal = false and site 'standby' has seal = true"),
        "{s}"
    );
    assert!(c.is_err());
    let (c, s) = pair_sealing(key, key, "prod", false, false).await;
    assert!(c.expect("unsealed").keys.is_none());
    assert!(s.expect("unsealed").keys.is_none());
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
            seal: true,
            incarnation: 0,
            resume: false,
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
    let mut header = crate::link::FORMAT
        .encode(b"x", None)
        .expect("frame")
        .to_vec();
    header.truncate(crate::frame::HEADER_LEN);
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
