//! hbd's TOML configuration: this host, its group and peers, the channels
//! (network, heartbeat mirrors), the timing, the failover actions and the
//! local checks; checked as a whole when loaded.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use hbcore::config::ConfigError;
use hbcore::config::{self, Checked};
use hbcore::vocab::{Group, Level};

use super::analysis::MAX_NETWORKS;
use super::counter::CounterRule;
use super::qos::QosRule;
use super::table::{ArmPolicy, Direction, MirrorSeed};

/// The name of the network of a config's single `[network]` section.
pub const LEGACY_NETWORK: &str = "network";

/// The whole configuration of one host's hbd.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This host's identifier, carried in every message it sends.
    pub host: String,
    /// Its group.
    pub group: Group,
    /// Identifiers approved as senders (the peer group's hosts).
    pub peers: Vec<String>,
    /// Where the status table (`table.json`) and events (`events.jsonl`) live.
    pub data_dir: PathBuf,
    /// Control socket for `hbctl hb` (mode 0600).
    #[serde(default = "default_socket")]
    pub control_socket: PathBuf,
    /// Milliseconds between heartbeats (and checks).
    #[serde(default = "default_interval_ms")]
    pub interval_ms: u64,
    /// Milliseconds without an advancing heartbeat after which a channel fails.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Retired: refused with a message that says what replaced it (the
    /// heartbeats' time is judged on the sender's own monotonic clock and
    /// echoed nonces, never against this host's clock).
    #[serde(default, skip_serializing)]
    pub freshness_ms: Option<toml::Value>,
    /// A peer whose wall clock is further off than this (measured from the
    /// heartbeats' round trips) is warned of, in the log and the events;
    /// nothing else depends on the clocks. Default 1000.
    #[serde(default = "default_clock_warn_ms")]
    pub clock_warn_ms: u64,
    /// Pre-shared key of the heartbeat messages (network and volumes).
    pub psk_file: PathBuf,
    /// Directory where this host sees heartbeat volumes as files (its hbfs
    /// mount); a peer's activation names a volume, found here.
    #[serde(default)]
    pub volume_dir: Option<PathBuf>,
    /// Also keep the status table on this volume (a file path), besides `data_dir`.
    #[serde(default)]
    pub table_volume: Option<PathBuf>,
    /// The network channel (one network; or give `[[networks]]`).
    #[serde(default)]
    pub network: Option<NetworkConfig>,
    /// The IP networks between the hosts, each a channel of its own.
    #[serde(default)]
    pub networks: Vec<NetworkConfig>,
    /// The channels' counters (seed 002, Figs 4 and 5).
    #[serde(default)]
    pub counter: CounterRule,
    /// The fault analysis (seed 002, Figs 6–9).
    #[serde(default)]
    pub analysis: AnalysisConfig,
    /// Heartbeat mirrors that seed the status table (each entry once; then
    /// the table decides, so `hbctl hb mirror uninstall` survives restarts).
    #[serde(default)]
    pub mirrors: Vec<MirrorConfig>,
    /// What to do at failover, and where to reach mirrord.
    #[serde(default)]
    pub failover: FailoverConfig,
    /// Local checks whose failures are notified to the peer (Fig 10).
    #[serde(default)]
    pub checks: Vec<CheckConfig>,
    /// OpenMetrics endpoint (`GET /metrics`) address; none when absent (the default).
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// This host is a member of a cluster (see [`crate::cluster`]).
    #[serde(default)]
    pub cluster: Option<crate::cluster::config::ClusterConfig>,
}

/// A network heartbeat channel (UDP): `[network]`, or one of `[[networks]]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// The network's name, the same at both hosts (`[[networks]]` only).
    #[serde(default)]
    pub name: String,
    /// This host's address on the network: heartbeats are received on it
    /// and sent from it.
    pub listen: SocketAddr,
    /// The peer hbd's address(es) on the network; each gets every heartbeat.
    pub peers: Vec<String>,
    /// Where the local check sends its echo requests (e.g. the network's
    /// gateway); default: the first peer.
    #[serde(default)]
    pub probe: Option<IpAddr>,
}

