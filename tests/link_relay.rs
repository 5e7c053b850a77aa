//! The sealed remote link against a man in the middle: a byte-level relay
//! in this test process, between two real mirrords on loopback, that knows
//! the frame layout but not the key. It alters, replays, drops and cuts
//! write frames, sends a header stating 64 MiB and moves a frame from the
//! heartbeat lane into the bulk lane; each must end the bulk lane's session
//! with its reason (in the standby's log and in `link_frames_rejected`),
//! leave the SVOL's file without anything of the frame, leave the heartbeat
//! lane and its pair alone, and let the pair reconnect and resync to a
//! `pair verify` with 0 differing blocks.
//! Each test needs root and /dev/fuse and says SKIPPED without them.
//!
//! ```text
//!  prod mirrord ──dials──> Relay (port A) ──> standby mirrord (port B)
//!                           prod → standby: frame by frame (handshake frames: 16-byte
//!                             header; sealed frames: 20-byte header, sections and tags);
//!                             the lane is read from each connection's Hello
//!                           standby → prod: bytes as they come
//! ```
//! Threads: one accepting, two per connection (one each way); the test
//! thread arms a fault and waits for the relay to have carried it out.

mod common;

use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{
    backing_file, free_port, pattern, read_all, wait_for, write_at, Options, Site, TwoSites,
};
use hbcore::link::seal::{self, FLAG_SEALED, FLAG_SPLIT};
use hbcore::link::{Lane, Message, FORMAT};
use serde_json::json;

/// What the relay does to the next write frame from prod on the bulk lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// Flip a bit in the middle of its data section.
    Flip,
    /// Forward it and keep a copy (for a replay).
    Record,
    /// Forward nothing of it.
    Drop,
    /// Forward its first half, then close the connection towards the standby.
    Cut,
}

#[derive(Default)]
struct State {
    armed: Option<Fault>,
    /// Keep the next sealed frame from prod on the heartbeat lane.
    record_heartbeat: bool,
    /// A recorded bulk write frame and the connection it came on.
    recorded: Option<(u64, Vec<u8>)>,
    heartbeat_frame: Option<Vec<u8>>,
    /// The newest bulk connection: its id and its way to the standby.
    bulk: Option<(u64, Arc<Mutex<TcpStream>>)>,
    /// Close bulk connections after their Hello (the bulk lane stays down).
    refuse_bulk: bool,
    next_id: u64,
}

/// A relay on the link from prod to the standby, with faults on command.
struct Relay {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl Relay {
    /// Forwards 127.0.0.1:<port> to 127.0.0.1:<upstream>.
    fn start(upstream: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").expect("relay bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for prod in listener.incoming().flatten() {
                let Ok(standby) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let _ = prod.set_nodelay(true);
                let _ = standby.set_nodelay(true);
                let id = {
                    let mut s = shared.lock().expect("relay state");
                    s.next_id += 1;
                    s.next_id
                };
                let (p2, s2) = (
                    prod.try_clone().expect("clone"),
                    standby.try_clone().expect("clone"),
                );
                let to_standby = Arc::new(Mutex::new(standby));
                let state = Arc::clone(&shared);
                std::thread::spawn(move || forward(prod, to_standby, id, state));
                std::thread::spawn(move || back(s2, p2));
            }
        });
        Relay { port, state }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("relay state")
    }

    /// Carries out `fault` on the next write frame from prod on the bulk lane.
    fn arm(&self, fault: Fault) {
        self.state().armed = Some(fault);
    }

    /// Waits until the armed fault has been carried out.
    fn wait_fired(&self) {
        wait_for("the relay to carry out its fault", || {
            self.state().armed.is_none()
        });
    }

    /// The recorded write frame and its connection.
    fn recorded(&self) -> (u64, Vec<u8>) {
        self.state().recorded.clone().expect("a recorded frame")
    }

    /// Keeps the next sealed frame from prod on the heartbeat lane; returns it.
    fn take_heartbeat_frame(&self) -> Vec<u8> {
        self.state().record_heartbeat = true;
        let mut frame = None;
        wait_for("a sealed frame on the heartbeat lane", || {
            frame = self.state().heartbeat_frame.take();
            frame.is_some()
        });
        frame.expect("a heartbeat frame")
    }

    /// Writes `bytes` into the bulk connection `conn` towards the standby,
    /// between two frames (or into the newest bulk connection if `None`).
    fn inject_bulk(&self, bytes: &[u8], conn: Option<u64>) {
        let (id, to) = self.state().bulk.clone().expect("a bulk connection");
        if let Some(conn) = conn {
            assert_eq!(id, conn, "the bulk connection changed since the recording");
        }
        let mut to = to.lock().expect("the bulk connection");
        to.write_all(bytes).expect("inject into the bulk lane");
    }

    /// Closes bulk connections after their Hello while `refuse` holds.
    fn refuse_bulk(&self, refuse: bool) {
        self.state().refuse_bulk = refuse;
    }
}

