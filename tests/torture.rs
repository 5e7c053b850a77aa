//! Torture runs with real processes, counted by a checker rather than
//! timed: what each write returned is recorded, and the standby is checked
//! against that record.
//!
//! - kill -9 of the production mirrord in the middle of a stream of sync
//!   writes: every write that returned success is at the standby;
//! - the link cut and restored while writes go on, cycle after cycle: after
//!   each resync both copies are byte-identical, and the resync moved exactly
//!   the blocks that were dirty;
//! - a backing store that fails (a PVOL on a tiny tmpfs filled up): the
//!   host gets ENOSPC, the pair suspends with the error named, every write
//!   acknowledged before the fault is at both sites after the resync, and a
//!   second pair keeps mirroring during the fault;
//! - garbage and floods on the link port, the control socket and hbd's UDP
//!   port (random bytes, huge stated lengths, wrong CRCs, hundreds of idle
//!   connections): each refused (closed, answered or counted) with a bounded
//!   number of log lines, the daemons' RSS bounded, and the pair and the
//!   heartbeats going on.
//!
//! `scripts/test.sh` runs a short form (a few trials). `scripts/torture.sh N`
//! runs N trials of each (HBMIRROR_TORTURE_TRIALS) and prints the figures
//! docs/reliability.md quotes. Needs root and /dev/fuse.

mod common;
mod hbcluster;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{
    closed_by_peer, header_stating, pattern, read_all, trials, vm_rss_kib, wait_for, warn_lines,
    write_at, Options, SmallFs, TwoSites,
};
use hbcluster::Cluster;
use hbcore::link::{Lane, Message, FORMAT};

const BLOCK: u64 = 4096;
/// Blocks of the torture volume (4 MiB).
const BLOCKS: u64 = 1024;

/// The contents of block `n` in write `round`: unique per (round, block).
fn block(round: u32, n: u64) -> Vec<u8> {
    let mut data = pattern(BLOCK as usize, (round % 251) as u8 ^ (n % 256) as u8);
    data[..8].copy_from_slice(&n.to_le_bytes());
    data[8..12].copy_from_slice(&(round + 1).to_le_bytes());
    data
}

/// Writes blocks in order through `path` until `stop` or an error; returns
/// the blocks whose write returned success (all of them synchronous).
fn writer(path: std::path::PathBuf, round: u32, stop: Arc<AtomicBool>) -> Vec<u64> {
    let mut acked = Vec::new();
    let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path) else {
        return acked;
    };
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let b = n % BLOCKS;
        if f.write_all_at(&block(round, b), b * BLOCK).is_err() {
            break;
        }
        acked.retain(|x| *x != b);
        acked.push(b);
        n += 1;
    }
    acked
}

#[test]
fn kill_9_during_sync_writes_loses_no_acknowledged_write() {
    let name = "kill_9_during_sync_writes_loses_no_acknowledged_write";
    let rounds = trials(2);
    let mut checked = 0usize;
    for round in 0..rounds {
        let Some(mut sites) = TwoSites::start(name) else {
            return;
        };
        sites.pair("d", "4MiB", &["--mode", "sync"]);
        let stop = Arc::new(AtomicBool::new(false));
        let (path, flag) = (sites.prod.file("d"), Arc::clone(&stop));
        let writing = std::thread::spawn(move || writer(path, round, flag));
        // Kill at a different point of the stream each round.
        wait_for("writes under way", || {
            read_all(&sites.standby.file("d"))[8..12] == (round + 1).to_le_bytes()
        });
        std::thread::sleep(Duration::from_millis(u64::from(round % 7) * 13));
        sites.prod.kill();
        stop.store(true, Ordering::Relaxed);
        let acked = writing.join().expect("writer");
        let standby = read_all(&sites.standby.file("d"));
        for b in &acked {
            let at = (*b * BLOCK) as usize;
            assert_eq!(
                &standby[at..at + BLOCK as usize],
                &block(round, *b)[..],
                "round {round}: block {b} was acknowledged to the host but is not at the standby"
            );
        }
        checked += acked.len();
        drop(sites);
    }
    eprintln!(
        "torture: kill -9 during sync writes: {rounds} trials, {checked} acknowledged writes checked at the standby, 0 lost"
    );
}

