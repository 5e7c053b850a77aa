//! The networks' sockets: one UDP socket per network, bound to this host's
//! address on it, for receiving the peer's heartbeats and sending this
//! host's. The generator side of seed 002 (Fig 5): each socket has a
//! disconnect counter; once it has run out, a send on a network whose
//! receiver hears nothing closes the socket and opens a new one. A socket
//! that cannot be bound (the address is not on a NIC yet, or any more) is
//! retried every tick, so an address that comes back works again without a
//! restart.
//!
//! Each network has a receiver task; it follows its network's socket
//! through a watch channel, so a re-opened socket is picked up at once.
//!
//! [`Networks`] (every network's channel) is shared by the tick task
//! (sends) and the receiver tasks; each disconnect counter is behind a lock.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::watch;

use hbcore::throttle::{suppressed_note, Throttle, Verdict};

use super::analyzer::Analyzer;
use super::controls::absorb;
use super::lock::lock;
use super::shared::Shared;
use crate::hb::config::NetworkConfig;
use crate::hb::logic::checker::At;
use crate::hb::logic::counter::{CounterRule, Disconnect, SocketStep};
use crate::hb::logic::message::Beat;
use crate::hb::logic::table::GroupStatus;
use crate::hb::logic::watch::{Observation, Refusal};

/// A refused datagram is logged at most once per sender address and kind of
/// refusal in this period (with the count of those not logged).
const LOG_PERIOD: Duration = Duration::from_secs(60);
/// Sender addresses (with kinds of refusal) remembered for that; beyond,
/// newcomers share one line.
const LOG_SOURCES: usize = 64;

/// One network's socket and its disconnect counter.
pub struct NetChannel {
    /// The network.
    pub config: NetworkConfig,
    current: watch::Sender<Option<Arc<UdpSocket>>>,
    disconnect: std::sync::Mutex<Disconnect>,
}

/// Whether a bind error may pass at start (and be retried): the address is
/// not (yet) on a NIC of this host.
pub fn retried(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::EADDRNOTAVAIL)
}

impl NetChannel {
    /// The channel of `config`, its socket not opened.
    pub fn new(config: NetworkConfig) -> NetChannel {
        NetChannel {
            config,
            current: watch::Sender::new(None),
            disconnect: std::sync::Mutex::new(Disconnect::default()),
        }
    }

    /// Opens the socket; the disconnect counter starts.
    pub fn open(&self, rule: &CounterRule) -> std::io::Result<()> {
        let std = std::net::UdpSocket::bind(self.config.listen)?;
        std.set_nonblocking(true)?;
        let socket = UdpSocket::from_std(std)?;
        self.current.send_replace(Some(Arc::new(socket)));
        lock(&self.disconnect).opened(rule);
        Ok(())
    }

    /// Closes the socket and opens a new one. The receiver task lets go of
    /// the old one when it sees the change: until then its address is in
    /// use, and the bind is tried again a few times.
    async fn reopen(&self, rule: &CounterRule) -> std::io::Result<()> {
        drop(self.current.send_replace(None));
        let mut tries = 0;
        loop {
            match self.open(rule) {
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                done => return done,
            }
        }
    }

    /// The socket, if open.
    pub fn socket(&self) -> Option<Arc<UdpSocket>> {
        self.current.borrow().clone()
    }

    /// Before a send: keep the socket, or re-open it (Fig 5).
    fn before_send(&self, hears: bool, rule: &CounterRule) -> SocketStep {
        lock(&self.disconnect).before_send(hears, rule)
    }
}

/// Every network's channel: its socket and disconnect counter, each
/// network's receiver task reading it.
pub struct Networks {
    nets: Vec<NetChannel>,
}

impl Networks {
    /// The networks of `nets` (their sockets opened or not).
    pub fn new(nets: Vec<NetChannel>) -> Networks {
        Networks { nets }
    }

    /// How many networks there are (one receiver task each).
    pub fn count(&self) -> usize {
        self.nets.len()
    }

