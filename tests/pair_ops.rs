//! Remote-copy modes and pair operations with two real sites: link cuts
//! through a fault-injecting proxy, restarts, split, resync, takeover,
//! reverse resync and split protection. Needs root and /dev/fuse.

mod common;

use std::os::unix::fs::FileExt;
use std::process::Command;

use common::{pattern, read_all, wait_for, write_at, Options, TwoSites};

fn with_proxy(test: &str) -> Option<TwoSites> {
    TwoSites::start_with(
        test,
        Options {
            proxy: true,
            ..Options::default()
        },
    )
}

const BLOCK: u64 = 4096;

#[test]
fn a_link_cut_suspends_and_the_resync_copies_only_the_dirty_blocks() {
    let Some(sites) = with_proxy("a_link_cut_suspends_and_the_resync_copies_only_the_dirty_blocks")
    else {
        return;
    };
    sites.pair("data0", "16MiB", &[]);
    sites.pair("hb0", "1MiB", &["--kind", "heartbeat"]);
    sites.proxy().cut();
    for pair in ["data0", "hb0"] {
        sites.prod.wait_state(pair, "PSUE");
        sites.standby.wait_state(pair, "PSUE");
    }
    // Writes go on at the PVOL and are tracked: three scattered blocks, one
    // of them written twice and one write crossing a block boundary.
    let f = sites.prod.file("data0");
    write_at(&f, 0, &pattern(4096, 1));
    write_at(&f, 7 << 20, &pattern(100, 2));
    write_at(&f, 7 << 20, &pattern(200, 3));
    write_at(&f, (12 << 20) - 10, &pattern(20, 4));
    write_at(
        &sites.prod.file("hb0"),
        8192,
        b"heartbeat while the link is down",
    );
    assert_eq!(sites.prod.pair_u64("data0", "pending_bytes"), 4 * BLOCK);
    assert!(!sites.identical("data0"));

    sites.proxy().restore();
    // The heartbeat pair resyncs by itself; the data pair waits for a person.
    sites.prod.wait_state("hb0", "PAIR");
    assert_eq!(sites.prod.pair_u64("hb0", "copy.total_bytes"), BLOCK);
    assert!(sites.identical("hb0"));
    sites.prod.wait_log("re-attached; suspended (PSUE)");
    assert_eq!(sites.prod.pair("data0").expect("pair")["state"], "PSUE");
    sites.prod.ok(&["pair", "resync", "data0"]);
    sites.prod.wait_state("data0", "PAIR");
    sites.standby.wait_state("data0", "PAIR");
    assert_eq!(
        sites.prod.pair_u64("data0", "copy.copied_bytes"),
        4 * BLOCK,
        "exactly the dirty blocks are copied"
    );
    assert!(sites.identical("data0"), "volumes differ after the resync");
}

#[test]
fn a_restart_while_suspended_keeps_the_bitmap() {
    let Some(mut sites) = with_proxy("a_restart_while_suspended_keeps_the_bitmap") else {
        return;
    };
    sites.pair("data0", "4MiB", &[]);
    sites.proxy().cut();
    sites.prod.wait_state("data0", "PSUE");
    write_at(&sites.prod.file("data0"), 5 * BLOCK, &pattern(3 * 4096, 9));
    assert_eq!(sites.prod.pair_u64("data0", "pending_bytes"), 3 * BLOCK);
    sites.prod.stop();
    sites.prod.start();
    assert_eq!(sites.prod.pair("data0").expect("pair")["state"], "PSUE");
    assert_eq!(
        sites.prod.pair_u64("data0", "pending_bytes"),
        3 * BLOCK,
        "the bitmap survives a clean restart exactly"
    );
    // And a crash: never fewer bits than were dirty.
    write_at(&sites.prod.file("data0"), 100 * BLOCK, &pattern(4096, 8));
    sites.prod.kill();
    sites.prod.start();
    let pending = sites.prod.pair_u64("data0", "pending_bytes");
    assert!(
        pending >= 4 * BLOCK,
        "a crash lost dirty bits: {pending} bytes pending"
    );
    sites.proxy().restore();
    sites.prod.wait_log("re-attached");
    sites.prod.ok(&["pair", "resync", "data0"]);
    sites.prod.wait_state("data0", "PAIR");
    assert_eq!(sites.prod.pair_u64("data0", "copy.total_bytes"), pending);
    assert!(sites.identical("data0"));
}

