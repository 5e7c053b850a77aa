//! One side's decisions, pure and synchronous: what the daemon's async
//! rooms (`tick`, `controls`, `failover`, the UDP receiver) and the
//! deterministic simulator ([`crate::hb::sim`]) both call, so the simulation
//! drives the production code rather than a copy of it. Time comes in as
//! an argument (an `Instant` for timeouts, wall ms for the messages); I/O
//! (sockets, slots, processes, the log) stays with the callers.
//!
//! ```text
//!  compose_beat ─> encode_fitting ─> bytes on every enabled channel
//!  bytes in ─> Beat::decode ─> Checker::network_beat / mirror_read ─> Advanced ─> take_controls ─> apply_to_table
//!  every interval: tick_step (evaluate, counters, failover and step-down reasons)
//!   └─ failover reason ─> commit_failover (QoS said yes or no) ─> Go (once) / Held
//! ```

use std::path::Path;
use std::time::{Duration, Instant};

use hbcore::vocab::Group;

use super::checker::{Checker, ClockChange, CounterChange, Identity, Transition};
use super::message::{next_serial, Beat, Control, ControlBody, MessageError};
use super::table::{Direction, GroupStatus, Table};

/// Control messages kept unacknowledged at most; the oldest is dropped beyond.
pub const OUTBOX_MAX: usize = 8;

/// What one tick decided (after [`tick_step`]); the caller logs and acts.
#[derive(Debug, Default)]
pub struct TickOutcome {
    /// Channels that failed or recovered.
    pub transitions: Vec<Transition>,
    /// Channels whose counters went BAD or GOOD.
    pub counted: Vec<CounterChange>,
    /// Heartbeats missing in the last counter period, per channel.
    pub gaps: Vec<(String, u64)>,
    /// The failover rule says fail over, and why (see [`commit_failover`]).
    pub failover: Option<String>,
    /// This production host steps down now: the peer that failed over, and why.
    pub step_down: Option<(String, String)>,
    /// At a standby that failed over, the production group is alive again:
    /// whether production says it stepped down.
    pub returned: Option<bool>,
    /// This host was stopped or suspended longer than the timeout (forgiven).
    pub stalled: Option<Duration>,
    /// Peer clock offsets that crossed `clock_warn_ms`.
    pub clocks: Vec<ClockChange>,
}

/// How this host itself ran since its last tick (see [`Checker::ticked`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct Absence {
    /// The process did not run this long (stopped, frozen, starved).
    pub stopped: Duration,
    /// The host was suspended this long (CLOCK_BOOTTIME ahead of the monotonic clock).
    pub suspended: Duration,
}

/// The decisions of one tick at `now` (`period`: a counter period ends;
/// `absent`: this host's own stall since the last tick): forgive the stall,
/// evaluate the table, step the counters, the failover and step-down
/// reasons, the clock offsets. A step-down is recorded in the table here
/// (done once).
pub fn tick_step(c: &mut Checker, now: Instant, period: bool, absent: Absence) -> TickOutcome {
    let stalled = c.ticked(now, absent.stopped, absent.suspended);
    let transitions = c.evaluate(now);
    let gaps = if period { c.counter_period() } else { vec![] };
    let counted = c.take_counter_changes();
    let failover = c.failover_reason();
    if failover.is_none() {
        c.table.failover_held = None;
    }
    let step_down = c.step_down_reason().map(|why| {
        c.table.stepped_down = true;
        (c.table.peer_failed_over.clone().unwrap_or_default(), why)
    });
    let t = &c.table;
    let alive = t.remote_group_via_network == GroupStatus::Alive
        || t.remote_group_via_mirrors == GroupStatus::Alive;
    // Production alive after a handover is no return: it asked.
    let handed_over = t.handover.as_ref().is_some_and(|h| h.taken());
    let returned = (t.group == Group::Standby && t.failed_over && alive && !handed_over)
        .then_some(t.peer_stepped_down);
    let clocks = c.clock_changes();
    TickOutcome {
        transitions,
        counted,
        gaps,
        failover,
        step_down,
        returned,
        stalled,
        clocks,
    }
}

/// Fig 6: the next heartbeat, generated at `wall_ms` with `id` (from
/// [`Checker::identity`]; its serial taken).
pub fn compose_beat(t: &mut Table, wall_ms: u64, id: Identity) -> Beat {
    t.serial = next_serial(t.serial);
    Beat {
        serial: t.serial,
        time_ms: wall_ms,
        sender: t.host.clone(),
        instance: id.instance,
        uptime_ms: id.uptime_ms,
        nonce: id.nonce,
        echoes: id.echoes,
        group: t.group,
        ack: t.received_control,
        controls: t.outbox.clone(),
        failed_over: t.failed_over && t.group == Group::Standby,
        stepped_down: t.stepped_down,
    }
}

