//! hbd's procedure (Fig 8) and install state (Fig 4/5), with real
//! processes (see `hbcluster`): a turned-off channel carries nothing and
//! counts for nothing; turning off the last channel is refused unless
//! forced; an uninstalled mirror stays uninstalled across a restart; pairs
//! are protected again at start, or their mirror fails.

mod common;
mod hbcluster;

use common::{read_all, wait_for, write_at};
use hbcluster::{edit_config, Cluster};

/// The first 4 KiB of a file: a heartbeat slot.
fn slot(path: &std::path::Path) -> Vec<u8> {
    read_all(path)[..4096].to_vec()
}

#[test]
fn a_turned_off_channel_carries_nothing_even_with_control_messages_waiting() {
    let Some(mut c) =
        Cluster::start("a_turned_off_channel_carries_nothing_even_with_control_messages_waiting")
    else {
        return;
    };
    let acknowledged = |t: &serde_json::Value| t["outbox"].as_array().is_some_and(Vec::is_empty);
    // The standby's hbd is gone: prod's control messages are not
    // acknowledged, so they wait in its outbox while it is away.
    c.standby.stop();
    c.prod.ok(&["hb", "procedure", "--network", "off"]);
    let t = c.prod.table();
    assert_eq!(t["network_enable"], "DISABLE");
    assert_eq!(t["outbox"].as_array().map(Vec::len), Some(1), "{t}");
    c.prod.wait_advance("mirror:hb0.seen.count", 1);
    let sent = c.to_standby.count();
    c.prod.wait_advance("mirror:hb0.seen.count", 3);
    assert_eq!(
        c.to_standby.count(),
        sent,
        "a turned-off network carries nothing, not even waiting control messages"
    );
    // The standby returns: the change reaches it over hb0.
    c.standby.start();
    c.prod.wait_table("the change acknowledged", acknowledged);
    c.standby
        .wait_table("the network DISABLE", |t| t["network_enable"] == "DISABLE");
    c.prod.ok(&["hb", "procedure", "--network", "on"]);
    c.prod.wait_table("the change acknowledged", acknowledged);
    // Now a mirror, the standby gone again.
    c.standby.stop();
    c.prod.ok(&["hb", "procedure", "--mirror", "hb0", "off"]);
    assert_eq!(c.prod.table()["outbox"].as_array().map(Vec::len), Some(1));
    let svol = c.sites.standby.file("hb0");
    let written = c.prod.number("mirror:hb0.seen.count");
    let frozen = slot(&svol);
    let before = c.to_standby.count();
    wait_for("prod's network heartbeats to pass 3 more", || {
        c.to_standby.count() >= before + 3
    });
    assert_eq!(slot(&svol), frozen, "a turned-off mirror is not written");
    assert_eq!(c.prod.number("mirror:hb0.seen.count"), written);
    c.standby.start();
    c.prod.wait_table("the change acknowledged", acknowledged);
    let t = c.standby.table();
    assert_eq!(t["network_enable"], "ENABLE", "{t}");
    let hb0 = c.standby.device("hb0").expect("hb0");
    assert_eq!(hb0["status"], "DISABLE", "{hb0}");
    assert_eq!(c.failovers(), 0);
}

#[test]
fn turning_off_the_last_channel_is_refused_unless_forced_and_then_nothing_is_heard() {
    let Some(c) = Cluster::start(
        "turning_off_the_last_channel_is_refused_unless_forced_and_then_nothing_is_heard",
    ) else {
        return;
    };
    let off = ["hb", "procedure", "--network", "off", "--mirrors", "off"];
    let e = c.standby.fails(&off);
    assert!(
        e.contains("last enabled channel to the peer") && e.contains("--force"),
        "{e}"
    );
    assert_eq!(
        c.standby.table()["network_enable"],
        "ENABLE",
        "nothing changed"
    );
    let said = c.standby.ok(&[&off[..], &["--force"]].concat());
    assert!(said.contains("waits for it"), "{said}");
    let t = c.standby.table();
    assert_eq!(t["outbox_held"], true, "{t}");
    let text = c.standby.ok(&["hb", "status"]);
    assert!(
        text.contains("waiting: no enabled channel reaches the peer"),
        "{text}"
    );
    // prod was not told (nothing carries the change): it keeps sending, and
    // the standby neither counts nor applies what arrives on its turned-off
    // network.
    c.standby.wait_advance("ignored_disabled", 1);
    let heard = c.standby.number("network.count");
    let sent = c.to_prod.count();
    let written = c.standby.number("mirror:hb1.seen.count");
    c.standby.wait_advance("ignored_disabled", 3);
    let t = c.standby.table();
    assert_eq!(c.standby.number("network.count"), heard, "{t}");
    assert_ne!(t["remote_group_via_network"], "ALIVE", "{t}");
    assert_eq!(c.to_prod.count(), sent, "nothing sent on the network");
    assert_eq!(
        c.standby.number("mirror:hb1.seen.count"),
        written,
        "nor on hb1"
    );
    assert_eq!(c.failovers(), 0, "no channel, no evidence, no failover");
    // On again (no force needed): the held change and this one reach prod.
    c.standby
        .ok(&["hb", "procedure", "--network", "on", "--mirrors", "on"]);
    c.standby.wait_table("the changes acknowledged", |t| {
        t["outbox"].as_array().is_some_and(Vec::is_empty) && t["outbox_held"] == false
    });
    let events = c.prod.ok(&["hb", "events"]);
    assert!(
        events.contains("changed by standby-a: network off, mirrors off")
            && events.contains("changed by standby-a: network on, mirrors on"),
        "{events}"
    );
    for hbd in [&c.prod, &c.standby] {
        hbd.wait_table("both channels back", |t| {
            t["remote_group_via_network"] == "ALIVE" && t["remote_group_via_mirrors"] == "ALIVE"
        });
    }
}

