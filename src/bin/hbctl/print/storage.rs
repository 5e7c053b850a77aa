//! What hbctl prints of a site's storage: volumes, pairs, one pair's
//! detail, an online verify.

use super::{grid, name};
use hbcore::control::{LinkInfo, PairInfo, VolumeInfo};
use hbcore::size::Bytes;
use hbcore::vocab::Kind;

/// The volumes of a site.
pub fn volumes(volumes: &[VolumeInfo]) {
    if volumes.is_empty() {
        println!("no volumes; create one with `hbctl volume create NAME --size 1MiB`");
        return;
    }
    let rows = volumes
        .iter()
        .map(|v| {
            vec![
                v.name.clone(),
                Bytes(v.size).to_string(),
                v.backing.to_string(),
                v.pair.clone().unwrap_or_else(|| "-".into()),
                v.role.map_or_else(|| "-".into(), |r| r.to_string()),
                if v.writable { "rw" } else { "ro" }.into(),
                v.path.display().to_string(),
            ]
        })
        .collect();
    println!(
        "{}",
        grid(
            &["NAME", "SIZE", "KIND", "PAIR", "ROLE", "RW", "PATH"],
            rows,
            &[1]
        )
    );
}

/// Pairs, one row each.
pub fn pairs(pairs: &[PairInfo]) {
    if pairs.is_empty() {
        println!("no pairs; create one with `hbctl pair create NAME --pvol VOL --peer SITE`");
        return;
    }
    let rows = pairs
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.role.to_string(),
                if p.outdated {
                    format!("{} (outdated)", p.state)
                } else {
                    p.state.to_string()
                },
                p.mode.to_string(),
                p.kind.to_string(),
                p.peer.clone(),
                p.pvol.clone(),
                p.svol.clone(),
                Bytes(p.pending_bytes).to_string(),
                if p.copy.running {
                    format!("{:.0}%", p.copy.percent)
                } else {
                    "-".into()
                },
                if p.link_up { "up" } else { "down" }.into(),
            ]
        })
        .collect();
    let header = [
        "PAIR", "ROLE", "STATE", "MODE", "KIND", "PEER", "PVOL", "SVOL", "PENDING", "COPY", "LINK",
    ];
    println!("{}", grid(&header, rows, &[8, 9]));
}

/// One pair in detail (`pair status NAME`).
pub fn pair(p: &PairInfo) {
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    println!("pair        {}", p.name);
    println!(
        "role        {} (peer site '{}', link {})",
        p.role,
        p.peer,
        if p.link_up { "up" } else { "down" }
    );
    println!("state       {}", p.state);
    if let Some(reason) = p.outdated_reason.as_ref().filter(|_| p.outdated) {
        println!("outdated    yes: {reason}");
        println!(
            "            host writes are refused (EROFS) until a person resolves it: `hbctl pair resync {n} --discard-local` here keeps site '{peer}''s data (or `hbctl pair resync {n} --reverse` there); `--discard-remote` here keeps this site's",
            n = p.name,
            peer = p.peer
        );
    }
    println!(
        "volumes     PVOL {} -> SVOL {} ({})",
        p.pvol,
        p.svol,
        Bytes(p.size)
    );
    println!(
        "kind        {}{}",
        p.kind,
        if p.kind == Kind::Heartbeat {
            format!(", installed for heartbeats: {}", yes_no(p.installed))
        } else {
            String::new()
        }
    );
    println!(
        "mode        {} (fence {}, skew {}, auto-resync {})",
        p.mode,
        p.fence,
        Bytes(p.skew),
        if p.auto_resync { "on" } else { "off" }
    );
    let age = p
        .oldest_pending_ms
        .map(|ms| format!(", oldest {:.1}s", ms as f64 / 1000.0))
        .unwrap_or_default();
    println!(
        "pending     {} not yet at the other side{age}; {} queued in memory",
        Bytes(p.pending_bytes),
        Bytes(p.queued_bytes)
    );
    let c = &p.copy;
    if c.total_bytes > 0 || c.running {
        let skipped = if c.skipped_identical_blocks > 0 {
            format!(
                "; {} blocks skipped as identical",
                c.skipped_identical_blocks
            )
        } else {
            String::new()
        };
        let limit = match (c.running, c.limit_bytes_per_s) {
            (false, _) => String::new(),
            (true, 0) => format!("; held by {}", c.held_by),
            (true, r) => format!(", limit {}/s; held by {}", Bytes(r), c.held_by),
        };
        let eta = c
            .eta_s
            .map_or_else(String::new, |s| format!(", ETA {}m{:02}s", s / 60, s % 60));
        println!(
            "copy        {}{:.1}%: {} of {} at {}/s{eta}{skipped}{limit}",
            if c.running { "running, " } else { "last: " },
            c.percent,
            Bytes(c.copied_bytes),
            Bytes(c.total_bytes),
            Bytes(c.rate_bytes_per_s as u64)
        );
    }
    let per_s = |r: u64| format!("{}/s", Bytes(r));
    println!(
        "copy rate   {}, {}",
        match p.c_max_rate {
            0 => "no ceiling".to_string(),
            r => format!("ceiling {}", per_s(r)),
        },
        match p.c_min_rate {
            0 => "not slowed by host I/O".to_string(),
            r => format!("at least {} under competing host I/O", per_s(r)),
        }
    );
    println!(
        "integrity   checksum resync {}, split brain {}",
        if p.checksum_resync { "on" } else { "off" },
        name(&p.split_brain)
    );
    let g = &p.generation;
    println!(
        "generation  {}{}{}",
        g.current
            .as_deref()
            .unwrap_or("none (a copy to this site is incomplete)"),
        g.bitmap
            .as_ref()
            .map(|b| format!(", changes tracked since {b}"))
            .unwrap_or_default(),
        if g.history.is_empty() {
            String::new()
        } else {
            format!(", history {}", g.history.join(" "))
        }
    );
    if let Some(v) = &p.verdict {
        println!("verdict     {}: {}", name(&v.kind), v.detail);
    }
    if p.verify.running || p.verify.total_blocks > 0 {
        verify(p);
    }
}

