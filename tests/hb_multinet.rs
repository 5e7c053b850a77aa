//! Several networks and the fault analysis (seed 002), with real processes
//! and real networks: each host's hbd in a network namespace of its own,
//! two IP networks between them through a router namespace, and the
//! heartbeat mirrors (see `hbcluster::netns`). A fault is made where it
//! would happen: a NIC taken down at one end, a filter dropping traffic in
//! the middle, a config that lists other networks, a site killed.

mod common;
mod hbcluster;

use std::time::Duration;

use common::wait_for;
use hbcluster::netns::End;
use hbcluster::{verdict, wait_verdict, NetCluster, TIMEOUT_MS};

/// No failover for `window` (absence can only be watched).
fn no_failover_for(c: &NetCluster, window: Duration) {
    let start = std::time::Instant::now();
    while start.elapsed() < window {
        assert_eq!(c.failovers(), 0, "failed over:\n{}", c.standby.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(c.standby.table()["failed_over"], false);
}

#[test]
fn the_standbys_nic_down_on_one_network_is_a_local_fault_there_and_nothing_fails_over() {
    let Some(c) = NetCluster::start(
        "the_standbys_nic_down_on_one_network_is_a_local_fault_there_and_nothing_fails_over",
        2,
        |_, _, _| {},
    ) else {
        return;
    };
    c.wait_all_alive();
    // The status API: a channel per network and per mirror, with counters.
    let t = c.standby.table();
    let channels = t["channels"].as_array().expect("channels");
    let names: Vec<(&str, &str)> = channels
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap_or(""),
                c["kind"].as_str().unwrap_or(""),
            )
        })
        .collect();
    for want in [
        ("net0", "network"),
        ("net1", "network"),
        ("hb0", "mirror"),
        ("hb1", "mirror"),
    ] {
        assert!(names.contains(&want), "{want:?} in {names:?}");
    }
    for ch in channels {
        assert_eq!(ch["state"], "GOOD", "{ch}");
        for key in ["counter", "sent", "received", "missing", "last_ms"] {
            assert!(ch.get(key).is_some(), "{key} in {ch}");
        }
    }
    let net0 = &channels[0];
    assert!(net0["counter"].as_u64().expect("counter") > 0, "{net0}");
    assert!(net0["received"].as_u64().expect("received") > 0, "{net0}");
    assert!(net0["sent"].as_u64().expect("sent") > 0, "{net0}");

    c.hosts.link(End::Standby, 0, false);
    wait_verdict(&c.standby, "local-fault", &["net0"]);
    wait_verdict(&c.prod, "remote-fault", &["net0"]);
    let t = c.standby.table();
    let evidence = &t["analysis"];
    let here = &evidence["local"]["networks"][0];
    assert_eq!(here["name"], "net0");
    assert_eq!(here["nic"], "down", "{here}");
    assert_eq!(here["operational"], false);
    let there = &evidence["remote"]["networks"][0];
    assert_eq!(there["operational"], true, "{there}");
    assert!(there["replies"].as_u64().expect("replies") > 0, "{there}");
    assert_eq!(t["channels"][0]["state"], "BAD", "{}", t["channels"]);
    assert!(
        evidence["remote"]["qos"]["networks_working"] == 2,
        "{evidence}"
    );
    // The verdict is an event with its evidence, and the alert ran.
    let events: serde_json::Value =
        serde_json::from_str(&c.standby.ok(&["hb", "events", "--json"])).expect("events");
    let announced = events
        .as_array()
        .and_then(|e| e.iter().rev().find(|e| e["part"] == "analysis"))
        .expect("an analysis event");
    assert!(
        announced["text"]
            .as_str()
            .unwrap_or("")
            .starts_with("local-fault (net0)"),
        "{announced}"
    );
    assert_eq!(announced["analysis"]["verdict"]["verdict"], "local-fault");
    wait_for("the alert", || {
        std::fs::read_to_string(c.out.join("alerts"))
            .is_ok_and(|a| a.contains("SERIOUS analysis local-fault"))
    });
    let text = c.standby.ok(&["hb", "status"]);
    assert!(
        text.contains("last fault analysis") && text.contains("local-fault (net0)"),
        "{text}"
    );
    no_failover_for(&c, Duration::from_millis(2 * TIMEOUT_MS));
    // Fig 5: production's silent net0 socket was closed and re-opened (its
    // disconnect counter ran out), and the new socket took the address.
    c.prod.wait_table("net0's socket re-opened", |t| {
        t["networks"][0]["reopened"].as_u64().unwrap_or(0) >= 1
    });
    let t = c.prod.table();
    assert!(
        t["networks"][0]["socket_problem"].is_null(),
        "{}",
        t["networks"]
    );
    assert!(
        !c.prod.log_text().contains("cannot bind"),
        "{}",
        c.prod.log_text()
    );
    // The other network and the mirrors carry on.
    let t = c.standby.table();
    assert_eq!(t["networks"][1]["remote_group"], "ALIVE", "{t}");
    assert_eq!(t["remote_group_via_mirrors"], "ALIVE");

    // Repaired: the channel is GOOD again and the analysis says so.
    c.hosts.link(End::Standby, 0, true);
    c.standby
        .wait_table("net0 GOOD again", |t| t["channels"][0]["state"] == "GOOD");
    wait_verdict(&c.standby, "none", &[]);
}

