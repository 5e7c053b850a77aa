//! mirrord's TOML configuration.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use hbcore::config::ConfigError;
use hbcore::config::{self, Checked};
use hbcore::link::Lane;

/// The whole configuration of one site's mirrord.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This site's name, as peers know it.
    pub site: String,
    /// Metadata and default volume files.
    pub data_dir: PathBuf,
    /// Local control socket (mode 0600).
    #[serde(default = "default_socket")]
    pub control_socket: PathBuf,
    /// hbfs mount point; no mount when absent.
    #[serde(default)]
    pub mount: Option<PathBuf>,
    /// How hbfs talks to the kernel: `auto` (default), `uring` or `classic`.
    #[serde(default)]
    pub fuse_transport: FuseTransport,
    /// The remote link.
    pub link: LinkConfig,
    /// Peer sites.
    #[serde(default)]
    pub peers: Vec<PeerConfig>,
    /// OpenMetrics endpoint (`GET /metrics`) address; none when absent (the default).
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// The host link (`[hosts]`); none when absent.
    #[serde(default)]
    pub hosts: Option<HostsConfig>,
}

/// hbfs's FUSE transport (`fuse_transport`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FuseTransport {
    /// What hbfs's `auto` picks (see docs/mirrord.toml.md, "FUSE transport").
    #[default]
    Auto,
    /// FUSE over io_uring, or mirrord does not start.
    Uring,
    /// read(2)/write(2) on /dev/fuse.
    Classic,
}

impl From<FuseTransport> for hbfs::Transport {
    fn from(t: FuseTransport) -> hbfs::Transport {
        match t {
            FuseTransport::Auto => hbfs::Transport::Auto,
            FuseTransport::Uring => hbfs::Transport::Uring,
            FuseTransport::Classic => hbfs::Transport::Classic,
        }
    }
}

/// The remote link's settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkConfig {
    /// Address to accept peers on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// File holding the pre-shared key of the sites.
    pub psk_file: PathBuf,
    /// Silence after which a connection is declared dead (it carries a ping every `timeout/4`).
    #[serde(default = "default_link_timeout_ms")]
    pub timeout_ms: u64,
    /// Whether every frame after the handshake is sealed (AES-256-GCM).
    /// `false` only for measuring what sealing costs, on loopback: refused
    /// unless `listen` is a loopback address.
    #[serde(default = "default_seal")]
    pub seal: bool,
}

fn default_seal() -> bool {
    true
}

/// One peer site, reached over one path or several: give exactly one of
/// `address`, `addresses` and `paths`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// The peer's site name.
    pub site: String,
    /// Its link address, `host:port`: one path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Several paths, by the peer's address on each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// Several paths, each with this site's own address on it and the
    /// lanes that prefer it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<PathConfig>,
}

/// One network path to a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathConfig {
    /// Its name in status and metrics (default `path0`, `path1`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The peer's link address on this path, `host:port`.
    pub remote: String,
    /// This site's address on this path: the dialer binds it, the
    /// listener tells the path of an accepted connection by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<IpAddr>,
    /// Lanes that use this path first (`"bulk"`, `"heartbeat"`); empty: both.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lanes: Vec<Lane>,
}

/// Most paths a peer may have (knet's limit).
pub const MAX_PATHS: usize = 8;

impl PeerConfig {
    /// A peer reached at one address.
    pub fn at(site: &str, address: String) -> PeerConfig {
        PeerConfig {
            site: site.into(),
            address: Some(address),
            ..PeerConfig::default()
        }
    }

    /// Its paths in order, each named.
    pub fn path_list(&self) -> Vec<PathConfig> {
        let by_address = |remote: &String| PathConfig {
            name: None,
            remote: remote.clone(),
            local: None,
            lanes: Vec::new(),
        };
        let list: Vec<PathConfig> = match (&self.address, self.addresses.is_empty()) {
            (Some(a), _) => vec![by_address(a)],
            (None, false) => self.addresses.iter().map(by_address).collect(),
            (None, true) => self.paths.clone(),
        };
        list.into_iter()
            .enumerate()
            .map(|(i, p)| PathConfig {
                name: Some(p.name.clone().unwrap_or_else(|| format!("path{i}"))),
                ..p
            })
            .collect()
    }

