//! What this host says in a fault analysis: its report (the local network
//! check of every network, every channel with its counter, its QoS), kept
//! small enough to ride a heartbeat; and its QoS now, for a failover that
//! must not wait for an echo.
//!
//! `local_report` runs on the analyzer's task (the echo on blocking
//! threads); `qos_now` on the tick task, before a failover.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::checks::Checks;
use super::netcheck::{self, Probe};
use super::shared::Shared;
use crate::hb::config::NetworkConfig;
use crate::hb::logic::analysis::{EchoMethod, NetworkCheck, Report};
use crate::hb::logic::qos::Qos;
use crate::hb::logic::table::{now_ms, DeviceStatus};

/// A reported problem is cut to this many characters (a report rides a heartbeat).
const PROBLEM_MAX: usize = 160;
/// A report larger than this (encoded) loses its words, then its channels:
/// it must fit a heartbeat beside other control messages.
const REPORT_MAX: usize = 2048;

/// The networks as the local check sees them (`on`: the names of those
/// turned on); the peer's address is resolved only if `resolve` (it may ask
/// DNS: on a blocking thread).
fn probes(nets: &[NetworkConfig], on: &[String], resolve: bool) -> Vec<Probe> {
    nets.iter()
        .map(|n| {
            let peer: Option<IpAddr> = n.peers.first().and_then(|p| {
                p.parse::<SocketAddr>()
                    .ok()
                    .or_else(|| {
                        resolve
                            .then(|| p.to_socket_addrs().ok().and_then(|mut a| a.next()))
                            .flatten()
                    })
                    .map(|a| a.ip())
            });
            let (target, target_is_peer) = match (n.probe, peer) {
                (Some(p), _) => (p, false),
                (None, Some(p)) => (p, true),
                (None, None) => (IpAddr::from([0, 0, 0, 0]), true),
            };
            Probe {
                name: n.name.clone(),
                on: on.contains(&n.name),
                listen: n.listen.ip(),
                target,
                target_is_peer,
            }
        })
        .collect()
}

/// The names of the networks of `nets` turned on now.
fn networks_on(shared: &Shared, nets: &[NetworkConfig]) -> Vec<String> {
    let c = shared.checker();
    nets.iter()
        .filter(|n| c.table.network_is_on(&n.name))
        .map(|n| n.name.clone())
        .collect()
}

fn cut(text: &mut Option<String>) {
    if let Some(t) = text {
        if t.len() > PROBLEM_MAX {
            let mut end = PROBLEM_MAX;
            while !t.is_char_boundary(end) {
                end -= 1;
            }
            t.truncate(end);
            t.push('…');
        }
    }
}

/// This host's report: the local network check (Fig 8), the channels
/// with their counters, and the QoS.
pub async fn local_report(shared: &Shared, checks: &Checks) -> Report {
    let nets = shared.config.all_networks();
    let on = networks_on(shared, &nets);
    let a = &shared.config.analysis;
    let (rounds, gap) = (a.echo_rounds, Duration::from_millis(a.echo_interval_ms));
    let ident = (std::process::id() as u16) ^ (now_ms() as u16);
    let checked = tokio::task::spawn_blocking(move || {
        netcheck::check(&probes(&nets, &on, true), rounds, gap, ident)
    })
    .await;
    let (echo, echo_note, networks) = checked.unwrap_or_else(|e| {
        (
            EchoMethod::None,
            Some(format!("the local check did not finish: {e}")),
            vec![],
        )
    });
    let mut channels = shared.checker().table.channel_statuses();
    for c in &mut channels {
        cut(&mut c.problem);
    }
    let qos = qos(shared, checks, &networks);
    let mut report = Report {
        host: shared.config.host.clone(),
        group: shared.config.group,
        time_ms: now_ms(),
        echo,
        echo_note,
        networks,
        channels,
        qos,
    };
    fit(&mut report);
    report
}

