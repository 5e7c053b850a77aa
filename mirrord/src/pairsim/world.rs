//! The simulated world: two sites, the remote link between them (frames in
//! flight each way, FIFO like the TCP session), and the schedule's steps.
//! Every pair decision is the machine's ([`crate::pair::machine`]); this
//! file carries out what it answers the way the site does (`crate::site`):
//! frames, acks, suspends, the fence. Requests the site awaits (the peer's
//! update, generations, bitmap, join, takeover, reverse) are calls that
//! succeed at once while the link is up and the peer runs, and fail
//! otherwise. Single-threaded and seeded: a seed replays exactly.

use std::collections::VecDeque;

use hbcore::vocab::{PairState, Role};
use rand::rngs::StdRng;
use rand::Rng;

use super::site::{Flight, SimSite, Tag, BLOCKS};
use super::{Flaw, Outcome};
use crate::outdated::Outdated;
use crate::pair::machine::{self, Event, Failure, OnFailure, PeerSplit};

/// Why the SVOL did not take a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// It holds the PVOL.
    NotSvol,
    /// Its state takes no copies.
    State(PairState),
    /// Its disk failed.
    Disk,
    /// The link went down (or the peer stopped answering) before the answer.
    Link,
}

/// A frame on the link.
#[derive(Debug, Clone, Copy)]
pub enum Frame {
    /// Data for the SVOL: a block's new content (a write id).
    Data {
        /// What the answer settles.
        tag: Tag,
        /// The block's content.
        data: u64,
    },
    /// The SVOL's answer.
    Answer {
        /// What it settles.
        tag: Tag,
        /// Applied, or why not.
        result: Result<(), Refused>,
    },
}

/// The world.
pub struct World {
    /// The two sites: 0 "prod" (the first PVOL), 1 "standby".
    pub sites: [SimSite; 2],
    /// Frames in flight: `wire[i]` from site `i` to the other.
    pub wire: [VecDeque<Frame>; 2],
    /// The link is up.
    pub link_up: bool,
    /// The schedule's randomness.
    pub rng: StdRng,
    /// The last write id given.
    pub next_id: u64,
    /// Host writes a site wrote on its own volume. A write only the SVOL
    /// got (its PVOL write failed, fenced and refused, or cut short by a
    /// kill) is put back by the next copy of the PVOL's block.
    pub written: std::collections::HashSet<u64>,
    /// A deliberately wrong decision, to show the checkers can fail.
    pub flaw: Flaw,
    /// What happened.
    pub out: Outcome,
    /// Keep a trace.
    pub tracing: bool,
}

impl World {
    /// Notes a line of the trace.
    pub fn note(&mut self, line: impl FnOnce() -> String) {
        if self.tracing {
            self.out.trace.push(line());
        }
    }

    /// A new generation id from the seed (never 0).
    pub fn fresh(&mut self) -> u64 {
        self.rng.gen_range(1..=u64::MAX)
    }

    /// Whether site `i` can call its peer now.
    pub fn call_ok(&self, i: usize) -> bool {
        self.link_up && self.sites[i].running() && self.sites[1 - i].running()
    }

    /// Site `i` calls its peer (a request it awaits): false if it cannot.
    /// A call travels behind the frames already on the wire each way (one
    /// session, in order), so they are delivered first.
    pub fn call(&mut self, i: usize) -> bool {
        if !self.call_ok(i) {
            return false;
        }
        while let Some(from) = (0..2).find(|f| !self.wire[*f].is_empty()) {
            self.deliver(from);
        }
        self.call_ok(i)
    }

