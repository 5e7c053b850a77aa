//! The pair machine's decisions, one table each.

use hbcore::link::Generations;
use hbcore::vocab::Fence;

use super::*;
use crate::outdated::Outdated;
use PairState::*;

fn meta(role: Role, state: PairState, mode: Mode, fence: Fence) -> PairMeta {
    PairMeta {
        generations: Some(Generations {
            current: Some(1),
            bitmap: None,
            history: vec![],
        }),
        ..PairMeta::test_data(role, state, mode, fence)
    }
}

#[test]
fn a_host_write_follows_the_mode_while_mirrored_and_goes_alone_otherwise() {
    let m = |state, mode, fence| host_write(&meta(Role::Pvol, state, mode, fence));
    assert_eq!(m(Pair, Mode::Sync, Fence::Never), WritePolicy::Sync);
    assert_eq!(m(Copy, Mode::Sync, Fence::Data), WritePolicy::Fenced);
    assert_eq!(m(Pair, Mode::SemiSync, Fence::Never), WritePolicy::SemiSync);
    assert_eq!(
        m(Pair, Mode::Adaptive, Fence::Never),
        WritePolicy::Adaptive { queue: true }
    );
    assert_eq!(
        m(Copy, Mode::Adaptive, Fence::Never),
        WritePolicy::Adaptive { queue: false }
    );
    assert_eq!(
        m(Psue, Mode::Sync, Fence::Never),
        WritePolicy::Alone { diverge: true }
    );
    assert_eq!(
        m(Psue, Mode::Sync, Fence::Data),
        WritePolicy::Refuse(Refusal::Fenced)
    );
    assert_eq!(
        m(Psus, Mode::Sync, Fence::Data),
        WritePolicy::Alone { diverge: true }
    );
    let mut own = meta(Role::Pvol, Psus, Mode::Sync, Fence::Never);
    if let Some(g) = own.generations.as_mut() {
        g.bitmap = Some(1);
    }
    assert_eq!(host_write(&own), WritePolicy::Alone { diverge: false });
    let svol = meta(Role::Svol, Pair, Mode::Sync, Fence::Never);
    assert_eq!(host_write(&svol), WritePolicy::Refuse(Refusal::ReadOnly));
    let mut outdated = meta(Role::Pvol, Pair, Mode::Adaptive, Fence::Never);
    outdated.outdated = Some(Outdated {
        by: "standby".into(),
        at: 0,
        how: "test".into(),
    });
    assert!(matches!(
        host_write(&outdated),
        WritePolicy::Refuse(Refusal::Outdated(_))
    ));
}

#[test]
fn events_change_only_the_states_they_apply_to() {
    let c = |state, event| change(Role::Pvol, state, event).map(|c| (c.state, c.changed));
    assert_eq!(c(Pair, Event::Suspend), Ok((Psue, true)));
    assert_eq!(c(Psus, Event::Suspend), Ok((Psus, false)));
    assert_eq!(c(Copy, Event::CopyDone), Ok((Pair, true)));
    assert_eq!(c(Psue, Event::CopyDone), Ok((Psue, false)));
    assert_eq!(c(Psus, Event::CopyStarted), Ok((Psus, false)));
    assert_eq!(c(Psus, Event::ResyncStarted), Ok((Copy, true)));
    assert_eq!(c(Pair, Event::Takeover(Pair)), Ok((Ssws, true)));
    assert_eq!(
        c(Psue, Event::Takeover(Pair)),
        Ok((Psue, false)),
        "the state moved meanwhile"
    );
    assert_eq!(c(Smpl, Event::Created), Ok((Copy, true)));
    // Entering COPY drops the adaptive queue (the copy ships its blocks, newer).
    let drop = |state, event| change(Role::Pvol, state, event).map(|c| c.drop_queue);
    assert_eq!(drop(Pair, Event::ResyncStarted), Ok(true));
    assert_eq!(drop(Psue, Event::CopyStarted), Ok(true));
    assert_eq!(drop(Copy, Event::CopyStarted), Ok(false));
    assert_eq!(drop(Copy, Event::CopyDone), Ok(false));
    // What the table forbids is an error naming both states.
    assert_eq!(
        c(Copy, Event::Split),
        Err(IllegalTransition {
            from: Copy,
            to: Psus
        })
    );
    assert_eq!(
        c(Ssws, Event::PeerSet(Pair)),
        Err(IllegalTransition {
            from: Ssws,
            to: Pair
        })
    );
    let r = change(Role::Svol, Ssws, Event::Reversed(Role::Pvol)).expect("legal");
    assert_eq!((r.role, r.state, r.changed), (Role::Pvol, Copy, true));
}

