//! The handover's tests: who steps down and when, one request per
//! step-down carried by every heartbeat until the standby has it, the
//! standby's decision by QoS, the answer matched to its request.

use std::time::{Duration, Instant};

use super::*;
use crate::hb::logic::checker::{Identity, Timing};
use crate::hb::logic::message::Beat;
use crate::hb::logic::step::{compose_beat, take_controls};

/// A checker whose last heartbeat from the peer said it stepped down (as
/// the one that brings production's request says).
fn checker(host: &str, group: Group, peer: &str) -> Checker {
    let mut c = checker_heard(host, group, peer);
    c.table.peer_stepped_down = true;
    c
}

fn checker_heard(host: &str, group: Group, peer: &str) -> Checker {
    let timing = Timing {
        timeout: Duration::from_secs(1),
        interval: Duration::from_millis(100),
        clock_warn: Duration::from_secs(1),
        counter: Default::default(),
    };
    Checker::new(
        Table::new(host, group, true),
        vec![peer.into()],
        timing,
        Default::default(),
        Instant::now(),
    )
}

fn healthy() -> Qos {
    Qos {
        networks: 1,
        networks_working: 1,
        checks: 1,
        checks_passing: 1,
        serious_failing: vec![],
        mirrors: 2,
        mirrors_healthy: 2,
        load_milli: 100,
    }
}

fn failing(part: &str) -> Qos {
    Qos {
        checks_passing: 0,
        serious_failing: vec![part.into()],
        ..healthy()
    }
}

fn standing(qos: Qos) -> Standing {
    Standing {
        qos,
        rule: QosRule::default(),
        group_short: None,
        master: true,
    }
}

const ALONE: GroupCount = GroupCount {
    alive: 1,
    size: 1,
    min_hosts: 1,
};

fn beat(t: &mut Table, n: u64) -> Beat {
    let id = Identity {
        instance: 1,
        uptime_ms: n,
        nonce: n,
        echoes: vec![],
    };
    compose_beat(t, n, id)
}

#[test]
fn production_cannot_serve_when_a_system_down_check_fails_or_its_group_is_short() {
    assert_eq!(cannot_serve(&[], ALONE), None);
    let why = cannot_serve(&["app".into(), "db".into()], ALONE).expect("cannot");
    assert_eq!(why, "its SYSTEM DOWN check fails (app, db)");
    let short = GroupCount {
        alive: 1,
        size: 3,
        min_hosts: 2,
    };
    let why = cannot_serve(&[], short).expect("short");
    assert!(
        why.contains("1 of its 3 hosts alive, fewer than min_hosts (2)"),
        "{why}"
    );
    let enough = GroupCount { alive: 2, ..short };
    assert_eq!(cannot_serve(&[], enough), None);
}

#[test]
fn production_steps_down_once_then_asks_once() {
    let mut p = Table::new("prod-a", Group::Production, true);
    assert_eq!(due(&mut p, None, "standby-a", 1), None);
    assert!(!p.stepped_down);
    let why = Some("its SYSTEM DOWN check fails (app)".to_string());
    let reason = due(&mut p, why.clone(), "standby-a", 5).expect("due");
    assert!(p.stepped_down, "it steps down first");
    assert!(p.outbox.is_empty(), "and asks only after the step-down");
    assert_eq!(
        p.handover.as_ref().map(Handover::state),
        Some("stepping-down")
    );
    // Stopped during its step-down: the next start steps down again, then asks.
    assert_eq!(due(&mut p, why.clone(), "standby-a", 6), Some(reason));
    let asked = ask(&mut p, failing("app"), 7).expect("asked");
    assert_eq!(p.outbox.len(), 1);
    assert_eq!(
        p.outbox[0].id, asked.id,
        "the answer names the control's id"
    );
    assert_eq!(p.handover.as_ref().map(Handover::state), Some("asked"));
    // Once: not again while it cannot serve, and no second request.
    assert_eq!(due(&mut p, why, "standby-a", 8), None);
    assert_eq!(ask(&mut p, failing("app"), 9), None);
    assert_eq!(p.outbox.len(), 1);
    // A standby never hands over.
    let mut s = Table::new("standby-a", Group::Standby, true);
    assert_eq!(due(&mut s, Some("x".into()), "prod-a", 1), None);
    assert_eq!(ask(&mut s, healthy(), 1), None);
}