/// The QoS metric now, the networks judged by `networks`.
pub fn qos(shared: &Shared, checks: &Checks, networks: &[NetworkCheck]) -> Qos {
    let checks_ok = checks.outcomes();
    let failing: Vec<_> = shared
        .config
        .checks
        .iter()
        .filter(|c| checks_ok.get(&c.part) == Some(&false))
        .collect();
    let (mirrors, mirrors_healthy) = {
        let c = shared.checker();
        let t = &c.table;
        let on: Vec<_> = t.devices.iter().filter(|d| t.mirror_on(d)).collect();
        let healthy = on
            .iter()
            .filter(|d| d.status == DeviceStatus::Enable && d.seen.problem.is_none())
            .count();
        (on.len() as u32, healthy as u32)
    };
    Qos {
        networks: networks.iter().filter(|n| n.on).count() as u32,
        networks_working: networks.iter().filter(|n| n.on && n.operational).count() as u32,
        checks: shared.config.checks.len() as u32,
        checks_passing: (shared.config.checks.len() - failing.len()) as u32,
        serious_failing: failing
            .iter()
            .filter(|c| c.level.alerts())
            .map(|c| c.part.clone())
            .collect(),
        mirrors,
        mirrors_healthy,
        load_milli: load_milli(),
    }
}

/// The QoS now, the networks judged by their NICs alone (no echo: a
/// failover must not wait for it).
pub fn qos_now(shared: &Shared, checks: &Checks) -> Qos {
    let nets = shared.config.all_networks();
    let on = networks_on(shared, &nets);
    qos(shared, checks, &netcheck::nics(&probes(&nets, &on, false)))
}

/// Keeps `r` within [`REPORT_MAX`] encoded: first without its explanations,
/// then without its channels (the networks' checks and the QoS stay).
fn fit(r: &mut Report) {
    let size = |r: &Report| postcard::to_allocvec(r).map_or(usize::MAX, |v| v.len());
    if size(r) <= REPORT_MAX {
        return;
    }
    r.echo_note = None;
    for n in &mut r.networks {
        n.error = None;
    }
    for c in &mut r.channels {
        c.problem = None;
    }
    if size(r) > REPORT_MAX {
        r.channels.clear();
    }
}

/// The 1-minute load average per CPU, in thousandths (0 if unknown).
fn load_milli() -> u32 {
    let load: f64 = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().and_then(|f| f.parse().ok()))
        .unwrap_or(0.0);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    (load * 1000.0 / cpus as f64) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hb::logic::analysis::{ChannelKind, ChannelState, ChannelStatus, Nic};
    use hbcore::vocab::Group;

    #[test]
    fn a_report_too_large_for_a_heartbeat_loses_its_words_then_its_channels() {
        let channel = |i: usize| ChannelStatus {
            name: format!("mirror-{i}"),
            kind: ChannelKind::Mirror,
            state: ChannelState::Bad,
            status: "FAILED".into(),
            direction: Some("receive".into()),
            counter: Some(0),
            sent: 1,
            received: 2,
            missing: 3,
            last_ms: Some(4),
            problem: Some("x".repeat(PROBLEM_MAX)),
            clock_offset_ms: Some(5),
        };
        let network = |i: usize| NetworkCheck {
            name: format!("net{i}"),
            on: true,
            interface: Some(format!("eth{i}")),
            nic: Nic::Up,
            target: "10.0.0.254".into(),
            target_is_peer: false,
            sent: 3,
            replies: 3,
            rtt_us: Some(100),
            error: Some("y".repeat(100)),
            operational: true,
        };
        let mut r = Report {
            host: "standby-a".into(),
            group: Group::Standby,
            time_ms: 1,
            echo: EchoMethod::Raw,
            echo_note: Some("z".repeat(300)),
            networks: (0..4).map(network).collect(),
            channels: (0..4).map(channel).collect(),
            qos: Qos::default(),
        };
        let small = r.clone();
        fit(&mut r);
        assert_eq!(r, small, "a small report stays whole");
        r.channels = (0..20).map(channel).collect();
        fit(&mut r);
        assert!(postcard::to_allocvec(&r).expect("encode").len() <= REPORT_MAX);
        assert_eq!(r.channels.len(), 20, "the words went first");
        assert!(r.echo_note.is_none() && r.channels[0].problem.is_none());
        r.channels = (0..200).map(channel).collect();
        fit(&mut r);
        assert!(r.channels.is_empty(), "then the channels");
        assert_eq!(r.networks.len(), 4, "the checks stay");
    }
}