    fn check_paths(&self) -> Result<(), String> {
        let site = &self.site;
        let given = usize::from(self.address.is_some())
            + usize::from(!self.addresses.is_empty())
            + usize::from(!self.paths.is_empty());
        if given != 1 {
            return Err(format!(
                "peer '{site}' needs exactly one of `address`, `addresses` and `paths` ({given} given)"
            ));
        }
        let paths = self.path_list();
        if paths.len() > MAX_PATHS {
            return Err(format!(
                "peer '{site}' has {} paths; at most {MAX_PATHS} are supported",
                paths.len()
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for p in &paths {
            let name = p.name.as_deref().unwrap_or("");
            check_name("paths.name", name)?;
            if !names.insert(name.to_string()) {
                return Err(format!("peer '{site}' has two paths named '{name}'"));
            }
            let port = p
                .remote
                .rsplit_once(':')
                .map(|(_, port)| port.parse::<u16>());
            if !matches!(port, Some(Ok(_))) {
                return Err(format!(
                    "peer '{site}' path '{name}': remote '{}' is not host:port",
                    p.remote
                ));
            }
        }
        Ok(())
    }
}

/// `[hosts]`: the host link.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostsConfig {
    /// Where hosts connect (`ADDR:PORT`).
    pub listen: SocketAddr,
    /// The hosts allowed, each with its own key.
    #[serde(default)]
    pub allow: Vec<HostAllow>,
}

/// `[[hosts.allow]]`: one host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostAllow {
    /// The host's id (`hbfs --host`).
    pub host: String,
    /// Its key (mode 0600 or stricter; at least 16 bytes).
    pub key_file: PathBuf,
    /// The volumes it may see, read and write: names, or `"*"` for all.
    pub volumes: VolumeGrant,
    /// What it may ask of the control API.
    #[serde(default)]
    pub control: ControlGrant,
}

/// The volumes a host may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum VolumeGrant {
    /// `"*"`: every volume of the site.
    All(Star),
    /// These volumes.
    Listed(Vec<String>),
}

/// The string `"*"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Star;

impl Serialize for Star {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("*")
    }
}

impl<'de> Deserialize<'de> for Star {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Star, D::Error> {
        let s = String::deserialize(d)?;
        if s == "*" {
            Ok(Star)
        } else {
            Err(serde::de::Error::custom(format!(
                "volumes = \"{s}\": write a list of names, or \"*\" for every volume"
            )))
        }
    }
}

/// How much of the control API a host may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ControlGrant {
    /// Nothing (the default): volumes only.
    #[default]
    None,
    /// Looking: `volume list`, `pair status`, `link status`.
    Read,
    /// Everything hbctl can do at the control socket.
    Full,
}

impl HostsConfig {
    /// Checks names and uniqueness (the keys are read at start).
    pub fn check(&self) -> Result<(), String> {
        let mut seen = std::collections::BTreeSet::new();
        for a in &self.allow {
            check_name("hosts.allow.host", &a.host)?;
            if !seen.insert(a.host.as_str()) {
                return Err(format!(
                    "host '{}' is listed twice in [[hosts.allow]]",
                    a.host
                ));
            }
            if let VolumeGrant::Listed(names) = &a.volumes {
                for v in names {
                    check_name("hosts.allow.volumes", v)?;
                }
            }
        }
        Ok(())
    }
}

fn default_socket() -> PathBuf {
    PathBuf::from(hbcore::control::DEFAULT_SOCKET)
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 7788))
}

fn default_link_timeout_ms() -> u64 {
    5000
}

impl LinkConfig {
    /// Silence after which a connection is dropped.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

impl Checked for Config {
    fn check(self, path: &Path) -> Result<Config, ConfigError> {
        let config = self;
        let invalid = |why: String| ConfigError::invalid(path, why);
        check_name("site", &config.site).map_err(invalid)?;
        for peer in &config.peers {
            check_name("peers.site", &peer.site).map_err(invalid)?;
            peer.check_paths().map_err(invalid)?;
            if peer.site == config.site {
                return Err(invalid(format!(
                    "peer '{}' has this site's own name; give each site its own name",
                    peer.site
                )));
            }
        }
        let mut names: Vec<&str> = config.peers.iter().map(|p| p.site.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(invalid(format!("peer '{}' is listed twice", w[0])));
        }
        if config.link.timeout_ms < 100 {
            return Err(invalid("link.timeout_ms must be at least 100".into()));
        }
        if let Some(hosts) = &config.hosts {
            hosts.check().map_err(invalid)?;
            if hosts.listen == config.link.listen {
                return Err(invalid(format!(
                    "hosts.listen and link.listen are both {}; give hosts a port of their own",
                    hosts.listen
                )));
            }
        }
        if !config.link.seal && !config.link.listen.ip().is_loopback() {
            return Err(invalid(format!(
                "link.seal = false sends every frame readable and alterable by anyone on the path; \
                 it is only for measuring on one machine and is refused unless link.listen is a \
                 loopback address (it is {}); remove `seal = false`",
                config.link.listen
            )));
        }
        Ok(config)
    }
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        config::load(path)
    }