#[test]
fn fence_data_refuses_writes_that_cannot_reach_the_svol() {
    let Some(sites) = with_proxy("fence_data_refuses_writes_that_cannot_reach_the_svol") else {
        return;
    };
    sites.pair("fenced", "1MiB", &["--fence", "data"]);
    sites.pair("open", "1MiB", &[]);
    let e = sites.prod.fails(&[
        "pair", "set", "open", "--mode", "adaptive", "--fence", "data",
    ]);
    assert!(e.contains("fence 'data' applies to sync mode only"), "{e}");
    sites.proxy().cut();
    sites.prod.wait_state("fenced", "PSUE");
    let before = read_all(&sites.prod.file("fenced"));
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(sites.prod.file("fenced"))
        .expect("open");
    let e = f
        .write_at(b"must not land", 4096)
        .expect_err("a fenced write succeeded");
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert!(
        read_all(&sites.prod.file("fenced")) == before,
        "the PVOL changed under fence=data"
    );
    // Without the fence the write lands on the PVOL and is tracked.
    write_at(&sites.prod.file("open"), 4096, b"lands");
    assert_eq!(sites.prod.pair_u64("open", "pending_bytes"), BLOCK);
    sites.proxy().restore();
    sites.prod.wait_log("re-attached");
    sites.prod.ok(&["pair", "resync", "fenced"]);
    sites.prod.wait_state("fenced", "PAIR");
    assert!(sites.identical("fenced"));
}

/// Four threads writing 50 blocks each, concurrently, into the first 800 KiB.
fn four_writers(file: &std::path::Path, seed: u8) {
    std::thread::scope(|s| {
        for t in 0..4u64 {
            s.spawn(move || {
                for i in 0..50u64 {
                    let block = t * 50 + i;
                    write_at(file, block * 4096, &pattern(4096, seed ^ block as u8));
                }
            });
        }
    });
}

#[test]
fn semi_sync_never_has_two_writes_in_flight() {
    let Some(sites) = TwoSites::start("semi_sync_never_has_two_writes_in_flight") else {
        return;
    };
    sites.pair("semi", "1MiB", &["--mode", "semi-sync"]);
    four_writers(&sites.prod.file("semi"), 1);
    wait_for("semi-sync pair to settle", || {
        sites.prod.pair_u64("semi", "pending_bytes") == 0
    });
    assert_eq!(sites.prod.pair_u64("semi", "max_in_flight"), 1);
    assert!(sites.identical("semi"));
    // The same load in adaptive mode pipelines: the assertion above can fail.
    sites
        .prod
        .ok(&["pair", "set", "semi", "--mode", "adaptive"]);
    four_writers(&sites.prod.file("semi"), 2);
    wait_for("adaptive pair to drain", || {
        sites.prod.pair_u64("semi", "pending_bytes") == 0
    });
    assert!(sites.identical("semi"));
}

#[test]
fn adaptive_holds_at_most_the_skew_in_memory_and_drains() {
    let Some(sites) = with_proxy("adaptive_holds_at_most_the_skew_in_memory_and_drains") else {
        return;
    };
    sites.pair("ad", "4MiB", &["--mode", "adaptive", "--skew", "64KiB"]);
    let info = sites.prod.pair("ad").expect("pair");
    assert_eq!(info["skew"], 65536);
    // Stall the link (shorter than its timeout) and write four times the skew.
    sites
        .proxy()
        .hold
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let data = pattern(256 << 10, 6);
    for (i, chunk) in data.chunks(16 << 10).enumerate() {
        write_at(&sites.prod.file("ad"), i as u64 * (16 << 10), chunk);
    }
    let stalled = sites.prod.pair("ad").expect("pair");
    sites
        .proxy()
        .hold
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(
        stalled["queued_bytes"].as_u64().expect("queued") <= 65536,
        "more than the skew held in memory: {stalled}"
    );
    assert_eq!(
        stalled["pending_bytes"],
        256 << 10,
        "the lag counts every unshipped block: {stalled}"
    );
    assert!(
        stalled["oldest_pending_ms"].is_u64(),
        "the lag's age is shown: {stalled}"
    );
    // Writes returned without the link; once it moves, everything ships.
    wait_for("the adaptive pair to drain", || {
        sites.prod.pair_u64("ad", "pending_bytes") == 0
    });
    assert!(sites.identical("ad"), "volumes differ after draining");
    assert_eq!(sites.prod.pair("ad").expect("pair")["state"], "PAIR");
    sites.prod.wait_log("adaptive skew reached");
    // Back to sync on the live pair.
    sites.prod.ok(&["pair", "set", "ad", "--mode", "sync"]);
    write_at(&sites.prod.file("ad"), 0, b"sync again");
    assert!(sites.identical("ad"));
    assert_eq!(sites.standby.pair("ad").expect("pair")["mode"], "sync");
}

