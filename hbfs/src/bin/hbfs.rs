//! hbfs: a site's volumes mounted on a host, from the site's mirrord.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use hbfs::config::{Config, ConfigError, FuseTransport, DEFAULT_IO_TIMEOUT_MS};

/// Mounts a site's volumes on this host from the site's mirrord, over the network.
///
/// One plain file per volume this host is allowed (mirrord's [[hosts.allow]]
/// volumes), as on the storage machine: the same names and sizes; an SVOL is
/// read-only (EROFS); a write returns once the storage answered it (the SVOL
/// holds it too, for a synchronous pair); direct I/O, fsync honoured.
///
/// When the storage does not answer, I/O waits up to --io-timeout-ms while
/// hbfs reconnects (over the next address, if given), then fails with EIO; a
/// write in flight is applied once or reported failed, never applied twice.
/// One hbfs per host id at a time: mirrord refuses a second mount (EBUSY).
///
/// Runs in the foreground and logs to stderr (RUST_LOG=debug for more), or to
/// the journal under systemd; tells systemd when mounted (Type=notify);
/// unmounts on SIGINT/SIGTERM (lazily if files are open); a stale mount left
/// by a crash is cleared at start.
#[derive(Parser)]
#[command(
    version,
    name = "hbfs",
    after_help = "Examples:\n  hbfs --storage 10.0.0.1:7790,10.1.0.1:7790 --key /etc/hbmirror/host.key --host p1 /mnt/hbfs\n  \
                  hbfs --config /etc/hbmirror/hbfs-p1.toml\n  hbfs --config /etc/hbmirror/hbfs-p1.toml --check\n\n\
                  The storage side: mirrord.toml(5), [hosts] and [[hosts.allow]] (the same key file, \
                  the volumes this host may see). See hbfs.toml(5) for the configuration file."
)]
struct Cli {
    // Help strings, not doc comments: their [sections] are TOML, not rustdoc links.
    #[arg(
        long,
        short,
        value_name = "FILE",
        conflicts_with_all = ["storage", "key", "host", "site", "io_timeout_ms", "transport", "mountpoint"],
        help = "TOML configuration instead of the options below (see hbfs.toml(5): storage, key_file, \
                host, site, io_timeout_ms, transport, mountpoint); the systemd unit hbfs@NAME reads \
                /etc/hbmirror/hbfs-NAME.toml"
    )]
    config: Option<PathBuf>,
    /// mirrord's host-link address (its [hosts] listen), HOST:PORT; a second one, comma-separated, for a second network path, tried when the first does not answer.
    #[arg(
        long,
        value_name = "ADDR[,ADDR2]",
        value_delimiter = ',',
        required_unless_present_any = ["config", "generate_docs"]
    )]
    storage: Vec<String>,
    /// This host's key file: the same file as mirrord's [[hosts.allow]] key_file for this host; at least 16 bytes, mode 0600 or stricter (`head -c 32 /dev/urandom | base64 > FILE; chmod 600 FILE`).
    #[arg(long, value_name = "FILE", required_unless_present_any = ["config", "generate_docs"])]
    key: Option<PathBuf>,
    /// This host's id, as mirrord's [[hosts.allow]] host names it.
    #[arg(long, value_name = "ID", required_unless_present_any = ["config", "generate_docs"])]
    host: Option<String>,
    /// The site the storage must be (its mirrord's site); any site holding this host's key when absent.
    #[arg(long, value_name = "NAME")]
    site: Option<String>,
    /// How long a read, write or fsync waits for the storage (reconnecting meanwhile) before it fails with EIO, in milliseconds (100 to 600000).
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_IO_TIMEOUT_MS)]
    io_timeout_ms: u64,
    /// How hbfs talks to the kernel (the environment's HBMIRROR_FUSE_TRANSPORT overrides it).
    #[arg(long, value_enum, value_name = "TRANSPORT", default_value_t = FuseTransport::Auto)]
    transport: FuseTransport,
    /// Where to show the volumes (created if missing), one file each.
    #[arg(value_name = "MOUNTPOINT", required_unless_present_any = ["config", "generate_docs"])]
    mountpoint: Option<PathBuf>,
    #[command(flatten)]
    switches: hbcore::daemon::Switches,
}

impl Cli {
    /// The configuration: the file's, or the options', checked alike.
    fn load(&self) -> Result<Config, ConfigError> {
        if let Some(path) = &self.config {
            return Config::load(path);
        }
        // clap requires these without --config.
        let missing = |option: &'static str| ConfigError::Option {
            option,
            why: "missing: give it, or --config FILE".into(),
        };
        Config::from_options(Config {
            storage: self.storage.clone(),
            key_file: self.key.clone().ok_or_else(|| missing("--key"))?,
            host: self.host.clone().ok_or_else(|| missing("--host"))?,
            site: self.site.clone(),
            io_timeout_ms: self.io_timeout_ms,
            transport: self.transport,
            mountpoint: self
                .mountpoint
                .clone()
                .ok_or_else(|| missing("MOUNTPOINT"))?,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(dir) = &cli.switches.generate_docs {
        return match hbcore::docs::generate(Cli::command(), dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hbfs: {}", hbcore::report::chain(&e));
                ExitCode::FAILURE
            }
        };
    }
    if cli.switches.check {
        return hbcore::daemon::check("hbfs", || cli.load());
    }
    hbcore::daemon::main(
        "hbfs",
        || cli.load(),
        |config, shutdown| async move { Ok(hbfs::remote::run(config, shutdown).await?) },
    )
}