#[test]
fn link_cuts_while_writing_end_identical_and_resync_moves_exactly_the_dirty_blocks() {
    let name = "link_cuts_while_writing_end_identical_and_resync_moves_exactly_the_dirty_blocks";
    let Some(sites) = TwoSites::start_with(
        name,
        Options {
            proxy: true,
            ..Options::default()
        },
    ) else {
        return;
    };
    sites.pair("d", "4MiB", &["--mode", "sync"]);
    let cycles = trials(3);
    let mut moved = 0u64;
    for round in 0..cycles {
        sites.proxy().cut();
        sites.prod.wait_state("d", "PSUE");
        // Scattered writes while cut: some blocks twice.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(sites.prod.file("d"))
            .expect("open");
        for i in 0..(8 + round as u64 % 5) {
            let b = (i * 97 + u64::from(round) * 31) % BLOCKS;
            f.write_all_at(&block(round, b), b * BLOCK)
                .expect("write while cut");
        }
        let dirty = sites.prod.pair_u64("d", "pending_bytes");
        assert!(dirty > 0, "round {round}: the writes are tracked");
        sites.proxy().restore();
        wait_for("the link back", || {
            sites.prod.pair("d").is_some_and(|p| p["link_up"] == true)
        });
        sites.prod.ok(&["pair", "resync", "d"]);
        sites.prod.wait_state("d", "PAIR");
        let copied = sites.prod.pair_u64("d", "copy.copied_bytes");
        assert_eq!(
            copied, dirty,
            "round {round}: the resync moved exactly the dirty blocks"
        );
        assert!(sites.identical("d"), "round {round}: both copies equal");
        moved += copied;
    }
    eprintln!(
        "torture: link cut and restored {cycles} times while writing: identical after every resync, {} KiB moved = the dirty blocks",
        moved / 1024
    );
}

/// Reads `len` bytes at `offset` of the file at `path`.
fn read_at(path: &std::path::Path, offset: u64, len: usize) -> Vec<u8> {
    let mut back = vec![0u8; len];
    std::fs::File::open(path)
        .and_then(|f| f.read_exact_at(&mut back, offset))
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    back
}

#[test]
fn a_failing_backing_store_suspends_its_pair_loses_nothing_and_the_other_pair_keeps_mirroring() {
    let name =
        "a_failing_backing_store_suspends_its_pair_loses_nothing_and_the_other_pair_keeps_mirroring";
    let Some(sites) = TwoSites::start(name) else {
        return;
    };
    let small = SmallFs::mount(&sites.root.path().join("small"), "8m");
    let path = small.path("d.vol");
    let path = path.to_str().expect("utf-8 path");
    sites.prod.ok(&[
        "volume", "create", "d", "--size", "4MiB", "--sparse", "--path", path,
    ]);
    sites
        .standby
        .ok(&["volume", "create", "d", "--size", "4MiB"]);
    sites.prod.ok(&[
        "pair", "create", "d", "--pvol", "d", "--peer", "standby", "--mode", "sync",
    ]);
    sites.prod.wait_state("d", "PAIR");
    sites.standby.wait_state("d", "PAIR");
    sites.pair("o", "1MiB", &["--mode", "sync"]);
    let rounds = trials(2);
    let (mut acked, mut other_writes) = (0usize, 0u64);
    let rss_before = sites.prod.rss_kib();
    let mut rss_peak = rss_before;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(sites.prod.file("d"))
        .expect("open d");
    // Blocks 0..4 are rewritten each round (acknowledged before the fault);
    // block 16 + round was never written: the write there needs space.
    let kept: Vec<u64> = (0..4).collect();
    for round in 0..rounds {
        for b in &kept {
            f.write_all_at(&block(round, *b), b * BLOCK)
                .expect("a write before the fault");
            acked += 1;
        }
        let log_at = sites.prod.log_text().len();
        small.fill();
        let hole = 16 + u64::from(round) % (BLOCKS - 16);
        let err = f
            .write_all_at(&block(round, hole), hole * BLOCK)
            .expect_err("a write that needs space on the full disk fails");
        assert!(
            matches!(err.raw_os_error(), Some(libc::ENOSPC | libc::EIO)),
            "round {round}: the host gets ENOSPC or EIO, not {err}"
        );
        sites.prod.wait_state("d", "PSUE");
        sites.standby.wait_state("d", "PSUE");
        wait_for("the error named in prod's log", || {
            sites
                .prod
                .log_since(log_at)
                .contains("the PVOL write failed")
        });
        // During the fault the other pair mirrors: its write is at the standby.
        let b = u64::from(round) % 256;
        let data = block(round, b);
        write_at(&sites.prod.file("o"), b * BLOCK, &data);
        assert!(
            read_at(&sites.standby.file("o"), b * BLOCK, BLOCK as usize) == data,
            "round {round}: the other pair's write is not at the standby during the fault"
        );
        other_writes += 1;
        rss_peak = rss_peak.max(sites.prod.rss_kib());
        small.free();
        sites.prod.ok(&["pair", "resync", "d"]);
        sites.prod.wait_state("d", "PAIR");
        sites.standby.wait_state("d", "PAIR");
        let (here, there) = (
            read_all(&sites.prod.file("d")),
            read_all(&sites.standby.file("d")),
        );
        for b in &kept {
            let at = (*b * BLOCK) as usize;
            let want = block(round, *b);
            assert!(
                here[at..at + BLOCK as usize] == want[..]
                    && there[at..at + BLOCK as usize] == want[..],
                "round {round}: acknowledged block {b} is not the same at both sites"
            );
        }
        assert!(
            here == there,
            "round {round}: both copies equal after the resync"
        );
        if u64::from(round) < BLOCKS - 16 {
            let at = (hole * BLOCK) as usize;
            assert!(
                there[at..at + BLOCK as usize].iter().all(|x| *x == 0),
                "round {round}: the SVOL keeps a write the host was told failed"
            );
        }
    }
    eprintln!(
        "torture: failing backing store (full disk under the PVOL): {rounds} trials, {rounds} faults \
         (ENOSPC to the host, PSUE with the error named), {acked} acknowledged writes identical at both \
         sites after resync, {other_writes} writes of a second pair mirrored during the faults, losses: 0, \
         max RSS {rss_peak} KiB (+{} KiB)",
        rss_peak.saturating_sub(rss_before)
    );
}

