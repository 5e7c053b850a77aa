//! The decision routine's table (Fig 9), one case per row.

use super::*;

fn check(name: &str, operational: bool) -> NetworkCheck {
    NetworkCheck {
        name: name.into(),
        on: true,
        interface: Some(format!("eth-{name}")),
        nic: if operational { Nic::Up } else { Nic::Down },
        target: "10.0.0.254".into(),
        target_is_peer: false,
        sent: 3,
        replies: if operational { 3 } else { 0 },
        rtt_us: operational.then_some(120),
        error: None,
        operational,
    }
}

fn channel(name: &str, state: ChannelState) -> ChannelStatus {
    ChannelStatus {
        name: name.into(),
        kind: ChannelKind::Network,
        state,
        status: if state == ChannelState::Bad {
            "FAILED".into()
        } else {
            "ENABLE".into()
        },
        direction: None,
        counter: Some(if state == ChannelState::Bad { 0 } else { 40 }),
        sent: 10,
        received: 10,
        missing: 0,
        last_ms: None,
        problem: None,
        clock_offset_ms: None,
    }
}

/// A report of `host` whose networks pass (true) or fail, and whose
/// channels of the same names are GOOD unless listed in `bad`.
fn report(host: &str, nets: &[(&str, bool)], bad: &[&str]) -> Report {
    Report {
        host: host.into(),
        group: Group::Standby,
        time_ms: 1,
        echo: EchoMethod::Raw,
        echo_note: None,
        networks: nets.iter().map(|(n, ok)| check(n, *ok)).collect(),
        channels: nets
            .iter()
            .map(|(n, _)| {
                let state = if bad.contains(n) {
                    ChannelState::Bad
                } else {
                    ChannelState::Good
                };
                channel(n, state)
            })
            .collect(),
        qos: Qos::default(),
    }
}

fn verdict(local: &Report, remote: &Report) -> (VerdictKind, Vec<String>, String) {
    let (v, _) = decide(local, remote);
    (v.verdict, v.networks, v.detail)
}

#[test]
fn all_good_is_none() {
    let l = report("s", &[("net0", true), ("net1", true)], &[]);
    let r = report("p", &[("net0", true), ("net1", true)], &[]);
    let (v, n, _) = verdict(&l, &r);
    assert_eq!((v, n), (VerdictKind::None, vec![]));
}

#[test]
fn a_network_failed_here_only_is_a_local_fault() {
    let l = report("s", &[("net0", false), ("net1", true)], &["net0"]);
    let r = report("p", &[("net0", true), ("net1", true)], &["net0"]);
    let (v, n, detail) = verdict(&l, &r);
    assert_eq!((v, n), (VerdictKind::LocalFault, vec!["net0".to_string()]));
    assert!(detail.contains("NIC eth-net0 down"), "{detail}");
    // The same two reports seen from the peer: it agrees on the place.
    let (v, n, _) = verdict(&r, &l);
    assert_eq!((v, n), (VerdictKind::RemoteFault, vec!["net0".to_string()]));
}

#[test]
fn both_ends_fine_but_a_silent_channel_is_a_link_fault() {
    let l = report("s", &[("net0", true), ("net1", true)], &["net1"]);
    let r = report("p", &[("net0", true), ("net1", true)], &["net1"]);
    let (v, n, detail) = verdict(&l, &r);
    assert_eq!((v, n), (VerdictKind::LinkFault, vec!["net1".to_string()]));
    assert!(detail.contains("between them"), "{detail}");
}

#[test]
fn the_same_network_failed_at_both_ends_is_the_network_itself() {
    let l = report("s", &[("net0", false), ("net1", true)], &["net0"]);
    let r = report("p", &[("net0", false), ("net1", true)], &["net0"]);
    let (v, n, detail) = verdict(&l, &r);
    assert_eq!((v, n), (VerdictKind::LinkFault, vec!["net0".to_string()]));
    assert!(detail.contains("network itself is down"), "{detail}");
}

#[test]
fn different_faults_at_both_ends_do_nothing() {
    let l = report("s", &[("net0", false), ("net1", true)], &["net0", "net1"]);
    let r = report("p", &[("net0", true), ("net1", false)], &["net0", "net1"]);
    let (v, n, detail) = verdict(&l, &r);
    assert_eq!(v, VerdictKind::None);
    assert_eq!(n, vec!["net0".to_string(), "net1".to_string()]);
    assert!(detail.contains("faults at both ends"), "{detail}");
}

#[test]
fn mismatched_configurations_are_a_config_error_naming_each_side() {
    let l = report("s", &[("net0", true)], &[]);
    let r = report("p", &[("net0", true), ("net1", true)], &["net1"]);
    let (v, n, detail) = verdict(&l, &r);
    assert_eq!((v, n), (VerdictKind::ConfigError, vec!["net1".to_string()]));
    assert!(detail.contains("only p configures net1"), "{detail}");
    let (_, steps) = decide(&l, &r);
    assert!(
        steps.contains(&"configured: s 10, p 11".to_string()),
        "{steps:?}"
    );
}

#[test]
fn a_network_turned_off_is_outside_the_mask() {
    let mut l = report("s", &[("net0", false), ("net1", true)], &[]);
    let mut r = report("p", &[("net0", true), ("net1", true)], &[]);
    l.networks[0].on = false;
    r.networks[0].on = false;
    let (v, _, _) = verdict(&l, &r);
    assert_eq!(v, VerdictKind::None, "net0 is off: no evidence");
    let (_, steps) = decide(&l, &r);
    assert!(
        steps.contains(&"configuration mask 01".to_string()),
        "{steps:?}"
    );
}

#[test]
fn networks_turned_on_at_one_end_only_are_a_config_error_naming_each_side() {
    let mut l = report("s", &[("net0", true), ("net1", true)], &[]);
    let r = report("p", &[("net0", true), ("net1", true)], &["net1"]);
    l.networks[1].on = false;
    let (v, n, detail) = verdict(&l, &r);
    assert_eq!((v, n), (VerdictKind::ConfigError, vec!["net1".to_string()]));
    assert!(detail.contains("only p has net1 on"), "{detail}");
    assert!(
        detail.contains("hbctl hb procedure --network NAME on|off"),
        "{detail}"
    );
}

#[test]
fn a_silent_mirror_with_every_network_fine_is_a_link_fault_of_the_mirror() {
    let l = report("s", &[("net0", true)], &[]);
    let mut r = report("p", &[("net0", true)], &[]);
    let mut hb0 = channel("hb0", ChannelState::Bad);
    hb0.kind = ChannelKind::Mirror;
    r.channels.push(hb0);
    let (v, n, _) = verdict(&l, &r);
    assert_eq!(
        (v, n),
        (VerdictKind::LinkFault, vec!["mirror hb0".to_string()])
    );
}

#[test]
fn every_channel_failed_is_node_dead_without_an_exchange() {
    let l = report("s", &[("net0", true)], &["net0"]);
    let (v, steps) = node_dead(&l, "prod-a");
    assert_eq!(v.verdict, VerdictKind::NodeDead);
    assert!(v.detail.contains("prod-a is deemed dead"), "{}", v.detail);
    assert!(steps[0].contains("all channels failed"));
    assert_eq!(VerdictKind::LinkFault.to_string(), "link-fault");
    assert_eq!(
        serde_json::to_string(&VerdictKind::ConfigError).expect("json"),
        "\"config-error\""
    );
}