/// `[analysis]`: the local network check and what a verdict may do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisConfig {
    /// Rounds of echo requests on every network (Fig 8).
    pub echo_rounds: u32,
    /// Milliseconds between rounds.
    pub echo_interval_ms: u64,
    /// A host whose 1-minute load average per CPU is above this cannot carry
    /// the duties (QoS); none: no limit.
    pub max_load: Option<f64>,
    /// Standby only: fail over on a `remote-fault` verdict when its QoS
    /// exceeds production's and it can carry the duties (Fig 6, 634–638).
    pub failover_on_fault: bool,
}

impl Default for AnalysisConfig {
    fn default() -> AnalysisConfig {
        AnalysisConfig {
            echo_rounds: 3,
            echo_interval_ms: 1000,
            max_load: None,
            failover_on_fault: false,
        }
    }
}

/// One heartbeat mirror: a PVOL path this host writes and/or an SVOL path it reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// Name, the same at both hosts.
    pub name: String,
    /// Heartbeat PVOL to write (sending).
    #[serde(default)]
    pub pvol: Option<PathBuf>,
    /// Heartbeat SVOL to read (receiving).
    #[serde(default)]
    pub svol: Option<PathBuf>,
    /// The mirrord pair behind it (protected from split while installed).
    #[serde(default)]
    pub pair: Option<String>,
}

/// Failover actions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverConfig {
    /// Command run (by `sh -c`) once at failover, with the reason and the table in its environment.
    #[serde(default)]
    pub hook: Option<String>,
    /// Data pairs to take over through mirrord at failover.
    #[serde(default)]
    pub take_over: Vec<String>,
    /// mirrord's control socket (pair takeover, heartbeat-pair protection).
    #[serde(default = "default_mirrord_socket")]
    pub mirrord_socket: PathBuf,
    /// Command run for received SYSTEM DOWN and SERIOUS notices.
    #[serde(default)]
    pub alert: Option<String>,
    /// When a standby may fail over after it starts: `seen-alive` (default)
    /// or `after-timeout`.
    #[serde(default)]
    pub arm: Option<ArmPolicy>,
    /// Command run (by `sh -c`) once when a production host steps down
    /// because the standby took over while it was away.
    #[serde(default)]
    pub step_down: Option<String>,
}

/// A local check: exactly one of `command`, `writable`, `network`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// The part's identifier (host, volume, link...).
    pub part: String,
    /// Level of its failure.
    pub level: Level,
    /// Fails when this command (run by `sh -c`) exits non-zero.
    #[serde(default)]
    pub command: Option<String>,
    /// Fails when this volume (file) cannot be opened for writing.
    #[serde(default)]
    pub writable: Option<PathBuf>,
    /// Fails when a TCP connection to this `host:port` cannot be made within the interval.
    #[serde(default)]
    pub network: Option<String>,
}

impl MirrorConfig {
    /// The entry as a seed of the status table (none if it names no device).
    pub fn seed(&self) -> Option<MirrorSeed> {
        let (address, direction) = match (&self.pvol, &self.svol) {
            (Some(p), _) => (p.clone(), Direction::Send),
            (None, Some(s)) => (s.clone(), Direction::Receive),
            (None, None) => return None,
        };
        Some(MirrorSeed {
            name: self.name.clone(),
            address,
            direction,
            pair: self.pair.clone(),
        })
    }
}

// Written out (not derived) so that a config without [failover] gets the
// same mirrord socket as one with an incomplete [failover], not an empty path.
impl Default for FailoverConfig {
    fn default() -> FailoverConfig {
        FailoverConfig {
            hook: None,
            take_over: Vec::new(),
            mirrord_socket: default_mirrord_socket(),
            alert: None,
            arm: None,
            step_down: None,
        }
    }
}

fn default_socket() -> PathBuf {
    PathBuf::from(super::api::DEFAULT_SOCKET)
}

