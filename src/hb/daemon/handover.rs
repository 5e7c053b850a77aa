//! The handover wired (the decisions are [`crate::hb::logic::handover`]'s):
//! at production, each tick after the local checks, a SYSTEM DOWN check
//! that fails or a group short of `min_hosts` hosts makes this host step
//! down (the step-down hook, its `take_over` pairs outdated) and then ask
//! the standby to take over; at the standby, the request taken from a
//! heartbeat is decided on its QoS now and, if accepted, is the failover
//! (pairs taken over, the failover hook, once); at production, the answer
//! is recorded. Each end logs and records what it did; `hbctl hb status`
//! shows the table's `handover`.
//!
//! [`Handover`] belongs to the tick (production's side); the standby's and
//! the answer's functions run on the task that absorbed the heartbeat (a
//! UDP receiver, or the tick for a mirror). The step-down and the failover
//! run on tasks of their own.
//!
//! ```text
//!  tick: Checks::failing(SYSTEM DOWN), Shared::group_count ─> handover::due
//!   └═> task: step_down (outdate pairs, hook) ─> handover::ask ─> outbox (every heartbeat, every channel)
//!  standby, absorb: HandoverRequest ─> qos_now ─> handover::decide ─> answer into the outbox
//!   └═> failover task (accepted, once): pairs taken over, the hook
//!  production, absorb: HandoverAnswer ─> handover::answered ─> log, event
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use hbcore::vocab::Level;

use super::checks::Checks;
use super::failover::{fail_over, step_down, StepDown};
use super::report::qos_now;
use super::shared::Shared;
use crate::hb::api::Source;
use crate::hb::logic::handover::{self, cannot_serve, Standing};
use crate::hb::logic::message::{HandoverAnswer, HandoverRequest};
use crate::hb::logic::table::now_ms;

/// Production's side of the handover: whether its step-down is under way.
#[derive(Default)]
pub struct Handover {
    /// A step-down for a handover runs (its request follows it).
    stepping_down: Arc<AtomicBool>,
}

impl Handover {
    /// After the local checks, at production (the group's master): steps
    /// down and asks the standby when this host cannot serve (once).
    pub fn tick(&self, shared: &Arc<Shared>, checks: &Arc<Checks>) {
        let failing = checks.failing(&shared.config.checks, Level::SystemDown);
        let cannot = cannot_serve(&failing, shared.group_count());
        let peers = shared.config.peers.join(", ");
        let due = handover::due(&mut shared.checker().table, cannot, &peers, now_ms());
        let Some(reason) = due else {
            return;
        };
        if self.stepping_down.swap(true, Ordering::SeqCst) {
            return; // under way
        }
        let (shared, checks) = (Arc::clone(shared), Arc::clone(checks));
        let busy = Arc::clone(&self.stepping_down);
        tokio::spawn(async move {
            let text = format!("this host cannot serve: {reason}; it hands over to {peers}");
            step_down(&shared, peers.clone(), text, StepDown::Handover).await;
            let qos = qos_now(&shared, &checks);
            let asked = handover::ask(&mut shared.checker().table, qos, now_ms());
            if let Some(request) = asked {
                let text = format!(
                    "asked {peers} to take over (request {}): this host cannot serve ({}) and has stepped down",
                    request.id, request.reason
                );
                tracing::error!("HANDOVER: {text}");
                shared.event(Source::Local, Some(Level::SystemDown), "handover", text);
            }
            shared.save();
            busy.store(false, Ordering::SeqCst);
        });
    }
}

/// At the standby: production's request, decided on this host's QoS now;
/// accepted, it is the failover (once).
pub fn requested(shared: &Arc<Shared>, checks: &Checks, from: &str, request: HandoverRequest) {
    let me = Standing {
        qos: qos_now(shared, checks),
        rule: shared.config.qos_rule(),
        group_short: shared.group_count().short(),
        master: shared.is_group_master(),
    };
    let reason = request.reason.clone();
    let id = request.id;
    let decision = handover::decide(&mut shared.checker(), from, request, me, now_ms());
    let why = &decision.answer.why;
    if decision.answer.accepted {
        let text = format!("{from} asked this site to take over (request {id}): {reason}; {why}");
        tracing::error!("HANDOVER ACCEPTED: {text}");
        shared.event(Source::Peer, Some(Level::SystemDown), "handover", text);
    } else {
        let text =
            format!("{from} asked this site to take over (request {id}): {reason}; REFUSED: {why}");
        tracing::error!("HANDOVER REFUSED: {text}");
        shared.event(Source::Peer, Some(Level::SystemDown), "handover", text);
    }
    if decision.take {
        let shared = Arc::clone(shared);
        let reason = format!(
            "{from} asked this site to take over: it cannot serve ({reason}) and has stepped down"
        );
        let silent = shared
            .checker()
            .silent_for(std::time::Instant::now())
            .unwrap_or_default();
        tokio::spawn(async move { fail_over(&shared, reason, silent).await });
    }
}

/// At production: the standby's answer, recorded.
pub fn answered(shared: &Shared, answer: HandoverAnswer) {
    let by = answer.by.clone();
    let recorded = handover::answered(&mut shared.checker().table, answer)
        .map(|h| h.answer.clone().map(|a| (a.accepted, a.why)));
    match recorded {
        Ok(Some((true, why))) => {
            let text = format!("{by} took over at this host's request: {why}");
            tracing::warn!("HANDOVER DONE: {text}");
            shared.event(Source::Peer, None, "handover", text);
        }
        Ok(Some((false, why))) => {
            let text = format!("{by} REFUSED to take over: {why}; this host has stepped down and nothing serves: repair either site, then `hbctl hb rearm` here (this host asks again if it still cannot serve)");
            tracing::error!("HANDOVER REFUSED: {text}");
            shared.event(Source::Peer, Some(Level::SystemDown), "handover", text);
        }
        Ok(None) => {}
        Err(why) => tracing::warn!("{why}"),
    }
}
