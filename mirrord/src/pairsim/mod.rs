//! Deterministic simulation of a pair's two sites (issue 27, point 2), the
//! way `hbd`'s is (`src/hb/sim/`): two sites run the pair machine
//! ([`crate::pair::machine`], the code the site runs) over a modelled
//! volume (block → write id) and a modelled link (frames in flight), under
//! a schedule drawn from a seed: host writes in every mode, link cuts and
//! flaps, kill -9 at any step (memory lost, the record, the volume and the
//! bitmap's marks kept), disk errors, takeovers, hbd's step-down, freezes
//! and thaws of a stale production, splits, resyncs plain and reversed, a
//! person's choice of data, mode changes. The checkers ([`checks`]) judge
//! every step. Single-threaded; a seed replays exactly.
//!
//! In reading order:
//!
//! - [`site`]: one site's persisted and volatile state.
//! - [`world`]: the link, frames and answers, the machine's failure and
//!   fence decisions carried out.
//! - [`mod@write`]: host writes in the machine's policy; the copy task and the
//!   adaptive shipper.
//! - [`ops`]: reconnect, resyncs, takeover, step-down, split, mode change,
//!   kill, restart, freeze, thaw.
//! - [`checks`]: the properties.
//!
//! ```text
//!  seed ─> Schedule (mode, fence, auto-resync, split-brain policy, steps)
//!       ─> World::new (an initial copy under way) ─> steps drawn from the seed:
//!            write ─> machine::host_write ─> frames ─> apply (machine::accepts_copies) ─> answers
//!            failures ─> machine::write_failed / split_by_peer / outdate
//!            link up ─> generations judged ─> machine::on_divergence / resume / plain_resync
//!            copy ─> Event::CopyStarted .. CopyDone; every state change through machine::change
//!       ─> heal (all up, link up, quiet) ─> checks after every step
//! ```
//!
//! `pairsim` (`mirrord/src/bin/pairsim.rs`) runs many seeds;
//! `scripts/simulate.sh N` runs it after hbsim.

pub mod checks;
pub mod ops;
pub mod site;
pub mod world;
pub mod write;

use std::collections::{BTreeMap, VecDeque};

use hbcore::control::SplitBrainPolicy;
use hbcore::link::Generations;
use hbcore::vocab::{Fence, Mode, Role};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use site::{settings, SimSite, BLOCKS};
use world::World;

/// A deliberately wrong decision, to show that the checkers catch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// None: the machine as it is.
    None,
    /// A sync write whose SVOL never acknowledged it is counted as shipped.
    FailedIsAcked,
    /// An outdated PVOL answers a write it took before it learned it.
    OutdatedAcks,
    /// A resync copies the PVOL's changes only, not the blocks the SVOL changed.
    ResyncSkipsPeerBitmap,
    /// The adaptive queue survives into a copy (the machine before seed 2545).
    KeepQueueIntoCopy,
}

/// What a schedule's sites did: one schedule's, or a run's sum.
#[derive(Debug, Default, Clone)]
pub struct Counts {
    /// Steps taken.
    pub steps: u64,
    /// Host writes acknowledged once the SVOL had them (sync, fenced).
    pub acked_mirrored: u64,
    /// Host writes acknowledged without the SVOL's ack (semi-sync, adaptive, not mirrored).
    pub acked_alone: u64,
    /// Host writes refused (outdated, fenced).
    pub refused: u64,
    /// Copies completed (both PAIR).
    pub copies_done: u64,
    /// Resyncs started from the PVOL.
    pub resyncs: u64,
    /// Reverse resyncs.
    pub reverses: u64,
    /// Takeovers.
    pub takeovers: u64,
    /// Splits by a person.
    pub splits: u64,
    /// kill -9s.
    pub kills: u64,
    /// Thaws of a frozen site.
    pub thaws: u64,
    /// Times the pair was PAIR at both sites with nothing pending (checked identical).
    pub quiet_pairs: u64,
    /// Generation verdicts, by kind.
    pub verdicts: BTreeMap<&'static str, u64>,
}

