//! The remote link: authenticated TCP sessions with the peer sites, and the
//! requests a site sends on them. It knows nothing of the site: what arrives
//! goes to a [`Handler`] (implemented in `site::peer`).
//!
//! ```text
//!  Site ──send()──> PeerLink ──(Wire lock, caller's thread)──frames──> TCP ──> peer
//!   ▲                     waiting[id] <── Response ── reader task <──frames── TCP <──┘
//!   └── Handler::handle ── answerer task <── Request ──┘   (one at a time, in arrival order)
//! ```
//!
//! Two sessions join each pair of sites, one per [`Lane`]: heartbeat pairs
//! travel alone on theirs, so a heartbeat write never waits behind the copy
//! frames of a data pair (seed Fig 1: link 150 beside link 151). Exactly
//! one side dials both: the site whose name sorts first; the other only
//! accepts. A dropped connection (peer gone, silence past the timeout, a bad
//! frame) fails the requests in flight, tells the handler (`link_down`), and
//! the dialer reconnects with backoff ([`Backoff`]: 100 ms doubling to 5 s).
//!
//! Frames are written by their senders (`wire`) and read by the session's
//! reader (`reader`), which reads a large write's data straight into a
//! pooled aligned buffer ([`Handler::buffers`]) for the disk.
//!
//! Until it has proved the key, a peer costs bounded memory and time: a few
//! handshakes at a time ([`admission`]), small frames and one deadline
//! ([`handshake`]); its refusals reach the log counted, not one line each
//! ([`refusals`]).

pub mod admission;
pub mod handshake;
mod reader;
pub mod refusals;
mod session;
pub mod stats;
mod wire;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hbcore::link::{Lane, Message, PeerError, PeerReply, PeerRequest};
use hbcore::report::chain;
use hbcore::throttle::{suppressed_note, Throttle, Verdict};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::pool::BufPool;
use admission::Gate;
use refusals::RefusalLog;
use session::Session;

/// The largest write the receiving site applies on the task that read it
/// (a heartbeat, a host's 4 KiB): a hand-off to the ring or to another
/// task would cost as much as the write. Larger ones go to the answerer
/// task and the ring, and the reader goes on reading meanwhile.
pub const SMALL_WRITE: usize = 64 << 10;

/// A request to a peer that did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// No session with that peer.
    #[error("the remote link to site '{0}' is down; check that mirrord runs there and that the link address and key are right (`hbctl pair status` shows the link)")]
    Down(String),
    /// The session broke before the answer came.
    #[error("the remote link to site '{0}' was lost before it answered")]
    Lost(String),
    /// No answer in time.
    #[error("site '{0}' did not answer within {1:?}")]
    Timeout(String, Duration),
    /// The peer refused or failed the request; the kind says why.
    #[error("site '{0}' refused")]
    Refused(String, #[source] PeerError),
    /// The site is not configured.
    #[error("site '{0}' is not a configured peer; add a [[peers]] entry to mirrord's config")]
    UnknownPeer(String),
}

/// What the site does with the link's events; implemented by the site.
pub trait Handler: Send + Sync + 'static {
    /// Answers a request from `peer`. Requests of one session are handled one
    /// at a time in arrival order (writes must apply in the PVOL's order).
    fn handle(
        &self,
        peer: &str,
        request: PeerRequest,
    ) -> impl Future<Output = Result<PeerReply, PeerError>> + Send;
    /// The session with `peer` on `lane` opened.
    fn link_up(self: &Arc<Self>, peer: &str, lane: Lane);
    /// The session with `peer` on `lane` closed.
    fn link_down(self: &Arc<Self>, peer: &str, lane: Lane);
    /// The buffers a large write's data is read into (aligned, for the
    /// disk), given back when the write is done with them.
    fn buffers(&self) -> Arc<BufPool> {
        Arc::default()
    }
}

/// The link to one peer site on one lane.
pub struct PeerLink {
    /// The peer's site name.
    pub site: String,
    /// Which of the two connections to the peer this is.
    pub lane: Lane,
    address: String,
    session: Mutex<Option<Arc<Session>>>,
    /// Sessions opened and the round trip of the pings.
    pub stats: stats::LinkStats,
}

/// An answer on its way.
pub struct Pending {
    site: String,
    answer: oneshot::Receiver<Result<PeerReply, PeerError>>,
}

impl Pending {
    /// Waits for the answer, at most `timeout`.
    pub async fn wait(self, timeout: Duration) -> Result<PeerReply, LinkError> {
        match tokio::time::timeout(timeout, self.answer).await {
            Err(_) => Err(LinkError::Timeout(self.site, timeout)),
            Ok(Err(_)) => Err(LinkError::Lost(self.site)),
            Ok(Ok(Err(reason))) => Err(LinkError::Refused(self.site, reason)),
            Ok(Ok(Ok(reply))) => Ok(reply),
        }
    }
}

