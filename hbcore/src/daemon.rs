//! The common body of the daemons' thin binaries (`mirrord`, `hbd`): log to
//! stderr with `tracing` (RUST_LOG, default info), load the config, run on a
//! two-worker tokio runtime until SIGINT or SIGTERM, and report a failure on
//! stderr with exit status 1.
//!
//! A daemon's `run` takes its shutdown as a future ([`Shutdown`]), so a test
//! can run a whole daemon in-process and stop it by completing the future.

use std::future::Future;
use std::pin::Pin;
use std::process::ExitCode;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};

/// Resolves when the daemon should stop cleanly.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs a daemon: `load` its config, then `run` it until it returns.
pub fn main<C, E, Fut>(
    program: &str,
    load: impl FnOnce() -> Result<C, E>,
    run: impl FnOnce(C, Shutdown) -> Fut,
) -> ExitCode
where
    E: Into<anyhow::Error>,
    Fut: Future<Output = anyhow::Result<()>>,
{
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = load().map_err(Into::into).and_then(|config| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the tokio runtime")?;
        runtime.block_on(async {
            let shutdown = on_signals()?;
            run(config, shutdown).await
        })
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = crate::report::chain(e.as_ref());
            tracing::error!("{text}");
            eprintln!("{program}: {text}");
            ExitCode::FAILURE
        }
    }
}

/// A [`Shutdown`] that resolves at the first SIGINT or SIGTERM (said in the log).
pub fn on_signals() -> anyhow::Result<Shutdown> {
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    Ok(Box::pin(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    }))
}