#[test]
fn split_and_resync_copy_exactly_what_changed_on_either_side() {
    let Some(sites) = TwoSites::start("split_and_resync_copy_exactly_what_changed_on_either_side")
    else {
        return;
    };
    sites.pair("db", "8MiB", &[]);
    write_at(&sites.prod.file("db"), 0, &pattern(1 << 20, 1));
    let out = sites.prod.ok(&["pair", "split", "db"]);
    assert!(
        out.contains("PSUS") && out.contains("holds everything written before the split"),
        "{out}"
    );
    sites.standby.wait_state("db", "PSUS");
    // The SVOL is a usable copy: readable, writable at its site (a backup scribbles on it).
    assert!(read_all(&sites.standby.file("db"))[..1 << 20] == pattern(1 << 20, 1)[..]);
    write_at(&sites.standby.file("db"), 3 << 20, b"backup scratch");
    write_at(&sites.prod.file("db"), 5 << 20, b"production goes on");
    write_at(&sites.prod.file("db"), 6 << 20, b"and on");
    assert_eq!(sites.prod.pair_u64("db", "pending_bytes"), 2 * BLOCK);
    assert_eq!(sites.standby.pair_u64("db", "pending_bytes"), BLOCK);
    let e = sites.prod.fails(&["pair", "split", "db"]);
    assert!(e.contains("split already"), "{e}");
    sites.prod.ok(&["pair", "resync", "db"]);
    sites.prod.wait_state("db", "PAIR");
    sites.standby.wait_state("db", "PAIR");
    assert_eq!(
        sites.prod.pair_u64("db", "copy.copied_bytes"),
        3 * BLOCK,
        "resync copies the union of both sides' changes"
    );
    assert!(sites.identical("db"));
    let e = std::fs::OpenOptions::new()
        .write(true)
        .open(sites.standby.file("db"))
        .expect_err("SVOL writable after resync");
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
    // --watch follows a copy and ends on the final state.
    let watch = sites.prod.ok(&["pair", "status", "db", "--watch"]);
    assert!(watch.contains("state       PAIR"), "{watch}");
}

#[test]
fn takeover_and_reverse_resync_fail_back_with_only_the_changes() {
    let Some(sites) = with_proxy("takeover_and_reverse_resync_fail_back_with_only_the_changes")
    else {
        return;
    };
    sites.pair("app", "8MiB", &[]);
    write_at(&sites.prod.file("app"), 0, &pattern(64 << 10, 2));
    // The production site becomes unreachable; the standby takes over.
    sites.proxy().cut();
    sites.standby.wait_state("app", "PSUE");
    let e = sites.prod.fails(&["pair", "takeover", "app"]);
    assert!(e.contains("take over at site 'standby'"), "{e}");
    let out = sites.standby.ok(&["pair", "takeover", "app"]);
    assert!(out.contains("SSWS") && out.contains("--reverse"), "{out}");
    write_at(
        &sites.standby.file("app"),
        2 << 20,
        b"written at the standby after takeover",
    );
    write_at(
        &sites.prod.file("app"),
        4 << 20,
        b"late write at the old production site",
    );
    // Both sites back: the old PVOL learns of the takeover, is outdated
    // (PSUE, refusing host writes) and waits for a person.
    sites.proxy().restore();
    sites
        .prod
        .wait_field("app", "/outdated", serde_json::json!(true));
    assert_eq!(sites.prod.pair_at("app", "/state"), "PSUE");
    assert_eq!(sites.standby.pair("app").expect("pair")["state"], "SSWS");
    let e = sites.prod.fails(&["pair", "resync", "app", "--reverse"]);
    assert!(
        e.contains("runs at the site that took pair 'app' over"),
        "{e}"
    );
    // Fail back: the standby becomes the PVOL, only the two changed blocks move.
    sites.standby.ok(&["pair", "resync", "app", "--reverse"]);
    sites.standby.wait_state("app", "PAIR");
    sites.prod.wait_state("app", "PAIR");
    let now = sites.standby.pair("app").expect("pair");
    assert_eq!(now["role"], "pvol");
    assert_eq!(sites.prod.pair("app").expect("pair")["role"], "svol");
    assert_eq!(
        sites.standby.pair_u64("app", "copy.copied_bytes"),
        2 * BLOCK
    );
    assert!(sites.identical("app"));
    let data = read_all(&sites.prod.file("app"));
    assert!(data[2 << 20..].starts_with(b"written at the standby after takeover"));
    assert!(
        !data[4 << 20..].starts_with(b"late write"),
        "the old PVOL's late write survived the reverse resync"
    );
    // And the way home: the prod site takes over again and reverses once more.
    sites.prod.ok(&["pair", "takeover", "app"]);
    sites
        .standby
        .wait_field("app", "/outdated", serde_json::json!(true));
    assert_eq!(sites.standby.pair_at("app", "/state"), "PSUE");
    sites.prod.ok(&["pair", "resync", "app", "--reverse"]);
    sites.prod.wait_state("app", "PAIR");
    assert_eq!(sites.prod.pair("app").expect("pair")["role"], "pvol");
    assert_eq!(sites.prod.pair_u64("app", "copy.copied_bytes"), 0);
    write_at(&sites.prod.file("app"), 0, b"home again");
    assert!(sites.identical("app"));
}

