//! The host link's options of hbctl (`--storage`, `--key`, `--host`,
//! `--io-timeout-ms`, and their HBCTL_* variables), checked against the
//! command they come with: a [`Mirrord`] over the host link, or the reason
//! the command line is refused.

use std::path::Path;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::ArgMatches;
use hbcore::host::client::{HostClient, StorageSpec};
use hbcore::host::endpoint::parse_addrs;

use crate::cli::{Cli, Command};
use crate::mirrord::Mirrord;

/// The option `name` (`--storage`) as given: on the command line, or by
/// its environment variable `env`; `None` when not given.
fn given(matches: &ArgMatches, id: &str, name: &str, env: &str) -> Option<String> {
    match matches.value_source(id) {
        Some(ValueSource::CommandLine) => Some(name.to_string()),
        Some(ValueSource::EnvVariable) => Some(env.to_string()),
        _ => None,
    }
}

/// Whether the option `id` was given on the command line (not by its
/// environment variable, which a command that does not use it ignores).
fn on_command_line(matches: &ArgMatches, id: &str) -> bool {
    matches.value_source(id) == Some(ValueSource::CommandLine)
}

/// The host link `cli` asks for, if any; or what is wrong with the command
/// line (its options, or the key file) for the error message.
pub fn from_cli(cli: &Cli, matches: &ArgMatches) -> Result<Option<Mirrord>, String> {
    let for_mirrord = matches!(
        cli.command,
        Some(Command::Volume(_) | Command::Pair(_) | Command::Link(_) | Command::Monitor(_))
    );
    let Some(storage) = cli.storage.as_deref().filter(|_| for_mirrord) else {
        let options = [
            ("storage", "--storage"),
            ("key", "--key"),
            ("host", "--host"),
            ("io_timeout_ms", "--io-timeout-ms"),
        ];
        for (id, name) in options {
            if on_command_line(matches, id) {
                return Err(if for_mirrord {
                    format!("{name} is for the host link: give --storage ADDR[,ADDR2] too (mirrord's [hosts] listen), or leave {name} out to use mirrord's control socket")
                } else {
                    format!("{name} is for mirrord over the host link (volume, pair, link, monitor); this command talks to hbd on this machine: leave {name} out")
                });
            }
        }
        return Ok(None);
    };
    let storage_said = given(matches, "storage", "--storage", "HBCTL_STORAGE").unwrap_or_default();
    let monitor_socket = match &cli.command {
        Some(Command::Monitor(args)) => args.mirrord.is_some(),
        _ => false,
    };
    if let Some(socket_said) = given(matches, "socket", "--socket", "HBCTL_SOCKET")
        .or_else(|| monitor_socket.then(|| "monitor --mirrord".to_string()))
    {
        return Err(format!(
            "{storage_said} and {socket_said} both say where mirrord is: give {storage_said} (mirrord on another machine, over the host link) or {socket_said} (its control socket on this machine), not both"
        ));
    }
    let list = storage.strip_prefix("tcp://").unwrap_or(storage);
    let addrs = parse_addrs(list).map_err(|why| {
        format!("{storage_said} '{storage}': {why}; give ADDR:PORT[,ADDR2:PORT], mirrord's [hosts] listen")
    })?;
    let Some(key_file) = &cli.key else {
        return Err(format!(
            "{storage_said} needs --key FILE (or HBCTL_KEY): this host's key, the file mirrord's [[hosts.allow]] entry for it names"
        ));
    };
    let key = hbcore::config::read_private_key(key_file)
        .map_err(|e| format!("--key: {}", hbcore::report::chain(&e)))?;
    let host = match &cli.host {
        Some(h) if h.is_empty() => {
            return Err(
                "--host is empty: give this host's id (mirrord's [[hosts.allow]] host)".into(),
            )
        }
        Some(h) => h.clone(),
        None => hostname()?,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start hbctl's runtime for the host link: {e}"))?;
    let client = HostClient::new(StorageSpec {
        addrs,
        key,
        host,
        site: None,
        io_timeout: Duration::from_millis(cli.io_timeout_ms.max(1)),
    });
    Ok(Some(Mirrord::Host { client, runtime }))
}

/// This machine's host name, the default `--host`.
fn hostname() -> Result<String, String> {
    let path = Path::new("/proc/sys/kernel/hostname");
    match std::fs::read_to_string(path) {
        Ok(name) if !name.trim().is_empty() => Ok(name.trim().to_string()),
        Ok(_) => Err("this machine has no host name: give --host ID (mirrord's [[hosts.allow]] host)".into()),
        Err(e) => Err(format!(
            "cannot read this machine's host name from {}: {e}; give --host ID (mirrord's [[hosts.allow]] host)",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches};

    /// `from_cli` on `args` (after `hbctl`), the environment's HBCTL_*
    /// variables aside: the error text, or the link's addresses and host.
    fn parsed(args: &[&str]) -> Result<Option<(Vec<String>, String)>, String> {
        let argv = std::iter::once("hbctl").chain(args.iter().copied());
        let mut command = Cli::command();
        for id in ["socket", "storage", "key", "host", "io_timeout_ms"] {
            command = command.mut_arg(id, |a| a.env(None));
        }
        let matches = command
            .try_get_matches_from(argv)
            .map_err(|e| e.to_string())?;
        let cli = Cli::from_arg_matches(&matches).map_err(|e| e.to_string())?;
        Ok(from_cli(&cli, &matches)?.map(|m| match m {
            Mirrord::Host { client, .. } => {
                (client.spec().addrs.clone(), client.spec().host.clone())
            }
            Mirrord::Socket(p) => (vec![], p.display().to_string()),
        }))
    }

    fn key(dir: &Path, name: &str, mode: u32) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, "0123456789abcdef0123456789abcdef\n").expect("write the key");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path.display().to_string()
    }

    #[test]
    fn the_host_link_is_taken_from_storage_key_and_host() {
        let dir = tempfile::tempdir().expect("tempdir");
        let k = key(dir.path(), "p1.key", 0o600);
        let link = parsed(&[
            "--storage",
            "tcp://10.0.0.5:7793,10.1.0.5:7793",
            "--key",
            &k,
            "--host",
            "p1",
            "volume",
            "list",
        ]);
        assert_eq!(
            link,
            Ok(Some((
                vec!["10.0.0.5:7793".to_string(), "10.1.0.5:7793".to_string()],
                "p1".to_string()
            )))
        );
        let link = parsed(&["pair", "status", "--storage", "[::1]:7793", "--key", &k]);
        let name = hostname().expect("this machine's host name");
        assert_eq!(
            link,
            Ok(Some((vec!["[::1]:7793".to_string()], name))),
            "options after the command; the host is this machine's name"
        );
        assert_eq!(parsed(&["volume", "list"]), Ok(None), "the socket");
    }

    #[test]
    fn options_that_cannot_work_together_are_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let k = key(dir.path(), "p1.key", 0o600);
        let open = key(dir.path(), "open.key", 0o644);
        let refused = |args: &[&str]| parsed(args).expect_err(&args.join(" "));
        let e = refused(&["--storage", "10.0.0.5:7793", "link", "status"]);
        assert!(
            e.contains("--storage needs --key FILE (or HBCTL_KEY)"),
            "{e}"
        );
        let e = refused(&[
            "--storage",
            "10.0.0.5:7793",
            "--key",
            &k,
            "--socket",
            "/s",
            "volume",
            "list",
        ]);
        assert!(
            e.contains("--storage and --socket both say where mirrord is"),
            "{e}"
        );
        let e = refused(&[
            "--storage",
            "10.0.0.5:7793",
            "--key",
            &k,
            "monitor",
            "--mirrord",
            "/s",
        ]);
        assert!(
            e.contains("--storage and monitor --mirrord both say where mirrord is"),
            "{e}"
        );
        let e = refused(&["--storage", "10.0.0.5", "--key", &k, "volume", "list"]);
        assert!(e.contains("'10.0.0.5' has no HOST:PORT form"), "{e}");
        let e = refused(&[
            "--storage",
            "10.0.0.5:7793",
            "--key",
            &open,
            "volume",
            "list",
        ]);
        assert!(
            e.starts_with("--key: key ") && e.contains("chmod 600"),
            "{e}"
        );
        let e = refused(&[
            "--storage",
            "10.0.0.5:7793",
            "--key",
            &k,
            "--host",
            "",
            "volume",
            "list",
        ]);
        assert!(e.contains("--host is empty"), "{e}");
        let e = refused(&["--key", &k, "volume", "list"]);
        assert!(
            e.contains("--key is for the host link: give --storage ADDR[,ADDR2] too"),
            "{e}"
        );
        let e = refused(&["--storage", "10.0.0.5:7793", "--key", &k, "hb", "status"]);
        assert!(
            e.contains("--storage is for mirrord over the host link")
                && e.contains("talks to hbd on this machine"),
            "{e}"
        );
        let e = refused(&["--host", "p1", "cluster", "show"]);
        assert!(
            e.contains("--host is for mirrord over the host link"),
            "{e}"
        );
    }
}
