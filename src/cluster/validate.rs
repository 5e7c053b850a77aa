//! Validation of a node before it may stand by (seed 004, Fig 6): for every
//! application it would take over, the data pairs are reachable through
//! this site's mirrord, the executables are there, start and pass their
//! check (a trial run with `HBD_CLUSTER_VALIDATION=1`, stopped afterwards;
//! not for an application this node is named active for, nor at start of
//! day, where presence is confirmed),
//! and the floating IPs can be assumed here (an interface in their subnet;
//! not already held here). The floating IPs are only checked, not assumed:
//! the application's IP answers from its active node meanwhile.

use std::path::Path;
use std::time::Duration;

use hbcore::report;

use super::actions::run_as;
use super::floating_ip;
use super::mib::{Application, Mib};
use crate::hb::config::MirrordAt;
use crate::hb::daemon::storage_client;

/// How far the executables are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Executables {
    /// Only found (start of day: every member confirms at once, within
    /// the console's wait).
    Present,
    /// Found, then started, checked and stopped (hot add, recovery).
    TrialRun,
}

/// Why `me` cannot stand by, or Ok.
pub async fn validate(
    mib: &Mib,
    me: &str,
    mirrord: &MirrordAt,
    volume_dir: Option<&Path>,
    executables: Executables,
) -> Result<(), String> {
    let mut problems = vec![];
    let apps = mib
        .applications
        .iter()
        .filter(|a| a.standby.iter().any(|n| n == me) || a.active.as_deref() == Some(me));
    for a in apps {
        for pair in &a.volumes {
            if let Err(e) = storage_client::pair(mirrord, pair, Duration::from_secs(5)).await {
                problems.push(format!(
                    "{}: volume {pair} unreachable: {}",
                    a.name,
                    report::chain(&e)
                ));
            }
        }
        let e = &a.executables;
        let mut present = true;
        for command in [&e.start, &e.stop, &e.check] {
            if let Err(why) = executable_present(command, &a.name, me, volume_dir).await {
                problems.push(format!("{}: {why}", a.name));
                present = false;
            }
        }
        // Not an application this node runs: it is not started twice.
        if present && executables == Executables::TrialRun && a.active.as_deref() != Some(me) {
            if let Err(why) = trial_run(a, me, volume_dir).await {
                problems.push(format!("{}: {why}", a.name));
            }
        }
        for cidr in &a.ips {
            if let Err(e) = floating_ip::interface_for(cidr).await {
                problems.push(format!("{}: {}", a.name, report::chain(&e)));
            }
            if a.active.as_deref() != Some(me) {
                if let Ok(Some(dev)) = floating_ip::holder(cidr).await {
                    problems.push(format!(
                        "{}: floating IP {cidr} is already held here on {dev}",
                        a.name
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("validation failed: {}", problems.join("; ")))
    }
}

/// Starts `app`'s executables here, runs their check, and stops them
/// (whatever the check said, once the start succeeded).
async fn trial_run(app: &Application, me: &str, volume_dir: Option<&Path>) -> Result<(), String> {
    let e = &app.executables;
    let run = |verb, command| async move {
        run_as(command, &app.name, me, volume_dir, true)
            .await
            .map_err(|e| format!("{verb}: {}", report::chain(&e)))
    };
    run("start", &e.start).await?;
    let checked = run("check", &e.check).await;
    let stopped = run("stop", &e.stop).await;
    tracing::info!(app = %app.name, ?checked, ?stopped, "trial run of the executables");
    checked.and(stopped)
}

/// Whether the program of `command` (its first word, with the application's
/// environment) is found here.
async fn executable_present(
    command: &str,
    app: &str,
    me: &str,
    volume_dir: Option<&Path>,
) -> Result<(), String> {
    let Some(program) = command.split_whitespace().next() else {
        return Err("an executable is empty".into());
    };
    let probe = format!("command -v {program} >/dev/null");
    super::actions::run(&probe, app, me, volume_dir)
        .await
        .map_err(|_| format!("executable {program} not found here"))
}