/// Signs `beat`; control messages that do not fit ride later heartbeats.
pub fn encode_fitting(mut beat: Beat, key: &[u8]) -> Result<(u32, Vec<u8>), MessageError> {
    loop {
        match beat.encode(key) {
            Err(MessageError::TooLarge(_)) if !beat.controls.is_empty() => {
                beat.controls.pop();
            }
            encoded => return encoded.map(|frame| (beat.serial, frame)),
        }
    }
}

/// Queues a control message for the peer; returns the oldest one if the
/// outbox overflowed and it was dropped.
pub fn queue_control(t: &mut Table, body: ControlBody) -> Option<Control> {
    t.last_control += 1;
    let id = t.last_control;
    t.outbox.push(Control { id, body });
    t.show_procedure();
    (t.outbox.len() > OUTBOX_MAX).then(|| t.outbox.remove(0))
}

/// A valid heartbeat's acknowledgement (drops what the peer has from the
/// outbox) and its control messages not received before, in order.
pub fn take_controls(t: &mut Table, beat: &Beat) -> Vec<Control> {
    t.outbox.retain(|ctl| ctl.id > beat.ack);
    let fresh: Vec<Control> = beat
        .controls
        .iter()
        .filter(|ctl| ctl.id > t.received_control)
        .cloned()
        .collect();
    if let Some(last) = fresh.last() {
        t.received_control = last.id;
    }
    fresh
}

/// What applying a peer's control message did to the table.
#[derive(Debug)]
pub enum Applied {
    /// Mirror `mirror` activated: its SVOL, found at `address`, is read.
    Installed {
        /// The mirror.
        mirror: String,
        /// Where its SVOL is read.
        address: std::path::PathBuf,
    },
    /// An activation that names no place to read.
    Unregistered {
        /// The mirror.
        mirror: String,
        /// Why, in words.
        why: String,
    },
    /// Mirror `.0` de-activated; `.1`: it was installed.
    Removed(String, bool),
    /// The procedure changed, in words.
    Procedure(String),
    /// Not a table change (notice, analysis): for the caller.
    Other(ControlBody),
}

/// Applies a peer's control message to the table (activation, de-activation,
/// procedure); hands back the others. `volume_dir`: where this host sees
/// volumes (an activation names one).
pub fn apply_to_table(
    c: &mut Checker,
    peer: &str,
    body: ControlBody,
    volume_dir: Option<&Path>,
) -> Applied {
    match body {
        ControlBody::Activate { mirror, svol, path } => {
            let address = path
                .map(std::path::PathBuf::from)
                .or_else(|| volume_dir.map(|d| d.join(&svol)));
            match address {
                Some(address) => {
                    c.reset_mirror(&mirror);
                    c.table
                        .install(&mirror, address.clone(), Direction::Receive, None);
                    Applied::Installed { mirror, address }
                }
                None => Applied::Unregistered {
                    why: format!("cannot register the SVOL '{svol}' of mirror {mirror} activated by {peer}: set volume_dir in hbd's config, or install with --svol-path"),
                    mirror,
                },
            }
        }
        ControlBody::Deactivate { mirror } => {
            c.reset_mirror(&mirror);
            let removed = c.table.uninstall(&mirror);
            Applied::Removed(mirror, removed)
        }
        ControlBody::Procedure(p) => Applied::Procedure(c.table.apply_procedure(&p)),
        ControlBody::OneNetwork(n) => Applied::Procedure(c.table.apply_one_network(&n)),
        other => Applied::Other(other),
    }
}

/// What became of a due failover.
#[derive(Debug, PartialEq, Eq)]
pub enum FailoverStep {
    /// Fail over now (recorded in the table: once); the peer was silent this long.
    Go {
        /// Since the last valid heartbeat on any channel.
        silent: Duration,
    },
    /// Done before: nothing to do.
    Done,
    /// This host cannot carry the duties (QoS): it waits; `first`: newly held.
    Held {
        /// Why, in words (also in the table's `failover_held`).
        text: String,
        /// The first tick it is held (say it once).
        first: bool,
    },
}

