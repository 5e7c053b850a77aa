//! Deterministic simulation of the heartbeat check (issue 17, point 1).
//!
//! Two hbd sides run the production decision code ([`crate::hb::logic::step`],
//! the [`Checker`](crate::hb::logic::checker::Checker), the analyses' book, the
//! real message encoding with its HMAC) on a simulated clock, over
//! simulated networks and mirrors, under a fault schedule drawn from a
//! seed; checkers judge each run's history. A seed replays exactly: every
//! choice comes from it, events run in time order, nothing reads the real
//! clock but the one `Instant` all simulated times are offsets of.
//!
//! In reading order:
//!
//! - [`rng`]: the seeded generator (SplitMix64).
//! - [`faults`]: a schedule from a seed: the sides' shape (interval,
//!   timeout, networks, mirrors each way) and one to six fault episodes.
//! - [`side`]: one simulated hbd and the calls the daemon makes.
//! - [`checkers`]: the properties (no false failover, no missed failover
//!   within the bound, one failover per outage, step-down, the handover).
//! - [`world`]: channels, clocks, stalls and the event queue; runs a schedule.
//! - [`outcome`]: what a schedule did (counts, violations, trace).
//!
//! ```text
//!  seed ─> faults::schedule ─> World::new ─> run: events in time order
//!   Tick(side): Side::beat (compose, sign) ─> datagrams / slot writes ─> queue
//!               slot reads ─> Side::slot_read ─> Checker::mirror_read ─> absorb
//!               Side::tick ─> step::tick_step ─> commit_failover / step-down ─> checkers
//!   Datagram: Beat::decode ─> Checker::network_beat ─> absorb (controls) ─> checkers
//!   Fault (world/inject): cut, loss, delay, duplicate, replay, garbage, clock step, stall, crash, restart,
//!          procedure, install, a failing check (notice, production cannot serve, standby cannot carry)
//!   production cannot serve: Side::tick ─> handover::due, ask ─> request ─> standby: handover::decide
//! ```
//!
//! `hbsim` (src/bin/hbsim.rs) runs many seeds and prints a summary;
//! `scripts/simulate.sh N` runs it in a release build.

pub mod checkers;
pub mod faults;
pub mod outcome;
pub mod rng;
pub mod side;
pub mod world;

use std::collections::BTreeMap;

pub use outcome::{Counts, Outcome};

/// Runs the schedule of `seed`; `trace`: keep a readable trace of events.
pub fn run(seed: u64, trace: bool) -> (faults::Schedule, Outcome) {
    let schedule = faults::schedule(seed);
    let outcome = world::World::new(&schedule, seed, trace).run();
    (schedule, outcome)
}

/// Many schedules' figures.
#[derive(Debug, Default)]
pub struct Summary {
    /// Schedules run.
    pub schedules: u64,
    /// Fault episodes injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// What the sides did, summed.
    pub counts: Counts,
    /// The seeds that broke a property, with the first violation.
    pub failed: Vec<(u64, String)>,
}

impl Summary {
    /// Adds one schedule's outcome.
    pub fn add(&mut self, seed: u64, schedule: &faults::Schedule, o: &Outcome) {
        self.schedules += 1;
        for k in &schedule.kinds {
            *self.faults.entry(k).or_default() += 1;
        }
        self.counts.add(&o.counts);
        if let Some(v) = o.violations.first() {
            self.failed.push((seed, v.clone()));
        }
    }

    /// The summary line.
    pub fn line(&self, seconds: f64) -> String {
        let show = |m: &BTreeMap<_, u64>| -> String {
            m.iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let faults: BTreeMap<&str, u64> = self.faults.iter().map(|(k, n)| (*k, *n)).collect();
        let verdicts: BTreeMap<&str, u64> = self
            .counts
            .verdicts
            .iter()
            .map(|(k, n)| (k.as_str(), *n))
            .collect();
        let controls: BTreeMap<&str, u64> =
            self.counts.controls.iter().map(|(k, n)| (*k, *n)).collect();
        format!(
            "simulation: {} schedules, {} heartbeats; faults: {}; failovers {} ({} with production's hbd running), step-downs {}, fail-backs {}; handovers asked {} (taken over {}, refused {}); analyses: {}; controls applied: {}; violations: {}; {seconds:.1} s",
            self.schedules,
            self.counts.beats,
            show(&faults),
            self.counts.failovers,
            self.counts.failovers_production_up,
            self.counts.step_downs,
            self.counts.rearms,
            self.counts.handovers_asked,
            self.counts.handovers_taken,
            self.counts.handovers_refused,
            show(&verdicts),
            show(&controls),
            self.failed.len(),
        )
    }
}