    /// Parses and checks config text; `path` is only for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        config::parse(text, path)
    }

    /// Reads the pre-shared link key.
    pub fn link_key(&self) -> Result<Vec<u8>, ConfigError> {
        config::read_key(&self.link.psk_file)
    }

    /// The configured peer called `site`.
    pub fn peer(&self, site: &str) -> Option<&PeerConfig> {
        self.peers.iter().find(|p| p.site == site)
    }
}

pub use hbcore::config::check_name;

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
site = "prod"                                  # this site's name
data_dir = "/var/lib/hbmirror/prod"            # metadata, and volume files created without --path
control_socket = "/run/hbmirror/mirrord.sock"  # local control API, mode 0600
mount = "/mnt/hbfs"                            # hbfs mount point; omit the key to run without a mount
fuse_transport = "auto"                        # hbfs over FUSE: auto, uring (io_uring, Linux 6.14+) or classic
[link]
listen = "0.0.0.0:7788"
psk_file = "/etc/hbmirror/link.key"            # shared secret of the two sites
[[peers]]
site = "standby"
address = "10.0.0.2:7788"
"#;

    #[test]
    fn the_documented_example_parses() {
        let c = Config::parse(EXAMPLE, Path::new("x.toml")).expect("parse");
        assert_eq!(c.site, "prod");
        assert_eq!(c.mount.as_deref(), Some(Path::new("/mnt/hbfs")));
        assert_eq!(c.link.listen.port(), 7788);
        assert_eq!(c.peers[0].site, "standby");
        assert_eq!(c.link.timeout(), Duration::from_secs(5));
        assert_eq!(c.fuse_transport, FuseTransport::Auto);
        assert!(c.link.seal, "frames are sealed by default");
    }

    #[test]
    fn an_unsealed_link_is_refused_off_loopback() {
        let unsealed = EXAMPLE.replace("psk_file =", "seal = false\npsk_file =");
        let e = Config::parse(&unsealed, Path::new("x.toml")).expect_err("refused");
        let text = hbcore::report::chain(&e);
        assert!(
            text.contains("refused unless link.listen is a loopback address (it is 0.0.0.0:7788)"),
            "{text}"
        );
        let local = unsealed.replace("0.0.0.0:7788", "127.0.0.1:7788");
        let c = Config::parse(&local, Path::new("x.toml")).expect("loopback");
        assert!(!c.link.seal);
    }

    #[test]
    fn defaults_fill_the_optional_keys() {
        let c = Config::parse(
            "site='a'\ndata_dir='/d'\n[link]\npsk_file='/k'\n",
            Path::new("x.toml"),
        )
        .expect("parse");
        assert_eq!(
            c.control_socket,
            PathBuf::from("/run/hbmirror/mirrord.sock")
        );
        assert!(c.mount.is_none());
        assert!(c.peers.is_empty());
        assert_eq!(c.fuse_transport, FuseTransport::Auto);
    }

    #[test]
    fn the_fuse_transport_is_one_of_three() {
        for (text, want) in [
            ("uring", FuseTransport::Uring),
            ("classic", FuseTransport::Classic),
        ] {
            let c = Config::parse(
                &EXAMPLE.replace("\"auto\"", &format!("\"{text}\"")),
                Path::new("x.toml"),
            )
            .expect("parse");
            assert_eq!(c.fuse_transport, want);
        }
        let bad = Config::parse(
            &EXAMPLE.replace("\"auto\"", "\"fast\""),
            Path::new("x.toml"),
        )
        .expect_err("unknown transport");
        let text = hbcore::report::chain(&bad);
        assert!(text.contains("fast"), "{text}");
    }

    #[test]
    fn typos_and_bad_values_are_named() {
        let typo = Config::parse(
            EXAMPLE.replace("data_dir", "datadir").as_str(),
            Path::new("x.toml"),
        )
        .expect_err("typo");
        let text = hbcore::report::chain(&typo);
        assert!(text.contains("datadir"), "{text}");
        let selfpeer = Config::parse(
            EXAMPLE.replace("\"standby\"", "\"prod\"").as_str(),
            Path::new("x.toml"),
        )
        .expect_err("self peer");
        assert!(selfpeer.to_string().contains("own name"), "{selfpeer}");
        let badname = Config::parse(
            EXAMPLE.replace("\"prod\"", "\"a b\"").as_str(),
            Path::new("x.toml"),
        )
        .expect_err("bad name");
        assert!(
            badname.to_string().contains("not a valid name"),
            "{badname}"
        );
    }
}
