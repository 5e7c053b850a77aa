//! The world of one schedule: two [`Side`]s, the simulated channels between
//! them, one simulated clock, and a queue of events in time order (ties in
//! the order they were queued), so a seed replays exactly.
//!
//! Networks carry the signed bytes as datagrams, each way, and can cut,
//! lose, delay (and so reorder), duplicate and replay them (old captured
//! datagrams sent again), or carry garbage. A mirror copies the writer's
//! slot to the reader's SVOL after its replication delay; it can stop
//! (the SVOL keeps what it had), fail reads or writes, or go back to an old
//! heartbeat. Every tick a side sends on every enabled channel, reads its
//! enabled mirrors, then decides (`Side::tick`); the checkers judge each
//! delivery, failover and step-down. A side's wall clock can step (it is in
//! the messages, for the offset shown, and nowhere in a decision); a side
//! can be stopped (SIGSTOP, a frozen VM): nothing of it runs meanwhile, what
//! reaches it waits (datagrams queue in its socket) and its next tick is
//! told how long it was stopped, as the daemon's stall watch would. When the standby has failed over and
//! production has stepped down, the operator fails back: re-arms the
//! standby, then production; after a refused handover, production. The
//! fault injection is in `inject`.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use super::checkers::{Checkers, Truth};
use super::faults::{Fault, Schedule, Shape, SideId, PROD, STANDBY};
pub use super::outcome::{Counts, Outcome};

mod inject;
use super::rng::Rng;
use super::side::{configs, Did, Side};
use crate::hb::logic::analysis::VerdictKind;
use crate::hb::logic::table::Direction;

/// Datagrams kept per network for replays.
const CAPTURED: usize = 64;

enum Ev {
    Tick(SideId),
    Datagram {
        net: usize,
        to: SideId,
        bytes: Vec<u8>,
        origin: Option<usize>,
    },
    Replicate {
        mirror: usize,
        bytes: Vec<u8>,
        origin: usize,
    },
    Fault(Fault),
    LocalDone(SideId, String),
    Rearm(SideId),
}

#[derive(Default)]
struct Mirror {
    svol: Option<(Vec<u8>, usize)>,
    cut: bool,
    read_error: bool,
    write_error: bool,
    delay_ms: u64,
    history: VecDeque<(Vec<u8>, usize)>,
}

#[derive(Default, Clone, Copy)]
struct Quality {
    drop: f64,
    dup: f64,
    delay_max_ms: u64,
}

/// One schedule under way.
pub struct World {
    shape: Shape,
    sides: [Side; 2],
    t: u64,
    queue: BTreeMap<(u64, u64), Ev>,
    seq: u64,
    rng: Rng,
    truths: Vec<Truth>,
    cut: Vec<[bool; 2]>,
    quality: Vec<Quality>,
    captured: Vec<VecDeque<(Vec<u8>, usize, SideId)>>,
    mirrors: Vec<Mirror>,
    rearm_due: bool,
    checks: Checkers,
    trace: bool,
    out: Outcome,
}

impl World {
    /// The world of `schedule` (channel randomness from `seed`).
    pub fn new(schedule: &Schedule, seed: u64, trace: bool) -> World {
        let shape = schedule.shape.clone();
        let base = Instant::now();
        let [p, s] = configs(&shape);
        let mut rng = Rng::new(seed ^ 0x5EED_C4A7_0000_0001);
        let sides = [
            Side::start(PROD, p, None, base, 0, rng.next_u64()),
            Side::start(STANDBY, s, None, base, 0, rng.next_u64()),
        ];
        let mut w = World {
            checks: Checkers::new(shape.timeout_ms, shape.interval_ms),
            cut: vec![[false; 2]; shape.networks],
            quality: vec![Quality::default(); shape.networks],
            captured: (0..shape.networks).map(|_| VecDeque::new()).collect(),
            mirrors: (0..shape.mirrors()).map(|_| Mirror::default()).collect(),
            sides,
            t: 0,
            queue: BTreeMap::new(),
            seq: 0,
            rng,
            truths: vec![],
            rearm_due: false,
            trace,
            out: Outcome::default(),
            shape,
        };
        // The sides' ticks start out of phase.
        let phase = w.rng.range(0, w.shape.interval_ms - 1);
        w.at(1, Ev::Tick(PROD));
        w.at(1 + phase, Ev::Tick(STANDBY));
        for (t, f) in &schedule.faults {
            w.at(*t, Ev::Fault(f.clone()));
        }
        w
    }

    fn at(&mut self, t: u64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((t, self.seq), ev);
    }

