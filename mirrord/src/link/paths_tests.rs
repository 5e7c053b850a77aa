//! A session moving between two paths, in one process: each path a
//! loopback relay that can be made a black hole (packets dropped, nothing
//! closed, as a cut cable or an nftables drop). Writes streamed during the
//! cut all succeed and each is applied once at the peer; with every path
//! cut, the link goes down as before.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex as StdMutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;
use crate::config::{PathConfig, PeerConfig};

/// Counts what arrives and what the link tells it.
#[derive(Default)]
struct Counting {
    /// Applies per offset.
    applied: StdMutex<HashMap<u64, u32>>,
    downs: AtomicU64,
}

impl Handler for Counting {
    async fn handle(&self, _peer: &str, request: PeerRequest) -> Result<PeerReply, PeerError> {
        if let PeerRequest::Write { offset, .. } = request {
            if let Ok(mut a) = self.applied.lock() {
                *a.entry(offset).or_default() += 1;
            }
        }
        Ok(PeerReply::Done)
    }
    fn link_up(self: &Arc<Self>, _peer: &str, _lane: Lane) {}
    fn link_down(self: &Arc<Self>, _peer: &str, _lane: Lane) {
        self.downs.fetch_add(1, Ordering::SeqCst);
    }
}

/// A TCP relay to `to` that forwards until told to drop everything.
struct Relay {
    addr: std::net::SocketAddr,
    cut: Arc<AtomicBool>,
}

async fn relay(to: std::net::SocketAddr) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let cut = Arc::new(AtomicBool::new(false));
    let c = Arc::clone(&cut);
    tokio::spawn(async move {
        while let Ok((inbound, _)) = listener.accept().await {
            if c.load(Ordering::SeqCst) {
                // A black hole accepts nothing useful: hold it, say nothing.
                tokio::spawn(async move {
                    let _held = inbound;
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                });
                continue;
            }
            let Ok(outbound) = TcpStream::connect(to).await else {
                continue;
            };
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            tokio::spawn(pump(ri, wo, Arc::clone(&c)));
            tokio::spawn(pump(ro, wi, Arc::clone(&c)));
        }
    });
    Relay { addr, cut }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    cut: Arc<AtomicBool>,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        // Cut: bytes vanish and nothing is closed, so only silence tells.
        if !cut.load(Ordering::SeqCst) && to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// Site `a` reaches `b` over two relays; `b` knows `a` at one address.
async fn two_paths(
    dir: &std::path::Path,
    stop: &CancellationToken,
) -> (
    Arc<Link>,
    Arc<Link>,
    Arc<Counting>,
    Arc<Counting>,
    [Relay; 2],
) {
    let (la, lb) = (
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
    );
    let (aa, ba) = (la.local_addr().expect("a"), lb.local_addr().expect("b"));
    let relays = [relay(ba).await, relay(ba).await];
    let mut a_config = super::tests::config(dir, "a", aa, "b", String::new());
    a_config.peers = vec![PeerConfig {
        site: "b".into(),
        paths: relays
            .iter()
            .enumerate()
            .map(|(i, r)| PathConfig {
                name: Some(format!("wan{i}")),
                remote: r.addr.to_string(),
                local: None,
                lanes: Vec::new(),
            })
            .collect(),
        ..PeerConfig::default()
    }];
    a_config.link.timeout_ms = 1000;
    let mut b_config = super::tests::config(dir, "b", ba, "a", aa.to_string());
    b_config.link.timeout_ms = 1000;
    let key = b"a link test key of enough bytes".to_vec();
    let (a, b) = (
        Arc::new(Link::new(&a_config, key.clone())),
        Arc::new(Link::new(&b_config, key)),
    );
    let (at_a, at_b) = (Arc::new(Counting::default()), Arc::new(Counting::default()));
    b.start(lb, Arc::clone(&at_b), stop.clone());
    a.start(la, Arc::clone(&at_a), stop.clone());
    let bulk = a.peer("b", Lane::Bulk).expect("bulk");
    wait_until("the bulk lane up", || bulk.is_up()).await;
    (a, b, at_a, at_b, relays)
}

async fn wait_until(what: &str, ok: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn write_at(offset: u64) -> PeerRequest {
    PeerRequest::Write {
        pair: "p".into(),
        offset,
        data: vec![offset as u8; 4096].into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_path_moves_the_lane_to_the_other_without_failing_or_repeating_a_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stop = CancellationToken::new();
    let (a, b, at_a, at_b, relays) = two_paths(dir.path(), &stop).await;
    let bulk = Arc::clone(a.peer("b", Lane::Bulk).expect("bulk"));
    // Eight writers, each writing its own blocks one after the other.
    let writers: Vec<_> = (0..8u64)
        .map(|w| {
            let bulk = Arc::clone(&bulk);
            tokio::spawn(async move {
                for i in 0..150u64 {
                    let offset = (w * 1000 + i) * 4096;
                    let pending = bulk.send(write_at(offset)).await.expect("sent");
                    pending
                        .wait(Duration::from_secs(5))
                        .await
                        .expect("acknowledged");
                }
            })
        })
        .collect();
    wait_until("writes flowing", || {
        at_b.applied.lock().map_or(0, |a| a.len()) > 100
    })
    .await;
    let on = |i: usize| bulk.paths[i].state();
    assert_eq!(on(0).state, "up", "the lane starts on its first path");
    relays[0].cut.store(true, Ordering::SeqCst);
    for w in writers {
        w.await.expect("every write acknowledged");
    }
    let applied = at_b.applied.lock().expect("applied").clone();
    assert_eq!(applied.len(), 8 * 150, "every write arrived");
    assert!(applied.values().all(|n| *n == 1), "a write applied twice");
    assert_eq!(
        at_a.downs.load(Ordering::SeqCst),
        0,
        "a was never told the link is down"
    );
    assert_eq!(
        at_b.downs.load(Ordering::SeqCst),
        0,
        "b was never told the link is down"
    );
    assert!(bulk.stats.resumed() >= 1, "a session resumed");
    let (s0, s1) = (on(0), on(1));
    assert_eq!((s0.state, s1.state), ("down", "up"), "{s0:?} {s1:?}");
    assert_eq!(
        s1.lanes,
        [Lane::Bulk, Lane::Heartbeat]
            .into_iter()
            .filter(|l| a.peer("b", *l).is_ok_and(|p| p.is_up()))
            .collect::<Vec<_>>()
    );
    assert!(s1.bytes_sent > 0 && s1.bytes_received > 0);

    // Both paths cut: the link is down, as before.
    relays[1].cut.store(true, Ordering::SeqCst);
    let failed = bulk.send(write_at(1 << 30)).await.expect("held or sent");
    assert!(failed.wait(Duration::from_secs(5)).await.is_err());
    wait_until("a told the link is down", || {
        at_a.downs.load(Ordering::SeqCst) > 0
    })
    .await;
    wait_until("b told the link is down", || {
        at_b.downs.load(Ordering::SeqCst) > 0
    })
    .await;
    drop(b);
    stop.cancel();
}
