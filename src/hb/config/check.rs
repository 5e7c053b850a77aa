//! The config checked as a whole when loaded: timing, networks, counters,
//! mirrors, failover and checks, each refusal naming its key. Runs once,
//! on the thread that loads the config.

use std::path::Path;

use hbcore::config::{Checked, ConfigError};
use hbcore::host::Endpoint;
use hbcore::vocab::Group;

use super::{AnalysisConfig, Config};
use crate::hb::logic::analysis::MAX_NETWORKS;
use crate::hb::logic::counter::CounterRule;

impl Checked for Config {
    fn check(self, path: &Path) -> Result<Config, ConfigError> {
        let mut config = self;
        let invalid = |why: String| ConfigError::invalid(path, why);
        check_mirrord(&mut config).map_err(invalid)?;
        if config.interval_ms < 10 {
            return Err(invalid(format!(
                "interval_ms = {} is below 10 ms",
                config.interval_ms
            )));
        }
        if config.timeout_ms < 2 * config.interval_ms {
            return Err(invalid(format!(
                "timeout_ms ({}) must be at least twice interval_ms ({}): a channel needs more than one heartbeat per timeout; use e.g. 10 x the interval",
                config.timeout_ms, config.interval_ms
            )));
        }
        if config.peers.is_empty() {
            return Err(invalid(
                "peers is empty: name the peer host(s) whose heartbeats this hbd approves".into(),
            ));
        }
        let mut names: Vec<&str> = config.mirrors.iter().map(|m| m.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(invalid(format!("mirror '{}' is listed twice", w[0])));
        }
        if config.freshness_ms.is_some() {
            return Err(invalid(
                "freshness_ms is retired: heartbeats are no longer compared with this host's clock (a clock step at either site must not fail a channel); liveness is judged on this host's monotonic clock, and replays are refused by the echo of a fresh nonce. Remove the key; clock_warn_ms sets when a peer's clock offset is warned of".into(),
            ));
        }
        for m in &config.mirrors {
            let name = &m.name;
            match (&m.pvol, &m.svol, &m.pair) {
                (None, None, _) => {
                    return Err(invalid(format!(
                        "[[mirrors]] '{name}' has neither pvol (written here) nor svol (read here)"
                    )))
                }
                (Some(_), Some(_), _) => {
                    return Err(invalid(format!(
                        "[[mirrors]] '{name}' has both pvol and svol: a heartbeat mirror is written at one host (pvol) and read at the other (svol); for the reverse direction give a second mirror of another name"
                    )))
                }
                (None, Some(_), Some(_)) => {
                    return Err(invalid(format!(
                        "[[mirrors]] '{name}' has svol and pair: pair names the mirrord pair whose PVOL this host writes (it is protected from split here); give it with pvol, at the host that writes the PVOL"
                    )))
                }
                _ => {}
            }
            if config.table_volume.is_some() && [&m.pvol, &m.svol].contains(&&config.table_volume) {
                return Err(invalid(format!(
                    "table_volume is the device of [[mirrors]] '{name}': keep the status table on a volume of its own"
                )));
            }
        }
        check_networks(&config).map_err(invalid)?;
        check_counter(&config.counter, &config.analysis).map_err(invalid)?;
        match config.group {
            Group::Production if config.analysis.failover_on_fault => {
                return Err(invalid(
                    "analysis.failover_on_fault is set at a production host: only a standby fails over; set it at the standby".into(),
                ))
            }
            Group::Production if config.failover.arm.is_some() => {
                return Err(invalid(
                    "failover.arm is set at a production host: only a standby fails over; leave it out here".into(),
                ))
            }
            Group::Standby if config.failover.step_down.is_some() => {
                return Err(invalid(
                    "failover.step_down is set at a standby: only a production host steps down (when the standby took over); set it at the production host".into(),
                ))
            }
            _ => {}
        }
        check_min_hosts(&config).map_err(invalid)?;
        if let Some(c) = &config.cluster {
            c.check_group(
                &config.host,
                config.table_volume.as_deref(),
                config.interval_ms,
            )
            .map_err(invalid)?;
        }
        check_fencing(&config).map_err(invalid)?;
        for c in &config.checks {
            let kinds = [
                c.command.is_some(),
                c.writable.is_some(),
                c.network.is_some(),
            ]
            .iter()
            .filter(|b| **b)
            .count();
            if kinds != 1 {
                return Err(invalid(format!(
                    "check '{}' needs exactly one of command, writable, network",
                    c.part
                )));
            }
        }
        Ok(config)
    }
}