    fn note(&mut self, what: impl FnOnce() -> String) {
        if self.trace {
            let line = format!("{:>8} ms  {}", self.t, what());
            self.out.trace.push(line);
        }
    }

    /// Runs the schedule to its end.
    pub fn run(mut self) -> Outcome {
        while let Some(((t, _), ev)) = self.queue.pop_first() {
            if t > self.shape.length_ms {
                break;
            }
            self.t = t;
            let before = self.checks.violations.len();
            self.event(ev);
            if self.checks.violations.len() > before {
                let v = self.checks.violations[before..].join("; ");
                self.note(|| format!("VIOLATION {v}"));
            }
        }
        self.out.violations = std::mem::take(&mut self.checks.violations);
        self.out
    }

    /// The side an event happens at, if it is one that waits while that side is stopped.
    fn waits_for(ev: &Ev) -> Option<SideId> {
        match ev {
            Ev::Tick(s) | Ev::LocalDone(s, _) | Ev::Rearm(s) => Some(*s),
            Ev::Datagram { to, .. } => Some(*to),
            Ev::Replicate { .. } | Ev::Fault(_) => None,
        }
    }

    fn event(&mut self, ev: Ev) {
        if let Some(s) = Self::waits_for(&ev) {
            if let Some(until) = self.sides[s].stalled_until.filter(|&u| self.t < u) {
                // Stopped: it happens when the side runs again. Its ticks
                // keep their chain (a crash may end the stall early), the
                // one due at waking coming at once, as tokio's delayed
                // interval does; what reaches it waits in its socket.
                let when = match ev {
                    Ev::Tick(_) => until.min(self.t + self.shape.interval_ms),
                    _ => until,
                };
                self.at(when, ev);
                return;
            }
        }
        match ev {
            Ev::Tick(s) => {
                if self.sides[s].up {
                    self.tick(s);
                }
                let next = self.t + self.shape.interval_ms;
                self.at(next, Ev::Tick(s));
            }
            Ev::Datagram {
                net,
                to,
                bytes,
                origin,
            } => self.datagram(net, to, &bytes, origin),
            Ev::Replicate {
                mirror,
                bytes,
                origin,
            } => {
                let m = &mut self.mirrors[mirror];
                if !m.cut {
                    m.svol = Some((bytes, origin));
                }
            }
            Ev::Fault(f) => self.fault(f),
            Ev::LocalDone(s, id) => {
                if self.sides[s].up {
                    let mut did = vec![];
                    self.sides[s].local_done(&id, self.t, &mut did);
                    self.did(s, did);
                }
            }
            Ev::Rearm(s) => {
                let t = self.t;
                if self.sides[s].up {
                    let side = &mut self.sides[s];
                    let what = side.checker.rearm(side.at(t).mono);
                    self.checks.rearmed(s, t);
                    self.note(|| format!("{} re-armed by the operator: {what}", name(s)));
                    if s == PROD {
                        self.out.counts.rearms += 1;
                    }
                }
                if s == PROD {
                    self.rearm_due = false;
                }
            }
        }
    }

