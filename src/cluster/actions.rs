//! What a member does with its hands: run an application's executables,
//! take over its data pairs through this site's mirrord (SSWS), assume or
//! release its floating IPs.

use std::path::Path;
use std::time::Duration;

use hbcore::control::{PairTakeover, Request};
use hbcore::report;
use hbcore::vocab::{PairState, Role};

use super::floating_ip;
use super::mib::Application;
use crate::hb::mirrord;

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
) -> Result<(), String> {
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
) -> Result<(), String> {
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
    match tokio::time::timeout(EXECUTABLE_LIMIT, child).await {
        Ok(Ok(s)) if s.success() => Ok(()),
        Ok(Ok(s)) => Err(format!("`{command}` exited with {s}")),
        Ok(Err(e)) => Err(format!("`{command}` could not run: {e}")),
        Err(_) => Err(format!("`{command}` ran longer than {EXECUTABLE_LIMIT:?}")),
    }
}

/// Makes each data pair of `app` writable at this site: an SVOL here is
/// taken over (SSWS); a PVOL here, or an SVOL already taken over, is used as it is.
pub async fn take_over_pairs(app: &Application, socket: &Path) -> Result<Vec<String>, String> {
    let mut done = vec![];
    for pair in &app.volumes {
        let info = mirrord::pair(socket, pair, MIRRORD_LIMIT)
            .await
            .map_err(|e| format!("pair {pair}: {}", report::chain(&e)))?;
        if info.role == Role::Pvol || info.state == PairState::Ssws {
            done.push(format!(
                "{pair}: {:?} {} here, used as it is",
                info.role, info.state
            ));
            continue;
        }
        let request = Request::PairTakeover(PairTakeover { name: pair.clone() });
        mirrord::call_within(socket, request, MIRRORD_LIMIT)
            .await
            .map_err(|e| format!("pair {pair}: takeover refused: {}", report::chain(&e)))?;
        done.push(format!("{pair}: taken over (SSWS)"));
    }
    Ok(done)
}

/// Assumes every floating IP of `app` (and sends the gratuitous ARPs).
pub async fn assume_ips(app: &Application) -> Result<(), String> {
    for cidr in &app.ips {
        let dev = floating_ip::assume(cidr)
            .await
            .map_err(|e| report::chain(&e))?;
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
