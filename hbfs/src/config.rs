//! The `hbfs` binary's configuration: where the site's mirrord listens for
//! hosts, this host's key and id, the mount point. Read from `hbfs.toml`
//! ([docs/hbfs.toml.md](../../docs/hbfs.toml.md)) or from the command line,
//! and checked alike (the key file too: present, long enough, mode 0600 or
//! stricter); a refusal names the key (or the option) and the way out.
//! Used once, at start, on the main thread.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hbcore::config::check_name;
use serde::{Deserialize, Serialize};

/// `io_timeout_ms` when not given.
pub const DEFAULT_IO_TIMEOUT_MS: u64 = 5000;
/// The accepted range of `io_timeout_ms`.
pub const IO_TIMEOUT_MS: std::ops::RangeInclusive<u64> = 100..=600_000;
/// At most this many storage addresses.
pub const MAX_STORAGE: usize = 8;

/// What `hbfs` needs to mount a site's volumes from its mirrord.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// mirrord's host-link addresses (`[hosts] listen` at the storage), in
    /// the order tried: `["10.0.0.1:7790", "10.1.0.1:7790"]`.
    pub storage: Vec<String>,
    /// This host's key, the same file as mirrord's `[[hosts.allow]] key_file` for it.
    pub key_file: PathBuf,
    /// This host's id (mirrord's `[[hosts.allow]] host`).
    pub host: String,
    /// The site the storage must be; any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// How long I/O waits for the storage (reconnecting) before it fails with EIO.
    #[serde(default = "default_io_timeout_ms")]
    pub io_timeout_ms: u64,
    /// How hbfs talks to the kernel.
    #[serde(default)]
    pub transport: FuseTransport,
    /// Where the volumes are shown, one file each.
    pub mountpoint: PathBuf,
}

fn default_io_timeout_ms() -> u64 {
    DEFAULT_IO_TIMEOUT_MS
}

/// hbfs's FUSE transport, as the config and the command line spell it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FuseTransport {
    /// io_uring when the kernel offers it, else classic.
    #[default]
    Auto,
    /// FUSE over io_uring (Linux 6.14+), or hbfs does not start.
    Uring,
    /// read(2)/write(2) on /dev/fuse.
    Classic,
}

impl From<FuseTransport> for crate::Transport {
    fn from(t: FuseTransport) -> crate::Transport {
        match t {
            FuseTransport::Auto => crate::Transport::Auto,
            FuseTransport::Uring => crate::Transport::Uring,
            FuseTransport::Classic => crate::Transport::Classic,
        }
    }
}

/// A configuration hbfs cannot use.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file: unreadable, not TOML, an unknown key, or a value refused
    /// (said with the file's path and the key).
    #[error(transparent)]
    File(#[from] hbcore::config::ConfigError),
    /// A command-line value refused.
    #[error("{option}: {why}")]
    Option {
        /// The option, as typed (`--storage`).
        option: &'static str,
        /// What is wrong and what to do.
        why: String,
    },
}

/// One setting, by its name in the file and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
    Storage,
    KeyFile,
    Host,
    Site,
    IoTimeout,
    Mountpoint,
}

impl Setting {
    fn toml(self) -> &'static str {
        match self {
            Setting::Storage => "storage",
            Setting::KeyFile => "key_file",
            Setting::Host => "host",
            Setting::Site => "site",
            Setting::IoTimeout => "io_timeout_ms",
            Setting::Mountpoint => "mountpoint",
        }
    }

    fn option(self) -> &'static str {
        match self {
            Setting::Storage => "--storage",
            Setting::KeyFile => "--key",
            Setting::Host => "--host",
            Setting::Site => "--site",
            Setting::IoTimeout => "--io-timeout-ms",
            Setting::Mountpoint => "MOUNTPOINT",
        }
    }
}

/// What is wrong with one setting.
struct Problem {
    setting: Setting,
    why: String,
}

fn problem(setting: Setting, why: String) -> Problem {
    Problem { setting, why }
}

impl hbcore::config::Checked for Config {
    fn check(self, path: &Path) -> Result<Config, hbcore::config::ConfigError> {
        // A relative mount point would depend on the daemon's working directory.
        let checked = if self.mountpoint.is_relative() {
            Err(problem(
                Setting::Mountpoint,
                format!(
                    "'{}' is relative: give the absolute path (mountpoint = \"/mnt/hbfs\")",
                    self.mountpoint.display()
                ),
            ))
        } else {
            self.problems()
        };
        checked.map(|()| self).map_err(|p| {
            hbcore::config::ConfigError::invalid(path, format!("{}: {}", p.setting.toml(), p.why))
        })
    }
}

