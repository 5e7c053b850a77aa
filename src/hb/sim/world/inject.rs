//! Faults injected into a running world (`World::fault`): the channels
//! cut, degraded, replayed or fed garbage; mirrors stopped, failing or
//! rolled back; clocks stepped; hbd stopped, killed or restarted; a
//! person's procedure change or install; local checks that fail (a notice,
//! production that cannot serve, a side that cannot carry the duties).
//! On the world's one thread.

use super::{Ev, Quality, World};
use crate::hb::logic::message::Procedure;
use crate::hb::sim::faults::{Fault, PROD};

impl World {
    pub(super) fn fault(&mut self, f: Fault) {
        let t = self.t;
        self.note(|| format!("fault: {f:?}"));
        match f {
            Fault::NetCut { net, to, on } => self.cut[net][to] = on,
            Fault::NetQuality {
                net,
                drop,
                dup,
                delay_max_ms,
            } => {
                self.quality[net] = Quality {
                    drop,
                    dup,
                    delay_max_ms,
                }
            }
            Fault::NicDown { side, net, on } => self.sides[side].nic_down[net] = on,
            Fault::NetReplay { net, to, count } => {
                let old: Vec<(Vec<u8>, usize)> = self.captured[net]
                    .iter()
                    .filter(|(_, _, from)| *from != to)
                    .map(|(b, o, _)| (b.clone(), *o))
                    .collect();
                for _ in 0..count.min(old.len()) {
                    let (bytes, origin) = self.rng.pick(&old).clone();
                    let delay = self.rng.range(1, self.shape.interval_ms);
                    let ev = Ev::Datagram {
                        net,
                        to,
                        bytes,
                        origin: Some(origin),
                    };
                    self.at(t + delay, ev);
                }
            }
            Fault::Garbage { net, to } => {
                let len = self.rng.range(0, 300) as usize;
                let junk: Vec<u8> = (0..len).map(|_| self.rng.next_u64() as u8).collect();
                self.at(
                    t + 1,
                    Ev::Datagram {
                        net,
                        to,
                        bytes: junk,
                        origin: None,
                    },
                );
                if let Some((mut bytes, _, _)) = self.captured[net].back().cloned() {
                    if !bytes.is_empty() {
                        let i = self.rng.range(0, bytes.len() as u64 - 1) as usize;
                        bytes[i] ^= 1 << self.rng.range(0, 7);
                        self.at(
                            t + 2,
                            Ev::Datagram {
                                net,
                                to,
                                bytes,
                                origin: None,
                            },
                        );
                    }
                }
            }
            Fault::MirrorCut { mirror, on } => self.mirrors[mirror].cut = on,
            Fault::MirrorReadError { mirror, on } => self.mirrors[mirror].read_error = on,
            Fault::MirrorWriteError { mirror, on } => self.mirrors[mirror].write_error = on,
            Fault::MirrorDelay { mirror, ms } => self.mirrors[mirror].delay_ms = ms,
            Fault::MirrorReplay { mirror } => {
                let m = &self.mirrors[mirror];
                if !m.history.is_empty() {
                    let i = self.rng.range(0, m.history.len() as u64 - 1) as usize;
                    let old = m.history[i].clone();
                    self.mirrors[mirror].svol = Some(old);
                }
            }
            Fault::ClockJump { side, ms } => self.sides[side].skew_ms += ms,
            Fault::Stall { side, ms } => self.sides[side].stop(t, ms),
            Fault::Crash { side } => {
                let s = &mut self.sides[side];
                s.crash();
                // What waited in a stopped process's sockets dies with it.
                if let Some(until) = s.stalled_until.take().filter(|&u| u > t) {
                    self.queue.retain(|(at, _), ev| {
                        *at != until
                            || !matches!(ev, Ev::Datagram { to, .. } | Ev::LocalDone(to, _) if *to == side)
                    });
                }
                self.sides[side].stopped_ms = 0;
            }
            Fault::Restart { side } => {
                if !self.sides[side].up {
                    let instance = self.rng.next_u64();
                    self.sides[side].restart(t, instance);
                    self.checks.restarted(side, t);
                }
            }
            Fault::Procedure {
                side,
                network,
                mirrors,
            } => {
                if self.sides[side].up {
                    self.sides[side].procedure(Procedure {
                        network,
                        mirrors,
                        ..Procedure::default()
                    });
                }
            }
            Fault::Install { mirror, on } => {
                let writer = self.shape.writer(mirror);
                if self.sides[writer].up {
                    let name = self.shape.mirror_name(mirror);
                    self.sides[writer].install(&name, on);
                }
            }
            Fault::Notice { side } => {
                if self.sides[side].up {
                    self.sides[side].notice(t);
                }
            }
            // A check's outcome is the host's, whether hbd runs or not.
            Fault::CannotServe { on } => self.sides[PROD].cannot_serve = on,
            Fault::Serious { side, on } => self.sides[side].serious = on,
        }
    }
}
