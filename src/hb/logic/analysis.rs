//! The fault analysis of seed 002 (Figs 6, 7, 9), pure: what each side
//! reports ([`Report`]: its per-network local check, its channels with their
//! counters, its QoS), and the decision routine ([`decide`]) that turns the
//! two reports into a [`Verdict`] with the steps that led to it.
//!
//! The decision routine (Fig 9) works on bitfields over the networks (by
//! name, the same at both hosts): the configured networks of each side must
//! match, and so must the networks turned on (else `config-error`); the
//! configuration mask is the networks turned
//! on; each side's status bitfield holds the networks that pass its local
//! check. Against the mask: networks failed here and none at the peer → this
//! host is faulted (`local-fault`); failed at the peer and none here → the
//! peer is (`remote-fault`); the same networks failed at both ends → the
//! network itself (`link-fault`); different ones at each end → faults at both,
//! do nothing (`none`); none at either end while a channel is silent → the
//! fault is between the two NICs (`link-fault`). A node is named failed only on
//! uncontroverted evidence; `node-dead` (every channel failed) is decided
//! before any exchange, by the failover rule.

use serde::{Deserialize, Serialize};

use super::qos::Qos;
use hbcore::vocab::Group;

/// The state of a NIC, as the kernel reports its interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Nic {
    /// Administratively up, with carrier.
    Up,
    /// Administratively down.
    Down,
    /// Up, without carrier (cable, peer port).
    NoCarrier,
    /// The listen address is on no interface.
    Absent,
    /// Not known (the network listens on a wildcard address).
    Unknown,
}

/// How the local check sends echo requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EchoMethod {
    /// Raw ICMP sockets (root or CAP_NET_RAW), each bound to its network's NIC.
    Raw,
    /// The kernel's unprivileged ping socket (net.ipv4.ping_group_range).
    PingSocket,
    /// Neither is allowed: the NIC state alone.
    None,
}

/// One network's local check at one host (Fig 8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkCheck {
    /// The network's name.
    pub name: String,
    /// Turned on (Fig 8); a network turned off is outside the mask.
    pub on: bool,
    /// The interface holding the listen address, if found.
    pub interface: Option<String>,
    /// Its state.
    pub nic: Nic,
    /// Where the echo requests went (`probe`, else the peer).
    pub target: String,
    /// The target is the peer itself: its silence says nothing of this host,
    /// so only the NIC state counts.
    pub target_is_peer: bool,
    /// Echo requests sent.
    pub sent: u32,
    /// Echo replies received.
    pub replies: u32,
    /// Best round trip, microseconds.
    pub rtt_us: Option<u64>,
    /// Why requests could not be sent, if so.
    pub error: Option<String>,
    /// The verdict of the local check: the network works at this host.
    pub operational: bool,
}

impl NetworkCheck {
    /// What the check found, in a few words.
    pub fn summary(&self) -> String {
        let nic = match &self.interface {
            Some(i) => format!("NIC {i} {}", nic_word(self.nic)),
            None => format!("NIC {}", nic_word(self.nic)),
        };
        let echo = if self.sent == 0 {
            self.error
                .clone()
                .map_or_else(|| "no echo".into(), |e| format!("no echo ({e})"))
        } else {
            let rtt = self
                .rtt_us
                .map(|us| format!(", {:.2} ms", us as f64 / 1000.0))
                .unwrap_or_default();
            format!(
                "echo {}/{} from {}{}{rtt}",
                self.replies,
                self.sent,
                self.target,
                if self.target_is_peer {
                    " (the peer)"
                } else {
                    ""
                }
            )
        };
        format!(
            "{}: {nic}, {echo}: {}",
            self.name,
            if self.operational { "works" } else { "FAILED" }
        )
    }
}

fn nic_word(n: Nic) -> &'static str {
    match n {
        Nic::Up => "up",
        Nic::Down => "down",
        Nic::NoCarrier => "without carrier",
        Nic::Absent => "absent (the address is on no interface)",
        Nic::Unknown => "unknown",
    }
}

/// A network channel's name in logs, events and watermarks: `network NAME`,
/// or `network` for a config's single `[network]` (named `network`).
pub fn network_label(name: &str) -> String {
    if name == "network" {
        name.into()
    } else {
        format!("network {name}")
    }
}