    fn tick(&mut self, s: SideId) {
        let t = self.t;
        let mut did = vec![];
        // Waking from a stall (a crash in between ends it unwoken).
        let stopped = self.sides[s].stopped_ms;
        if stopped > 0 {
            self.checks.stalled(s, stopped, t);
        }
        // Send (Fig 6).
        if let Some((beat, bytes)) = self.sides[s].beat(t) {
            let origin = self.truths.len();
            self.checks.issued(s, beat.nonce, t);
            self.truths.push(Truth {
                serial: beat.serial,
                time_ms: beat.time_ms,
                instance: beat.instance,
                uptime_ms: beat.uptime_ms,
                echoes: beat.echoes.clone(),
                failed_over: beat.failed_over,
            });
            self.out.counts.beats += 1;
            if self.sides[s].checker.table.network_on() {
                for net in 0..self.shape.networks {
                    self.send(net, s, &bytes, origin);
                }
            }
            let writes: Vec<String> = {
                let tb = &self.sides[s].checker.table;
                tb.devices
                    .iter()
                    .filter(|d| {
                        d.direction == Direction::Send
                            && tb.mirror_on(d)
                            && d.pair_problem.is_none()
                    })
                    .map(|d| d.name.clone())
                    .collect()
            };
            for name in writes {
                let Some(m) = self.mirror_index(&name) else {
                    continue;
                };
                let written = if self.mirrors[m].write_error {
                    Err(format!("cannot write /sim/{name}: EIO"))
                } else {
                    let delay = self.mirrors[m].delay_ms;
                    let mm = &mut self.mirrors[m];
                    mm.history.push_back((bytes.clone(), origin));
                    if mm.history.len() > CAPTURED {
                        mm.history.pop_front();
                    }
                    self.at(
                        t + delay,
                        Ev::Replicate {
                            mirror: m,
                            bytes: bytes.clone(),
                            origin,
                        },
                    );
                    Ok(beat.serial)
                };
                self.sides[s].checker.mirror_written(&name, written);
            }
        }
        // Read the mirrors (Fig 7).
        let reads: Vec<String> = {
            let tb = &self.sides[s].checker.table;
            tb.devices
                .iter()
                .filter(|d| d.direction == Direction::Receive && tb.mirror_on(d))
                .map(|d| d.name.clone())
                .collect()
        };
        for name in reads {
            let Some(m) = self.mirror_index(&name) else {
                continue;
            };
            let mm = &self.mirrors[m];
            let read = match (&mm.svol, mm.read_error) {
                (_, true) => Err(format!("cannot read /sim/{name}: EIO")),
                (None, false) => Err(format!("/sim/{name}: no heartbeat in the slot")),
                (Some((bytes, origin)), false) => Ok((bytes.clone(), *origin)),
            };
            let at = self.sides[s].at(t);
            let channel = format!("mirror {name}");
            if let Ok((_, origin)) = &read {
                self.out.deliveries += 1;
                let truth = &self.truths[*origin];
                self.checks.delivered(s, &channel, truth, true, t);
            }
            let taken = self.sides[s].slot_read(
                &name,
                read.as_ref()
                    .map(|(b, _)| b.as_slice())
                    .map_err(String::clone),
                at,
            );
            if let Some(beat) = taken {
                self.sides[s].absorb(&beat, t, &mut did);
            }
        }
        // Decide.
        self.sides[s].tick(t, &mut did);
        self.did(s, did);
        let side = &self.sides[s];
        if s == STANDBY {
            let channels = side.checker.table.channels(Direction::Receive);
            let carry = self.can_carry(STANDBY);
            self.checks.standby_tick(t, &channels, carry);
        } else {
            let stepped_down = side.checker.table.stepped_down;
            self.checks.production_tick(t, stepped_down);
            let refused =
                side.checker.table.handover.as_ref().map(|h| h.state()) == Some("refused");
            let standby = &self.sides[STANDBY].checker.table;
            if stepped_down && standby.failed_over && !self.rearm_due {
                self.rearm_due = true;
                let (a, b) = (t + 2 * self.shape.timeout_ms, t + 4 * self.shape.timeout_ms);
                self.at(a, Ev::Rearm(STANDBY));
                self.at(b, Ev::Rearm(PROD));
            } else if refused && !self.rearm_due {
                // A refused handover: the operator repairs, then re-arms production.
                self.rearm_due = true;
                self.at(t + 4 * self.shape.timeout_ms, Ev::Rearm(PROD));
            }
        }
    }

    fn did(&mut self, s: SideId, did: Vec<Did>) {
        let t = self.t;
        for d in did {
            match d {
                Did::FailedOver(why) => {
                    self.out.counts.failovers += 1;
                    self.out.counts.failovers_production_up += u64::from(self.sides[PROD].up);
                    let channels = self.sides[s].checker.table.channels(Direction::Receive);
                    self.checks.failed_over(s, t, &channels);
                    self.note(|| format!("{} FAILED OVER: {why}", name(s)));
                }
                Did::SteppedDown(why) => {
                    self.out.counts.step_downs += 1;
                    self.checks.stepped_down(s, t);
                    self.note(|| format!("{} STEPPED DOWN: {why}", name(s)));
                }
                Did::Verdict(v) => {
                    *self.out.counts.verdicts.entry(v.to_string()).or_default() += 1;
                    if v != VerdictKind::None {
                        self.note(|| format!("{} fault analysis verdict: {v}", name(s)));
                    }
                }
                Did::Applied(kind) => {
                    *self.out.counts.controls.entry(kind).or_default() += 1;
                    self.note(|| format!("{} applied a control message: {kind}", name(s)));
                }
                Did::Changed(what) => self.note(|| format!("{}: {what}", name(s))),
                Did::HandedOver { why, request } => {
                    self.out.counts.handovers_asked += u64::from(request.is_some());
                    let cannot = self.sides[s].cannot_serve;
                    self.checks.handed_over(s, t, cannot);
                    self.note(|| {
                        format!(
                            "{} STEPPED DOWN to hand over ({why}), request {request:?}",
                            name(s)
                        )
                    });
                }
                Did::HandoverDecided {
                    accepted,
                    take,
                    why,
                } => {
                    let prod_stepped_down = self.sides[PROD].checker.table.stepped_down;
                    let carry = self.can_carry(s);
                    if take {
                        self.out.counts.failovers += 1;
                        self.out.counts.failovers_production_up += u64::from(self.sides[PROD].up);
                        self.out.counts.handovers_taken += 1;
                    } else if !accepted {
                        self.out.counts.handovers_refused += 1;
                    }
                    self.checks
                        .handover_decided(s, t, accepted, take, prod_stepped_down, carry);
                    self.note(|| {
                        format!(
                            "{} handover {}: {why}",
                            name(s),
                            if accepted { "accepted" } else { "REFUSED" }
                        )
                    });
                }
                Did::HandoverAnswered(accepted) => {
                    self.note(|| {
                        format!(
                            "{} took the handover's answer (accepted: {accepted})",
                            name(s)
                        )
                    });
                }
                Did::MirrorReset(m) => self.checks.reset_channel(s, &format!("mirror {m}")),
                Did::RunLocal(id) => {
                    let echo = 3 * self.shape.interval_ms;
                    self.at(t + echo, Ev::LocalDone(s, id));
                }
            }
        }
    }

