//! The fault analyzer (seed 002, Figs 6–8), wired: when a channel's counter
//! reaches 0 (or on `hbctl hb analyze`), an analysis starts. If every
//! channel has failed, the peer is deemed dead (`node-dead`) without an
//! exchange. Otherwise the analysis is distributed over the channels that
//! still work: the side that is not the master (the standby; production is
//! the master) asks the master with an `AnalysisRequest`; each side runs
//! its local network check (`netcheck`) and sends its [`Report`] in an
//! `AnalysisReport` (both are control messages: they ride every heartbeat
//! on every enabled channel until acknowledged); a side that receives a
//! report joins the analysis and answers with its own. With both reports,
//! each side runs the decision routine
//! ([`decide`](crate::hb::logic::analysis::decide)) and records the verdict: the
//! log, an event with the evidence, the table (`analysis`), the
//! `alert` command. A peer that does not answer within
//! [`Config::answer_deadline`](crate::hb::config::Config::answer_deadline)
//! leaves the verdict `none` (or `node-dead`, if every channel failed
//! meanwhile).
//!
//! ```text
//!  counter 0 ─> analysis_due ─> start_analysis ─┬─ standby: AnalysisRequest ═> outbox ═> production
//!                                              └═> spawn: local_report (blocking: netcheck) ─> AnalysisReport ═> peer
//!  peer's AnalysisReport ─> analysis_reported ─> (join: local_report) ─> decide ─> complete ─> verdict
//! ```
//!
//! [`Analyzer`] is shared by the tick task, the tasks that absorb a beat
//! (UDP receivers, tick) and the control server's tasks; its book of
//! analyses is behind one lock, never held across an await; each local
//! report runs on a task of its own.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hbcore::throttle::{suppressed_note, Verdict as Say};
use hbcore::vocab::{Group, Level};
use tokio::sync::oneshot;

use super::checks::Checks;
use super::failover::fail_over;
use super::failover::run_command;
use super::lock::lock;
use super::report::local_report;
use super::shared::Shared;
use crate::hb::error::HbError;
use crate::hb::logic::analysis::{Analysis, Report, VerdictKind};
use crate::hb::logic::checker::CounterChange;
use crate::hb::logic::counter::Change;
use crate::hb::logic::message::ControlBody;
use crate::hb::logic::step::commit_failover_on_fault;
use crate::hb::logic::table::now_ms;

use crate::hb::logic::book::{compare_qos, Analyses, Decided};

/// The fault analyzer: the analyses under way (their book), and what it
/// uses: what every task shares, and the local checks' outcomes (for this
/// host's QoS in its report).
pub struct Analyzer {
    shared: Arc<Shared>,
    checks: Arc<Checks>,
    book: Mutex<Analyses>,
}

impl Analyzer {
    /// The analyzer, no analysis under way.
    pub fn new(shared: Arc<Shared>, checks: Arc<Checks>) -> Analyzer {
        Analyzer {
            shared,
            checks,
            book: Mutex::new(Analyses::default()),
        }
    }

    /// What it uses, lent to a part that needs this host's QoS on a
    /// control message (the handover at the standby).
    pub fn parts(&self) -> (&Arc<Shared>, &Arc<Checks>) {
        (&self.shared, &self.checks)
    }

    /// Production leads the distributed analysis (the seed's master).
    fn is_master(&self) -> bool {
        self.shared.config.group == Group::Production
    }

    /// The counters' changes since the last tick: logged and recorded; a
    /// channel gone BAD starts an analysis; new gaps are a warning.
    pub fn counted(self: &Arc<Self>, changes: Vec<CounterChange>, gaps: Vec<(String, u64)>) {
        for (channel, missing) in gaps {
            let say = lock(&self.book).gaps.note(&channel, "gaps");
            if let Say::Say { suppressed } = say {
                tracing::warn!(channel = %channel, "{missing} heartbeat(s) missing in the last counter period (gaps in the sequence numbers): the channel loses messages{}", suppressed_note(suppressed, Duration::from_secs(60)));
            }
        }
        let mut bad = vec![];
        let mut good = false;
        for ch in changes {
            match ch.change {
                Change::Bad => {
                    let text = "BAD: its counter reached 0 (silent for the counter's periods); fault analysis".to_string();
                    tracing::warn!(channel = %ch.channel, "heartbeat channel {text}");
                    self.shared
                        .event(crate::hb::api::Source::Local, None, &ch.channel, text);
                    bad.push(ch.channel);
                }
                Change::Good => {
                    tracing::info!(channel = %ch.channel, "heartbeat channel GOOD again: its counter is above 0");
                    self.shared.event(
                        crate::hb::api::Source::Local,
                        None,
                        &ch.channel,
                        "GOOD again: its counter is above 0".into(),
                    );
                    good = true;
                }
            }
        }
        if good {
            lock(&self.book).good_again = true;
        }
        if !bad.is_empty() {
            self.analysis_due(format!("{} BAD", bad.join(", ")));
        } else {
            self.after_good_again();
        }
    }