/// The running or last verify of a pair.
pub fn verify(p: &PairInfo) {
    let v = &p.verify;
    let state = if v.running {
        "running"
    } else if v.stopped.is_some() {
        "stopped"
    } else {
        "done"
    };
    let first = if v.first_differing_offsets.is_empty() {
        String::new()
    } else {
        let offsets: Vec<String> = v
            .first_differing_offsets
            .iter()
            .map(|o| o.to_string())
            .collect();
        format!(" (first at byte offsets {})", offsets.join(", "))
    };
    println!(
        "verify      {state}, {:.1}%: {} of {} blocks compared, {} differ{first}{}{}",
        v.percent,
        v.checked_blocks,
        v.total_blocks,
        v.differing_blocks,
        if v.skipped_dirty_blocks > 0 {
            format!(", {} skipped as being written", v.skipped_dirty_blocks)
        } else {
            String::new()
        },
        v.stopped
            .as_ref()
            .map(|why| format!("; stopped: {why}"))
            .unwrap_or_default()
    );
    if !v.running && v.stopped.is_none() && v.differing_blocks > 0 {
        println!(
            "            the differing blocks are marked dirty: `hbctl pair resync {}` copies them",
            p.name
        );
    }
}

/// `link status`: per peer, its lanes, then its paths.
pub fn links(links: &[LinkInfo]) {
    if links.is_empty() {
        println!("no peers; add a [[peers]] entry to mirrord's config");
        return;
    }
    let rtt = |us: Option<u64>| {
        us.map_or_else(|| "-".into(), |us| format!("{:.2} ms", us as f64 / 1000.0))
    };
    for l in links {
        let sealed = if l.sealed {
            "sealed"
        } else {
            "NOT sealed (seal = false)"
        };
        println!("peer {} ({sealed})", name(&l.peer));
        let lanes = l
            .lanes
            .iter()
            .map(|lane| {
                let rejected: Vec<String> = lane
                    .frames_rejected
                    .iter()
                    .map(|(reason, n)| format!("{reason} {n}"))
                    .collect();
                vec![
                    lane.lane.clone(),
                    match (lane.up, lane.resuming) {
                        (true, _) => "up",
                        (false, true) => "resuming",
                        (false, false) => "down",
                    }
                    .into(),
                    lane.path.clone().unwrap_or_else(|| "-".into()),
                    rtt(lane.rtt_us),
                    lane.sessions.to_string(),
                    lane.sessions_resumed.to_string(),
                    if rejected.is_empty() {
                        "-".into()
                    } else {
                        rejected.join(", ")
                    },
                ]
            })
            .collect();
        let header = [
            "LANE",
            "STATE",
            "PATH",
            "RTT",
            "SESSIONS",
            "RESUMED",
            "REJECTED FRAMES",
        ];
        println!("{}", grid(&header, lanes, &[3, 4, 5]));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let paths = l
            .paths
            .iter()
            .map(|p| {
                vec![
                    p.name.clone(),
                    p.local.clone().unwrap_or_else(|| "-".into()),
                    p.remote.clone(),
                    p.state.clone(),
                    format!("{}s", now.saturating_sub(p.since) / 1000),
                    rtt(p.rtt_us),
                    Bytes(p.bytes_sent).to_string(),
                    Bytes(p.bytes_received).to_string(),
                    if p.lanes.is_empty() {
                        "-".into()
                    } else {
                        p.lanes.join(",")
                    },
                ]
            })
            .collect();
        let header = [
            "PATH", "LOCAL", "REMOTE", "STATE", "FOR", "RTT", "SENT", "RECEIVED", "LANES",
        ];
        println!("{}", grid(&header, paths, &[4, 5, 6, 7]));
    }
}
