//! The network paths to one peer (`[[peers]] paths`, `addresses` or
//! `address`), what each is doing, and the order a lane tries them in.
//!
//! A lane runs over one path at a time. The dialer tries its lane's
//! preferred paths first (`lanes = [...]` of a path), then the others;
//! when a session dies of a transport failure (silence, reset, a cut
//! mid-frame) or a connect fails, it moves to the next path at once. The
//! listener cannot choose: it tells the path of an accepted connection by
//! the addresses at its ends.
//!
//! Touched by the dial and accept tasks, the sessions' reader and writer
//! (bytes, round trips) and the control socket and metrics (status).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hbcore::link::Lane;
use tokio::net::{TcpSocket, TcpStream};

use crate::config::PathConfig;

/// One path to a peer, shared by both lanes.
#[derive(Debug)]
pub struct PathLink {
    /// Its name (`path0`, or as configured).
    pub name: String,
    /// The peer's link address on it.
    pub remote: String,
    /// This site's address on it, if configured.
    pub local: Option<IpAddr>,
    /// Lanes that prefer it (empty: both).
    pub lanes: Vec<Lane>,
    /// Lanes whose session runs over it now (`Lane as usize`).
    using: Mutex<[bool; 2]>,
    /// The last attempt or session over it failed, and none runs now.
    failed: AtomicBool,
    /// When its state last changed, in milliseconds since the epoch.
    since_ms: AtomicU64,
    rtt_us: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
}

/// What `hbctl link status` shows of a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathState {
    /// `up` (a lane runs over it), `down` (its last attempt failed) or
    /// `standby` (usable, unused).
    pub state: &'static str,
    /// Lanes over it now.
    pub lanes: Vec<Lane>,
    /// When the state began, in milliseconds since the epoch.
    pub since_ms: u64,
    /// Last round trip measured over it, in microseconds.
    pub rtt_us: Option<u64>,
    /// Bytes sent over it since start.
    pub bytes_sent: u64,
    /// Bytes received over it since start.
    pub bytes_received: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl PathLink {
    /// A path as configured.
    pub fn new(config: &PathConfig) -> PathLink {
        PathLink {
            name: config.name.clone().unwrap_or_else(|| config.remote.clone()),
            remote: config.remote.clone(),
            local: config.local,
            lanes: config.lanes.clone(),
            using: Mutex::new([false; 2]),
            failed: AtomicBool::new(false),
            since_ms: AtomicU64::new(now_ms()),
            rtt_us: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
        }
    }

    /// Whether `lane` prefers this path.
    pub fn preferred_by(&self, lane: Lane) -> bool {
        self.lanes.is_empty() || self.lanes.contains(&lane)
    }

    /// A session of `lane` began (`true`) or ended (`false`) over it.
    pub(super) fn set_using(&self, lane: Lane, on: bool, failed: bool) {
        if let Ok(mut using) = self.using.lock() {
            using[lane as usize] = on;
        }
        self.set_failed(failed);
        self.since_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// An attempt over it failed, or succeeded.
    pub(super) fn set_failed(&self, failed: bool) {
        if self.failed.swap(failed, Ordering::Relaxed) != failed {
            self.since_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    pub(super) fn note_rtt(&self, rtt: Duration) {
        let us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1);
        self.rtt_us.store(us, Ordering::Relaxed);
    }

    pub(super) fn note_sent(&self, bytes: usize) {
        self.sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(super) fn note_received(&self, bytes: usize) {
        self.received.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Its state now.
    pub fn state(&self) -> PathState {
        let using = self.using.lock().map(|u| *u).unwrap_or_default();
        let lanes: Vec<Lane> = Lane::ALL
            .into_iter()
            .filter(|l| using[*l as usize])
            .collect();
        let state = if !lanes.is_empty() {
            "up"
        } else if self.failed.load(Ordering::Relaxed) {
            "down"
        } else {
            "standby"
        };
        PathState {
            state,
            lanes,
            since_ms: self.since_ms.load(Ordering::Relaxed),
            rtt_us: match self.rtt_us.load(Ordering::Relaxed) {
                0 => None,
                us => Some(us),
            },
            bytes_sent: self.sent.load(Ordering::Relaxed),
            bytes_received: self.received.load(Ordering::Relaxed),
        }
    }

    /// Connects to the peer over this path (from its local address, if
    /// set), within `deadline`: a path that drops packets fails in time
    /// rather than after the kernel's minutes of SYN retries.
    pub(super) async fn connect(&self, deadline: Duration) -> Result<TcpStream, String> {
        let attempt = async {
            let addrs = tokio::net::lookup_host(&self.remote)
                .await
                .map_err(|e| format!("cannot resolve {}: {e}", self.remote))?;
            let mut last = format!("{} resolves to no address", self.remote);
            for addr in addrs {
                if self.local.is_some_and(|l| l.is_ipv4() != addr.is_ipv4()) {
                    continue;
                }
                match self.connect_to(addr).await {
                    Ok(s) => return Ok(s),
                    Err(e) => last = format!("cannot connect to {addr}: {e}"),
                }
            }
            Err(last)
        };
        tokio::time::timeout(deadline, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "cannot connect to {} within {deadline:?}",
                    self.remote
                ))
            })
    }

    async fn connect_to(&self, addr: SocketAddr) -> std::io::Result<TcpStream> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(local) = self.local {
            socket.bind(SocketAddr::new(local, 0))?;
        }
        socket.connect(addr).await
    }

    /// Whether an accepted connection from `peer` to `local` is on this path.
    fn carries(&self, peer: SocketAddr, local: SocketAddr) -> bool {
        if let Some(l) = self.local {
            return l == local.ip();
        }
        self.remote
            .rsplit_once(':')
            .and_then(|(host, _)| host.trim_matches(['[', ']']).parse::<IpAddr>().ok())
            .is_some_and(|ip| ip == peer.ip())
    }
}