    /// After a channel came back: once every channel here works again (by
    /// both rules), an analysis says whether the fault the last one found
    /// is gone.
    fn after_good_again(self: &Arc<Self>) {
        if !lock(&self.book).good_again {
            return;
        }
        let (all_good, was_fault) = {
            let c = self.shared.checker();
            let t = &c.table;
            (
                t.channels.iter().all(|ch| !ch.failed()),
                t.analysis.as_ref().is_some_and(|a| {
                    !matches!(
                        a.verdict.verdict,
                        VerdictKind::None | VerdictKind::ConfigError
                    )
                }),
            )
        };
        // Nothing to clear up; or cleared up by the analysis now started.
        let settled =
            !was_fault || (all_good && self.analysis_due("every channel GOOD again".into()));
        if settled {
            lock(&self.book).good_again = false;
        }
    }

    /// Starts an analysis unless one is under way; whether it did.
    pub fn analysis_due(self: &Arc<Self>, trigger: String) -> bool {
        let idle = lock(&self.book).idle();
        if idle {
            self.start_analysis(trigger);
        }
        idle
    }

    /// Starts an analysis (Fig 6): node-dead if every channel failed, else
    /// the local check here and, at the standby, a request to the master.
    /// Returns its id.
    pub fn start_analysis(self: &Arc<Self>, trigger: String) -> String {
        let dead = self.shared.checker().all_channels_failed();
        let id = lock(&self.book).start(
            &self.shared.config.host,
            now_ms(),
            &trigger,
            dead,
            Instant::now(),
        );
        tracing::info!(id = %id, "fault analysis: {trigger}");
        if !dead && !self.is_master() {
            self.shared.queue(ControlBody::AnalysisRequest {
                id: id.clone(),
                trigger: trigger.clone(),
            });
        }
        self.run_local(id.clone());
        id
    }

    /// `hbctl hb analyze`: a new analysis, waited for.
    pub async fn analyze_now(self: &Arc<Self>) -> Result<Analysis, HbError> {
        let id = self.start_analysis("asked by hbctl hb analyze".into());
        let (tell, told) = oneshot::channel();
        if !lock(&self.book).wait(&id, tell) {
            return self.last_analysis();
        }
        let limit = self.shared.config.answer_deadline() + self.shared.config.echo_duration() * 2;
        match tokio::time::timeout(limit, told).await {
            Ok(Ok(analysis)) => Ok(analysis),
            _ => self.last_analysis(),
        }
    }

    fn last_analysis(&self) -> Result<Analysis, HbError> {
        self.shared
            .checker()
            .table
            .analysis
            .clone()
            .ok_or(HbError::NoAnalysis)
    }

    /// The master is asked for an analysis (Fig 6, 612).
    pub fn analysis_requested(self: &Arc<Self>, peer: &str, id: String, trigger: String) {
        tracing::info!(id = %id, "fault analysis asked by {peer}: {trigger}");
        lock(&self.book).join(&id, &trigger, None, Instant::now());
        self.run_local(id);
    }

    /// The peer's report (Fig 7, 716): joined, and decided once both are in.
    pub fn analysis_reported(self: &Arc<Self>, id: String, trigger: String, report: Report) {
        lock(&self.book).join(&id, &trigger, Some(report), Instant::now());
        self.run_local(id.clone());
        self.try_decide(&id);
    }

    /// Runs this host's part of analysis `id` once: the local check, the
    /// report to the peer (unless node-dead), then the decision if it can.
    fn run_local(self: &Arc<Self>, id: String) {
        if !lock(&self.book).claim_local(&id) {
            return;
        }
        let analyzer = Arc::clone(self);
        tokio::spawn(async move {
            let report = local_report(&analyzer.shared, &analyzer.checks).await;
            let Some(tell) = lock(&analyzer.book).local_done(&id, report.clone()) else {
                return;
            };
            if let Some(trigger) = tell {
                analyzer.shared.queue(ControlBody::AnalysisReport {
                    id: id.clone(),
                    trigger,
                    report: Box::new(report),
                });
            }
            analyzer.try_decide(&id);
        });
    }

