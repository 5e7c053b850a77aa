//! What people, hbd and the link's comings and goings do to a simulated
//! pair, carried out as `site::{connect, resync, ops, outdate}` do, with
//! every decision the machine's: the reconnect (generations compared,
//! [`machine::on_divergence`], [`machine::resume`]), resyncs plain and
//! reversed, a person's choice of data, takeover, hbd's step-down, split,
//! a mode change; and the processes' kill -9, restart, freeze and thaw.

use hbcore::vocab::{Fence, Mode, PairState, Role};

use super::checks::{self, Compared};
use super::world::World;
use crate::generation::{self, Verdict};
use crate::pair::machine::{self, Divergence, Event, Resume};

/// Whose data a resync from the PVOL keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// As the generations allow.
    AsUsual,
    /// A person chose the PVOL's.
    Pvol,
}

impl World {
    /// Site `i` compares its generations with its peer's (the link is up).
    pub fn compare(&mut self, i: usize) -> Compared {
        let (l, r) = (&self.sites[i], &self.sites[1 - i]);
        let (local_dirty, peer_dirty) = (l.dirty_blocks(), r.dirty_blocks());
        let verdict = generation::judge(
            &l.meta.generations(),
            &r.meta.generations(),
            local_dirty,
            peer_dirty,
        );
        let c = Compared {
            verdict,
            local_dirty,
            peer_dirty,
            peer_state: r.meta.state,
        };
        let name = l.name;
        self.note(|| format!("  {name}: generations compared: {c:?}"));
        checks::verdict(self, i, &c);
        c
    }

    /// The link comes up: each PVOL re-attaches and decides.
    pub fn link_comes_up(&mut self) {
        if self.link_up || !self.sites[0].running() || !self.sites[1].running() {
            return;
        }
        self.link_up = true;
        self.note(|| "  link up".into());
        for i in 0..2 {
            if self.sites[i].meta.role == Role::Pvol && self.link_up {
                self.reattach(i);
            }
        }
    }

    /// Site `i` re-attaches its PVOL pair and acts on the verdict.
    fn reattach(&mut self, i: usize) {
        let c = self.compare(i);
        if c.verdict == Verdict::Unrelated {
            return self.suspend(i);
        }
        if c.peer_state == PairState::Ssws {
            self.fence_taken_over(i);
        }
        // Attach: the peer takes the PVOL's settings and says its state.
        let previous = self.sites[1 - i].meta.state;
        self.sites[1 - i].meta.settings = self.sites[i].meta.settings;
        let policy = self.sites[i].meta.integrity.split_brain;
        match machine::on_divergence(c.verdict, previous, policy, c.local_dirty, c.peer_dirty) {
            Some(Divergence::KeepMine) => {
                self.resync_here(i, Keep::Pvol);
                return;
            }
            Some(Divergence::KeepTheirs) => {
                self.keep_mine(1 - i);
                return;
            }
            Some(Divergence::Stop { split, .. }) => {
                if split {
                    self.split_by_peer(i);
                } else {
                    self.suspend(i);
                }
                return;
            }
            None => {}
        }
        let dirty = self.sites[i].dirty_blocks();
        match machine::resume(&self.sites[i].meta, previous, dirty) {
            Resume::Outdate => self.fence_taken_over(i),
            Resume::Wait | Resume::WaitResync => {}
            Resume::Split => self.split_by_peer(i),
            Resume::InSync => {
                if !self.peer_update(1 - i, PairState::Pair) {
                    self.suspend(i);
                }
            }
            Resume::Resync => {
                self.resync_here(i, Keep::AsUsual);
            }
        }
    }

    /// At the PVOL `i`: compare, merge the SVOL's bitmap, both COPY, copy.
    /// False if refused.
    pub fn resync_here(&mut self, i: usize, keep: Keep) -> bool {
        if self.sites[i].meta.role != Role::Pvol || !self.call(i) {
            return false;
        }
        let s = &self.sites[i];
        if s.meta.role != Role::Pvol {
            return false;
        }
        if s.meta.state == PairState::Pair && s.dirty_blocks() == 0 {
            return true;
        }
        let c = self.compare(i);
        let full = match keep {
            Keep::Pvol => c.verdict.full_copy(),
            Keep::AsUsual => {
                match machine::plain_resync(self.sites[i].meta.state, c.verdict, c.peer_state) {
                    Some(full) => full,
                    None => return false,
                }
            }
        };
        if full {
            self.sites[i].mark_all();
        }
        if self.flaw != super::Flaw::ResyncSkipsPeerBitmap {
            let bits = self.sites[1 - i].bits();
            self.sites[i].merge(&bits);
        }
        self.change(i, Event::ResyncStarted);
        self.sites[i].meta.outdated = None;
        self.out.counts.resyncs += 1;
        self.start_copy(i);
        true
    }

    /// At the SVOL `i`: the roles reverse and its data is copied back
    /// (`chosen`: a person chose its data). False if refused.
    pub fn reverse_here(&mut self, i: usize, chosen: bool) -> bool {
        // The old PVOL's site takes its volume's order lock first.
        if !machine::may_reverse(&self.sites[i].meta, chosen)
            || !self.call(i)
            || !machine::may_reverse(&self.sites[i].meta, chosen)
            || self.sites[1 - i].order_locked()
        {
            return false;
        }
        let c = self.compare(i);
        if machine::reverse_allowed(c.verdict, chosen).is_err() {
            return false;
        }
        let fresh = self.fresh();
        generation::diverge_to(self.sites[i].generations(), fresh);
        // At the old PVOL: its bitmap handed over, target of the copy, SVOL now.
        let r = 1 - i;
        if self.sites[r].meta.role != Role::Pvol {
            return false;
        }
        let s = &mut self.sites[r];
        s.clear_queue();
        let bits = s.bits();
        s.clear_all();
        generation::become_target(s.generations());
        self.change(r, Event::Reversed(Role::Svol));
        self.sites[r].meta.outdated = None;
        self.sites[i].merge(&bits);
        if c.verdict.full_copy() {
            self.sites[i].mark_all();
        }
        self.change(i, Event::Reversed(Role::Pvol));
        self.out.counts.reverses += 1;
        self.start_copy(i);
        true
    }

