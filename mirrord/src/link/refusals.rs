//! Refused link connections in the log, in a way no flood can flood it: the
//! first refusal of a kind from an address is one WARN line with the full
//! reason; the next ones within the period are counted, and said once at
//! the end of the period as one summary line with counts per reason.
//! Memory is bounded: [`Throttle`] remembers at most [`REMEMBERED`] (address,
//! reason) keys, the summary a fixed set of reasons and [`NAMED_SOURCES`]
//! addresses.
//!
//! Refusals are counted in one place, `Tally`, under one lock: the totals
//! (the metric) and the ones not yet said (the summary) move together. The
//! throttle only decides which refusal gets its own line ([`Throttle::due`]).
//! Noted by the accept loop and the handshake tasks; summarized by a task
//! of its own.
//!
//! ```text
//!  refused ─> note(from, kind, text) ─┬ first of (ip, kind) this period ─> WARN "refused a connection from …: text"
//!                                     └ else counted ─> every period ─> WARN "N more connections refused …: kind: n, …"
//! ```
//! The period is [`PERIOD`]; tests shorten it with `HBMIRROR_LINK_LOG_PERIOD_MS`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hbcore::throttle::Throttle;
use tokio_util::sync::CancellationToken;

/// One line per address and reason per this period, and one summary.
pub const PERIOD: Duration = Duration::from_secs(60);
/// (address, reason) keys remembered; newcomers beyond share one.
pub const REMEMBERED: usize = 32;
/// Addresses named in a summary; more are counted.
pub const NAMED_SOURCES: usize = 4;

/// Refusals not logged one by one since the last summary.
#[derive(Default)]
struct Unsaid {
    by_kind: BTreeMap<&'static str, u64>,
    sources: BTreeSet<IpAddr>,
    more_sources: bool,
}

/// The one count of refused link connections.
#[derive(Default)]
struct Tally {
    /// Every refusal since start, by kind (for the metrics).
    totals: BTreeMap<&'static str, u64>,
    /// Those not logged one by one since the last summary.
    unsaid: Unsaid,
}

/// The log of refused link connections.
pub struct RefusalLog {
    throttle: Throttle,
    period: Duration,
    tally: Mutex<Tally>,
}

impl RefusalLog {
    /// A log with the period of `HBMIRROR_LINK_LOG_PERIOD_MS` if set, else [`PERIOD`].
    pub fn new() -> RefusalLog {
        let period = std::env::var("HBMIRROR_LINK_LOG_PERIOD_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .map_or(PERIOD, Duration::from_millis);
        RefusalLog::with_period(period)
    }

    fn with_period(period: Duration) -> RefusalLog {
        RefusalLog {
            throttle: Throttle::new(period, REMEMBERED),
            period,
            tally: Mutex::new(Tally::default()),
        }
    }

    /// Records that the connection from `from` was refused: `kind` is the
    /// reason in fixed words (what refusals are counted by), `text` the full one.
    pub fn note(&self, from: SocketAddr, kind: &'static str, text: &str) {
        let due = self.throttle.due(&from.ip().to_string(), kind);
        // A poisoned lock only means a panic between two counter updates.
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        *tally.totals.entry(kind).or_insert(0) += 1;
        if due {
            drop(tally);
            tracing::warn!("link: refused a connection from {from}: {text}");
            return;
        }
        let unsaid = &mut tally.unsaid;
        *unsaid.by_kind.entry(kind).or_insert(0) += 1;
        if unsaid.sources.len() < NAMED_SOURCES {
            unsaid.sources.insert(from.ip());
        } else if !unsaid.sources.contains(&from.ip()) {
            unsaid.more_sources = true;
        }
    }

    /// Every refusal since start, by kind.
    pub fn totals(&self) -> Vec<(&'static str, u64)> {
        let tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        tally.totals.iter().map(|(k, n)| (*k, *n)).collect()
    }

    /// The summary of the refusals not logged one by one since the last call, if any.
    fn summary(&self) -> Option<String> {
        let unsaid = {
            let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
            std::mem::take(&mut tally.unsaid)
        };
        let total: u64 = unsaid.by_kind.values().sum();
        if total == 0 {
            return None;
        }
        let kinds: Vec<String> = unsaid
            .by_kind
            .iter()
            .map(|(kind, n)| format!("{kind}: {n}"))
            .collect();
        let mut sources: Vec<String> = unsaid.sources.iter().map(IpAddr::to_string).collect();
        if unsaid.more_sources {
            sources.push("others".into());
        }
        Some(format!(
            "link: {total} more connections refused in the last {:?}, not logged one by one ({}) from {}",
            self.period,
            kinds.join(", "),
            sources.join(", ")
        ))
    }

    /// Logs the summary at the end of every period with refusals, until `stop`.
    pub async fn summarize(self: Arc<Self>, stop: CancellationToken) {
        let mut every = tokio::time::interval(self.period);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            if let Some(line) = self.summary() {
                tracing::warn!("{line}");
            }
        }
    }
}

impl Default for RefusalLog {
    fn default() -> RefusalLog {
        RefusalLog::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(ip: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((ip, port))
    }

    #[test]
    fn a_flood_is_one_line_per_address_and_reason_then_one_summary() {
        let log = RefusalLog::with_period(Duration::from_secs(60));
        for port in 0..200 {
            log.note(from([10, 0, 0, 1], port), "handshake too slow", "slow");
        }
        for port in 0..50 {
            log.note(from([10, 0, 0, 1], port), "oversized frame", "big");
            log.note(from([10, 0, 0, 2], port), "oversized frame", "big");
        }
        assert_eq!(
            log.summary().as_deref(),
            Some(
                "link: 297 more connections refused in the last 60s, not logged one by one \
                 (handshake too slow: 199, oversized frame: 98) from 10.0.0.1, 10.0.0.2"
            )
        );
        assert_eq!(log.summary(), None, "each refusal is summarized once");
        assert_eq!(
            log.totals(),
            [("handshake too slow", 200), ("oversized frame", 100)],
            "the totals count the said and the unsaid ones once each"
        );
    }

    #[test]
    fn many_addresses_cost_bounded_memory() {
        let log = RefusalLog::with_period(Duration::from_secs(60));
        for i in 0..5000u32 {
            let [_, _, a, b] = i.to_be_bytes();
            log.note(from([10, 1, a, b], 1), "not the link protocol", "junk");
        }
        assert!(log.throttle.len() <= REMEMBERED + 1);
        let tally = log.tally.lock().expect("lock");
        let unsaid = &tally.unsaid;
        assert!(unsaid.sources.len() <= NAMED_SOURCES && unsaid.more_sources);
        assert_eq!(
            unsaid.by_kind.get("not the link protocol"),
            Some(&(5000 - 33))
        );
    }
}
