//! Crash consistency of the SVOL under writes in flight together: eight
//! host threads write fresh blocks through hbfs at once (queue depth 8), in
//! sync and in adaptive mode, of 4 KiB (applied by the SVOL's link reader)
//! and of 128 KiB (read into pooled buffers, opened and applied by the
//! session's answerer task), and the standby's mirrord is killed
//! with kill -9 in the middle of the stream. Its volume file, read straight
//! from the standby's disk, must honour the order the host saw: a write
//! issued after another had completed is never there without it (the
//! writes that were in flight together may be there in any subset).
//!
//! The checker keeps, for each write, how many writes had completed when
//! it was issued, and the global order of completions; a write present at
//! the SVOL whose predecessors (in that order) are not all present is a
//! violation. `scripts/torture.sh N` runs N trials of each mode
//! (HBMIRROR_TORTURE_TRIALS); the test suite a short form. Needs root and
//! /dev/fuse.

mod common;

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{pattern, read_all, trials, wait_for, TwoSites};

/// Writer threads: writes in flight together.
const THREADS: u64 = 8;
/// Each thread's region (the volume: THREADS × REGION = 32 MiB).
const REGION: u64 = 4 << 20;

/// The contents of block `id` (of `bs` bytes) in `round`: unique per (round, block).
fn block(round: u32, id: u64, bs: u64) -> Vec<u8> {
    let mut data = pattern(bs as usize, (round % 251) as u8 ^ (id % 256) as u8);
    data[..8].copy_from_slice(&id.to_le_bytes());
    data[8..12].copy_from_slice(&(round + 1).to_le_bytes());
    data
}

/// What the writers saw: per write (its block), how many writes had
/// completed when it was issued; and the completions in order.
#[derive(Default)]
struct Record {
    issued: Vec<(u64, usize)>,
    completed: Vec<u64>,
}

/// Thread `t`'s writes: its blocks in order, each issued after its last
/// one completed, until `stop`, its region's end or an error.
fn writer(
    path: std::path::PathBuf,
    (round, t, bs): (u32, u64, u64),
    stop: Arc<AtomicBool>,
    rec: Arc<Mutex<Record>>,
) {
    let Ok(f) = std::fs::OpenOptions::new().write(true).open(&path) else {
        return;
    };
    let per = REGION / bs;
    for n in 0..per {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let id = t * per + n;
        if let Ok(mut r) = rec.lock() {
            let done = r.completed.len();
            r.issued.push((id, done));
        }
        if f.write_all_at(&block(round, id, bs), id * bs).is_err() {
            return;
        }
        if let Ok(mut r) = rec.lock() {
            r.completed.push(id);
        }
    }
}

/// One trial: (writes issued, present at the SVOL).
fn trial(name: &str, mode: &str, bs: u64, round: u32) -> Option<(usize, usize)> {
    let mut sites = TwoSites::start(name)?;
    let size = format!("{}MiB", (THREADS * REGION) >> 20);
    sites.pair("w", &size, &["--mode", mode, "--skew", &size]);
    let stop = Arc::new(AtomicBool::new(false));
    let rec = Arc::new(Mutex::new(Record::default()));
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (path, stop, rec) = (sites.prod.file("w"), Arc::clone(&stop), Arc::clone(&rec));
            std::thread::spawn(move || writer(path, (round, t, bs), stop, rec))
        })
        .collect();
    let completed = || rec.lock().map_or(0, |r| r.completed.len());
    // Kill at a different point of the stream each round.
    let total = (THREADS * REGION / bs) as usize;
    let at = total / 16 + total / 64 * (round as usize % 11);
    wait_for("writes under way", || completed() >= at);
    std::thread::sleep(Duration::from_millis(u64::from(round % 5) * 7));
    sites.standby.kill();
    // The stream goes on at the PVOL a little longer, then stops.
    let now = completed();
    wait_for("writes after the kill", || {
        completed() >= now + total / 64 || writers.iter().all(|w| w.is_finished())
    });
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    let svol = read_all(&sites.standby.dir.join("data/volumes/w.vol"));
    let present = |id: u64| {
        let at = (id * bs) as usize;
        svol.get(at..at + bs as usize) == Some(&block(round, id, bs)[..])
    };
    let rec = rec.lock().expect("record");
    // The first completion (in order) missing at the SVOL: no write issued
    // after it completed may be there.
    let first_missing = rec.completed.iter().position(|id| !present(*id));
    let mut there = 0;
    for (id, done) in &rec.issued {
        if !present(*id) {
            continue;
        }
        there += 1;
        if let Some(k) = first_missing {
            assert!(
                *done <= k,
                "{mode}, {bs} B, round {round}: block {id} is at the SVOL, but it was issued after block {} had completed, which is not",
                rec.completed[k]
            );
        }
    }
    Some((rec.issued.len(), there))
}

#[test]
fn kill_9_of_the_standby_during_qd8_writes_keeps_the_write_order_at_the_svol() {
    let name = "kill_9_of_the_standby_during_qd8_writes_keeps_the_write_order_at_the_svol";
    let runs = [
        ("sync", 4096),
        ("adaptive", 4096),
        ("sync", 128 << 10),
        ("adaptive", 128 << 10),
    ];
    for (mode, bs) in runs {
        let (mut issued, mut there) = (0, 0);
        let rounds = trials(2);
        for round in 0..rounds {
            let Some((i, t)) = trial(name, mode, bs, round) else {
                return;
            };
            assert!(
                t > 0,
                "{mode}, {bs} B, round {round}: nothing reached the SVOL"
            );
            (issued, there) = (issued + i, there + t);
        }
        eprintln!(
            "torture: kill -9 of the standby during qd 8 {mode} writes of {} KiB: {rounds} trials, {issued} writes issued, {there} at the SVOL, order violations: 0",
            bs >> 10
        );
    }
}
