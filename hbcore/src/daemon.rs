//! The common body of the daemons' thin binaries (`mirrord`, `hbd`): log with
//! `tracing` (RUST_LOG, default info) to the journal when systemd connected
//! stderr to it (`JOURNAL_STREAM`), as text on stderr otherwise; load the
//! config, run on a two-worker tokio runtime until SIGINT or SIGTERM, and
//! report a failure on stderr with exit status 1. [`check`] is their
//! `--check`: the effective configuration, or the bad key.
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
    init_logging();
    let result = load().map_err(Into::into).and_then(|config| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the tokio runtime")?;
        runtime.block_on(async {
            let shutdown = on_signals()?;
            let result = run(config, shutdown).await;
            crate::notify::stopping();
            result
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

/// Logs to the journal when stderr is systemd's journal stream (its device
/// and inode are in `JOURNAL_STREAM`), as text on stderr otherwise.
fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter =
        || tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if stderr_is_journal() {
        if let Ok(journal) = tracing_journald::layer() {
            tracing_subscriber::registry()
                .with(filter())
                .with(journal)
                .init();
            return;
        }
    }
    use std::io::IsTerminal;
    let colour = colour(
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
}

/// Whether the text log is coloured: only on a terminal, and not when
/// `NO_COLOR` is set to anything but the empty string (no-color.org).
fn colour(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Whether stderr is the journal stream systemd named in `JOURNAL_STREAM` (`DEV:INODE`).
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(stderr) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    stream.to_string_lossy() == format!("{}:{}", stderr.dev(), stderr.ino())
}

/// The switches every daemon's command line has, beside its `--config`.
#[derive(Debug, clap::Args)]
pub struct Switches {
    /// Print the effective configuration (defaults filled in) and exit 0, or exit 1 naming the bad key.
    #[arg(long)]
    pub check: bool,
    /// Write the man page and shell completions into DIR and exit (for packaging).
    #[arg(long, hide = true, value_name = "DIR")]
    pub generate_docs: Option<std::path::PathBuf>,
}

/// A daemon binary's whole `main`: write its docs (`--generate-docs`), print
/// its effective config (`--check`), or [`main`] it with `config`.
pub fn run_binary<C, E, Fut>(
    program: &str,
    command: clap::Command,
    switches: &Switches,
    config: Option<&std::path::Path>,
    load: impl Fn(&std::path::Path) -> Result<C, E>,
    run: impl FnOnce(C, Shutdown) -> Fut,
) -> ExitCode
where
    C: serde::Serialize,
    E: std::error::Error + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>>,
{
    if let Some(dir) = &switches.generate_docs {
        return match crate::docs::generate(command, dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("{program}: {}", crate::report::chain(&e));
                ExitCode::FAILURE
            }
        };
    }
    // clap requires --config unless --generate-docs is given.
    let Some(config) = config else {
        return ExitCode::FAILURE;
    };
    if switches.check {
        return check(program, || load(config));
    }
    main(program, || load(config), run)
}

/// A daemon's `--check`: loads the config and prints it with every default
/// filled in (TOML, exit status 0), or prints what is wrong, naming the bad
/// key, with exit status 1.
pub fn check<C, E>(program: &str, load: impl FnOnce() -> Result<C, E>) -> ExitCode
where
    C: serde::Serialize,
    E: std::error::Error + 'static,
{
    match load() {
        Ok(config) => match toml::to_string_pretty(&config) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{program}: cannot print the configuration: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            eprintln!("{program}: {}", crate::report::chain(&e));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsStr;
        assert!(colour(true, None));
        assert!(colour(true, Some(OsStr::new(""))));
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(!colour(false, None), "a file or a pipe");
    }
}
