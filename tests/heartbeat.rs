//! hbd with real processes: two sites on loopback (see `hbcluster`), each
//! with mirrord, an hbfs mount and hbd. Needs root and /dev/fuse.

mod common;
mod hbcluster;

use std::time::Duration;

use common::wait_for;
use hbcluster::{Cluster, INTERVAL_MS, TIMEOUT_MS};

#[test]
fn heartbeats_flow_on_both_channels_in_both_directions() {
    let Some(mut c) = Cluster::start("heartbeats_flow_on_both_channels_in_both_directions") else {
        return;
    };
    for hbd in [&c.prod, &c.standby] {
        let t = hbd.table();
        assert_eq!(t["network_enable"], "ENABLE");
        assert_eq!(t["remote_copy_enable"], "ENABLE");
        assert!(t["network"]["count"].as_u64().expect("count") > 0);
        assert!(t["network"]["last_ms"].is_u64());
    }
    // Standby reads hb0 (written at prod); prod reads hb1 (written at the standby).
    let hb0 = c.standby.device("hb0").expect("hb0 at the standby");
    assert_eq!(hb0["direction"], "receive");
    assert_eq!(hb0["status"], "ENABLE");
    assert!(hb0["seen"]["count"].as_u64().expect("count") > 0);
    let hb1 = c.prod.device("hb1").expect("hb1 at prod");
    assert_eq!(hb1["direction"], "receive");
    assert!(hb1["seen"]["count"].as_u64().expect("count") > 0);
    let text = c.standby.ok(&["hb", "status"]);
    assert!(
        text.contains("remote group via network  ALIVE") && text.contains("mirror hb0"),
        "{text}"
    );
    // The mirrord pairs behind the sending mirrors are protected.
    assert_eq!(c.sites.prod.pair("hb0").expect("pair")["installed"], true);
    // A restarted hbd resumes its table: the serial goes on.
    let before = c.standby.table()["serial"].as_u64().expect("serial");
    c.standby.stop();
    c.standby.start();
    assert!(c.standby.log_text().contains("resuming the status table"));
    assert!(c.standby.table()["serial"].as_u64().expect("serial") >= before);
    c.prod.wait_table("the standby alive again", |t| {
        t["remote_group_via_mirrors"] == "ALIVE"
    });
}

#[test]
fn a_network_cut_alone_never_fails_over() {
    let Some(c) = Cluster::start("a_network_cut_alone_never_fails_over") else {
        return;
    };
    c.block_network(true);
    c.standby.wait_table("the network FAILED", |t| {
        t["network_enable"] == "FAILED" && t["remote_group_via_network"] == "FAILED"
    });
    assert_eq!(c.standby.table()["remote_group_via_mirrors"], "ALIVE");
    c.assert_no_failover_for(Duration::from_millis(2 * TIMEOUT_MS));
    let events = c.standby.ok(&["hb", "events"]);
    assert!(events.contains("network: FAILED"), "{events}");
    c.block_network(false);
    c.standby
        .wait_table("the network back", |t| t["network_enable"] == "ENABLE");
    assert!(c.standby.log_text().contains("back to ENABLE"));
}

#[test]
fn losing_the_mirror_path_alone_never_fails_over() {
    let Some(c) = Cluster::start("losing_the_mirror_path_alone_never_fails_over") else {
        return;
    };
    c.sites.proxy().cut();
    c.standby.wait_table("the mirrors FAILED", |t| {
        t["remote_group_via_mirrors"] == "FAILED"
    });
    assert_eq!(c.standby.table()["remote_group_via_network"], "ALIVE");
    c.assert_no_failover_for(Duration::from_millis(2 * TIMEOUT_MS));
    // The link returns, the heartbeat pairs resync by themselves, the mirrors recover.
    c.sites.proxy().restore();
    c.standby.wait_table("mirror hb0 back", |t| {
        t["remote_group_via_mirrors"] == "ALIVE"
    });
    assert_eq!(c.standby.device("hb0").expect("hb0")["status"], "ENABLE");
}

