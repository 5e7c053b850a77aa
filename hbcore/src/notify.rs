//! The daemons' side of systemd's service protocol (`Type=notify`):
//! `READY=1` once they serve, `STATUS=` with a one-line summary,
//! `WATCHDOG=1` from a loop that must keep running, `STOPPING=1` at the end.
//!
//! Every call is a no-op when the daemon was not started by systemd (no
//! `NOTIFY_SOCKET`); a failed send is logged once per call, never fatal.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!("cannot notify systemd (NOTIFY_SOCKET): {e}");
    }
}

/// `READY=1` with a `STATUS=` line: the daemon serves.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `STATUS=`: a one-line summary shown by `systemctl status`.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// `WATCHDOG=1`: the loop that sends it is alive.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// `STOPPING=1`: a clean shutdown has begun.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// The watchdog interval systemd asked for (`WatchdogSec=`), if any: the
/// daemon must send [`watchdog`] at least twice within it.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}

/// Counts of each state, in order of first name: `"3 PAIR, 1 PSUE"`
/// (`"no pairs"`-style `empty` when there are none).
pub fn summary<T: Display>(states: impl IntoIterator<Item = T>, empty: &str) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for state in states {
        *counts.entry(state.to_string()).or_default() += 1;
    }
    if counts.is_empty() {
        return empty.to_string();
    }
    counts
        .iter()
        .map(|(state, n)| format!("{n} {state}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_each_state() {
        let s = summary(["PAIR", "PSUE", "PAIR", "PAIR"], "no pairs");
        assert_eq!(s, "3 PAIR, 1 PSUE");
        assert_eq!(summary(Vec::<&str>::new(), "no pairs"), "no pairs");
    }
}
