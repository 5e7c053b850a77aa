//! Clusters of many hosts (seed 004, Figs 4 and 5), with real processes:
//! four members in network namespaces on one LAN, each apart from its
//! site's storage (its own `hbfs --storage` mount, mirrord's control over
//! the host link, a veth of its own to the storage namespace), two
//! applications writing to their data pairs through their hosts' mounts,
//! floating IPs a client pings. See `cluster/harness.rs`.

mod common;
#[path = "cluster/harness.rs"]
mod harness;
mod hbcluster;

use common::wait_for;
use harness::{app, at, event_ms, groups, node, now_ms, Members, CLIENT, HOSTS};

/// Pings `address` from the client until `host` answers (by its MAC); when
/// it first did (ms since the epoch).
fn wait_answer(m: &Members, address: &str, host: &str) -> u64 {
    let mac = m.apart.lan.mac(at(host));
    wait_for(&format!("{address} answered by {host} ({mac})"), || {
        m.apart.lan.ping(CLIENT, address).as_deref() == Some(mac.as_str())
    });
    now_ms()
}

#[test]
fn a_down_notice_and_silence_each_move_an_application_to_its_standby() {
    let Some(mut m) = Members::start("a_down_notice_and_silence_each_move") else {
        return;
    };
    // Start of day: each application on its active node, every MIB alike.
    wait_answer(&m, "10.90.0.101", "p1");
    wait_answer(&m, "10.90.0.102", "p2");
    wait_for("app1 written by p1 at prod", || {
        m.writer(&m.apart.prod, "app1") == "p1"
    });
    let mib = m.wait_same_mib(&HOSTS);
    assert_eq!(mib["cluster_id"], "c1");
    assert_eq!(node(&mib, "p1")["status"], "ACTIVE");
    assert_eq!(node(&mib, "s1")["status"], "STANDBY");
    for h in ["s1", "s2"] {
        m.hbd(h).wait_table("its production peer alive", |t| {
            t["remote_group_via_network"] == "ALIVE"
        });
    }

    // 1. p1's self-check fails: it sends DOWN; s1 takes app1 over by itself.
    m.set_healthy("p1", false);
    let answered = wait_answer(&m, "10.90.0.101", "s1");
    let down = event_ms(m.hbd("p1"), "p1 is DOWN");
    let v = m.view("s1");
    let took = &v["takeovers"][0];
    println!(
        "DOWN by self-check: the floating IP answered the client from s1 {} ms after p1 sent DOWN \
         (s1: {} ms from the notice's arrival to the IP assumed and announced)",
        answered.saturating_sub(down),
        took["down_to_ip_ms"]
    );
    assert_eq!(took["application"], "app1");
    assert_eq!(took["from"], "p1");
    assert!(
        !m.apart.lan.holds(at("p1"), "10.90.0.101"),
        "p1 released the IP"
    );
    assert_eq!(
        m.apart.standby.pair("app1").expect("app1")["state"],
        "SSWS",
        "s1 took the data pair over"
    );
    wait_for("app1 written by s1 at the standby site", || {
        m.writer(&m.apart.standby, "app1") == "s1"
    });
    let mib = m.wait_same_mib(&HOSTS);
    assert_eq!(node(&mib, "p1")["status"], "DOWN");
    assert!(
        node(&mib, "p1")["reason"]
            .as_str()
            .is_some_and(|r| r.contains("check 'self'")),
        "{mib}"
    );
    assert_eq!(node(&mib, "s1")["status"], "ACTIVE");
    assert_eq!(app(&mib, "app1")["active"], "s1");
    assert_eq!(node(&mib, "s1")["floating_ips"][0], "10.90.0.101/24");
    let pid = m.app_pid("app1", "p1").expect("p1 ran app1");
    wait_for("p1's app1 stopped", || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    });

    // p1 recovers: STANDBY, never active again by itself.
    m.set_healthy("p1", true);
    m.wait_view("s1", "p1 STANDBY", |v| node(v, "p1")["status"] == "STANDBY");
    let v = m.view("s1");
    assert_eq!(app(&v, "app1")["active"], "s1");
    assert_eq!(app(&v, "app1")["standby"][0], "p1");
    assert!(!m.apart.lan.holds(at("p1"), "10.90.0.101"));

    // 2. p2 dies (kill -9, its NIC down, its application gone): silence on
    // every channel is DOWN; s2 takes app2 over.
    m.kill_host("p2");
    if let Some(pid) = m.app_pid("app2", "p2") {
        common::signal(pid, "KILL");
    }
    m.apart.lan.link(at("p2"), false);
    let answered = wait_answer(&m, "10.90.0.102", "s2");
    let down = event_ms(m.hbd("s2"), "p2 is DOWN");
    let v = m.view("s2");
    println!(
        "DOWN by silence: the floating IP answered the client from s2 {} ms after s2 found p2 DOWN \
         (s2: {} ms from its verdict to the IP assumed)",
        answered.saturating_sub(down),
        v["takeovers"][0]["down_to_ip_ms"]
    );
    assert!(node(&v, "p2")["reason"]
        .as_str()
        .is_some_and(|r| r.contains("silent on every channel")));
    assert_eq!(app(&v, "app2")["active"], "s2");
    assert_eq!(m.apart.standby.pair("app2").expect("app2")["state"], "SSWS");
    wait_for("app2 written by s2", || {
        m.writer(&m.apart.standby, "app2") == "s2"
    });

    // p2 restarted: it learns the newer MIB and comes back STANDBY, holding nothing.
    m.apart.lan.link(at("p2"), true);
    m.start_host("p2");
    m.wait_view("s2", "p2 STANDBY", |v| node(v, "p2")["status"] == "STANDBY");
    let mib = m.wait_same_mib(&HOSTS);
    assert_eq!(app(&mib, "app2")["active"], "s2");
    m.hbd("s2")
        .wait_table("its verdict re-armed for the next silence", |t| {
            t["failed_over"] == false
        });
    assert!(!m.apart.lan.holds(at("p2"), "10.90.0.102"));
    wait_answer(&m, "10.90.0.102", "s2");
    assert!(m.view("s2")["conflicts"]
        .as_array()
        .is_some_and(|c| c.is_empty()));

    // 3. The standby site's storage dies (mirrord kill -9): its storage node
    // is DOWN, s1 and s2 with it, and both applications go back to prod.
    m.apart.standby.kill();
    let answered = wait_answer(&m, "10.90.0.101", "p1");
    wait_answer(&m, "10.90.0.102", "p2");
    let down = event_ms(m.hbd("s1"), "storage");
    println!(
        "storage DOWN: app1 answered from p1 {} ms after s1 found its mirrord dead",
        answered.saturating_sub(down)
    );
    let v = m.view("p1");
    let standby_storage = v["storage"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["id"] == "standby"))
        .expect("the standby site's storage node");
    assert_eq!(standby_storage["status"], "DOWN", "{v}");
    assert_eq!(app(&v, "app1")["active"], "p1");
    assert_eq!(node(&v, "s1")["status"], "DOWN");
    assert!(node(&v, "s1")["reason"]
        .as_str()
        .is_some_and(|r| r.contains("its storage")));
    wait_for("app1 written by p1 at prod", || {
        m.writer(&m.apart.prod, "app1") == "p1"
    });
}

