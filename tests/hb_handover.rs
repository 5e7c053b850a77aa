//! The handover with real processes (see `hbcluster`: two sites, mirrord,
//! hbfs and hbd at each, the network and two heartbeat mirrors between):
//! production whose SYSTEM DOWN check fails steps down (its hook, its
//! `take_over` pair outdated) and then asks the standby to take over,
//! once; the standby takes over at once (pair taken over, its failover hook
//! once), or refuses when it cannot carry the duties, and production shows
//! the refusal. The request reaches the standby through a heartbeat mirror
//! when the network loses every datagram.
//!
//! `min_hosts` out of range is refused by `hbd --check`, naming the key.
//!
//! The checks fail on demand: production's `app` passes while `out/app.ok`
//! exists, the standby's `app-host` while `out/standby.ok` does. Each hook
//! appends its name to `out/order`, so the order of the two is seen.

mod common;
mod hbcluster;

use std::sync::atomic::Ordering;

use common::{command, run_fails, run_ok, wait_for};
use hbcluster::Cluster;

/// The two sites with production's SYSTEM DOWN check `app` (passing until
/// `out/app.ok` goes), its `take_over` pair `app` fenced at a step-down,
/// and, if `standby_fails`, a SERIOUS check at the standby that fails from
/// the start.
fn start(test: &str, standby_fails: bool) -> Option<Cluster> {
    Cluster::start_with(test, |sites, prod, standby| {
        let out = sites.root.path().join("out");
        std::fs::write(out.join("app.ok"), "").expect("app.ok");
        let o = out.display();
        *prod = prod
            .replacen("[failover]\n", "[failover]\ntake_over = [\"app\"]\n", 1)
            .replace(
                "step_down.count\"",
                &format!("step_down.count; echo step_down >> {o}/order\""),
            );
        *prod += &format!(
            "[[checks]]\npart = \"app\"\nlevel = \"SYSTEM DOWN\"\ncommand = \"test -e {o}/app.ok\"\n"
        );
        *standby = standby.replace(
            "failover.count\"",
            &format!("failover.count; echo failover >> {o}/order\""),
        );
        if standby_fails {
            *standby += &format!(
                "[[checks]]\npart = \"app-host\"\nlevel = \"SERIOUS\"\ncommand = \"test -e {o}/standby.ok\"\n"
            );
        }
    })
}