/// Pseudo-random bytes (xorshift), so each round's garbage differs.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Lines of `log` that say an input was refused or ignored.
fn refusal_lines(log: &str) -> usize {
    log.lines()
        .filter(|l| l.contains("refused") || l.contains("ignored") || l.contains("control socket:"))
        .count()
}

/// Datagrams hbd refused: no valid heartbeat, not newer, or refused by name.
fn refused(hbd: &common::Hbd) -> u64 {
    let t = hbd.table();
    [
        "rejected_invalid",
        "rejected_replayed",
        "rejected_echo",
        "rejected_instance",
        "rejected_time_back",
        "rejected_serial_jump",
    ]
    .iter()
    .map(|k| t[*k].as_u64().unwrap_or(0))
    .sum()
}

/// One round of garbage on the standby mirrord's link port; how many bad
/// inputs were sent. Every connection must be closed by the daemon.
fn link_garbage(port: u16, noise: &mut Noise) -> u64 {
    let mut conns = Vec::new();
    let connect = || {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the link port");
        s.set_write_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        s
    };
    for _ in 0..10 {
        // Random bytes.
        let mut s = connect();
        let _ = s.write_all(&noise.bytes(4096));
        conns.push(s);
        // A huge stated length.
        let mut s = connect();
        let _ = s.write_all(&header_stating(FORMAT.max_payload - 1));
        let _ = s.write_all(&noise.bytes(16 << 10));
        conns.push(s);
        // A Hello with a wrong CRC.
        let hello = Message::Hello {
            site: "prod".into(),
            to: "standby".into(),
            nonce: [7; hbcore::link::NONCE_LEN],
            lane: Lane::Heartbeat,
            seal: true,
            incarnation: 7,
            resume: false,
        };
        let payload = postcard::to_allocvec(&hello).expect("encode");
        let mut frame = FORMAT.encode(&payload, None).expect("frame");
        let last = frame.len() - 1;
        frame[last] ^= 0xff;
        let mut s = connect();
        let _ = s.write_all(&frame);
        conns.push(s);
    }
    let sent = conns.len() as u64;
    // Hundreds of idle connections.
    let idle: Vec<TcpStream> = (0..200).map(|_| connect()).collect();
    let open = conns
        .iter()
        .chain(idle.iter())
        .filter(|s| !closed_by_peer(s, Duration::from_secs(5)))
        .count();
    assert_eq!(open, 0, "link connections the standby did not close");
    sent + idle.len() as u64
}

