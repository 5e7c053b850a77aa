//! The checker's rules, one test each, with the clock in the test's hands.

use super::*;
use crate::hb::logic::analysis::ChannelState;
use crate::hb::logic::counter::Change;
use crate::hb::logic::message::{Control, ControlBody, Procedure, SERIAL_MAX};
use crate::hb::logic::watch::Observation;

mod clock_tests;
mod procedure_tests;

const T: Duration = Duration::from_secs(1);
/// The wall clock at the test's start.
const W: u64 = 1_700_000_000_000;
/// The sender's run in these tests.
const RUN: u64 = 0x5EED;
/// The nonce the checker under test issued at its start (see `checker`).
const ECHO: u64 = 0xEC40;

/// Production's heartbeat `serial`, `ms` into its run (and into the
/// test: its wall clock agrees), echoing the checker's first nonce.
fn beat(serial: u32, ms: u64) -> Beat {
    Beat {
        serial,
        time_ms: W + ms,
        sender: "prod-a".into(),
        instance: RUN,
        uptime_ms: ms,
        nonce: 0x1000 + u64::from(serial),
        echoes: vec![ECHO],
        group: Group::Production,
        ack: 0,
        controls: vec![],
        failed_over: false,
        stepped_down: false,
    }
}

fn timing() -> Timing {
    Timing {
        timeout: T,
        interval: Duration::from_millis(200),
        clock_warn: Duration::from_secs(1),
        counter: CounterRule::default(),
    }
}

/// A checker that issued [`ECHO`] at `start` (its first heartbeat).
fn checker(start: Instant, group: Group, policy: ArmPolicy) -> Checker {
    let (host, peer, direction) = match group {
        Group::Standby => ("standby-a", "prod-a", Direction::Receive),
        Group::Production => ("prod-a", "standby-a", Direction::Send),
    };
    let mut t = Table::new(host, group, true);
    t.install("hb0", "/mnt/hbfs/hb0".into(), direction, None);
    let mut c = Checker::new(t, vec![peer.into()], timing(), policy, start);
    c.identity(0xC0FFEE, 0, ECHO, start);
    c
}

fn standby(start: Instant) -> Checker {
    checker(start, Group::Standby, ArmPolicy::SeenAlive)
}

fn at(start: Instant, ms: u64) -> At {
    At {
        mono: start + Duration::from_millis(ms),
        wall_ms: W + ms,
    }
}

#[test]
fn both_channels_alive_then_only_total_silence_fails_over() {
    let s = Instant::now();
    let mut c = standby(s);
    for i in 1..=5u32 {
        let now = at(s, u64::from(i) * 200);
        c.network_beat("network", Ok(&beat(i, 1000 + u64::from(i))), now)
            .expect("approved");
        c.mirror_read("hb0", Ok(&beat(i, 1000 + u64::from(i))), now);
        assert!(c.evaluate(now.mono).is_empty());
    }
    assert_eq!(c.table.remote_group_via_network, GroupStatus::Alive);
    assert_eq!(c.table.remote_group_via_mirrors, GroupStatus::Alive);
    assert!(c.table.armed);
    // The network goes quiet; the mirror keeps advancing: reported, no failover.
    for i in 6..=15u32 {
        let now = at(s, u64::from(i) * 200);
        c.mirror_read("hb0", Ok(&beat(i, 1000 + u64::from(i))), now);
        c.evaluate(now.mono);
        assert_eq!(
            c.failover_reason(),
            None,
            "network loss alone must not fail over"
        );
    }
    assert_eq!(c.table.network_enable, Enable::Failed);
    assert_eq!(c.table.remote_group_via_network, GroupStatus::Failed);
    // Then the mirror freezes (a silent split): the same message again and again.
    for i in 16..=30u32 {
        let now = at(s, u64::from(i) * 200);
        c.mirror_read("hb0", Ok(&beat(15, 1015)), now);
        c.evaluate(now.mono);
    }
    assert_eq!(c.table.devices[0].status, DeviceStatus::Failed);
    assert!(
        c.table.devices[0]
            .seen
            .problem
            .as_deref()
            .unwrap_or("")
            .starts_with("stale"),
        "{:?}",
        c.table.devices[0].seen
    );
    let reason = c.failover_reason().expect("every channel failed");
    assert!(
        reason.contains("network") && reason.contains("mirror hb0"),
        "{reason}"
    );
    c.table.failed_over = true;
    assert_eq!(c.failover_reason(), None, "failover happens once");
}