#[test]
fn a_host_stepped_down_for_the_standby_s_failover_asks_nothing() {
    let mut p = Table::new("prod-a", Group::Production, true);
    p.stepped_down = true;
    assert_eq!(due(&mut p, Some("app".into()), "standby-a", 1), None);
    assert!(p.handover.is_none());
}

#[test]
fn a_short_group_is_named_among_production_s_failing_parts() {
    let mut p = Table::new("prod-a", Group::Production, true);
    let short = GroupCount {
        alive: 1,
        size: 2,
        min_hosts: 2,
    };
    due(&mut p, cannot_serve(&[], short), "standby-a", 1).expect("due");
    let asked = ask(&mut p, healthy(), 2).expect("asked");
    assert_eq!(asked.qos.serious_failing, vec![GROUP_PART.to_string()]);
    // A healthy standby ranks above it and takes over.
    let mut s = checker("standby-a", Group::Standby, "prod-a");
    let d = decide(&mut s, "prod-a", asked, standing(healthy()), 3);
    assert!(d.take && d.answer.accepted, "{d:?}");
}

#[test]
fn a_request_on_a_heartbeat_of_an_active_production_is_refused() {
    let mut s = checker_heard("standby-a", Group::Standby, "prod-a");
    let asked = HandoverRequest {
        id: 1,
        reason: "r".into(),
        asked_ms: 1,
        qos: failing("app"),
    };
    let d = decide(&mut s, "prod-a", asked, standing(healthy()), 2);
    assert!(!d.take && !d.answer.accepted, "{d:?}");
    assert!(
        d.answer.why.contains("two sites active"),
        "{}",
        d.answer.why
    );
    assert!(!s.table.failed_over);
}

#[test]
fn the_request_rides_every_heartbeat_until_the_standby_has_it_and_is_answered_once() {
    let mut p = Table::new("prod-a", Group::Production, true);
    let mut s = checker("standby-a", Group::Standby, "prod-a");
    due(
        &mut p,
        Some("its SYSTEM DOWN check fails (app)".into()),
        "standby-a",
        1,
    );
    let asked = ask(&mut p, failing("app"), 2).expect("asked");
    // Three heartbeats lost: each carried the request.
    for n in 1..=3 {
        let lost = beat(&mut p, n);
        assert_eq!(lost.controls.len(), 1, "beat {n}");
    }
    let arrived = beat(&mut p, 4);
    assert!(
        arrived.stepped_down,
        "the beat says production stepped down"
    );
    s.table.peer_stepped_down = arrived.stepped_down; // as the checker's accept does
    let fresh = take_controls(&mut s.table, &arrived);
    assert_eq!(fresh.len(), 1);
    let ControlBody::HandoverRequest(request) = fresh[0].body.clone() else {
        panic!("{fresh:?}");
    };
    assert_eq!(request, asked);
    let d = decide(&mut s, "prod-a", request, standing(healthy()), 5);
    assert!(d.take && s.table.failed_over);
    // A duplicate of the beat brings nothing new.
    assert!(take_controls(&mut s.table, &arrived).is_empty());
    // The standby's heartbeat acknowledges the request and carries the answer.
    let back = beat(&mut s.table, 6);
    let fresh = take_controls(&mut p, &back);
    assert!(p.outbox.is_empty(), "acknowledged: asked no more");
    let [ctl] = fresh.as_slice() else {
        panic!("{fresh:?}");
    };
    let ControlBody::HandoverAnswer(answer) = ctl.body.clone() else {
        panic!("{ctl:?}");
    };
    let h = answered(&mut p, answer).expect("matched");
    assert_eq!(h.state(), "taken-over");
    assert!(beat(&mut p, 7).controls.is_empty());
}

