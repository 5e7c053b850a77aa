//! An IP network given by IPv6 addresses: heartbeats flow over it, and the
//! local network check echoes it with ICMPv6, so a fault analysis has echo
//! evidence for it at both ends (two real hbd processes on [::1]).

mod common;

use std::path::Path;

use common::{free_port, skip, wait_for, Hbd};

fn config(dir: &Path, host: &str, group: &str, peer: &str, ports: (u16, u16)) -> String {
    std::fs::create_dir_all(dir).expect("dir");
    let key = dir.join("hb.key");
    std::fs::write(&key, "test-key-0123456789abcdef\n").expect("key");
    format!(
        "host = \"{host}\"\ngroup = \"{group}\"\npeers = [\"{peer}\"]\ndata_dir = \"{}\"\n\
         control_socket = \"{}\"\npsk_file = \"{}\"\ninterval_ms = 100\ntimeout_ms = 1000\n\
         [[networks]]\nname = \"v6\"\nlisten = \"[::1]:{}\"\npeers = [\"[::1]:{}\"]\nprobe = \"::1\"\n",
        dir.join("data").display(),
        dir.join("hbd.sock").display(),
        key.display(),
        ports.0,
        ports.1
    )
}

#[test]
fn an_ipv6_network_carries_heartbeats_and_is_echoed_with_icmpv6() {
    let test = "an_ipv6_network_carries_heartbeats_and_is_echoed_with_icmpv6";
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        skip(test, "no IPv6 on loopback");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (free_port(), free_port());
    let (p, s) = (dir.path().join("p"), dir.path().join("s"));
    let mut prod = Hbd::new(
        &p,
        "prod-a",
        &config(&p, "prod-a", "production", "standby-a", (a, b)),
    );
    let mut standby = Hbd::new(
        &s,
        "standby-a",
        &config(&s, "standby-a", "standby", "prod-a", (b, a)),
    );
    prod.start();
    standby.start();
    standby.wait_table("production ALIVE over IPv6", |t| {
        t["remote_group_via_network"] == "ALIVE"
    });
    let a: serde_json::Value =
        serde_json::from_str(&standby.ok(&["hb", "analyze", "--json"])).expect("analysis");
    for side in ["local", "remote"] {
        let net = &a[side]["networks"][0];
        assert_eq!(net["name"], "v6", "{side}: {a}");
        if a[side]["echo"] == "none" {
            skip(test, "neither raw ICMP nor ping sockets here");
            return;
        }
        assert!(net["sent"].as_u64().unwrap_or(0) > 0, "{side}: {net}");
        assert!(net["replies"].as_u64().unwrap_or(0) > 0, "{side}: {net}");
        assert!(net["error"].is_null(), "{side}: {net}");
    }
    wait_for("heartbeats go on", || {
        standby.table()["network"]["count"].as_u64().unwrap_or(0) > 10
    });
}