/// One round of garbage on a mirrord's control socket: a line far over the
/// limit, random bytes, hundreds of idle clients while hbctl still works.
fn control_garbage(site: &common::Site, noise: &mut Noise) -> u64 {
    let answer = |c: &UnixStream| {
        let mut line = String::new();
        let _ = BufReader::new(c).read_line(&mut line);
        line
    };
    let c = UnixStream::connect(&site.socket).expect("connect to the control socket");
    let mut writer = c.try_clone().expect("clone");
    let sender = std::thread::spawn(move || {
        let chunk = vec![b'a'; 64 << 10];
        for _ in 0..64 {
            if writer.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let line = answer(&c);
    sender.join().expect("sender");
    assert!(line.contains("longer than 65536 bytes"), "{line}");
    let mut c = UnixStream::connect(&site.socket).expect("connect to the control socket");
    let mut junk: Vec<u8> = noise
        .bytes(512)
        .into_iter()
        .filter(|b| *b != b'\n')
        .collect();
    junk.push(b'\n');
    c.write_all(&junk).expect("send junk");
    let line = answer(&c);
    assert!(
        line.contains("not UTF-8") || line.contains("malformed control request"),
        "{line}"
    );
    let idle: Vec<UnixStream> = (0..200)
        .map(|_| UnixStream::connect(&site.socket).expect("an idle control client"))
        .collect();
    site.ok(&["volume", "list"]);
    drop(idle);
    202
}

#[test]
fn garbage_and_floods_on_every_port_are_refused_with_bounded_logs_and_memory_and_service_goes_on() {
    let name =
        "garbage_and_floods_on_every_port_are_refused_with_bounded_logs_and_memory_and_service_goes_on";
    let Some(c) = Cluster::start(name) else {
        return;
    };
    let rounds = trials(2);
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mirrord = &c.sites.standby;
    let hbd_pid = c.standby.pid().expect("hbd running");
    let (m_before, h_before) = (mirrord.rss_kib(), vm_rss_kib(hbd_pid));
    let (mut m_peak, mut h_peak) = (m_before, h_before);
    // A real heartbeat to corrupt: a wrong CRC/MAC on a well-formed datagram.
    c.to_standby.record(true);
    wait_for("a heartbeat recorded", || {
        !c.to_standby.recorded().is_empty()
    });
    c.to_standby.record(false);
    let heartbeat = c.to_standby.recorded()[0].clone();
    let (mut bad, mut log_lines) = (0u64, 0usize);
    for round in 0..rounds {
        let (m_log, h_log) = (mirrord.log_text().len(), c.standby.log_text().len());
        bad += link_garbage(mirrord.port, &mut noise);
        bad += control_garbage(mirrord, &mut noise);
        // hbd's UDP port: random datagrams, oversized ones, corrupted
        // heartbeats, in batches the socket's buffer holds; each counted.
        let mut sent = 0u64;
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        for batch in 0..15usize {
            let before = refused(&c.standby);
            for i in 0..20usize {
                let datagram = match (batch + i) % 3 {
                    0 => {
                        let len = 1 + (noise.next() % 1400) as usize;
                        noise.bytes(len)
                    }
                    // Over any heartbeat's size; one near the UDP limit a
                    // batch, so the burst fits the socket's receive buffer.
                    1 if i == 1 => noise.bytes(60_000),
                    1 => noise.bytes(9_000),
                    _ => {
                        let mut d = heartbeat.clone();
                        let at = (noise.next() as usize) % d.len();
                        d[at] ^= 0x01;
                        d
                    }
                };
                socket
                    .send_to(&datagram, ("127.0.0.1", c.standby_port))
                    .expect("send a datagram");
            }
            wait_for("hbd to count every bad datagram as rejected", || {
                refused(&c.standby) >= before + 20
            });
            sent += 20;
        }
        bad += sent;
        m_peak = m_peak.max(mirrord.rss_kib());
        h_peak = h_peak.max(vm_rss_kib(hbd_pid));
        // Service goes on: a synchronous write is at the standby, heartbeats advance.
        let offset = u64::from(round % 16) * (64 << 10);
        let data = pattern(64 << 10, round as u8);
        write_at(&c.sites.prod.file("app"), offset, &data);
        assert!(
            read_at(&mirrord.file("app"), offset, data.len()) == data,
            "round {round}: the pair stopped mirroring under the garbage"
        );
        c.standby.wait_advance("network.count", 3);
        let (m_new, h_new) = (mirrord.log_since(m_log), c.standby.log_text());
        let h_new = h_new.get(h_log..).unwrap_or_default();
        let lines = refusal_lines(&m_new) + refusal_lines(h_new);
        assert!(
            lines <= 40,
            "round {round}: {lines} log lines for the garbage, the bound is 40:\n{m_new}\n{h_new}"
        );
        assert!(
            warn_lines(&m_new).len() <= 40,
            "round {round}: too many WARN lines:\n{m_new}"
        );
        log_lines += lines;
    }
    let log = mirrord.log_text();
    assert!(log.contains("link: refused a connection from"), "{log}");
    assert!(
        log.contains("control socket: control request longer than 65536 bytes"),
        "{log}"
    );
    assert!(
        c.standby.log_text().contains("ignored"),
        "hbd logged no refusal"
    );
    let (m_grown, h_grown) = (
        m_peak.saturating_sub(m_before),
        h_peak.saturating_sub(h_before),
    );
    assert!(
        m_grown < 32 << 10,
        "mirrord RSS {m_before} -> {m_peak} KiB; the bound is +32 MiB"
    );
    assert!(
        h_grown < 16 << 10,
        "hbd RSS {h_before} -> {h_peak} KiB; the bound is +16 MiB"
    );
    eprintln!(
        "torture: garbage and floods on the link port, control socket and hbd UDP port: {rounds} rounds, \
         {bad} bad inputs tried, all refused with {log_lines} log lines, losses: 0, max RSS mirrord \
         {m_peak} KiB (+{m_grown} KiB), hbd {h_peak} KiB (+{h_grown} KiB)"
    );
}
