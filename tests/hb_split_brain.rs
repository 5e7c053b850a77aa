//! What keeps two sites from both being active, with real processes (see
//! `hbcluster`): a production host that returns after the standby took
//! over steps down; captured heartbeats replayed to a restarted standby,
//! with or without its table, never make production ALIVE; floods of bad datagrams are logged once
//! per address.

mod common;
mod hbcluster;

use std::time::Duration;

use common::{replay, signal, wait_for};
use hbcluster::Cluster;

#[test]
fn a_stalled_production_steps_down_after_the_standby_took_over() {
    let Some(c) = Cluster::start("a_stalled_production_steps_down_after_the_standby_took_over")
    else {
        return;
    };
    // The standby may fail over only once it has seen production alive.
    c.standby
        .wait_table("the standby armed", |t| t["armed"] == true);
    // A paused VM, a long stall: production's hbd and mirrord stop past the timeout.
    let stalled = [
        c.prod.pid().expect("prod hbd"),
        c.sites.prod.pid().expect("prod mirrord"),
    ];
    for pid in stalled {
        signal(pid, "STOP");
    }
    wait_for("the failover hook", || c.failovers() == 1);
    for pid in stalled {
        signal(pid, "CONT");
    }
    c.prod
        .wait_table("production STEPPED DOWN", |t| t["stepped_down"] == true);
    wait_for("the step-down hook", || c.step_downs() == 1);
    assert_eq!(c.hook_var("step_down.env", "HBD_EVENT"), "step_down");
    assert_eq!(c.hook_var("step_down.env", "HBD_FROM"), "standby-a");
    assert_eq!(c.hook_var("step_down.env", "HBD_HOST"), "prod-a");
    assert!(c
        .hook_var("step_down.env", "HBD_REASON")
        .contains("standby-a reports that it failed over"));
    let text = c.prod.ok(&["hb", "status"]);
    assert!(text.contains("STEPPED DOWN: standby-a took over"), "{text}");
    assert!(c.prod.log_text().contains("STEPPED DOWN"));
    c.standby.wait_table("production's step-down seen", |t| {
        t["peer_stepped_down"] == true
    });
    let events = c.standby.ok(&["hb", "events"]);
    assert!(
        events.contains("alive again after this site failed over"),
        "{events}"
    );
    // It stays so, and steps down once.
    c.prod.wait_advance("network.count", 3);
    assert_eq!(c.prod.table()["stepped_down"], true);
    assert_eq!(c.step_downs(), 1);
    // A person re-arms: the standby first (after failback), then production.
    c.standby.ok(&["hb", "rearm"]);
    c.prod.wait_table("the standby no longer failed over", |t| {
        t["peer_failed_over"].is_null()
    });
    let said = c.prod.ok(&["hb", "rearm"]);
    assert!(said.starts_with("step-down ended"), "{said}");
    c.prod.wait_advance("network.count", 3);
    assert_eq!(c.prod.table()["stepped_down"], false);
    assert_eq!(c.step_downs(), 1);
}

/// Records prod's network heartbeats to the standby until the standby has
/// accepted `n` more, then waits until it has accepted 3 after the last
/// one recorded (so each recorded one is in its watermark).
fn capture(c: &Cluster, n: u64) -> Vec<Vec<u8>> {
    c.to_standby.record(true);
    c.standby.wait_advance("network.count", n);
    c.to_standby.record(false);
    c.standby.wait_advance("network.count", 3);
    c.to_standby.recorded()
}

/// Replays `datagrams` to the standby `rounds` times, checking between
/// rounds that production never shows ALIVE nor arms the failover.
fn replay_and_watch(c: &Cluster, datagrams: &[Vec<u8>], rounds: usize) {
    let heard = c.standby.number("network.count");
    for _ in 0..rounds {
        replay(datagrams, c.standby_port);
        let t = c.standby.table();
        assert_ne!(t["remote_group_via_network"], "ALIVE", "{t}");
        assert_eq!(t["network"]["count"], heard, "{t}");
        assert_eq!(t["armed"], false, "{t}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn replayed_heartbeats_never_make_production_alive_at_a_restarted_standby() {
    let Some(mut c) =
        Cluster::start("replayed_heartbeats_never_make_production_alive_at_a_restarted_standby")
    else {
        return;
    };
    let captured = capture(&c, 10);
    assert!(captured.len() >= 10, "{} captured", captured.len());
    // The standby crashes; production dies; the standby comes back.
    c.standby.kill();
    c.prod.kill();
    c.sites.prod.kill();
    c.standby.start();
    let replayed = c.standby.number("rejected_replayed");
    replay_and_watch(&c, &captured, 10);
    wait_for("every replayed heartbeat refused", || {
        c.standby.number("rejected_replayed") >= replayed + 10 * captured.len() as u64
    });
    let t = c.standby.table();
    assert_ne!(t["remote_group_via_network"], "ALIVE", "{t}");
    assert_eq!(t["armed"], false, "a replay is no sign of life: {t}");
    assert_eq!(c.failovers(), 0);
    let log = c.standby.log_text();
    assert!(log.contains("not newer than the last accepted"), "{log}");
}

#[test]
fn old_heartbeats_are_refused_by_a_new_standby_host() {
    let Some(mut c) = Cluster::start("old_heartbeats_are_refused_by_a_new_standby_host") else {
        return;
    };
    let captured = capture(&c, 10);
    c.standby.kill();
    c.prod.kill();
    c.sites.prod.kill();
    // A new standby host: no table, no watermark, and no clock to compare
    // with: the replayed heartbeats echo nonces of the standby's former run,
    // which its new run never issued. At once, however recent they are.
    std::fs::remove_dir_all(c.standby.dir.join("data")).expect("remove data_dir");
    c.standby.start();
    let refused = c.standby.number("rejected_echo");
    replay_and_watch(&c, &captured, 5);
    wait_for(
        "every replayed heartbeat refused for want of a fresh echo",
        || c.standby.number("rejected_echo") >= refused + 5 * captured.len() as u64,
    );
    let t = c.standby.table();
    assert_eq!(t["rejected_replayed"], 0, "{t}");
    assert_eq!(t["armed"], false, "{t}");
    let log = c.standby.log_text();
    assert!(log.contains("echoes no nonce this host issued"), "{log}");
}

#[test]
fn bad_datagrams_from_many_ports_are_logged_once_per_address() {
    let Some(c) = Cluster::start("bad_datagrams_from_many_ports_are_logged_once_per_address")
    else {
        return;
    };
    let said = |log: &str| log.matches("invalid network heartbeat ignored").count();
    let lines = said(&c.standby.log_text());
    let before = c.standby.number("rejected_invalid");
    let mut sent = 0;
    for _ in 0..20 {
        for _ in 0..250 {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            s.send_to(b"not a heartbeat at all", ("127.0.0.1", c.standby_port))
                .expect("send");
            sent += 1;
        }
        wait_for("the standby to take them", || {
            c.standby.number("rejected_invalid") >= before + sent
        });
    }
    let log = c.standby.log_text();
    assert!(
        said(&log) - lines <= 1,
        "{} lines for {sent} bad datagrams from one address:\n{log}",
        said(&log) - lines
    );
    // Heartbeats went on.
    c.standby.wait_advance("network.count", 3);
}
