//! Two sites linked on loopback with handlers that hold chosen writes: a
//! slow write at one side never holds the answers the other side awaits,
//! and a heartbeat lane never waits behind the bulk lane.

use super::*;
use crate::config::{LinkConfig, PeerConfig};
use hbcore::link::PeerRequest;

/// Answers at once, except a write to pair `held`, held until released:
/// a data pair's copy frame that takes long to apply at the SVOL.
struct Holding {
    held: &'static str,
    /// Told when the held write arrives.
    arrived: tokio::sync::Notify,
    release: tokio::sync::Notify,
}

impl Holding {
    fn new(held: &'static str) -> Arc<Holding> {
        Arc::new(Holding {
            held,
            arrived: tokio::sync::Notify::new(),
            release: tokio::sync::Notify::new(),
        })
    }
}

impl Handler for Holding {
    async fn handle(&self, _peer: &str, request: PeerRequest) -> Result<PeerReply, PeerError> {
        if matches!(&request, PeerRequest::Write { pair, .. } if pair == self.held) {
            self.arrived.notify_one();
            self.release.notified().await;
        }
        Ok(PeerReply::Done)
    }
    fn link_up(self: &Arc<Self>, _peer: &str, _lane: Lane) {}
    fn link_down(self: &Arc<Self>, _peer: &str, _lane: Lane) {}
}

pub(super) fn config(
    dir: &std::path::Path,
    site: &str,
    listen: std::net::SocketAddr,
    peer: &str,
    at: String,
) -> Config {
    let psk_file = dir.join(format!("{site}.psk"));
    std::fs::write(&psk_file, "a link test key of enough bytes").expect("psk");
    Config {
        site: site.into(),
        data_dir: dir.join(site),
        control_socket: dir.join(format!("{site}.sock")),
        mount: None,
        fuse_transport: Default::default(),
        link: LinkConfig {
            listen,
            psk_file,
            timeout_ms: 5000,
            seal: true,
        },
        peers: vec![PeerConfig::at(peer, at)],
        metrics_listen: None,
        hosts: None,
    }
}

/// Sites `a` and `b` linked on loopback, each with its handler; both lanes up.
async fn linked(
    dir: &std::path::Path,
    at_a: Arc<Holding>,
    at_b: Arc<Holding>,
    stop: &CancellationToken,
) -> (Arc<Link>, Arc<Link>) {
    let (la, lb) = (
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
    );
    let (aa, ba) = (
        la.local_addr().expect("addr"),
        lb.local_addr().expect("addr"),
    );
    let a_config = config(dir, "a", aa, "b", ba.to_string());
    let b_config = config(dir, "b", ba, "a", aa.to_string());
    let key = b"a link test key of enough bytes".to_vec();
    let (a, b) = (
        Arc::new(Link::new(&a_config, key.clone())),
        Arc::new(Link::new(&b_config, key)),
    );
    b.start(lb, at_b, stop.clone());
    a.start(la, at_a, stop.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !Lane::ALL.iter().all(|l| {
        a.peer("b", *l).is_ok_and(|p| p.is_up()) && b.peer("a", *l).is_ok_and(|p| p.is_up())
    }) {
        assert!(std::time::Instant::now() < deadline, "both lanes up");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (a, b)
}

fn write(pair: &str) -> PeerRequest {
    PeerRequest::Write {
        pair: pair.into(),
        offset: 0,
        data: vec![7; 4096].into(),
    }
}

/// Both directions on one session (heartbeat pairs: each site writes its
/// own PVOL): a write applied slowly at `b` must not hold the answer to
/// `b`'s own write, which `b`'s reader delivers meanwhile.
#[tokio::test]
async fn a_slow_svol_write_does_not_hold_the_answer_to_this_sites_own_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = CancellationToken::new();
    let (at_a, at_b) = (Holding::new("from-b"), Holding::new("from-a"));
    let (a, b) = linked(dir.path(), Arc::clone(&at_a), Arc::clone(&at_b), &stop).await;
    let (a_hb, b_hb) = (
        a.peer("b", Lane::Heartbeat).expect("a's lane"),
        b.peer("a", Lane::Heartbeat).expect("b's lane"),
    );
    // b's own write waits at a (held there), so b awaits an answer...
    let own = b_hb.send(write("from-b")).await.expect("queued");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ...when a's write arrives at b and is held there.
    let theirs = a_hb.send(write("from-a")).await.expect("queued");
    tokio::time::sleep(Duration::from_millis(100)).await;
    at_a.release.notify_one();
    let answer = own.wait(Duration::from_secs(3)).await;
    assert!(
        matches!(answer, Ok(PeerReply::Done)),
        "b's answer arrived while a's write is still held at b: {answer:?}"
    );
    at_b.release.notify_one();
    assert!(theirs.wait(Duration::from_secs(3)).await.is_ok());
    stop.cancel();
}

/// A large write (a copy frame) is applied off the reader: while the
/// SVOL's disk takes it, the reader goes on reading, here the answer
/// to the SVOL site's own request on the same session.
#[tokio::test]
async fn the_reader_goes_on_reading_while_a_large_write_is_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = CancellationToken::new();
    let (at_a, at_b) = (Holding::new("nothing"), Holding::new("frame"));
    let (a, b) = linked(dir.path(), Arc::clone(&at_a), Arc::clone(&at_b), &stop).await;
    let (a_bulk, b_bulk) = (
        a.peer("b", Lane::Bulk).expect("a's lane"),
        b.peer("a", Lane::Bulk).expect("b's lane"),
    );
    let frame = PeerRequest::Write {
        pair: "frame".into(),
        offset: 0,
        data: vec![7; 1 << 20].into(),
    };
    let held = a_bulk.send(frame).await.expect("queued");
    at_b.arrived.notified().await;
    // b has nothing in flight when the frame arrives, so only its size
    // keeps it off the reader, which must deliver this answer.
    let answer = b_bulk.call(write("own"), Duration::from_secs(3)).await;
    assert!(
        matches!(answer, Ok(PeerReply::Done)),
        "b's reader read a's answer while the frame was held at b: {answer:?}"
    );
    at_b.release.notify_one();
    assert!(held.wait(Duration::from_secs(3)).await.is_ok());
    stop.cancel();
}

#[tokio::test]
async fn a_heartbeat_write_is_answered_while_a_bulk_write_is_held_at_the_peer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = CancellationToken::new();
    let held = Holding::new("stuck");
    let (a, _b) = linked(dir.path(), Arc::clone(&held), Arc::clone(&held), &stop).await;
    let bulk = a.peer("b", Lane::Bulk).expect("bulk");
    let stuck = bulk.send(write("stuck")).await.expect("queued");
    // Behind it on the bulk lane, a write waits for the held one...
    let behind = bulk.send(write("data")).await.expect("queued");
    // ...but the heartbeat lane is a connection of its own.
    let heartbeat = a.peer("b", Lane::Heartbeat).expect("heartbeat");
    let answer = heartbeat.call(write("hb0"), Duration::from_secs(3)).await;
    assert!(matches!(answer, Ok(PeerReply::Done)), "{answer:?}");
    held.release.notify_one();
    assert!(stuck.wait(Duration::from_secs(3)).await.is_ok());
    assert!(behind.wait(Duration::from_secs(3)).await.is_ok());
    stop.cancel();
}