    /// Decides analysis `id` if its reports are in (or, `alone`, on this
    /// host's report only).
    fn try_decide_with(self: &Arc<Self>, id: &str, alone: bool) {
        let peer = self.shared.config.peers.join(", ");
        let failed_now = alone && self.shared.checker().all_channels_failed();
        let decided: Option<Decided> = lock(&self.book).decide(
            id,
            alone,
            failed_now,
            &peer,
            self.shared.config.answer_deadline(),
        );
        if let Some(decided) = decided {
            let (analysis, waiters) = decided.into_analysis(now_ms());
            self.complete(analysis, waiters);
        }
    }

    fn try_decide(self: &Arc<Self>, id: &str) {
        self.try_decide_with(id, false);
    }

    /// Decides, on this host's evidence alone, the analyses whose peer did
    /// not answer in time (the tick calls it).
    pub fn expire_analyses(self: &Arc<Self>) {
        let deadline = self.shared.config.answer_deadline();
        let late = lock(&self.book).late(Instant::now(), deadline);
        for id in late {
            self.try_decide_with(&id, true);
        }
    }

    /// Records a decided analysis: the QoS comparison of a fault verdict
    /// (and, with `failover_on_fault`, its failover), the table, the log,
    /// an event with the evidence, the alert command, whoever waits.
    fn complete(self: &Arc<Self>, mut analysis: Analysis, waiters: Vec<oneshot::Sender<Analysis>>) {
        if compare_qos(&mut analysis, &self.shared.config.qos_rule()) {
            self.fail_over_on_fault(&analysis);
        }
        let v = &analysis.verdict;
        let networks = if v.networks.is_empty() {
            String::new()
        } else {
            format!(" ({})", v.networks.join(", "))
        };
        let text = format!("{}{networks}: {}", v.verdict, v.detail);
        let level = match v.verdict {
            VerdictKind::None => None,
            VerdictKind::NodeDead => Some(Level::SystemDown),
            _ => Some(Level::Serious),
        };
        match level {
            None => tracing::info!(id = %analysis.id, "fault analysis verdict: {text}"),
            Some(_) => tracing::warn!(id = %analysis.id, "fault analysis verdict: {text}"),
        }
        self.shared.checker().table.analysis = Some(analysis.clone());
        self.shared.analysis_event(level, text, &analysis);
        self.shared.save_file();
        if let (Some(level), Some(alert)) = (level, self.shared.config.failover.alert.clone()) {
            let env = vec![
                ("HBD_EVENT", "analysis".to_string()),
                ("HBD_LEVEL", level.to_string()),
                ("HBD_PART", "analysis".to_string()),
                ("HBD_VERDICT", v.verdict.to_string()),
                ("HBD_NETWORKS", v.networks.join(",")),
                ("HBD_DETAIL", v.detail.clone()),
                ("HBD_HOST", self.shared.config.host.clone()),
                (
                    "HBD_ANALYSIS",
                    serde_json::to_string(&analysis).unwrap_or_default(),
                ),
            ];
            tokio::spawn(async move {
                run_command("alert", &alert, env, Duration::from_secs(30)).await;
            });
        }
        for w in waiters {
            let _ = w.send(analysis.clone());
        }
    }

    /// With `failover_on_fault`, a standby whose analysis found production
    /// faulted and whose QoS says it can do better takes over (Fig 6, 638).
    fn fail_over_on_fault(self: &Arc<Self>, analysis: &Analysis) {
        if !self.shared.config.analysis.failover_on_fault
            || self.shared.config.group != Group::Standby
        {
            return;
        }
        let go = commit_failover_on_fault(&mut self.shared.checker());
        if go {
            let v = &analysis.verdict;
            let reason = format!(
                "fault analysis {}: remote-fault ({}): {}; this host's QoS exceeds production's and it can carry the duties (failover_on_fault)",
                analysis.id,
                v.networks.join(", "),
                v.detail
            );
            let shared = Arc::clone(&self.shared);
            tokio::spawn(async move { fail_over(&shared, reason, Duration::ZERO).await });
        }
    }
}
