//! What a simulated schedule did: the sides' counts (failovers, step-downs,
//! handovers, verdicts, controls, heartbeats), one schedule's or a run's sum, and a
//! schedule's outcome (the checkers' violations, deliveries, the trace).

use std::collections::BTreeMap;

/// What the sides did: one schedule's, or a run's sum.
#[derive(Debug, Default)]
pub struct Counts {
    /// Failovers done.
    pub failovers: u64,
    /// Of the failovers, those while production's hbd was running (every
    /// channel cut or invalid: a partition, or a clock step).
    pub failovers_production_up: u64,
    /// Step-downs done.
    pub step_downs: u64,
    /// Fail-backs (both sides re-armed).
    pub rearms: u64,
    /// Handovers production asked for.
    pub handovers_asked: u64,
    /// Of those, taken over at once by the standby (counted in `failovers` too).
    pub handovers_taken: u64,
    /// Of those, refused (the standby could not carry the duties).
    pub handovers_refused: u64,
    /// Fault analyses decided, by verdict.
    pub verdicts: BTreeMap<String, u64>,
    /// Control messages applied, by kind.
    pub controls: BTreeMap<&'static str, u64>,
    /// Heartbeats sent (both sides).
    pub beats: u64,
}

impl Counts {
    /// Adds `other` to these.
    pub fn add(&mut self, other: &Counts) {
        self.failovers += other.failovers;
        self.failovers_production_up += other.failovers_production_up;
        self.step_downs += other.step_downs;
        self.rearms += other.rearms;
        self.handovers_asked += other.handovers_asked;
        self.handovers_taken += other.handovers_taken;
        self.handovers_refused += other.handovers_refused;
        self.beats += other.beats;
        for (k, n) in &other.verdicts {
            *self.verdicts.entry(k.clone()).or_default() += n;
        }
        for (k, n) in &other.controls {
            *self.controls.entry(k).or_default() += n;
        }
    }
}

/// What one schedule did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The checkers' findings.
    pub violations: Vec<String>,
    /// What the sides did.
    pub counts: Counts,
    /// Deliveries (datagrams and slot reads that carried a message).
    pub deliveries: u64,
    /// The trace, if asked for.
    pub trace: Vec<String>,
}
