//! The monitor's rows, as text: the same cells for the full-screen view and
//! the plain output.

use hbcore::control::PairInfo;
use hbcore::size::Bytes;
use hbmirror::hb::api::Event;
use hbmirror::hb::logic::table::{now_ms, Seen, Table};

/// A JSON name (`ENABLE`, `receive`, `local`).
pub fn name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// `[#####-----]  45%`, `width` cells of bar.
pub fn bar(ratio: f64, width: usize) -> String {
    let ratio = ratio.clamp(0.0, 1.0);
    let full = (ratio * width as f64).round() as usize;
    format!(
        "[{}{}] {:>3.0}%",
        "#".repeat(full),
        "-".repeat(width - full),
        ratio * 100.0
    )
}

fn seconds_ago(ms: Option<u64>) -> String {
    match ms {
        Some(ms) => format!("{:.1}s ago", now_ms().saturating_sub(ms) as f64 / 1000.0),
        None => "never".into(),
    }
}

/// The pairs' header.
pub const PAIR_HEADER: [&str; 10] = [
    "PAIR", "ROLE", "STATE", "MODE", "PEER", "LINK", "RTT", "LAG", "OLDEST", "COPY",
];

/// One row per pair.
pub fn pair_rows(pairs: &[PairInfo]) -> Vec<Vec<String>> {
    pairs
        .iter()
        .map(|p| {
            let copy = if p.copy.running || p.copy.total_bytes > 0 && p.copy.percent < 100.0 {
                format!(
                    "{} {}/s",
                    bar(p.copy.percent / 100.0, 20),
                    Bytes(p.copy.rate_bytes_per_s as u64)
                )
            } else {
                "-".into()
            };
            let lag = if p.queued_bytes > 0 {
                format!(
                    "{} (+{} queued)",
                    Bytes(p.pending_bytes),
                    Bytes(p.queued_bytes)
                )
            } else {
                Bytes(p.pending_bytes).to_string()
            };
            vec![
                p.name.clone(),
                name(&p.role),
                name(&p.state),
                name(&p.mode),
                p.peer.clone(),
                if p.link_up { "up" } else { "DOWN" }.into(),
                p.link_rtt_us
                    .map_or("-".into(), |us| format!("{:.2} ms", us as f64 / 1000.0)),
                lag,
                p.oldest_pending_ms
                    .map_or("-".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0)),
                copy,
            ]
        })
        .collect()
}

/// The channels' header.
pub const CHANNEL_HEADER: [&str; 6] = [
    "CHANNEL",
    "KIND",
    "STATUS",
    "HEALTH",
    "HEARTBEATS",
    "LAST SEEN",
];

fn channel(name: String, kind: String, status: String, seen: &Seen) -> Vec<String> {
    vec![
        name,
        kind,
        status,
        seen.problem
            .clone()
            .unwrap_or_else(|| if seen.count > 0 { "good" } else { "waiting" }.into()),
        seen.count.to_string(),
        seconds_ago(seen.last_ms),
    ]
}

/// One row per heartbeat channel: the network, each heartbeat mirror.
pub fn channel_rows(table: &Table) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    if table.network_configured {
        rows.push(channel(
            "network".into(),
            "network".into(),
            name(&table.network_enable),
            &table.network,
        ));
    }
    for d in &table.devices {
        rows.push(channel(
            format!("mirror {}", d.name),
            format!("mirror ({})", name(&d.direction)),
            name(&d.status),
            &d.seen,
        ));
    }
    rows
}

/// The peer group's status in one line.
pub fn verdict_line(table: &Table) -> String {
    let mut line = format!(
        "{} {}: peer {} via network, {} via mirrors",
        name(&table.group),
        table.host,
        name(&table.remote_group_via_network),
        name(&table.remote_group_via_mirrors)
    );
    if table.failed_over {
        line.push_str(" | FAILED OVER");
    }
    if table.stepped_down {
        line.push_str(" | STEPPED DOWN");
    }
    if let Some(h) = &table.handover {
        line.push_str(&format!(" | handover {}", h.state()));
    }
    line.push_str(if table.armed {
        " | armed"
    } else {
        " | not armed"
    });
    line
}

/// One line per event, newest last.
pub fn event_lines(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let secs = e.time_ms / 1000;
            let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
            let level = e
                .level
                .map(|l| format!(" {}", name(&l)))
                .unwrap_or_default();
            format!(
                "{h:02}:{m:02}:{s:02}Z {}{level} {}: {}",
                name(&e.source),
                e.part,
                e.text
            )
        })
        .collect()
}

/// `rows` under `header` as plain text columns, two spaces apart.
pub fn plain(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut text = line(header.to_vec());
    for row in rows {
        text.push('\n');
        text.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_and_columns() {
        assert_eq!(bar(0.5, 10), "[#####-----]  50%");
        assert_eq!(bar(2.0, 4), "[####] 100%");
        let text = plain(&["A", "BB"], &[vec!["long".into(), "x".into()]]);
        assert_eq!(text, "A     BB\nlong  x");
    }
}
