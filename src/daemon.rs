//! The common body of the daemons' thin binaries (`mirrord`, `hbd`): log to
//! stderr with `tracing` (RUST_LOG, default info), load the config, run on a
//! two-worker tokio runtime, and report a failure on stderr with exit status 1.

use std::future::Future;
use std::process::ExitCode;

/// Runs a daemon: `load` its config, then `run` it until it returns.
pub fn main<C, E, Fut>(
    program: &str,
    load: impl FnOnce() -> Result<C, E>,
    run: impl FnOnce(C) -> Fut,
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
            .build()?;
        runtime.block_on(run(config))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = explain(&e);
            tracing::error!("{text}");
            eprintln!("{program}: {text}");
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each said once (our error types already quote
/// their cause in their own message).
fn explain(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_said_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let quoted = crate::config::ConfigError::Read {
            path: "/x".into(),
            source: io,
        };
        assert_eq!(
            explain(&anyhow::Error::from(quoted)),
            "cannot read config /x: no such file"
        );
        let wrapped =
            anyhow::Error::from(std::io::Error::other("refused")).context("cannot listen on :7788");
        assert_eq!(explain(&wrapped), "cannot listen on :7788: refused");
    }
}