#[test]
fn a_silent_split_is_detected_as_stale() {
    let Some(c) = Cluster::start("a_silent_split_is_detected_as_stale") else {
        return;
    };
    // Someone forces a split of the heartbeat pair: the SVOL freezes silently.
    c.sites.prod.ok(&["pair", "split", "hb0", "--force"]);
    c.standby.wait_table("hb0 FAILED", |t| {
        t["devices"].as_array().is_some_and(|d| {
            d.iter()
                .any(|d| d["name"] == "hb0" && d["status"] == "FAILED")
        })
    });
    let hb0 = c.standby.device("hb0").expect("hb0");
    let problem = hb0["seen"]["problem"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(problem.starts_with("stale"), "{problem}");
    assert_eq!(c.standby.table()["remote_group_via_network"], "ALIVE");
    c.assert_no_failover_for(Duration::from_millis(TIMEOUT_MS));
}

#[test]
fn killing_the_production_site_fails_over_once_within_timeout_and_interval() {
    let Some(mut c) =
        Cluster::start("killing_the_production_site_fails_over_once_within_timeout_and_interval")
    else {
        return;
    };
    c.prod.kill();
    c.sites.prod.kill();
    let start = std::time::Instant::now();
    while c.failovers() != 1 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no failover 20 s after production died; the standby's log:\n{}\ntable: {}",
            c.standby.log_text(),
            c.standby.table()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let env = std::fs::read_to_string(c.out.join("failover.env")).expect("hook env");
    let var = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        var("HBD_REASON").contains("network") && var("HBD_REASON").contains("mirror hb0"),
        "{env}"
    );
    assert_eq!(var("HBD_TAKEN_OVER"), "app:ok");
    assert_eq!(var("HBD_HOST"), "standby-a");
    let table: serde_json::Value =
        serde_json::from_str(&var("HBD_TABLE")).expect("table in the hook's environment");
    assert_eq!(table["remote_group_via_network"], "FAILED");
    // hbd's own measure of the silence when it decided; 300 ms of slack for a loaded machine's ticks.
    let silent: u64 = var("HBD_SILENT_FOR_MS").parse().expect("silent_for");
    assert!(
        silent <= TIMEOUT_MS + INTERVAL_MS + 300,
        "decided after {silent} ms of silence"
    );
    c.sites.standby.wait_state("app", "SSWS");
    std::fs::OpenOptions::new()
        .write(true)
        .open(c.sites.standby.file("app"))
        .expect("the data volume is writable at the standby");
    // Exactly once.
    std::thread::sleep(Duration::from_millis(3 * INTERVAL_MS));
    assert_eq!(c.failovers(), 1);
    assert_eq!(c.standby.table()["failed_over"], true);
}

#[test]
fn mirrors_install_and_uninstall_while_checking_runs() {
    let Some(c) = Cluster::start("mirrors_install_and_uninstall_while_checking_runs") else {
        return;
    };
    c.sites.pair("hb2", "64KiB", &["--kind", "heartbeat"]);
    c.sites.prod.ok(&["pair", "uninstall", "hb2"]);
    // A data pair is never a heartbeat mirror.
    let out = c.prod.hbctl(&[
        "hb",
        "mirror",
        "install",
        "--pvol",
        &c.sites.prod.file("app").display().to_string(),
        "--pair",
        "app",
    ]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("data pair"), "{e}");
    let count_before = c.standby.device("hb0").expect("hb0")["seen"]["count"]
        .as_u64()
        .expect("count");
    let said = c.prod.ok(&[
        "hb",
        "mirror",
        "install",
        "--pvol",
        &c.sites.prod.file("hb2").display().to_string(),
        "--pair",
        "hb2",
    ]);
    assert!(said.contains("protected from split"), "{said}");
    assert_eq!(c.sites.prod.pair("hb2").expect("pair")["installed"], true);
    c.standby.wait_table("hb2 registered and alive", |t| {
        t["devices"].as_array().is_some_and(|d| {
            d.iter().any(|d| {
                d["name"] == "hb2"
                    && d["direction"] == "receive"
                    && d["seen"]["count"].as_u64().unwrap_or(0) > 0
            })
        })
    });
    let hb2 = c.standby.device("hb2").expect("hb2");
    assert_eq!(
        hb2["address"],
        c.sites.standby.file("hb2").display().to_string()
    );
    let e = c.sites.prod.fails(&["pair", "split", "hb2"]);
    assert!(e.contains("carries heartbeats"), "{e}");
    c.prod.ok(&["hb", "mirror", "uninstall", "hb2"]);
    assert_eq!(c.sites.prod.pair("hb2").expect("pair")["installed"], false);
    c.standby.wait_table("hb2 vacated", |t| {
        t["devices"].as_array().is_some_and(|d| {
            !d.iter()
                .any(|d| d["name"] == "hb2" && d["status"] != "NULL")
        })
    });
    c.sites.prod.ok(&["pair", "split", "hb2"]);
    // Checking went on all along.
    assert!(
        c.standby.device("hb0").expect("hb0")["seen"]["count"]
            .as_u64()
            .expect("count")
            > count_before
    );
    c.assert_no_failover_for(Duration::from_millis(TIMEOUT_MS));
}

