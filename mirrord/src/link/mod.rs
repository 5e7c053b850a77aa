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
//! accepts. A peer may be reached over several network paths ([`paths`]):
//! each lane runs over one at a time, preferring its own, and moves to the
//! next when a connect fails or its session dies.
//!
//! A session lost to a transport failure (silence for half the timeout, a
//! reset, a cut mid-frame) holds its unanswered requests for the other
//! half: the dialer tries the next path at once, and the new session
//! re-sends them, each applied once at the peer (`resume`). A session
//! ended by a refused frame (altered, replayed, out of order: see
//! [`hbcore::link::seal`]), a reset, or no new session in time, fails the
//! requests in flight and tells the handler (`link_down`); the dialer
//! reconnects with backoff ([`Backoff`]: 100 ms doubling to 5 s) once every
//! path has failed in a row.
//!
//! Frames are written by their senders (`wire`) and read by the session's
//! reader (`reader`), which reads a large write's data straight into a
//! pooled aligned buffer ([`Handler::buffers`]) for the disk.
//!
//! After the handshake every frame is sealed ([`hbcore::link::seal`] has the
//! layout in full): the sender's [`Sealer`](hbcore::link::seal::Sealer)
//! lives in the `Wire` (under its lock), the reader task holds the
//! [`Opener`](hbcore::link::seal::Opener).
//!
//! ```text
//!  │ HBLK │ v5 │ flags │ head_len │ len │ counter (u64) │ sealed head/message │ tag │ [sealed write data │ tag] │
//!  └──────────── 20 bytes: the associated data ─────────┘   AES-256-GCM, nonce = section ‖ 0 0 0 ‖ counter
//!  prk    = HKDF-Extract(dialer nonce ‖ listener nonce, pre-shared key)
//!  key(g) = HKDF-Expand(prk, "hbmirror-link-v5" ‖ direction ‖ lane ‖ dialer ‖ listener ‖ g)
//! ```
//! A frame that does not open, repeats or skips a counter ends the session
//! (`remote link down: dropped the connection: ...`), counted by reason in
//! [`stats`] (`link_frames_rejected`); the dialer reconnects with new keys.
//!
//! Until it has proved the key, a peer costs bounded memory and time: a few
//! handshakes at a time ([`admission`]), small frames and one deadline
//! ([`handshake`]); its refusals reach the log counted, not one line each
//! ([`refusals`]).

pub mod admission;
mod backoff;
pub use hbcore::link::handshake;
mod live;
pub mod paths;
mod peer_link;
mod reader;
pub mod refusals;
mod resume;
mod session;
pub mod stats;
mod status;
mod wire;

pub use backoff::Backoff;
pub use peer_link::{PeerLink, Pending};

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hbcore::link::{Lane, PeerError, PeerReply, PeerRequest};
use hbcore::report::chain;
use hbcore::throttle::{suppressed_note, Throttle, Verdict};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use admission::Gate;
use hbio::BufPool;
use paths::PathLink;
use refusals::RefusalLog;
use session::{Ended, Opened};

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