    /// Applies `event` to site `i`'s pair as the machine decides; true if the state changed.
    pub fn change(&mut self, i: usize, event: Event) -> bool {
        let m = &self.sites[i].meta;
        match machine::change(m.role, m.state, event) {
            Ok(c) => {
                let s = &mut self.sites[i];
                let before = (s.meta.role, s.meta.state);
                s.meta.state = c.state;
                if c.drop_queue && self.flaw != Flaw::KeepQueueIntoCopy {
                    s.clear_queue();
                }
                if s.meta.role != c.role {
                    s.meta.role = c.role;
                    s.applied = vec![0; BLOCKS];
                }
                if c.changed {
                    let name = s.name;
                    self.note(|| {
                        format!(
                            "  {name}: {before:?} -> {:?} ({event:?})",
                            (c.role, c.state)
                        )
                    });
                }
                c.changed
            }
            Err(e) => {
                let name = self.sites[i].name;
                self.note(|| format!("  {name}: refused {event:?}: {e}"));
                false
            }
        }
    }

    /// Suspends site `i`'s pair if it mirrors (PAIR, COPY → PSUE).
    pub fn suspend(&mut self, i: usize) {
        self.change(i, Event::Suspend);
    }

    /// Tells the peer the pair suspended here (best effort).
    pub fn tell_peer_suspended(&mut self, i: usize) {
        if self.call(i) {
            self.peer_update(1 - i, PairState::Psue);
        }
    }

    /// At site `r`: the peer set the pair's state (`Update`).
    pub fn peer_update(&mut self, r: usize, state: PairState) -> bool {
        let m = &self.sites[r].meta;
        if machine::check(m.state, state).is_err() {
            return false;
        }
        if state == PairState::Copy && m.role == Role::Svol {
            let s = &mut self.sites[r];
            s.clear_all();
            crate::generation::become_target(s.generations());
        }
        self.change(r, Event::PeerSet(state));
        true
    }

    /// The peer split or took over: site `i` splits too, as the machine says.
    pub fn split_by_peer(&mut self, i: usize) {
        match machine::split_by_peer(&self.sites[i].meta) {
            PeerSplit::Nothing => {}
            PeerSplit::Split => {
                self.change(i, Event::PeerSplit);
            }
            PeerSplit::SuspendFenced | PeerSplit::Suspend => self.suspend(i),
        }
    }

    /// Site `i` learns its SVOL was taken over: outdated, as the machine says.
    pub fn fence_taken_over(&mut self, i: usize) {
        let Some(state) = machine::outdate(&self.sites[i].meta) else {
            return;
        };
        let s = &mut self.sites[i];
        s.meta.state = state;
        s.meta.outdated = Some(Outdated {
            by: s.meta.peer.clone(),
            at: 0,
            how: "simulated".into(),
        });
        s.clear_queue();
        let name = s.name;
        self.note(|| format!("  {name}: outdated ({state:?})"));
        if self.call(i) {
            self.compare(i);
        }
    }

    /// A mirrored write of site `i` failed: what the machine says to do.
    pub fn replication_failed(&mut self, i: usize, why: Refused) {
        let failure = match why {
            Refused::State(PairState::Ssws) => Failure::TakenOver,
            Refused::State(PairState::Psus) => Failure::SplitThere,
            Refused::Disk => Failure::Disk,
            Refused::Link if !self.sites[1 - i].running() => Failure::Timeout,
            _ => Failure::Other,
        };
        match machine::write_failed(failure) {
            OnFailure::Outdate => self.fence_taken_over(i),
            OnFailure::SplitByPeer => self.split_by_peer(i),
            OnFailure::Suspend { reset_link } => {
                if reset_link && self.link_up {
                    self.cut(false);
                }
                self.suspend(i);
            }
        }
    }

    /// Puts a data frame on the wire from site `i`; false if the link is down.
    pub fn send(&mut self, i: usize, tag: Tag, data: u64) -> bool {
        if !self.call_ok(i) {
            return false;
        }
        self.wire[i].push_back(Frame::Data { tag, data });
        true
    }

    /// The link goes down (both directions). A frame in flight may have
    /// reached its running receiver (applied there, its answer lost).
    /// `keep_frozen`: a frozen site learns it at the thaw.
    pub fn cut(&mut self, keep_frozen: bool) {
        if !self.link_up {
            return;
        }
        self.note(|| "  link down".into());
        for from in 0..2 {
            while let Some(frame) = self.wire[from].pop_front() {
                let to = 1 - from;
                if let Frame::Data { tag, data } = frame {
                    if self.sites[to].running() && self.rng.gen_bool(0.5) {
                        let _ = self.apply(to, tag, data);
                    }
                }
            }
        }
        self.link_up = false;
        for i in 0..2 {
            if self.sites[i].frozen && keep_frozen {
                self.sites[i].missed_link_down = true;
            } else if self.sites[i].alive {
                self.link_down(i);
            }
        }
    }

