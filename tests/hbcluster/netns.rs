//! Two hosts in network namespaces of their own, joined by IP networks
//! through a third namespace, the router: network k is
//!
//! ```text
//!  prod ns                      router ns                        standby ns
//!  ethk 10.(80+k).1.1/24 ── pk 10.(80+k).1.254 │ sk 10.(80+k).2.254 ── ethk 10.(80+k).2.2/24
//! ```
//!
//! each host routing the other's subnet through its gateway (the router's
//! address on its side, the network's `probe`). A host's end of a network is
//! cut with `ip link set ethk down` in its namespace; traffic between the
//! hosts is dropped in the middle, both ends staying up, with an nftables
//! rule on the router's forward hook. Every namespace (and with it every
//! veth) is deleted when [`Hosts`] is dropped, the test failed or not.

use std::process::Command;

use crate::common::ensure_tool;

/// A host's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The production host.
    Prod,
    /// The standby host.
    Standby,
}

/// The three namespaces and `networks` networks between the hosts.
pub struct Hosts {
    pub prod: String,
    pub standby: String,
    pub router: String,
    pub networks: usize,
}

/// Runs `program args`; panics with its output when it fails.
pub fn must(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A short tag for the namespaces of `test` in this process.
fn tag(test: &str) -> String {
    let mut h: u32 = 2166136261;
    for b in test.bytes().chain(std::process::id().to_le_bytes()) {
        h = (h ^ u32::from(b)).wrapping_mul(16777619);
    }
    format!("hb{:06x}", h & 0xff_ffff)
}

impl Hosts {
    /// Creates the namespaces and the networks; None (SKIPPED) without `ip`.
    pub fn create(test: &str, networks: usize) -> Option<Hosts> {
        if !ensure_tool(test, "ip", "iproute2") {
            return None;
        }
        let t = tag(test);
        let hosts = Hosts {
            prod: format!("{t}p"),
            standby: format!("{t}s"),
            router: format!("{t}r"),
            networks,
        };
        for ns in [&hosts.prod, &hosts.standby, &hosts.router] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            must("ip", &["netns", "add", ns]);
            must("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        must(
            "ip",
            &[
                "netns",
                "exec",
                &hosts.router,
                "sysctl",
                "-qw",
                "net.ipv4.ip_forward=1",
            ],
        );
        for k in 0..networks {
            for end in [End::Prod, End::Standby] {
                let (side, ns) = (hosts.router_if(end, k), hosts.ns(end));
                let eth = format!("eth{k}");
                must(
                    "ip",
                    &[
                        "link",
                        "add",
                        &eth,
                        "netns",
                        ns,
                        "type",
                        "veth",
                        "peer",
                        "name",
                        &side,
                        "netns",
                        &hosts.router,
                    ],
                );
                let prefix = |a: String| format!("{a}/24");
                must(
                    "ip",
                    &[
                        "-n",
                        &hosts.router,
                        "addr",
                        "add",
                        &prefix(hosts.gateway(end, k)),
                        "dev",
                        &side,
                    ],
                );
                must("ip", &["-n", &hosts.router, "link", "set", &side, "up"]);
                must(
                    "ip",
                    &[
                        "-n",
                        ns,
                        "addr",
                        "add",
                        &prefix(hosts.addr(end, k)),
                        "dev",
                        &eth,
                    ],
                );
                hosts.link(end, k, true);
            }
        }
        Some(hosts)
    }

    /// The namespace of `end`.
    pub fn ns(&self, end: End) -> &str {
        match end {
            End::Prod => &self.prod,
            End::Standby => &self.standby,
        }
    }

    /// The router's interface toward `end` on network `k`.
    fn router_if(&self, end: End, k: usize) -> String {
        match end {
            End::Prod => format!("p{k}"),
            End::Standby => format!("s{k}"),
        }
    }

    fn subnet(end: End, k: usize) -> String {
        let side = match end {
            End::Prod => 1,
            End::Standby => 2,
        };
        format!("10.{}.{side}", 80 + k)
    }

    /// The address of `end` on network `k`.
    pub fn addr(&self, end: End, k: usize) -> String {
        format!(
            "{}.{}",
            Hosts::subnet(end, k),
            if end == End::Prod { 1 } else { 2 }
        )
    }

    /// The gateway of `end` on network `k` (the router's address on its side).
    pub fn gateway(&self, end: End, k: usize) -> String {
        format!("{}.254", Hosts::subnet(end, k))
    }

    /// Takes `end`'s NIC on network `k` down, or up (with its route to the
    /// other side, which the kernel dropped with the link).
    pub fn link(&self, end: End, k: usize, up: bool) {
        let ns = self.ns(end);
        let eth = format!("eth{k}");
        must(
            "ip",
            &[
                "-n",
                ns,
                "link",
                "set",
                &eth,
                if up { "up" } else { "down" },
            ],
        );
        if up {
            let other = match end {
                End::Prod => End::Standby,
                End::Standby => End::Prod,
            };
            let to = format!("{}.0/24", Hosts::subnet(other, k));
            must(
                "ip",
                &[
                    "-n",
                    ns,
                    "route",
                    "replace",
                    &to,
                    "via",
                    &self.gateway(end, k),
                    "dev",
                    &eth,
                ],
            );
        }
    }

    /// Drops (or lets through again) every packet the router forwards on
    /// network `k`; both hosts still reach their gateway.
    pub fn drop_between(&self, k: usize, on: bool) {
        let table = format!("hbcut{k}");
        let nft = |cmd: String| must("ip", &["netns", "exec", &self.router, "nft", &cmd]);
        if on {
            nft(format!("add table inet {table}"));
            nft(format!(
                "add chain inet {table} forward {{ type filter hook forward priority 0 ; policy accept ; }}"
            ));
            for side in [End::Prod, End::Standby] {
                nft(format!(
                    "add rule inet {table} forward iifname \"{}\" drop",
                    self.router_if(side, k)
                ));
            }
        } else {
            nft(format!("delete table inet {table}"));
        }
    }

    /// Drops one in three of the packets the router forwards from prod to
    /// the standby on network `k` (or stops): a lossy network.
    pub fn lose_between(&self, k: usize, on: bool) {
        let table = format!("hbloss{k}");
        let nft = |cmd: String| must("ip", &["netns", "exec", &self.router, "nft", &cmd]);
        if on {
            nft(format!("add table inet {table}"));
            nft(format!(
                "add chain inet {table} forward {{ type filter hook forward priority 0 ; policy accept ; }}"
            ));
            nft(format!(
                "add rule inet {table} forward iifname \"{}\" numgen random mod 3 == 0 drop",
                self.router_if(End::Prod, k)
            ));
        } else {
            nft(format!("delete table inet {table}"));
        }
    }

    /// Makes the router's port toward `end` on network `k` dead while its
    /// link stays up (a switch port that passes nothing): everything that
    /// comes in on it is dropped, for the router itself (echo) and to forward.
    pub fn dead_port(&self, end: End, k: usize, on: bool) {
        let table = format!("hbport{k}");
        let nft = |cmd: String| must("ip", &["netns", "exec", &self.router, "nft", &cmd]);
        if on {
            nft(format!("add table inet {table}"));
            for hook in ["input", "forward"] {
                nft(format!(
                    "add chain inet {table} {hook} {{ type filter hook {hook} priority 0 ; policy accept ; }}"
                ));
                nft(format!(
                    "add rule inet {table} {hook} iifname \"{}\" drop",
                    self.router_if(end, k)
                ));
            }
        } else {
            nft(format!("delete table inet {table}"));
        }
    }

    /// Removes `end`'s address on network `k`, or gives it back.
    pub fn address(&self, end: End, k: usize, present: bool) {
        let a = format!("{}/24", self.addr(end, k));
        let eth = format!("eth{k}");
        must(
            "ip",
            &[
                "-n",
                self.ns(end),
                "addr",
                if present { "add" } else { "del" },
                &a,
                "dev",
                &eth,
            ],
        );
        if present {
            self.link(end, k, true);
        }
    }

    /// The command prefix that runs a program in `end`'s namespace.
    pub fn exec(&self, end: End) -> Vec<String> {
        ["ip", "netns", "exec", self.ns(end)]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for ns in [&self.prod, &self.standby, &self.router] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// Hosts on one LAN (a stretched layer-2 network, as a floating IP needs):
/// a bridge `br0` in a switch namespace, each host's `eth0` a veth port of
/// it, host `i` at 10.90.0.(i+1)/24. Every namespace is deleted on drop.
pub struct Lan {
    pub switch: String,
    pub hosts: Vec<String>,
}

impl Lan {
    /// The switch and `count` hosts; None (SKIPPED) without `ip`.
    pub fn create(test: &str, count: usize) -> Option<Lan> {
        if !ensure_tool(test, "ip", "iproute2") {
            return None;
        }
        let t = tag(test);
        let lan = Lan {
            switch: format!("{t}w"),
            hosts: (0..count).map(|i| format!("{t}h{i}")).collect(),
        };
        for ns in std::iter::once(&lan.switch).chain(&lan.hosts) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
            must("ip", &["netns", "add", ns]);
            must("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        let sw = lan.switch.as_str();
        must("ip", &["-n", sw, "link", "add", "br0", "type", "bridge"]);
        must("ip", &["-n", sw, "link", "set", "br0", "up"]);
        for (i, ns) in lan.hosts.iter().enumerate() {
            let port = format!("v{i}");
            must(
                "ip",
                &[
                    "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", &port,
                    "netns", sw,
                ],
            );
            must("ip", &["-n", sw, "link", "set", &port, "master", "br0"]);
            must("ip", &["-n", sw, "link", "set", &port, "up"]);
            let a = format!("{}/24", lan.addr(i));
            must("ip", &["-n", ns, "addr", "add", &a, "dev", "eth0"]);
            must("ip", &["-n", ns, "link", "set", "eth0", "up"]);
        }
        Some(lan)
    }

    /// Host `i`'s address.
    pub fn addr(&self, i: usize) -> String {
        format!("10.90.0.{}", i + 1)
    }

    /// The command prefix that runs a program on host `i`.
    pub fn exec(&self, i: usize) -> Vec<String> {
        ["ip", "netns", "exec", &self.hosts[i]]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// Takes host `i`'s NIC down (a dead host, seen from the network), or up.
    pub fn link(&self, i: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        must("ip", &["-n", &self.hosts[i], "link", "set", "eth0", state]);
    }

    /// Host `i`'s MAC address.
    pub fn mac(&self, i: usize) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.hosts[i], "-j", "link", "show", "eth0"])
            .output()
            .expect("ip link");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j");
        v[0]["address"].as_str().unwrap_or_default().to_string()
    }

    /// Whether host `i` holds `address` (on any interface).
    pub fn holds(&self, i: usize, address: &str) -> bool {
        let out = Command::new("ip")
            .args(["-n", &self.hosts[i], "-4", "-o", "addr", "show"])
            .output()
            .expect("ip addr");
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {address}/"))
    }

    /// One echo from host `i` to `address`; the MAC that answered (the
    /// neighbour entry after it) when it was answered.
    pub fn ping(&self, i: usize, address: &str) -> Option<String> {
        let ok = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.hosts[i],
                "ping",
                "-c",
                "1",
                "-W",
                "0.2",
                address,
            ])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return None;
        }
        let out = Command::new("ip")
            .args(["-n", &self.hosts[i], "-j", "neigh", "show", address])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v[0]["lladdr"].as_str().map(str::to_string)
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in std::iter::once(&self.switch).chain(&self.hosts) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
