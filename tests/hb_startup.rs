//! hbd at start, with real processes (see `hbcluster`): the standby's
//! start-up policy (`failover.arm`) when it starts while production is
//! down, and the table kept as plain files: `table.json` current within an
//! interval, and the table volume resumed by a replacement host.

mod common;
mod hbcluster;

use common::wait_for;
use hbcluster::{table_file, Cluster, INTERVAL_MS};
use hbmirror::hb::logic::table::now_ms;

/// The standby stops; the production site dies (hbd and mirrord, kill -9);
/// the standby starts again, alone.
fn standby_restarts_during_an_outage(c: &mut Cluster) {
    c.standby.stop();
    c.prod.kill();
    c.sites.prod.kill();
    c.standby.start();
}

#[test]
fn a_standby_started_during_an_outage_fails_over_under_after_timeout() {
    let Some(mut c) = Cluster::start_with(
        "a_standby_started_during_an_outage_fails_over_under_after_timeout",
        |_, _, standby| {
            *standby = standby.replace("[failover]\n", "[failover]\narm = \"after-timeout\"\n")
        },
    ) else {
        return;
    };
    standby_restarts_during_an_outage(&mut c);
    let t = c.standby.table();
    assert_eq!(t["arm_policy"], "after-timeout", "{t}");
    assert_eq!(t["armed"], true, "armed from the start");
    let text = c.standby.ok(&["hb", "status"]);
    // Armed from the start, it may already have failed over by now (a
    // request of hbd's start to the peer can wait out the link's grace).
    assert!(
        text.contains("failover: armed (arm = after-timeout)") || text.contains("failover: done"),
        "{text}"
    );
    wait_for("the failover hook", || c.failovers() == 1);
    let reason = c.hook_var("failover.env", "HBD_REASON");
    assert!(
        reason.contains("network") && reason.contains("mirror hb0"),
        "{reason}"
    );
    assert_eq!(c.standby.table()["failed_over"], true);
}

#[test]
fn a_standby_started_during_an_outage_never_fails_over_under_seen_alive() {
    let Some(mut c) =
        Cluster::start("a_standby_started_during_an_outage_never_fails_over_under_seen_alive")
    else {
        return;
    };
    standby_restarts_during_an_outage(&mut c);
    // Every channel is judged dead (the SVOL still holds production's last
    // heartbeat, which is no sign of life) ...
    c.standby.wait_table("every channel FAILED", |t| {
        t["remote_group_via_network"] == "FAILED" && t["remote_group_via_mirrors"] == "FAILED"
    });
    c.standby.wait_advance("serial", 3);
    // ... and yet no failover: production was never seen alive since start.
    assert_eq!(c.failovers(), 0, "{}", c.standby.log_text());
    let t = c.standby.table();
    assert_eq!(
        (t["armed"].clone(), t["arm_policy"].clone()),
        (false.into(), "seen-alive".into()),
        "{t}"
    );
    let text = c.standby.ok(&["hb", "status"]);
    assert!(
        text.contains("failover: NOT armed (arm = seen-alive)"),
        "{text}"
    );
}

#[test]
fn the_table_file_follows_the_table_within_an_interval() {
    let Some(c) = Cluster::start("the_table_file_follows_the_table_within_an_interval") else {
        return;
    };
    for _ in 0..5 {
        let file = table_file(&c.prod);
        let live = c.prod.table();
        let (on_disk, now) = (
            file["network"]["count"].as_u64().unwrap_or(0),
            live["network"]["count"].as_u64().unwrap_or(0),
        );
        // One heartbeat an interval arrives; allow a few for a busy machine.
        assert!(now - on_disk <= 5, "table.json lags: {on_disk} vs {now}");
        let read = |t: &serde_json::Value| {
            t["devices"]
                .as_array()
                .and_then(|d| d.iter().find(|d| d["name"] == "hb1"))
                .and_then(|d| d["seen"]["count"].as_u64())
                .unwrap_or(0)
        };
        let (on_disk, now) = (read(&file), read(&live));
        assert!(
            now - on_disk <= 5,
            "table.json lags on hb1: {on_disk} vs {now}"
        );
        let age = now_ms().saturating_sub(file["saved_ms"].as_u64().unwrap_or(0));
        assert!(age <= 10 * INTERVAL_MS, "table.json saved {age} ms ago");
        c.prod.wait_advance("network.count", 3);
    }
    // A person's change is in the file when hbctl answers.
    c.prod.ok(&["hb", "procedure", "--mirror", "hb1", "off"]);
    let file = table_file(&c.prod);
    let hb1 = file["devices"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["name"] == "hb1").cloned())
        .expect("hb1 in table.json");
    assert_eq!(hb1["wanted"], false, "{hb1}");
    assert_eq!(hb1["status"], "DISABLE", "{hb1}");
}

#[test]
fn a_replacement_host_resumes_the_table_from_the_table_volume() {
    let Some(mut c) = Cluster::start_with(
        "a_replacement_host_resumes_the_table_from_the_table_volume",
        |sites, prod, _| {
            sites
                .prod
                .ok(&["volume", "create", "tbl0", "--size", "256KiB"]);
            *prod = prod.replace(
                "[network]",
                &format!(
                    "table_volume = \"{}\"\n[network]",
                    sites.prod.file("tbl0").display()
                ),
            );
        },
    ) else {
        return;
    };
    c.prod.ok(&["hb", "mirror", "uninstall", "hb0"]);
    let serial = c.prod.number("serial");
    // The host is replaced: its local disk (data_dir) is new and empty.
    c.prod.stop();
    std::fs::remove_dir_all(c.prod.dir.join("data")).expect("remove data_dir");
    c.prod.start();
    assert!(
        c.prod
            .log_text()
            .contains("resuming the status table from=Volume"),
        "{}",
        c.prod.log_text()
    );
    assert!(c.prod.device("hb0").is_none(), "the uninstall was resumed");
    assert!(c.prod.number("serial") >= serial, "the serial goes on");
    // A local table older than the volume's loses to it.
    let old = std::fs::read(c.prod.dir.join("data/table.json")).expect("table.json");
    c.prod.ok(&["hb", "procedure", "--mirror", "hb1", "off"]);
    c.prod.stop();
    std::fs::write(c.prod.dir.join("data/table.json"), old).expect("an older table.json");
    c.prod.start();
    let hb1 = c.prod.device("hb1").expect("hb1");
    assert_eq!(hb1["wanted"], false, "the volume's newer table: {hb1}");
}