#[test]
fn productions_nic_down_is_a_remote_fault_at_the_standby() {
    let Some(c) = NetCluster::start(
        "productions_nic_down_is_a_remote_fault_at_the_standby",
        2,
        |_, _, _| {},
    ) else {
        return;
    };
    c.wait_all_alive();
    c.hosts.link(End::Prod, 1, false);
    wait_verdict(&c.standby, "remote-fault", &["net1"]);
    wait_verdict(&c.prod, "local-fault", &["net1"]);
    let a = c.standby.ok(&["hb", "analyze"]);
    assert!(a.contains("verdict: remote-fault (net1)"), "{a}");
    assert!(a.contains("QoS comparison"), "{a}");
    no_failover_for(&c, Duration::from_millis(TIMEOUT_MS));
}

#[test]
fn a_dead_switch_port_with_the_link_up_is_found_by_the_echo() {
    let Some(c) = NetCluster::start(
        "a_dead_switch_port_with_the_link_up_is_found_by_the_echo",
        2,
        |_, _, _| {},
    ) else {
        return;
    };
    c.wait_all_alive();
    // The standby's NIC keeps its link; nothing it sends on net0 gets through.
    c.hosts.dead_port(End::Standby, 0, true);
    wait_verdict(&c.standby, "local-fault", &["net0"]);
    wait_verdict(&c.prod, "remote-fault", &["net0"]);
    let here = &c.standby.table()["analysis"]["local"]["networks"][0];
    assert_eq!(here["nic"], "up", "{here}");
    assert_eq!(here["replies"], 0, "{here}");
    assert!(here["sent"].as_u64().unwrap_or(0) > 0, "{here}");
    no_failover_for(&c, Duration::from_millis(TIMEOUT_MS));
}

#[test]
fn traffic_dropped_between_the_hosts_is_a_link_fault() {
    let Some(c) = NetCluster::start(
        "traffic_dropped_between_the_hosts_is_a_link_fault",
        2,
        |_, _, _| {},
    ) else {
        return;
    };
    c.wait_all_alive();
    // A lossy network first: the gaps are counted and warned of, the
    // channel stays GOOD (each message adds the sequence difference).
    c.hosts.lose_between(0, true);
    c.standby.wait_table("heartbeats missing on net0", |t| {
        t["channels"][0]["missing"].as_u64().unwrap_or(0) >= 5
    });
    wait_for("the gap warning", || {
        c.standby
            .log_text()
            .contains("missing in the last counter period")
    });
    let t = c.standby.table();
    assert_eq!(t["channels"][0]["state"], "GOOD", "{}", t["channels"]);
    assert!(
        t["analysis"].is_null(),
        "loss alone is no fault: {}",
        t["analysis"]
    );
    c.hosts.lose_between(0, false);
    // Then nothing crosses net0 in the middle; both ends reach their gateway.
    c.hosts.drop_between(0, true);
    wait_verdict(&c.standby, "link-fault", &["net0"]);
    wait_verdict(&c.prod, "link-fault", &["net0"]);
    // On demand too, with both ends' echo results as evidence.
    let a: serde_json::Value =
        serde_json::from_str(&c.standby.ok(&["hb", "analyze", "--json"])).expect("analysis");
    assert_eq!(
        verdict(&serde_json::json!({ "analysis": a })).0,
        "link-fault"
    );
    for side in ["local", "remote"] {
        let net0 = &a[side]["networks"][0];
        assert_eq!(net0["nic"], "up", "{side}: {net0}");
        assert!(net0["replies"].as_u64().unwrap_or(0) > 0, "{side}: {net0}");
    }
    no_failover_for(&c, Duration::from_millis(TIMEOUT_MS));
}

