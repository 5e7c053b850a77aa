//! Torture runs with real processes, counted by a checker rather than
//! timed: what each write returned is recorded, and the standby is checked
//! against that record.
//!
//! - kill -9 of the production mirrord in the middle of a stream of sync
//!   writes: every write that returned success is at the standby;
//! - the link cut and restored while writes go on, cycle after cycle: after
//!   each resync both copies are byte-identical, and the resync moved exactly
//!   the blocks that were dirty.
//!
//! `scripts/test.sh` runs a short form (a few trials). `scripts/torture.sh N`
//! runs N trials of each (HBMIRROR_TORTURE_TRIALS) and prints the figures
//! the README's Reliability section quotes. Needs root and /dev/fuse.

mod common;

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{pattern, read_all, wait_for, Options, TwoSites};

const BLOCK: u64 = 4096;
/// Blocks of the torture volume (4 MiB).
const BLOCKS: u64 = 1024;

/// Trials of each torture, from HBMIRROR_TORTURE_TRIALS (default: a short form).
fn trials(short: u32) -> u32 {
    std::env::var("HBMIRROR_TORTURE_TRIALS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(short)
}

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