    /// Site `i` learns the link is down: what was in flight fails, the pair suspends.
    pub fn link_down(&mut self, i: usize) {
        let flights = std::mem::take(&mut self.sites[i].flights);
        for f in flights {
            let tag = Tag::Host {
                id: f.id,
                block: f.block,
                seq: f.seq,
            };
            self.sites[i].flights.push(f);
            self.answer(i, tag, Err(Refused::Link));
        }
        if !self.sites[i].in_copy.is_empty() || self.sites[i].copying {
            self.copy_failed(i);
        }
        if std::mem::take(&mut self.sites[i].shipping) > 0 {
            // The shipper's window failed: it drops the queue.
            self.sites[i].clear_queue();
        }
        self.suspend(i);
    }

    /// At site `r`: a data frame arrives; returns the answer.
    pub fn apply(&mut self, r: usize, tag: Tag, data: u64) -> Result<(), Refused> {
        let m = &self.sites[r].meta;
        let result = match machine::accepts_copies(m.role, m.state) {
            Err(machine::NotApplied::NotSvol) => Err(Refused::NotSvol),
            Err(machine::NotApplied::WrongState(s)) => Err(Refused::State(s)),
            Ok(()) => {
                let block = match tag {
                    Tag::Host { block, .. }
                    | Tag::Queued { block, .. }
                    | Tag::Copy { block, .. } => block,
                };
                if self.sites[r].write(block, data) {
                    self.applied_in_order(r, block, data);
                    Ok(())
                } else {
                    self.suspend(r);
                    Err(Refused::Disk)
                }
            }
        };
        let name = self.sites[r].name;
        self.note(|| format!("  {name} applies {tag:?} = {data}: {result:?}"));
        result
    }

    /// Delivers the oldest frame from site `from` to the other.
    pub fn deliver(&mut self, from: usize) {
        let Some(frame) = self.wire[from].pop_front() else {
            return;
        };
        let to = 1 - from;
        match frame {
            Frame::Data { tag, data } => {
                let result = self.apply(to, tag, data);
                self.wire[to].push_back(Frame::Answer { tag, result });
            }
            Frame::Answer { tag, result } => self.answer(to, tag, result),
        }
    }

    /// At site `i`: the answer to a frame it sent.
    pub fn answer(&mut self, i: usize, tag: Tag, result: Result<(), Refused>) {
        match tag {
            Tag::Host { id, block, seq } => {
                let s = &mut self.sites[i];
                let Some(at) = s.flights.iter().position(|f| f.id == id) else {
                    return; // dropped (its PVOL write failed): the bits stay set
                };
                let f = s.flights.remove(at);
                self.settle(i, f, result);
                let _ = (block, seq);
            }
            Tag::Queued { block, seq } => {
                let s = &mut self.sites[i];
                s.shipping = s.shipping.saturating_sub(1);
                match result {
                    Ok(()) => s.acked(block, seq),
                    Err(_) => {
                        s.clear_queue();
                        s.in_copy.clear();
                        self.suspend(i);
                    }
                }
            }
            Tag::Copy { block, seq } => {
                let s = &mut self.sites[i];
                let Some(at) = s.in_copy.iter().position(|c| *c == (block, seq)) else {
                    return;
                };
                s.in_copy.remove(at);
                match result {
                    Ok(()) => s.acked(block, seq),
                    Err(_) => self.copy_failed(i),
                }
            }
        }
    }

    /// A copy (or adaptive overflow shipping) of site `i` stopped.
    pub fn copy_failed(&mut self, i: usize) {
        let s = &mut self.sites[i];
        s.in_copy.clear();
        if !s.copying {
            s.clear_queue();
        }
        s.copying = false;
        self.suspend(i);
    }

