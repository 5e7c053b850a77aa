//! hbd's metrics (`metrics_listen`): per channel (the network, each
//! heartbeat mirror) whether it is valid, heartbeats received (written, for
//! a sending mirror), seconds since the last; heartbeats sent; the peer
//! group's status via each kind of channel; refused heartbeats by reason;
//! failover, step-down and arming; recent failure notices by level. Built
//! from the status table at each scrape, so they say what `hbctl hb status` says.
//!
//! Each scrape runs on the metrics server's task and reads [`Shared`].

use std::sync::Arc;

use hbcore::metrics::{labels, Labels, Scrape};
use serde::Serialize;

use super::shared::Shared;
use crate::hb::api::Source;
use crate::hb::logic::table::{GroupStatus, Seen, Table};
use hbcore::vocab::Level;

/// How many of the latest events the notice counts look at.
const NOTICE_WINDOW: usize = 1000;

/// A value's name as its JSON says it (`"ALIVE"`, `"standby"`, ...).
fn name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => "unknown".into(),
    }
}

fn flag(b: bool) -> f64 {
    f64::from(u8::from(b))
}

/// Every channel of the table: `(labels, facts)`.
fn channels(table: &Table) -> Vec<(Labels, &Seen)> {
    let mut all = Vec::new();
    if table.network_configured {
        all.push((
            labels([
                ("channel", "network"),
                ("kind", "network"),
                ("direction", "both"),
            ]),
            &table.network,
        ));
    }
    for d in &table.devices {
        let channel = format!("mirror {}", d.name);
        all.push((
            labels([
                ("channel", &channel),
                ("kind", "mirror"),
                ("direction", &name(&d.direction)),
            ]),
            &d.seen,
        ));
    }
    all
}

