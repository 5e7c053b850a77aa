//! A schedule from a seed: the configuration of the two sides (interval,
//! timeout, networks, mirrors each way) and the faults, each at its time.
//! A schedule mixes one to six episodes; each episode is one kind of fault
//! (the kinds the summary counts), some with an end (restore) of their own.

use super::rng::Rng;

/// A side: 0 is production, 1 the standby.
pub type SideId = usize;
/// Production.
pub const PROD: SideId = 0;
/// The standby.
pub const STANDBY: SideId = 1;

/// The shape of both sides (the same at both, as the analysis requires).
#[derive(Debug, Clone)]
pub struct Shape {
    /// Heartbeat interval, ms.
    pub interval_ms: u64,
    /// Channel timeout, ms.
    pub timeout_ms: u64,
    /// Networks.
    pub networks: usize,
    /// Mirrors production writes (the standby reads).
    pub mirrors_from_prod: usize,
    /// Mirrors the standby writes (production reads).
    pub mirrors_from_standby: usize,
    /// Simulated time, ms.
    pub length_ms: u64,
}

/// One fault or repair, at its time. (Each variant's sentence names its
/// fields: `net` and `mirror` are indexes, `to` and `side` [`SideId`]s.)
#[allow(missing_docs)]
#[derive(Debug, Clone)]
pub enum Fault {
    /// Network `net` towards side `to` drops everything (`on`) or works again.
    NetCut { net: usize, to: SideId, on: bool },
    /// Network `net` (both ways) loses, duplicates and delays datagrams
    /// (random delays reorder them); all zero restores it.
    NetQuality {
        net: usize,
        drop: f64,
        dup: f64,
        delay_max_ms: u64,
    },
    /// Side `side`'s NIC of network `net` is down (both ways; its local check fails).
    NicDown { side: SideId, net: usize, on: bool },
    /// `count` old datagrams captured on network `net` are sent again to `to`.
    NetReplay {
        net: usize,
        to: SideId,
        count: usize,
    },
    /// Random bytes, and a real frame with a flipped bit, on network `net` to `to`.
    Garbage { net: usize, to: SideId },
    /// Mirror `mirror` stops replicating (`on`): its SVOL stays as it is.
    MirrorCut { mirror: usize, on: bool },
    /// Reads of mirror `mirror`'s SVOL fail (EIO).
    MirrorReadError { mirror: usize, on: bool },
    /// Writes of mirror `mirror`'s PVOL fail.
    MirrorWriteError { mirror: usize, on: bool },
    /// Mirror `mirror` replicates after this delay, ms.
    MirrorDelay { mirror: usize, ms: u64 },
    /// Mirror `mirror`'s SVOL goes back to an old heartbeat (a resync from an old copy).
    MirrorReplay { mirror: usize },
    /// Side `side`'s wall clock steps by `ms` (either way; the monotonic clock does not).
    ClockJump { side: SideId, ms: i64 },
    /// hbd at `side` is stopped for `ms` (SIGSTOP, a frozen VM), then runs on.
    Stall { side: SideId, ms: u64 },
    /// hbd at `side` is killed (what it persisted stays).
    Crash { side: SideId },
    /// hbd at `side` starts again from what it persisted.
    Restart { side: SideId },
    /// A person at `side` turns channels off or on (`hbctl hb procedure`).
    Procedure {
        side: SideId,
        network: Option<bool>,
        mirrors: Option<bool>,
    },
    /// The writer of mirror `mirror` de-installs it (or installs it again),
    /// telling the peer with a control message.
    Install { mirror: usize, on: bool },
    /// A local check at `side` fails: a failure notice for the peer.
    Notice { side: SideId },
    /// Production's SYSTEM DOWN check fails (`on`) or passes again: it
    /// cannot serve, and hands over.
    CannotServe { on: bool },
    /// A SERIOUS check at `side` fails (`on`) or passes again: it cannot
    /// carry the duties (QoS), and refuses a handover.
    Serious { side: SideId, on: bool },
}

/// The episodes' kinds, as the summary counts them.
pub const KINDS: [&str; 15] = [
    "network",
    "mirror",
    "both",
    "flapping",
    "delay",
    "duplicate-reorder",
    "replay",
    "garbage",
    "clock-jump",
    "stall",
    "restart",
    "production-death",
    "nic",
    "control",
    "handover",
];

/// A schedule: the shape, and the faults in time order.
pub struct Schedule {
    /// The sides' shape.
    pub shape: Shape,
    /// (time ms, fault).
    pub faults: Vec<(u64, Fault)>,
    /// The kinds of episode, one per episode.
    pub kinds: Vec<&'static str>,
}

impl Shape {
    /// All mirrors, both ways.
    pub fn mirrors(&self) -> usize {
        self.mirrors_from_prod + self.mirrors_from_standby
    }

    /// The side that writes mirror `m`.
    pub fn writer(&self, m: usize) -> SideId {
        if m < self.mirrors_from_prod {
            PROD
        } else {
            STANDBY
        }
    }