    /// Whether side `s` can carry the duties, by the simulation's truth
    /// (qos::can_carry's rule): no SERIOUS check failing there, and a
    /// working network if it has any on.
    fn can_carry(&self, s: SideId) -> bool {
        let side = &self.sides[s];
        let on = side.checker.table.network_on() && self.shape.networks > 0;
        !side.serious && !side.cannot_serve && (!on || side.nic_down.iter().any(|d| !d))
    }

    fn mirror_index(&self, name: &str) -> Option<usize> {
        (0..self.shape.mirrors()).find(|&m| self.shape.mirror_name(m) == name)
    }

    fn path_open(&self, net: usize, from: SideId, to: SideId) -> bool {
        !self.cut[net][to] && !self.sides[from].nic_down[net] && !self.sides[to].nic_down[net]
    }

    fn send(&mut self, net: usize, from: SideId, bytes: &[u8], origin: usize) {
        let to = 1 - from;
        let cap = &mut self.captured[net];
        cap.push_back((bytes.to_vec(), origin, from));
        if cap.len() > CAPTURED {
            cap.pop_front();
        }
        if !self.path_open(net, from, to) {
            return;
        }
        let q = self.quality[net];
        if self.rng.chance(q.drop) {
            return;
        }
        let copies = if self.rng.chance(q.dup) { 2 } else { 1 };
        for _ in 0..copies {
            let delay = 1 + self.rng.range(0, q.delay_max_ms);
            let ev = Ev::Datagram {
                net,
                to,
                bytes: bytes.to_vec(),
                origin: Some(origin),
            };
            self.at(self.t + delay, ev);
        }
    }

    fn datagram(&mut self, net: usize, to: SideId, bytes: &[u8], origin: Option<usize>) {
        // A datagram in flight when the path broke is lost with it.
        if !self.sides[to].up || !self.path_open(net, 1 - to, to) {
            return;
        }
        let t = self.t;
        let name = format!("net{net}");
        let at = self.sides[to].at(t);
        let mut valid = None;
        if let Some(origin) = origin {
            self.out.deliveries += 1;
            let on = self.sides[to].checker.table.network_on();
            let truth = &self.truths[origin];
            let ok = self
                .checks
                .delivered(to, &format!("network {name}"), truth, on, t);
            valid = Some((truth.serial, truth.time_ms, ok));
        }
        let taken = self.sides[to].datagram(&name, bytes, at);
        self.note(|| {
            let what = match valid {
                Some((serial, time_ms, ok)) => format!(
                    "heartbeat {serial} generated at {time_ms} ({}valid)",
                    if ok { "" } else { "not " }
                ),
                None => format!("{} bytes of garbage", bytes.len()),
            };
            let checker = if taken.is_some() {
                "advanced"
            } else {
                "not taken"
            };
            format!("{} <- {name}: {what}; checker: {checker}", self::name(to))
        });
        if let Some(beat) = taken {
            let mut did = vec![];
            self.sides[to].absorb(&beat, t, &mut did);
            self.did(to, did);
        }
    }
}

fn name(s: SideId) -> &'static str {
    if s == PROD {
        "production"
    } else {
        "standby"
    }
}