#[test]
fn heartbeat_pairs_are_protected_from_split_and_kept_apart_from_data() {
    let Some(sites) =
        TwoSites::start("heartbeat_pairs_are_protected_from_split_and_kept_apart_from_data")
    else {
        return;
    };
    sites.pair("hb0", "64KiB", &["--kind", "heartbeat"]);
    let info = sites.prod.pair("hb0").expect("pair");
    assert_eq!(info["installed"], true);
    assert_eq!(info["auto_resync"], true);
    for site in [&sites.prod, &sites.standby] {
        let e = site.fails(&["pair", "split", "hb0"]);
        assert!(
            e.contains("carries heartbeats")
                && e.contains("hbctl pair uninstall hb0")
                && e.contains("--force"),
            "{e}"
        );
        let e = site.fails(&["pair", "delete", "hb0"]);
        assert!(e.contains("carries heartbeats"), "{e}");
    }
    assert_eq!(
        sites.prod.pair("hb0").expect("pair")["state"],
        "PAIR",
        "a refused split changed the pair"
    );

    // Heartbeat volumes and data volumes never mix, in either direction.
    sites
        .prod
        .ok(&["volume", "create", "data0", "--size", "64KiB"]);
    sites
        .standby
        .ok(&["volume", "create", "data0", "--size", "64KiB"]);
    sites.prod.ok(&[
        "pair", "create", "d", "--pvol", "data0", "--peer", "standby",
    ]);
    let e = sites.prod.fails(&[
        "pair",
        "create",
        "h2",
        "--pvol",
        "data0",
        "--peer",
        "standby",
        "--kind",
        "heartbeat",
    ]);
    assert!(
        e.contains("belongs to data pair 'd'")
            && e.contains("heartbeat pair needs a volume of its own"),
        "{e}"
    );
    sites.prod.ok(&["volume", "create", "x", "--size", "64KiB"]);
    let e = sites.prod.fails(&[
        "pair", "create", "d2", "--pvol", "x", "--peer", "standby", "--svol", "hb0",
    ]);
    assert!(
        e.contains("belongs to heartbeat pair 'hb0'") && e.contains("cannot carry production data"),
        "{e}"
    );
    let e = sites.prod.fails(&["pair", "install", "d"]);
    assert!(e.contains("data pair"), "{e}");

    // --force overrides, with a warning in the log; de-installing lifts the protection.
    sites.prod.ok(&["pair", "split", "hb0", "--force"]);
    sites
        .prod
        .wait_log("--force: split of a pair installed for heartbeats");
    sites.standby.wait_state("hb0", "PSUS");
    sites.prod.ok(&["pair", "resync", "hb0"]);
    sites.prod.wait_state("hb0", "PAIR");
    sites.prod.ok(&["pair", "uninstall", "hb0"]);
    assert_eq!(sites.standby.pair("hb0").expect("pair")["installed"], false);
    sites.standby.ok(&["pair", "split", "hb0"]);
    sites.prod.wait_state("hb0", "PSUS");
}

