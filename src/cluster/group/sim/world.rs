//! The simulated world of [`super`]: the event queue, the LAN, the group
//! volume, and each host's member as `master.rs` and `channels.rs` run it,
//! deciding with the real [`Claim`], [`rival_claims`], [`may_succeed`],
//! [`resigned_long_enough`], [`must_self_fence`], [`SlotWatch`] and
//! [`MasterGate`]; the checker runs after every event. Single-threaded.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::{Duration, Instant};

use super::{Outcome, Shape, KINDS};

mod io;
use crate::cluster::group::rules::{
    follows_reign, may_succeed, must_self_fence, newest_reign, resigned_long_enough, rival_claims,
    Claim, Reign, SlotWatch,
};
use crate::cluster::group::slot::{Slot, SlotState};
use crate::hb::daemon::shared::MasterGate;
use crate::hb::sim::rng::Rng;

/// An event; `u64`s in `Msg`: the beat's instance (None: an answer).
#[derive(Debug, Clone)]
enum Ev {
    MasterTick(usize),
    GroupTick(usize),
    /// A read begun at `.1` completed on the volume (it reads what is there now).
    ReadComplete(usize, u64),
    /// A read begun at `.1` returned to the group task (None: it failed).
    ReadDone(usize, u64, Option<Vec<Option<Slot>>>),
    /// A slot write reached the volume.
    WriteLand(usize, Slot),
    /// A write returned: (host, ok, began, the reign it claimed, the
    /// tick's last: a self-fence's acknowledging write).
    WriteDone(usize, bool, u64, Option<u64>, bool),
    Msg {
        to: usize,
        from: usize,
        beat: Option<u64>,
    },
}

/// One host: what hbd's member keeps (its `MasterView`, `heard`, `Seen`,
/// the gate); times in ms of its own clock (zero at its start).
struct Host {
    start: u64,
    /// The master view: (master, instance, last heard).
    view: (usize, u64, u64),
    ticked: Option<u64>,
    heard: Vec<Option<u64>>,
    serial: u64,
    fenced: bool,
    resigned: bool,
    resigned_at: Option<u64>,
    /// The first read of the slots is done (`Seen::started`).
    started: bool,
    /// `Seen::claim`: its hold on the reign in its view.
    claim: Claim,
    last_write: Option<u64>,
    last_read: Option<u64>,
    watching: u64,
    watches: Vec<Option<SlotWatch>>,
    gate: MasterGate,
    group_next: u64,
}

pub(super) struct World<'a> {
    s: &'a Shape,
    rng: Rng,
    base: Instant,
    now: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64)>>,
    events: BTreeMap<u64, Ev>,
    disk: Vec<Option<Slot>>,
    hosts: Vec<Host>,
    out: Outcome,
    keep_trace: bool,
    settled_since: Option<u64>,
}