/// The kind of a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// An IP network (UDP heartbeats).
    Network,
    /// A heartbeat mirror (a volume written at one site, read at the other).
    Mirror,
}

/// A channel's state by its counter (seed 002's status API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChannelState {
    /// Counter above 0 (a sending mirror: written without error).
    Good,
    /// Counter at 0: the channel has failed.
    Bad,
    /// Turned off (Fig 8): not counted.
    Off,
}

/// One channel in `hbctl hb status --json` (`channels`) and in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelStatus {
    /// The network's or the mirror's name.
    pub name: String,
    /// Network or mirror.
    pub kind: ChannelKind,
    /// GOOD / BAD by the counter (OFF when turned off).
    pub state: ChannelState,
    /// The Fig 2 status by the timeout rule: ENABLE / FAILED / DISABLE.
    pub status: String,
    /// `send` or `receive` for a mirror; none for a network (both ways).
    pub direction: Option<String>,
    /// The counter (none for a sending mirror: the peer counts it).
    pub counter: Option<u32>,
    /// Heartbeats sent (datagrams, or slot writes).
    pub sent: u64,
    /// Valid heartbeats received.
    pub received: u64,
    /// Heartbeats missing (gaps in the sequence numbers).
    pub missing: u64,
    /// When the last valid one arrived (or was written), ms since the epoch.
    pub last_ms: Option<u64>,
    /// Why it is not working, if it is not.
    pub problem: Option<String>,
    /// The peer's wall clock minus this host's, ms, as last measured on the
    /// channel: shown, never acted on.
    #[serde(default)]
    pub clock_offset_ms: Option<i64>,
}

impl ChannelStatus {
    /// Failed by either rule (counter at 0, or silent beyond the timeout).
    pub fn failed(&self) -> bool {
        self.state == ChannelState::Bad || self.status == "FAILED"
    }

    /// The channel's name in logs and verdicts: `network NAME`, `mirror NAME`.
    pub fn label(&self) -> String {
        match self.kind {
            ChannelKind::Network => network_label(&self.name),
            ChannelKind::Mirror => format!("mirror {}", self.name),
        }
    }
}

/// One side's results in an analysis (Fig 7, 714–716).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The host.
    pub host: String,
    /// Its group.
    pub group: Group,
    /// When the local check ended, ms since the epoch.
    pub time_ms: u64,
    /// How echo requests were sent.
    pub echo: EchoMethod,
    /// Why echo was limited (no raw socket, no ping socket), if it was.
    pub echo_note: Option<String>,
    /// Every configured network, with its local check.
    pub networks: Vec<NetworkCheck>,
    /// Every channel, with its counter.
    pub channels: Vec<ChannelStatus>,
    /// The QoS metric.
    pub qos: Qos,
}

/// The kinds of verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerdictKind {
    /// The fault is in a network between the hosts (both ends check fine, or
    /// both fail the same network).
    LinkFault,
    /// This host's side of a network is faulted (its NIC, cable, port).
    LocalFault,
    /// The peer's side is.
    RemoteFault,
    /// Every channel failed: the peer is deemed dead.
    NodeDead,
    /// The two hosts' configured networks differ.
    ConfigError,
    /// Nothing to fault: all works, or faults at both ends (do nothing),
    /// or no answer from the peer.
    None,
}

impl std::fmt::Display for VerdictKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            VerdictKind::LinkFault => "link-fault",
            VerdictKind::LocalFault => "local-fault",
            VerdictKind::RemoteFault => "remote-fault",
            VerdictKind::NodeDead => "node-dead",
            VerdictKind::ConfigError => "config-error",
            VerdictKind::None => "none",
        })
    }
}

/// A verdict: where the fault is, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Its kind.
    pub verdict: VerdictKind,
    /// The networks concerned (for a link fault of a heartbeat mirror,
    /// `mirror NAME`).
    pub networks: Vec<String>,
    /// In a sentence.
    pub detail: String,
}

