//! The simulation replays, passes as the machine is, and fails when a
//! decision is made wrong on purpose.

use super::*;

#[test]
fn a_seed_replays_exactly() {
    let (_, a) = run(42, true);
    let (_, b) = run(42, true);
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.counts.steps, b.counts.steps);
}

#[test]
fn the_machine_keeps_every_property_on_many_schedules() {
    let mut summary = Summary::default();
    for seed in 1..=500 {
        let (_, o) = run(seed, false);
        summary.add(seed, &o);
    }
    assert!(
        summary.failed.is_empty(),
        "{:?}",
        &summary.failed[..summary.failed.len().min(5)]
    );
    let c = &summary.counts;
    // The schedules reach what they are for.
    assert!(
        c.acked_mirrored > 0 && c.acked_alone > 0 && c.refused > 0,
        "{c:?}"
    );
    assert!(
        c.copies_done > 100 && c.resyncs > 0 && c.reverses > 0,
        "{c:?}"
    );
    assert!(
        c.takeovers > 0 && c.kills > 0 && c.thaws > 0 && c.quiet_pairs > 0,
        "{c:?}"
    );
    assert!(c.verdicts.contains_key("split brain"), "{c:?}");
}

#[test]
fn each_wrong_decision_is_caught() {
    for flaw in [
        Flaw::FailedIsAcked,
        Flaw::OutdatedAcks,
        Flaw::ResyncSkipsPeerBitmap,
        Flaw::KeepQueueIntoCopy,
    ] {
        let caught = (1..=2000).find(|seed| !run_with(*seed, false, flaw).1.violations.is_empty());
        assert!(
            caught.is_some(),
            "{flaw:?} went unnoticed in 2000 schedules"
        );
    }
}
