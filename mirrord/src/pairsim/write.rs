//! Host writes and the background shipping of a simulated site: a write in
//! the policy the machine gives ([`machine::host_write`]), carried out the
//! way `site::datapath` does (marked first; sync: shipped, written,
//! acknowledged at the ack; fenced: written after the ack; semi-sync: one
//! unacknowledged; adaptive: queued or tracked); the copy task and the
//! adaptive shipper, one frame per step.

use hbcore::vocab::{PairState, Role};

use super::site::{Flight, Tag, BLOCKS};
use super::world::{Refused, World};
use crate::fence::Refusal;
use crate::generation;
use crate::pair::machine::{self, Event, WritePolicy};

/// Most frames a copy or the shipper keeps on the wire.
const WINDOW: usize = 2;

impl World {
    /// A host at site `i` writes a block.
    pub fn host_write(&mut self, i: usize) {
        if !self.sites[i].running() {
            return;
        }
        let policy = machine::host_write(&self.sites[i].meta);
        let pending = !self.sites[i].flights.is_empty();
        // Fenced holds the order lock until the ack; semi-sync waits for the previous ack.
        if pending && matches!(policy, WritePolicy::Fenced | WritePolicy::SemiSync) {
            return;
        }
        let block = self.rng_block();
        self.next_id += 1;
        let id = self.next_id;
        let name = self.sites[i].name;
        self.note(|| format!("{name}: host write {id} to block {block}: {policy:?}"));
        if let WritePolicy::Refuse(why) = &policy {
            if *why == Refusal::Fenced || matches!(why, Refusal::Outdated(_)) {
                self.out.counts.refused += 1;
            }
            return;
        }
        let clean_before = self.sites[i].dirty[block] == 0;
        let seq = self.sites[i].mark(block);
        match policy {
            WritePolicy::Refuse(_) => {}
            WritePolicy::Alone { diverge } => {
                if diverge {
                    let fresh = self.fresh();
                    generation::diverge_to(self.sites[i].generations(), fresh);
                }
                if self.wrote(i, id, block) {
                    self.host_ack(i, id, block, false);
                }
            }
            WritePolicy::Fenced => {
                let f = Flight {
                    id,
                    block,
                    seq,
                    fenced: Some(clean_before),
                    answered: false,
                };
                self.sites[i].flights.push(f);
                if !self.send(i, Tag::Host { id, block, seq }, id) {
                    self.answer(i, Tag::Host { id, block, seq }, Err(Refused::Link));
                }
            }
            WritePolicy::Sync | WritePolicy::SemiSync => {
                let semi = policy == WritePolicy::SemiSync;
                // Semi-sync asks again: the previous write's settling may have suspended the pair.
                let still = !semi || machine::still_mirroring(&self.sites[i].meta);
                let shipped = still && self.send(i, Tag::Host { id, block, seq }, id);
                if !self.wrote(i, id, block) {
                    // The PVOL write failed: the pair suspends at both sites, the bits stay set.
                    self.pvol_write_failed(i, id, block);
                    return;
                }
                let f = Flight {
                    id,
                    block,
                    seq,
                    fenced: None,
                    answered: semi,
                };
                if shipped {
                    self.sites[i].flights.push(f);
                } else if still {
                    self.sites[i].flights.push(f);
                    self.answer(i, Tag::Host { id, block, seq }, Err(Refused::Link));
                }
                if semi {
                    self.host_ack(i, id, block, false);
                }
            }
            WritePolicy::Adaptive { queue } => {
                if !self.wrote(i, id, block) {
                    self.pvol_write_failed(i, id, block);
                    return;
                }
                let s = &mut self.sites[i];
                if queue {
                    if !s.overflowed && s.queue.len() < s.meta.settings.skew as usize {
                        s.queue.push_back((block, id, seq));
                    } else {
                        s.overflowed = true;
                    }
                }
                self.host_ack(i, id, block, false);
            }
        }
    }