/// All peer links of a site.
pub struct Link {
    own: String,
    key: Vec<u8>,
    /// Whether sessions seal their frames (`[link] seal`).
    seal: bool,
    /// This process, drawn at start (see `Message::Hello`).
    incarnation: u64,
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
                let paths: Arc<[Arc<PathLink>]> = p
                    .path_list()
                    .iter()
                    .map(|c| Arc::new(PathLink::new(c)))
                    .collect();
                let link = |lane| Arc::new(PeerLink::new(&p.site, lane, Arc::clone(&paths)));
                (p.site.clone(), Lane::ALL.map(link))
            })
            .collect();
        Link {
            own: config.site.clone(),
            key,
            seal: config.link.seal,
            incarnation: rand::random(),
            timeout: config.link.timeout(),
            peers,
            handshakes: Gate::default(),
            refusals: Arc::new(RefusalLog::new()),
        }
    }

    /// The link to `site` on `lane`.
    pub fn peer(&self, site: &str, lane: Lane) -> Result<&Arc<PeerLink>, LinkError> {
        // Lane::Host is no lane between sites: as unknown as an unknown site.
        self.peers
            .get(site)
            .and_then(|lanes| lanes.get(lane as usize))
            .ok_or_else(|| LinkError::UnknownPeer(site.to_string()))
    }

    /// Every peer link (each peer on each lane).
    pub fn peer_links(&self) -> impl Iterator<Item = &Arc<PeerLink>> {
        self.peers.values().flatten()
    }

    /// Each peer's lanes and paths, for `link status`.
    pub fn status(&self) -> Vec<hbcore::control::LinkInfo> {
        let mut sites: Vec<&String> = self.peers.keys().collect();
        sites.sort();
        sites
            .into_iter()
            .filter_map(|site| self.peers.get(site))
            .map(|lanes| status::link(&lanes[..], self.seal))
            .collect()
    }

    /// Link connections refused since start, by reason in fixed words.
    pub fn refused(&self) -> Vec<(&'static str, u64)> {
        self.refusals.totals()
    }

    /// What this site brings to a handshake.
    fn credentials(&self) -> handshake::Credentials<'_> {
        handshake::Credentials {
            key: &self.key,
            seal: self.seal,
            incarnation: self.incarnation,
        }
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
                let resuming = |site: &str, lane: Lane, incarnation: u64| {
                    link.peer(site, lane)
                        .is_ok_and(|p| p.would_resume(Some(incarnation)))
                };
                let admit = handshake::admit_sites(&link.own, &sites, &link.key);
                let listening = handshake::Listening {
                    admit: &admit,
                    seal: link.seal,
                    incarnation: link.incarnation,
                    resuming: &resuming,
                };
                let admitted = handshake::accept(stream, &link.own, listening, link.timeout).await;
                drop(ticket);
                match admitted {
                    Ok(a) => {
                        if let Ok(peer) = link.peer(&a.site, a.lane) {
                            let peer = Arc::clone(peer);
                            // Told only once the peer has proved the key.
                            let path = paths::accepted_on(&peer.paths, a.conn.get_ref());
                            let opened = Opened {
                                keys: a.keys,
                                incarnation: a.incarnation,
                                path,
                                resume: a.resume,
                            };
                            session::run(peer, a.conn, opened, handler, stop, link.timeout).await;
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
        // Which of the lane's paths to try next, and how many failed in a row.
        let (mut next, mut failures) = (0usize, 0usize);
        let count = peer.order.len().max(1);
        while !stop.is_cancelled() {
            let Some(path) = peer
                .order
                .get(next % count)
                .map(|i| Arc::clone(&peer.paths[*i]))
            else {
                return;
            };
            let attempt = async {
                let stream = path.connect(self.timeout / 2).await?;
                let _ = stream.set_nodelay(true);
                handshake::dial(
                    stream,
                    &self.own,
                    &peer.site,
                    peer.lane,
                    self.credentials(),
                    peer.would_resume(None),
                    self.timeout,
                )
                .await
                .map_err(|e| chain(&e))
            };
            let result = tokio::select! {
                _ = stop.cancelled() => return,
                r = attempt => r,
            };
            let ended = match result {
                Ok(a) => {
                    last_error.clear();
                    path.set_failed(false);
                    let opened = Opened {
                        keys: a.keys,
                        incarnation: a.incarnation,
                        path: Some(Arc::clone(&path)),
                        resume: a.resume,
                    };
                    let (peer, handler) = (Arc::clone(&peer), Arc::clone(&handler));
                    Some(
                        session::run(peer, a.conn, opened, handler, stop.clone(), self.timeout)
                            .await,
                    )
                }
                Err(e) => {
                    path.set_failed(true);
                    // Say each distinct failure once, not at every retry.
                    if e != last_error {
                        tracing::warn!(peer = %peer.site, lane = %peer.lane, path = %path.name, "link: {e}; retrying");
                        last_error = e;
                    }
                    None
                }
            };
            let wait = match ended {
                // A session that ran: the next attempt goes at once, over the
                // next path if this one failed under it.
                Some(Ended::Resumable) => {
                    failures = 1;
                    next += usize::from(count > 1);
                    backoff.reset();
                    Duration::ZERO
                }
                Some(Ended::Final) => {
                    failures = 0;
                    backoff.reset()
                }
                None => {
                    failures += 1;
                    next += 1;
                    // Every path failed in a row: back off before the next round.
                    if failures % count == 0 {
                        backoff.failed()
                    } else {
                        Duration::ZERO
                    }
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod paths_tests;
#[cfg(test)]
mod tests;
