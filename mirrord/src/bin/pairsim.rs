//! pairsim: the deterministic simulation of a pair's two sites
//! ([`mirrord::pairsim`]): runs schedules from seeds and prints a summary,
//! or replays one seed with its trace.

use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use mirrord::pairsim::{self, Summary};

/// Runs simulated schedules (host writes in every mode, link cuts, kill -9,
/// disk errors, takeovers, thaws, resyncs) through the pair machine and
/// checks every history (acknowledged writes kept, SVOL order, identical
/// after resync, outdated PVOL silent, divergence caught). Exit 1 if a
/// property broke.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Schedules to run (seeds FIRST_SEED, FIRST_SEED+1, ...).
    #[arg(default_value_t = 1000)]
    schedules: u64,
    /// The first seed.
    #[arg(long, env = "PAIRSIM_FIRST_SEED", default_value_t = 1)]
    first_seed: u64,
    /// Replay this one seed and print its trace of events.
    #[arg(long, env = "PAIRSIM_SEED")]
    seed: Option<u64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(seed) = cli.seed {
        let (schedule, outcome) = pairsim::run(seed, true);
        println!("seed {seed}: {schedule:?}");
        for line in &outcome.trace {
            println!("{line}");
        }
        for v in &outcome.violations {
            println!("VIOLATION: {v}");
        }
        println!(
            "seed {seed}: {} steps, violations {}",
            outcome.counts.steps,
            outcome.violations.len()
        );
        return if outcome.violations.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let started = Instant::now();
    let mut summary = Summary::default();
    for seed in cli.first_seed..cli.first_seed.saturating_add(cli.schedules) {
        let (_, outcome) = pairsim::run(seed, false);
        summary.add(seed, &outcome);
    }
    for (seed, v) in summary.failed.iter().take(20) {
        println!("FAILED seed {seed}: {v}  (replay: target/release/pairsim --seed {seed})");
    }
    println!("{}", summary.line(started.elapsed().as_secs_f64()));
    if summary.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
