//! Failover (Fig 7, step 740), step-down, and the commands hbd runs: at
//! failover, take over the configured data pairs through mirrord and run the
//! hook, once; at a production host that learns that the standby took over
//! while it was away, or that hands over because it cannot serve, the
//! step-down (pairs outdated, the hook), once; for received SYSTEM DOWN and
//! SERIOUS notices, the alert command. Each command is a `sh -c` child
//! process, waited for with a time limit.
//!
//! Runs on tasks of their own (failover, step-down), spawned by the tick
//! or the analyzer; each takes what every task shares ([`Shared`]).

use std::time::Duration;

use hbcore::control::{PairOutdate, PairTakeover, Reply, Request};
use hbcore::report;
use hbcore::vocab::Level;

use super::shared::Shared;
use super::storage_client;
use crate::hb::api::Source;

/// Takes over the data pairs and runs the hook. The tick calls it once,
/// on a task of its own, so a slow hook never delays the heartbeats.
pub async fn fail_over(shared: &Shared, reason: String, silent: Duration) {
    tracing::error!("FAILOVER: {reason}");
    shared.event(
        Source::Local,
        Some(Level::SystemDown),
        "failover",
        reason.clone(),
    );
    let mut taken = vec![];
    let mirrord = shared.config.mirrord();
    for pair in &shared.config.failover.take_over {
        let request = Request::PairTakeover(PairTakeover { name: pair.clone() });
        let ok = match storage_client::call(&mirrord, request).await {
            Ok(reply) => {
                if let Reply::Done(text) = reply {
                    tracing::info!(pair = %pair, "taken over: {text}");
                }
                shared.event(
                    Source::Local,
                    None,
                    &format!("pair {pair}"),
                    "takeover ok".into(),
                );
                true
            }
            Err(e) => {
                let why = report::chain(&e);
                tracing::error!(pair = %pair, "takeover failed: {why}");
                shared.event(
                    Source::Local,
                    None,
                    &format!("pair {pair}"),
                    format!("takeover failed: {why}"),
                );
                false
            }
        };
        taken.push(format!("{pair}:{}", if ok { "ok" } else { "failed" }));
    }
    if let Some(hook) = &shared.config.failover.hook {
        let mut env = vec![
            ("HBD_EVENT", "failover".to_string()),
            ("HBD_REASON", reason),
            ("HBD_HOST", shared.config.host.clone()),
            ("HBD_PEERS", shared.config.peers.join(",")),
            ("HBD_TAKEN_OVER", taken.join(",")),
            ("HBD_SILENT_FOR_MS", silent.as_millis().to_string()),
        ];
        env.extend(table_env(shared, "failover"));
        run_command("failover hook", hook, env, Duration::from_secs(300)).await;
    }
}

/// Why a production host steps down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepDown {
    /// The standby took over while this host was away.
    PeerTookOver,
    /// This host cannot serve: it hands over to the standby (and asks it
    /// to take over once this step-down is done).
    Handover,
}

impl StepDown {
    /// `HBD_CAUSE` of the step-down hook.
    fn cause(self) -> &'static str {
        match self {
            StepDown::PeerTookOver => "peer-took-over",
            StepDown::Handover => "handover",
        }
    }
}

/// Steps down: logs it, records it, marks the `take_over` pairs outdated
/// and runs the step-down hook. The tick calls it once, on a task of its
/// own; the table says STEPPED DOWN until `hbctl hb rearm`. `peer`: the
/// standby that took over, or is to.
pub async fn step_down(shared: &Shared, peer: String, reason: String, why: StepDown) {
    tracing::error!("STEPPED DOWN: {reason}");
    shared.event(
        Source::Local,
        Some(Level::Serious),
        "step-down",
        format!("STEPPED DOWN: {reason}"),
    );
    fence_pairs(shared, &peer, why).await;
    if let Some(hook) = &shared.config.failover.step_down {
        let mut env = vec![
            ("HBD_EVENT", "step_down".to_string()),
            ("HBD_CAUSE", why.cause().to_string()),
            ("HBD_REASON", reason),
            ("HBD_HOST", shared.config.host.clone()),
            ("HBD_PEERS", shared.config.peers.join(",")),
            ("HBD_FROM", peer),
        ];
        env.extend(table_env(shared, "step-down"));
        run_command("step-down hook", hook, env, Duration::from_secs(300)).await;
    }
}

/// At a step-down, before the hook: the `take_over` pairs (the ones the
/// other site takes over) are marked outdated at this site's mirrord, so
/// their PVOLs refuse host writes even if the remote link is down and
/// mirrord cannot learn of the takeover from its peer.
async fn fence_pairs(shared: &Shared, peer: &str, why: StepDown) {
    let host = &shared.config.host;
    let reason = match why {
        StepDown::PeerTookOver => format!("host '{host}' stepped down: {peer} took over"),
        StepDown::Handover => {
            format!("host '{host}' stepped down to hand over to {peer}: it cannot serve")
        }
    };
    outdate_pairs(shared, &reason, "step-down").await;
}

