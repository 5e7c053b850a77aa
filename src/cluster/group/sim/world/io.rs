//! The simulated world's LAN and group volume: which fault is on, when an
//! I/O completes (a hung path holds it to the hang's end; past the
//! deadline it fails), a read's begin, a datagram's loss and delay.
//! Part of [`super::World`]; single-threaded.

use super::{Ev, World};
use crate::cluster::group::sim::Fault;

impl World<'_> {
    /// The fault of `kind` on `host` at `t`, if one is on.
    pub(super) fn fault(&self, kind: usize, host: Option<usize>, t: u64) -> Option<&Fault> {
        self.s.faults.iter().find(|f| {
            f.kind == kind && f.from <= t && t < f.to && host.is_none_or(|h| f.arg == h as u64)
        })
    }

    /// An I/O issued now by `h`: when it completes, and whether it returns
    /// within the deadline (None: it fails at once).
    pub(super) fn io(&mut self, h: usize, lost: usize) -> Option<(u64, bool)> {
        if self.fault(lost, Some(h), self.now).is_some() {
            return None;
        }
        let deadline = (self.s.master_timeout / 2).max(self.s.interval);
        let done = match self.fault(5, Some(h), self.now).map(|f| f.to) {
            Some(to) => to + self.rng.range(1, 3),
            None => self.now + self.rng.range(1, 3),
        };
        Some((done, done - self.now <= deadline))
    }

    pub(super) fn read(&mut self, h: usize) {
        let deadline = (self.s.master_timeout / 2).max(self.s.interval);
        let began = self.now;
        match self.io(h, 4) {
            None => self.push(began + 1, Ev::ReadDone(h, began, None)),
            Some((done, true)) => self.push(done, Ev::ReadComplete(h, began)),
            Some((_, false)) => self.push(began + deadline, Ev::ReadDone(h, began, None)),
        }
    }

    pub(super) fn send(&mut self, from: usize, to: usize, beat: Option<u64>) {
        let t = self.now;
        let cut = self.fault(0, None, t).is_some_and(|f| {
            let side = |x: usize| f.arg >> x & 1;
            side(from) != side(to)
        });
        let loss = self.fault(1, None, t).map_or(0, |f| f.arg);
        let extra = self.fault(2, None, t).map_or(0, |f| f.arg);
        if cut || self.rng.range(1, 100) <= loss {
            return;
        }
        let delay = self.rng.range(0, 2) + self.rng.range(0, extra);
        self.push(t + delay, Ev::Msg { to, from, beat });
    }
}
