//! A deterministic simulation of one group's master rules (issue 26,
//! point 5): 2-4 hosts modelled as hbd's member runs them (`master.rs`:
//! the master tick, heartbeats, elections; `channels.rs`: the group task
//! reading every slot then writing its own, the lease, the self-fence),
//! every decision taken by the real functions of [`super::rules`] and the
//! real `MasterGate`, on a simulated clock (ms), over a simulated LAN and
//! group volume, under faults drawn from a seed: LAN partitions (any
//! split), loss and delay, a host's slot writes or reads failing, hung I/O
//! (completing at the hang's end, failed at the deadline), stalls
//! (SIGSTOP). Checked at every event: never two hosts acting as master at
//! one instant (hbd's gate open, or claiming the reign with its claim
//! clear and its lease holding); once every fault is over, exactly one master within a bound.
//!
//! `world` holds the event loop, the hosts and the checker.
//! Single-threaded and pure (one `Instant` all simulated times are offsets
//! of): run by `hbsim --group` and the test suite; a seed replays exactly.

mod world;

use std::collections::BTreeMap;

use crate::hb::sim::rng::Rng;

/// The kinds of fault an episode draws from.
pub const KINDS: [&str; 7] = [
    "partition",
    "lan loss",
    "lan delay",
    "write loss",
    "read loss",
    "hung I/O",
    "stall",
];

/// One fault: `kind` (an index of [`KINDS`]) from `from` to `to` (ms);
/// `arg`: the host, the partition's side (a bit mask), the loss in
/// percent or the extra delay in ms.
#[derive(Debug, Clone)]
pub struct Fault {
    /// An index of [`KINDS`].
    pub kind: usize,
    /// From (ms).
    pub from: u64,
    /// To (ms, excluded).
    pub to: u64,
    /// The host, side, loss or delay (see above).
    pub arg: u64,
}

/// An episode's shape, drawn from its seed.
#[derive(Debug, Clone)]
pub struct Shape {
    /// Hosts in the group (2-4).
    pub hosts: usize,
    /// `interval_ms`.
    pub interval: u64,
    /// `master_timeout_ms` (4-10 intervals).
    pub master_timeout: u64,
    /// `fence_timeout_ms`.
    pub fence_timeout: u64,
    /// The faults.
    pub faults: Vec<Fault>,
    /// When the last fault ends.
    pub healed: u64,
    /// The liveness bound after `healed`.
    pub bound: u64,
}

/// What one episode did.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// Elections (by any host).
    pub elections: u64,
    /// Masters whose lease lapsed.
    pub resignations: u64,
    /// Masters that followed a newer reign.
    pub step_downs: u64,
    /// Hosts that fenced themselves.
    pub self_fences: u64,
    /// Milliseconds after the heal until one master (and only one) acted.
    pub settled_after: Option<u64>,
    /// What broke a property (the first two-master instant, liveness).
    pub violations: Vec<String>,
    /// The trace, if kept.
    pub trace: Vec<String>,
}

/// The shape of episode `seed`.
pub fn shape(seed: u64) -> Shape {
    let mut rng = Rng::new(seed ^ 0x6752_6f75_7073_696d);
    let hosts = rng.range(2, 4) as usize;
    let interval = *rng.pick(&[100, 200, 500, 1000]);
    let master_timeout = interval * rng.range(4, 10);
    let fence_timeout = rng.range(master_timeout, 3 * master_timeout);
    let span = 8 * master_timeout;
    let mut faults = Vec::new();
    for _ in 0..rng.range(0, 6) {
        let kind = rng.range(0, KINDS.len() as u64 - 1) as usize;
        let from = rng.range(interval, span);
        let len = match kind {
            6 => rng.range(interval, 4 * master_timeout),
            _ => rng.range(interval, 3 * master_timeout),
        };
        let arg = match kind {
            0 => rng.range(1, (1 << hosts) - 2),
            1 => rng.range(10, 100),
            2 => rng.range(interval, 2 * master_timeout),
            _ => rng.range(0, hosts as u64 - 1),
        };
        faults.push(Fault {
            kind,
            from,
            to: from + len,
            arg,
        });
    }
    let healed = faults.iter().map(|f| f.to).max().unwrap_or(0).max(span);
    // Each election waits out a master timeout; one may fall on a fenced host.
    let bound = (hosts as u64 + 2) * (master_timeout + 3 * interval);
    Shape {
        hosts,
        interval,
        master_timeout,
        fence_timeout,
        faults,
        healed,
        bound,
    }
}

/// Runs episode `seed`; `trace`: keep a readable trace.
pub fn run(seed: u64, trace: bool) -> (Shape, Outcome) {
    let shape = shape(seed);
    let outcome = world::World::new(&shape, seed, trace).run();
    (shape, outcome)
}

/// Many episodes' figures.
#[derive(Debug, Default)]
pub struct Summary {
    /// Episodes run.
    pub episodes: u64,
    /// Faults drawn, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Elections (by any host).
    pub elections: u64,
    /// Masters whose lease lapsed.
    pub resignations: u64,
    /// Masters that followed a newer reign.
    pub step_downs: u64,
    /// Hosts that fenced themselves.
    pub self_fences: u64,
    /// The longest time from the heal to one master.
    pub settled_max: u64,
    /// Seeds that broke a property, with the first violation.
    pub failed: Vec<(u64, String)>,
}

impl Summary {
    /// Adds one episode.
    pub fn add(&mut self, seed: u64, shape: &Shape, o: &Outcome) {
        self.episodes += 1;
        for f in &shape.faults {
            *self.faults.entry(KINDS[f.kind]).or_default() += 1;
        }
        self.elections += o.elections;
        self.resignations += o.resignations;
        self.step_downs += o.step_downs;
        self.self_fences += o.self_fences;
        self.settled_max = self.settled_max.max(o.settled_after.unwrap_or(0));
        if let Some(v) = o.violations.first() {
            self.failed.push((seed, v.clone()));
        }
    }

    /// The summary line.
    pub fn line(&self, seconds: f64) -> String {
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        format!(
            "group episodes: {}, violations: {}; faults: {}; elections {}, resignations {}, step-downs {}, self-fences {}; one master at most {} ms after the heal; {seconds:.1} s",
            self.episodes,
            self.failed.len(),
            faults.join(", "),
            self.elections,
            self.resignations,
            self.step_downs,
            self.self_fences,
            self.settled_max,
        )
    }
}