/// An analysis and its evidence, as shown by `hbctl hb analyze`, kept in
/// the table (`analysis`) and in the event that announces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analysis {
    /// Its identifier (the host that started it, and a number).
    pub id: String,
    /// When it was decided, ms since the epoch.
    pub time_ms: u64,
    /// What started it.
    pub trigger: String,
    /// The verdict.
    pub verdict: Verdict,
    /// The decision routine's steps (Fig 9), in words.
    pub steps: Vec<String>,
    /// The QoS comparison (Fig 6, 632–644), in words, if it was made.
    pub qos: Option<String>,
    /// This host's report.
    pub local: Report,
    /// The peer's, if it answered.
    pub remote: Option<Report>,
}

/// Networks as bits, over a list of names in order.
struct Bits<'a>(&'a [String]);

impl Bits<'_> {
    fn of(&self, names: impl Iterator<Item = String>) -> u64 {
        let names: Vec<String> = names.collect();
        self.0
            .iter()
            .enumerate()
            .filter(|(_, n)| names.contains(n))
            .fold(0, |bits, (i, _)| bits | 1 << i)
    }

    fn show(&self, bits: u64) -> String {
        (0..self.0.len())
            .map(|i| if bits & (1 << i) != 0 { '1' } else { '0' })
            .collect()
    }

    fn names(&self, bits: u64) -> Vec<String> {
        self.0
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, n)| n.clone())
            .collect()
    }
}

/// Networks (at most this many are compared as bits).
pub const MAX_NETWORKS: usize = 32;