#[test]
fn networks_configured_differently_are_a_config_error() {
    let Some(c) = NetCluster::start(
        "networks_configured_differently_are_a_config_error",
        2,
        |_, _, standby| {
            // The standby lists net0 only.
            let cut = standby.find("[[networks]]\nname = \"net1\"").expect("net1");
            let end = cut
                + standby[cut..]
                    .find("[failover]")
                    .expect("after the networks");
            standby.replace_range(cut..end, "");
        },
    ) else {
        return;
    };
    wait_verdict(&c.prod, "config-error", &["net1"]);
    wait_verdict(&c.standby, "config-error", &["net1"]);
    let detail = c.prod.table()["analysis"]["verdict"]["detail"].clone();
    assert!(
        detail
            .as_str()
            .unwrap_or("")
            .contains("only prod-a configures net1"),
        "{detail}"
    );
    no_failover_for(&c, Duration::from_millis(TIMEOUT_MS));
}

#[test]
fn killing_production_fails_over_once_with_a_node_dead_verdict() {
    let Some(mut c) = NetCluster::start(
        "killing_production_fails_over_once_with_a_node_dead_verdict",
        2,
        |_, _, _| {},
    ) else {
        return;
    };
    c.wait_all_alive();
    c.prod.kill();
    c.sites.prod.kill();
    wait_for("the failover hook", || c.failovers() == 1);
    wait_verdict(&c.standby, "node-dead", &[]);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(c.failovers(), 1);
}

#[test]
fn an_address_that_comes_back_works_without_restarting_hbd() {
    let Some(mut c) = NetCluster::start(
        "an_address_that_comes_back_works_without_restarting_hbd",
        2,
        |_, _, _| {},
    ) else {
        return;
    };
    c.wait_all_alive();
    // The standby restarts while its address on net1 is gone.
    c.standby.stop();
    c.hosts.address(End::Standby, 1, false);
    c.start_hbd(End::Standby);
    c.standby.wait_table("net1 FAILED, its socket closed", |t| {
        t["networks"][1]["enable"] == "FAILED"
            && t["networks"][1]["socket_problem"]
                .as_str()
                .is_some_and(|p| p.contains("cannot bind"))
    });
    assert!(c.standby.log_text().contains("cannot listen on"));
    // The address comes back: the socket opens, the channel works again.
    c.hosts.address(End::Standby, 1, true);
    c.standby.wait_table("net1 ALIVE again", |t| {
        t["networks"][1]["remote_group"] == "ALIVE" && t["networks"][1]["socket_problem"].is_null()
    });
    c.prod.wait_table("net1 ALIVE at prod", |t| {
        t["networks"][1]["remote_group"] == "ALIVE"
    });
}

#[test]
fn with_failover_on_fault_a_standby_takes_over_from_a_faulted_production() {
    let Some(c) = NetCluster::start(
        "with_failover_on_fault_a_standby_takes_over_from_a_faulted_production",
        2,
        |_, _, standby| {
            *standby = standby.replace("[analysis]\n", "[analysis]\nfailover_on_fault = true\n")
        },
    ) else {
        return;
    };
    c.wait_all_alive();
    // The standby's own NIC: its QoS is the lower, it takes nothing over.
    c.hosts.link(End::Standby, 1, false);
    wait_verdict(&c.standby, "local-fault", &["net1"]);
    no_failover_for(&c, Duration::from_millis(TIMEOUT_MS));
    c.hosts.link(End::Standby, 1, true);
    wait_verdict(&c.standby, "none", &[]);
    // Production's NIC: the standby's QoS exceeds production's and it can
    // carry the duties (Fig 6, 638): it takes over; production, which still
    // hears it on net1 and the mirrors, steps down.
    c.hosts.link(End::Prod, 0, false);
    wait_for("the failover hook", || c.failovers() == 1);
    let env = std::fs::read_to_string(c.out.join("failover.env")).expect("hook env");
    assert!(env.contains("remote-fault (net0)"), "{env}");
    let qos = c.standby.table()["analysis"]["qos"].clone();
    assert!(
        qos.as_str()
            .unwrap_or("")
            .contains("this host can take over"),
        "{qos}"
    );
    c.prod
        .wait_table("production STEPPED DOWN", |t| t["stepped_down"] == true);
}

