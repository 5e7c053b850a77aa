//! mirrord: the storage daemon of one site.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The storage daemon of one site: holds volumes (files or block devices),
/// mirrors PVOLs to SVOLs at peer sites over the remote link, mounts hbfs,
/// and answers hbctl on its control socket. Runs in the foreground and logs
/// to stderr (RUST_LOG=debug for more); stops cleanly on SIGINT/SIGTERM.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// TOML configuration (keys: site, data_dir, control_socket, mount, [link] listen/psk_file/timeout_ms, [[peers]] site/address).
    #[arg(long, short)]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    hbcore::daemon::main(
        "mirrord",
        || mirrord::config::Config::load(&cli.config),
        mirrord::daemon::run,
    )
}