/// Reads one link frame: a handshake frame (16-byte header) or a sealed one
/// (20-byte header); `None` once the connection ends or the bytes are no frame.
fn read_frame(from: &mut impl Read) -> Option<Vec<u8>> {
    let mut frame = vec![0u8; hbcore::frame::HEADER_LEN];
    from.read_exact(&mut frame).ok()?;
    let len = if frame[5] & FLAG_SEALED != 0 {
        frame.resize(seal::HEADER_LEN, 0);
        from.read_exact(&mut frame[hbcore::frame::HEADER_LEN..])
            .ok()?;
        seal::header(&frame).ok()??.frame_len()
    } else {
        FORMAT.check_header(&frame).ok()??
    };
    let have = frame.len();
    frame.resize(len, 0);
    from.read_exact(&mut frame[have..]).ok()?;
    Some(frame)
}

/// The lane a connection's first frame (the dialer's Hello) asks for.
fn hello_lane(frame: &[u8]) -> Option<Lane> {
    let payload = FORMAT.open(frame, None).ok()?;
    match postcard::from_bytes(payload).ok()? {
        Message::Hello { lane, .. } => Some(lane),
        _ => None,
    }
}

/// Prod to the standby, frame by frame, with the armed faults.
fn forward(prod: TcpStream, to: Arc<Mutex<TcpStream>>, id: u64, state: Arc<Mutex<State>>) {
    let mut from = BufReader::with_capacity(1 << 16, prod);
    let mut lane = None;
    while let Some(mut frame) = read_frame(&mut from) {
        let mut s = state.lock().expect("relay state");
        if lane.is_none() {
            lane = hello_lane(&frame);
            if lane == Some(Lane::Bulk) {
                if s.refuse_bulk {
                    break;
                }
                s.bulk = Some((id, Arc::clone(&to)));
            }
        }
        let sealed = frame[5] & FLAG_SEALED != 0;
        if sealed && lane == Some(Lane::Heartbeat) && s.record_heartbeat {
            s.record_heartbeat = false;
            s.heartbeat_frame = Some(frame.clone());
        }
        let write = sealed && frame[5] & FLAG_SPLIT != 0 && lane == Some(Lane::Bulk);
        let fault = if write { s.armed.take() } else { None };
        let mut out = to.lock().expect("connection to the standby");
        match fault {
            Some(Fault::Flip) => {
                let h = seal::header(&frame)
                    .ok()
                    .flatten()
                    .expect("a sealed header");
                frame[h.head_end() + h.data_len() / 2] ^= 0x20;
            }
            Some(Fault::Record) => s.recorded = Some((id, frame.clone())),
            Some(Fault::Drop) => continue,
            Some(Fault::Cut) => {
                let _ = out.write_all(&frame[..frame.len() / 2]);
                break;
            }
            None => {}
        }
        drop(s);
        if out.write_all(&frame).is_err() {
            break;
        }
    }
    // A FIN, not a reset: the standby reads what was sent, then the end.
    if let Ok(out) = to.lock() {
        let _ = out.shutdown(Shutdown::Write);
    }
}