#[test]
fn a_standby_that_cannot_carry_the_duties_or_ranks_lower_refuses_and_says_why() {
    // Production: three checks, its SYSTEM DOWN one failing.
    let asked = HandoverRequest {
        id: 3,
        reason: "its SYSTEM DOWN check fails (app)".into(),
        asked_ms: 1,
        qos: Qos {
            checks: 3,
            checks_passing: 2,
            ..failing("app")
        },
    };
    let mut s = checker("standby-a", Group::Standby, "prod-a");
    let d = decide(
        &mut s,
        "prod-a",
        asked.clone(),
        standing(failing("app-host")),
        2,
    );
    assert!(!d.take && !d.answer.accepted);
    assert!(
        d.answer.why.contains("SERIOUS check fails (app-host)"),
        "{}",
        d.answer.why
    );
    assert!(
        d.answer.why.contains("is worse than production's"),
        "{}",
        d.answer.why
    );
    assert!(!s.table.failed_over, "nothing taken over");
    assert_eq!(
        s.table.handover.as_ref().map(Handover::state),
        Some("refused")
    );
    assert_eq!(s.table.outbox.len(), 1, "the refusal is told");
    // Its own group short of hosts.
    let short = Standing {
        group_short: Some("its group has 1 of its 2 hosts alive".into()),
        ..standing(healthy())
    };
    let d = decide(&mut s, "prod-a", asked.clone(), short, 3);
    assert!(!d.answer.accepted && d.answer.why.contains("1 of its 2 hosts"));
    // Not its group's master.
    let follower = Standing {
        master: false,
        ..standing(healthy())
    };
    let d = decide(&mut s, "prod-a", asked.clone(), follower, 4);
    assert!(!d.answer.accepted && d.answer.why.contains("master"));
    // Over max_load.
    let busy = Standing {
        rule: QosRule {
            max_load_milli: Some(50),
        },
        ..standing(healthy())
    };
    let d = decide(&mut s, "prod-a", asked.clone(), busy, 5);
    assert!(!d.answer.accepted && d.answer.why.contains("max_load"));
    // A production host asked by mistake refuses too.
    let mut p = checker("prod-b", Group::Production, "prod-a");
    let d = decide(&mut p, "prod-a", asked, standing(healthy()), 6);
    assert!(!d.answer.accepted && d.answer.why.contains("only a standby"));
}

#[test]
fn a_standby_that_took_over_before_says_so_and_takes_nothing_twice() {
    let mut s = checker("standby-a", Group::Standby, "prod-a");
    s.table.failed_over = true;
    let asked = HandoverRequest {
        id: 1,
        reason: "r".into(),
        asked_ms: 1,
        qos: failing("app"),
    };
    let d = decide(&mut s, "prod-a", asked, standing(failing("x")), 2);
    assert!(d.answer.accepted && !d.take, "{d:?}");
    assert!(d.answer.why.contains("already"));
}

#[test]
fn an_answer_to_another_request_is_ignored_and_a_rearm_allows_a_new_request() {
    let mut p = checker("prod-a", Group::Production, "standby-a");
    due(&mut p.table, Some("app".into()), "standby-a", 1);
    let first = ask(&mut p.table, failing("app"), 2).expect("asked");
    let stale = HandoverAnswer {
        request: first.id + 10,
        by: "standby-a".into(),
        accepted: true,
        why: "x".into(),
        qos: healthy(),
        time_ms: 3,
    };
    let why = answered(&mut p.table, stale).expect_err("not this request");
    assert!(why.contains("ignored"), "{why}");
    assert_eq!(
        p.table.handover.as_ref().map(Handover::state),
        Some("asked")
    );
    let said = p.rearm(Instant::now());
    assert!(said.contains("handover"), "{said}");
    assert!(p.table.handover.is_none() && !p.table.stepped_down);
    assert!(
        p.table.outbox.is_empty(),
        "a request not delivered is withdrawn: production is active again"
    );
    due(&mut p.table, Some("app".into()), "standby-a", 4).expect("due again");
    let second = ask(&mut p.table, failing("app"), 5).expect("asked again");
    assert!(second.id > first.id);
}

#[test]
fn long_texts_are_cut_to_fit_a_heartbeat() {
    let mut p = Table::new("prod-a", Group::Production, true);
    let reason = due(&mut p, Some("é".repeat(TEXT_MAX)), "standby-a", 1).expect("due");
    assert!(reason.len() <= TEXT_MAX + '…'.len_utf8());
    let asked = ask(&mut p, failing("app"), 2).expect("asked");
    let b = beat(&mut p, 3);
    assert_eq!(b.controls[0].body, ControlBody::HandoverRequest(asked));
    b.encode(b"0123456789abcdef").expect("fits a slot");
}