    /// Fig 5 for every network turned on: re-open a silent network's socket
    /// when its disconnect counter has run out (or open one that is
    /// closed), then send `frame` to each peer address on it.
    pub async fn send(&self, shared: &Shared, frame: &[u8]) {
        let rule = shared.config.counter;
        // Each network: whether it is on, whether the peer is heard on it.
        let (on, hearing): (bool, Vec<(bool, bool)>) = {
            let c = shared.checker();
            let t = &c.table;
            let hearing =
                self.nets
                    .iter()
                    .map(|n| {
                        let hears = t.networks.iter().any(|e| {
                            e.name == n.config.name && e.remote_group == GroupStatus::Alive
                        });
                        (t.network_is_on(&n.config.name), hears)
                    })
                    .collect();
            (t.network_on(), hearing)
        };
        if !on {
            return;
        }
        for (net, (net_on, hears)) in self.nets.iter().zip(hearing) {
            if !net_on {
                continue;
            }
            let name = &net.config.name;
            let mut reopened = false;
            let was_closed = net.socket().is_none();
            let opened = match (was_closed, net.before_send(hears, &rule)) {
                (true, _) => Some(net.open(&rule)),
                (false, SocketStep::Reopen) => {
                    reopened = true;
                    Some(net.reopen(&rule).await)
                }
                (false, SocketStep::Send) => None,
            };
            let mut problem = None;
            match opened {
                Some(Ok(())) if was_closed => {
                    tracing::info!(network = %name, listen = %net.config.listen, "network socket open again");
                }
                Some(Ok(())) => {
                    tracing::debug!(network = %name, "silent network: socket closed and re-opened (disconnect counter ran out)");
                }
                Some(Err(e)) => {
                    problem = Some(format!("cannot bind {}: {e}", net.config.listen));
                }
                None => {}
            }
            let mut sent = 0;
            if let Some(socket) = net.socket() {
                for peer in &net.config.peers {
                    match socket.send_to(frame, peer).await {
                        Ok(_) => sent += 1,
                        Err(e) => {
                            tracing::debug!(network = %name, peer = %peer, "network heartbeat not sent: {e}");
                            problem = Some(format!("cannot send to {peer}: {e}"));
                        }
                    }
                }
            }
            let mut c = shared.checker();
            if let Some(entry) = c.table.network_entry(name) {
                if entry.socket_problem != problem {
                    match &problem {
                        Some(p) => {
                            tracing::warn!(network = %name, "network heartbeats not sent: {p}")
                        }
                        None => tracing::info!(network = %name, "network heartbeats sent again"),
                    }
                }
                entry.sent += sent;
                entry.socket_problem = problem;
                entry.reopened += u64::from(reopened);
            }
        }
    }

    /// Receives heartbeats on network `index` until aborted.
    pub async fn receive(
        self: Arc<Self>,
        index: usize,
        shared: Arc<Shared>,
        analyzer: Arc<Analyzer>,
    ) {
        let Some(net) = self.nets.get(index) else {
            return;
        };
        let name = net.config.name.clone();
        let mut current = net.current.subscribe();
        let mut buf = vec![0u8; 65536];
        let throttle = Throttle::new(LOG_PERIOD, LOG_SOURCES);
        loop {
            let socket = current.borrow_and_update().clone();
            let Some(socket) = socket else {
                if current.changed().await.is_err() {
                    return;
                }
                continue;
            };
            loop {
                let received = tokio::select! {
                    r = socket.recv_from(&mut buf) => r,
                    changed = current.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        break;
                    }
                };
                match received {
                    Ok((n, from)) => {
                        datagram(&shared, &analyzer, &name, &buf[..n], from, &throttle).await
                    }
                    Err(e) => {
                        tracing::debug!(network = %name, "network heartbeat receive failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    }
}

/// One datagram on network `name`: a heartbeat taken, or a refusal
/// logged (once a period per sender address, not port, and kind).
async fn datagram(
    shared: &Shared,
    analyzer: &Arc<Analyzer>,
    name: &str,
    bytes: &[u8],
    from: SocketAddr,
    throttle: &Throttle,
) {
    let read = Beat::decode(bytes, &shared.key).map_err(|e| e.to_string());
    let verdict =
        shared
            .checker()
            .network_beat(name, read.as_ref().map_err(String::clone), At::now());
    let refusal = match (verdict, &read) {
        (Ok(Observation::Advanced), Ok(beat)) => {
            absorb(shared, analyzer, beat).await;
            // The watermark is on disk before the next message is
            // taken: a replay stays stale across a crash too.
            shared.save_file();
            return;
        }
        (Ok(Observation::Stale), Ok(beat)) => (
            "replayed",
            format!(
                "heartbeat {} of '{}' is not newer than the last accepted: a replay, or a duplicate",
                beat.serial, beat.sender
            ),
        ),
        (Ok(_), _) => return,
        (Err(r), _) => (r.kind, r.why),
    };
    if let Verdict::Say { suppressed } = throttle.note(&from.ip().to_string(), refusal.0) {
        let note = suppressed_note(suppressed, LOG_PERIOD);
        if refusal.0 == Refusal::Unverified.kind() {
            // Every start meets this once: a peer's first heartbeats
            // before it has heard this host (counted in rejected_echo).
            tracing::info!(network = %name, %from, "network heartbeat not taken (yet): {}{note}", refusal.1);
        } else {
            tracing::warn!(network = %name, %from, "invalid network heartbeat ignored: {}{note}", refusal.1);
        }
    }
}