/// The standby to prod, bytes as they come; its end ends the connection.
fn back(mut standby: TcpStream, mut prod: TcpStream) {
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(n) = standby.read(&mut buf) {
        if n == 0 || prod.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = prod.shutdown(Shutdown::Both);
    let _ = standby.shutdown(Shutdown::Both);
}

/// Two sites whose link runs through a [`Relay`].
fn start(test: &str) -> Option<(TwoSites, Relay)> {
    let standby_port = free_port();
    let relay = Relay::start(standby_port);
    let options = Options {
        relay: Some((relay.port, standby_port)),
        ..Options::default()
    };
    TwoSites::start_with(test, options).map(|sites| (sites, relay))
}

const BLOCK: usize = 4096;

/// Block `at` of a volume file.
fn block(file: &Path, at: u64) -> Vec<u8> {
    let at = at as usize;
    read_all(file)[at..at + BLOCK].to_vec()
}

/// Waits until `site` counts `n` frames rejected for `reason` on pair `name`'s link.
fn wait_rejected(site: &Site, name: &str, reason: &str, n: u64) {
    site.wait_field(name, &format!("/link_frames_rejected/{reason}"), json!(n));
}

/// Turns the standby's metrics endpoint on (a restart of its mirrord) and
/// waits for both lanes to be back; returns the endpoint's port.
fn standby_metrics(sites: &mut TwoSites) -> u16 {
    let port = free_port();
    let standby = &mut sites.standby;
    standby.stop();
    let text = std::fs::read_to_string(&standby.config).expect("config");
    std::fs::write(
        &standby.config,
        format!("metrics_listen = \"127.0.0.1:{port}\"\n{text}"),
    )
    .expect("config");
    let from = standby.log_text().len();
    standby.start();
    wait_for("both lanes up again at the standby", || {
        let log = standby.log_since(from);
        ["lane=bulk", "lane=heartbeat"].iter().all(|lane| {
            log.lines()
                .any(|l| l.contains("remote link up") && l.contains(lane))
        })
    });
    port
}

/// The samples of `GET /metrics` at `port` whose line starts with `prefix`.
fn metric_lines(port: u16, prefix: &str) -> Vec<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to metrics");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .expect("request");
    let mut answer = String::new();
    s.read_to_string(&mut answer).expect("answer");
    answer
        .lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// After a rejection: the pair suspended as for any link loss; then the
/// link back, `pair resync` and PAIR at both sites.
fn suspended_then_resynced(sites: &TwoSites, name: &str) {
    sites.prod.wait_state(name, "PSUE");
    sites.prod.wait_field(name, "/link_up", json!(true));
    sites.prod.ok(&["pair", "resync", name]);
    sites.prod.wait_state(name, "PAIR");
    sites.standby.wait_state(name, "PAIR");
}

/// `pair verify` at prod finds every block of `name` identical.
fn verified_clean(sites: &TwoSites, name: &str, blocks: u64) {
    let out = sites.prod.ok(&["pair", "verify", name, "--watch"]);
    assert!(out.contains(" 0 differ"), "{out}");
    let v = sites.prod.pair(name).expect("pair")["verify"].clone();
    assert_eq!(v["differing_blocks"], 0, "{v}");
    assert_eq!(v["checked_blocks"], blocks, "{v}");
    assert!(sites.identical(name), "the volumes differ");
}

#[test]
fn altered_replayed_and_dropped_frames_end_the_session_and_reach_no_svol() {
    let test = "altered_replayed_and_dropped_frames_end_the_session_and_reach_no_svol";
    let Some((mut sites, relay)) = start(test) else {
        return;
    };
    let metrics = standby_metrics(&mut sites);
    sites.pair("d0", "1MiB", &[]);
    let (pvol, svol) = (sites.prod.file("d0"), backing_file(&sites.standby, "d0"));
    let down = "remote link down: dropped the connection: ";

    // (a) A write's data altered in flight: it does not open.
    let before = pattern(BLOCK, 1);
    write_at(&pvol, 8192, &before);
    assert!(
        block(&svol, 8192) == before,
        "the first write is not at the SVOL"
    );
    relay.arm(Fault::Flip);
    write_at(&pvol, 8192, &pattern(BLOCK, 2));
    relay.wait_fired();
    wait_rejected(&sites.standby, "d0", "open_failed", 1);
    sites.standby.wait_log(&format!(
        "{down}a frame that does not open with this session's key"
    ));
    assert!(
        block(&svol, 8192) == before,
        "the altered write reached the SVOL"
    );
    suspended_then_resynced(&sites, "d0");
    assert!(
        block(&svol, 8192) == pattern(BLOCK, 2),
        "resync missed the write"
    );

    // (b) An earlier write's frame replayed after a newer write to the block.
    relay.arm(Fault::Record);
    write_at(&pvol, 16384, &pattern(BLOCK, 3));
    relay.wait_fired();
    let newer = pattern(BLOCK, 4);
    write_at(&pvol, 16384, &newer);
    assert!(
        block(&svol, 16384) == newer,
        "the newer write is not at the SVOL"
    );
    let (conn, frame) = relay.recorded();
    relay.inject_bulk(&frame, Some(conn));
    wait_rejected(&sites.standby, "d0", "replayed", 1);
    sites.standby.wait_log(&format!("{down}frame counter"));
    sites
        .standby
        .wait_log("a frame this session already received, replayed");
    assert!(
        block(&svol, 16384) == newer,
        "the replayed write rolled the SVOL's block back"
    );
    suspended_then_resynced(&sites, "d0");

    // (c) A write's frame dropped: the next frame skips a counter.
    relay.arm(Fault::Drop);
    write_at(&pvol, 24576, &pattern(BLOCK, 5));
    relay.wait_fired();
    wait_rejected(&sites.standby, "d0", "skipped", 1);
    sites
        .standby
        .wait_log("frames were dropped or reordered in flight");
    assert!(
        block(&svol, 24576) == vec![0u8; BLOCK],
        "the dropped write is at the SVOL"
    );
    suspended_then_resynced(&sites, "d0");
    assert!(
        block(&svol, 24576) == pattern(BLOCK, 5),
        "resync missed the write"
    );

    // Each fault counted once, under its own reason, nothing else refused.
    let rejected = sites.standby.pair_at("d0", "/link_frames_rejected");
    assert_eq!(
        rejected,
        json!({"open_failed": 1, "replayed": 1, "skipped": 1}),
        "{rejected}"
    );
    let mut counted = metric_lines(metrics, "hbmirror_link_frames_rejected");
    counted.sort();
    assert_eq!(
        counted,
        ["open_failed", "replayed", "skipped"].map(|reason| format!(
            "hbmirror_link_frames_rejected_total{{peer=\"prod\",lane=\"bulk\",reason=\"{reason}\"}} 1"
        )),
        "the metrics count each refused frame once, by lane and reason"
    );
    verified_clean(&sites, "d0", 256);
}

#[test]
fn truncated_oversized_and_cross_lane_frames_break_only_the_bulk_lane() {
    let test = "truncated_oversized_and_cross_lane_frames_break_only_the_bulk_lane";
    let Some((sites, relay)) = start(test) else {
        return;
    };
    sites.pair("d0", "1MiB", &[]);
    sites.pair("hb0", "128KiB", &["--kind", "heartbeat"]);
    let (pvol, svol) = (sites.prod.file("d0"), backing_file(&sites.standby, "d0"));
    let (hb, hb_svol) = (sites.prod.file("hb0"), backing_file(&sites.standby, "hb0"));

    // The heartbeat pair keeps mirroring while the bulk lane is down.
    let heartbeat_mirrors = |seed: u8| {
        sites.standby.wait_state("d0", "PSUE");
        let data = pattern(BLOCK, seed);
        write_at(&hb, 0, &data);
        assert!(
            block(&hb_svol, 0) == data,
            "a heartbeat write did not mirror"
        );
        assert_eq!(sites.prod.pair_at("hb0", "/state"), "PAIR");
        assert_eq!(sites.standby.pair_at("hb0", "/state"), "PAIR");
    };

    // Cut in the middle of a write's frame.
    relay.refuse_bulk(true);
    relay.arm(Fault::Cut);
    write_at(&pvol, 0, &pattern(BLOCK, 1));
    relay.wait_fired();
    wait_rejected(&sites.standby, "d0", "truncated", 1);
    sites
        .standby
        .wait_log("dropped the connection: the connection closed in the middle of a frame");
    assert!(
        block(&svol, 0) == vec![0u8; BLOCK],
        "the cut write is at the SVOL"
    );
    heartbeat_mirrors(10);
    relay.refuse_bulk(false);
    suspended_then_resynced(&sites, "d0");

    // A header stating more than the link's 4 MiB: refused at the header.
    let mut header = [0u8; seal::HEADER_LEN];
    header[..4].copy_from_slice(&FORMAT.magic);
    header[4] = FORMAT.version;
    header[5] = FLAG_SEALED;
    header[8..12].copy_from_slice(&(64u32 << 20).to_le_bytes());
    relay.refuse_bulk(true);
    relay.inject_bulk(&header, None);
    wait_rejected(&sites.standby, "d0", "oversized", 1);
    sites
        .standby
        .wait_log("a sealed frame stating 67108864 bytes, over the limit of 4194304");
    heartbeat_mirrors(11);
    relay.refuse_bulk(false);
    suspended_then_resynced(&sites, "d0");

    // A genuine frame of the heartbeat lane, moved into the bulk lane.
    let frame = relay.take_heartbeat_frame();
    relay.refuse_bulk(true);
    relay.inject_bulk(&frame, None);
    wait_rejected(&sites.standby, "d0", "open_failed", 1);
    sites.standby.wait_log("a frame that does not open");
    heartbeat_mirrors(12);
    relay.refuse_bulk(false);
    suspended_then_resynced(&sites, "d0");

    // The heartbeat lane never dropped and refused nothing.
    for site in [&sites.prod, &sites.standby] {
        let log = site.log_text();
        assert!(
            !log.lines()
                .any(|l| l.contains("remote link down") && l.contains("lane=heartbeat")),
            "the heartbeat lane dropped at {}:\n{log}",
            site.name
        );
        assert_eq!(site.pair_at("hb0", "/link_frames_rejected"), json!({}));
    }
    write_at(&pvol, 0, &pattern(BLOCK, 2));
    verified_clean(&sites, "d0", 256);
    verified_clean(&sites, "hb0", 32);
}