#[test]
fn a_failing_write_of_this_hosts_own_pvol_does_not_hold_the_failover() {
    let s = Instant::now();
    let mut c = standby(s);
    c.table
        .install("own", "/mnt/hbfs/own".into(), Direction::Send, None);
    for i in 1..=3u32 {
        let now = at(s, u64::from(i) * 200);
        let b = beat(i, u64::from(i) * 200);
        c.network_beat("network", Ok(&b), now).expect("approved");
        c.mirror_read("hb0", Ok(&b), now);
        c.mirror_written("own", Ok(i));
        c.evaluate(now.mono);
    }
    assert!(c.table.armed);
    c.mirror_written("own", Err("EIO".into()));
    for i in 4..=20u32 {
        c.evaluate(at(s, u64::from(i) * 200).mono);
    }
    assert_eq!(c.table.remote_group_via_mirrors, GroupStatus::Failed);
    assert!(
        c.failover_reason().is_some(),
        "production is silent on every channel that brings its heartbeats"
    );
}

#[test]
fn mirror_loss_alone_never_fails_over_and_channels_recover() {
    let s = Instant::now();
    let mut c = standby(s);
    let mut transitions = vec![];
    for i in 1..=20u32 {
        let now = at(s, u64::from(i) * 200);
        c.network_beat("network", Ok(&beat(i, u64::from(i) * 200)), now)
            .expect("approved");
        let read = if !(3..=15).contains(&i) {
            Ok(beat(i, u64::from(i) * 200))
        } else {
            Err("EIO".to_string())
        };
        c.mirror_read("hb0", read.as_ref().map_err(|e| e.clone()), now);
        transitions.extend(c.evaluate(now.mono));
        assert_eq!(c.failover_reason(), None);
    }
    assert_eq!(transitions.len(), 2, "{transitions:?}");
    assert!(transitions[0].failed && transitions[0].channel == "mirror hb0");
    assert!(
        !transitions[1].failed,
        "a failed mirror delivering valid heartbeats returns to ENABLE"
    );
    assert_eq!(c.table.devices[0].status, DeviceStatus::Enable);
}

#[test]
fn strangers_replays_restarts_and_hostile_fields_are_refused_by_name() {
    let s = Instant::now();
    let mut c = standby(s);
    let now = at(s, 1000);
    let mut stranger = beat(1, 1);
    stranger.sender = "intruder".into();
    let refused = c
        .network_beat("network", Ok(&stranger), now)
        .expect_err("stranger");
    assert!(refused.why.contains("not an approved peer"), "{refused:?}");
    assert_eq!(c.table.rejected_invalid, 1);
    assert_eq!(
        c.network_beat("network", Ok(&beat(10, 100)), now),
        Ok(Observation::Advanced)
    );
    assert_eq!(
        c.network_beat("network", Ok(&beat(9, 99)), now),
        Ok(Observation::Stale),
        "a replay of an older message"
    );
    assert_eq!(
        c.network_beat("network", Ok(&beat(10, 101)), now),
        Ok(Observation::Stale),
        "the same serial again"
    );
    assert_eq!(c.table.rejected_replayed, 2);
    let back = c
        .network_beat("network", Ok(&beat(11, 100)), now)
        .expect_err("a newer serial whose time did not advance");
    assert_eq!(back.kind, "time went back");
    let jump = c
        .network_beat("network", Ok(&beat(5_000, 300)), now)
        .expect_err("4990 serials in 200 ms");
    assert_eq!(jump.kind, "serial jumped");
    // A restarted sender: a new run, counting from 1, echoing this host's nonce.
    let mut restarted = beat(1, 5);
    restarted.instance = RUN + 1;
    assert_eq!(
        c.network_beat("network", Ok(&restarted), now),
        Ok(Observation::Advanced)
    );
    // Its old run's messages are refused from now on, echo or not.
    let late = c
        .network_beat("network", Ok(&beat(12, 400)), now)
        .expect_err("a run left behind");
    assert_eq!(late.kind, "retired instance");
    // A run that changes every message without echoing a nonce of ours.
    for i in 0..50 {
        let mut odd = beat(1, 1);
        odd.instance = 1000 + i;
        odd.echoes = vec![i, 7];
        let e = c
            .network_beat("network", Ok(&odd), now)
            .expect_err("no echo");
        assert_eq!(e.kind, "no fresh echo");
        assert!(e.why.contains("echoes no nonce"), "{}", e.why);
    }
    let t = &c.table;
    assert_eq!(
        (
            t.rejected_time_back,
            t.rejected_serial_jump,
            t.rejected_instance,
            t.rejected_echo
        ),
        (1, 1, 1, 50)
    );
    // None of it moved the watermark: the restarted run goes on.
    let mut next = beat(2, 205);
    next.instance = RUN + 1;
    next.echoes = vec![];
    assert_eq!(
        c.network_beat("network", Ok(&next), now),
        Ok(Observation::Advanced)
    );
    let mut wrap = beat(SERIAL_MAX, 300);
    wrap.instance = RUN + 2;
    assert_eq!(
        c.network_beat("network", Ok(&wrap), now),
        Ok(Observation::Advanced)
    );
    let mut wrapped = beat(1, 400);
    wrapped.instance = RUN + 2;
    assert_eq!(
        c.network_beat("network", Ok(&wrapped), now),
        Ok(Observation::Advanced),
        "the serial wraps to 1"
    );
    let junk = c
        .network_beat("network", Err("bad frame".into()), now)
        .expect_err("junk");
    assert_eq!(junk.kind, "invalid frame");
    assert_eq!(c.table.rejected_invalid, 2);
}