    /// Mirror `m`'s name.
    pub fn mirror_name(&self, m: usize) -> String {
        if m < self.mirrors_from_prod {
            format!("p{m}")
        } else {
            format!("s{}", m - self.mirrors_from_prod)
        }
    }
}

/// The schedule of `seed`.
pub fn schedule(seed: u64) -> Schedule {
    let mut r = Rng::new(seed);
    let interval_ms = *r.pick(&[50, 100, 200]);
    let timeout_ms = interval_ms * *r.pick(&[3, 5, 10]);
    let shape = Shape {
        interval_ms,
        timeout_ms,
        networks: r.range(1, 3) as usize,
        mirrors_from_prod: r.range(0, 2) as usize,
        mirrors_from_standby: r.range(0, 1) as usize,
        length_ms: 40 * timeout_ms,
    };
    let mut faults = vec![];
    let mut kinds = vec![];
    for _ in 0..r.range(1, 6) {
        let kind = *r.pick(&KINDS);
        kinds.push(kind);
        episode(&mut r, &shape, kind, &mut faults);
    }
    faults.sort_by_key(|(t, _)| *t);
    Schedule {
        shape,
        faults,
        kinds,
    }
}

/// How long an episode lasts: well under, around, or well over the timeout.
fn duration(r: &mut Rng, s: &Shape) -> u64 {
    match r.range(0, 2) {
        0 => r.range(s.interval_ms, s.timeout_ms / 2),
        1 => r.range(s.timeout_ms / 2, 2 * s.timeout_ms),
        _ => r.range(2 * s.timeout_ms, 8 * s.timeout_ms),
    }
}

