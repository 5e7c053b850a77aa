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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = mirrord::config::Config::load(&cli.config)
        .map_err(anyhow::Error::from)
        .and_then(|config| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(mirrord::daemon::run(config))
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("mirrord: {e:#}");
            ExitCode::FAILURE
        }
    }
}
