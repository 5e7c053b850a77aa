//! A host's storage path cut (issue 24), hosts apart from their storage
//! (see `hbcluster/hosts.rs`): for less than hbfs's `io_timeout_ms` the
//! host's I/O waits and resumes, every acknowledged write there exactly
//! once and in order; for more, `EIO`, hbd's heartbeat channel over the
//! mirrors judged FAILED while the network channel lives, and no failover.

mod common;
mod hbcluster;

use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use hbcluster::hosts::{Apart, HostSpec};
use hbcluster::netns::End;

const BLOCK: usize = 4096;
/// Blocks of the numbered log; the head block follows them.
const LOG_BLOCKS: u64 = 8000;

/// Block `n` of the log: its number, then bytes that depend on it.
fn numbered(n: u64) -> Vec<u8> {
    let mut b = pattern(BLOCK, (n % 251) as u8);
    b[..8].copy_from_slice(&n.to_le_bytes());
    b[8..16].copy_from_slice(b"hbnumber");
    b
}

/// Writes numbered blocks with O_DSYNC through a host's mount: write n puts
/// block n of the log, then the head block (n again), so a write re-applied
/// late would show as an older head. Counts the acknowledged writes; stops
/// at the first error (kept) or when told.
struct Numbered {
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Numbered {
    fn start(file: PathBuf) -> Numbered {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, s) = (Arc::clone(&done), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DSYNC)
                .open(&file)
                .map_err(|e| format!("open {}: {e}", file.display()))?;
            let head = LOG_BLOCKS * BLOCK as u64;
            for n in 0..LOG_BLOCKS {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let b = numbered(n);
                f.write_all_at(&b, n * BLOCK as u64)
                    .and_then(|()| f.write_all_at(&b, head))
                    .map_err(|e| format!("write {n}: {e}"))?;
                d.store(n + 1, Ordering::SeqCst);
            }
            Ok(())
        });
        Numbered {
            done,
            stop,
            thread: Some(thread),
        }
    }

    fn done(&self) -> u64 {
        self.done.load(Ordering::SeqCst)
    }

    /// Waits until `more` writes beyond now are acknowledged.
    fn wait_more(&self, more: u64, what: &str) {
        let target = self.done() + more;
        wait_for(what, || self.done() >= target);
    }

    /// Stops it; the writes acknowledged.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join()
                .unwrap_or(Err("the writer panicked".into()))
                .expect("no write failed");
        }
        self.done()
    }
}

/// Checks `file` (a site's copy of the volume) after `acked` writes: every
/// one of them there, nothing after them, the head the last one.
fn check_numbered(file: &Path, acked: u64, whose: &str) {
    let bytes = read_all(file);
    for n in 0..acked {
        let at = n as usize * BLOCK;
        assert!(
            bytes[at..at + BLOCK] == numbered(n)[..],
            "{whose}: acknowledged write {n} of {acked} is not there (block holds {:?})",
            u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
        );
    }
    let next = acked as usize * BLOCK;
    assert!(
        bytes[next..next + BLOCK].iter().all(|b| *b == 0),
        "{whose}: a write after the last acknowledged one landed"
    );
    let head = LOG_BLOCKS as usize * BLOCK;
    assert!(
        bytes[head..head + BLOCK] == numbered(acked - 1)[..],
        "{whose}: the head is write {}, not the last acknowledged {} (a write applied twice, late?)",
        u64::from_le_bytes(bytes[head..head + 8].try_into().expect("8 bytes")),
        acked - 1
    );
}