fn default_mirrord_socket() -> PathBuf {
    PathBuf::from(hbcore::control::DEFAULT_SOCKET)
}

fn default_interval_ms() -> u64 {
    1000
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_clock_warn_ms() -> u64 {
    1000
}

impl Checked for Config {
    fn check(self, path: &Path) -> Result<Config, ConfigError> {
        let config = self;
        let invalid = |why: String| ConfigError::invalid(path, why);
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

impl Config {
    /// Every network, named: `[[networks]]`, or the single `[network]`
    /// (named `network`).
    pub fn all_networks(&self) -> Vec<NetworkConfig> {
        match &self.network {
            Some(n) => vec![NetworkConfig {
                name: LEGACY_NETWORK.into(),
                ..n.clone()
            }],
            None => self.networks.clone(),
        }
    }

    /// The names of the networks, in the config's order.
    pub fn network_names(&self) -> Vec<String> {
        self.all_networks().into_iter().map(|n| n.name).collect()
    }

    /// The counter period: `counter.period_intervals` heartbeat intervals.
    pub fn counter_period(&self) -> Duration {
        self.interval() * self.counter.period_intervals
    }

    /// The QoS rule.
    pub fn qos_rule(&self) -> QosRule {
        QosRule {
            max_load_milli: self.analysis.max_load.map(|l| (l * 1000.0) as u32),
        }
    }

    /// How long a local network check takes.
    pub fn echo_duration(&self) -> Duration {
        Duration::from_millis(self.analysis.echo_interval_ms) * self.analysis.echo_rounds
    }

    /// How long an analysis waits for the peer's report: its local check,
    /// and two timeouts for the reports to cross a surviving channel.
    pub fn answer_deadline(&self) -> Duration {
        self.echo_duration() + 2 * self.timeout() + 2 * self.interval()
    }

    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        config::load(path)
    }

    /// Parses and checks config text; `path` is only for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        config::parse(text, path)
    }

    /// The heartbeat interval.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// The channel timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The clock offset past which a peer's clock is warned of.
    pub fn clock_warn(&self) -> Duration {
        Duration::from_millis(self.clock_warn_ms)
    }

    /// The standby's start-up policy.
    pub fn arm_policy(&self) -> ArmPolicy {
        self.failover.arm.unwrap_or_default()
    }

    /// The `[[mirrors]]` as seeds of the status table.
    pub fn seeds(&self) -> Vec<MirrorSeed> {
        self.mirrors.iter().filter_map(MirrorConfig::seed).collect()
    }

    /// Reads the pre-shared key.
    pub fn key(&self) -> Result<Vec<u8>, ConfigError> {
        config::read_key(&self.psk_file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
host = "standby-a"
group = "standby"
peers = ["prod-a"]
data_dir = "/var/lib/hbd"
psk_file = "/etc/hbmirror/hb.key"
interval_ms = 200
timeout_ms = 1000
volume_dir = "/mnt/hbfs"
[network]
listen = "0.0.0.0:7790"
peers = ["10.0.0.1:7790"]
[[mirrors]]
name = "hb0"
svol = "/mnt/hbfs/hb0"
[[mirrors]]
name = "hb1"
pvol = "/mnt/hbfs/hb1"
[failover]
hook = "/usr/local/bin/take-over-app"
take_over = ["app"]
alert = "logger -t hbd"
[[checks]]
part = "db"
level = "SERIOUS"
command = "pgrep -x postgres"
[[checks]]
part = "hb1"
level = "MODERATE"
writable = "/mnt/hbfs/hb1"
"#;

    #[test]
    fn the_example_parses_with_sub_second_timing() {
        let c = Config::parse(EXAMPLE, Path::new("hbd.toml")).expect("parse");
        assert_eq!(c.group, Group::Standby);
        assert_eq!(c.interval(), Duration::from_millis(200));
        assert_eq!(
            c.mirrors[0].svol.as_deref(),
            Some(Path::new("/mnt/hbfs/hb0"))
        );
        assert_eq!(c.failover.take_over, vec!["app".to_string()]);
        assert_eq!(c.checks[0].level, Level::Serious);
        assert_eq!(c.control_socket, PathBuf::from("/run/hbmirror/hbd.sock"));
    }

    #[test]
    fn the_readme_example_parses() {
        let readme = include_str!("../../docs/hbd.toml.md");
        let start = readme
            .find("host = \"standby-a\"")
            .expect("docs/hbd.toml.md has the hbd example");
        let end = start + readme[start..].find("```").expect("end of the example");
        let c = Config::parse(&readme[start..end], Path::new("docs/hbd.toml.md"))
            .expect("the reference's example is valid");
        assert_eq!(c.mirrors.len(), 2);
        assert_eq!(c.checks[0].part, "db");
    }

    #[test]
    fn defaults_are_one_and_ten_seconds() {
        let c = Config::parse(
            "host='a'\ngroup='production'\npeers=['b']\ndata_dir='/d'\npsk_file='/k'\n",
            Path::new("x"),
        )
        .expect("parse");
        assert_eq!(c.interval(), Duration::from_secs(1));
        assert_eq!(c.timeout(), Duration::from_secs(10));
        assert_eq!(
            c.failover.mirrord_socket,
            PathBuf::from(hbcore::control::DEFAULT_SOCKET),
            "without [failover], mirrord is still found at its default socket"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let e = Config::parse(
            &EXAMPLE.replace("timeout_ms = 1000", "timeout_ms = 100"),
            Path::new("x"),
        )
        .expect_err("timeout");
        assert!(e.to_string().contains("at least twice interval_ms"), "{e}");
        let e = Config::parse(
            &EXAMPLE.replace("writable = ", "command = 'x'\nwritable = "),
            Path::new("x"),
        )
        .expect_err("two kinds");
        assert!(e.to_string().contains("exactly one of"), "{e}");
        let e = Config::parse(
            &EXAMPLE.replace("group = \"standby\"", "group = \"primary\""),
            Path::new("x"),
        )
        .expect_err("group");
        let text = hbcore::report::chain(&e);
        assert!(text.contains("unknown variant `primary`"), "{text}");
    }

    #[test]
    fn invalid_combinations_name_their_keys() {
        let refused = |from: &str, to: &str| {
            let text = EXAMPLE.replace(from, to);
            assert_ne!(text, EXAMPLE, "{from} is in the example");
            let e = Config::parse(&text, Path::new("x")).expect_err(to);
            hbcore::report::chain(&e)
        };
        let hb0 = "svol = \"/mnt/hbfs/hb0\"\n";
        let e = refused(hb0, &format!("{hb0}pvol = \"/mnt/hbfs/x\"\n"));
        assert!(e.contains("'hb0' has both pvol and svol"), "{e}");
        let e = refused(hb0, &format!("{hb0}pair = \"hb0\"\n"));
        assert!(e.contains("'hb0' has svol and pair"), "{e}");
        let e = refused(
            "timeout_ms = 1000",
            "timeout_ms = 1000\nfreshness_ms = 5000",
        );
        assert!(
            e.contains("freshness_ms is retired") && e.contains("clock_warn_ms"),
            "{e}"
        );
        let e = refused("[failover]", "[failover]\nstep_down = \"true\"");
        assert!(e.contains("failover.step_down is set at a standby"), "{e}");
        let e = refused("[network]", "table_volume = \"/mnt/hbfs/hb1\"\n[network]");
        assert!(
            e.contains("table_volume is the device of [[mirrors]] 'hb1'"),
            "{e}"
        );
        let production = EXAMPLE
            .replace("group = \"standby\"", "group = \"production\"")
            .replace("[failover]", "[failover]\narm = \"after-timeout\"");
        let e = Config::parse(&production, Path::new("x")).expect_err("arm at production");
        assert!(
            e.to_string()
                .contains("failover.arm is set at a production host"),
            "{e}"
        );
        let e = refused("[failover]", "[failover]\narm = \"sometime\"");
        assert!(e.contains("seen-alive"), "{e}");
        let c = Config::parse(
            &EXAMPLE.replace("[failover]", "[failover]\narm = \"after-timeout\""),
            Path::new("x"),
        )
        .expect("a standby may arm after the timeout");
        assert_eq!(c.arm_policy(), ArmPolicy::AfterTimeout);
        assert_eq!(c.clock_warn(), Duration::from_millis(1000));
        assert_eq!(c.seeds()[0].direction, Direction::Receive);
    }

    const TWO_NETWORKS: &str = r#"
host = "standby-a"
group = "standby"
peers = ["prod-a"]
data_dir = "/var/lib/hbd"
psk_file = "/etc/hbmirror/hb.key"
[[networks]]
name = "lan"
listen = "10.0.0.2:7790"
peers = ["10.0.0.1:7790"]
probe = "10.0.0.254"
[[networks]]
name = "wan"
listen = "192.168.5.2:7790"
peers = ["192.168.5.1:7790"]
[counter]
max = 30
[analysis]
echo_rounds = 2
failover_on_fault = true
"#;

    #[test]
    fn several_networks_each_named_and_the_single_network_is_one_of_them() {
        let c = Config::parse(TWO_NETWORKS, Path::new("x")).expect("parse");
        assert_eq!(
            c.network_names(),
            vec!["lan".to_string(), "wan".to_string()]
        );
        let lan = &c.all_networks()[0];
        assert_eq!(lan.probe, Some("10.0.0.254".parse().expect("ip")));
        assert_eq!(c.all_networks()[1].probe, None, "default: the peer");
        assert_eq!(
            c.counter,
            CounterRule {
                max: 30,
                ..CounterRule::default()
            }
        );
        assert_eq!(
            c.counter_period(),
            Duration::from_secs(5),
            "the seed's 5 s at 1 s"
        );
        assert_eq!(c.echo_duration(), Duration::from_secs(2));
        let old = Config::parse(EXAMPLE, Path::new("x")).expect("parse");
        assert_eq!(old.network_names(), vec![LEGACY_NETWORK.to_string()]);
        assert_eq!(old.counter, CounterRule::default());
        assert!(!old.analysis.failover_on_fault);
    }

    #[test]
    fn networks_and_counters_that_cannot_work_are_refused_by_name() {
        let refused = |from: &str, to: &str| {
            let text = TWO_NETWORKS.replace(from, to);
            assert_ne!(text, TWO_NETWORKS, "{from} is in the example");
            let e = Config::parse(&text, Path::new("x")).expect_err(to);
            hbcore::report::chain(&e)
        };
        let e = refused(
            "[counter]",
            "[network]\nlisten = \"0.0.0.0:1\"\npeers = []\n[counter]",
        );
        assert!(e.contains("both [network] and [[networks]]"), "{e}");
        let e = refused("name = \"wan\"\n", "");
        assert!(
            e.contains("listening on 192.168.5.2:7790 needs a name"),
            "{e}"
        );
        let e = refused("name = \"wan\"", "name = \"lan\"");
        assert!(e.contains("network 'lan' is listed twice"), "{e}");
        let e = refused("192.168.5.2:7790", "10.0.0.2:7790");
        assert!(e.contains("both listen on 10.0.0.2:7790"), "{e}");
        let e = refused("name = \"wan\"", "name = \"w an\"");
        assert!(e.contains("needs a name of letters"), "{e}");
        let e = refused("max = 30", "max = 10");
        assert!(
            e.contains("counter.max (10) is below counter.start (20)"),
            "{e}"
        );
        let e = refused("echo_rounds = 2", "echo_rounds = 0");
        assert!(e.contains("analysis.echo_rounds = 0"), "{e}");
        let e = refused("group = \"standby\"", "group = \"production\"");
        assert!(
            e.contains("analysis.failover_on_fault is set at a production host"),
            "{e}"
        );
        let e = refused("peers = [\"192.168.5.1:7790\"]", "peers = []");
        assert!(e.contains("network 'wan' has no peers"), "{e}");
    }
}
