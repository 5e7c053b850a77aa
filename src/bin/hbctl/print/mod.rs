//! What hbctl prints: tables (borderless, each column as wide as its widest
//! cell, so long names never push the others out of line), the detail of
//! one pair, event lines, and JSON for scripts. This file: the helpers and
//! hbd's status table, analyses and events; [`storage`]: mirrord's volumes
//! and pairs.

mod storage;

pub use storage::{links, pair, pairs, verify, volumes};

use comfy_table::CellAlignment;
use hbcore::vocab::Group;
use hbmirror::hb::api::Event;
use hbmirror::hb::logic::analysis::{network_label, Analysis, ChannelKind, ChannelStatus, Report};
use hbmirror::hb::logic::table::{now_ms, Handover, Seen, Table};

/// Renders `rows` under `header` (none if empty), columns two spaces apart;
/// the columns numbered in `right` (numbers) are aligned right.
fn grid(header: &[&str], rows: Vec<Vec<String>>, right: &[usize]) -> String {
    let mut grid = comfy_table::Table::new();
    grid.load_preset(comfy_table::presets::NOTHING);
    if !header.is_empty() {
        grid.set_header(header.to_vec());
    }
    for row in rows {
        grid.add_row(row);
    }
    for (i, column) in grid.column_iter_mut().enumerate() {
        column.set_padding((0, 2));
        if right.contains(&i) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    grid.trim_fmt()
}

/// The name a value has in JSON: the table's words (ENABLE, FAILED, receive, local).
fn name<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn ago(ms: Option<u64>) -> String {
    match ms {
        Some(ms) => format!("{:.1}s ago", now_ms().saturating_sub(ms) as f64 / 1000.0),
        None => "never".into(),
    }
}

/// Pretty JSON, for scripts.
pub fn json<T: serde::Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("hbctl: cannot print JSON: {e}"),
    }
}