/// The hooks that ran, in order.
fn order(c: &Cluster) -> Vec<String> {
    std::fs::read_to_string(c.out.join("order"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Lines of `hbctl hb events` at `hbd` that contain `needle`.
fn events_with(hbd: &common::Hbd, needle: &str) -> usize {
    hbd.ok(&["hb", "events", "--limit", "500"])
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

#[test]
fn production_with_a_failing_system_down_check_hands_over_once() {
    let Some(c) = start(
        "production_with_a_failing_system_down_check_hands_over_once",
        false,
    ) else {
        return;
    };
    c.sites.standby.wait_state("app", "PAIR");
    std::fs::remove_file(c.out.join("app.ok")).expect("remove app.ok");
    c.prod.wait_table("the standby's answer", |t| {
        t["handover"]["answer"]["accepted"] == true
    });
    wait_for("the failover hook", || c.failovers() == 1);
    // Production stepped down first: its hook ran, then the standby's.
    assert_eq!(order(&c), ["step_down", "failover"]);
    assert_eq!(c.hook_var("step_down.env", "HBD_CAUSE"), "handover");
    assert!(c
        .hook_var("step_down.env", "HBD_REASON")
        .contains("SYSTEM DOWN check fails (app)"));
    assert!(c
        .hook_var("failover.env", "HBD_REASON")
        .contains("prod-a asked this site to take over"));
    assert_eq!(c.hook_var("failover.env", "HBD_TAKEN_OVER"), "app:ok");
    // The data pair: taken over at the standby, outdated at production.
    c.sites.standby.wait_state("app", "SSWS");
    assert_eq!(c.sites.prod.pair_at("app", "/outdated"), true);
    let p = c.prod.table();
    assert_eq!(p["stepped_down"], true, "{p}");
    assert_eq!(p["handover"]["to"], "standby-a");
    assert_eq!(p["handover"]["answer"]["by"], "standby-a");
    let s = c.standby.table();
    assert_eq!(s["failed_over"], true, "{s}");
    assert_eq!(s["handover"]["from"], "prod-a");
    assert_eq!(
        s["handover"]["request"]["id"], p["handover"]["request"]["id"],
        "the standby answered production's request"
    );
    let text = c.prod.ok(&["hb", "status"]);
    assert!(
        text.contains("HANDOVER (taken-over): this host asked standby-a to take over")
            && text.contains("TAKEN OVER by standby-a")
            && text.contains("STEPPED DOWN to hand over"),
        "{text}"
    );
    let text = c.standby.ok(&["hb", "status"]);
    assert!(
        text.contains("prod-a asked this host to take over"),
        "{text}"
    );
    // Once: the heartbeats go on both ways, and nothing is asked or done again.
    c.standby.wait_advance("network.count", 10);
    c.prod.wait_advance("network.count", 10);
    assert_eq!((c.failovers(), c.step_downs()), (1, 1));
    assert_eq!(order(&c), ["step_down", "failover"]);
    assert_eq!(
        c.prod.table()["outbox"],
        serde_json::json!([]),
        "the request was acknowledged"
    );
    assert_eq!(
        events_with(&c.standby, "asked this site to take over (request"),
        1
    );
    assert_eq!(events_with(&c.prod, "took over at this host's request"), 1);
    assert_eq!(
        events_with(&c.standby, "alive again after this site failed over"),
        0,
        "production asked: no return to warn of"
    );
}

#[test]
fn a_standby_that_cannot_carry_the_duties_refuses_the_handover() {
    let Some(c) = start(
        "a_standby_that_cannot_carry_the_duties_refuses_the_handover",
        true,
    ) else {
        return;
    };
    // The standby's failing check is known there: its notice reached production.
    wait_for("the standby's notice at production", || {
        events_with(&c.prod, "app-host") > 0
    });
    std::fs::remove_file(c.out.join("app.ok")).expect("remove app.ok");
    c.prod.wait_table("the standby's answer", |t| {
        t["handover"]["answer"]["accepted"] == false
    });
    let p = c.prod.table();
    let why = p["handover"]["answer"]["why"].as_str().unwrap_or_default();
    assert!(why.contains("SERIOUS check fails (app-host)"), "{p}");
    assert_eq!(p["stepped_down"], true, "{p}");
    let text = c.prod.ok(&["hb", "status"]);
    assert!(
        text.contains("HANDOVER (refused)") && text.contains("REFUSED by standby-a"),
        "{text}"
    );
    assert!(events_with(&c.prod, "REFUSED to take over") == 1);
    // Production stepped down before it asked.
    assert_eq!(c.step_downs(), 1);
    // Nothing taken over while the heartbeats go on.
    c.standby.wait_advance("network.count", 10);
    c.prod.wait_advance("network.count", 10);
    assert_eq!(c.failovers(), 0, "{}", c.standby.log_text());
    assert_eq!(order(&c), ["step_down"]);
    let s = c.standby.table();
    assert_eq!(s["failed_over"], false, "{s}");
    assert_eq!(s["handover"]["answer"]["accepted"], false, "{s}");
    assert_eq!(c.sites.standby.pair_at("app", "/state"), "PAIR");
    assert!(c.standby.ok(&["hb", "events"]).contains("REFUSED"));
}

#[test]
fn the_request_reaches_the_standby_through_a_mirror_when_the_network_loses_it() {
    let Some(c) = start(
        "the_request_reaches_the_standby_through_a_mirror_when_the_network_loses_it",
        false,
    ) else {
        return;
    };
    // Every datagram from production to the standby is lost from now on.
    c.to_standby.blocked.store(true, Ordering::SeqCst);
    let forwarded = c.to_standby.count();
    c.standby.wait_advance("mirror:hb0.seen.count", 3);
    std::fs::remove_file(c.out.join("app.ok")).expect("remove app.ok");
    c.prod.wait_table("the standby's answer", |t| {
        t["handover"]["answer"]["accepted"] == true
    });
    wait_for("the failover hook", || c.failovers() == 1);
    assert_eq!(order(&c), ["step_down", "failover"]);
    assert_eq!(
        c.to_standby.count(),
        forwarded,
        "no datagram reached the standby: the request came through hb0"
    );
    c.sites.standby.wait_state("app", "SSWS");
}

#[test]
fn min_hosts_of_zero_or_more_than_the_group_is_refused_at_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("hb.key");
    std::fs::write(&key, "heartbeat-key-0123456789\n").expect("key");
    let config = dir.path().join("hbd.toml");
    let head = format!(
        "host = \"p1\"\ngroup = \"production\"\npeers = [\"s1\"]\ndata_dir = \"{}\"\npsk_file = \"{}\"\n",
        dir.path().join("data").display(),
        key.display()
    );
    let check = |text: &str| {
        std::fs::write(&config, text).expect("config");
        let mut c = command("hbd");
        c.args(["--check", "--config"]).arg(&config);
        c
    };
    let said = run_ok(&mut check(&head));
    assert!(
        said.contains("min_hosts = 1"),
        "the default is shown:\n{said}"
    );
    let e = run_fails(&mut check(&format!("{head}min_hosts = 0\n")));
    assert!(e.contains("min_hosts = 0: give at least 1"), "{e}");
    let e = run_fails(&mut check(&format!("{head}min_hosts = 2\n")));
    assert!(
        e.contains("min_hosts = 2 is more than the hosts of this host's group")
            && e.contains("no [cluster] group_members"),
        "{e}"
    );
    let group = "[cluster]\ngroup_members = [\"p1\", \"p2\"]\ngroup_volume = \"/dev/null\"\n";
    let e = run_fails(&mut check(&format!("{head}min_hosts = 3\n{group}")));
    assert!(
        e.contains("its group has 2 hosts") && e.contains("give at most 2"),
        "{e}"
    );
    let said = run_ok(&mut check(&format!("{head}min_hosts = 2\n{group}")));
    assert!(said.contains("min_hosts = 2"), "{said}");
    // A group keeps its slots on a volume: none given, refused with the way out.
    let e = run_fails(&mut check(&format!(
        "{head}[cluster]\ngroup_members = [\"p1\", \"p2\"]\n"
    )));
    assert!(e.contains("give [cluster] group_volume"), "{e}");
    let e = run_fails(&mut check(&format!(
        "{head}[cluster]\ngroup_members = [\"p2\", \"p3\"]\ngroup_volume = \"/dev/null\"\n"
    )));
    assert!(e.contains("does not list this host 'p1'"), "{e}");
}