impl PeerLink {
    fn current(&self) -> Option<Arc<Session>> {
        self.session.lock().ok().and_then(|s| s.clone())
    }

    /// Whether a session is open.
    pub fn is_up(&self) -> bool {
        self.current().is_some()
    }

    /// Sends `body` to the peer: returns once its frame is in the socket.
    /// Frames leave in the order of these calls (of the lock they take).
    pub async fn send(&self, body: PeerRequest) -> Result<Pending, LinkError> {
        let session = self
            .current()
            .ok_or_else(|| LinkError::Down(self.site.clone()))?;
        let id = session.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, answer) = oneshot::channel();
        if let Ok(mut w) = session.waiting.lock() {
            w.insert(id, tx);
        }
        let mut unsent = Unsent {
            session: &session,
            id: Some(id),
        };
        // On this caller's thread: no task between it and the socket.
        session
            .wire
            .send(Message::Request { id, body })
            .await
            .map_err(|_| LinkError::Lost(self.site.clone()))?;
        unsent.id = None;
        Ok(Pending {
            site: self.site.clone(),
            answer,
        })
    }

    /// Sends `body` and waits for the answer, at most `timeout`.
    pub async fn call(&self, body: PeerRequest, timeout: Duration) -> Result<PeerReply, LinkError> {
        self.send(body).await?.wait(timeout).await
    }

    /// Drops the current session (the dialer reconnects).
    pub fn reset(&self) {
        if let Some(s) = self.current() {
            s.closed.cancel();
        }
    }
}

/// A request whose frame is not out yet: if its sender fails or is
/// cancelled, nobody waits for its answer (an entry left in `waiting` would
/// also keep the reader from answering writes inline).
struct Unsent<'a> {
    session: &'a Session,
    id: Option<u64>,
}

impl Drop for Unsent<'_> {
    fn drop(&mut self) {
        if let (Some(id), Ok(mut w)) = (self.id, self.session.waiting.lock()) {
            w.remove(&id);
        }
    }
}

/// All peer links of a site.
pub struct Link {
    own: String,
    key: Vec<u8>,
    timeout: Duration,
    /// Each peer's links, indexed by lane (`Lane as usize`).
    peers: HashMap<String, [Arc<PeerLink>; 2]>,
    handshakes: Gate,
    refusals: Arc<RefusalLog>,
}

impl Link {
    /// Links to the peers of `config`, authenticated with `key`; nothing runs until [`Link::start`].
    pub fn new(config: &Config, key: Vec<u8>) -> Link {
        let peers = config
            .peers
            .iter()
            .map(|p| {
                let link = |lane| {
                    Arc::new(PeerLink {
                        site: p.site.clone(),
                        lane,
                        address: p.address.clone(),
                        session: Mutex::new(None),
                        stats: stats::LinkStats::default(),
                    })
                };
                (p.site.clone(), Lane::ALL.map(link))
            })
            .collect();
        Link {
            own: config.site.clone(),
            key,
            timeout: config.link.timeout(),
            peers,
            handshakes: Gate::default(),
            refusals: Arc::new(RefusalLog::new()),
        }
    }

    /// The link to `site` on `lane`.
    pub fn peer(&self, site: &str, lane: Lane) -> Result<&Arc<PeerLink>, LinkError> {
        self.peers
            .get(site)
            .map(|lanes| &lanes[lane as usize])
            .ok_or_else(|| LinkError::UnknownPeer(site.to_string()))
    }

    /// Every peer link (each peer on each lane).
    pub fn peer_links(&self) -> impl Iterator<Item = &Arc<PeerLink>> {
        self.peers.values().flatten()
    }

    /// Link connections refused since start, by reason in fixed words.
    pub fn refused(&self) -> Vec<(&'static str, u64)> {
        self.refusals.totals()
    }

    /// How long to wait for a peer's answer before declaring the link dead.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Accepts on `listener` and dials the peers this site dials, until `stop`.
    pub fn start<H: Handler>(
        self: &Arc<Self>,
        listener: TcpListener,
        handler: Arc<H>,
        stop: CancellationToken,
    ) {
        let link = Arc::clone(self);
        let h = Arc::clone(&handler);
        let s = stop.clone();
        tokio::spawn(async move { link.accept_loop(listener, h, s).await });
        tokio::spawn(Arc::clone(&self.refusals).summarize(stop.clone()));
        for peer in self.peers.values().flatten() {
            if self.own < peer.site {
                let link = Arc::clone(self);
                let (peer, handler, stop) = (Arc::clone(peer), Arc::clone(&handler), stop.clone());
                tokio::spawn(async move { link.dial_loop(peer, handler, stop).await });
            }
        }
    }