impl<'a> World<'a> {
    pub(super) fn new(s: &'a Shape, seed: u64, keep_trace: bool) -> World<'a> {
        let mut rng = Rng::new(seed);
        let base = Instant::now();
        let mut w = World {
            s,
            rng: Rng::new(0),
            base,
            now: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            events: BTreeMap::new(),
            disk: vec![None; s.hosts],
            hosts: Vec::new(),
            out: Outcome::default(),
            keep_trace,
            settled_since: None,
        };
        for h in 0..s.hosts {
            let start = rng.range(0, s.interval - 1);
            let gate = MasterGate::default();
            // hbd: a master's gate opens only with a lease (Member::new),
            // and at start the group's first host is master, reign 1,
            // acting once its claim is clear.
            gate.lease_until(base + Duration::from_millis(start));
            gate.set(false);
            w.hosts.push(Host {
                start,
                view: (0, 1, 0),
                ticked: None,
                heard: vec![Some(0); s.hosts],
                serial: 0,
                fenced: false,
                resigned: false,
                resigned_at: None,
                started: false,
                claim: Claim::new(1),
                last_write: None,
                last_read: None,
                watching: 0,
                watches: vec![None; s.hosts],
                gate,
                group_next: 0,
            });
            w.push(start + rng.range(0, s.interval - 1), Ev::MasterTick(h));
            w.push(start + rng.range(0, s.interval - 1), Ev::GroupTick(h));
        }
        w.rng = rng;
        for f in &s.faults {
            let what = match f.kind {
                0 => format!("side {:#b}", f.arg),
                1 => format!("{}% lost", f.arg),
                2 => format!("up to {} ms more", f.arg),
                _ => format!("h{}", f.arg),
            };
            w.note(format!(
                "fault {} ({what}) from {} to {}",
                KINDS[f.kind], f.from, f.to
            ));
        }
        w
    }

    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq)));
        self.events.insert(self.seq, ev);
    }

    fn note(&mut self, line: String) {
        if self.keep_trace {
            self.out.trace.push(format!("{:>7} {line}", self.now));
        }
    }

    /// Host `h`'s clock at simulated time `t`.
    fn local(&self, h: usize, t: u64) -> u64 {
        t.saturating_sub(self.hosts[h].start)
    }

    fn at(&self, t: u64) -> Instant {
        self.base + Duration::from_millis(t)
    }

    pub(super) fn run(mut self) -> Outcome {
        let end = self.s.healed + self.s.bound;
        while let Some(Reverse((t, seq))) = self.queue.pop() {
            if t > end {
                break;
            }
            let Some(ev) = self.events.remove(&seq) else {
                continue;
            };
            self.now = t;
            if let Some(h) = host_of(&ev) {
                // A stopped process runs nothing: its events wait for the thaw.
                if let Some(to) = self.fault(6, Some(h), t).map(|f| f.to) {
                    let jitter = self.rng.range(0, 3);
                    self.push(to + jitter, ev);
                    continue;
                }
            }
            self.step(ev);
            self.check();
        }
        self.now = end;
        self.check();
        let fenced = self.hosts.iter().all(|h| h.fenced);
        match self.settled_since {
            Some(t) => self.out.settled_after = Some(t.saturating_sub(self.s.healed)),
            None if !fenced => {
                let acting: Vec<usize> = (0..self.s.hosts).filter(|&h| self.acting(h)).collect();
                let v = format!(
                    "liveness: {} ms after the faults ended, {} hosts act as master ({acting:?}); views {:?}",
                    self.s.bound,
                    acting.len(),
                    self.views()
                );
                self.note(format!("VIOLATION {v}"));
                self.out.violations.push(v);
            }
            None => {}
        }
        self.out
    }

    fn views(&self) -> Vec<String> {
        self.hosts
            .iter()
            .map(|h| {
                let (m, i, _) = h.view;
                let flags = match (h.fenced, h.resigned) {
                    (true, _) => " fenced",
                    (false, true) => " resigned",
                    _ => "",
                };
                format!("h{m}/{i}{flags}")
            })
            .collect()
    }

    /// Whether host `h` acts as master now: hbd's gate is open, or it
    /// claims the reign and its claim says `Keep`.
    fn acting(&self, h: usize) -> bool {
        let host = &self.hosts[h];
        let now = self.local(h, self.now);
        let claims = host.view.0 == h && !host.resigned && !host.fenced;
        host.gate.is_open(self.at(self.now))
            || (claims && host.claim.state(now, self.s.master_timeout) == Reign::Keep)
    }

    fn check(&mut self) {
        let acting: Vec<usize> = (0..self.s.hosts).filter(|&h| self.acting(h)).collect();
        if acting.len() > 1 && self.out.violations.is_empty() {
            let how: Vec<String> = acting
                .iter()
                .map(|&h| {
                    let open = self.hosts[h].gate.is_open(self.at(self.now));
                    format!(
                        "h{h} {}",
                        if open {
                            "gate open"
                        } else {
                            "claims, its lease holds"
                        }
                    )
                })
                .collect();
            let v = format!(
                "two masters at {} ms: {}; views {:?}",
                self.now,
                how.join(", "),
                self.views()
            );
            self.note(format!("VIOLATION {v}"));
            self.out.violations.push(v);
        }
        if self.now >= self.s.healed {
            if acting.len() == 1 {
                self.settled_since.get_or_insert(self.now);
            } else {
                self.settled_since = None;
            }
        }
    }

    fn step(&mut self, ev: Ev) {
        let i = self.s.interval;
        match ev {
            Ev::MasterTick(h) => {
                self.master_tick(h);
                self.push(self.now + i, Ev::MasterTick(h));
            }
            Ev::GroupTick(h) => {
                self.hosts[h].group_next = self.now + i;
                self.read(h);
            }
            Ev::ReadComplete(h, began) => {
                let snap = self.disk.clone();
                self.push(self.now, Ev::ReadDone(h, began, Some(snap)));
            }
            Ev::ReadDone(h, began, snap) => {
                if let Some(snap) = snap {
                    self.take_reads(h, began, snap);
                }
                self.write(h, false);
            }
            Ev::WriteLand(h, slot) => self.disk[h] = Some(slot),
            Ev::WriteDone(h, ok, began, claims, last) => {
                if ok {
                    let local = self.local(h, began);
                    let returned = self.local(h, self.now);
                    let lease = self.at(began + self.s.master_timeout / 2);
                    let mt = self.s.master_timeout;
                    let host = &mut self.hosts[h];
                    host.last_write = Some(local);
                    if claims.is_some_and(|i| host.claim.wrote(i, local, returned, mt)) {
                        host.gate.lease_until(lease);
                    }
                }
                // channels.rs: a self-fence writes the FENCED slot at once.
                if !last && self.check_self_fence(h) {
                    self.write(h, true);
                    return;
                }
                let next = self.hosts[h].group_next.max(self.now);
                self.push(next, Ev::GroupTick(h));
            }
            Ev::Msg { to, from, beat } => {
                let now = self.local(to, self.now);
                self.hosts[to].heard[from] = Some(now);
                if let Some(instance) = beat {
                    self.master_input(to, from, instance);
                }
            }
        }
    }

    /// channels.rs's `take_reads`: the others' slots watched; this host's
    /// claim cleared (its gate opened) if no rival claims; the highest
    /// reign claimed in a slot followed as `slot_claims_reign` does.
    fn take_reads(&mut self, h: usize, began: u64, snap: Vec<Option<Slot>>) {
        let now = self.local(h, self.now);
        let began = self.local(h, began);
        let host = &mut self.hosts[h];
        host.last_read = Some(now);
        let mut reigns: Vec<(usize, u64)> = Vec::new();
        for (o, slot) in snap.into_iter().enumerate() {
            let Some(slot) = slot else { continue };
            if o == h {
                continue;
            }
            let followed = slot.follows.as_ref().and_then(|(m, i)| {
                let m: usize = m.strip_prefix('h')?.parse().ok()?;
                Some((m, *i))
            });
            reigns.extend(slot.master.map(|i| (o, i)));
            reigns.extend(followed);
            let watch = SlotWatch::observe(host.watches[o].as_ref(), slot, now);
            host.watches[o] = Some(watch);
        }
        let at_start = !std::mem::replace(&mut host.started, true);
        let others = host.watches.iter().enumerate().filter(|(o, _)| *o != h);
        let rival = rival_claims(
            others.filter_map(|(_, w)| w.as_ref()),
            now,
            self.s.master_timeout,
        );
        if host.claim.read(began, rival) && !host.resigned && !host.fenced {
            host.gate.set(true);
            let instance = host.claim.instance;
            self.note(format!(
                "h{h}'s claim of reign {instance} is clear: it acts"
            ));
        }
        if let Some((o, instance)) = newest_reign(reigns) {
            // master.rs's `slot_claims_reign`.
            let (master, current, _) = self.hosts[h].view;
            if follows_reign((&o, instance), (&master, current), at_start) {
                self.note(format!(
                    "h{h} follows h{o}'s reign {instance}, from its slot"
                ));
                self.install(h, o, instance);
            }
        }
    }

    /// channels.rs's `write_now` (`last`: the tick ends with it).
    fn write(&mut self, h: usize, last: bool) {
        let now = self.local(h, self.now);
        let host = &mut self.hosts[h];
        host.serial += 1;
        let master = !host.fenced && !host.resigned && host.view.0 == h;
        let (claims, lapsed) = host.claim.next_write(master, now, self.s.master_timeout);
        let instance = host.view.1;
        let slot = Slot {
            host: format!("h{h}"),
            run: 1,
            serial: host.serial,
            state: if host.fenced {
                SlotState::Fenced
            } else {
                SlotState::Up
            },
            master: claims.then_some(instance),
            ack: None,
            follows: Some((format!("h{}", host.view.0), host.view.1)),
            reason: None,
        };
        if lapsed {
            self.resign(h, "its lease ran out before its next slot write");
        }
        let deadline = (self.s.master_timeout / 2).max(self.s.interval);
        let began = self.now;
        match self.io(h, 3) {
            None => self.push(began + 1, Ev::WriteDone(h, false, began, None, last)),
            Some((done, in_time)) => {
                self.push(done, Ev::WriteLand(h, slot));
                let (at, ok) = if in_time {
                    (done, true)
                } else {
                    (began + deadline, false)
                };
                let claimed = claims.then_some(instance);
                self.push(at, Ev::WriteDone(h, ok, began, claimed, last));
            }
        }
    }

    /// channels.rs's `check_self_fence` (true: it fenced this host).
    fn check_self_fence(&mut self, h: usize) -> bool {
        let now = self.local(h, self.now);
        let host = &mut self.hosts[h];
        if host.fenced || self.s.hosts < 2 {
            return false;
        }
        let lan = (0..self.s.hosts)
            .filter(|&o| o != h)
            .filter_map(|o| host.heard[o])
            .max()
            .unwrap_or(0);
        let slot = host.last_write.unwrap_or(host.watching);
        if must_self_fence(lan, slot, now, self.s.fence_timeout) {
            host.fenced = true;
            host.resigned = true;
            host.gate.set(false);
            self.out.self_fences += 1;
            self.note(format!(
                "h{h} fences itself (LAN heard at {lan}, slot written at {slot})"
            ));
            return true;
        }
        false
    }

    /// master.rs's `install_master`.
    fn install(&mut self, h: usize, master: usize, instance: u64) {
        let now = self.local(h, self.now);
        let host = &mut self.hosts[h];
        if host.view.0 == h && master != h && !host.resigned {
            self.out.step_downs += 1;
        }
        host.resigned = host.fenced;
        host.resigned_at = None;
        host.claim = Claim::new(instance);
        host.gate.set(false);
        host.view = (master, instance, now);
        // reign_begins
        host.watching = now;
        host.heard.iter_mut().for_each(|t| *t = Some(now));
    }

    /// master.rs's `master_tick`.
    fn master_tick(&mut self, h: usize) {
        let now = self.local(h, self.now);
        let (mt, interval) = (self.s.master_timeout, self.s.interval);
        let host = &mut self.hosts[h];
        if host
            .ticked
            .replace(now)
            .is_some_and(|t| now - t > 3 * interval)
        {
            host.view.2 = now;
            host.watching = now;
            host.heard.iter_mut().for_each(|t| *t = Some(now));
        }
        let (master, instance, last_seen) = host.view;
        if master == h {
            // `keeps_reign`, then `after_resigning`.
            let keeps = !host.resigned
                && match host.claim.state(now, mt) {
                    Reign::Keep => true,
                    Reign::Wait => false,
                    Reign::Resign => {
                        self.resign(h, "its lease lapsed");
                        false
                    }
                };
            if !keeps {
                let host = &self.hosts[h];
                let due = host.resigned
                    && !host.fenced
                    && host
                        .resigned_at
                        .is_some_and(|r| resigned_long_enough(r, now, mt));
                if due {
                    let next = (h + 1) % self.s.hosts;
                    self.out.elections += 1;
                    self.note(format!(
                        "h{h} resigned {mt} ms ago: h{next} is master, reign {}",
                        instance + 1
                    ));
                    self.install(h, next, instance + 1);
                }
                return;
            }
            for to in (0..self.s.hosts).filter(|&o| o != h) {
                self.send(h, to, Some(instance));
            }
            return;
        }
        let silent = now.saturating_sub(last_seen);
        if silent <= mt {
            return;
        }
        let read = host.last_read.unwrap_or(host.watching);
        let watch = host.watches[master].as_ref();
        if may_succeed(silent, watch, host.watching, read, instance, mt) {
            let still = SlotWatch::still_ms(watch, host.watching, read);
            let next = (master + 1) % self.s.hosts;
            self.out.elections += 1;
            self.note(format!(
                "h{h}: master h{master} silent {silent} ms, slot still {still} ms: h{next} is master, reign {}",
                instance + 1
            ));
            self.install(h, next, instance + 1);
        }
    }

    /// master.rs's `resign`.
    fn resign(&mut self, h: usize, why: &str) {
        let now = self.local(h, self.now);
        let host = &mut self.hosts[h];
        if host.resigned {
            return;
        }
        host.resigned = true;
        host.resigned_at = Some(now);
        host.gate.set(false);
        self.out.resignations += 1;
        let instance = host.view.1;
        self.note(format!("h{h} resigns its reign {instance}: {why}"));
    }

    /// master.rs's `master_input` (the replay check aside).
    fn master_input(&mut self, h: usize, from: usize, instance: u64) {
        let view = self.hosts[h].view;
        if instance > view.1 {
            self.note(format!(
                "h{h} follows h{from}'s reign {instance}, from its heartbeat"
            ));
            self.install(h, from, instance);
        } else if instance == view.1 && from == view.0 {
            self.hosts[h].view.2 = self.local(h, self.now);
            self.send(h, from, None);
        }
    }
}

fn host_of(ev: &Ev) -> Option<usize> {
    match ev {
        Ev::MasterTick(h) | Ev::GroupTick(h) | Ev::ReadDone(h, ..) | Ev::WriteDone(h, ..) => {
            Some(*h)
        }
        Ev::Msg { to, .. } => Some(*to),
        Ev::ReadComplete(..) | Ev::WriteLand(..) => None,
    }
}