#[test]
fn an_application_moves_to_a_host_of_its_site_then_to_the_other_site() {
    let Some(m) = Members::start_with(
        "an_application_moves_to_a_host_of_its_site",
        |_, _, _| {},
        |mib| {
            // One application, app1, with a standby at its own site first:
            // p2 stands by (only a STANDBY node takes over).
            mib["applications"][0]["standby"] = serde_json::json!(["p2", "s1"]);
            if let Some(apps) = mib["applications"].as_array_mut() {
                apps.truncate(1);
            }
            mib["nodes"][1]["status"] = serde_json::json!("STANDBY");
        },
    ) else {
        return;
    };
    wait_answer(&m, "10.90.0.101", "p1");
    wait_for("app1 written by p1 at prod", || {
        m.writer(&m.apart.prod, "app1") == "p1"
    });
    let mib = m.wait_same_mib(&HOSTS);
    assert_eq!(
        app(&mib, "app1")["standby"],
        serde_json::json!(["p2", "s1"])
    );

    // 1. p1's self-check fails: p2, a host of the same site, takes app1
    // over. The pair stays as it is (PVOL at prod, PAIR), written now
    // through p2's own mount.
    m.set_healthy("p1", false);
    wait_answer(&m, "10.90.0.101", "p2");
    let v = m.view("p2");
    assert_eq!(app(&v, "app1")["active"], "p2", "{v}");
    assert_eq!(v["takeovers"][0]["application"], "app1");
    assert_eq!(v["takeovers"][0]["from"], "p1");
    wait_for("app1 written by p2 at prod", || {
        m.writer(&m.apart.prod, "app1") == "p2"
    });
    let pvol = m.apart.prod.pair("app1").expect("app1");
    assert_eq!(
        (&pvol["role"], &pvol["state"]),
        (&serde_json::json!("pvol"), &serde_json::json!("PAIR")),
        "{pvol}"
    );
    assert_eq!(m.apart.standby.pair("app1").expect("app1")["state"], "PAIR");
    let pid = m.app_pid("app1", "p1").expect("p1 ran app1");
    wait_for("p1's app1 stopped", || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    });

    // 2. p2's self-check fails too: app1's next standing standby is s1, at
    // the other site. It takes the pair over through its host link (SSWS)
    // and runs app1, written at the standby site through s1's own mount.
    m.set_healthy("p2", false);
    wait_answer(&m, "10.90.0.101", "s1");
    assert_eq!(m.apart.standby.pair("app1").expect("app1")["state"], "SSWS");
    wait_for("app1 written by s1 at the standby site", || {
        m.writer(&m.apart.standby, "app1") == "s1"
    });
    let mib = m.wait_same_mib(&HOSTS);
    assert_eq!(app(&mib, "app1")["active"], "s1");
    assert_eq!(node(&mib, "p2")["status"], "DOWN");
    let pid = m.app_pid("app1", "p2").expect("p2 ran app1");
    wait_for("p2's app1 stopped", || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
    });
}

