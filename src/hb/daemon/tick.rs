//! The tick: once per interval, send a heartbeat on every enabled channel
//! (Fig 6), read every enabled receiving mirror (Fig 7), evaluate, step the
//! channels' counters every period (seed 002, Fig 4) and start a fault
//! analysis when one goes BAD, log what changed, start the failover (if
//! this host can carry the duties) or the step-down, run the local checks
//! and, at production that cannot serve, the handover, save the table (so `table.json` is never more than an interval behind).
//! The networks' sockets and receivers are in `netio`.
//!
//! Slot writes and reads run on tokio's blocking threads (a write on hbfs
//! waits for the storage, in sync mode for the peer site), each within the
//! interval; the tick waits for them, so a hung volume costs one interval
//! and marks its mirror, never the other channels' heartbeats.
//!
//! [`Ticker`] belongs to the tick task alone; it holds the parts it uses
//! (shared, networks, analyzer, checks, mirrors, open volumes) and its own
//! counts (ticks, production's return told, the handover's step-down).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hbcore::report;
use hbcore::vocab::Level;

use super::analyzer::Analyzer;
use super::checks::Checks;
use super::controls::absorb;
use super::failover::{self, fail_over, StepDown};
use super::handover::Handover;
use super::install::Mirrors;
use super::netio::Networks;
use super::report::qos_now;
use super::shared::Shared;
use super::slot::{read_slot, write_slot, OpenFiles};
use crate::hb::api::Source;
use crate::hb::logic::checker::{At, ClockChange};
use crate::hb::logic::message::Beat;
use crate::hb::logic::qos::can_carry;
use crate::hb::logic::step::{commit_failover, tick_step, Absence, FailoverStep, TickOutcome};
use crate::hb::logic::table::Direction;
use crate::hb::logic::watch::Observation;

/// The tick and what it uses: every part of hbd but the control server.
pub struct Ticker {
    shared: Arc<Shared>,
    nets: Arc<Networks>,
    analyzer: Arc<Analyzer>,
    checks: Arc<Checks>,
    mirrors: Arc<Mirrors>,
    files: Arc<OpenFiles>,
    /// Ticks since start (the counters' period is a number of them).
    ticks: AtomicU64,
    /// The standby has logged that production returned after its failover.
    told_returned: AtomicBool,
    /// Production's handover (its step-down under way).
    handover: Handover,
}

impl Ticker {
    /// The tick over these parts, none done yet.
    pub fn new(
        shared: Arc<Shared>,
        nets: Arc<Networks>,
        analyzer: Arc<Analyzer>,
        checks: Arc<Checks>,
        mirrors: Arc<Mirrors>,
        files: Arc<OpenFiles>,
    ) -> Ticker {
        Ticker {
            shared,
            nets,
            analyzer,
            checks,
            mirrors,
            files,
            ticks: AtomicU64::new(0),
            told_returned: AtomicBool::new(false),
            handover: Handover::default(),
        }
    }