/// Marks this host's `take_over` pairs outdated at its site's mirrord
/// (`reason` recorded with each; `when`: "step-down", "poison", "self-fence"),
/// so their PVOLs refuse host writes; a pair that cannot be is logged and
/// recorded as a SERIOUS event.
pub async fn outdate_pairs(shared: &Shared, reason: &str, when: &str) {
    let mirrord = shared.config.mirrord();
    for pair in &shared.config.failover.take_over {
        let request = Request::PairOutdate(PairOutdate {
            name: pair.clone(),
            reason: reason.to_string(),
        });
        match storage_client::call_within(&mirrord, request, Duration::from_secs(10)).await {
            Ok(reply) => {
                let said = match reply {
                    Reply::Done(text) => text,
                    _ => String::new(),
                };
                tracing::warn!(pair = %pair, "{when} fence, pair '{pair}': {said}");
                shared.event(
                    Source::Local,
                    None,
                    &format!("pair {pair}"),
                    format!("outdated at the {when}"),
                );
            }
            Err(e) => {
                let why = report::chain(&e);
                tracing::error!(pair = %pair, "pair '{pair}' could not be fenced at the {when}: {why}; stop the application's writes to it");
                shared.event(
                    Source::Local,
                    Some(Level::Serious),
                    &format!("pair {pair}"),
                    format!("fence failed: {why}"),
                );
            }
        }
    }
}

/// The largest table passed in `HBD_TABLE` itself: one environment string
/// may not exceed 128 KiB (Linux's MAX_ARG_STRLEN), and a hook that cannot
/// start is a failover without its application.
const TABLE_ENV_MAX: usize = 64 << 10;

/// The table for a hook: `HBD_TABLE_FILE`, a snapshot written for it in
/// `data_dir`, and `HBD_TABLE`, the JSON itself while it is small (a
/// table of many mirrors is only in the file).
fn table_env(shared: &Shared, event: &str) -> Vec<(&'static str, String)> {
    let json = serde_json::to_string(&shared.checker().table).unwrap_or_default();
    let path = shared.config.data_dir.join(format!("{event}-table.json"));
    hook_table_env(json, &path)
}

/// See [`Hbd::table_env`].
fn hook_table_env(json: String, path: &std::path::Path) -> Vec<(&'static str, String)> {
    let mut env = vec![];
    match super::record::write_file(path, json.as_bytes()) {
        Ok(()) => env.push(("HBD_TABLE_FILE", path.display().to_string())),
        Err(e) => tracing::error!(
            "cannot write the table for the hook to {}: {e}",
            path.display()
        ),
    }
    if json.len() <= TABLE_ENV_MAX {
        env.push(("HBD_TABLE", json));
    } else {
        tracing::info!(
            bytes = json.len(),
            "the table is too large for HBD_TABLE: the hook reads HBD_TABLE_FILE"
        );
    }
    env
}

/// Runs a configured command with `env`, logging its output; killed after `limit`.
pub async fn run_command(what: &str, command: &str, env: Vec<(&str, String)>, limit: Duration) {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .envs(env)
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(limit, child).await {
        Ok(Ok(out)) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let err = String::from_utf8_lossy(&out.stderr);
            if out.status.success() {
                tracing::info!("{what} `{command}` done: {}{}", text.trim(), err.trim());
            } else {
                tracing::error!(
                    "{what} `{command}` exited with {}: {}{}",
                    out.status,
                    text.trim(),
                    err.trim()
                );
            }
        }
        Ok(Err(e)) => tracing::error!("{what} `{command}` could not run: {e}"),
        Err(_) => tracing::error!("{what} `{command}` ran longer than {limit:?} and was killed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_table_reaches_the_hook_as_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("failover-table.json");
        let small = hook_table_env("{\"serial\":1}".into(), &path);
        assert!(small
            .iter()
            .any(|(k, v)| *k == "HBD_TABLE" && v == "{\"serial\":1}"));
        // 1,000 mirrors make a table of a few hundred KiB: over what one
        // environment string may hold, so it goes in the file only.
        let large = format!("[{}]", "\"mirror\",".repeat(40_000));
        let env = hook_table_env(large.clone(), &path);
        assert!(
            env.iter().all(|(k, _)| *k != "HBD_TABLE"),
            "{:?}",
            env.len()
        );
        let file = env
            .iter()
            .find(|(k, _)| *k == "HBD_TABLE_FILE")
            .expect("the file");
        assert_eq!(std::fs::read_to_string(&file.1).expect("read"), large);
        // And a hook with it starts (it could not with the table in its environment).
        let started = std::process::Command::new("sh")
            .args(["-c", "test -s \"$HBD_TABLE_FILE\""])
            .envs(env)
            .status()
            .expect("sh starts");
        assert!(started.success());
    }
}
