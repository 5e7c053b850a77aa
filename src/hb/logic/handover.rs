//! The handover (seed 000, text of Fig 1: production fails over when its
//! group can no longer carry the duties), pure. Production that cannot
//! serve — a SYSTEM DOWN check of its own fails, or its group has fewer
//! than `min_hosts` hosts alive — steps down first ([`due`]: its step-down
//! hook, its takeover pairs outdated, done by the caller), then asks the
//! standby to take over ([`ask`]): one control message, which rides every
//! heartbeat on every enabled channel (networks and heartbeat mirrors)
//! until the standby has it, authenticated as every heartbeat is. The
//! standby takes over at once, without waiting for silence, unless it
//! cannot carry the duties or its QoS is worse than production's (seed
//! 002, Fig 6: [`decide`]); its answer travels back the same way and is
//! shown at both ends ([`answered`]). One request per step-down: a
//! refused one stays refused until a person re-arms production, which
//! withdraws a request not yet delivered (`Table::withdraw_handover`); the standby takes
//! over only on a request whose heartbeat says production stepped down.
//!
//! No thread of its own: the daemon calls it under the checker's lock (the
//! tick at production, the task that took the beat at the standby), the
//! simulator on its one thread.
//!
//! ```text
//!  production tick: cannot_serve ─> due ─> step-down (hook, pairs outdated) ─> ask ─> outbox
//!  standby, the request absorbed ─> decide ─> failover (once) or refusal ─> answer into the outbox
//!  production, the answer absorbed ─> answered ─> table (status), log, events
//! ```

use hbcore::vocab::Group;

use super::checker::Checker;
use super::message::{ControlBody, HandoverAnswer, HandoverRequest};
use super::qos::{can_carry, Qos, QosRule};
use super::step::queue_control;
use super::table::{Handover, Table};

/// Texts carried in a handover message are cut to this many bytes (a
/// control message rides a heartbeat beside others).
pub const TEXT_MAX: usize = 300;

/// The part named in production's QoS when its group is short of hosts.
pub const GROUP_PART: &str = "group";

/// A group's hosts: how many, how many alive, and how many it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCount {
    /// Hosts alive (this one included).
    pub alive: u32,
    /// Hosts in the group (`[cluster] group_members`, or this host alone).
    pub size: u32,
    /// `min_hosts`: fewer alive and the group cannot serve.
    pub min_hosts: u32,
}

impl GroupCount {
    /// Why the group is short of hosts, if it is.
    pub fn short(&self) -> Option<String> {
        (self.alive < self.min_hosts).then(|| {
            format!(
                "its group has {} of its {} hosts alive, fewer than min_hosts ({})",
                self.alive, self.size, self.min_hosts
            )
        })
    }
}

/// Why this production host cannot serve, if it cannot: the SYSTEM DOWN
/// checks that fail here, and a group short of hosts.
pub fn cannot_serve(system_down_failing: &[String], group: GroupCount) -> Option<String> {
    let mut why = vec![];
    if !system_down_failing.is_empty() {
        why.push(format!(
            "its SYSTEM DOWN check fails ({})",
            system_down_failing.join(", ")
        ));
    }
    why.extend(group.short());
    (!why.is_empty()).then(|| why.join("; "))
}