/// `[failover]`'s way to mirrord: the socket, or the host link with its
/// addresses, key (read now: present, long enough, mode 0600 or stricter)
/// and host id (`host` unless given).
/// The key is read here so that `hbd --check` finds a bad one.
fn check_mirrord(config: &mut Config) -> Result<(), String> {
    let f = &mut config.failover;
    let Some(url) = &f.mirrord else {
        for (key, given) in [
            ("mirrord_key", f.mirrord_key.is_some()),
            ("mirrord_host", f.mirrord_host.is_some()),
        ] {
            if given {
                return Err(format!(
                    "failover.{key} is given without failover.mirrord: it is for the host link (mirrord = \"tcp://ADDR:PORT\"); give mirrord too, or leave {key} out to use mirrord_socket"
                ));
            }
        }
        return Ok(());
    };
    match Endpoint::parse(url) {
        Ok(Endpoint::Tcp { .. }) => {}
        Ok(Endpoint::Socket(_)) => {
            return Err(format!(
                "failover.mirrord = \"{url}\": give tcp://ADDR:PORT[,ADDR2:PORT] (mirrord's [hosts] listen on another machine); for mirrord's control socket on this machine use mirrord_socket"
            ))
        }
        Err(e) => return Err(format!("failover.mirrord: {e}")),
    }
    if f.mirrord_socket.as_os_str() != hbcore::control::DEFAULT_SOCKET {
        return Err(format!(
            "failover.mirrord ({url}) and failover.mirrord_socket ({}) both say where mirrord is: give mirrord for the host link to another machine, or mirrord_socket for this machine's mirrord, not both",
            f.mirrord_socket.display()
        ));
    }
    let Some(key) = &f.mirrord_key else {
        return Err(format!(
            "failover.mirrord = \"{url}\" needs failover.mirrord_key: this host's key file for the host link (the one mirrord's [[hosts.allow]] entry for it names)"
        ));
    };
    hbcore::config::read_private_key(key)
        .map_err(|e| format!("failover.mirrord_key: {}", hbcore::report::chain(&e)))?;
    if f.mirrord_host.as_deref() == Some("") {
        return Err("failover.mirrord_host is empty: give the host id mirrord's [[hosts.allow]] entry names, or leave it out for `host`".into());
    }
    if f.mirrord_host.is_none() {
        f.mirrord_host = Some(config.host.clone());
    }
    Ok(())
}

/// `min_hosts`: at least this host, at most its group.
fn check_min_hosts(config: &Config) -> Result<(), String> {
    let (min, size) = (config.min_hosts, config.group_size());
    if min == 0 {
        return Err(
            "min_hosts = 0: give at least 1 (this host counts itself), or leave it out (default 1)"
                .into(),
        );
    }
    if min > size {
        let group = match config
            .cluster
            .as_ref()
            .filter(|c| !c.group_members.is_empty())
        {
            Some(c) => format!(
                "its group has {size} hosts ([cluster] group_members = {:?})",
                c.group_members
            ),
            None => "its group is this host alone (no [cluster] group_members)".into(),
        };
        return Err(format!(
            "min_hosts = {min} is more than the hosts of this host's group: {group}, so it could never serve; give at most {size}, or list the group's hosts in [cluster] group_members"
        ));
    }
    Ok(())
}

/// `watchdog_device`, `watchdog_timeout_ms` and `fence_timeout_ms`: each
/// timeout leaves room for at least three heartbeat intervals, so one late
/// tick neither resets the host nor fences it. The watchdog's timeout is
/// checked only where a watchdog is configured.
/// The longest timeout Linux's watchdog drivers take (softdog's limit, in ms).
const MAX_WATCHDOG_MS: u64 = 65_535_000;

