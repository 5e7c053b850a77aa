//! The controller's decisions, as pure functions of what was measured.

use super::*;
use hbcore::vocab::{Fence, Mode};

const MIB: u64 = 1 << 20;

/// A sync pair's settings with these copy rates (also for `steer`'s tests).
pub(super) fn settings(c_max_rate: u64, c_min_rate: u64) -> PairSettings {
    PairSettings {
        mode: Mode::Sync,
        fence: Fence::Never,
        skew: 4 << 20,
        auto_resync: false,
        installed: false,
        c_max_rate,
        c_min_rate,
    }
}

fn held(bytes_per_s: u64) -> Limit {
    Limit {
        bytes_per_s,
        held_by_host_io: true,
    }
}

fn free(bytes_per_s: u64) -> Limit {
    Limit {
        bytes_per_s,
        held_by_host_io: false,
    }
}

/// A 100 ms period in which the copy moved `copied` bytes and the host's
/// `writes` small writes took `write_us` each.
fn period(copied: u64, writes: u64, write_us: u64) -> Sample {
    Sample {
        period: PLAN_PERIOD,
        writes: Latencies {
            count: writes,
            total_ns: writes * write_us * 1000,
        },
        reads: Latencies::default(),
        copied,
        recent_host_io: true,
    }
}

/// The disk's host writes took 100 us when it was quiet.
const IDLE: Idle = Idle {
    write_ns: 100_000,
    read_ns: 0,
};

#[test]
fn no_competing_host_io_leaves_a_copy_at_its_ceiling() {
    let s = settings(200 * MIB, 4 * MIB);
    // Nothing on data volumes of the disk within QUIET (heartbeats are never counted).
    let quiet = Sample {
        recent_host_io: false,
        ..period(20 * MIB, 0, 0)
    };
    assert_eq!(plan(held(4 * MIB), &quiet, &IDLE, &s), free(200 * MIB));
    assert_eq!(
        plan(free(0), &quiet, &IDLE, &settings(0, 4 * MIB)),
        Limit::NONE
    );
    // Host writes beside the copy within their target (2 x idle): untouched.
    assert_eq!(
        plan(free(200 * MIB), &period(20 * MIB, 50, 190), &IDLE, &s),
        free(200 * MIB)
    );
    assert_eq!(
        plan(
            Limit::NONE,
            &period(50 * MIB, 50, 150),
            &IDLE,
            &settings(0, 4 * MIB)
        ),
        Limit::NONE
    );
    // Recent host I/O, none timed this period, not held: nothing to react to.
    assert_eq!(
        plan(
            Limit::NONE,
            &period(50 * MIB, 0, 0),
            &IDLE,
            &settings(0, 4 * MIB)
        ),
        Limit::NONE
    );
    assert_eq!(start(&s), free(200 * MIB));
}

#[test]
fn host_writes_slowed_past_the_target_lower_the_copy_in_proportion() {
    let s = settings(0, 4 * MIB);
    // 400 us against a target of 200 us: the copy's rate halves, from what it moved.
    assert_eq!(
        plan(Limit::NONE, &period(50 * MIB, 50, 400), &IDLE, &s),
        held(250 * MIB)
    );
    // 250 us: x 0.8 of the limit in force (the copy moved as much).
    assert_eq!(
        plan(held(100 * MIB), &period(10 * MIB, 50, 250), &IDLE, &s),
        held(80 * MIB)
    );
    // A limit the copy did not reach: lowered from what it moved.
    assert_eq!(
        plan(held(100 * MIB), &period(MIB, 50, 250), &IDLE, &s),
        held(8 * MIB)
    );
    // Never more than halved, never below the floor.
    assert_eq!(
        plan(held(6 * MIB), &period(MIB, 50, 10_000), &IDLE, &s),
        held(4 * MIB)
    );
    // Reads count as writes do, against their own idle latency.
    let reads = Sample {
        reads: Latencies {
            count: 10,
            total_ns: 10 * 800_000,
        },
        ..period(10 * MIB, 0, 0)
    };
    let idle = Idle {
        write_ns: 100_000,
        read_ns: 100_000,
    };
    assert_eq!(plan(held(100 * MIB), &reads, &idle, &s), held(50 * MIB));
}