#[test]
fn a_procedure_change_reaches_the_peer() {
    let Some(c) = Cluster::start("a_procedure_change_reaches_the_peer") else {
        return;
    };
    let said = c.prod.ok(&["hb", "procedure", "--network", "off"]);
    assert!(said.contains("network off"), "{said}");
    c.standby
        .wait_table("the network DISABLE", |t| t["network_enable"] == "DISABLE");
    assert_eq!(c.prod.table()["network_enable"], "DISABLE");
    // One change at a time: each reaches the peer before the next.
    let acknowledged = |t: &serde_json::Value| t["outbox"].as_array().is_some_and(Vec::is_empty);
    c.prod.wait_table("the change acknowledged", acknowledged);
    // hb0 is now prod's last channel to the standby.
    let e = c.prod.fails(&["hb", "procedure", "--mirror", "hb0", "off"]);
    assert!(
        e.contains("last enabled channel to the peer") && e.contains("--force"),
        "{e}"
    );
    // Turning the network on and hb0 off at once would leave no channel
    // that both ends have on to carry the change: one thing at a time.
    let e = c.prod.fails(&[
        "hb",
        "procedure",
        "--network",
        "on",
        "--mirror",
        "hb0",
        "off",
    ]);
    assert!(e.contains("one thing at a time"), "{e}");
    c.prod.ok(&["hb", "procedure", "--network", "on"]);
    let e = c.prod.fails(&["hb", "procedure", "--mirror", "hb0", "off"]);
    assert!(e.contains("has not reached the peer yet"), "{e}");
    c.prod.wait_table("the change acknowledged", acknowledged);
    c.prod.ok(&["hb", "procedure", "--mirror", "hb0", "off"]);
    c.standby.wait_table("hb0 DISABLE", |t| {
        t["network_enable"] == "ENABLE"
            && t["devices"].as_array().is_some_and(|d| {
                d.iter()
                    .any(|d| d["name"] == "hb0" && d["status"] == "DISABLE")
            })
    });
    assert!(c
        .standby
        .ok(&["hb", "events"])
        .contains("changed by prod-a"));
    let out = c
        .prod
        .hbctl(&["hb", "procedure", "--mirror", "nosuch", "on"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no heartbeat mirror 'nosuch'"));
    c.prod.wait_table("the change acknowledged", acknowledged);
    c.prod.ok(&["hb", "procedure", "--mirror", "hb0", "on"]);
    c.standby.wait_table("both back", |t| {
        t["network_enable"] == "ENABLE" && t["remote_group_via_mirrors"] == "ALIVE"
    });
    c.assert_no_failover_for(Duration::from_millis(TIMEOUT_MS));
}

#[test]
fn failure_notices_reach_the_peer_and_alert_by_level() {
    let Some(c) = Cluster::start("failure_notices_reach_the_peer_and_alert_by_level") else {
        return;
    };
    std::fs::remove_file(c.out.join("db.ok")).expect("fail db");
    std::fs::remove_file(c.out.join("cache.ok")).expect("fail cache");
    wait_for("both notices at the standby", || {
        let events: serde_json::Value =
            serde_json::from_str(&c.standby.ok(&["hb", "events", "--json"])).expect("events");
        let from_peer = |part: &str, level: &str| {
            events.as_array().is_some_and(|e| {
                e.iter()
                    .any(|e| e["source"] == "peer" && e["part"] == part && e["level"] == level)
            })
        };
        from_peer("db", "SERIOUS") && from_peer("cache", "MODERATE")
    });
    wait_for("the alert for the SERIOUS notice", || {
        std::fs::read_to_string(c.out.join("alerts")).is_ok_and(|a| a.contains("SERIOUS db"))
    });
    std::thread::sleep(Duration::from_millis(3 * INTERVAL_MS));
    let alerts = std::fs::read_to_string(c.out.join("alerts")).expect("alerts");
    assert!(
        !alerts.contains("cache"),
        "a MODERATE notice ran the alert: {alerts}"
    );
    assert_eq!(alerts.lines().count(), 1, "one alert per failure: {alerts}");
    let text = c.standby.ok(&["hb", "events"]);
    assert!(text.contains("[SERIOUS] db"), "{text}");
}

/// Issue 25: hbd's heartbeats (every 100 ms, both ways, on heartbeat pairs
/// of the same disk) are no host I/O that competes with a copy. A data
/// pair's initial copy of 256 MiB reaches PAIR without `held_by` ever being
/// `host-io` while it runs, at a rate of its own above 50 MB/s (the old
/// controller held it to 4 MiB/s: any host request in the last 100 ms).
#[test]
fn heartbeats_at_100_ms_never_hold_a_copy_back() {
    let Some(c) = Cluster::start_with(
        "heartbeats_at_100_ms_never_hold_a_copy_back",
        |_, prod, standby| {
            for config in [prod, standby] {
                *config = config.replace(
                    &format!("timeout_ms = {TIMEOUT_MS}\n"),
                    "timeout_ms = 500\n",
                );
                assert!(
                    config.contains("interval_ms = 100\n") && config.contains("timeout_ms = 500\n")
                );
            }
        },
    ) else {
        return;
    };
    let seen = |hbd: &common::Hbd, mirror: &str| {
        hbd.device(mirror).expect("mirror")["seen"]["count"]
            .as_u64()
            .expect("count")
    };
    let before = (seen(&c.prod, "hb1"), seen(&c.standby, "hb0"));
    let sites = &c.sites;
    sites
        .prod
        .ok(&["volume", "create", "bulk", "--size", "256MiB"]);
    sites
        .standby
        .ok(&["volume", "create", "bulk", "--size", "256MiB"]);
    sites.prod.ok(&[
        "pair", "create", "bulk", "--pvol", "bulk", "--peer", "standby",
    ]);
    let mut held_by = std::collections::BTreeSet::new();
    wait_for("the initial copy of bulk to reach PAIR", || {
        let p = sites.prod.pair("bulk").expect("pair bulk");
        let copy = &p["copy"];
        if copy["running"] == true {
            let by = copy["held_by"].as_str().expect("copy.held_by").to_string();
            assert_eq!(copy["held_by_host_io"], by == "host-io", "{copy}");
            assert_ne!(by, "host-io", "heartbeats held the copy back: {copy}");
            held_by.insert(by);
        }
        p["state"] == "PAIR"
    });
    let p = sites.prod.pair("bulk").expect("pair bulk");
    let rate = p["copy"]["rate_bytes_per_s"].as_f64().expect("rate");
    assert_eq!(p["copy"]["copied_bytes"], 256u64 << 20, "{p}");
    assert!(
        rate > 50e6,
        "the copy ran at {rate:.0} B/s (held by {held_by:?} while it ran)"
    );
    // hbd ran beside the copy: heartbeats went on both ways.
    wait_for("heartbeats seen both ways since before the copy", || {
        seen(&c.prod, "hb1") > before.0 && seen(&c.standby, "hb0") > before.1
    });
    eprintln!("copy at {:.1} MB/s, held by {held_by:?}", rate / 1e6);
}