#[test]
fn nothing_fails_over_before_the_peer_was_seen_or_when_all_is_disabled() {
    let s = Instant::now();
    let mut c = standby(s);
    c.evaluate(at(s, 5000).mono);
    assert_eq!(c.table.remote_group_via_network, GroupStatus::Failed);
    assert_eq!(c.failover_reason(), None, "never seen: not armed");
    c.table.armed = true;
    assert!(c.failover_reason().is_some());
    c.table.network_wanted = false;
    c.table.mirrors_wanted = false;
    c.evaluate(at(s, 6000).mono);
    assert_eq!(
        c.failover_reason(),
        None,
        "with every channel off there is no evidence"
    );
    assert_eq!(c.table.devices[0].status, DeviceStatus::Disable);
    c.table.mirrors_wanted = true;
    c.evaluate(at(s, 6001).mono);
    assert_ne!(
        c.table.devices[0].status,
        DeviceStatus::Disable,
        "turning the mirrors back on restores the device"
    );
}

#[test]
fn after_timeout_arms_at_start_and_seen_alive_waits_for_the_peer() {
    let s = Instant::now();
    let mut late = checker(s, Group::Standby, ArmPolicy::AfterTimeout);
    let mut safe = standby(s);
    for c in [&mut late, &mut safe] {
        c.evaluate(at(s, 500).mono);
        assert_eq!(
            c.failover_reason(),
            None,
            "within the timeout: no verdict yet"
        );
        c.evaluate(at(s, 1500).mono);
    }
    assert!(late.failover_reason().is_some(), "after-timeout fails over");
    assert_eq!(
        safe.failover_reason(),
        None,
        "seen-alive never saw production"
    );
    assert!(!safe.table.armed);
    // Re-arming starts a new grace period.
    late.table.failed_over = true;
    late.rearm(at(s, 2000).mono);
    late.evaluate(at(s, 2500).mono);
    assert_eq!(late.failover_reason(), None);
    late.evaluate(at(s, 3500).mono);
    assert!(late.failover_reason().is_some());
}