#[test]
fn the_floor_teaches_the_idle_latency_then_the_copy_grows_back() {
    let s = settings(0, 4 * MIB);
    let unknown = Idle::default();
    // Host writes timed, their idle latency unknown: one period at the floor.
    let first = period(80 * MIB, 20, 3000);
    assert_eq!(plan(Limit::NONE, &first, &unknown, &s), held(4 * MIB));
    let idle = unknown.learn(&first.writes, &first.reads);
    assert_eq!(idle.write_ns, 3_000_000, "learned loaded, at first");
    let at_floor = period(400 << 10, 20, 100);
    let idle = idle.learn(&at_floor.writes, &at_floor.reads);
    assert_eq!(idle.write_ns, 100_000, "then from the quiet period");
    // Well under the target: doubled per period, up to the ceiling.
    assert_eq!(plan(held(4 * MIB), &at_floor, &idle, &s), held(8 * MIB));
    let capped = settings(6 * MIB, 4 * MIB);
    assert_eq!(
        plan(held(4 * MIB), &at_floor, &idle, &capped),
        free(6 * MIB)
    );
    // Recent host I/O but none timed this period: grows by half.
    assert_eq!(
        plan(held(8 * MIB), &period(MIB, 0, 0), &idle, &s),
        held(12 * MIB)
    );
    // Grown to twice what the copy moves: something else holds it, freed.
    assert_eq!(
        plan(held(64 * MIB), &period(2 * MIB, 20, 100), &idle, &s),
        Limit::NONE
    );
}

#[test]
fn a_floor_of_zero_or_above_the_ceiling_leaves_host_io_out() {
    let slowed = period(50 * MIB, 50, 1000);
    assert_eq!(
        plan(Limit::NONE, &slowed, &IDLE, &settings(0, 0)),
        Limit::NONE
    );
    assert_eq!(
        plan(Limit::NONE, &slowed, &IDLE, &settings(MIB, 8 * MIB)),
        free(MIB)
    );
}

#[test]
fn pair_set_mid_copy_keeps_a_held_limit_within_the_new_bounds() {
    assert_eq!(rebound(held(5 * MIB), &settings(0, 8 * MIB)), held(8 * MIB));
    assert_eq!(
        rebound(held(50 * MIB), &settings(20 * MIB, MIB)),
        free(20 * MIB)
    );
    assert_eq!(rebound(held(5 * MIB), &settings(0, 0)), Limit::NONE);
    assert_eq!(rebound(free(0), &settings(30 * MIB, MIB)), free(30 * MIB));
    assert_eq!(rebound(held(5 * MIB), &settings(0, MIB)), held(5 * MIB));
}

#[test]
fn what_holds_a_copy_is_its_limit_or_where_its_tasks_waited() {
    let waited = |starved, link, paced, read| StallSample {
        starved,
        link,
        paced,
        read,
    };
    assert_eq!(held_by(held(4 * MIB), waited(9, 0, 9, 0)), HeldBy::HostIo);
    assert_eq!(held_by(Limit::NONE, StallSample::default()), HeldBy::None);
    assert_eq!(held_by(Limit::NONE, waited(1, 9, 0, 1)), HeldBy::Link);
    assert_eq!(held_by(Limit::NONE, waited(9, 1, 0, 9)), HeldBy::Disk);
    assert_eq!(
        held_by(free(100 * MIB), waited(9, 1, 8, 1)),
        HeldBy::CMaxRate
    );
    assert_eq!(held_by(free(100 * MIB), waited(9, 1, 1, 8)), HeldBy::Disk);
}

#[test]
fn frames_shrink_with_the_limit_in_whole_blocks() {
    assert_eq!(free(0).frame_bytes(), MAX_FRAME);
    assert_eq!(free(4 << 20).frame_bytes(), 4 * BLOCK);
    assert_eq!(free(1).frame_bytes(), BLOCK);
    assert_eq!(free(u64::MAX).frame_bytes(), MAX_FRAME);
}