/// The order `lane` tries `paths` in: its preferred paths first, each
/// group in configuration order.
pub fn order(paths: &[std::sync::Arc<PathLink>], lane: Lane) -> Vec<usize> {
    let (mut first, mut rest): (Vec<usize>, Vec<usize>) =
        (0..paths.len()).partition(|i| paths[*i].preferred_by(lane));
    first.append(&mut rest);
    first
}

/// The path an accepted connection came over, if one is recognised.
pub fn accepted_on(
    paths: &[std::sync::Arc<PathLink>],
    stream: &TcpStream,
) -> Option<std::sync::Arc<PathLink>> {
    let (peer, local) = (stream.peer_addr().ok()?, stream.local_addr().ok()?);
    paths.iter().find(|p| p.carries(peer, local)).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn path(name: &str, remote: &str, local: Option<&str>, lanes: Vec<Lane>) -> Arc<PathLink> {
        Arc::new(PathLink::new(&PathConfig {
            name: Some(name.into()),
            remote: remote.into(),
            local: local.map(|l| l.parse().expect("ip")),
            lanes,
        }))
    }

    #[test]
    fn a_lane_tries_its_preferred_paths_first() {
        let paths = [
            path("a", "10.0.0.2:7788", None, vec![Lane::Bulk]),
            path("b", "10.1.0.2:7788", None, vec![Lane::Heartbeat]),
            path("c", "10.2.0.2:7788", None, vec![]),
        ];
        assert_eq!(order(&paths, Lane::Bulk), [0, 2, 1]);
        assert_eq!(order(&paths, Lane::Heartbeat), [1, 2, 0]);
    }

    #[test]
    fn a_path_is_up_down_or_standby() {
        let p = path("a", "127.0.0.1:1", None, vec![]);
        assert_eq!(p.state().state, "standby");
        p.set_failed(true);
        assert_eq!(p.state().state, "down");
        p.set_using(Lane::Heartbeat, true, false);
        let s = p.state();
        assert_eq!((s.state, s.lanes), ("up", vec![Lane::Heartbeat]));
        p.set_using(Lane::Heartbeat, false, true);
        assert_eq!(p.state().state, "down");
        let local: SocketAddr = "10.1.0.1:7788".parse().expect("addr");
        let peer: SocketAddr = "10.1.0.2:40000".parse().expect("addr");
        assert!(path("x", "10.1.0.2:7788", None, vec![]).carries(peer, local));
        assert!(path("x", "10.9.0.2:7788", Some("10.1.0.1"), vec![]).carries(peer, local));
        assert!(!path("x", "10.9.0.2:7788", None, vec![]).carries(peer, local));
    }

    #[tokio::test]
    async fn a_connect_that_cannot_complete_fails_within_its_deadline() {
        // Nothing listens on port 1 of loopback: refused at once.
        let p = path("a", "127.0.0.1:1", None, vec![]);
        let e = p
            .connect(Duration::from_secs(5))
            .await
            .expect_err("refused");
        assert!(e.contains("cannot connect to 127.0.0.1:1"), "{e}");
    }
}