    /// Ticks every interval, for ever (the daemon aborts it at shutdown).
    pub async fn tick_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.shared.config.interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.tick().await;
            super::service::tick_done();
        }
    }

    async fn tick(self: &Arc<Self>) {
        let master = self.shared.is_group_master(); // seed 000: only the group's master sends and fails over
        if master {
            self.send().await;
            self.receive_mirrors().await;
        }
        let now = Instant::now();
        let absent = Absence {
            stopped: self.shared.clock.take_stopped(),
            suspended: self.shared.clock.suspended(now),
        };
        let every = u64::from(self.shared.config.counter.period_intervals.max(1));
        let period = (self.ticks.fetch_add(1, Ordering::Relaxed) + 1) % every == 0;
        let TickOutcome {
            transitions,
            counted,
            gaps,
            failover: reason,
            step_down,
            returned,
            stalled,
            clocks,
        } = tick_step(&mut self.shared.checker(), now, period, absent);
        if let Some(stall) = stalled {
            let text = format!("this host was stalled for {stall:?} (stopped, frozen or suspended): the silence it could not hear meanwhile is no evidence; every channel's last heartbeat counts as {stall:?} later");
            tracing::warn!("{text}");
            self.shared.event(Source::Local, None, "stall", text);
        }
        self.clocks_changed(clocks);
        let returned =
            returned.map(|stepped_down| (self.shared.config.peers.join(", "), stepped_down));
        for t in transitions {
            if t.failed {
                tracing::warn!(channel = %t.channel, "heartbeat channel FAILED: {}", t.why);
                self.shared.event(
                    Source::Local,
                    None,
                    &t.channel,
                    format!("FAILED: {}", t.why),
                );
            } else {
                tracing::info!(channel = %t.channel, "heartbeat channel back to ENABLE: {}", t.why);
                self.shared.event(
                    Source::Local,
                    None,
                    &t.channel,
                    format!("ENABLE again: {}", t.why),
                );
            }
        }
        self.analyzer.counted(counted, gaps);
        if let Some(reason) = reason.filter(|_| master) {
            self.failover_due(reason, now);
        }
        self.analyzer.expire_analyses();
        if let Some((peer, reason)) = step_down {
            let shared = Arc::clone(&self.shared);
            tokio::spawn(async move {
                failover::step_down(&shared, peer, reason, StepDown::PeerTookOver).await
            });
        }
        self.tell_returned(returned);
        self.mirrors.retry_protection();
        self.checks.run(&self.shared).await;
        if master {
            // Production that cannot serve steps down and asks the standby.
            self.handover.tick(&self.shared, &self.checks);
        }
        // The table on disk follows the table within one interval.
        let shared = Arc::clone(&self.shared);
        if let Err(e) = tokio::task::spawn_blocking(move || shared.save()).await {
            tracing::error!("saving the status table did not finish: {e}");
        }
    }

    /// Logs a peer clock offset that went past `clock_warn_ms` or came back:
    /// shown, never acted on.
    fn clocks_changed(&self, clocks: Vec<ClockChange>) {
        let limit = self.shared.config.clock_warn_ms;
        for c in clocks {
            let peers = self.shared.config.peers.join(", ");
            let text = if c.past {
                format!("the clock of {peers} is {} ms off this host's (beyond clock_warn_ms = {limit}), measured on {}: nothing depends on it (liveness is judged on this host's monotonic clock), but logs and notices of the two sites will not line up; check NTP at both sites", c.offset_ms, c.channel)
            } else {
                format!(
                    "the clock of {peers} is within {limit} ms of this host's again ({} ms, on {})",
                    c.offset_ms, c.channel
                )
            };
            if c.past {
                tracing::warn!(channel = %c.channel, offset_ms = c.offset_ms, "{text}");
            } else {
                tracing::info!(channel = %c.channel, offset_ms = c.offset_ms, "{text}");
            }
            self.shared.event(Source::Local, None, &c.channel, text);
        }
    }

    /// At a standby that failed over, says once that production is alive
    /// again (the classic split brain): its heartbeats tell production,
    /// which steps down.
    fn tell_returned(&self, returned: Option<(String, bool)>) {
        let Some((production, stepped_down)) = returned else {
            self.told_returned.store(false, Ordering::Relaxed);
            return;
        };
        if self.told_returned.swap(true, Ordering::Relaxed) {
            return;
        }
        let text = if stepped_down {
            format!("production ({production}) is alive again after this site failed over; it has stepped down")
        } else {
            format!("production ({production}) is alive again after this site failed over: two sites may be active; this site's heartbeats tell production to step down")
        };
        tracing::error!("{text}");
        self.shared.event(Source::Local, None, "failover", text);
    }

    /// Fig 6: to the network and to every PVOL, if turned on (Fig 8): a
    /// turned-off channel carries nothing, control messages included. A
    /// mirror whose pair is not protected from split is not written.
    async fn send(&self) {
        let (serial, frame) = match self.shared.next_frame() {
            Ok(next) => next,
            Err(e) => return tracing::error!("cannot encode a heartbeat: {}", report::chain(&e)),
        };
        let (network, targets) = {
            let c = self.shared.checker();
            let t = &c.table;
            let targets: Vec<(String, PathBuf)> = t
                .devices
                .iter()
                .filter(|d| {
                    d.direction == Direction::Send && t.mirror_on(d) && d.pair_problem.is_none()
                })
                .filter_map(|d| d.address.clone().map(|a| (d.name.clone(), a)))
                .collect();
            // FAILED channels are still used, so they can recover.
            (t.network_on(), targets)
        };
        if network {
            self.nets.send(&self.shared, &frame).await;
        }
        // All writes go to the ring together: one submission, not one thread each.
        let deadline = self.shared.config.interval();
        let frame = &frame;
        let writes = targets.into_iter().map(|(name, path)| async move {
            let written =
                tokio::time::timeout(deadline, write_slot(&self.files, &path, frame)).await;
            let shown = path.display();
            let result = match written {
                Ok(Ok(())) => Ok(serial),
                Ok(Err(e)) => Err(format!("cannot write {shown}: {e}")),
                Err(_) => Err(format!("write of {shown} took longer than the interval")),
            };
            (name, result)
        });
        for (name, result) in futures_util::future::join_all(writes).await {
            self.shared.checker().mirror_written(&name, result);
        }
    }

    /// Fig 7: read every receiving mirror turned on.
    async fn receive_mirrors(self: &Arc<Self>) {
        let sources: Vec<(String, PathBuf)> = {
            let c = self.shared.checker();
            let t = &c.table;
            t.devices
                .iter()
                .filter(|d| d.direction == Direction::Receive && t.mirror_on(d))
                .filter_map(|d| d.address.clone().map(|a| (d.name.clone(), a)))
                .collect()
        };
        let deadline = self.shared.config.interval();
        let reads = sources.into_iter().map(|(name, path)| async move {
            let read = tokio::time::timeout(deadline, read_slot(&self.files, &path)).await;
            let shown = path.display();
            let beat = match read {
                Ok(Ok(buf)) => Beat::decode(buf.as_slice(), &self.shared.key)
                    .map_err(|e| format!("{shown}: {e}")),
                Ok(Err(e)) => Err(format!("cannot read {shown}: {e}")),
                Err(_) => Err(format!("read of {shown} took longer than the interval")),
            };
            (name, beat)
        });
        for (name, beat) in futures_util::future::join_all(reads).await {
            let seen = self.shared.checker().mirror_read(
                &name,
                beat.as_ref().map_err(String::clone),
                At::now(),
            );
            if let (Ok(beat), Observation::Advanced) = (&beat, seen) {
                absorb(&self.shared, &self.analyzer, beat).await;
            }
        }
    }

    /// The failover rule says fail over (every enabled channel says the
    /// peer is dead): done once, if this host can carry the duties (QoS,
    /// seed 002 Fig 6 636); else it waits, said once, and is tried every
    /// tick. The node-dead verdict is recorded beside it.
    fn failover_due(&self, reason: String, now: Instant) {
        let carry = can_carry(
            &qos_now(&self.shared, &self.checks),
            &self.shared.config.qos_rule(),
        );
        let step = commit_failover(&mut self.shared.checker(), carry, now);
        match step {
            FailoverStep::Go { silent } => {
                let shared = Arc::clone(&self.shared);
                tokio::spawn(async move { fail_over(&shared, reason, silent).await });
                self.analyzer
                    .analysis_due("every channel failed: failover".into());
            }
            FailoverStep::Done => {}
            FailoverStep::Held { text, first } => {
                if first {
                    tracing::error!("FAILOVER HELD: {text}");
                    self.shared
                        .event(Source::Local, Some(Level::SystemDown), "failover", text);
                    self.analyzer
                        .analysis_due("every channel failed: failover held".into());
                }
            }
        }
    }
}
