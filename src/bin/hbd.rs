//! hbd: the heartbeat check of one host.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The heartbeat check of one host: sends heartbeats over every network (UDP)
/// and through heartbeat mirrors (plain files, usually on hbfs), checks the
/// peer's, keeps the heartbeat status table, and at the standby fails over
/// only when every enabled channel says the production group is dead; when
/// some channels fail, a fault analysis with the peer says where; a
/// production host that learns the standby took over steps down.
/// Runs in the foreground and logs to stderr (RUST_LOG=debug for more).
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// TOML configuration (see the README: host, group, peers, data_dir, psk_file,
    /// interval_ms, timeout_ms, freshness_ms, table_volume, [network] or
    /// [[networks]] (name, listen, peers, probe), [counter], [analysis],
    /// [[mirrors]], [failover] (hook, take_over, arm, step_down, alert), [[checks]]).
    #[arg(long, short)]
    config: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    hbcore::daemon::main(
        "hbd",
        || hbmirror::hb::config::Config::load(&cli.config),
        hbmirror::hb::daemon::run,
    )
}