#[test]
fn hot_add_validates_a_node_and_remove_keeps_the_last_standby() {
    let Some(mut m) = Members::start("hot_add_validates_a_node") else {
        return;
    };
    m.wait_same_mib(&HOSTS);
    m.start_host("s3");
    m.start_host("s4");
    let add = |id: &str| {
        let ip = m.apart.lan.addr(at(id));
        let out = m.hbctl(
            "p1",
            &[
                "add",
                "--id",
                id,
                "--ip",
                &ip,
                "--site",
                "standby",
                "--standby-for",
                "app1",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    // s3 has no executable for app1: it stays DOWN, and says why.
    assert!(add("s3").contains("added as DOWN"));
    m.wait_view("p1", "s3 DOWN with the reason", |v| {
        node(v, "s3")["reason"]
            .as_str()
            .is_some_and(|r| r.contains("app1: executable") && r.contains("not found here"))
    });
    // s3 gets an executable that is present but whose check fails: it is
    // started, checked, stopped, and s3 stays DOWN with that reason.
    m.install_failing_check("s3");
    m.wait_view("p1", "s3 DOWN: its check fails", |v| {
        node(v, "s3")["reason"]
            .as_str()
            .is_some_and(|r| r.contains("app1: check:") && r.contains("exit status: 1"))
    });
    assert!(m.ran("s3", "start") && m.ran("s3", "stop"));
    // s4 has a good one: started, checked and stopped, then STANDBY.
    add("s4");
    m.wait_view("p1", "s4 STANDBY", |v| node(v, "s4")["status"] == "STANDBY");
    let trial = m
        .app_pid("app1", "s4.trial")
        .expect("s4's trial run started app1");
    wait_for("s4's trial run stopped", || {
        !std::path::Path::new(&format!("/proc/{trial}")).exists()
    });
    assert!(m.app_pid("app1", "s4").is_none(), "s4 does not run app1");
    let mib = m.wait_same_mib(&["p1", "p2", "s1", "s2", "s3", "s4"]);
    assert_eq!(node(&mib, "s3")["status"], "DOWN");
    assert_eq!(
        app(&mib, "app1")["standby"],
        serde_json::json!(["s1", "s3", "s4"])
    );
    let again = m.hbctl("p1", &["add", "--id", "s4", "--ip", "10.90.0.7"]);
    assert!(!again.status.success());

    // s2 is app2's last standby: not removed unless forced.
    let refused = m.hbctl("s1", &["remove", "s2"]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("last standby of application 'app2'"), "{why}");
    let version = m.view("s1")["version"].as_u64().expect("version");
    let out = m.hbctl("s1", &["remove", "s4"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mib = m.wait_same_mib(&["p1", "p2", "s1", "s2", "s3"]);
    assert!(node(&mib, "s4").is_null(), "{mib}");
    assert_eq!(node(&mib, "s2")["status"], "STANDBY");
    assert!(mib["version"].as_u64() > Some(version));
    assert_eq!(
        app(&mib, "app1")["standby"],
        serde_json::json!(["s1", "s3"])
    );
}

#[test]
fn start_of_day_forms_the_cluster_from_who_answers_and_reports_a_mismatch() {
    let Some(mut m) = Members::start("start_of_day_forms") else {
        return;
    };
    wait_answer(&m, "10.90.0.102", "p2");
    m.wait_same_mib(&HOSTS);
    // s3 is in no MIB yet: only the broadcast reaches it.
    m.start_host("s3");
    let version = m.view("p1")["version"].as_u64().expect("version");
    // p2 lacks app2's executable: reported, nothing changes.
    let script = m.out().join("bin/p2/app");
    std::fs::rename(&script, script.with_extension("off")).expect("hide p2's app");
    let refused = m.hbctl("p1", &["form", "--wait-ms", "500"]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("not formed"), "{why}");
    assert!(
        why.contains("p2: validation failed: app2: executable"),
        "{why}"
    );
    assert_eq!(m.view("p1")["version"].as_u64(), Some(version));
    std::fs::rename(script.with_extension("off"), &script).expect("p2's app back");

    let out = m.hbctl("p1", &["form", "--wait-ms", "500"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{said}");
    assert!(said.contains("with 5 members"), "{said}");
    assert!(
        said.contains(&format!("s3 ({})", m.apart.lan.addr(at("s3")))),
        "{said}"
    );
    let mib = m.wait_same_mib(&["p1", "p2", "s1", "s2", "s3"]);
    assert!(mib["version"].as_u64() > Some(version));
    assert_eq!(node(&mib, "s3")["status"], "STANDBY");
    assert_eq!(node(&mib, "p1")["status"], "ACTIVE");
    assert_eq!(app(&mib, "app2")["active"], "p2");
}

#[test]
fn the_next_host_of_a_group_becomes_master_and_keeps_the_table() {
    let Some(mut m) = Members::start_with("the_next_host_of_a_group", groups, |_| {}) else {
        return;
    };
    m.hbd("p2").wait_table("p1 master", |t| t["master"] == "p1");
    m.hbd("s1").wait_table("prod alive, from its master", |t| {
        t["remote_group_via_network"] == "ALIVE" && t["master"] == "s1"
    });
    m.hbd("p1").wait_advance("serial", 10);
    let from_p2 = |t: &serde_json::Value, above: u64| {
        t["watermarks"].as_array().is_some_and(|w| {
            w.iter()
                .any(|w| w["sender"] == "p2" && w["serial"].as_u64() > Some(above))
        })
    };
    assert!(
        !from_p2(&m.hbd("s1").table(), 0),
        "p2, not master, sends nothing"
    );

    // p1 dies (kill -9, its application gone, its NIC down).
    m.kill_host("p1");
    if let Some(pid) = m.app_pid("app1", "p1") {
        common::signal(pid, "KILL");
    }
    m.apart.lan.link(at("p1"), false);
    let sent = m.hbd("s1").table()["network"]["last_serial"]
        .as_u64()
        .expect("a serial");
    m.hbd("p2").wait_table("p2 master, instance 2", |t| {
        t["master"] == "p2" && t["master_instance"] == 2
    });
    let serial = m.hbd("p2").table()["serial"].as_u64();
    assert!(
        serial >= Some(sent),
        "p2 goes on from p1's serial {sent} (the table taken over from the volume), not its own: {serial:?}"
    );
    // The standby hears prod's new master go on from where the old one
    // stopped: p2's serials follow p1's (the table taken over from the volume).
    m.hbd("s1")
        .wait_table("p2's heartbeats accepted", |t| from_p2(t, sent));
    let s1 = m.hbd("s1").table();
    assert_eq!(s1["remote_group_via_network"], "ALIVE");
    assert_eq!(s1["failed_over"], false);
    let text = m.hbd("p2").ok(&["hb", "status"]);
    assert!(
        text.contains("master of the group: p2 (cluster instance 2)"),
        "{text}"
    );

    // No hbd verdict saw p1 die (prod stayed alive through p2); its
    // successor found it silent: DOWN, and app1's standby s1 takes it over.
    wait_answer(&m, "10.90.0.101", "s1");
    let v = m.view("s1");
    assert_eq!(node(&v, "p1")["status"], "DOWN");
    assert!(
        node(&v, "p1")["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no master heartbeat")),
        "{v}"
    );
    assert_eq!(app(&v, "app1")["active"], "s1");
    assert_eq!(m.apart.standby.pair("app1").expect("app1")["state"], "SSWS");

    // s2 stalls (SIGSTOP) past the master timeout (2 s) and goes on: the
    // silence was its own, so it re-elects no one. (Within the standby's
    // 4 s timeout, so its master does not mark it DOWN either.)
    m.wait_view("s1", "s2 STANDBY", |v| node(v, "s2")["status"] == "STANDBY");
    let s2 = m.hbd("s2").pid().expect("s2 runs");
    common::signal(s2, "STOP");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    common::signal(s2, "CONT");
    wait_for("s2 says it was stalled", || {
        m.hbd("s2").log_text().contains("this host was stalled for")
    });
    m.hbd("s1").wait_advance("serial", 20);
    for h in ["s1", "s2"] {
        let t = m.hbd(h).table();
        assert_eq!(
            (&t["master"], &t["master_instance"]),
            (&serde_json::json!("s1"), &serde_json::json!(1)),
            "{h}: a stalled member re-elected no one"
        );
    }
    assert_eq!(node(&m.view("s1"), "s2")["status"], "STANDBY");

    // s2, not a master, dies: no hbd verdict is about it (prod hears the
    // standby group through its master s1) and it sends nothing. Its master
    // had an answer to every heartbeat from it; the answers stop: DOWN.
    m.kill_host("s2");
    m.apart.lan.link(at("s2"), false);
    m.wait_view("s1", "s2 DOWN", |v| node(v, "s2")["status"] == "DOWN");
    let v = m.view("s1");
    assert!(
        node(&v, "s2")["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no answer to the master's heartbeat")),
        "{v}"
    );
    assert_eq!(
        m.hbd("s1").table()["master"],
        "s1",
        "s1 stays master: a member's silence is not the master's"
    );
}
