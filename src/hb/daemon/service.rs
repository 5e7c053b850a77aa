//! hbd under systemd (`Type=notify`): `READY=1` once the status table is
//! resumed and the channels are open, a `STATUS=` line with the peer's
//! status per channel kept current, and `WATCHDOG=1` from the tick (a hung
//! hbd is a frozen heartbeat: systemd restarts it after `WatchdogSec=`).
//!
//! The status line is refreshed by a task of its own; the watchdog is fed
//! by the tick task.

use std::sync::Arc;
use std::time::Duration;

use super::shared::Shared;
use crate::hb::logic::table::{GroupStatus, Table};

/// How often the `STATUS=` line is refreshed.
const REFRESH: Duration = Duration::from_secs(2);

/// The one-line summary: the peer group via each kind of channel, and
/// whether failover is armed or done.
pub fn summary(table: &Table) -> String {
    let word = |s: GroupStatus| match s {
        GroupStatus::Alive => "alive",
        GroupStatus::Failed => "FAILED",
        GroupStatus::Unknown => "unknown",
    };
    let mut text = format!(
        "{} {}: peer {} via network, {} via {} mirror(s)",
        table.group,
        table.host,
        word(table.remote_group_via_network),
        word(table.remote_group_via_mirrors),
        table.devices.len()
    );
    if table.failed_over {
        text.push_str("; FAILED OVER");
    } else if table.stepped_down {
        text.push_str("; STEPPED DOWN");
    } else if table.armed {
        text.push_str("; armed");
    }
    text
}

/// Says READY (call it once the table is resumed and the channels are
/// open) and keeps the STATUS line current (the returned task; abort it at
/// shutdown).
pub fn ready(shared: &Arc<Shared>) -> tokio::task::JoinHandle<()> {
    let status = || summary(&shared.checker().table);
    hbcore::notify::ready(&status());
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        if std::env::var_os("NOTIFY_SOCKET").is_none() {
            return;
        }
        let mut last = String::new();
        loop {
            tokio::time::sleep(REFRESH).await;
            let now = summary(&shared.checker().table);
            if now != last {
                hbcore::notify::status(&now);
                last = now;
            }
        }
    })
}

/// One tick done: feed systemd's watchdog.
pub fn tick_done() {
    hbcore::notify::watchdog();
}