impl Counts {
    /// Adds `o` to these.
    pub fn add(&mut self, o: &Counts) {
        self.steps += o.steps;
        self.acked_mirrored += o.acked_mirrored;
        self.acked_alone += o.acked_alone;
        self.refused += o.refused;
        self.copies_done += o.copies_done;
        self.resyncs += o.resyncs;
        self.reverses += o.reverses;
        self.takeovers += o.takeovers;
        self.splits += o.splits;
        self.kills += o.kills;
        self.thaws += o.thaws;
        self.quiet_pairs += o.quiet_pairs;
        for (k, n) in &o.verdicts {
            *self.verdicts.entry(k).or_default() += n;
        }
    }
}

/// What one schedule did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The checkers' findings.
    pub violations: Vec<String>,
    /// What the sites did.
    pub counts: Counts,
    /// The trace, if asked for.
    pub trace: Vec<String>,
}

/// A schedule's shape, from its seed.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// The pair's mode at the start.
    pub mode: Mode,
    /// Its fence level.
    pub fence: Fence,
    /// Resync by itself after PSUE.
    pub auto_resync: bool,
    /// What a split brain found at a reconnect does.
    pub policy: SplitBrainPolicy,
    /// Steps before the heal.
    pub steps: u64,
}

/// The schedule of `seed` and its world.
fn world(seed: u64, trace: bool, flaw: Flaw) -> (Schedule, World) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mode = [Mode::Sync, Mode::SemiSync, Mode::Adaptive][rng.gen_range(0..3)];
    let fence = if mode == Mode::Sync && rng.gen_bool(0.4) {
        Fence::Data
    } else {
        Fence::Never
    };
    let policy = [
        SplitBrainPolicy::Manual,
        SplitBrainPolicy::DiscardSvol,
        SplitBrainPolicy::DiscardLeastChanges,
    ][rng.gen_range(0..3)];
    let schedule = Schedule {
        mode,
        fence,
        auto_resync: rng.gen_bool(0.6),
        policy,
        steps: rng.gen_range(40..160),
    };
    let in_pair = rng.gen_bool(0.75);
    let s = settings(mode, fence, schedule.auto_resync);
    let pvol = Generations {
        current: Some(rng.gen_range(1..=u64::MAX)),
        bitmap: None,
        history: vec![],
    };
    // The PVOL holds data written before the pair (ids 1..=BLOCKS); the
    // SVOL older data (0) until the initial copy.
    let first: Vec<u64> = (1..=BLOCKS as u64).collect();
    let mut a = SimSite::new("prod", Role::Pvol, s, pvol, policy, first);
    let b = SimSite::new(
        "standby",
        Role::Svol,
        s,
        Generations::default(),
        policy,
        vec![0; BLOCKS],
    );
    a.mark_all();
    let mut w = World {
        sites: [a, b],
        wire: [VecDeque::new(), VecDeque::new()],
        link_up: true,
        rng,
        next_id: BLOCKS as u64,
        written: Default::default(),
        flaw,
        out: Outcome::default(),
        tracing: trace,
    };
    if in_pair {
        // Most schedules start after the initial copy: both PAIR, one generation, the same data.
        let g = w.sites[0].meta.generations();
        w.sites[1].meta.generations = Some(g);
        w.sites[1].vol = w.sites[0].vol.clone();
        w.sites[0].clear_all();
        for s in &mut w.sites {
            s.meta.state = hbcore::vocab::PairState::Pair;
        }
    }
    (schedule, w)
}