    fn rng_block(&mut self) -> usize {
        use rand::Rng;
        self.rng.gen_range(0..BLOCKS)
    }

    /// Starts site `i`'s copy task (initial copy, resync), unless one runs.
    pub fn start_copy(&mut self, i: usize) {
        let s = &self.sites[i];
        if s.meta.role != Role::Pvol || s.copying || !s.running() {
            return;
        }
        self.sites[i].copying = true;
        self.change(i, Event::CopyStarted);
        let settings = self.sites[i].meta.settings;
        if !self.call(i) || !self.peer_update(1 - i, PairState::Copy) {
            self.copy_failed(i);
            return;
        }
        self.sites[1 - i].meta.settings = settings;
    }

    /// One step of site `i`'s background work: the copy task or the adaptive shipper.
    pub fn ship(&mut self, i: usize) {
        let s = &self.sites[i];
        if !s.running() || s.meta.role != Role::Pvol || s.order_locked() {
            return;
        }
        if s.copying {
            return self.copy_step(i);
        }
        let adaptive = s.meta.settings.mode == hbcore::vocab::Mode::Adaptive;
        if !adaptive || s.meta.state != PairState::Pair {
            return;
        }
        if s.shipping + s.in_copy.len() >= WINDOW {
            return;
        }
        if let Some((block, id, seq)) = self.sites[i].queue.pop_front() {
            self.sites[i].shipping += 1;
            if !self.send(i, Tag::Queued { block, seq }, id) {
                self.sites[i].shipping -= 1;
                self.sites[i].clear_queue();
                self.suspend(i);
            }
            return;
        }
        if self.sites[i].overflowed && !self.send_dirty(i) && self.sites[i].in_copy.is_empty() {
            self.sites[i].overflowed = false;
        }
    }

    /// Puts site `i`'s next dirty block not on the wire on it, read back
    /// from the volume; false if there is none.
    fn send_dirty(&mut self, i: usize) -> bool {
        let s = &self.sites[i];
        let next = (0..BLOCKS).find(|b| s.dirty[*b] != 0 && !s.in_copy.iter().any(|c| c.0 == *b));
        let Some(block) = next else {
            return false;
        };
        let (seq, data) = (s.dirty[block], s.vol[block]);
        self.sites[i].in_copy.push((block, seq));
        if !self.send(i, Tag::Copy { block, seq }, data) {
            self.copy_failed(i);
        }
        true
    }

    /// The copy task: a frame, or (clean, nothing in flight) both sides PAIR.
    fn copy_step(&mut self, i: usize) {
        let s = &self.sites[i];
        if !matches!(
            s.meta.state,
            PairState::Pair | PairState::Copy | PairState::Psue
        ) {
            return self.copy_failed(i); // it left the copy
        }
        if s.in_copy.len() < WINDOW && self.send_dirty(i) {
            return;
        }
        let s = &self.sites[i];
        if !s.in_copy.is_empty() || !s.flights.is_empty() || s.dirty_blocks() > 0 {
            return;
        }
        // Clean, drained: join the generations, both PAIR.
        if !self.call(i) {
            return self.copy_failed(i);
        }
        let s = &self.sites[i];
        if !s.copying || !s.in_copy.is_empty() || !s.flights.is_empty() || s.dirty_blocks() > 0 {
            return; // the answers delivered before the call changed things
        }
        self.sites[i].flush();
        let Some(current) = self.sites[i].meta.generations().current else {
            return self.copy_failed(i);
        };
        generation::joined_as_target(self.sites[1 - i].generations(), current);
        generation::joined_as_source(self.sites[i].generations());
        if !self.peer_update(1 - i, PairState::Pair) {
            return self.copy_failed(i);
        }
        self.sites[i].copying = false;
        self.change(i, Event::CopyDone);
        self.sites[i].overflowed = false;
        self.out.counts.copies_done += 1;
        super::checks::copy_done(self, i);
    }
}