    async fn accept_loop<H: Handler>(
        self: Arc<Self>,
        listener: TcpListener,
        handler: Arc<H>,
        stop: CancellationToken,
    ) {
        let sites: Vec<String> = self.peers.keys().cloned().collect();
        // Out of file descriptors, accept fails at every try: say so once a period.
        let accept_errors = Throttle::new(refusals::PERIOD, 8);
        loop {
            let accepted = tokio::select! {
                _ = stop.cancelled() => return,
                a = listener.accept() => a,
            };
            let (stream, from) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    if let Verdict::Say { suppressed } =
                        accept_errors.note("accept", &e.to_string())
                    {
                        let more = suppressed_note(suppressed, refusals::PERIOD);
                        tracing::warn!("link: cannot accept a connection: {e}{more}");
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            // Refused before anything is read: costs no buffer and no task.
            let ticket = match self.handshakes.enter(from.ip()) {
                Ok(ticket) => ticket,
                Err(busy) => {
                    busy.tell(&stream);
                    self.refusals.note(from, busy.kind(), &busy.to_string());
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let (link, handler, stop, sites) = (
                Arc::clone(&self),
                Arc::clone(&handler),
                stop.clone(),
                sites.clone(),
            );
            tokio::spawn(async move {
                let admitted =
                    handshake::accept(stream, &link.own, &sites, &link.key, link.timeout).await;
                drop(ticket);
                match admitted {
                    Ok((site, lane, conn)) => {
                        if let Ok(peer) = link.peer(&site, lane) {
                            let peer = Arc::clone(peer);
                            session::run(peer, conn, handler, stop, link.timeout).await;
                        }
                    }
                    Err(e) => link.refusals.note(from, e.kind(), &chain(&e)),
                }
            });
        }
    }

    async fn dial_loop<H: Handler>(
        self: Arc<Self>,
        peer: Arc<PeerLink>,
        handler: Arc<H>,
        stop: CancellationToken,
    ) {
        let mut backoff = Backoff::default();
        let mut last_error = String::new();
        while !stop.is_cancelled() {
            let attempt = async {
                let stream = TcpStream::connect(&peer.address)
                    .await
                    .map_err(|e| format!("cannot connect to {}: {e}", peer.address))?;
                let _ = stream.set_nodelay(true);
                handshake::dial(
                    stream,
                    &self.own,
                    &peer.site,
                    peer.lane,
                    &self.key,
                    self.timeout,
                )
                .await
                .map_err(|e| chain(&e))
            };
            let result = tokio::select! {
                _ = stop.cancelled() => return,
                r = attempt => r,
            };
            let wait = match result {
                Ok(conn) => {
                    last_error.clear();
                    let (peer, handler) = (Arc::clone(&peer), Arc::clone(&handler));
                    session::run(peer, conn, handler, stop.clone(), self.timeout).await;
                    backoff.reset()
                }
                Err(e) => {
                    // Say each distinct failure once, not at every retry.
                    if e != last_error {
                        tracing::warn!(peer = %peer.site, lane = %peer.lane, "link: {e}; retrying");
                        last_error = e;
                    }
                    backoff.failed()
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// The dialer's wait before the next attempt: [`Backoff::FIRST`] after a
/// session ends or the first failure, doubling with each further failure
/// up to [`Backoff::MAX`].
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    /// The first wait.
    pub const FIRST: Duration = Duration::from_millis(100);
    /// The longest wait.
    pub const MAX: Duration = Duration::from_secs(5);

    /// The wait after a failed attempt; the next one is twice as long.
    pub fn failed(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Backoff::MAX);
        wait
    }

    /// The wait after a session ended; failures start over from the first wait.
    pub fn reset(&mut self) -> Duration {
        self.next = Backoff::FIRST;
        Backoff::FIRST
    }
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            next: Backoff::FIRST,
        }
    }
}

#[cfg(test)]
mod tests {
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
            },
            peers: vec![PeerConfig {
                site: peer.into(),
                address: at,
            }],
            metrics_listen: None,
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

    #[test]
    fn the_dialer_retries_after_100_ms_then_doubles_up_to_5_s() {
        let mut backoff = Backoff::default();
        let waits: Vec<u128> = (0..8).map(|_| backoff.failed().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(backoff.reset(), Duration::from_millis(100));
        assert_eq!(backoff.failed(), Duration::from_millis(100));
    }
}
