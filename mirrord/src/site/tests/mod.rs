//! Two sites in one process, talking over a loopback link: no root, no FUSE,
//! no mount. Each test waits for states by polling with a deadline.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hbcore::control::{HeldBy, PairCreate, PairInfo, PairOptions, PairSet, VolumeCreate};
use hbcore::link::{Lane, PeerError, PeerRequest};
use hbcore::vocab::{Kind, Mode, PairState};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::peer::SiteHandler;
use super::{Site, SiteError};
use crate::bitmap::BLOCK;
use crate::config::{Config, LinkConfig, PeerConfig};
use crate::link::{Link, LinkError};
use crate::pair::machine::Event;
use hbio::IoEngine;

/// Longest any test waits for a state.
const DEADLINE: Duration = Duration::from_secs(20);
/// The volumes' size: 64 blocks.
pub(super) const SIZE: u64 = 256 << 10;

/// One site of the pair of test sites, stopped when dropped.
pub(super) struct TestSite {
    pub(super) site: Arc<Site>,
    link: Arc<Link>,
    stop: CancellationToken,
    _dir: TempDir,
}

impl Drop for TestSite {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TestSite {
    /// `site`'s config in `dir`, its link listening on `listen`, its one peer at `peer_address`.
    fn config(
        site: &str,
        dir: &Path,
        listen: std::net::SocketAddr,
        peer: &str,
        peer_address: String,
    ) -> Config {
        let psk_file = dir.join("psk");
        std::fs::write(&psk_file, "an in-process test key, 32 bytes").expect("write psk");
        Config {
            site: site.into(),
            data_dir: dir.join("data"),
            control_socket: dir.join("control.sock"),
            mount: None,
            fuse_transport: Default::default(),
            link: LinkConfig {
                listen,
                psk_file,
                timeout_ms: 2000,
                seal: true,
            },
            peers: vec![PeerConfig::at(peer, peer_address)],
            metrics_listen: None,
            hosts: None,
        }
    }

    /// Wires a site as `daemon::run` does, without the control socket and the mount.
    fn start(config: &Config, listener: TcpListener, dir: TempDir) -> TestSite {
        let key = config.link_key().expect("psk");
        std::fs::create_dir_all(&config.data_dir).expect("data_dir");
        let link = Arc::new(Link::new(config, key));
        let stop = CancellationToken::new();
        let site = Site::open(config, IoEngine::start(), Arc::clone(&link), stop.clone());
        let site = Arc::new(site.expect("open the site"));
        link.start(
            listener,
            Arc::new(SiteHandler(Arc::clone(&site))),
            stop.clone(),
        );
        site.start();
        TestSite {
            site,
            link,
            stop,
            _dir: dir,
        }
    }

    fn pair(&self, name: &str) -> PairInfo {
        let mut pairs = self.site.pair_status(Some(name)).expect("pair status");
        pairs.pop().expect("one pair")
    }

    /// Waits until the pair's status satisfies `ok`; panics with the last status at the deadline.
    async fn wait(&self, name: &str, what: &str, ok: impl Fn(&PairInfo) -> bool) -> PairInfo {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let info = self.pair(name);
            if ok(&info) {
                return info;
            }
            assert!(
                Instant::now() < deadline,
                "{}: no {what} within {DEADLINE:?}: {info:?}",
                self.site.name()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub(super) async fn wait_state(&self, name: &str, state: PairState) -> PairInfo {
        self.wait(name, &state.to_string(), |p| p.state == state)
            .await
    }

    /// Waits until both lanes to the other site are up (or down).
    async fn wait_link(&self, up: bool) {
        let lanes =
            Lane::ALL.map(|lane| Arc::clone(self.link.peer(self.other(), lane).expect("peer")));
        let deadline = Instant::now() + DEADLINE;
        while lanes.iter().any(|l| l.is_up() != up) {
            assert!(
                Instant::now() < deadline,
                "the link is not {}",
                if up { "up" } else { "down" }
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn other(&self) -> &str {
        if self.site.name() == "prod" {
            "standby"
        } else {
            "prod"
        }
    }

    async fn read(&self, volume: &str, offset: u64, len: usize) -> Vec<u8> {
        self.site
            .host_read(volume, offset, len)
            .await
            .expect("host read")
    }
}

/// A production site and a standby site linked over loopback, each with a volume `v`.
pub(super) async fn two_sites() -> (TestSite, TestSite) {
    let prod_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let standby_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let prod_addr = prod_listener.local_addr().expect("address");
    let standby_addr = standby_listener.local_addr().expect("address");
    let (prod_dir, standby_dir) = (
        TempDir::new().expect("tempdir"),
        TempDir::new().expect("tempdir"),
    );
    let prod_config = TestSite::config(
        "prod",
        prod_dir.path(),
        prod_addr,
        "standby",
        standby_addr.to_string(),
    );
    let standby_config = TestSite::config(
        "standby",
        standby_dir.path(),
        standby_addr,
        "prod",
        prod_addr.to_string(),
    );
    let prod = TestSite::start(&prod_config, prod_listener, prod_dir);
    let standby = TestSite::start(&standby_config, standby_listener, standby_dir);
    for site in [&prod, &standby] {
        site.site
            .volume_create(&VolumeCreate {
                name: "v".into(),
                size: Some(SIZE),
                path: None,
                sparse: false,
            })
            .expect("volume create");
    }
    prod.wait_link(true).await;
    standby.wait_link(true).await;
    (prod, standby)
}

/// The request that pairs volume `v` at prod with `v` at standby as `name`.
fn create(name: &str, kind: Kind, mode: Mode) -> PairCreate {
    PairCreate {
        name: name.into(),
        pvol: "v".into(),
        peer: "standby".into(),
        svol: None,
        kind,
        mode,
        options: PairOptions::default(),
    }
}

/// Pairs `v` at prod with `v` at standby as data pair `p`, and waits for PAIR at both.
async fn paired(prod: &TestSite, standby: &TestSite, mode: Mode) {
    prod.site
        .pair_create(&create("p", Kind::Data, mode))
        .await
        .expect("pair create");
    prod.wait_state("p", PairState::Pair).await;
    standby.wait_state("p", PairState::Pair).await;
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

mod data;
mod faults;
mod hosts;