/// The heartbeat status table (Fig 2): the enable and remote-group flags,
/// then one row per channel.
pub fn status(t: &Table) {
    let state = match (t.failed_over, t.stepped_down) {
        (true, _) => "  FAILED OVER",
        (_, true) => "  STEPPED DOWN",
        _ => "",
    };
    println!("host {} ({} group){state}", t.host, t.group);
    if let Some(master) = &t.master {
        println!(
            "master of the group: {master} (cluster instance {})",
            t.master_instance
        );
    }
    println!("{}", decision(t));
    let flags = vec![
        vec![
            "network heartbeat enable".into(),
            name(&t.network_enable),
            "remote group via network".into(),
            name(&t.remote_group_via_network),
        ],
        vec![
            "remote copy heartbeat enable".into(),
            name(&t.remote_copy_enable),
            "remote group via mirrors".into(),
            name(&t.remote_group_via_mirrors),
        ],
    ];
    println!("{}", grid(&[], flags, &[]));
    // One row per channel: its Fig 2 status (timeout rule) and its
    // counter's state (seed 002).
    let counted = |kind: ChannelKind, name: &str| {
        t.channels.iter().find(|c| c.kind == kind && c.name == name)
    };
    let row = |channel: String,
               status: String,
               c: Option<&ChannelStatus>,
               direction: String,
               address: String,
               s: &Seen| {
        vec![
            channel,
            status,
            c.map_or_else(|| "-".into(), |c| name(&c.state)),
            c.and_then(|c| c.counter)
                .map_or_else(|| "-".into(), |v| v.to_string()),
            direction,
            address,
            s.count.to_string(),
            c.map_or_else(|| "-".into(), |c| c.missing.to_string()),
            ago(s.last_ms),
            s.clock_offset_ms
                .map_or_else(|| "-".into(), |ms| format!("{ms:+} ms")),
            s.problem.clone().unwrap_or_else(|| {
                c.and_then(|c| c.problem.clone())
                    .unwrap_or_else(|| "-".into())
            }),
        ]
    };
    let mut rows = vec![];
    if t.networks.is_empty() {
        rows.push(row(
            "network".into(),
            name(&t.network_enable),
            None,
            "-".into(),
            "-".into(),
            &t.network,
        ));
    }
    for n in &t.networks {
        rows.push(row(
            network_label(&n.name),
            name(&n.enable),
            counted(ChannelKind::Network, &n.name),
            "both".into(),
            "-".into(),
            &n.seen,
        ));
    }
    for d in &t.devices {
        let address = d
            .address
            .as_ref()
            .map(|a| a.display().to_string())
            .unwrap_or_else(|| "NULL".into());
        rows.push(row(
            format!("mirror {}", d.name),
            name(&d.status),
            counted(ChannelKind::Mirror, &d.name),
            name(&d.direction),
            address,
            &d.seen,
        ));
    }
    println!();
    println!(
        "{}",
        grid(
            &[
                "CHANNEL",
                "STATUS",
                "STATE",
                "COUNTER",
                "DIRECTION",
                "ADDRESS",
                "HEARTBEATS",
                "MISSING",
                "LAST",
                "CLOCK OFFSET",
                "PROBLEM"
            ],
            rows,
            &[3, 6, 7, 9],
        )
    );
    if let Some(a) = &t.analysis {
        let v = &a.verdict;
        println!(
            "last fault analysis {}: {}{} (`hbctl hb analyze` runs one and shows its evidence)",
            ago(Some(a.time_ms)),
            v.verdict,
            if v.networks.is_empty() {
                String::new()
            } else {
                format!(" ({})", v.networks.join(", "))
            }
        );
    }
    if let Some(held) = &t.failover_held {
        println!("FAILOVER HELD: {held}");
    }
    if let Some(h) = &t.handover {
        println!("{}", handover(t.group, h));
    }
    if let Some(note) = &t.echo_note {
        println!("local network check: {note}");
    }
    if t.devices.is_empty() {
        println!("no heartbeat mirrors; install one with `hbctl hb mirror install --pvol PATH --pair NAME`");
    }
    if t.outbox_held {
        println!(
            "{} control message(s) waiting: no enabled channel reaches the peer; turn one on with `hbctl hb procedure`",
            t.outbox.len()
        );
    } else if !t.outbox.is_empty() {
        println!(
            "{} control message(s) not yet acknowledged by the peer",
            t.outbox.len()
        );
    }
    for m in &t.procedure_mismatch {
        println!("procedure mismatch: {m}");
    }
    let refused = [
        (t.rejected_replayed, "replayed or duplicated"),
        (
            t.rejected_echo,
            "from a new sender run without a fresh echo",
        ),
        (t.rejected_instance, "from a sender run left behind"),
        (t.rejected_time_back, "whose time went back"),
        (t.rejected_serial_jump, "whose serial jumped"),
        (t.rejected_invalid, "invalid"),
        (t.ignored_disabled, "ignored on the turned-off network"),
    ];
    if refused.iter().any(|(n, _)| *n > 0) {
        let parts: Vec<String> = refused
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        println!("refused heartbeats: {}", parts.join(", "));
    }
}

/// The line that says what this host will decide, and why.
fn decision(t: &Table) -> String {
    match t.group {
        Group::Standby if t.failed_over => format!(
            "failover: done{}; `hbctl hb rearm` after failback",
            if t.peer_stepped_down {
                " (production has stepped down)"
            } else {
                ""
            }
        ),
        Group::Standby if t.armed => format!(
            "failover: armed (arm = {}): fails over when every enabled channel says production is dead",
            t.arm_policy
        ),
        Group::Standby => format!(
            "failover: NOT armed (arm = {}): waits to see production alive once since start; a standby started while production is down never fails over",
            t.arm_policy
        ),
        Group::Production if t.stepped_down && t.handover.is_some() => {
            "STEPPED DOWN to hand over: this host cannot serve (see HANDOVER); `hbctl hb rearm` here once it can (after failback, re-arm the standby first)".into()
        }
        Group::Production if t.stepped_down => format!(
            "STEPPED DOWN: {} took over while this host was away; `hbctl hb rearm` here after failback (re-arm the standby first)",
            t.peer_failed_over.as_deref().unwrap_or("the standby")
        ),
        Group::Production => {
            "step-down: this host steps down if the standby reports that it took over".into()
        }
    }
}

