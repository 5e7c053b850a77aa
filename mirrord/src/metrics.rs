//! mirrord's metrics (`metrics_listen`): per pair its state, lag (dirty,
//! queued, oldest pending), copy progress and rate, writes and bytes
//! mirrored; per peer link (each lane) up, round-trip time of the pings,
//! reconnects; refused handshakes by reason. Built at each scrape from the
//! site's own status, so they say what `hbctl pair status` says.

use std::sync::Arc;

use hbcore::metrics::{labels, Labels, Scrape};
use hbcore::vocab::PairState;

use crate::site::Site;

/// Every pair state, for the state set (one sample per state, 1 for the current).
const STATES: [PairState; 6] = [
    PairState::Smpl,
    PairState::Copy,
    PairState::Pair,
    PairState::Psus,
    PairState::Psue,
    PairState::Ssws,
];

/// The OpenMetrics text of `site` now.
pub fn scrape(site: &Site) -> String {
    let mut s = Scrape::default();
    let pairs = site.pair_status(None).unwrap_or_default();
    let pair = |p: &hbcore::control::PairInfo| {
        labels([
            ("pair", &p.name),
            ("role", &p.role.to_string()),
            ("peer", &p.peer),
        ])
    };
    s.gauge(
        "pair_state",
        "1 for the pair's current state (SMPL COPY PAIR PSUS PSUE SSWS), 0 for the others",
        pairs.iter().flat_map(|p| {
            STATES.iter().map(move |state| {
                let mut l = pair(p);
                l.push(("state".into(), state.to_string()));
                (l, f64::from(u8::from(p.state == *state)))
            })
        }),
    );
    let each = |f: fn(&hbcore::control::PairInfo) -> f64| -> Vec<(Labels, f64)> {
        pairs.iter().map(|p| (pair(p), f(p))).collect()
    };
    s.gauge(
        "pair_dirty_bytes",
        "Bytes of blocks changed on this side that the other lacks (dirty bitmap)",
        each(|p| p.pending_bytes as f64),
    );
    s.gauge(
        "pair_queued_bytes",
        "Adaptive mode: bytes of pending writes held in memory (at most the skew)",
        each(|p| p.queued_bytes as f64),
    );
    s.gauge(
        "pair_oldest_pending_seconds",
        "Age of the oldest unshipped change (0 when none)",
        each(|p| p.oldest_pending_ms.unwrap_or(0) as f64 / 1000.0),
    );
    s.gauge(
        "pair_copy_running",
        "1 while an initial copy or resync runs",
        each(|p| f64::from(u8::from(p.copy.running))),
    );
    s.gauge(
        "pair_copy_copied_bytes",
        "Bytes copied by the running or last copy",
        each(|p| p.copy.copied_bytes as f64),
    );
    s.gauge(
        "pair_copy_size_bytes",
        "Bytes the running or last copy has to copy",
        each(|p| p.copy.total_bytes as f64),
    );
    s.gauge(
        "pair_copy_progress_ratio",
        "Copied / to copy of the running or last copy (0 to 1)",
        each(|p| p.copy.percent / 100.0),
    );
    s.gauge(
        "pair_copy_rate_bytes_per_second",
        "Average rate of the running or last copy",
        each(|p| p.copy.rate_bytes_per_s),
    );
    s.gauge(
        "pair_copy_eta_seconds",
        "Seconds until the running copy ends at its rate of the last 10 s (only while one runs and its rate is known)",
        pairs
            .iter()
            .filter_map(|p| p.copy.eta_s.map(|eta| (pair(p), eta as f64)))
            .collect::<Vec<_>>(),
    );
    s.gauge(
        "pair_link_up",
        "1 when the remote link of the pair is up",
        each(|p| f64::from(u8::from(p.link_up))),
    );
    let shipped: Vec<_> = pairs
        .iter()
        .map(|p| (pair(p), site.shipped().of(&p.name)))
        .collect();
    s.counter(
        "pair_mirrored_writes",
        "Writes (host writes and copy frames) put on the link for the other side",
        shipped.iter().map(|(l, (w, _))| (l.clone(), *w)),
    );
    s.counter(
        "pair_mirrored_bytes",
        "Bytes put on the link for the other side",
        shipped.iter().map(|(l, (_, b))| (l.clone(), *b)),
    );
    link_metrics(&mut s, site);
    s.encode()
}