impl Config {
    /// Reads and checks the config file at `path` (`hbfs --config FILE`).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Ok(hbcore::config::load(path)?)
    }

    /// The config given on the command line instead of a file, checked as a
    /// file's would be; relative paths are taken from the working directory
    /// (so that `--check` prints a config that works from anywhere).
    pub fn from_options(mut config: Config) -> Result<Config, ConfigError> {
        config.mountpoint = absolute(Setting::Mountpoint, &config.mountpoint)?;
        config.key_file = absolute(Setting::KeyFile, &config.key_file)?;
        config.problems().map_err(|p| ConfigError::Option {
            option: p.setting.option(),
            why: p.why,
        })?;
        Ok(config)
    }

    /// Everything a file and the command line both check, the key file included.
    fn problems(&self) -> Result<(), Problem> {
        if self.storage.is_empty() {
            return Err(problem(
                Setting::Storage,
                "no address: give the site's mirrord host-link address ([hosts] listen there), \
                 e.g. storage = [\"10.0.0.1:7790\"]"
                    .into(),
            ));
        }
        if self.storage.len() > MAX_STORAGE {
            return Err(problem(
                Setting::Storage,
                format!(
                    "{} addresses; at most {MAX_STORAGE} (one per network path to the storage)",
                    self.storage.len()
                ),
            ));
        }
        for (i, addr) in self.storage.iter().enumerate() {
            check_address(addr).map_err(|why| problem(Setting::Storage, why))?;
            if self.storage[..i].contains(addr) {
                return Err(problem(
                    Setting::Storage,
                    format!("'{addr}' is given twice: list each path to the storage once"),
                ));
            }
        }
        check_name("host", &self.host).map_err(|why| problem(Setting::Host, hint(why)))?;
        if let Some(site) = &self.site {
            check_name("site", site).map_err(|why| problem(Setting::Site, hint(why)))?;
        }
        if !IO_TIMEOUT_MS.contains(&self.io_timeout_ms) {
            return Err(problem(
                Setting::IoTimeout,
                format!(
                    "{} ms is out of range: give {} to {} (default {DEFAULT_IO_TIMEOUT_MS})",
                    self.io_timeout_ms,
                    IO_TIMEOUT_MS.start(),
                    IO_TIMEOUT_MS.end()
                ),
            ));
        }
        if self.mountpoint.as_os_str().is_empty() {
            return Err(problem(
                Setting::Mountpoint,
                "empty: give the directory to mount on (/mnt/hbfs)".into(),
            ));
        }
        self.key()
            .map(drop)
            .map_err(|why| problem(Setting::KeyFile, why))
    }

    /// This host's key, read from `key_file` (mode, length and all checked
    /// by hbcore, as mirrord reads its keys); the error says how to make one.
    pub fn read_key(&self) -> Result<Vec<u8>, ConfigError> {
        self.key().map_err(|why| {
            ConfigError::File(hbcore::config::ConfigError::invalid(
                &self.key_file,
                format!("{}: {why}", Setting::KeyFile.toml()),
            ))
        })
    }

    fn key(&self) -> Result<Vec<u8>, String> {
        let path = self.key_file.display();
        hbcore::config::read_private_key(&self.key_file).map_err(|e| match e {
            // The mode's refusal says what to run; a missing or short key how to make one.
            hbcore::config::ConfigError::Key { why, .. } if why.contains("chmod") => {
                format!("{path}: {why}")
            }
            hbcore::config::ConfigError::Key { why, .. } => format!(
                "{path}: {why}; create one with `head -c 32 /dev/urandom | base64 > {path}` \
                 and `chmod 600 {path}`, and give mirrord the same file as this host's key \
                 ([[hosts.allow]] host = \"{}\", key_file = ...)",
                self.host
            ),
            other => format!("{path}: {}", hbcore::report::chain(&other)),
        })
    }

    /// How long I/O waits for the storage.
    pub fn io_timeout(&self) -> Duration {
        Duration::from_millis(self.io_timeout_ms)
    }
}

fn absolute(setting: Setting, path: &Path) -> Result<PathBuf, ConfigError> {
    if path.as_os_str().is_empty() || path.is_absolute() {
        return Ok(path.to_path_buf());
    }
    std::path::absolute(path).map_err(|e| ConfigError::Option {
        option: setting.option(),
        why: format!("cannot make '{}' absolute: {e}", path.display()),
    })
}