#[test]
fn without_cap_net_raw_the_local_check_uses_the_ping_socket_or_says_why_not() {
    let Some(mut c) = NetCluster::start(
        "without_cap_net_raw_the_local_check_uses_the_ping_socket_or_says_why_not",
        2,
        |_, _, _| {},
    ) else {
        return;
    };
    if !common::ensure_tool(
        "without_cap_net_raw_the_local_check_uses_the_ping_socket_or_says_why_not",
        "setpriv",
        "util-linux",
    ) {
        return;
    }
    let sysctl = |range: &str| {
        hbcluster::netns::must(
            "ip",
            &[
                "netns",
                "exec",
                &c.hosts.standby,
                "sysctl",
                "-qw",
                &format!("net.ipv4.ping_group_range={range}"),
            ],
        )
    };
    // The standby's hbd without CAP_NET_RAW, its group allowed ping sockets.
    sysctl("0 2147483647");
    c.standby.stop();
    let mut wrapper = c.hosts.exec(End::Standby);
    wrapper.extend(["setpriv", "--inh-caps=-net_raw", "--bounding-set=-net_raw"].map(String::from));
    c.standby.start_wrapped(&wrapper);
    c.wait_all_alive();
    let t = c.standby.table();
    assert_eq!(t["echo_method"], "ping-socket", "{t}");
    assert!(
        t["echo_note"]
            .as_str()
            .unwrap_or("")
            .contains("CAP_NET_RAW"),
        "{t}"
    );
    // Echo through the ping socket reaches the gateway: both ends pass.
    c.hosts.drop_between(1, true);
    wait_verdict(&c.standby, "link-fault", &["net1"]);
    let a = &c.standby.table()["analysis"]["local"];
    assert_eq!(a["echo"], "ping-socket");
    assert!(a["networks"][1]["replies"].as_u64().unwrap_or(0) > 0, "{a}");
    // Ping sockets refused too: the NIC state alone, and hbd says why.
    sysctl("1 0");
    let a: serde_json::Value =
        serde_json::from_str(&c.standby.ok(&["hb", "analyze", "--json"])).expect("analysis");
    assert_eq!(a["local"]["echo"], "none", "{a}");
    let note = a["local"]["echo_note"].as_str().unwrap_or("").to_string();
    assert!(
        note.contains("CAP_NET_RAW") && note.contains("ping_group_range"),
        "{note}"
    );
    assert_eq!(
        a["verdict"]["verdict"], "link-fault",
        "the NICs are up: {a}"
    );
}

/// Network `name`'s entry in a status table.
fn network(t: &serde_json::Value, name: &str) -> serde_json::Value {
    t["networks"]
        .as_array()
        .and_then(|n| n.iter().find(|n| n["name"] == name).cloned())
        .unwrap_or_else(|| panic!("no network {name} in {}", t["networks"]))
}

#[test]
fn one_network_turned_off_by_name_is_off_at_both_ends_and_carries_nothing() {
    let Some(c) = NetCluster::start(
        "one_network_turned_off_by_name_is_off_at_both_ends_and_carries_nothing",
        2,
        |_, _, _| {},
    ) else {
        return;
    };
    c.wait_all_alive();
    let sent =
        |h: &common::Hbd, name: &str| network(&h.table(), name)["sent"].as_u64().unwrap_or(0);
    let said = c.prod.ok(&["hb", "procedure", "--network", "net1", "off"]);
    assert!(said.contains("network net1 off"), "{said}");
    // The peer applied it: net1 is off at the standby too, its net0 untouched.
    c.standby.wait_table("net1 off at the standby", |t| {
        network(t, "net1")["enable"] == "DISABLE" && network(t, "net0")["enable"] == "ENABLE"
    });
    // Nothing crosses net1 either way while net0 carries on.
    let (prod1, standby1) = (sent(&c.prod, "net1"), sent(&c.standby, "net1"));
    let prod0 = sent(&c.prod, "net0");
    wait_for("five more heartbeats on net0", || {
        sent(&c.prod, "net0") >= prod0 + 5
    });
    assert_eq!(
        sent(&c.prod, "net1"),
        prod1,
        "production still sends on net1"
    );
    assert_eq!(
        sent(&c.standby, "net1"),
        standby1,
        "the standby still sends on net1"
    );
    let t = c.standby.table();
    assert!(
        t["procedure_mismatch"]
            .as_array()
            .is_some_and(Vec::is_empty),
        "{}",
        t["procedure_mismatch"]
    );
    assert!(
        t["analysis"].is_null(),
        "a network turned off is no fault: {}",
        t["analysis"]
    );
    // A name that is no network is refused, naming the networks.
    let refused = c
        .prod
        .fails(&["hb", "procedure", "--network", "net9", "off"]);
    assert!(
        refused.contains("no network 'net9'") && refused.contains("net0, net1"),
        "{refused}"
    );
    // Back on at both ends, and heartbeats cross net1 again.
    c.prod.ok(&["hb", "procedure", "--network", "net1", "on"]);
    c.standby.wait_table("net1 on at the standby", |t| {
        network(t, "net1")["enable"] != "DISABLE"
    });
    wait_for("heartbeats on net1 again", || {
        sent(&c.standby, "net1") > standby1
    });
    no_failover_for(&c, Duration::from_millis(100));
}
