//! The sending side against real sessions on loopback: a sender's frame
//! leaves from its own thread with every worker busy, the reader's unwritten
//! answer follows once the socket drains, a quiet link pings, and a sender
//! cancelled mid-frame leaves the stream whole.

use std::sync::Mutex as StdMutex;

use hbcore::link::{PeerError, PeerReply, PeerRequest};
use tokio::runtime::Runtime;
use tokio_util::codec::FramedRead;

use super::super::tests::config;
use super::super::{Handler, Link};
use super::*;

/// Records the writes that arrive; holds a write to pair `held` until released.
struct Recorder {
    held: &'static str,
    release: Notify,
    /// (pair, length, whether the bytes are the pattern `data` makes).
    seen: StdMutex<Vec<(String, usize, bool)>>,
}

impl Recorder {
    fn new(held: &'static str) -> Arc<Recorder> {
        Arc::new(Recorder {
            held,
            release: Notify::new(),
            seen: StdMutex::new(Vec::new()),
        })
    }

    fn seen(&self) -> Vec<(String, usize, bool)> {
        self.seen.lock().expect("seen").clone()
    }

    /// Waits (on this thread) until `pair`'s write has arrived.
    fn wait_for(&self, pair: &str) -> (String, usize, bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(w) = self.seen().into_iter().find(|w| w.0 == pair) {
                return w;
            }
            assert!(Instant::now() < deadline, "write '{pair}' never arrived");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Handler for Recorder {
    async fn handle(&self, _peer: &str, request: PeerRequest) -> Result<PeerReply, PeerError> {
        if let PeerRequest::Write { pair, data, .. } = request {
            let intact = data == self::data(data.len());
            let held = pair == self.held;
            self.seen
                .lock()
                .expect("seen")
                .push((pair, data.len(), intact));
            if held {
                self.release.notified().await;
            }
        }
        Ok(PeerReply::Done)
    }
    fn link_up(self: &Arc<Self>, _peer: &str, _lane: Lane) {}
    fn link_down(self: &Arc<Self>, _peer: &str, _lane: Lane) {}
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn write(pair: &str, len: usize) -> PeerRequest {
    PeerRequest::Write {
        pair: pair.into(),
        offset: 0,
        data: data(len).into(),
    }
}

fn runtime(workers: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Sites `a` (on `rt_a`) and `b` (on `rt_b`) linked on loopback, both lanes up.
fn linked(
    dir: &std::path::Path,
    (rt_a, at_a): (&Runtime, Arc<Recorder>),
    (rt_b, at_b): (&Runtime, Arc<Recorder>),
    stop: &CancellationToken,
) -> (Arc<Link>, Arc<Link>) {
    let listen = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.set_nonblocking(true).expect("nonblocking");
        l
    };
    let (la, lb) = (listen(), listen());
    let (aa, ba) = (
        la.local_addr().expect("addr"),
        lb.local_addr().expect("addr"),
    );
    let key = b"a link test key of enough bytes".to_vec();
    let a = Arc::new(Link::new(
        &config(dir, "a", aa, "b", ba.to_string()),
        key.clone(),
    ));
    let b = Arc::new(Link::new(&config(dir, "b", ba, "a", aa.to_string()), key));
    rt_b.block_on(async {
        let lb = tokio::net::TcpListener::from_std(lb).expect("listener");
        b.start(lb, at_b, stop.clone());
    });
    rt_a.block_on(async {
        let la = tokio::net::TcpListener::from_std(la).expect("listener");
        a.start(la, at_a, stop.clone());
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !Lane::ALL.iter().all(|l| {
        a.peer("b", *l).is_ok_and(|p| p.is_up()) && b.peer("a", *l).is_ok_and(|p| p.is_up())
    }) {
        assert!(Instant::now() < deadline, "both lanes up");
        std::thread::sleep(Duration::from_millis(10));
    }
    (a, b)
}

/// Two linked sites: `a` on a runtime of `workers.0` threads, `b` on one
/// of `workers.1`, `b` holding writes to pair `held` until released.
struct Sites {
    a: Arc<Link>,
    _b: Arc<Link>,
    stop: CancellationToken,
    at_b: Arc<Recorder>,
    rt_a: Runtime,
    _rt_b: Runtime,
    _dir: tempfile::TempDir,
}

fn sites(workers: (usize, usize), held: &'static str) -> Sites {
    let dir = tempfile::tempdir().expect("tempdir");
    let (rt_a, rt_b) = (runtime(workers.0), runtime(workers.1));
    let stop = CancellationToken::new();
    let at_b = Recorder::new(held);
    let (a, b) = linked(
        dir.path(),
        (&rt_a, Recorder::new("none")),
        (&rt_b, Arc::clone(&at_b)),
        &stop,
    );
    Sites {
        a,
        _b: b,
        stop,
        at_b,
        rt_a,
        _rt_b: rt_b,
        _dir: dir,
    }
}

impl Sites {
    /// `a`'s link to `b` on `lane`.
    fn peer(&self, lane: Lane) -> Arc<PeerLink> {
        Arc::clone(self.a.peer("b", lane).expect("lane"))
    }
}

/// The FUSE worker sends inside `Handle::block_on`: its frame must leave
/// from that thread, not wait for a task on the runtime's workers (here
/// the only one is busy).
#[test]
fn a_senders_frame_leaves_from_its_own_thread_with_every_worker_busy() {
    let t = sites((1, 2), "none");
    let peer = t.peer(Lane::Bulk);
    let (busy_tx, busy_rx) = std::sync::mpsc::channel::<()>();
    let (free_tx, free_rx) = std::sync::mpsc::channel::<()>();
    t.rt_a.spawn(async move {
        let _ = busy_tx.send(());
        let _ = free_rx.recv(); // blocks a's only worker
    });
    busy_rx.recv().expect("a's worker is busy");
    let pending = t
        .rt_a
        .handle()
        .block_on(peer.send(write("x", 4096)))
        .expect("sent");
    assert_eq!(t.at_b.wait_for("x"), ("x".to_string(), 4096, true));
    free_tx.send(()).expect("free a's worker");
    let answer = t.rt_a.block_on(pending.wait(Duration::from_secs(10)));
    assert!(matches!(answer, Ok(PeerReply::Done)), "{answer:?}");
    t.stop.cancel();
}

/// The reader's answer, written while a sender holds the lock on a full
/// socket, waits in the backlog and follows in a whole frame once the
/// peer reads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_the_reader_could_not_write_follows_once_the_socket_drains() {
    use futures_util::StreamExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (client, accepted) = tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
    let (server, _) = accepted.expect("accept");
    let (_read, half) = client.expect("connect").into_split();
    let mut codec = LinkCodec::handshake();
    codec.authenticated();
    let closed = CancellationToken::new();
    let wire = Arc::new(Wire::new(
        Out::new(half, BytesMut::new(), None),
        codec,
        closed.clone(),
        "b".into(),
        Lane::Bulk,
        None,
    ));
    let path = crate::config::PeerConfig::at("b", addr.to_string()).path_list();
    let paths: Arc<[Arc<super::super::paths::PathLink>]> = path
        .iter()
        .map(|c| Arc::new(super::super::paths::PathLink::new(c)))
        .collect();
    let peer = Arc::new(PeerLink::new("b", Lane::Bulk, paths));
    tokio::spawn(Arc::clone(&wire).flush_and_ping(peer, Duration::from_secs(60)));
    let big = hbcore::link::FORMAT.max_payload - 64;
    let sender = {
        let wire = Arc::clone(&wire);
        tokio::spawn(async move {
            for id in 0..8 {
                let body = write("big", big);
                wire.send(Message::Request { id, body })
                    .await
                    .expect("sent");
            }
        })
    };
    // 32 MiB do not fit in the socket's buffers: the sender waits with the lock.
    let deadline = Instant::now() + Duration::from_secs(20);
    while wire.out.try_lock().is_ok() {
        assert!(Instant::now() < deadline, "the sender never held the lock");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wire.send_now(Message::Pong)
        .expect("queued, not waited for");
    let mut stream = FramedRead::new(server, codec);
    let (mut writes, mut pong) = (0, false);
    let read = async {
        while writes < 8 || !pong {
            match stream
                .next()
                .await
                .expect("the stream goes on")
                .expect("a whole frame")
            {
                Message::Request {
                    body: PeerRequest::Write { data, .. },
                    ..
                } => {
                    assert!(data == self::data(big), "write {writes} intact");
                    writes += 1;
                }
                Message::Pong => pong = true,
                Message::Ping => {}
                other => panic!("unexpected {}", other.kind()),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("every frame arrived");
    sender.await.expect("the sender finished");
    closed.cancel();
}

/// Pings go from the flusher alone: a quiet link still measures its
/// round trip (and the peer hears from it before its timeout).
#[test]
fn a_quiet_link_pings_and_times_the_pong() {
    let t = sites((1, 1), "none");
    let peer = t.peer(Lane::Heartbeat);
    let deadline = Instant::now() + Duration::from_secs(20);
    while peer.stats.pongs() < 2 {
        assert!(Instant::now() < deadline, "no round trips measured");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(peer.stats.rtt().is_some());
    assert_eq!(peer.stats.sessions(), 1);
    t.stop.cancel();
}

/// A sender cancelled while its frame is half in the socket: the rest
/// goes out before the next frame, so the peer reads whole frames and
/// the session lives on.
#[test]
fn a_sender_cancelled_mid_frame_leaves_the_stream_whole() {
    let t = sites((2, 2), "stuck");
    let peer = t.peer(Lane::Bulk);
    let big = hbcore::link::FORMAT.max_payload - 64;
    let cancelled = t.rt_a.block_on(async {
        // b's reader applies this one inline and stops reading...
        let _stuck = peer.send(write("stuck", 4096)).await.expect("sent");
        t.at_b.wait_for("stuck");
        // ...so the socket fills, and a send that waits is given up.
        for i in 0..256 {
            let name = format!("big{i}");
            let send = peer.send(write(&name, big));
            if tokio::time::timeout(Duration::from_millis(200), send)
                .await
                .is_err()
            {
                return name;
            }
        }
        panic!("the socket never filled");
    });
    t.at_b.release.notify_one();
    let answer = t
        .rt_a
        .block_on(peer.call(write("after", 4096), Duration::from_secs(20)));
    assert!(matches!(answer, Ok(PeerReply::Done)), "{answer:?}");
    assert_eq!(t.at_b.wait_for(&cancelled), (cancelled, big, true));
    assert!(
        t.at_b.seen().iter().all(|(_, _, intact)| *intact),
        "every write arrived whole"
    );
    assert_eq!(peer.stats.sessions(), 1, "the session lived on");
    t.stop.cancel();
}
