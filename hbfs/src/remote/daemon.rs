//! The `hbfs` binary's life: claim this host's mount at the site's mirrord,
//! mount hbfs over [`RemoteVolumes`], tell systemd READY, and at the
//! shutdown (SIGINT, SIGTERM, or a test's future) unmount. Runs on the
//! binary's tokio runtime; mount and unmount on its blocking pool (they
//! wait for the kernel, which may ask hbfs's own threads meanwhile).

use std::path::PathBuf;
use std::sync::Arc;

use hbcore::daemon::Shutdown;
use hbcore::host::client::{HostClient, StorageSpec};
use tokio::runtime::Handle;

use super::{ClaimError, RemoteVolumes};
use crate::config::{Config, ConfigError};

/// The environment may override `transport` (the test suite runs hbfs on
/// both transports this way, as it does mirrord's mount).
pub const TRANSPORT_ENV: &str = "HBMIRROR_FUSE_TRANSPORT";

/// Why `hbfs` stopped with a failure.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration (the key file, read again at start).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// [`TRANSPORT_ENV`] names no transport.
    #[error("{TRANSPORT_ENV}: {0}")]
    TransportEnv(String),
    /// The storage did not grant the mount (boxed: a handshake's refusal is large).
    #[error(transparent)]
    Claim(Box<ClaimError>),
    /// The kernel mount failed.
    #[error("cannot mount hbfs at {path} (mountpoint, transport)")]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::MountError,
    },
    /// The unmount failed.
    #[error("cannot unmount hbfs at {path}")]
    Unmount {
        /// The mount point.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A blocking task (mount, unmount) panicked or was cancelled.
    #[error("the {what} task failed")]
    Task {
        /// Mount or unmount.
        what: &'static str,
        /// Why.
        #[source]
        source: tokio::task::JoinError,
    },
}

fn transport(config: &Config) -> Result<crate::Transport, RunError> {
    match std::env::var(TRANSPORT_ENV) {
        Ok(v) if !v.is_empty() => {
            let t = v.parse().map_err(RunError::TransportEnv)?;
            tracing::info!("{TRANSPORT_ENV}={v} overrides transport");
            Ok(t)
        }
        _ => Ok(config.transport.into()),
    }
}

/// Runs hbfs with `config` until `shutdown` resolves (or the start fails).
pub async fn run(config: Config, mut shutdown: Shutdown) -> Result<(), RunError> {
    let key = config.read_key()?;
    let transport = transport(&config)?;
    let client = HostClient::new(StorageSpec {
        addrs: config.storage.clone(),
        key,
        host: config.host.clone(),
        site: config.site.clone(),
        io_timeout: config.io_timeout(),
    });
    let storage = client.address();
    tracing::info!(host = %config.host, %storage, "claiming this host's mount at the storage");
    hbcore::notify::status(&format!(
        "claiming host {}'s mount at {storage}",
        config.host
    ));
    let claim = RemoteVolumes::mount(client, &config.host, Handle::current());
    let volumes = tokio::select! {
        claimed = claim => claimed.map_err(|e| RunError::Claim(Box::new(e)))?,
        () = &mut shutdown => return Ok(()),
    };
    let shown = volumes.cached().len();
    let volumes = Arc::new(volumes);
    let path = config.mountpoint.clone();
    let mount = tokio::task::spawn_blocking(move || crate::mount(volumes, &path, transport))
        .await
        .map_err(|source| RunError::Task {
            what: "mount",
            source,
        })?
        .map_err(|source| RunError::Mount {
            path: config.mountpoint.clone(),
            source,
        })?;
    tracing::info!(
        host = %config.host,
        %storage,
        mountpoint = %config.mountpoint.display(),
        volumes = shown,
        "hbfs ready"
    );
    hbcore::notify::ready(&format!(
        "{shown} volumes of {storage} at {} (host {}, {})",
        config.mountpoint.display(),
        config.host,
        mount.serving()
    ));

    shutdown.await;
    // Dropping the volumes (with the mount's threads) closes the connection,
    // which releases the claim at mirrord.
    tokio::task::spawn_blocking(move || mount.unmount())
        .await
        .map_err(|source| RunError::Task {
            what: "unmount",
            source,
        })?
        .map_err(|source| RunError::Unmount {
            path: config.mountpoint.clone(),
            source,
        })?;
    tracing::info!(mountpoint = %config.mountpoint.display(), "hbfs unmounted");
    Ok(())
}