#[test]
fn pair_help_explains_each_subcommand() {
    let out = Command::new(common::bin("hbctl"))
        .args(["pair", "--help"])
        .output()
        .expect("hbctl");
    let help = String::from_utf8_lossy(&out.stdout);
    for sub in [
        "create",
        "set",
        "status",
        "split",
        "resync",
        "takeover",
        "install",
        "uninstall",
        "delete",
    ] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(sub)),
            "`hbctl pair --help` lacks {sub}:\n{help}"
        );
    }
    let out = Command::new(common::bin("hbctl"))
        .args(["pair", "resync", "--help"])
        .output()
        .expect("hbctl");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--reverse") && help.contains("took over"),
        "{help}"
    );
}

#[test]
fn a_link_cut_mid_stream_loses_nothing() {
    let Some(sites) = with_proxy("a_link_cut_mid_stream_loses_nothing") else {
        return;
    };
    // --watch waits for the initial copy of a larger volume and ends on PAIR.
    sites
        .prod
        .ok(&["volume", "create", "big", "--size", "64MiB"]);
    sites
        .standby
        .ok(&["volume", "create", "big", "--size", "64MiB"]);
    sites.prod.ok(&[
        "pair",
        "create",
        "big",
        "--pvol",
        "big",
        "--peer",
        "standby",
        "--kind",
        "heartbeat",
    ]);
    let watched = sites.prod.ok(&["pair", "status", "big", "--watch"]);
    assert!(
        watched.contains("state       PAIR") && watched.contains("64MiB of 64MiB"),
        "{watched}"
    );

    // A writer streams while the link is cut under it; writes never fail
    // (fence never) and every block they touched reaches the standby later.
    let file = sites.prod.file("big");
    let done = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            for i in 0..400u64 {
                let offset = (i * 7919 % 16384) * 4096;
                write_at(&file, offset, &pattern(4096, i as u8));
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i == 100 {
                    // Give the cut below time to land while writes go on.
                    wait_for("the link cut", || {
                        sites.prod.pair("big").is_some_and(|p| p["state"] == "PSUE")
                    });
                }
            }
        });
        wait_for("100 writes", || {
            done.load(std::sync::atomic::Ordering::SeqCst) >= 100
        });
        sites.proxy().cut();
    });
    assert_eq!(done.load(std::sync::atomic::Ordering::SeqCst), 400);
    let pending = sites.prod.pair_u64("big", "pending_bytes");
    assert!(pending > 0, "writes after the cut were not tracked");
    sites.proxy().restore();
    // A heartbeat pair resyncs by itself once the link is back.
    sites.prod.wait_state("big", "PAIR");
    sites.standby.wait_state("big", "PAIR");
    assert!(
        sites.identical("big"),
        "volumes differ after a cut mid-stream"
    );
}

#[test]
fn a_paced_copy_shows_an_eta_that_falls() {
    let Some(sites) = TwoSites::start("a_paced_copy_shows_an_eta_that_falls") else {
        return;
    };
    // 48 MiB at 8 MiB/s: about six seconds of copy.
    sites
        .prod
        .ok(&["volume", "create", "slow", "--size", "48MiB"]);
    sites
        .standby
        .ok(&["volume", "create", "slow", "--size", "48MiB"]);
    sites.prod.ok(&[
        "pair",
        "create",
        "slow",
        "--pvol",
        "slow",
        "--peer",
        "standby",
        "--c-max-rate",
        "8MiB",
    ]);
    let eta = || sites.prod.pair_at("slow", "/copy/eta_s").as_u64();
    let copied = || {
        sites
            .prod
            .pair_at("slow", "/copy/copied_bytes")
            .as_u64()
            .unwrap_or(0)
    };
    wait_for("an ETA", || eta().is_some());
    let (first, at) = (eta().unwrap_or(0), copied());
    assert!((2..=12).contains(&first), "{first} s for 48 MiB at 8 MiB/s");
    // A positive sign of progress, then the ETA is lower.
    wait_for("8 MiB more copied", || {
        copied() >= at + (8 << 20) || eta().is_none()
    });
    if let Some(later) = eta() {
        assert!(
            later < first,
            "{later} s after 8 MiB more, {first} s before"
        );
    }
    let text = sites.prod.ok(&["pair", "status", "slow"]);
    assert!(text.contains("ETA") || !text.contains("running"), "{text}");
    sites.prod.wait_state("slow", "PAIR");
    assert!(eta().is_none(), "no ETA once the copy ended");
}