fn link_metrics(s: &mut Scrape, site: &Site) {
    let links: Vec<_> = site
        .link()
        .peer_links()
        .map(|l| {
            let lane = format!("{:?}", l.lane).to_lowercase();
            (labels([("peer", &l.site), ("lane", &lane)]), Arc::clone(l))
        })
        .collect();
    s.gauge(
        "link_up",
        "1 when the session with the peer on this lane is open",
        links
            .iter()
            .map(|(l, p)| (l.clone(), f64::from(u8::from(p.is_up())))),
    );
    s.gauge(
        "link_rtt_seconds",
        "Round-trip time of the last answered ping on the link",
        links
            .iter()
            .filter_map(|(l, p)| p.stats.rtt().map(|d| (l.clone(), d.as_secs_f64()))),
    );
    s.counter(
        "link_pings_answered",
        "Pings answered by the peer (each a round-trip measurement)",
        links.iter().map(|(l, p)| (l.clone(), p.stats.pongs())),
    );
    s.counter(
        "link_sessions",
        "Sessions opened with the peer on this lane",
        links.iter().map(|(l, p)| (l.clone(), p.stats.sessions())),
    );
    s.counter(
        "link_reconnects",
        "Sessions opened after the first (the link came back)",
        links
            .iter()
            .map(|(l, p)| (l.clone(), p.stats.sessions().saturating_sub(1))),
    );
    s.counter(
        "link_sessions_resumed",
        "Sessions that took over a lost one's unanswered requests (a path change)",
        links.iter().map(|(l, p)| (l.clone(), p.stats.resumed())),
    );
    path_metrics(s, site);
    s.counter(
        "link_frames_rejected",
        "Frames of open sessions refused, by reason (each ended its session)",
        links.iter().flat_map(|(l, p)| {
            p.stats.rejected().into_iter().map(move |(reason, n)| {
                let mut l = l.clone();
                l.push(("reason".into(), reason.into()));
                (l, n)
            })
        }),
    );
    s.counter(
        "link_refused_handshakes",
        "Link connections refused, by reason",
        site.link()
            .refused()
            .into_iter()
            .map(|(reason, n)| (labels([("reason", reason)]), n)),
    );
}

/// Each network path to each peer (shared by both lanes).
fn path_metrics(s: &mut Scrape, site: &Site) {
    let mut paths = Vec::new();
    for link in site.link().status() {
        for p in link.paths {
            paths.push((labels([("peer", &link.peer), ("path", &p.name)]), p));
        }
    }
    s.gauge(
        "link_path_up",
        "1 when a lane's session runs over this path",
        paths
            .iter()
            .map(|(l, p)| (l.clone(), f64::from(u8::from(p.state == "up")))),
    );
    s.gauge(
        "link_path_rtt_seconds",
        "Round-trip time of the last answered ping over this path",
        paths
            .iter()
            .filter_map(|(l, p)| p.rtt_us.map(|us| (l.clone(), us as f64 / 1e6))),
    );
    s.counter(
        "link_path_sent_bytes",
        "Bytes sent over this path",
        paths.iter().map(|(l, p)| (l.clone(), p.bytes_sent)),
    );
    s.counter(
        "link_path_received_bytes",
        "Bytes received over this path",
        paths.iter().map(|(l, p)| (l.clone(), p.bytes_received)),
    );
}

/// Starts the endpoint if `metrics_listen` is set; it ends with `stop`.
pub async fn start(
    config: &crate::config::Config,
    site: &Arc<Site>,
    stop: tokio_util::sync::CancellationToken,
) -> Result<(), hbcore::metrics::MetricsError> {
    let Some(address) = config.metrics_listen else {
        return Ok(());
    };
    let site = Arc::clone(site);
    hbcore::metrics::serve(address, move || scrape(&site), async move {
        stop.cancelled().await
    })
    .await
}
