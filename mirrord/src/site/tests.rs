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
use crate::pair::machine::Event;
use crate::bitmap::BLOCK;
use crate::config::{Config, LinkConfig, PeerConfig};
use crate::io::IoEngine;
use crate::link::{Link, LinkError};

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
            },
            peers: vec![PeerConfig {
                site: peer.into(),
                address: peer_address,
            }],
            metrics_listen: None,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_create_copies_the_pvol_then_pairs() {
    let (prod, standby) = two_sites().await;
    let before = pattern(SIZE as usize, 1);
    prod.site
        .host_write("v", 0, &before)
        .await
        .expect("unpaired write");
    prod.site
        .pair_create(&create("p", Kind::Data, Mode::Sync))
        .await
        .expect("pair create");
    let p = prod.wait_state("p", PairState::Pair).await;
    standby.wait_state("p", PairState::Pair).await;
    assert_eq!(
        p.copy.copied_bytes, SIZE,
        "the initial copy moves the whole volume"
    );
    assert_eq!(p.pending_bytes, 0);
    assert_eq!(standby.read("v", 0, SIZE as usize).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_write_is_on_the_svol_when_it_returns() {
    let (prod, standby) = two_sites().await;
    paired(&prod, &standby, Mode::Sync).await;
    for (i, offset) in [0u64, 4096, 5000, SIZE - 100].into_iter().enumerate() {
        let data = pattern(100, i as u8);
        prod.site
            .host_write("v", offset, &data)
            .await
            .expect("write");
        assert_eq!(
            standby.read("v", offset, 100).await,
            data,
            "offset {offset}"
        );
    }
    // Whole blocks: one pooled buffer is the frame and the PVOL's write.
    for (offset, blocks) in [(8192u64, 1), (16384, 2)] {
        let data = pattern(blocks * BLOCK as usize, offset as u8 ^ 0x55);
        prod.site
            .host_write("v", offset, &data)
            .await
            .expect("write");
        for site in [&prod, &standby] {
            assert_eq!(
                site.read("v", offset, data.len()).await,
                data,
                "at {offset}"
            );
        }
    }
    assert_eq!(prod.pair("p").pending_bytes, 0);
    // The SVOL is read-only to hosts while mirrored.
    let e = standby
        .site
        .host_write("v", 0, b"no")
        .await
        .expect_err("SVOL write");
    assert!(matches!(e, SiteError::ReadOnly { .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semi_sync_and_adaptive_writes_ship_and_settle() {
    let (prod, standby) = two_sites().await;
    paired(&prod, &standby, Mode::SemiSync).await;
    let first = pattern(3 * BLOCK as usize, 3);
    for (i, block) in first.chunks(BLOCK as usize).enumerate() {
        prod.site
            .host_write("v", i as u64 * BLOCK, block)
            .await
            .expect("write");
    }
    let settled = |p: &PairInfo| p.pending_bytes == 0 && p.queued_bytes == 0;
    let p = prod.wait("p", "zero lag", settled).await;
    assert!(
        p.max_in_flight <= 1,
        "semi-sync keeps one write in flight: {p:?}"
    );
    assert_eq!(standby.read("v", 0, first.len()).await, first);

    prod.site
        .pair_set(&PairSet {
            name: "p".into(),
            mode: Some(Mode::Adaptive),
            options: PairOptions::default(),
        })
        .await
        .expect("pair set");
    assert_eq!(standby.pair("p").mode, Mode::Adaptive, "the peer follows");
    let second = pattern(16 * BLOCK as usize, 4);
    for (i, block) in second.chunks(BLOCK as usize).enumerate() {
        prod.site
            .host_write("v", (8 + i as u64) * BLOCK, block)
            .await
            .expect("write");
    }
    prod.wait("p", "zero lag", settled).await;
    assert_eq!(standby.read("v", 8 * BLOCK, second.len()).await, second);
    assert_eq!(prod.read("v", 8 * BLOCK, second.len()).await, second);
    assert_eq!(prod.pair("p").state, PairState::Pair);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_link_suspends_and_resync_copies_exactly_the_dirty_blocks() {
    let (prod, standby) = two_sites().await;
    paired(&prod, &standby, Mode::Sync).await;
    // Drop the session: both sides suspend; the dialer reconnects, and a data
    // pair (no auto-resync) waits for a person.
    prod.link.peer("standby", Lane::Bulk).expect("peer").reset();
    prod.wait_state("p", PairState::Psue).await;
    standby.wait_state("p", PairState::Psue).await;
    let data = pattern(100, 5);
    prod.site
        .host_write("v", 10 * BLOCK + 7, &data)
        .await
        .expect("write while suspended");
    assert_eq!(
        prod.pair("p").pending_bytes,
        BLOCK,
        "the written block is tracked"
    );
    prod.site
        .host_write("v", 20 * BLOCK, &pattern(2 * BLOCK as usize, 6))
        .await
        .expect("write");
    assert_eq!(prod.pair("p").pending_bytes, 3 * BLOCK);
    assert_ne!(standby.read("v", 10 * BLOCK + 7, 100).await, data);

    prod.wait_link(true).await;
    prod.wait("p", "re-attach", |p| p.link_up).await;
    let said = prod.site.pair_resync("p", false).await.expect("resync");
    assert!(said.contains("COPY"), "{said}");
    let p = prod.wait_state("p", PairState::Pair).await;
    standby.wait_state("p", PairState::Pair).await;
    assert_eq!(
        p.copy.copied_bytes,
        3 * BLOCK,
        "exactly the dirty blocks move"
    );
    assert_eq!(p.pending_bytes, 0);
    assert_eq!(standby.read("v", 10 * BLOCK + 7, 100).await, data);
}

/// The copy rate controller: `pair set` takes its knobs (both sites show
/// them); a resync beside host reads of the data pair's volume is held by
/// host I/O (first at its floor: the reads' idle latency is not known
/// yet), says so in `pair status` (`held_by`), and still copies exactly the
/// dirty blocks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resync_held_by_host_io_copies_exactly_the_dirty_blocks() {
    const FLOOR: u64 = 16 << 10;
    const CEILING: u64 = 1 << 20;
    let (prod, standby) = two_sites().await;
    paired(&prod, &standby, Mode::Sync).await;
    let set = |c_max_rate, c_min_rate| PairSet {
        name: "p".into(),
        mode: None,
        options: PairOptions {
            c_max_rate,
            c_min_rate,
            ..PairOptions::default()
        },
    };
    let e = prod
        .site
        .pair_set(&set(Some(100), None))
        .await
        .expect_err("a ceiling below a block per second");
    assert!(e.to_string().contains("c-max-rate"), "{e}");
    let said = prod
        .site
        .pair_set(&set(Some(CEILING), Some(FLOOR)))
        .await
        .expect("pair set");
    assert!(said.contains("ceiling 1MiB/s"), "{said}");
    for site in [&prod, &standby] {
        let p = site.pair("p");
        assert_eq!((p.c_max_rate, p.c_min_rate), (CEILING, FLOOR), "{p:?}");
    }

    prod.link.peer("standby", Lane::Bulk).expect("peer").reset();
    prod.wait_state("p", PairState::Psue).await;
    // Every block: 256 KiB, a quarter of a second at the ceiling.
    let dirty: Vec<u64> = (0..SIZE / BLOCK).collect();
    for &b in &dirty {
        prod.site
            .host_write("v", b * BLOCK, &pattern(BLOCK as usize, b as u8))
            .await
            .expect("write while suspended");
    }
    prod.wait_link(true).await;
    prod.wait("p", "re-attach", |p| p.link_up).await;

    // Host reads of the data pair's volume go on at prod while the resync runs.
    let reading = CancellationToken::new();
    let reader = tokio::spawn({
        let (site, reading) = (Arc::clone(&prod.site), reading.clone());
        async move {
            while !reading.is_cancelled() {
                let _ = site.host_read("v", 0, BLOCK as usize).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    });
    prod.site.pair_resync("p", false).await.expect("resync");
    let held = prod
        .wait("p", "a copy held by host I/O", |p| {
            p.copy.held_by == HeldBy::HostIo || p.state == PairState::Pair
        })
        .await;
    assert!(
        held.copy.running
            && held.copy.held_by_host_io
            && (FLOOR..CEILING).contains(&held.copy.limit_bytes_per_s),
        "the copy showed the controller's hold while hosts read: {held:?}"
    );
    let p = prod.wait_state("p", PairState::Pair).await;
    reading.cancel();
    reader.await.expect("reader");
    assert_eq!(
        p.copy.copied_bytes,
        dirty.len() as u64 * BLOCK,
        "exactly the dirty blocks move"
    );
    assert!(
        !p.copy.running && p.copy.limit_bytes_per_s == 0 && p.copy.held_by == HeldBy::None,
        "{p:?}"
    );
    for b in dirty {
        assert_eq!(
            standby.read("v", b * BLOCK, BLOCK as usize).await,
            pattern(BLOCK as usize, b as u8),
            "block {b}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_peer_suspends_the_pair_and_counts_the_write() {
    let (prod, standby) = two_sites().await;
    paired(&prod, &standby, Mode::Sync).await;
    standby.stop.cancel();
    prod.wait_state("p", PairState::Psue).await;
    prod.site
        .host_write("v", 0, b"after the peer stopped")
        .await
        .expect("write");
    assert_eq!(prod.pair("p").pending_bytes, BLOCK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_illegal_transition_is_a_typed_error() {
    let (prod, standby) = two_sites().await;
    paired(&prod, &standby, Mode::Sync).await;
    standby.site.pair_takeover("p").await.expect("takeover");
    assert_eq!(standby.pair("p").state, PairState::Ssws);
    prod.wait_state("p", PairState::Psue).await;

    // Asked over the link: SSWS cannot go to PAIR, and the answer says so by kind.
    let asked = prod
        .link
        .peer("standby", Lane::Bulk)
        .expect("peer")
        .call(
            PeerRequest::Update {
                pair: "p".into(),
                state: Some(PairState::Pair),
                settings: None,
            },
            Duration::from_secs(5),
        )
        .await;
    match asked {
        Err(LinkError::Refused(site, PeerError::WrongState { pair, state, .. })) => {
            assert_eq!(
                (site.as_str(), pair.as_str(), state),
                ("standby", "p", PairState::Ssws)
            );
        }
        other => panic!("expected a WrongState refusal, got {other:?}"),
    }
    assert_eq!(
        standby.pair("p").state,
        PairState::Ssws,
        "the refused change left the pair"
    );

    // A pair the peer does not have is a kind of its own.
    let asked = prod
        .link
        .peer("standby", Lane::Bulk)
        .expect("peer")
        .call(
            PeerRequest::TakeBitmap {
                pair: "nosuch".into(),
            },
            Duration::from_secs(5),
        )
        .await;
    assert!(
        matches!(asked, Err(LinkError::Refused(_, PeerError::NoSuchPair { ref pair })) if pair == "nosuch"),
        "{asked:?}"
    );

    // Locally: the registry refuses it too, naming the pair and both states.
    let e = standby
        .site
        .change_state("p", Event::PeerSet(PairState::Pair), "test")
        .expect_err("SSWS -> PAIR");
    assert!(
        matches!(e, SiteError::IllegalTransition { from: PairState::Ssws, to: PairState::Pair, ref pair } if pair == "p"),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(
        text.contains("'p'") && text.contains("SSWS") && text.contains("PAIR"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_from_the_peer_reads_as_one_chain() {
    let (prod, standby) = two_sites().await;
    standby.site.volume_delete("v").expect("volume delete");
    let e = prod
        .site
        .pair_create(&create("p", Kind::Data, Mode::Sync))
        .await
        .expect_err("no SVOL");
    assert!(
        matches!(
            e,
            SiteError::Link(LinkError::Refused(_, PeerError::Refused { .. }))
        ),
        "{e:?}"
    );
    assert_eq!(
        hbcore::report::chain(&e),
        format!("site 'standby' refused: no volume 'v' at site 'standby'; create it there first with `hbctl volume create v --size {SIZE}`")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_at_both_sites_after_a_takeover_are_split_brain_until_a_person_chooses() {
    use hbcore::control::{PairResync, VerdictKind};
    let (prod, standby) = two_sites().await;
    paired(&prod, &standby, Mode::Sync).await;
    let joined = prod.pair("p").generation;
    assert_eq!(standby.pair("p").generation.current, joined.current);
    // Production writes while the link is down, before it can learn of the takeover.
    prod.link.peer("standby", Lane::Bulk).expect("peer").reset();
    prod.wait_state("p", PairState::Psue).await;
    prod.site
        .host_write("v", 8 * BLOCK, b"prod")
        .await
        .expect("write while suspended");
    standby.site.pair_takeover("p").await.expect("takeover");
    // Told by the takeover: outdated, and no write is taken from now on.
    prod.wait("p", "outdated", |p| p.outdated).await;
    let e = prod
        .site
        .host_write("v", 9 * BLOCK, b"late")
        .await
        .expect_err("outdated");
    assert!(matches!(e, SiteError::Outdated { .. }), "{e}");
    let taken = standby.pair("p").generation;
    assert_ne!(
        taken.current, joined.current,
        "a takeover starts a generation"
    );
    assert_eq!(taken.bitmap, joined.current);
    standby
        .site
        .host_write("v", 0, b"standby")
        .await
        .expect("write");
    assert_eq!(prod.pair("p").generation.bitmap, joined.current);
    let e = prod.site.pair_resync("p", false).await.expect_err("plain");
    assert!(
        matches!(e, SiteError::Diverged { .. }) && e.to_string().contains("split brain"),
        "{e}"
    );
    for site in [&prod, &standby] {
        let v = site.pair("p").verdict.expect("verdict");
        assert_eq!(v.kind, VerdictKind::SplitBrain);
        assert_eq!((v.local_changed_blocks, v.peer_changed_blocks), (1, 1));
    }
    assert_eq!(standby.pair("p").state, PairState::Ssws, "nothing moved");
    prod.site
        .resync_as_asked(&PairResync {
            name: "p".into(),
            reverse: false,
            discard_local: false,
            discard_remote: true,
        })
        .await
        .expect("keep prod's data");
    assert!(!prod.pair("p").outdated, "resolved by a person");
    prod.wait_state("p", PairState::Pair).await;
    standby.wait_state("p", PairState::Pair).await;
    assert_eq!(
        standby.read("v", 0, SIZE as usize).await,
        prod.read("v", 0, SIZE as usize).await
    );
    assert_eq!(
        prod.pair("p").verdict.map(|v| v.kind),
        Some(VerdictKind::InSync)
    );
    assert_eq!(
        standby.pair("p").generation.current,
        prod.pair("p").generation.current
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_marks_what_changed_behind_the_svol_and_checksum_resync_skips_the_rest() {
    use hbcore::control::PairVerify;
    use std::os::unix::fs::FileExt;
    let (prod, standby) = two_sites().await;
    paired(&prod, &standby, Mode::Sync).await;
    let path = standby.site.volume_list()[0].path.clone();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|f| f.write_all_at(b"behind mirrord", 5 * BLOCK + 9))
        .expect("write the backing file");
    let verify = PairVerify {
        name: "p".into(),
        rate: None,
    };
    let e = standby.site.pair_verify(&verify).expect_err("at the SVOL");
    assert!(e.to_string().contains("at the PVOL's site 'prod'"), "{e}");
    prod.site.pair_verify(&verify).expect("verify");
    let p = prod.wait("p", "verify done", |p| !p.verify.running).await;
    assert_eq!(p.verify.differing_blocks, 1);
    assert_eq!(p.verify.first_differing_offsets, vec![5 * BLOCK]);
    assert_eq!(p.verify.checked_blocks, SIZE / BLOCK);
    assert_eq!(p.pending_bytes, BLOCK);
    // A host write into part of the block leaves it dirty: the rest still differs.
    prod.site
        .host_write("v", 5 * BLOCK, b"x")
        .await
        .expect("write");
    assert_eq!(prod.pair("p").pending_bytes, BLOCK);
    prod.site
        .pair_set(&PairSet {
            name: "p".into(),
            mode: None,
            options: PairOptions {
                checksum_resync: Some(true),
                ..PairOptions::default()
            },
        })
        .await
        .expect("checksum resync on");
    assert!(standby.pair("p").checksum_resync, "the peer follows");
    // The split ships what is pending first (the whole block: repaired), then
    // ten blocks are rewritten with what they hold and one really changes.
    prod.site.pair_split("p", false).await.expect("split");
    assert_eq!(
        standby.read("v", 5 * BLOCK, BLOCK as usize).await,
        prod.read("v", 5 * BLOCK, BLOCK as usize).await
    );
    prod.site
        .host_write("v", 30 * BLOCK, b"changed")
        .await
        .expect("write");
    for b in 10..20 {
        let same = prod.read("v", b * BLOCK, BLOCK as usize).await;
        prod.site
            .host_write("v", b * BLOCK, &same)
            .await
            .expect("write");
    }
    assert_eq!(prod.pair("p").pending_bytes, 11 * BLOCK);
    prod.site.pair_resync("p", false).await.expect("resync");
    let p = prod.wait_state("p", PairState::Pair).await;
    assert_eq!(p.copy.skipped_identical_blocks, 10);
    assert_eq!(p.copy.copied_bytes, BLOCK);
    assert_eq!(
        standby.read("v", 0, SIZE as usize).await,
        prod.read("v", 0, SIZE as usize).await
    );
}

/// Sync writes of one volume are pipelined: while the SVOL holds the first
/// (its volume's order lock is taken here, so no ack can come back), the
/// other writers' writes still go on the wire; all land alike at both sites
/// and leave the bitmap clean.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sync_writes_of_one_volume_are_in_flight_together() {
    const WRITERS: u64 = 8;
    let (prod, standby) = two_sites().await;
    paired(&prod, &standby, Mode::Sync).await;
    let svol = standby.site.inner().volume("v").expect("the SVOL");
    let held = svol.order.lock().await;
    let writers: Vec<_> = (0..WRITERS)
        .map(|b| {
            let site = Arc::clone(&prod.site);
            tokio::spawn(async move {
                let data = pattern(BLOCK as usize, 40 + b as u8);
                site.host_write("v", b * BLOCK, &data).await
            })
        })
        .collect();
    // With the order lock held over the ack wait, the first write would be
    // alone on the wire until it timed out and suspended the pair.
    let p = prod
        .wait("p", "a second write in flight", |p| {
            p.max_in_flight > 1 || p.state != PairState::Pair
        })
        .await;
    drop(held);
    for w in writers {
        w.await.expect("writer task").expect("sync write");
    }
    assert!(p.max_in_flight > 1, "writes were pipelined: {p:?}");
    let p = prod.pair("p");
    assert_eq!(p.state, PairState::Pair, "{p:?}");
    assert_eq!(p.pending_bytes, 0, "every ack cleared its block: {p:?}");
    let len = (WRITERS * BLOCK) as usize;
    let written = prod.read("v", 0, len).await;
    for b in 0..WRITERS {
        let at = (b * BLOCK) as usize..((b + 1) * BLOCK) as usize;
        assert_eq!(
            written[at],
            pattern(BLOCK as usize, 40 + b as u8),
            "block {b}"
        );
    }
    assert_eq!(standby.read("v", 0, len).await, written, "both sites alike");
}

/// A copy reads its frames ahead of the wire, outside the order lock: a
/// host write to a frame's blocks after the read (already mirrored and
/// acknowledged) must not be overwritten at the SVOL by the frame's older
/// data; the frame is read again when it goes on the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_frame_read_before_a_host_write_ships_the_newer_data() {
    let (prod, standby) = two_sites().await;
    paired(&prod, &standby, Mode::Sync).await;
    let block = 5u64;
    let w = prod.site.work("p").expect("work");
    let mut pacer = crate::rate::Pacer::default();
    let frame = prod
        .site
        .read_frame("p", &w, false, false, block, block + 1, &mut pacer)
        .await
        .expect("read a frame");
    let newer = pattern(BLOCK as usize, 77);
    prod.site
        .host_write("v", block * BLOCK, &newer)
        .await
        .expect("sync write");
    assert_eq!(
        standby.read("v", block * BLOCK, BLOCK as usize).await,
        newer
    );
    let shipped = prod
        .site
        .send_frame("p", &w, false, frame)
        .await
        .expect("send the frame");
    prod.site
        .acked(&w, shipped, Duration::from_secs(5))
        .await
        .expect("ack");
    assert!(
        standby.read("v", block * BLOCK, BLOCK as usize).await == newer,
        "the SVOL keeps the acknowledged write, not the frame's older data"
    );
    assert_eq!(prod.pair("p").pending_bytes, 0);
}

/// During a copy, a host write into part of a block the copy has yet to
/// list (its first sweep lists 64 dirty runs at a time) is acknowledged
/// without clearing the block: the copy still ships the whole of it, and
/// both sites end alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_write_during_a_copy_leaves_the_block_to_the_copy() {
    const BLOCKS: u64 = 160;
    let (prod, standby) = two_sites().await;
    for site in [&prod, &standby] {
        site.site
            .volume_create(&VolumeCreate {
                name: "w".into(),
                size: Some(BLOCKS * BLOCK),
                path: None,
                sparse: false,
            })
            .expect("volume create");
    }
    // 65 dirty runs before block `late`, copied at 64 blocks a second.
    let late = 140u64;
    for b in (0..=128).step_by(2).chain([late]) {
        prod.site
            .host_write("w", b * BLOCK, &pattern(BLOCK as usize, b as u8))
            .await
            .expect("unpaired write");
    }
    let mut request = create("q", Kind::Data, Mode::Sync);
    request.pvol = "w".into();
    prod.site.pair_create(&request).await.expect("pair create");
    prod.wait_state("q", PairState::Pair).await;
    prod.site
        .pair_set(&PairSet {
            name: "q".into(),
            mode: None,
            options: PairOptions {
                c_max_rate: Some(64 * BLOCK),
                c_min_rate: Some(0),
                ..PairOptions::default()
            },
        })
        .await
        .expect("pair set");
    // Dirty blocks the resync copies (not all: the initial copy would).
    prod.link.peer("standby", Lane::Bulk).expect("peer").reset();
    prod.wait_state("q", PairState::Psue).await;
    for b in (0..=128).step_by(2).chain([late]) {
        prod.site
            .host_write("w", b * BLOCK, &pattern(BLOCK as usize, 200 - b as u8))
            .await
            .expect("write while suspended");
    }
    prod.wait_link(true).await;
    prod.wait("q", "re-attach", |p| p.link_up).await;
    prod.site.pair_resync("q", false).await.expect("resync");
    prod.site
        .host_write("w", late * BLOCK + 1000, &pattern(100, 99))
        .await
        .expect("a partial write while copying");
    let p = prod.pair("q");
    assert!(
        p.state == PairState::Copy && p.copy.copied_bytes < 32 * BLOCK,
        "the copy had not listed block {late} yet (the case under test): {p:?}"
    );
    prod.wait_state("q", PairState::Pair).await;
    standby.wait_state("q", PairState::Pair).await;
    let at = late * BLOCK;
    assert!(
        standby.read("w", at, BLOCK as usize).await == prod.read("w", at, BLOCK as usize).await,
        "block {late} is the PVOL's whole block at the SVOL"
    );
}