    /// A person at the peer chose site `i`'s data.
    pub fn keep_mine(&mut self, i: usize) {
        match self.sites[i].meta.role {
            Role::Pvol => {
                self.resync_here(i, Keep::Pvol);
            }
            Role::Svol => {
                self.reverse_here(i, true);
            }
        }
    }

    /// A person asks for a resync at site `i` (plain; at an outdated PVOL refused).
    pub fn resync(&mut self, i: usize) {
        if !self.call(i) {
            return;
        }
        match self.sites[i].meta.role {
            Role::Pvol if self.sites[i].meta.outdated.is_some() => {
                self.compare(i);
            }
            Role::Pvol => {
                self.resync_here(i, Keep::AsUsual);
            }
            Role::Svol => {
                self.resync_here(1 - i, Keep::AsUsual);
            }
        }
    }

    /// `--discard-local` at site `i`: the peer's data wins.
    pub fn discard_local(&mut self, i: usize) {
        if self.call(i) {
            self.keep_mine(1 - i);
        }
    }

    /// The SVOL's site `i` takes over (SSWS), telling the PVOL's site if it can.
    pub fn takeover(&mut self, i: usize) {
        let m = &self.sites[i].meta;
        if m.role != Role::Svol || m.state == PairState::Ssws || !self.sites[i].running() {
            return;
        }
        let from = m.state;
        if !self.change(i, Event::Takeover(from)) {
            return;
        }
        let fresh = self.fresh();
        generation::diverge_to(self.sites[i].generations(), fresh);
        self.out.counts.takeovers += 1;
        if self.call(i) {
            self.fence_taken_over(1 - i);
        }
    }

    /// hbd at the PVOL's site `i` stepped down: `pair outdate`.
    pub fn step_down(&mut self, i: usize) {
        if self.sites[i].running() {
            self.fence_taken_over(i);
        }
    }

    /// A person splits the pair at the PVOL `i`: what is pending ships first.
    pub fn split(&mut self, i: usize) {
        let s = &self.sites[i];
        let quiet = self.wire.iter().all(|w| w.is_empty()) && s.flights.is_empty();
        if s.meta.role != Role::Pvol
            || s.meta.outdated.is_some()
            || machine::may_split(s.meta.state).is_err()
            || !self.call_ok(i)
            || !quiet
        {
            return;
        }
        if s.meta.state == PairState::Pair {
            self.sites[i].clear_queue();
            for b in 0..super::site::BLOCKS {
                let (seq, data) = (self.sites[i].dirty[b], self.sites[i].vol[b]);
                if seq != 0
                    && self
                        .apply(1 - i, super::site::Tag::Copy { block: b, seq }, data)
                        .is_ok()
                {
                    self.sites[i].acked(b, seq);
                }
            }
        }
        self.sites[i].clear_queue();
        self.change(i, Event::Split);
        self.peer_update(1 - i, PairState::Psus);
        self.out.counts.splits += 1;
    }

    /// A person changes the mode at the PVOL `i` (`pair set --mode`).
    pub fn set_mode(&mut self, i: usize, mode: Mode) {
        let s = &self.sites[i];
        if s.meta.role != Role::Pvol || s.meta.settings.fence == Fence::Data || !s.running() {
            return;
        }
        let before = s.meta.settings.mode;
        self.sites[i].meta.settings.mode = mode;
        if self.call(i) {
            self.sites[1 - i].meta.settings.mode = mode;
        }
        if before == Mode::Adaptive && mode != Mode::Adaptive {
            self.sites[i].clear_queue();
            if self.sites[i].dirty_blocks() > 0 && self.change(i, Event::AdaptiveDrained) {
                self.start_copy(i);
            }
        }
    }

    /// kill -9 of site `i`.
    pub fn kill(&mut self, i: usize) {
        if !self.sites[i].alive {
            return;
        }
        self.sites[i].kill();
        self.cut(true);
        self.out.counts.kills += 1;
    }

    /// Site `i` starts again after a kill: a PVOL found mirroring is PSUE.
    pub fn restart(&mut self, i: usize) {
        if self.sites[i].alive {
            return;
        }
        self.sites[i].restart();
        let m = &self.sites[i].meta;
        if m.role == Role::Pvol {
            self.change(i, Event::LoadedAfterCrash);
        }
    }

    /// Site `i` freezes (a paused VM): the peer loses the link, it does not notice.
    pub fn freeze(&mut self, i: usize) {
        if !self.sites[i].running() {
            return;
        }
        self.sites[i].frozen = true;
        self.cut(true);
    }

    /// Site `i` thaws: it learns now what happened to the link meanwhile.
    pub fn thaw(&mut self, i: usize) {
        if !self.sites[i].frozen {
            return;
        }
        self.sites[i].frozen = false;
        if std::mem::take(&mut self.sites[i].missed_link_down) {
            self.link_down(i);
        }
        self.out.counts.thaws += 1;
    }
}
