//! What a member does with its hands: run an application's executables,
//! take over its data pairs through this site's mirrord (SSWS), assume or
//! release its floating IPs.

use std::path::Path;
use std::time::Duration;

use hbcore::control::{PairTakeover, Request};
use hbcore::report;
use hbcore::vocab::{PairState, Role};

use super::floating_ip::{self, FloatingIpError};
use super::mib::Application;
use crate::hb::config::MirrordAt;
use crate::hb::daemon::storage_client;
use crate::hb::error::HbError;

/// Why an action failed (its chain, by [`report::chain`], is the reason a
/// node is DOWN).
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// An executable exited with a failure.
    #[error("`{command}` exited with {status}")]
    Exited {
        /// The command.
        command: String,
        /// How it exited.
        status: std::process::ExitStatus,
    },
    /// An executable could not be run.
    #[error("`{command}` could not run")]
    Spawn {
        /// The command.
        command: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An executable ran too long (it is killed).
    #[error("`{command}` ran longer than {limit:?}")]
    TimedOut {
        /// The command.
        command: String,
        /// The limit.
        limit: Duration,
    },
    /// A data pair's state could not be read from mirrord.
    #[error("pair {pair}")]
    Pair {
        /// The pair.
        pair: String,
        /// mirrord's answer.
        #[source]
        source: HbError,
    },
    /// mirrord refused to take a data pair over.
    #[error("pair {pair}: takeover refused")]
    TakeoverRefused {
        /// The pair.
        pair: String,
        /// mirrord's answer.
        #[source]
        source: HbError,
    },
    /// A floating IP could not be assumed.
    #[error("floating IP of {app}")]
    FloatingIp {
        /// The application.
        app: String,
        /// Why.
        #[source]
        source: FloatingIpError,
    },
}

/// Longest an executable may run.
const EXECUTABLE_LIMIT: Duration = Duration::from_secs(60);
/// Longest a mirrord call may take.
const MIRRORD_LIMIT: Duration = Duration::from_secs(10);

/// Runs `command` (by `sh -c`) for `app` at node `me`; its environment:
/// `HBD_CLUSTER_APP`, `HBD_CLUSTER_NODE`, `HBD_VOLUME_DIR` (where this host
/// sees the volumes). Ok when it exits 0 within the limit.
pub async fn run(
    command: &str,
    app: &str,
    me: &str,
    volume_dir: Option<&Path>,
) -> Result<(), ActionError> {
    run_as(command, app, me, volume_dir, false).await
}

/// As [`run`]; `validating`: a trial run while the node is validated
/// (`HBD_CLUSTER_VALIDATION=1` is set, so that the application may start
/// without writing to a volume another node is using).
pub async fn run_as(
    command: &str,
    app: &str,
    me: &str,
    volume_dir: Option<&Path>,
    validating: bool,
) -> Result<(), ActionError> {
    let mut child = tokio::process::Command::new("sh");
    if validating {
        child.env("HBD_CLUSTER_VALIDATION", "1");
    }
    let child = child
        .arg("-c")
        .arg(command)
        .env("HBD_CLUSTER_APP", app)
        .env("HBD_CLUSTER_NODE", me)
        .env(
            "HBD_VOLUME_DIR",
            volume_dir
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        )
        // Not piped: a start command leaves the application running, holding
        // whatever it inherited.
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .status();
    let command = command.to_string();
    match tokio::time::timeout(EXECUTABLE_LIMIT, child).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(ActionError::Exited { command, status }),
        Ok(Err(source)) => Err(ActionError::Spawn { command, source }),
        Err(_) => Err(ActionError::TimedOut {
            command,
            limit: EXECUTABLE_LIMIT,
        }),
    }
}

/// Makes each data pair of `app` writable at this site: an SVOL here is
/// taken over (SSWS); a PVOL here, or an SVOL already taken over, is used as it is.
pub async fn take_over_pairs(
    app: &Application,
    mirrord: &MirrordAt,
) -> Result<Vec<String>, ActionError> {
    let mut done = vec![];
    for pair in &app.volumes {
        let info = storage_client::pair(mirrord, pair, MIRRORD_LIMIT)
            .await
            .map_err(|source| ActionError::Pair {
                pair: pair.clone(),
                source,
            })?;
        if info.role == Role::Pvol || info.state == PairState::Ssws {
            done.push(format!(
                "{pair}: {:?} {} here, used as it is",
                info.role, info.state
            ));
            continue;
        }
        let request = Request::PairTakeover(PairTakeover { name: pair.clone() });
        storage_client::call_within(mirrord, request, MIRRORD_LIMIT)
            .await
            .map_err(|source| ActionError::TakeoverRefused {
                pair: pair.clone(),
                source,
            })?;
        done.push(format!("{pair}: taken over (SSWS)"));
    }
    Ok(done)
}

/// Assumes every floating IP of `app` (and sends the gratuitous ARPs).
pub async fn assume_ips(app: &Application) -> Result<(), ActionError> {
    for cidr in &app.ips {
        let dev = floating_ip::assume(cidr)
            .await
            .map_err(|source| ActionError::FloatingIp {
                app: app.name.clone(),
                source,
            })?;
        tracing::info!(app = %app.name, "floating IP {cidr} assumed on {dev}, gratuitous ARP sent");
    }
    Ok(())
}

/// Releases every floating IP of `app` held here (failures logged).
pub async fn release_ips(app: &Application) {
    for cidr in &app.ips {
        match floating_ip::release(cidr).await {
            Ok(true) => tracing::info!(app = %app.name, "floating IP {cidr} released"),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(app = %app.name, "cannot release floating IP {cidr}: {}", report::chain(&e))
            }
        }
    }
}