/// The OpenMetrics text of `hbd` now.
pub fn scrape(shared: &Shared) -> String {
    let table = shared.checker().table.clone();
    let events = shared.recent_events(NOTICE_WINDOW);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut s = Scrape::default();
    let chans = channels(&table);
    s.gauge(
        "hb_channel_valid",
        "1 when the channel carries valid, advancing heartbeats now",
        chans
            .iter()
            .map(|(l, seen)| (l.clone(), flag(seen.problem.is_none() && seen.count > 0))),
    );
    s.counter(
        "hb_channel_heartbeats",
        "Valid, advancing heartbeats received on the channel (written, for a sending mirror)",
        chans.iter().map(|(l, seen)| (l.clone(), seen.count)),
    );
    s.gauge(
        "hb_channel_last_seen_seconds",
        "Seconds since the channel's last heartbeat",
        chans.iter().filter_map(|(l, seen)| {
            seen.last_ms
                .map(|t| (l.clone(), now_ms.saturating_sub(t) as f64 / 1000.0))
        }),
    );
    // Seed 002's view of each channel: the health counter, GOOD/BAD, gaps.
    let by_channel = |c: &crate::hb::logic::analysis::ChannelStatus| {
        labels([("channel", &c.name), ("kind", &name(&c.kind))])
    };
    s.gauge(
        "hb_channel_health",
        "The channel's health counter (seed 002: starts at 20, +1 per heartbeat, -4 per period, 0 = BAD)",
        table
            .channels
            .iter()
            .filter_map(|c| c.counter.map(|n| (by_channel(c), f64::from(n)))),
    );
    s.gauge(
        "hb_channel_good",
        "1 when the channel is GOOD by its counter, 0 when BAD or turned off",
        table
            .channels
            .iter()
            .map(|c| (by_channel(c), flag(name(&c.state) == "GOOD"))),
    );
    s.counter(
        "hb_channel_missing_heartbeats",
        "Heartbeats missing on the channel (gaps in the sequence numbers)",
        table.channels.iter().map(|c| (by_channel(c), c.missing)),
    );
    let mirrors = table.devices.iter().map(|d| {
        (
            labels([
                ("channel", &format!("mirror {}", d.name)),
                ("status", &name(&d.status)),
            ]),
            1.0,
        )
    });
    s.gauge(
        "hb_mirror_status",
        "Device Status (241) of each heartbeat mirror: ENABLE, DISABLE, FAILED, NULL",
        mirrors,
    );
    s.counter(
        "hb_heartbeats_sent",
        "Heartbeats sent (the serial of the last)",
        [(Labels::new(), u64::from(table.serial))],
    );
    let group = |via: &str, status: GroupStatus| {
        [
            GroupStatus::Alive,
            GroupStatus::Failed,
            GroupStatus::Unknown,
        ]
        .map(|st| {
            (
                labels([("via", via), ("status", &name(&st))]),
                flag(st == status),
            )
        })
    };
    s.gauge(
        "hb_remote_group_status",
        "1 for the peer group's status (ALIVE, FAILED, UNKNOWN) via each kind of channel",
        group("network", table.remote_group_via_network)
            .into_iter()
            .chain(group("mirrors", table.remote_group_via_mirrors)),
    );
    s.counter(
        "hb_rejected_heartbeats",
        "Heartbeats refused, by reason",
        [
            ("time-back", table.rejected_time_back),
            ("serial-jump", table.rejected_serial_jump),
            ("no-fresh-echo", table.rejected_echo),
            ("retired-instance", table.rejected_instance),
            ("replayed", table.rejected_replayed),
            ("invalid", table.rejected_invalid),
            ("disabled", table.ignored_disabled),
        ]
        .map(|(reason, n)| (labels([("reason", reason)]), n)),
    );
    let peer = shared.config.peers.join(",");
    let offsets = table.clock_offsets().filter_map(|(channel, offset)| {
        offset.map(|ms| {
            (
                labels([("peer", peer.as_str()), ("channel", &channel)]),
                ms as f64 / 1000.0,
            )
        })
    });
    s.gauge(
        "hb_clock_offset_seconds",
        "The peer's wall clock minus this host's, as measured from the heartbeats' round trips on the channel: shown, never acted on",
        offsets.collect::<Vec<_>>(),
    );
    s.counter(
        "hb_failovers",
        "Failovers done by this host (at most one until re-armed)",
        [(Labels::new(), u64::from(table.failed_over))],
    );
    s.gauge(
        "hb_armed",
        "1 when this host may fail over",
        [(Labels::new(), flag(table.armed))],
    );
    s.gauge(
        "hb_stepped_down",
        "1 when this production host stepped down",
        [(Labels::new(), flag(table.stepped_down))],
    );
    let mut notices: std::collections::BTreeMap<(String, String), u64> = Default::default();
    for source in [Source::Local, Source::Peer] {
        for level in [
            Level::SystemDown,
            Level::Serious,
            Level::Moderate,
            Level::Temporary,
        ] {
            notices.insert((name(&source), name(&level)), 0);
        }
    }
    for e in &events {
        if let Some(level) = &e.level {
            *notices.entry((name(&e.source), name(level))).or_default() += 1;
        }
    }
    s.gauge(
        "hb_recent_notices",
        "Failure notices among the latest 1000 events, by source and level",
        notices.into_iter().map(|((source, level), n)| {
            (labels([("source", &source), ("level", &level)]), n as f64)
        }),
    );
    s.encode()
}

/// Starts the endpoint if `metrics_listen` is set; it stops with the returned sender.
pub async fn start(
    shared: &Arc<Shared>,
) -> anyhow::Result<Option<tokio::sync::oneshot::Sender<()>>> {
    let Some(address) = shared.config.metrics_listen else {
        return Ok(None);
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shared = Arc::clone(shared);
    hbcore::metrics::serve(address, move || scrape(&shared), async move {
        let _ = stopped.await;
    })
    .await?;
    Ok(Some(stop))
}