fn episode(r: &mut Rng, s: &Shape, kind: &str, out: &mut Vec<(u64, Fault)>) {
    let t0 = r.range(3 * s.timeout_ms, s.length_ms - 8 * s.timeout_ms);
    let d = duration(r, s);
    let net = r.range(0, s.networks as u64 - 1) as usize;
    let side = r.range(0, 1) as SideId;
    let mirror = (s.mirrors() > 0).then(|| r.range(0, s.mirrors() as u64 - 1) as usize);
    let all_nets = |on: bool, out: &mut Vec<(u64, Fault)>, t: u64| {
        for net in 0..s.networks {
            for to in [PROD, STANDBY] {
                out.push((t, Fault::NetCut { net, to, on }));
            }
        }
    };
    let all_mirrors = |on: bool, out: &mut Vec<(u64, Fault)>, t: u64| {
        for mirror in 0..s.mirrors() {
            out.push((t, Fault::MirrorCut { mirror, on }));
        }
    };
    match kind {
        "network" => {
            if r.chance(0.5) {
                all_nets(true, out, t0);
                all_nets(false, out, t0 + d);
            } else {
                let to = side;
                out.push((t0, Fault::NetCut { net, to, on: true }));
                out.push((t0 + d, Fault::NetCut { net, to, on: false }));
            }
        }
        "mirror" => {
            let Some(mirror) = mirror else {
                // No mirror in this shape: the one network cut instead.
                out.push((
                    t0,
                    Fault::NetCut {
                        net,
                        to: side,
                        on: true,
                    },
                ));
                out.push((
                    t0 + d,
                    Fault::NetCut {
                        net,
                        to: side,
                        on: false,
                    },
                ));
                return;
            };
            let (on, off) = match r.range(0, 3) {
                0 => (
                    Fault::MirrorReadError { mirror, on: true },
                    Fault::MirrorReadError { mirror, on: false },
                ),
                1 => (
                    Fault::MirrorWriteError { mirror, on: true },
                    Fault::MirrorWriteError { mirror, on: false },
                ),
                2 => {
                    all_mirrors(true, out, t0);
                    return all_mirrors(false, out, t0 + d);
                }
                _ => (
                    Fault::MirrorCut { mirror, on: true },
                    Fault::MirrorCut { mirror, on: false },
                ),
            };
            out.push((t0, on));
            out.push((t0 + d, off));
        }
        "both" => {
            all_nets(true, out, t0);
            all_mirrors(true, out, t0);
            let back = t0 + d;
            all_nets(false, out, back);
            all_mirrors(false, out, back);
        }
        "flapping" => {
            let period = r.range(s.interval_ms, 2 * s.timeout_ms);
            let everything = r.chance(0.5);
            let end = t0 + d.max(4 * period);
            let mut t = t0;
            let mut on = true;
            while t < end {
                if everything {
                    all_nets(on, out, t);
                    all_mirrors(on, out, t);
                } else {
                    out.push((t, Fault::NetCut { net, to: side, on }));
                }
                on = !on;
                t += r.range(period / 2, period);
            }
            if everything {
                all_nets(false, out, t);
                all_mirrors(false, out, t);
            } else {
                out.push((
                    t,
                    Fault::NetCut {
                        net,
                        to: side,
                        on: false,
                    },
                ));
            }
        }
        "delay" => {
            let delay_max_ms = r.range(1, s.timeout_ms);
            out.push((
                t0,
                Fault::NetQuality {
                    net,
                    drop: 0.0,
                    dup: 0.0,
                    delay_max_ms,
                },
            ));
            out.push((
                t0 + d,
                Fault::NetQuality {
                    net,
                    drop: 0.0,
                    dup: 0.0,
                    delay_max_ms: 0,
                },
            ));
            if let Some(mirror) = mirror {
                let ms = r.range(1, s.interval_ms * 2);
                out.push((t0, Fault::MirrorDelay { mirror, ms }));
                out.push((t0 + d, Fault::MirrorDelay { mirror, ms: 0 }));
            }
        }
        "duplicate-reorder" => {
            let q = Fault::NetQuality {
                net,
                drop: r.range(0, 50) as f64 / 100.0,
                dup: r.range(10, 60) as f64 / 100.0,
                delay_max_ms: r.range(s.interval_ms, 4 * s.interval_ms),
            };
            out.push((t0, q));
            out.push((
                t0 + d,
                Fault::NetQuality {
                    net,
                    drop: 0.0,
                    dup: 0.0,
                    delay_max_ms: 0,
                },
            ));
        }
        "replay" => {
            let count = r.range(1, 20) as usize;
            out.push((
                t0,
                Fault::NetReplay {
                    net,
                    to: side,
                    count,
                },
            ));
            if let Some(mirror) = mirror {
                out.push((t0, Fault::MirrorReplay { mirror }));
            }
        }
        "garbage" => {
            for i in 0..r.range(1, 10) {
                out.push((t0 + i * s.interval_ms / 3, Fault::Garbage { net, to: side }));
            }
        }
        "clock-jump" => {
            // Any size, either way, either side, one to four times: from a
            // slew-sized step to a VM restored from last week's snapshot.
            let mut t = t0;
            for _ in 0..r.range(1, 4) {
                let ms = match r.range(0, 3) {
                    0 => r.range(1, s.timeout_ms) as i64,
                    1 => r.range(s.timeout_ms, 100 * s.timeout_ms) as i64,
                    2 => r.range(60_000, 3_600_000) as i64,
                    _ => r.range(86_400_000, 30 * 86_400_000) as i64,
                };
                let ms = if r.chance(0.5) { -ms } else { ms };
                let side = r.range(0, 1) as SideId;
                out.push((t, Fault::ClockJump { side, ms }));
                t += r.range(0, d);
            }
        }
        "stall" => {
            // Under, around or well over the timeout, at either side; sometimes twice.
            out.push((t0, Fault::Stall { side, ms: d }));
            if r.chance(0.3) {
                let side = r.range(0, 1) as SideId;
                let ms = duration(r, s);
                out.push((
                    t0 + d + r.range(0, 2 * s.timeout_ms),
                    Fault::Stall { side, ms },
                ));
            }
        }
        "restart" => {
            out.push((t0, Fault::Crash { side }));
            out.push((t0 + r.range(0, d), Fault::Restart { side }));
        }
        "production-death" => {
            out.push((t0, Fault::Crash { side: PROD }));
            if r.chance(0.6) {
                out.push((
                    t0 + r.range(2 * s.timeout_ms, 10 * s.timeout_ms),
                    Fault::Restart { side: PROD },
                ));
            }
        }
        "nic" => {
            out.push((
                t0,
                Fault::NicDown {
                    side,
                    net,
                    on: true,
                },
            ));
            out.push((
                t0 + d,
                Fault::NicDown {
                    side,
                    net,
                    on: false,
                },
            ));
        }
        "handover" => {
            // Production cannot serve for a while; half the time the
            // standby cannot carry the duties either, from before it is asked.
            out.push((t0, Fault::CannotServe { on: true }));
            out.push((t0 + d, Fault::CannotServe { on: false }));
            if r.chance(0.5) {
                let from = t0.saturating_sub(r.range(0, s.timeout_ms));
                let side = STANDBY;
                out.push((from, Fault::Serious { side, on: true }));
                out.push((t0 + r.range(0, 2 * d), Fault::Serious { side, on: false }));
            }
        }
        _ => match (r.range(0, 2), mirror) {
            (0, _) => {
                let (network, mirrors) = if r.chance(0.5) {
                    (Some(false), None)
                } else {
                    (None, Some(false))
                };
                out.push((
                    t0,
                    Fault::Procedure {
                        side,
                        network,
                        mirrors,
                    },
                ));
                let on = |o: Option<bool>| o.map(|_| true);
                out.push((
                    t0 + d,
                    Fault::Procedure {
                        side,
                        network: on(network),
                        mirrors: on(mirrors),
                    },
                ));
            }
            (1, Some(mirror)) => {
                out.push((t0, Fault::Install { mirror, on: false }));
                out.push((t0 + d, Fault::Install { mirror, on: true }));
            }
            _ => out.push((t0, Fault::Notice { side })),
        },
    }
}