fn check_fencing(config: &Config) -> Result<(), String> {
    let least = config.interval_ms.saturating_mul(3);
    if let Some(device) = &config.watchdog_device {
        if device.as_os_str().is_empty() {
            return Err("watchdog_device is empty: give the watchdog's path (/dev/watchdog), or leave the key out for no watchdog".into());
        }
        if config.watchdog_timeout_ms < least {
            return Err(format!(
                "watchdog_timeout_ms ({}) must be at least 3 x interval_ms ({}) = {least}: a host must be petted several times per timeout, or one late tick resets it; give watchdog_timeout_ms = {least} or more, or a shorter interval_ms",
                config.watchdog_timeout_ms, config.interval_ms
            ));
        }
        if config.watchdog_timeout_ms > MAX_WATCHDOG_MS {
            return Err(format!(
                "watchdog_timeout_ms ({}) is above {MAX_WATCHDOG_MS}: Linux's watchdogs take at most 65535 s; give a shorter timeout",
                config.watchdog_timeout_ms
            ));
        }
    }
    if config.fence_timeout_ms < least {
        return Err(format!(
            "fence_timeout_ms ({}) must be at least 3 x interval_ms ({}) = {least}: a host fences itself only after several intervals without its LAN and its slot; give fence_timeout_ms = {least} or more, or a shorter interval_ms",
            config.fence_timeout_ms, config.interval_ms
        ));
    }
    Ok(())
}

/// `[network]` or `[[networks]]`, each network well named and addressed.
fn check_networks(config: &Config) -> Result<(), String> {
    if config.network.is_some() && !config.networks.is_empty() {
        return Err("both [network] and [[networks]] are given: list every network under [[networks]] (each with a name), or keep the single [network]".into());
    }
    if config.networks.len() > MAX_NETWORKS {
        return Err(format!(
            "{} [[networks]]: at most {MAX_NETWORKS}",
            config.networks.len()
        ));
    }
    let good_name = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    for n in &config.networks {
        if !good_name(&n.name) {
            return Err(format!(
                "[[networks]] entry listening on {} needs a name of letters, digits, '-', '_' or '.' (name = \"net0\"), the same at both hosts",
                n.listen
            ));
        }
    }
    if config.network.as_ref().is_some_and(|n| !n.name.is_empty()) {
        return Err(
            "[network] takes no name (it is the one network); to name networks, use [[networks]]"
                .into(),
        );
    }
    let all = config.all_networks();
    for (i, n) in all.iter().enumerate() {
        if n.peers.is_empty() {
            return Err(format!(
                "network '{}' has no peers: give the peer hbd's address on it",
                n.name
            ));
        }
        if let Some(other) = all[..i].iter().find(|o| o.name == n.name) {
            return Err(format!("network '{}' is listed twice", other.name));
        }
        if let Some(other) = all[..i].iter().find(|o| o.listen == n.listen) {
            return Err(format!(
                "networks '{}' and '{}' both listen on {}: each network needs this host's own address on it",
                other.name, n.name, n.listen
            ));
        }
    }
    Ok(())
}

/// The counters' and the local check's numbers.
fn check_counter(c: &CounterRule, a: &AnalysisConfig) -> Result<(), String> {
    if c.start == 0 || c.decrement == 0 || c.period_intervals == 0 || c.disconnect == 0 {
        return Err("counter.start, counter.decrement, counter.period_intervals and counter.disconnect must be at least 1".into());
    }
    if c.max < c.start {
        return Err(format!(
            "counter.max ({}) is below counter.start ({}): the seed's are 48 and 20",
            c.max, c.start
        ));
    }
    if !(1..=10).contains(&a.echo_rounds) {
        return Err(format!(
            "analysis.echo_rounds = {}: give 1 to 10 (the seed: 3)",
            a.echo_rounds
        ));
    }
    if a.echo_interval_ms < 10 || a.echo_interval_ms > 10_000 {
        return Err(format!(
            "analysis.echo_interval_ms = {}: give 10 to 10000 (the seed: 1000)",
            a.echo_interval_ms
        ));
    }
    if let Some(l) = a.max_load {
        if !(l > 0.0 && l < 1000.0) {
            return Err(format!(
                "analysis.max_load = {l}: give a load per CPU above 0 (e.g. 4.0), or leave it out"
            ));
        }
    }
    Ok(())
}