#[test]
fn each_network_is_a_channel_with_its_counter_and_only_all_of_them_silent_count() {
    let s = Instant::now();
    let mut t = Table::new("standby-a", Group::Standby, true);
    t.set_networks(&["net0".into(), "net1".into()]);
    t.install("hb0", "/mnt/hbfs/hb0".into(), Direction::Receive, None);
    let mut c = Checker::new(t, vec!["prod-a".into()], timing(), ArmPolicy::SeenAlive, s);
    c.identity(0xC0FFEE, 0, ECHO, s);
    assert_eq!(c.table.networks[0].counter.value, 20, "opened at start");
    // Both networks and the mirror heard, then net1 goes silent.
    let mut bad_at = None;
    for i in 1..=60u32 {
        let now = at(s, u64::from(i) * 200);
        let b = beat(i, u64::from(i) * 200);
        c.network_beat("net0", Ok(&b), now).expect("approved");
        if i <= 10 {
            c.network_beat("net1", Ok(&b), now).expect("approved");
        }
        c.mirror_read("hb0", Ok(&b), now);
        c.evaluate(now.mono);
        if i % 5 == 0 {
            c.counter_period();
        }
        let changes = c.take_counter_changes();
        if let Some(ch) = changes.first() {
            assert_eq!(ch.channel, "network net1");
            assert_eq!(ch.change, Change::Bad);
            bad_at.get_or_insert(i);
        }
        assert_eq!(c.failover_reason(), None);
    }
    // 20 + 10 heard - 2 periods = 22 at the 10th interval, then 4 off
    // every 5 intervals: 0 six periods later (the 40th), found at 0 by the
    // next period's check (the 45th: seed 002, Fig 4, step 426).
    assert_eq!(bad_at, Some(45));
    let t = &c.table;
    assert_eq!(t.networks[1].enable, Enable::Failed, "the timeout rule");
    assert_eq!(t.networks[0].enable, Enable::Enable);
    assert_eq!(
        t.network_enable,
        Enable::Enable,
        "one network alive is enough"
    );
    assert_eq!(t.remote_group_via_network, GroupStatus::Alive);
    assert_eq!(t.channels.len(), 3);
    assert_eq!(t.channels[1].state, ChannelState::Bad);
    assert_eq!(t.channels[0].state, ChannelState::Good);
    assert_eq!(t.channels[0].received, 60);
    let net1 = format!("{:?}", t.watermarks);
    assert!(net1.contains("network net1"), "{net1}");
    // net1 heard again, with a gap: GOOD, the gap counted.
    let now = at(s, 61 * 200);
    c.network_beat("net1", Ok(&beat(61, 61 * 200)), now)
        .expect("approved");
    let back = c.take_counter_changes();
    assert_eq!(back[0].change, Change::Good);
    assert_eq!(c.table.networks[1].counter.missing, 50);
    // Every network and the mirror silent: the failover rule (after the timeout).
    for i in 62..=80u32 {
        let now = at(s, u64::from(i) * 200);
        c.evaluate(now.mono);
    }
    assert!(c.all_channels_failed());
    let reason = c.failover_reason().expect("every channel failed");
    assert!(
        reason.contains("network net0") && reason.contains("network net1"),
        "{reason}"
    );
}

#[test]
fn a_disabled_network_is_neither_checked_nor_counted() {
    let s = Instant::now();
    let mut c = standby(s);
    c.table.apply_procedure(&Procedure {
        network: Some(false),
        ..Procedure::default()
    });
    let now = at(s, 100);
    assert_eq!(
        c.network_beat("network", Ok(&beat(1, 100)), now),
        Ok(Observation::Ignored)
    );
    assert_eq!(
        c.network_beat("network", Err("junk".into()), now),
        Ok(Observation::Ignored),
        "not even decoded"
    );
    assert_eq!((c.table.network.count, c.table.ignored_disabled), (0, 2));
    c.evaluate(now.mono);
    assert_eq!(c.table.network_enable, Enable::Disable);
    assert!(c.table.watermarks.is_empty(), "nothing was accepted");
}

#[test]
fn a_refused_slot_read_again_and_again_counts_once() {
    let s = Instant::now();
    let mut c = standby(s);
    // A slot from a run of production this host never heard, echoing
    // nothing of this host's: a replay, or production restarted while
    // it could not hear this host.
    let mut frozen = beat(4, 5_000);
    frozen.instance = RUN + 9;
    frozen.echoes = vec![];
    for i in 0..3 {
        let seen = c.mirror_read("hb0", Ok(&frozen), at(s, 10_000 + i * 200));
        assert_eq!(seen, Observation::Stale);
    }
    assert_eq!(c.table.rejected_echo, 1);
    c.evaluate(at(s, 10_600).mono);
    let problem = c.table.devices[0].seen.problem.clone().unwrap_or_default();
    assert!(problem.starts_with("refused: heartbeat 4"), "{problem}");
}

