//! mirrord: the storage daemon of one site.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

/// The storage daemon of one site: holds volumes (files or block devices),
/// mirrors PVOLs to SVOLs at peer sites over the remote link, mounts hbfs,
/// and answers hbctl on its control socket. Runs in the foreground and logs
/// to stderr (RUST_LOG=debug for more), or to the journal under systemd;
/// tells systemd when it is ready (Type=notify); stops cleanly on SIGINT/SIGTERM.
#[derive(Parser)]
#[command(
    version,
    name = "mirrord",
    after_help = "See mirrord.toml(5) for the configuration."
)]
struct Cli {
    /// TOML configuration (keys: site, data_dir, control_socket, mount, metrics_listen, [link] listen/psk_file/timeout_ms, [[peers]] site/address, [hosts] listen and [[hosts.allow]] host/key_file/volumes/control; see mirrord.toml(5)).
    #[arg(long, short, required_unless_present = "generate_docs")]
    config: Option<PathBuf>,
    #[command(flatten)]
    switches: hbcore::daemon::Switches,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    hbcore::daemon::run_binary(
        "mirrord",
        Cli::command(),
        &cli.switches,
        cli.config.as_deref(),
        mirrord::config::Config::load,
        mirrord::daemon::run,
    )
}
