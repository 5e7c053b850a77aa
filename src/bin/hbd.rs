//! hbd: the heartbeat check of one host.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

/// The heartbeat check of one host: sends heartbeats over every network (UDP)
/// and through heartbeat mirrors (plain files, usually on hbfs), checks the
/// peer's, keeps the heartbeat status table, and at the standby fails over
/// only when every enabled channel says the production group is dead; when
/// some channels fail, a fault analysis with the peer says where; a
/// production host that learns the standby took over steps down.
/// Runs in the foreground and logs to stderr (RUST_LOG=debug for more), or to
/// the journal under systemd; tells systemd when it is ready (Type=notify) and
/// feeds its watchdog from the heartbeat tick; with watchdog_device, pets that
/// device while this host is healthy and connected.
#[derive(Parser)]
#[command(
    version,
    name = "hbd",
    after_help = "See hbd.toml(5) for the configuration."
)]
struct Cli {
    // The help is a string, not a doc comment: its [sections] are TOML, not rustdoc links.
    #[arg(
        long,
        short,
        required_unless_present = "generate_docs",
        help = "TOML configuration (see hbd.toml(5): host, group, peers, data_dir, psk_file, \
                interval_ms, timeout_ms, clock_warn_ms, table_volume, metrics_listen, min_hosts, \
                watchdog_device, watchdog_timeout_ms, fence_timeout_ms, [network] or \
                [[networks]] (name, listen, peers, probe), [counter], [analysis], \
                [[mirrors]], [failover] (hook, take_over, arm, step_down, alert, mirrord_socket, mirrord, mirrord_key, mirrord_host), [[checks]], \
                [cluster] (port, control_socket, mib, site, group_members, master_timeout_ms))."
    )]
    config: Option<PathBuf>,
    #[command(flatten)]
    switches: hbcore::daemon::Switches,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    hbcore::daemon::run_binary(
        "hbd",
        Cli::command(),
        &cli.switches,
        cli.config.as_deref(),
        hbmirror::hb::config::Config::load,
        |config, shutdown| {
            // The cluster member starts beside hbd when the config has [cluster].
            let member = |lent| async move { Ok(hbmirror::cluster::start(lent).await?) };
            hbmirror::hb::daemon::run(config, shutdown, member)
        },
    )
}