#[test]
fn watermarks_survive_a_restart_so_replays_are_stale() {
    let s = Instant::now();
    let mut before = standby(s);
    let now = at(s, 1000);
    before
        .network_beat("network", Ok(&beat(10, 900)), now)
        .expect("accepted");
    before.mirror_read("hb0", Ok(&beat(10, 900)), now);
    assert_eq!(before.table.watermarks.len(), 2);
    // Restarted with the persisted table, production dead: its last
    // messages are replayed (and the SVOL still holds the last one).
    let mut after = Checker::new(
        before.table.clone(),
        vec!["prod-a".into()],
        timing(),
        ArmPolicy::SeenAlive,
        s,
    );
    for i in 0..5 {
        let now = at(s, 1100 + i * 200);
        assert_eq!(
            after.network_beat("network", Ok(&beat(10, 900)), now),
            Ok(Observation::Stale)
        );
        assert_eq!(
            after.network_beat("network", Ok(&beat(9, 800)), now),
            Ok(Observation::Stale)
        );
        assert_eq!(
            after.mirror_read("hb0", Ok(&beat(10, 900)), now),
            Observation::Stale
        );
        after.evaluate(now.mono);
    }
    assert_eq!(after.table.rejected_replayed, 10);
    assert_ne!(after.table.remote_group_via_network, GroupStatus::Alive);
    assert_ne!(after.table.remote_group_via_mirrors, GroupStatus::Alive);
    assert!(!after.table.armed, "a replay is no sign of life");
    let mut next = beat(11, 2000);
    next.echoes = vec![];
    assert_eq!(
        after.network_beat("network", Ok(&next), at(s, 2000)),
        Ok(Observation::Advanced),
        "the same run goes on, no echo needed"
    );
}

#[test]
fn the_last_heartbeat_left_on_a_mirror_does_not_arm_a_restarted_standby() {
    let s = Instant::now();
    let mut c = standby(s);
    c.table.network_wanted = false;
    // Production wrote serial 12 just before it died and this hbd started.
    let seen = c.mirror_read("hb0", Ok(&beat(12, 900)), at(s, 1000));
    assert_eq!(seen, Observation::Advanced, "newer than anything seen");
    c.evaluate(at(s, 1000).mono);
    assert!(!c.table.armed, "one message is no sign of life since start");
    c.mirror_read("hb0", Ok(&beat(13, 1100)), at(s, 1100));
    c.evaluate(at(s, 1100).mono);
    assert!(c.table.armed, "a second one is");
}

#[test]
fn production_steps_down_once_when_the_standby_says_it_failed_over() {
    let s = Instant::now();
    let mut c = checker(s, Group::Production, ArmPolicy::SeenAlive);
    let mut from_standby = beat(1, 100);
    from_standby.sender = "standby-a".into();
    from_standby.instance = 77;
    c.network_beat("network", Ok(&from_standby), at(s, 100))
        .expect("accepted");
    assert_eq!(c.step_down_reason(), None);
    from_standby.serial = 2;
    from_standby.time_ms += 100;
    from_standby.uptime_ms += 100;
    from_standby.failed_over = true;
    c.network_beat("network", Ok(&from_standby), at(s, 200))
        .expect("accepted");
    let reason = c.step_down_reason().expect("the standby took over");
    assert!(reason.contains("standby-a"), "{reason}");
    c.table.stepped_down = true;
    assert_eq!(c.step_down_reason(), None, "once");
    assert!(c.rearm(at(s, 300).mono).starts_with("step-down ended"));
    assert!(!c.table.stepped_down);
    assert_eq!(
        c.step_down_reason(),
        None,
        "until the standby says so again"
    );
    from_standby.serial = 3;
    from_standby.time_ms += 100;
    from_standby.uptime_ms += 100;
    c.network_beat("network", Ok(&from_standby), at(s, 300))
        .expect("accepted");
    assert!(c.step_down_reason().is_some());
    // A standby never steps down.
    let mut st = standby(s);
    let mut odd = beat(1, 100);
    odd.failed_over = true;
    st.network_beat("network", Ok(&odd), at(s, 100))
        .expect("accepted");
    assert_eq!(st.step_down_reason(), None);
}

#[test]
fn control_messages_wait_while_no_channel_reaches_the_peer() {
    let s = Instant::now();
    let mut c = checker(s, Group::Production, ArmPolicy::SeenAlive);
    c.table.outbox.push(Control {
        id: 1,
        body: ControlBody::Deactivate {
            mirror: "hb9".into(),
        },
    });
    c.evaluate(at(s, 100).mono);
    assert!(!c.table.outbox_held);
    c.table.apply_procedure(&Procedure {
        network: Some(false),
        mirrors: Some(false),
        ..Procedure::default()
    });
    c.evaluate(at(s, 200).mono);
    assert!(c.table.outbox_held);
}