/// Fig 9: the verdict on two reports, and the steps that led to it.
pub fn decide(local: &Report, remote: &Report) -> (Verdict, Vec<String>) {
    let mut all: Vec<String> = local
        .networks
        .iter()
        .chain(&remote.networks)
        .map(|n| n.name.clone())
        .collect();
    all.sort();
    all.dedup();
    all.truncate(MAX_NETWORKS);
    let bits = Bits(&all);
    let names = |r: &Report, keep: fn(&NetworkCheck) -> bool| {
        bits.of(r
            .networks
            .iter()
            .filter(|n| keep(n))
            .map(|n| n.name.clone()))
    };
    let (here, there) = (&local.host, &remote.host);
    let mut steps = vec![format!("networks (bit order): {}", all.join(" "))];
    // 904–912: the configured networks.
    let (cfg_l, cfg_r) = (names(local, |_| true), names(remote, |_| true));
    steps.push(format!(
        "configured: {here} {}, {there} {}",
        bits.show(cfg_l),
        bits.show(cfg_r)
    ));
    if cfg_l != cfg_r {
        let (only_l, only_r) = (bits.names(cfg_l & !cfg_r), bits.names(cfg_r & !cfg_l));
        let mut differ = only_l.clone();
        differ.extend(only_r.clone());
        steps.push("the configured networks differ: configuration error".into());
        let side = |who: &str, n: &[String]| {
            if n.is_empty() {
                None
            } else {
                Some(format!("only {who} configures {}", n.join(", ")))
            }
        };
        let said: Vec<String> = [side(here, &only_l), side(there, &only_r)]
            .into_iter()
            .flatten()
            .collect();
        return (
            Verdict {
                verdict: VerdictKind::ConfigError,
                networks: differ,
                detail: format!(
                    "the hosts' configured networks differ: {}; give both hosts the same [[networks]] (by name)",
                    said.join("; ")
                ),
            },
            steps,
        );
    }
    // The networks turned on (`hbctl hb procedure`) must match too: a change
    // forced while no channel reached the peer leaves the ends differing.
    let (on_l, on_r) = (names(local, |n| n.on), names(remote, |n| n.on));
    steps.push(format!(
        "turned on: {here} {}, {there} {}",
        bits.show(on_l),
        bits.show(on_r)
    ));
    if on_l != on_r {
        let (only_l, only_r) = (bits.names(on_l & !on_r), bits.names(on_r & !on_l));
        let mut differ = only_l.clone();
        differ.extend(only_r.clone());
        steps.push("the networks turned on differ: configuration error".into());
        let side = |who: &str, n: &[String]| {
            (!n.is_empty()).then(|| format!("only {who} has {} on", n.join(", ")))
        };
        let said: Vec<String> = [side(here, &only_l), side(there, &only_r)]
            .into_iter()
            .flatten()
            .collect();
        return (
            Verdict {
                verdict: VerdictKind::ConfigError,
                networks: differ,
                detail: format!(
                    "the hosts' checking procedures differ: {}; turn each network on or off at both (`hbctl hb procedure --network NAME on|off`)",
                    said.join("; ")
                ),
            },
            steps,
        );
    }
    // 914–939: the status bitfields against the configuration mask.
    let mask = on_l & on_r;
    let (st_l, st_r) = (
        names(local, |n| n.operational),
        names(remote, |n| n.operational),
    );
    let (fail_l, fail_r) = (mask & !st_l, mask & !st_r);
    steps.push(format!("configuration mask {}", bits.show(mask)));
    steps.push(format!(
        "status: {here} {}, {there} {}",
        bits.show(st_l & mask),
        bits.show(st_r & mask)
    ));
    let evidence = |r: &Report, failed: u64| {
        r.networks
            .iter()
            .filter(|n| bits.names(failed).contains(&n.name))
            .map(NetworkCheck::summary)
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut silent: Vec<String> = local
        .channels
        .iter()
        .chain(&remote.channels)
        .filter(|c| c.failed())
        .map(|c| match c.kind {
            ChannelKind::Network => c.name.clone(),
            ChannelKind::Mirror => c.label(),
        })
        .collect();
    silent.sort();
    silent.dedup();
    let verdict = |verdict, networks: Vec<String>, detail: String| Verdict {
        verdict,
        networks,
        detail,
    };
    let v = match (fail_l != 0, fail_r != 0) {
        (false, false) if silent.is_empty() => {
            steps.push("both match the mask and no channel failed".into());
            verdict(
                VerdictKind::None,
                vec![],
                "every network passes its local check at both ends and no channel has failed"
                    .into(),
            )
        }
        (false, false) => {
            steps.push(format!(
                "both match the mask, yet {} failed: the fault is between the NICs",
                silent.join(", ")
            ));
            verdict(
                VerdictKind::LinkFault,
                silent.clone(),
                format!(
                    "both hosts pass their local checks, yet heartbeats do not cross {}: the fault is in the network between them (cabling, switch, router, a filter)",
                    silent.join(", ")
                ),
            )
        }
        (true, false) => {
            let failed = bits.names(fail_l);
            steps.push(format!(
                "{here} fails {} and {there} nothing: {here} is faulted",
                failed.join(", ")
            ));
            verdict(
                VerdictKind::LocalFault,
                failed,
                format!(
                    "this host's side of the network is faulted ({}), while {there} passes every local check",
                    evidence(local, fail_l)
                ),
            )
        }
        (false, true) => {
            let failed = bits.names(fail_r);
            steps.push(format!(
                "{there} fails {} and {here} nothing: {there} is faulted",
                failed.join(", ")
            ));
            verdict(
                VerdictKind::RemoteFault,
                failed,
                format!(
                    "{there}'s side of the network is faulted ({}), while this host passes every local check",
                    evidence(remote, fail_r)
                ),
            )
        }
        (true, true) if fail_l == fail_r => {
            let failed = bits.names(fail_l);
            steps.push(format!(
                "both fail {}: the network itself is down",
                failed.join(", ")
            ));
            verdict(
                VerdictKind::LinkFault,
                failed.clone(),
                format!(
                    "both hosts fail the local check on {}: the network itself is down (its switch or gateway)",
                    failed.join(", ")
                ),
            )
        }
        (true, true) => {
            steps.push("faults at both ends: do nothing".into());
            verdict(
                VerdictKind::None,
                bits.names(fail_l | fail_r),
                format!(
                    "faults at both ends (here: {}; at {there}: {}): neither host is failed on uncontroverted evidence",
                    evidence(local, fail_l),
                    evidence(remote, fail_r)
                ),
            )
        }
    };
    (v, steps)
}

/// The verdict when every channel has failed (Fig 6, 604–606): the peer is
/// deemed dead, without an exchange.
pub fn node_dead(local: &Report, peer: &str) -> (Verdict, Vec<String>) {
    let failed: Vec<String> = local.channels.iter().map(ChannelStatus::label).collect();
    (
        Verdict {
            verdict: VerdictKind::NodeDead,
            networks: vec![],
            detail: format!(
                "every channel failed ({}): {peer} is deemed dead",
                failed.join(", ")
            ),
        },
        vec!["all channels failed: no fault analysis with the peer".into()],
    )
}

#[cfg(test)]
mod tests;