/// One step drawn from the seed.
fn step(w: &mut World) {
    let pvol = usize::from(w.sites[0].meta.role != Role::Pvol);
    let svol = 1 - pvol;
    let either = w.rng.gen_range(0..2usize);
    let roll = w.rng.gen_range(0..100u32);
    w.note(|| format!("step {roll}"));
    match roll {
        0..=29 => {
            let from = if w.wire[either].is_empty() {
                1 - either
            } else {
                either
            };
            w.deliver(from);
        }
        30..=49 => w.host_write(pvol),
        50..=53 => w.host_write(svol),
        54..=68 => w.ship(pvol),
        69..=71 => w.cut(false),
        72..=77 => w.link_comes_up(),
        78 => w.kill(either),
        79..=81 => w.restart(either),
        82 => w.sites[either].disk_fails = true,
        83 => w.freeze(pvol),
        84..=85 => w.thaw(either),
        86 => w.takeover(svol),
        87 => w.step_down(pvol),
        88 => w.split(pvol),
        89..=91 => w.resync(either),
        92..=93 => {
            w.reverse_here(svol, false);
        }
        94 => w.discard_local(either),
        95 => {
            let mode = [Mode::Sync, Mode::SemiSync, Mode::Adaptive][w.rng.gen_range(0..3)];
            w.set_mode(pvol, mode);
        }
        _ => {
            if w.sites[either].running() {
                w.sites[either].flush();
            }
        }
    }
}

/// Everything up again, and time for what is pending to settle.
fn heal(w: &mut World) {
    w.note(|| "heal".into());
    for i in 0..2 {
        w.thaw(i);
        w.restart(i);
    }
    w.link_comes_up();
    for round in 0..200 {
        let pvol = usize::from(w.sites[0].meta.role != Role::Pvol);
        for from in 0..2 {
            w.deliver(from);
        }
        w.ship(pvol);
        if round == 100 {
            w.resync(pvol);
        }
        checks::quiet_pair(w);
    }
}

/// Runs the schedule of `seed`; `trace`: keep a readable trace of events.
pub fn run_with(seed: u64, trace: bool, flaw: Flaw) -> (Schedule, Outcome) {
    let (schedule, mut w) = world(seed, trace, flaw);
    if w.sites[0].meta.state == hbcore::vocab::PairState::Copy {
        w.start_copy(0);
    }
    for _ in 0..schedule.steps {
        step(&mut w);
        w.out.counts.steps += 1;
        checks::quiet_pair(&mut w);
    }
    heal(&mut w);
    (schedule, w.out)
}

/// Runs the schedule of `seed` with the machine as it is.
pub fn run(seed: u64, trace: bool) -> (Schedule, Outcome) {
    run_with(seed, trace, Flaw::None)
}

/// Many schedules' figures.
#[derive(Debug, Default)]
pub struct Summary {
    /// Schedules run.
    pub schedules: u64,
    /// What the sites did, summed.
    pub counts: Counts,
    /// The seeds that broke a property, with the first violation.
    pub failed: Vec<(u64, String)>,
}

impl Summary {
    /// Adds one schedule's outcome.
    pub fn add(&mut self, seed: u64, o: &Outcome) {
        self.schedules += 1;
        self.counts.add(&o.counts);
        if let Some(v) = o.violations.first() {
            self.failed.push((seed, v.clone()));
        }
    }

    /// The summary line.
    pub fn line(&self, seconds: f64) -> String {
        let c = &self.counts;
        let verdicts = c
            .verdicts
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "pair simulation: {} schedules, {} steps; writes acknowledged: {} mirrored, {} alone, {} refused; copies done {}, resyncs {}, reverses {}, takeovers {}, splits {}, kills {}, thaws {}; checked identical in PAIR {}; verdicts: {verdicts}; violations: {}; {seconds:.1} s",
            self.schedules,
            c.steps,
            c.acked_mirrored,
            c.acked_alone,
            c.refused,
            c.copies_done,
            c.resyncs,
            c.reverses,
            c.takeovers,
            c.splits,
            c.kills,
            c.thaws,
            c.quiet_pairs,
            self.failed.len(),
        )
    }
}

#[cfg(test)]
mod tests;
