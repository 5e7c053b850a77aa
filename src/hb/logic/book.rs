//! The analyses under way, pure (time as an argument): started, joined,
//! each side's report in, decided when both are (or alone, late). The
//! daemon's analyzer and the simulator ([`crate::hb::sim`]) both keep their
//! analyses here; the local check and the messages are theirs.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hbcore::throttle::Throttle;
use tokio::sync::oneshot;

use crate::hb::logic::analysis::{decide, node_dead, Analysis, Report, Verdict, VerdictKind};
use crate::hb::logic::qos::{takeover, QosRule, Takeover};

/// Analyses under way at most; the oldest is dropped beyond.
const PENDING_MAX: usize = 4;

/// The analyses under way.
pub struct Analyses {
    next: u64,
    pending: BTreeMap<String, Pending>,
    /// A channel came back since: an analysis is due once every one works.
    pub good_again: bool,
    /// Missing heartbeats are logged at most once a minute per channel.
    pub gaps: Throttle,
}

impl Default for Analyses {
    fn default() -> Analyses {
        Analyses {
            next: 0,
            pending: BTreeMap::new(),
            good_again: false,
            gaps: Throttle::new(Duration::from_secs(60), 64),
        }
    }
}

struct Pending {
    trigger: String,
    started: Instant,
    /// Every channel had failed when it started: decided alone (node-dead).
    dead: bool,
    running: bool,
    local: Option<Report>,
    remote: Option<Report>,
    waiters: Vec<oneshot::Sender<Analysis>>,
}

/// An analysis decided, taken off the book.
pub struct Decided {
    /// Its id.
    pub id: String,
    /// What started it.
    pub trigger: String,
    /// The verdict and the steps that led to it.
    pub verdict: (Verdict, Vec<String>),
    /// This host's report.
    pub local: Report,
    /// The peer's, if it answered.
    pub remote: Option<Report>,
    /// Who waits for it (`hbctl hb analyze`).
    pub waiters: Vec<oneshot::Sender<Analysis>>,
}

impl Decided {
    /// The analysis, decided at `time_ms`, and who waits for it.
    pub fn into_analysis(self, time_ms: u64) -> (Analysis, Vec<oneshot::Sender<Analysis>>) {
        let (verdict, steps) = self.verdict;
        let analysis = Analysis {
            id: self.id,
            time_ms,
            trigger: self.trigger,
            verdict,
            steps,
            qos: None,
            local: self.local,
            remote: self.remote,
        };
        (analysis, self.waiters)
    }
}

impl Analyses {
    fn insert(&mut self, id: &str, trigger: &str, dead: bool, now: Instant) -> &mut Pending {
        if !self.pending.contains_key(id) && self.pending.len() >= PENDING_MAX {
            let oldest = self
                .pending
                .iter()
                .min_by_key(|(_, p)| p.started)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                self.pending.remove(&oldest);
            }
        }
        self.pending
            .entry(id.to_string())
            .or_insert_with(|| Pending {
                trigger: trigger.to_string(),
                started: now,
                dead,
                running: false,
                local: None,
                remote: None,
                waiters: Vec::new(),
            })
    }

    /// No analysis under way.
    pub fn idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// Starts an analysis at `host` (`dead`: every channel failed); its id.
    pub fn start(
        &mut self,
        host: &str,
        wall_ms: u64,
        trigger: &str,
        dead: bool,
        now: Instant,
    ) -> String {
        self.next += 1;
        let id = format!("{host}-{wall_ms}.{}", self.next);
        self.insert(&id, trigger, dead, now);
        id
    }

    /// Joins analysis `id` of the peer (asked, or with its `remote` report).
    pub fn join(&mut self, id: &str, trigger: &str, remote: Option<Report>, now: Instant) {
        let p = self.insert(id, trigger, false, now);
        if remote.is_some() {
            p.remote = remote;
        }
    }

    /// Whoever calls this first runs the local check of analysis `id` (once).
    pub fn claim_local(&mut self, id: &str) -> bool {
        match self.pending.get_mut(id) {
            Some(p) if !p.running && p.local.is_none() => {
                p.running = true;
                true
            }
            _ => false,
        }
    }

    /// This host's report of analysis `id` is in: `None` if it is gone,
    /// else the trigger to send it to the peer with (none when node-dead).
    pub fn local_done(&mut self, id: &str, report: Report) -> Option<Option<String>> {
        let p = self.pending.get_mut(id)?;
        p.running = false;
        p.local = Some(report);
        Some((!p.dead).then(|| p.trigger.clone()))
    }

    /// Waits for analysis `id`; false if it is not under way.
    pub fn wait(&mut self, id: &str, tell: oneshot::Sender<Analysis>) -> bool {
        match self.pending.get_mut(id) {
            Some(p) => {
                p.waiters.push(tell);
                true
            }
            None => false,
        }
    }

    /// The analyses with this host's report in whose peer did not answer
    /// within `deadline` of their start.
    pub fn late(&self, now: Instant, deadline: Duration) -> Vec<String> {
        self.pending
            .iter()
            .filter(|(_, p)| {
                p.local.is_some() && now.saturating_duration_since(p.started) > deadline
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Decides analysis `id` if its reports are in, or, `alone`, on this
    /// host's report only (`failed_now`: every channel has failed since).
    /// A decided analysis leaves the book.
    pub fn decide(
        &mut self,
        id: &str,
        alone: bool,
        failed_now: bool,
        peer: &str,
        deadline: Duration,
    ) -> Option<Decided> {
        let p = self.pending.get(id)?;
        let all_failed = p.dead || (alone && failed_now);
        let verdict = match (&p.local, &p.remote) {
            (Some(l), _) if all_failed => node_dead(l, peer),
            (Some(l), Some(r)) => decide(l, r),
            (Some(_), None) if alone => (
                Verdict {
                    verdict: VerdictKind::None,
                    networks: vec![],
                    detail: format!(
                        "{peer} did not answer within {deadline:?} over the channels that work: no verdict"
                    ),
                },
                vec!["no report from the peer".into()],
            ),
            _ => return None,
        };
        let p = self.pending.remove(id)?;
        Some(Decided {
            id: id.to_string(),
            trigger: p.trigger,
            verdict,
            local: p.local?,
            remote: p.remote,
            waiters: p.waiters,
        })
    }
}

/// Fig 6, 632–644: for a local or remote fault with the peer's report, the
/// QoS comparison, kept in words in `analysis.qos`. Whether this host
/// should take over (a remote fault and a better QoS here).
pub fn compare_qos(analysis: &mut Analysis, rule: &QosRule) -> bool {
    let v = &analysis.verdict;
    let (VerdictKind::LocalFault | VerdictKind::RemoteFault, Some(remote)) =
        (v.verdict, &analysis.remote)
    else {
        return false;
    };
    let decision = takeover(&analysis.local.qos, &remote.qos, rule);
    analysis.qos = Some(format!(
        "here {}; at {} {}: {}",
        analysis.local.qos.summary(),
        remote.host,
        remote.qos.summary(),
        match &decision {
            Takeover::FailRemote => "this host can take over (Fig 6, 638)".to_string(),
            Takeover::FailLocal => "the peer can carry this host's duties (Fig 6, 644)".to_string(),
            Takeover::Nothing(why) => format!("nothing (Fig 6, 640): {why}"),
        }
    ));
    v.verdict == VerdictKind::RemoteFault && decision == Takeover::FailRemote
}