#[test]
fn a_storage_cut_shorter_than_io_timeout_loses_and_doubles_nothing() {
    let test = "a_storage_cut_shorter_than_io_timeout_loses_and_doubles_nothing";
    let Some(mut a) = Apart::start(test, &[HostSpec::full("p1", End::Prod)]) else {
        return;
    };
    // 8000 log blocks and the head: 32 MiB, a sync pair (an acknowledged
    // write is at the SVOL too).
    a.pair("log", "32MiB", &[]);
    // The I/O timeout outlasts mirrord's own verdict on a silent host
    // (pinged after 5 s, dropped after 10 s); hbfs gives a silent session
    // up after a quarter of it and reconnects.
    a.host_mut("p1").mount_with(&["--io-timeout-ms", "30000"]);
    let p1 = a.host("p1");
    let lines = |what: &str| {
        a.prod
            .log_text()
            .lines()
            .filter(|l| l.contains(what) && l.contains("p1"))
            .count()
    };
    let writer = Numbered::start(p1.file("log"));
    writer.wait_more(50, "writes flowing through p1's mount");

    // Two cuts: silence (every packet between p1 and its storage dropped),
    // then p1's end of its veth down. Each lasts until mirrord has given
    // the silent session up (the positive sign that the cut took), well
    // within hbfs's I/O timeout; then the path comes back.
    let cuts: [(&str, &dyn Fn(bool)); 2] = [
        ("silence", &|on| p1.cut_storage(on)),
        ("p1's link down", &|on| p1.storage_link(!on)),
    ];
    for (cut, set) in cuts {
        let (ended, connected) = (lines("session ended"), lines("host connected"));
        set(true);
        let stalled = writer.done();
        wait_for(&format!("mirrord to give p1's session up ({cut})"), || {
            lines("session ended") > ended
        });
        assert!(
            writer.done() <= stalled + 1,
            "writes went on across the cut ({cut}): the path is not cut"
        );
        set(false);
        writer.wait_more(50, &format!("writes resumed after the cut ({cut})"));
        assert!(
            lines("host connected") > connected,
            "p1's hbfs connected anew after the cut ({cut})"
        );
    }

    let acked = writer.finish();
    eprintln!("{acked} writes acknowledged across two cuts");
    assert!(acked < LOG_BLOCKS, "the log did not fill up");
    check_numbered(&a.prod.file("log"), acked, "the PVOL at prod");
    check_numbered(
        &a.standby.file("log"),
        acked,
        "the SVOL at the standby site",
    );
    check_numbered(&p1.file("log"), acked, "p1's own mount");
    assert!(a.host_mut("p1").hbfs.as_mut().is_some_and(|h| h.running()));
}

#[test]
fn a_storage_cut_longer_than_io_timeout_is_eio_and_a_failed_mirror_channel_without_failover() {
    let test =
        "a_storage_cut_longer_than_io_timeout_is_eio_and_a_failed_mirror_channel_without_failover";
    let Some(a) = Apart::two_hosts(test, &["--io-timeout-ms", "2000"]) else {
        return;
    };
    let (p1, s1) = (a.host("p1"), a.hbd("s1"));
    let before = read_all(&a.prod.file("app"));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(p1.file("app"))
        .expect("open app at p1");

    p1.cut_storage(true);
    // The host's I/O fails with EIO once the timeout has passed.
    let e = f
        .write_all_at(&[0xab; BLOCK], 0)
        .and_then(|()| f.sync_data())
        .expect_err("a write while p1's storage is cut");
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    // The positive sign: both hbds judge the mirror channel FAILED, the
    // network channel ALIVE; p1's own mirror devices failed.
    for id in ["s1", "p1"] {
        a.hbd(id)
            .wait_table("the mirror channel FAILED, the network ALIVE", |t| {
                t["remote_group_via_mirrors"] == "FAILED"
                    && t["remote_group_via_network"] == "ALIVE"
            });
    }
    a.hbd("p1").wait_table("p1's hb0 device FAILED", |t| {
        t["devices"].as_array().is_some_and(|d| {
            d.iter()
                .any(|d| d["name"] == "hb0" && d["status"] == "FAILED")
        })
    });
    // Progress after the judgement: twenty more network heartbeats seen at s1.
    s1.wait_advance("network.count", 20);
    assert_eq!(a.lines("failover.count"), 0, "{}", s1.log_text());
    let t = s1.table();
    assert_eq!(t["failed_over"], false, "{t}");
    assert_eq!(a.standby.pair("app").expect("app")["state"], "PAIR");
    assert_eq!(a.prod.pair("app").expect("app")["state"], "PAIR");
    // The path back: the mirror channel returns; the failed write was never
    // applied, not even late; the host's I/O works again.
    p1.cut_storage(false);
    s1.wait_table("the mirror channel ALIVE again", |t| {
        t["remote_group_via_mirrors"] == "ALIVE"
    });
    assert!(
        read_all(&a.prod.file("app")) == before,
        "the failed write landed at prod"
    );
    f.write_all_at(&[0xcd; BLOCK], 0)
        .expect("a write after the cut");
    drop(f);
    for site in [&a.prod, &a.standby] {
        assert_eq!(
            read_all(&site.file("app"))[..BLOCK],
            [0xcd; BLOCK],
            "{}",
            site.name
        );
    }
    assert_eq!(a.lines("failover.count"), 0);
}
