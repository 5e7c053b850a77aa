//! hbsim: the deterministic simulation of the heartbeat check
//! ([`hbmirror::hb::sim`]): runs schedules from seeds and prints a summary,
//! or replays one seed with its trace.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use hbmirror::hb::sim::{self, Summary};

/// Runs simulated fault schedules through hbd's decision code and checks
/// every history (no false failover, no missed failover, one failover per
/// outage, step-down). Exit 1 if a property broke.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Schedules to run (seeds FIRST_SEED, FIRST_SEED+1, ...).
    #[arg(default_value_t = 1000)]
    schedules: u64,
    /// The first seed.
    #[arg(long, env = "HBSIM_FIRST_SEED", default_value_t = 1)]
    first_seed: u64,
    /// Replay this one seed and print its trace of events.
    #[arg(long, env = "HBSIM_SEED")]
    seed: Option<u64>,
    /// Run the group master rules' simulation instead (one group of 2-4
    /// hosts, src/cluster/group/sim.rs): SCHEDULES episodes, or --seed.
    #[arg(long)]
    group: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.group {
        return group(&cli);
    }
    if let Some(seed) = cli.seed {
        let (schedule, outcome) = sim::run(seed, true);
        println!(
            "seed {seed}: {:?}; episodes: {}",
            schedule.shape,
            schedule.kinds.join(", ")
        );
        for line in &outcome.trace {
            println!("{line}");
        }
        for v in &outcome.violations {
            println!("VIOLATION: {v}");
        }
        println!(
            "seed {seed}: failovers {}, step-downs {}, violations {}",
            outcome.counts.failovers,
            outcome.counts.step_downs,
            outcome.violations.len()
        );
        return exit(outcome.violations.is_empty());
    }
    let started = Instant::now();
    let mut summary = Summary::default();
    for seed in cli.first_seed..cli.first_seed.saturating_add(cli.schedules) {
        let (schedule, outcome) = sim::run(seed, false);
        summary.add(seed, &schedule, &outcome);
    }
    for (seed, v) in summary.failed.iter().take(20) {
        println!("FAILED seed {seed}: {v}  (replay: scripts/simulate.sh --seed {seed})");
    }
    println!("{}", summary.line(started.elapsed().as_secs_f64()));
    exit(summary.failed.is_empty())
}

/// `--group`: the group master rules' simulation.
fn group(cli: &Cli) -> ExitCode {
    use hbmirror::cluster::group::sim as gsim;
    if let Some(seed) = cli.seed {
        let (shape, outcome) = gsim::run(seed, true);
        println!(
            "group seed {seed}: {} hosts, interval {} ms, master_timeout {} ms, fence_timeout {} ms, faults over at {} ms",
            shape.hosts, shape.interval, shape.master_timeout, shape.fence_timeout, shape.healed
        );
        for line in &outcome.trace {
            println!("{line}");
        }
        println!(
            "group seed {seed}: elections {}, resignations {}, self-fences {}, violations {}",
            outcome.elections,
            outcome.resignations,
            outcome.self_fences,
            outcome.violations.len()
        );
        return exit(outcome.violations.is_empty());
    }
    let started = Instant::now();
    let mut summary = gsim::Summary::default();
    for seed in cli.first_seed..cli.first_seed.saturating_add(cli.schedules) {
        let (shape, outcome) = gsim::run(seed, false);
        summary.add(seed, &shape, &outcome);
    }
    for (seed, v) in summary.failed.iter().take(20) {
        println!(
            "FAILED group seed {seed}: {v}  (replay: target/release/hbsim --group --seed {seed})"
        );
    }
    println!("{}", summary.line(started.elapsed().as_secs_f64()));
    exit(summary.failed.is_empty())
}

/// Success when no property broke.
fn exit(clean: bool) -> ExitCode {
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