#[test]
fn failures_lead_to_the_state_their_kind_calls_for() {
    assert_eq!(write_failed(Failure::TakenOver), OnFailure::Outdate);
    assert_eq!(write_failed(Failure::SplitThere), OnFailure::SplitByPeer);
    assert_eq!(
        write_failed(Failure::Timeout),
        OnFailure::Suspend { reset_link: true }
    );
    assert_eq!(
        write_failed(Failure::Disk),
        OnFailure::Suspend { reset_link: false }
    );
    let m = |state, fence| split_by_peer(&meta(Role::Pvol, state, Mode::Sync, fence));
    assert_eq!(m(Pair, Fence::Never), PeerSplit::Split);
    assert_eq!(m(Copy, Fence::Never), PeerSplit::Suspend);
    assert_eq!(m(Pair, Fence::Data), PeerSplit::SuspendFenced);
}

#[test]
fn an_svol_applies_copies_only_while_it_takes_them() {
    for s in [Copy, Pair, Psue] {
        assert_eq!(accepts_copies(Role::Svol, s), Ok(()));
    }
    for s in [Psus, Ssws, Smpl] {
        assert_eq!(
            accepts_copies(Role::Svol, s),
            Err(NotApplied::WrongState(s))
        );
    }
    assert_eq!(accepts_copies(Role::Pvol, Pair), Err(NotApplied::NotSvol));
}

#[test]
fn a_pvol_learning_of_a_takeover_is_outdated_once() {
    let m = meta(Role::Pvol, Pair, Mode::Sync, Fence::Never);
    assert_eq!(outdate(&m), Some(Psue));
    let m = meta(Role::Pvol, Psus, Mode::Sync, Fence::Never);
    assert_eq!(outdate(&m), Some(Psue));
    assert_eq!(
        outdate(&meta(Role::Svol, Pair, Mode::Sync, Fence::Never)),
        None
    );
}

#[test]
fn verdicts_off_the_usual_course_stop_the_pair_or_follow_the_policy() {
    let sb = Verdict::SplitBrain {
        common: 1,
        full: false,
    };
    let manual = SplitBrainPolicy::Manual;
    assert_eq!(
        on_divergence(sb, Psus, manual, 1, 1),
        Some(Divergence::Stop {
            split: true,
            why: StopWhy::SplitBrain
        })
    );
    assert_eq!(
        on_divergence(sb, Psue, SplitBrainPolicy::DiscardSvol, 1, 1),
        Some(Divergence::KeepMine)
    );
    assert_eq!(
        on_divergence(sb, Psue, SplitBrainPolicy::DiscardLeastChanges, 1, 5),
        Some(Divergence::KeepTheirs)
    );
    let ahead_there = Verdict::Ahead {
        side: Side::Remote,
        full: false,
        common: Some(1),
    };
    assert_eq!(on_divergence(ahead_there, Ssws, manual, 0, 3), None);
    assert!(on_divergence(ahead_there, Psue, manual, 0, 3).is_some());
    assert_eq!(
        on_divergence(Verdict::InSync { common: 1 }, Pair, manual, 0, 0),
        None
    );
}

#[test]
fn a_plain_resync_goes_ahead_only_where_the_generations_agree() {
    let in_sync = Verdict::InSync { common: 1 };
    assert_eq!(plain_resync(Psue, in_sync, Psue), Some(false));
    let ahead_there = Verdict::Ahead {
        side: Side::Remote,
        full: false,
        common: Some(1),
    };
    assert_eq!(plain_resync(Psue, ahead_there, Ssws), Some(false));
    assert_eq!(plain_resync(Psue, ahead_there, Psue), None);
    let sb = Verdict::SplitBrain {
        common: 1,
        full: false,
    };
    assert_eq!(plain_resync(Psus, sb, Psus), Some(false));
    assert_eq!(plain_resync(Psue, sb, Ssws), None);
    assert_eq!(plain_resync(Psue, Verdict::Unrelated, Psue), None);
}

#[test]
fn a_reattached_pvol_resumes_as_its_state_says() {
    let m = meta(Role::Pvol, Pair, Mode::Sync, Fence::Never);
    assert_eq!(resume(&m, Psue, 0), Resume::InSync);
    assert_eq!(resume(&m, Ssws, 0), Resume::Outdate);
    assert_eq!(resume(&m, Psus, 0), Resume::Split);
    let mut m = meta(Role::Pvol, Psue, Mode::Sync, Fence::Never);
    assert_eq!(resume(&m, Psue, 3), Resume::WaitResync);
    m.settings.auto_resync = true;
    assert_eq!(resume(&m, Psue, 3), Resume::Resync);
}