    /// A host write's answer settles at site `i`.
    fn settle(&mut self, i: usize, f: Flight, result: Result<(), Refused>) {
        match (f.fenced, result) {
            (Some(_), Ok(())) => {
                // Remote first, local after.
                if self.wrote(i, f.id, f.block) {
                    self.sites[i].acked(f.block, f.seq);
                    self.host_ack(i, f.id, f.block, true);
                } else {
                    self.pvol_write_failed(i, f.id, f.block);
                }
            }
            (Some(clean_before), Err(why)) => {
                if clean_before && matches!(why, Refused::State(_)) {
                    // Neither copy took it.
                    self.sites[i].acked(f.block, f.seq);
                }
                self.replication_failed(i, why);
            }
            (None, Ok(())) => {
                self.sites[i].acked(f.block, f.seq);
                if !f.answered {
                    self.host_ack(i, f.id, f.block, true);
                }
            }
            (None, Err(why)) => {
                if self.flaw == Flaw::FailedIsAcked {
                    self.sites[i].acked(f.block, f.seq);
                } else if !f.answered {
                    self.sites[i].mark(f.block);
                }
                self.replication_failed(i, why);
                if !f.answered {
                    // Fence never: the PVOL holds it; the pair suspended and tracks it.
                    self.host_ack(i, f.id, f.block, false);
                }
            }
        }
    }

    /// Site `i`'s own write `id` of a mirrored host write failed: the pair
    /// suspends at both sites, the block stays dirty, the host is told.
    pub fn pvol_write_failed(&mut self, i: usize, id: u64, block: usize) {
        let _ = (id, block);
        self.suspend(i);
        self.tell_peer_suspended(i);
    }

    /// Site `i` wrote host write `id` on its own volume.
    pub fn wrote(&mut self, i: usize, id: u64, block: usize) -> bool {
        let ok = self.sites[i].write(block, id);
        if ok {
            self.written.insert(id);
        }
        ok
    }

    /// Site `i` answers a host write: acknowledged, unless it is outdated
    /// by now (a write under way when it learned it fails too).
    pub fn host_ack(&mut self, i: usize, id: u64, block: usize, mirrored: bool) {
        if self.sites[i].meta.outdated.is_some() && self.flaw != Flaw::OutdatedAcks {
            self.out.counts.refused += 1;
            return;
        }
        self.acknowledged(i, id, block, mirrored);
    }
}

/// The properties that are checked at the moment of an event of the world
/// itself (the rest are in `checks`, which judges the world from outside).
impl World {
    /// Records a broken property.
    pub fn violation(&mut self, what: String) {
        self.note(|| format!("VIOLATION: {what}"));
        self.out.violations.push(what);
    }

    /// Site `i` answered a host write `id` to `block` as done; `mirrored`: the SVOL acknowledged it.
    pub fn acknowledged(&mut self, i: usize, id: u64, block: usize, mirrored: bool) {
        if self.sites[i].meta.outdated.is_some() {
            let name = self.sites[i].name;
            self.violation(format!("outdated PVOL at '{name}' acknowledged write {id}"));
        }
        if mirrored {
            self.out.counts.acked_mirrored += 1;
            let svol = &self.sites[1 - i];
            if svol.vol[block] < id {
                let (name, has) = (svol.name, svol.vol[block]);
                self.violation(format!("write {id} acknowledged as mirrored, but block {block} at '{name}' holds {has}"));
            }
        } else {
            self.out.counts.acked_alone += 1;
        }
    }

    /// Site `r`'s SVOL applied `data` to `block`: never older than what it applied before.
    pub fn applied_in_order(&mut self, r: usize, block: usize, data: u64) {
        let before = self.sites[r].applied[block];
        // Older data may replace only a write the PVOL never wrote (a copy puts its block back).
        if data < before && self.written.contains(&before) {
            let name = self.sites[r].name;
            self.violation(format!(
                "SVOL at '{name}' applied write {data} to block {block} after write {before}"
            ));
        }
        self.sites[r].applied[block] = data;
    }
}