#[test]
fn an_uninstalled_mirror_stays_uninstalled_across_a_restart() {
    let Some(mut c) = Cluster::start("an_uninstalled_mirror_stays_uninstalled_across_a_restart")
    else {
        return;
    };
    let said = c.prod.ok(&["hb", "mirror", "uninstall", "hb0"]);
    assert!(said.contains("may now be split"), "{said}");
    wait_for("hb0 vacated at the standby", || {
        c.standby.device("hb0").is_none()
    });
    c.prod.stop();
    c.prod.start();
    assert!(c.prod.device("hb0").is_none(), "hb0 came back at restart");
    assert_eq!(c.sites.prod.pair("hb0").expect("pair")["installed"], false);
    c.prod.wait_advance("mirror:hb1.seen.count", 3);
    assert!(c.prod.device("hb0").is_none());
    assert!(c.standby.device("hb0").is_none());
    assert_eq!(c.sites.prod.pair("hb0").expect("pair")["installed"], false);
    c.sites.prod.ok(&["pair", "split", "hb0"]);
    // The config's entry is installed again only when a person asks.
    c.sites.prod.ok(&["pair", "resync", "hb0"]);
    c.sites.prod.wait_state("hb0", "PAIR");
    let said = c.prod.ok(&["hb", "mirror", "install", "--name", "hb0"]);
    assert!(said.contains("protected from split"), "{said}");
    assert_eq!(c.sites.prod.pair("hb0").expect("pair")["installed"], true);
    wait_for("hb0 back at the standby", || {
        c.standby.device("hb0").is_some()
    });
    c.standby
        .wait_table("hb0 alive", |t| t["remote_group_via_mirrors"] == "ALIVE");
}

#[test]
fn pairs_are_protected_again_at_start_or_their_mirror_fails_unwritten() {
    let Some(mut c) =
        Cluster::start("pairs_are_protected_again_at_start_or_their_mirror_fails_unwritten")
    else {
        return;
    };
    // The protection is lifted behind hbd's back (or mirrord lost it).
    c.sites.prod.ok(&["pair", "uninstall", "hb0"]);
    c.prod.stop();
    c.prod.start();
    assert_eq!(c.sites.prod.pair("hb0").expect("pair")["installed"], true);
    let e = c.sites.prod.fails(&["pair", "split", "hb0"]);
    assert!(e.contains("carries heartbeats"), "{e}");
    // A new [[mirrors]] entry over a data pair: checked at start, FAILED
    // with the reason, and no heartbeat is written over the data.
    let app = c.sites.prod.file("app");
    write_at(&app, 0, b"production data");
    c.prod.stop();
    edit_config(&c.prod, |text| {
        format!(
            "{text}[[mirrors]]\nname = \"bad\"\npvol = \"{}\"\npair = \"app\"\n",
            app.display()
        )
    });
    c.prod.start();
    let bad = c.prod.device("bad").expect("bad is installed");
    assert_eq!(bad["status"], "FAILED", "{bad}");
    let problem = bad["seen"]["problem"].as_str().unwrap_or_default();
    assert!(
        problem.contains("pair 'app' is not protected") && problem.contains("data pair"),
        "{problem}"
    );
    c.prod.wait_advance("mirror:hb1.seen.count", 3);
    assert_eq!(&read_all(&app)[..15], b"production data");
    assert_eq!(c.prod.device("bad").expect("bad")["status"], "FAILED");
}
