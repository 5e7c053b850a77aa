//! Local checks (Fig 10): each configured part (a command, a writable
//! volume, a reachable address) is checked every tick, all at once, each
//! within the interval; a check that starts failing becomes a failure
//! notice for the peer, one that passes again an event. The tick runs
//! them ([`Checks::run`]); their last outcomes ([`Checks`]) are read by
//! the QoS (`report`), the handover (a SYSTEM DOWN check that fails at
//! production) and the cluster member's self-check.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::lock::lock;
use super::shared::Shared;
use crate::hb::api::Source;
use crate::hb::config::CheckConfig;
use crate::hb::logic::message::{ControlBody, Notice};
use crate::hb::logic::table::now_ms;
use hbcore::vocab::Level;

/// The local checks' last outcomes: true while a check passes.
#[derive(Default)]
pub struct Checks {
    ok: Mutex<HashMap<String, bool>>,
}

impl Checks {
    /// The last outcome of each check (by part) run so far.
    pub fn outcomes(&self) -> HashMap<String, bool> {
        lock(&self.ok).clone()
    }

    /// The parts whose check of `level` failed when last run.
    pub fn failing(&self, checks: &[CheckConfig], level: Level) -> Vec<String> {
        let ok = lock(&self.ok);
        checks
            .iter()
            .filter(|c| c.level == level && ok.get(&c.part) == Some(&false))
            .map(|c| c.part.clone())
            .collect()
    }

    /// Fig 10: run the local checks; a check that starts failing sends a notice.
    pub async fn run(&self, shared: &Shared) {
        let config = &shared.config;
        let deadline = config.interval().max(Duration::from_millis(100));
        let results =
            futures_util::future::join_all(config.checks.iter().map(|c| check(c, deadline))).await;
        for (check, failure) in config.checks.iter().zip(results) {
            let was_ok = lock(&self.ok)
                .insert(check.part.clone(), failure.is_none())
                .unwrap_or(true);
            match failure {
                Some(info) if was_ok => {
                    let notice = Notice {
                        part: check.part.clone(),
                        level: check.level,
                        info: info.clone(),
                        time_ms: now_ms(),
                        host: config.host.clone(),
                    };
                    tracing::warn!(part = %check.part, level = %notice.level, "local failure: {info}; notifying the peer");
                    shared.event(
                        Source::Local,
                        Some(check.level),
                        &check.part,
                        format!("failed: {info}"),
                    );
                    shared.queue(ControlBody::Notice(notice));
                }
                None if !was_ok => {
                    tracing::info!(part = %check.part, "local check passes again");
                    shared.event(Source::Local, None, &check.part, "passes again".into());
                }
                _ => {}
            }
        }
    }
}

/// One local check; `Some(part information)` when it fails.
async fn check(c: &CheckConfig, deadline: Duration) -> Option<String> {
    if let Some(cmd) = &c.command {
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .status();
        return match tokio::time::timeout(deadline, child).await {
            Ok(Ok(s)) if s.success() => None,
            Ok(Ok(s)) => Some(format!("command `{cmd}` exited with {s}")),
            Ok(Err(e)) => Some(format!("command `{cmd}` could not run: {e}")),
            Err(_) => Some(format!("command `{cmd}` took longer than {deadline:?}")),
        };
    }
    if let Some(path) = &c.writable {
        let p = path.clone();
        let opened = tokio::task::spawn_blocking(move || {
            std::fs::OpenOptions::new().write(true).open(&p).map(|_| ())
        })
        .await;
        return match opened {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("volume {} is not writable: {e}", path.display())),
            Err(e) => Some(format!("volume {}: {e}", path.display())),
        };
    }
    if let Some(address) = &c.network {
        return match tokio::time::timeout(deadline, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(format!("network {address} unreachable: {e}")),
            Err(_) => Some(format!(
                "network {address}: no connection within {deadline:?}"
            )),
        };
    }
    None
}