/// `host:port` (or `[v6]:port`), a port from 1 to 65535.
fn check_address(addr: &str) -> Result<(), String> {
    let bad = |what: &str| {
        format!(
            "'{addr}' {what}: give HOST:PORT, the address mirrord's [hosts] listen has \
             (e.g. 10.0.0.1:7790)"
        )
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("has no port"))?;
    if host.is_empty() || host == "[]" {
        return Err(bad("has no host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(bad("has no valid port")),
    }
}

/// Where a host's and a site's names come from, after the name's error.
fn hint(why: String) -> String {
    format!("{why} (the name mirrord's [[hosts.allow]] or its `site` gives it)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn key_file(dir: &Path, mode: u32) -> PathBuf {
        let path = dir.join("p1.key");
        std::fs::write(&path, "0123456789abcdef0123456789abcdef\n").expect("write key");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    fn parse(text: &str) -> Result<Config, hbcore::config::ConfigError> {
        hbcore::config::parse(text, Path::new("hbfs-p1.toml"))
    }

    #[test]
    fn a_whole_file_parses_with_defaults_filled_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = key_file(dir.path(), 0o600);
        let text = format!(
            "storage = [\"10.0.0.1:7790\", \"[fd00::1]:7790\"]\nkey_file = \"{}\"\nhost = \"p1\"\nmountpoint = \"/mnt/hbfs\"\n",
            key.display()
        );
        let config = parse(&text).expect("parses");
        assert_eq!(config.io_timeout_ms, DEFAULT_IO_TIMEOUT_MS);
        assert_eq!(config.transport, FuseTransport::Auto);
        assert_eq!(config.site, None);
        assert_eq!(config.storage.len(), 2);
        assert!(config.read_key().is_ok());
    }

    #[test]
    fn each_bad_value_is_refused_naming_its_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = key_file(dir.path(), 0o600);
        let base = format!(
            "key_file = \"{}\"\nhost = \"p1\"\nmountpoint = \"/mnt/hbfs\"\n",
            key.display()
        );
        for (extra, key) in [
            ("storage = []", "storage"),
            ("storage = [\"10.0.0.1\"]", "storage"),
            ("storage = [\"10.0.0.1:0\"]", "storage"),
            ("storage = [\"a:1\", \"a:1\"]", "storage"),
            ("storage = [\"a:1\"]\nio_timeout_ms = 10", "io_timeout_ms"),
            ("storage = [\"a:1\"]\nsite = \"a b\"", "site"),
            ("storage = [\"a:1\"]\ntransport = \"fast\"", "transport"),
            ("storage = [\"a:1\"]\nmount = \"/x\"", "mount"),
        ] {
            let e = parse(&format!("{base}{extra}\n")).expect_err(extra);
            let text = hbcore::report::chain(&e);
            assert!(text.contains(key), "{extra}: {text}");
        }
        let relative = format!(
            "storage = [\"a:1\"]\nkey_file = \"{}\"\nhost = \"p1\"\nmountpoint = \"mnt\"\n",
            key.display()
        );
        let e = parse(&relative).expect_err("relative mountpoint");
        assert!(e.to_string().contains("mountpoint"), "{e}");
    }

    #[test]
    fn options_are_checked_as_the_file_and_named_as_typed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Config {
            storage: vec!["127.0.0.1:7790".into()],
            key_file: key_file(dir.path(), 0o600),
            host: "p1".into(),
            site: None,
            io_timeout_ms: DEFAULT_IO_TIMEOUT_MS,
            transport: FuseTransport::Classic,
            mountpoint: "mnt".into(),
        };
        let ok = Config::from_options(config.clone()).expect("valid");
        assert!(ok.mountpoint.is_absolute() && ok.key_file.is_absolute());
        let e = Config::from_options(Config {
            host: String::new(),
            ..config.clone()
        })
        .expect_err("empty host");
        assert!(e.to_string().starts_with("--host:"), "{e}");
        let open_key = dir.path().join("open.key");
        std::fs::copy(&config.key_file, &open_key).expect("copy key");
        std::fs::set_permissions(&open_key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = Config::from_options(Config {
            key_file: open_key,
            ..config.clone()
        })
        .expect_err("a key others may read");
        let text = e.to_string();
        assert!(
            text.starts_with("--key:") && text.contains("chmod 600"),
            "{text}"
        );
        let e = Config::from_options(Config {
            key_file: dir.path().join("missing.key"),
            ..config
        })
        .expect_err("no key");
        let text = e.to_string();
        assert!(text.starts_with("--key:"), "{text}");
        assert!(text.contains("head -c 32 /dev/urandom"), "{text}");
    }
}