/// `text` cut to [`TEXT_MAX`] bytes (at a character boundary).
fn cut(mut text: String) -> String {
    if text.len() > TEXT_MAX {
        let mut end = TEXT_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// Production's tick: whether to step down for a handover now (`cannot`:
/// why it cannot serve, from [`cannot_serve`]; `peers`: the standby, for
/// the record). Records the step-down and the handover, once, and returns
/// the reason: the caller steps down, then calls [`ask`]. A handover
/// recorded but never asked (hbd stopped during its step-down) is returned
/// again, so that the step-down runs to its end before the request.
pub fn due(t: &mut Table, cannot: Option<String>, peers: &str, wall_ms: u64) -> Option<String> {
    if t.group != Group::Production {
        return None;
    }
    if let Some(h) = &t.handover {
        return h.request.is_none().then(|| h.reason.clone());
    }
    if t.stepped_down {
        // Stepped down already (the standby took over): nothing to hand over.
        return None;
    }
    let reason = cut(cannot?);
    t.stepped_down = true;
    t.handover = Some(Handover {
        from: t.host.clone(),
        to: peers.to_string(),
        reason: reason.clone(),
        since_ms: wall_ms,
        request: None,
        answer: None,
    });
    Some(reason)
}

/// After the step-down: the request, queued for the standby (`qos`: this
/// host's now). None when there is nothing to ask (re-armed meanwhile, or
/// asked before). Production's QoS names the group among its failing
/// parts when the group is what cannot serve, so that it ranks as what
/// cannot carry the duties.
pub fn ask(t: &mut Table, mut qos: Qos, wall_ms: u64) -> Option<HandoverRequest> {
    if t.group != Group::Production {
        return None;
    }
    let h = t.handover.as_ref().filter(|h| h.request.is_none())?;
    if qos.serious_failing.is_empty() {
        qos.serious_failing.push(GROUP_PART.into());
    }
    let request = HandoverRequest {
        // The id queue_control gives it: the answer names it.
        id: t.last_control + 1,
        reason: h.reason.clone(),
        asked_ms: wall_ms,
        qos,
    };
    queue_control(t, ControlBody::HandoverRequest(request.clone()));
    if let Some(h) = t.handover.as_mut() {
        h.request = Some(request.clone());
    }
    Some(request)
}

/// What the standby decided on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The answer (queued for production, and in the table).
    pub answer: HandoverAnswer,
    /// Take over now (the failover, once): the caller takes over the
    /// pairs and runs the failover hook.
    pub take: bool,
}

/// What the standby knows of itself when a request comes.
#[derive(Debug, Clone)]
pub struct Standing {
    /// Its QoS now.
    pub qos: Qos,
    /// The QoS rule (`[analysis] max_load`).
    pub rule: QosRule,
    /// Why its own group is short of hosts, if it is.
    pub group_short: Option<String>,
    /// It is its group's master (only the master fails over).
    pub master: bool,
}

/// The standby's decision on `request` from `from`: it takes over unless
/// it cannot carry the duties (QoS, a group short of hosts) or its QoS is
/// worse than production's; it says why either way. Records the failover
/// (once), the handover and the answer, queued for production.
pub fn decide(
    c: &mut Checker,
    from: &str,
    request: HandoverRequest,
    me: Standing,
    wall_ms: u64,
) -> Decision {
    let t = &mut c.table;
    let host = t.host.clone();
    let refusal = if t.group != Group::Standby {
        Some(format!(
            "{host} is a production host: only a standby takes over"
        ))
    } else if !me.master {
        Some(format!(
            "{host} is not its group's master: its master takes over"
        ))
    } else if !t.peer_stepped_down {
        // The heartbeat that brought it says production is active: a
        // request left over from before production was re-armed.
        Some("production's heartbeat that brought the request says it has not stepped down: taking over would leave two sites active".into())
    } else if t.failed_over {
        None
    } else {
        judge(&host, &me, &request.qos)
    };
    let (accepted, take, why) = match refusal {
        Some(why) => (false, false, why),
        None if t.failed_over => (true, false, format!("{host} had taken over already")),
        None => {
            t.failed_over = true;
            t.failover_held = None;
            (
                true,
                true,
                format!(
                    "taken over at the request of {from}, which cannot serve: {}",
                    request.reason
                ),
            )
        }
    };
    let answer = HandoverAnswer {
        request: request.id,
        by: t.host.clone(),
        accepted,
        why: cut(why),
        qos: me.qos,
        time_ms: wall_ms,
    };
    t.handover = Some(Handover {
        from: from.to_string(),
        to: t.host.clone(),
        reason: request.reason.clone(),
        since_ms: request.asked_ms,
        request: Some(request),
        answer: Some(answer.clone()),
    });
    queue_control(t, ControlBody::HandoverAnswer(answer.clone()));
    Decision { answer, take }
}

/// Why `host`, a standby standing as `me`, refuses to take over from
/// production with `theirs`, if it does.
fn judge(host: &str, me: &Standing, theirs: &Qos) -> Option<String> {
    let mut why = vec![];
    if let Some(short) = &me.group_short {
        why.push(format!("{host} cannot carry the duties: {short}"));
    }
    if let Err(not) = can_carry(&me.qos, &me.rule) {
        why.push(format!("{host} cannot carry the duties: {not}"));
    }
    if me.qos.rank() < theirs.rank() {
        why.push(format!(
            "its QoS ({}) is worse than production's ({})",
            me.qos.summary(),
            theirs.summary()
        ));
    }
    (!why.is_empty()).then(|| why.join("; "))
}

/// Production takes the standby's answer: recorded when it answers this
/// host's request; `Err(why)` when it answers none (an old request's).
pub fn answered(t: &mut Table, answer: HandoverAnswer) -> Result<&Handover, String> {
    let asked = t
        .handover
        .as_mut()
        .filter(|h| h.request.as_ref().is_some_and(|r| r.id == answer.request));
    match asked {
        Some(h) => {
            h.answer = Some(answer);
            Ok(h)
        }
        None => Err(format!(
            "{} answered handover request {}, which is not this host's request under way; ignored",
            answer.by, answer.request
        )),
    }
}

#[cfg(test)]
mod tests;
