//! `hbctl link status`: each peer's lanes and paths as the control API
//! answers them. Read by the control socket's task; everything it reads is
//! atomics and short locks.

use std::sync::Arc;

use hbcore::control::{LaneInfo, LinkInfo, PathInfo};

use super::PeerLink;

fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// One peer's link (`lanes`: its two lanes, which share the paths).
pub(super) fn link(lanes: &[Arc<PeerLink>], sealed: bool) -> LinkInfo {
    let paths = lanes.first().map(|l| Arc::clone(&l.paths));
    let lane_infos = lanes
        .iter()
        .map(|l| {
            let session = l.current();
            LaneInfo {
                lane: l.lane.to_string(),
                up: session.is_some(),
                resuming: l.is_resuming(),
                path: session.and_then(|s| s.wire.path_name()),
                rtt_us: l.stats.rtt().map(micros),
                sessions: l.stats.sessions(),
                sessions_resumed: l.stats.resumed(),
                requests_repeated: l.stats.repeated(),
                frames_rejected: l
                    .stats
                    .rejected()
                    .into_iter()
                    .map(|(reason, n)| (reason.to_string(), n))
                    .collect(),
            }
        })
        .collect();
    let path_infos = paths
        .iter()
        .flat_map(|paths| paths.iter())
        .map(|p| {
            let s = p.state();
            PathInfo {
                name: p.name.clone(),
                local: p.local.map(|l| l.to_string()),
                remote: p.remote.clone(),
                state: s.state.to_string(),
                since: s.since_ms,
                rtt_us: s.rtt_us,
                bytes_sent: s.bytes_sent,
                bytes_received: s.bytes_received,
                lanes: s.lanes.iter().map(ToString::to_string).collect(),
            }
        })
        .collect();
    LinkInfo {
        peer: lanes.first().map(|l| l.site.clone()).unwrap_or_default(),
        sealed,
        lanes: lane_infos,
        paths: path_infos,
    }
}
