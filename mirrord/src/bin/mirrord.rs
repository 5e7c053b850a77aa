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
    /// TOML configuration (keys: site, data_dir, control_socket, mount, metrics_listen, [link] listen/psk_file/timeout_ms, [[peers]] site/address).
    #[arg(long, short, required_unless_present = "generate_docs")]
    config: Option<PathBuf>,
    /// Print the effective configuration (defaults filled in) and exit 0, or exit 1 naming the bad key.
    #[arg(long)]
    check: bool,
    /// Write the man page and shell completions into DIR and exit (for packaging).
    #[arg(long, hide = true, value_name = "DIR")]
    generate_docs: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(dir) = &cli.generate_docs {
        return match hbcore::docs::generate(Cli::command(), dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mirrord: {}", hbcore::report::chain(&e));
                ExitCode::FAILURE
            }
        };
    }
    let Some(config) = cli.config else {
        return ExitCode::FAILURE;
    };
    let load = || mirrord::config::Config::load(&config);
    if cli.check {
        return hbcore::daemon::check("mirrord", load);
    }
    hbcore::daemon::main("mirrord", load, mirrord::daemon::run)
}