/// The handover (production that cannot serve asked the standby to take
/// over), the request and the answer, as this host's group sees it.
fn handover(group: Group, h: &Handover) -> String {
    let asked = match &h.request {
        Some(r) => format!("request {} {}", r.id, ago(Some(r.asked_ms))),
        None => "not yet asked: stepping down first".into(),
    };
    let answer = match &h.answer {
        None if h.request.is_some() => {
            "answer: waiting (the request rides every heartbeat until the standby has it)".into()
        }
        None => String::new(),
        Some(a) if a.accepted => format!("answer: TAKEN OVER by {}: {}", a.by, a.why),
        Some(a) => format!("answer: REFUSED by {}: {}", a.by, a.why),
    };
    let who = match group {
        Group::Production => format!("this host asked {} to take over", h.to),
        Group::Standby => format!("{} asked this host to take over", h.from),
    };
    format!(
        "HANDOVER ({}): {who}; {asked}; why: {}\n  {answer}",
        h.state(),
        h.reason
    )
    .trim_end()
    .to_string()
}

/// A fault analysis: the verdict, each side's local network check and
/// channels, the QoS comparison and the decision routine's steps.
pub fn analysis(a: &Analysis) {
    let v = &a.verdict;
    let networks = if v.networks.is_empty() {
        String::new()
    } else {
        format!(" ({})", v.networks.join(", "))
    };
    println!(
        "fault analysis {} ({}), decided {}",
        a.id,
        a.trigger,
        ago(Some(a.time_ms))
    );
    println!("verdict: {}{networks}", v.verdict);
    println!("  {}", v.detail);
    let sides: Vec<&Report> = std::iter::once(&a.local).chain(&a.remote).collect();
    let header: Vec<String> = std::iter::once("NETWORK".to_string())
        .chain(sides.iter().map(|r| format!("AT {}", r.host)))
        .collect();
    let names: Vec<&String> = {
        let mut n: Vec<&String> = sides
            .iter()
            .flat_map(|r| r.networks.iter().map(|n| &n.name))
            .collect();
        n.sort();
        n.dedup();
        n
    };
    let rows = names
        .iter()
        .map(|name| {
            std::iter::once(name.to_string())
                .chain(sides.iter().map(|r| {
                    r.networks.iter().find(|n| &n.name == *name).map_or_else(
                        || "not configured".into(),
                        |n| {
                            n.summary()
                                .split_once(": ")
                                .map_or_else(|| n.summary(), |(_, s)| s.to_string())
                        },
                    )
                }))
                .collect()
        })
        .collect();
    let header_refs: Vec<&str> = header.iter().map(String::as_str).collect();
    println!();
    println!("{}", grid(&header_refs, rows, &[]));
    let rows = sides
        .iter()
        .flat_map(|r| {
            r.channels.iter().map(|c| {
                vec![
                    r.host.clone(),
                    c.label(),
                    name(&c.state),
                    c.status.clone(),
                    c.counter.map_or_else(|| "-".into(), |v| v.to_string()),
                    c.sent.to_string(),
                    c.received.to_string(),
                    c.missing.to_string(),
                ]
            })
        })
        .collect();
    println!();
    println!(
        "{}",
        grid(
            &["AT", "CHANNEL", "STATE", "STATUS", "COUNTER", "SENT", "RECEIVED", "MISSING"],
            rows,
            &[4, 5, 6, 7],
        )
    );
    println!();
    for r in &sides {
        println!("QoS at {}: {}", r.host, r.qos.summary());
        if let Some(note) = &r.echo_note {
            println!("  echo at {}: {note}", r.host);
        }
    }
    if let Some(q) = &a.qos {
        println!("QoS comparison: {q}");
    }
    if a.remote.is_none() {
        println!("(no report from the peer)");
    }
    println!("decision (Fig 9):");
    for step in &a.steps {
        println!("  {step}");
    }
}

/// Events, one line each, oldest first.
pub fn events(events: &[Event]) {
    if events.is_empty() {
        println!("no events");
    }
    for e in events {
        let level = e.level.map(|l| format!(" [{l}]")).unwrap_or_default();
        println!(
            "{} {:<5}{level} {}: {}",
            ago(Some(e.time_ms)),
            name(&e.source),
            e.part,
            e.text
        );
    }
}