/// The failover rule said fail over: `carry` is whether this host can carry
/// the duties (QoS, seed 002 Fig 6 636). Records the failover (once) or why
/// it waits.
pub fn commit_failover(c: &mut Checker, carry: Result<(), String>, now: Instant) -> FailoverStep {
    match carry {
        Ok(()) => {
            if c.table.failed_over {
                return FailoverStep::Done;
            }
            c.table.failed_over = true;
            c.table.failover_held = None;
            FailoverStep::Go {
                silent: c.silent_for(now).unwrap_or_default(),
            }
        }
        Err(why) => {
            let text = format!(
                "every channel says the peer is dead, but this host cannot carry the duties: {why}; the failover waits until it can (QoS)"
            );
            let first = c.table.failover_held.is_none();
            c.table.failover_held = Some(text.clone());
            FailoverStep::Held { text, first }
        }
    }
}

/// `failover_on_fault`: a standby whose analysis found production faulted
/// takes over if armed and not done before; records it. Whether to go.
pub fn commit_failover_on_fault(c: &mut Checker) -> bool {
    let go = c.table.group == Group::Standby && c.table.armed && !c.table.failed_over;
    if go {
        c.table.failed_over = true;
    }
    go
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hb::logic::message::Procedure;

    fn body(n: u64) -> ControlBody {
        ControlBody::Deactivate {
            mirror: format!("hb{n}"),
        }
    }

    #[test]
    fn controls_are_numbered_bounded_acknowledged_and_taken_once() {
        let mut here = Table::new("prod-a", Group::Production, true);
        for n in 1..=OUTBOX_MAX as u64 {
            assert_eq!(queue_control(&mut here, body(n)), None);
        }
        let dropped = queue_control(&mut here, body(99)).expect("the outbox is full");
        assert_eq!(dropped.id, 1, "the oldest goes");
        assert_eq!(here.outbox.len(), OUTBOX_MAX);
        // The peer takes what it has not had, in order, once.
        let mut there = Table::new("standby-a", Group::Standby, true);
        let id = |nonce| Identity {
            instance: 1,
            uptime_ms: nonce,
            nonce,
            echoes: vec![],
        };
        let beat = compose_beat(&mut here, 1_000, id(1));
        assert_eq!((beat.serial, beat.time_ms), (1, 1_000));
        let taken = take_controls(&mut there, &beat);
        assert_eq!(taken.len(), OUTBOX_MAX);
        assert_eq!(there.received_control, 9);
        assert!(take_controls(&mut there, &beat).is_empty(), "a duplicate");
        // Its heartbeat acknowledges them: the outbox empties.
        let back = compose_beat(&mut there, 1_100, id(2));
        assert_eq!(back.ack, 9);
        take_controls(&mut here, &back);
        assert!(here.outbox.is_empty());
    }

    #[test]
    fn a_procedure_from_the_peer_changes_the_table_and_other_controls_are_handed_back() {
        let t = Table::new("standby-a", Group::Standby, true);
        let timing = crate::hb::logic::checker::Timing {
            timeout: Duration::from_secs(1),
            interval: Duration::from_millis(100),
            clock_warn: Duration::from_secs(1),
            counter: Default::default(),
        };
        let mut c = Checker::new(
            t,
            vec!["prod-a".into()],
            timing,
            Default::default(),
            Instant::now(),
        );
        let p = Procedure {
            network: Some(false),
            ..Procedure::default()
        };
        let applied = apply_to_table(&mut c, "prod-a", ControlBody::Procedure(p), None);
        assert!(matches!(applied, Applied::Procedure(_)), "{applied:?}");
        assert!(!c.table.network_on());
        let unregistered = ControlBody::Activate {
            mirror: "hb1".into(),
            svol: "svol1".into(),
            path: None,
        };
        match apply_to_table(&mut c, "prod-a", unregistered, None) {
            Applied::Unregistered { mirror, why } => {
                assert_eq!(mirror, "hb1");
                assert!(why.contains("volume_dir"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        let found = ControlBody::Activate {
            mirror: "hb1".into(),
            svol: "svol1".into(),
            path: None,
        };
        let applied = apply_to_table(&mut c, "prod-a", found, Some(Path::new("/mnt/hbfs")));
        assert!(matches!(applied, Applied::Installed { .. }), "{applied:?}");
        assert_eq!(
            c.table.device("hb1").and_then(|d| d.address.clone()),
            Some("/mnt/hbfs/svol1".into())
        );
        let held = commit_failover(&mut c, Err("load".into()), Instant::now());
        assert!(
            matches!(held, FailoverStep::Held { first: true, .. }),
            "{held:?}"
        );
        assert!(c.table.failover_held.is_some() && !c.table.failed_over);
    }
}
