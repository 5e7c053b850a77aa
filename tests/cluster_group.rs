//! Inside a site, two channels and one master (issue 26), with real
//! processes: the cluster of `cluster/harness.rs` with its groups (prod
//! {p1, p2}, standby {s1, s2}, each keeping its slots on its site's
//! unpaired volume `grp`, each host through its own remote mount), a
//! host's LAN cut by taking its veth down while its storage path stays,
//! a host frozen with SIGSTOP while a watchdog stand-in (a FIFO read by
//! the test) watches its petting.

mod common;
// Shared with tests/cluster.rs, which uses the rest of it.
#[allow(dead_code)]
#[path = "cluster/harness.rs"]
mod harness;
mod hbcluster;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{wait_for, WatchdogStandin};
use harness::{app, at, groups, node, Members};

/// The senders of the heartbeats `hbd`'s table has accepted.
fn senders(t: &serde_json::Value) -> Vec<String> {
    t["watermarks"]
        .as_array()
        .map(|w| {
            w.iter()
                .filter_map(|w| w["sender"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn lan_faults(v: &serde_json::Value) -> Vec<String> {
    v["group"]["lan_faults"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|h| h.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_host_cut_off_its_lan_is_a_lan_fault_never_a_takeover_or_a_second_master() {
    let Some(m) = Members::start_with("a_host_cut_off_its_lan", groups, |_| {}) else {
        return;
    };
    m.hbd("p2").wait_table("p1 master", |t| t["master"] == "p1");
    m.hbd("s1").wait_table("prod alive, from its master", |t| {
        t["remote_group_via_network"] == "ALIVE"
    });
    m.wait_view("p1", "p2's slot seen", |v| {
        v["group"]["slots"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["host"] == "p2"))
    });

    // p2's LAN goes; its storage path stays.
    m.apart.lan.link(at("p2"), false);
    // Both sides see a LAN fault (the other's slot advances), no DOWN.
    m.wait_view("p1", "p2 a LAN fault at p1", |v| {
        lan_faults(v).contains(&"p2".to_string())
    });
    m.wait_view("p2", "p1 a LAN fault at p2", |v| {
        lan_faults(v).contains(&"p1".to_string())
    });
    // Progress: prod's master goes on sending; the standby takes 30 more beats.
    m.hbd("s1").wait_advance("network.last_serial", 30);
    let v = m.view("p1");
    assert_ne!(node(&v, "p2")["status"], "DOWN", "{v}");
    assert_eq!(app(&v, "app2")["active"], "p2", "nothing taken over: {v}");
    assert!(
        v["group"]["slots"].as_array().is_some_and(|s| s
            .iter()
            .any(|s| s["host"] == "p2" && s["still_ms"].as_u64() < Some(1000))),
        "p2's slot still advances: {v}"
    );
    let p2 = m.hbd("p2").table();
    assert_eq!(
        (&p2["master"], &p2["master_instance"]),
        (&serde_json::json!("p1"), &serde_json::json!(1)),
        "p2 elected no one: {p2}"
    );
    let s1 = m.hbd("s1").table();
    assert_eq!(senders(&s1), vec!["p1".to_string()], "one sender: {s1}");
    assert!(
        m.hbd("p1").log_text().contains("a LAN fault, not a DOWN"),
        "the LAN fault is reported"
    );
    let shown = m.hbctl("p1", &["show"]);
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(
        text.contains("LAN fault: p2 is silent on the LAN but its slot advances"),
        "{text}"
    );

    // The LAN back: the fault is over.
    m.apart.lan.link(at("p2"), true);
    m.wait_view("p1", "the LAN fault over", |v| lan_faults(v).is_empty());
    assert_eq!(senders(&m.hbd("s1").table()), vec!["p1".to_string()]);
}

/// A master that cannot write its slot gives up its reign before the next
/// host may start: at the standby, the two never send at once.
#[test]
fn a_master_that_loses_its_slot_resigns_before_the_next_one_reigns() {
    let Some(m) = Members::start_with("a_master_that_loses_its_slot", groups, |_| {}) else {
        return;
    };
    m.hbd("p2").wait_table("p1 master", |t| t["master"] == "p1");
    m.hbd("s1")
        .wait_table("p1's beats at the standby", |t| senders(t) == ["p1"]);
    // p1's storage path cut (its LAN stays): it cannot write its slot.
    m.apart.host("p1").storage_link(false);
    m.hbd("p2").wait_table("p2 master, instance 2", |t| {
        t["master"] == "p2" && t["master_instance"] == 2
    });
    // (Its run task may be held up by its storage probe and hear p2's reign
    // before it says its lease ran out; its gate, a lease checked at each
    // use, closed on time either way.)
    wait_for("p1 gave up its reign", || {
        let log = m.hbd("p1").log_text();
        log.contains("stops acting as its group's master")
            || log.contains("another host is master now: this one steps down")
    });
    // The standby hears p2 now; p1 sent nothing after p2 began.
    m.hbd("s1").wait_table("p2's beats at the standby", |t| {
        senders(t).contains(&"p2".to_string())
    });
    let serial_of = |t: &serde_json::Value, who: &str| {
        t["watermarks"].as_array().and_then(|w| {
            w.iter()
                .find(|w| w["sender"] == who)
                .and_then(|w| w["serial"].as_u64())
        })
    };
    let before = serial_of(&m.hbd("s1").table(), "p1");
    let p2_then = serial_of(&m.hbd("s1").table(), "p2").unwrap_or(0);
    wait_for("20 more beats of p2 at the standby", || {
        serial_of(&m.hbd("s1").table(), "p2").is_some_and(|s| s >= p2_then + 20)
    });
    assert_eq!(
        serial_of(&m.hbd("s1").table(), "p1"),
        before,
        "p1 sends nothing once p2 reigns"
    );
    m.apart.host("p1").storage_link(true);
}

/// Prod's group with one application, app2, on p2; p1, the other host of
/// its group (and its master), stands by first (only a STANDBY node takes
/// over). p2's watchdog is a stand-in that kills p2's hbd and app2 when
/// the petting stops; msgwait = 2 × fence_timeout_ms (p1 has no watchdog)
/// outlasts p2's watchdog timeout.
struct Fenceable {
    m: Members,
    standin: WatchdogStandin,
    _dir: tempfile::TempDir,
}

impl Fenceable {
    fn start(test: &str) -> Option<Fenceable> {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("p2.watchdog");
        let victims: Arc<Mutex<Vec<u32>>> = Arc::default();
        let kill = Arc::clone(&victims);
        let standin = WatchdogStandin::start(&fifo, Duration::from_millis(2000), move || {
            kill.lock().map(|v| v.clone()).unwrap_or_default()
        });
        let edit = |host: &str, config: &mut String, apart: &hbcluster::hosts::Apart| {
            groups(host, config, apart);
            if host.starts_with('p') {
                let mut top = "fence_timeout_ms = 2000\nwatchdog_timeout_ms = 2000\n".to_string();
                if host == "p2" {
                    top += &format!("watchdog_device = \"{}\"\n", fifo.display());
                }
                *config = format!("{top}{config}");
            }
        };
        let m = Members::start_with(test, edit, |mib| {
            mib["applications"][1]["standby"] = serde_json::json!(["p1", "s2"]);
            if let Some(apps) = mib["applications"].as_array_mut() {
                apps.remove(0);
            }
            mib["nodes"][0]["status"] = serde_json::json!("STANDBY");
        })?;
        m.hbd("p2").wait_table("p1 master", |t| t["master"] == "p1");
        standin.wait_pets(5);
        wait_for("app2's pid on p2", || m.app_pid("app2", "p2").is_some());
        let hbd = m.hbd("p2").pid().expect("p2's hbd runs");
        let app2 = m.app_pid("app2", "p2").expect("app2 runs on p2");
        *victims.lock().expect("victims") = vec![hbd, app2];
        Some(Fenceable {
            m,
            standin,
            _dir: dir,
        })
    }

    /// app2's rounds never overlap: every round of p2 before every one of p1.
    fn never_twice(&self) {
        let runs = self.m.out().join("app2.runs");
        let text = std::fs::read_to_string(&runs).expect("runs");
        let at = |who: &str| -> Vec<u128> {
            text.lines()
                .filter_map(|l| l.strip_prefix(who))
                .filter_map(|t| t.trim().parse().ok())
                .collect()
        };
        let (p2_last, p1_first) = (
            at("p2 ").into_iter().max().expect("p2 ran"),
            at("p1 ").into_iter().min().expect("p1 ran"),
        );
        assert!(
            p2_last < p1_first,
            "app2 ran on p2 until {p2_last} ns and on p1 from {p1_first} ns: overlap"
        );
    }
}

/// A member frozen with SIGSTOP keeps its application running; its
/// watchdog (a stand-in that kills its processes when petting stops) ends
/// it, and only after msgwait is it started on the host of its group that
/// takes it over: the application never runs on two hosts at once.
#[test]
fn a_frozen_member_is_fenced_before_its_application_starts_elsewhere() {
    let Some(f) = Fenceable::start("a_frozen_member_is_fenced") else {
        return;
    };
    let (m, standin) = (&f.m, &f.standin);
    let hbd = m.hbd("p2").pid().expect("p2's hbd runs");
    let runs = m.out().join("app2.runs");
    wait_for("app2 runs on p2", || {
        std::fs::read_to_string(&runs).is_ok_and(|t| t.contains("p2 "))
    });

    // p2's hbd freezes; its application goes on until the watchdog ends it.
    common::signal(hbd, "STOP");
    standin.wait_fired();
    m.wait_view("p1", "app2 taken over by p1", |v| {
        app(v, "app2")["active"] == "p1"
    });
    wait_for("app2 runs on p1", || {
        std::fs::read_to_string(&runs).is_ok_and(|t| t.contains("p1 "))
    });
    let log = m.hbd("p1").log_text();
    assert!(
        log.contains("did not acknowledge the poison within msgwait"),
        "p1 waited out msgwait before starting app2"
    );
    f.never_twice();
    let v = m.view("p1");
    assert_eq!(node(&v, "p2")["status"], "DOWN", "{v}");
}

/// A member that loses both its LAN and its slot (its LAN link and its
/// storage path taken down) fences itself within fence_timeout_ms: it
/// stops its application and its watchdog is no longer petted; the other
/// host of its group takes the application over only after msgwait.
#[test]
fn a_member_that_loses_its_lan_and_its_slot_fences_itself() {
    let Some(f) = Fenceable::start("a_member_that_loses_both") else {
        return;
    };
    let m = &f.m;
    let runs = m.out().join("app2.runs");
    wait_for("app2 runs on p2", || {
        std::fs::read_to_string(&runs).is_ok_and(|t| t.contains("p2 "))
    });
    m.apart.lan.link(at("p2"), false);
    m.apart.host("p2").storage_link(false);
    wait_for("p2 fences itself", || {
        m.hbd("p2")
            .log_text()
            .contains("is FENCED: it lost both its LAN")
    });
    f.standin.wait_fired();
    m.wait_view("p1", "app2 taken over by p1", |v| {
        app(v, "app2")["active"] == "p1"
    });
    wait_for("app2 runs on p1", || {
        std::fs::read_to_string(&runs).is_ok_and(|t| t.contains("p1 "))
    });
    f.never_twice();
    assert!(
        m.hbd("p2")
            .log_text()
            .contains("hbd stops petting the watchdog"),
        "its watchdog is no longer petted"
    );
}

/// A poison with a bad tag, or addressed to another host, in a member's
/// mailbox: refused and named in its log and its `hbctl cluster show`,
/// and nothing is stopped.
#[test]
fn a_forged_or_misaddressed_poison_is_refused_and_stops_nothing() {
    use hbmirror::cluster::group::slot::{slot_offset, Poison, BLOCK};
    use std::os::unix::fs::FileExt;

    let Some(m) = Members::start_with("a_forged_poison", groups, |_| {}) else {
        return;
    };
    m.hbd("p2").wait_table("p1 master", |t| t["master"] == "p1");
    wait_for("app2's pid on p2", || m.app_pid("app2", "p2").is_some());
    let app2 = m.app_pid("app2", "p2").expect("app2 runs on p2");
    let key = hbcore::config::read_key(&m.apart.hb_key).expect("the heartbeat key");
    // p2 is the second host of prod's group: its mailbox follows its slot.
    let mailbox = slot_offset(0, 1) + BLOCK as u64;
    let grp = std::fs::OpenOptions::new()
        .write(true)
        .open(m.apart.prod.file("grp"))
        .expect("prod's grp through mirrord's own mount");
    let poison = |to: &str, key: &[u8]| {
        Poison {
            to: to.into(),
            run: 0,
            from: "p1".into(),
            id: 77,
        }
        .encode(key)
        .expect("a block")
    };
    let refused = |what: &str| {
        wait_for(&format!("p2 refuses {what}"), || {
            m.view("p2")["group"]["refused"]["p2"]
                .as_str()
                .is_some_and(|r| r.contains(what))
        });
    };

    grp.write_all_at(&poison("p2", b"not the group's key, 32 bytes...."), mailbox)
        .expect("a forged poison");
    grp.sync_all().expect("sync");
    refused("signed with another key");
    grp.write_all_at(&poison("p1", &key), mailbox)
        .expect("a misaddressed poison");
    grp.sync_all().expect("sync");
    refused("addressed to host 'p1'");

    // Nothing stopped: p2 serves on, its application runs, no fence.
    let v = m.view("p2");
    assert!(v["group"]["fenced"].is_null(), "{v}");
    assert_eq!(node(&v, "p2")["status"], "ACTIVE", "{v}");
    assert!(
        std::path::Path::new(&format!("/proc/{app2}")).exists(),
        "app2 still runs on p2"
    );
    assert!(
        m.hbd("p2")
            .log_text()
            .contains("the poison in this host's mailbox is refused"),
        "named in the log"
    );
}

/// Sends `datagram` to `to` from inside network namespace `ns` (a thread
/// of its own enters it, so the test's other threads stay where they are).
fn send_from_ns(ns: &str, to: std::net::SocketAddr, datagram: Vec<u8>) {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(&path).expect("the namespace");
        // SAFETY: `f` is an open namespace file for the call; setns changes
        // only this thread's network namespace.
        let entered = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(
            entered,
            0,
            "setns {path}: {}",
            std::io::Error::last_os_error()
        );
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("a socket");
        socket.send_to(&datagram, to).expect("sent");
    })
    .join()
    .expect("the sender");
}

/// The seed's invalid master heartbeats (seed 000): one whose time does
/// not advance (a replay, or a stuck clock), one from a wrong master id,
/// one of an expired instance — each refused and named in the log, and no
/// one is re-elected while the real master's heartbeats go on.
#[test]
fn invalid_master_heartbeats_are_refused_and_reelect_no_one() {
    use hbmirror::cluster::notice::{Kind, Notice};

    let Some(m) = Members::start_with("invalid_master_heartbeats", groups, |_| {}) else {
        return;
    };
    m.hbd("p2").wait_table("p1 master", |t| t["master"] == "p1");
    // p1 has been sending its master heartbeats to p2 for a while.
    m.hbd("p1").wait_advance("serial", 10);
    let key = hbcore::config::read_key(&m.apart.hb_key).expect("the heartbeat key");
    let mib = std::fs::read_to_string(m.apart.root.path().join("mib.json")).expect("the MIB");
    // p1's run, as its hbd logged it at start (hex).
    let log = m.hbd("p1").log_text();
    let run = log
        .split("instance=\"")
        .nth(1)
        .and_then(|t| t.split('"').next())
        .and_then(|hex| u64::from_str_radix(hex, 16).ok())
        .expect("p1's instance in its log");
    let beat = |from: &str, instance: u64, run: u64, uptime: u64| -> Vec<u8> {
        let n: Notice = serde_json::from_value(serde_json::json!({
            "from": from, "about": from, "kind": "master",
            "instance": instance, "time_ms": 1, "run": run, "uptime_ms": uptime,
            "mib": serde_json::from_str::<serde_json::Value>(&mib).expect("MIB JSON"),
        }))
        .expect("a notice");
        assert_eq!(n.kind, Kind::Master);
        n.encode(&key).expect("signed")
    };
    let client = m.apart.lan.hosts[harness::CLIENT].clone();
    let at = |host: &str| -> std::net::SocketAddr {
        format!("{}:{}", m.apart.lan.addr(at(host)), harness::PORT)
            .parse()
            .expect("an address")
    };

    // p1's own run with an uptime long past: its time does not advance.
    send_from_ns(&client, at("p2"), beat("p1", 1, run, 1));
    // p2 claiming p1's reign: a wrong master id (to p1, the master).
    send_from_ns(&client, at("p1"), beat("p2", 1, 7, 1_000_000));
    // p1 of instance 0: an expired reign.
    send_from_ns(&client, at("p2"), beat("p1", 0, run, u64::MAX / 2));
    for (host, said) in [
        ("p2", "whose time does not advance refused"),
        ("p1", "with a wrong master id refused"),
        ("p2", "with an expired cluster instance id refused"),
    ] {
        wait_for(&format!("{host} logs a master heartbeat {said}"), || {
            m.hbd(host).log_text().contains(said)
        });
    }
    // The real master's heartbeats go on; no one was re-elected.
    m.hbd("p1").wait_advance("serial", 20);
    for h in ["p1", "p2"] {
        let t = m.hbd(h).table();
        assert_eq!(
            (&t["master"], &t["master_instance"]),
            (&serde_json::json!("p1"), &serde_json::json!(1)),
            "{h}: {t}"
        );
    }
}
