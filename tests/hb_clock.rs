//! Clocks against real processes (issue: a verdict no clock can fool):
//! the wall clock of either site stepped, either way, by any amount, under
//! libfaketime (the monotonic clocks untouched, as an NTP step, a VM
//! restored from a snapshot or `date -s` leave them) makes no channel fail
//! and nothing fail over, while a real kill -9 of production still does;
//! a standby stopped past the timeout judges nothing on waking.

mod common;
mod hbcluster;

use std::path::{Path, PathBuf};

use common::{ensure_tool, signal, skip, wait_for, Hbd};
use hbcluster::{Cluster, TIMEOUT_MS};

/// libfaketime's preload library, found through its package.
fn libfaketime(test: &str) -> Option<PathBuf> {
    if !ensure_tool(test, "faketime", "faketime") {
        return None;
    }
    let out = std::process::Command::new("dpkg")
        .args(["-L", "libfaketime"])
        .output()
        .ok()?;
    let lib = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.ends_with("/libfaketime.so.1"))
        .map(PathBuf::from);
    if lib.is_none() {
        skip(test, "libfaketime.so.1 not found (dpkg -L libfaketime)");
    }
    lib
}

/// Runs `hbd` with its wall clock offset by what `spec` holds (libfaketime's
/// "+120s" syntax, re-read at every call), its monotonic clocks untouched.
fn fake_clock(hbd: &mut Hbd, lib: &Path, spec: &Path) {
    std::fs::write(spec, "+0\n").expect("faketime spec");
    hbd.env = vec![
        ("LD_PRELOAD".into(), lib.display().to_string()),
        ("FAKETIME_TIMESTAMP_FILE".into(), spec.display().to_string()),
        ("FAKETIME_NO_CACHE".into(), "1".into()),
        ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
    ];
}

/// The clock offset the standby shows for production on the network (ms).
fn offset_at_standby(c: &Cluster) -> Option<i64> {
    c.standby.table()["networks"][0]["seen"]["clock_offset_ms"].as_i64()
}

/// The standby's refusals by name (a peer's first heartbeats before it
/// heard this host are refused for want of an echo: counted from here on).
fn refusals(c: &Cluster) -> Vec<u64> {
    let t = c.standby.table();
    [
        "rejected_time_back",
        "rejected_serial_jump",
        "rejected_echo",
        "rejected_instance",
        "rejected_replayed",
    ]
    .iter()
    .map(|k| t[*k].as_u64().unwrap_or(0))
    .collect()
}

/// Every channel at the standby valid, production ALIVE on both kinds, no
/// failover, no heartbeat refused since `before` (from [`refusals`]).
fn all_alive(c: &Cluster, before: &[u64]) {
    let t = c.standby.table();
    assert_eq!(t["remote_group_via_network"], "ALIVE", "{t}");
    assert_eq!(t["remote_group_via_mirrors"], "ALIVE", "{t}");
    assert_eq!(t["failed_over"], false, "{t}");
    for d in t["devices"].as_array().expect("devices") {
        assert_eq!(d["status"], "ENABLE", "{d}");
    }
    assert_eq!(t["network_enable"], "ENABLE", "{t}");
    assert_eq!(refusals(c), before, "{t}");
    assert_eq!(c.failovers(), 0, "{}", c.standby.log_text());
}

#[test]
fn a_wall_clock_step_at_either_site_fails_nothing_and_a_kill_still_fails_over() {
    let test = "a_wall_clock_step_at_either_site_fails_nothing_and_a_kill_still_fails_over";
    let Some(lib) = libfaketime(test) else {
        return;
    };
    let mut specs = (PathBuf::new(), PathBuf::new());
    let Some(mut c) = Cluster::start_env(
        test,
        |_, _, _| {},
        |prod, standby| {
            specs = (prod.dir.join("faketime"), standby.dir.join("faketime"));
            fake_clock(prod, &lib, &specs.0);
            fake_clock(standby, &lib, &specs.1);
        },
    ) else {
        return;
    };
    c.standby
        .wait_table("the standby armed", |t| t["armed"] == true);
    let before = refusals(&c);
    // (production's step, the standby's step, the offset the standby then shows)
    let day = 86_400i64;
    let steps = [
        (0, 120, -120_000),
        (0, -120, 120_000),
        (day, 0, day * 1000),
        (-30 * day, 3600, (-30 * day - 3600) * 1000),
        (0, 0, 0),
    ];
    for (prod_s, standby_s, shown) in steps {
        std::fs::write(&specs.0, format!("{prod_s:+}s\n")).expect("spec");
        std::fs::write(&specs.1, format!("{standby_s:+}s\n")).expect("spec");
        // A positive sign that the step took: the standby measures it.
        wait_for(
            &format!("the standby to show an offset of {shown} ms"),
            || offset_at_standby(&c).is_some_and(|o| (o - shown).abs() < 1000),
        );
        // Then three timeouts' worth of heartbeats on every channel, every
        // one of them valid.
        let beats = 3 * TIMEOUT_MS / hbcluster::INTERVAL_MS;
        c.standby.wait_advance("network.count", beats);
        c.standby.wait_advance("mirror:hb0.seen.count", beats / 2);
        c.prod.wait_advance("network.count", beats);
        all_alive(&c, &before);
        assert_eq!(c.prod.table()["stepped_down"], false);
    }
    let events = c.standby.ok(&["hb", "events"]);
    assert!(events.contains("ms off this host's"), "{events}");
    // Nothing judged FAILED for the steps. A slot write or read that
    // outlasts the interval under a loaded machine is timed on the
    // monotonic clock (which faketime leaves alone here), so it says
    // nothing of the wall clock and is not counted.
    let failed: Vec<&str> = events
        .lines()
        .filter(|l| l.contains("FAILED") && !l.contains("took longer than the interval"))
        .collect();
    assert!(failed.is_empty(), "{failed:?} in {events}");
    // A real death is still found, within the usual time.
    c.prod.kill();
    c.sites.prod.kill();
    wait_for("the failover hook after production died", || {
        c.failovers() == 1
    });
}

#[test]
fn a_standby_stopped_past_the_timeout_judges_nothing_on_waking() {
    let test = "a_standby_stopped_past_the_timeout_judges_nothing_on_waking";
    let Some(c) = Cluster::start(test) else {
        return;
    };
    c.standby
        .wait_table("the standby armed", |t| t["armed"] == true);
    let before = refusals(&c);
    let pid = c.standby.pid().expect("standby hbd");
    // A frozen VM: the standby's hbd stops for three timeouts while
    // production goes on beating, unheard.
    signal(pid, "STOP");
    std::thread::sleep(std::time::Duration::from_millis(3 * TIMEOUT_MS));
    signal(pid, "CONT");
    wait_for("the standby to say it was stalled", || {
        c.standby.log_text().contains("this host was stalled for")
    });
    c.standby
        .wait_advance("network.count", 2 * TIMEOUT_MS / hbcluster::INTERVAL_MS);
    // Replayed: the datagrams that queued while it was stopped (duplicates on the tap's two paths).
    let mut now = refusals(&c);
    now[4] = before[4];
    all_alive(&c, &now);
    let events = c.standby.ok(&["hb", "events"]);
    // Nothing judged FAILED for the steps. A slot write or read that
    // outlasts the interval under a loaded machine is timed on the
    // monotonic clock (which faketime leaves alone here), so it says
    // nothing of the wall clock and is not counted.
    let failed: Vec<&str> = events
        .lines()
        .filter(|l| l.contains("FAILED") && !l.contains("took longer than the interval"))
        .collect();
    assert!(failed.is_empty(), "{failed:?} in {events}");
    assert!(events.contains("stalled"), "{events}");
}
