//! Clocks: steps of either wall clock, this host's own stalls, a restart
//! without the table, and the offset that is shown but never acted on.

use super::*;

/// Production's beats `range` on the network and the mirror, one an
/// interval, production's wall clock `skew` ms off the truth, this host's
/// `here` ms off; each tick's decisions checked. The clock warnings told.
fn feed(
    c: &mut Checker,
    s: Instant,
    range: std::ops::RangeInclusive<u32>,
    skew: i64,
    here: i64,
) -> Vec<ClockChange> {
    let mut told = vec![];
    for i in range {
        let ms = u64::from(i) * 200;
        let mut b = beat(i, ms);
        b.time_ms = b.time_ms.saturating_add_signed(skew);
        let mut now = at(s, ms);
        now.wall_ms = now.wall_ms.saturating_add_signed(here);
        c.identity(0xC0FFEE, ms, ECHO + u64::from(i), now.mono);
        b.echoes = vec![ECHO + u64::from(i)];
        c.network_beat("network", Ok(&b), now).expect("accepted");
        c.mirror_read("hb0", Ok(&b), now);
        let out = crate::hb::logic::step::tick_step(c, now.mono, false, Default::default());
        assert!(out.transitions.is_empty(), "{:?}", out.transitions);
        assert_eq!(out.failover, None, "a failover at {ms} ms");
        told.extend(out.clocks);
    }
    told
}

#[test]
fn a_wall_clock_step_of_any_size_either_way_at_either_site_changes_nothing() {
    let s = Instant::now();
    let mut c = standby(s);
    feed(&mut c, s, 1..=10, 0, 0);
    assert!(c.table.armed);
    // Steps of this host's clock, then of production's, each way, up to 30 days.
    let day = 86_400_000i64;
    let steps = [
        (0, 120_000),
        (0, -120_000),
        (30 * day, 0),
        (-30 * day, 0),
        (5_000, -day),
    ];
    for (n, (skew, here)) in steps.into_iter().enumerate() {
        let first = 11 + 10 * n as u32;
        feed(&mut c, s, first..=first + 9, skew, here);
        assert_eq!(c.table.remote_group_via_network, GroupStatus::Alive);
        assert_eq!(c.table.remote_group_via_mirrors, GroupStatus::Alive);
        let shown = c.table.network.clock_offset_ms.expect("measured");
        assert!(
            (shown - (skew - here)).abs() <= 200,
            "offset shown {shown}, true {}",
            skew - here
        );
    }
    let t = &c.table;
    assert_eq!(
        t.rejected_echo + t.rejected_time_back + t.rejected_instance + t.rejected_replayed,
        0
    );
    // And a real death is still found within the timeout.
    let out = crate::hb::logic::step::tick_step(
        &mut c,
        at(s, 61 * 200 + 1300).mono,
        false,
        Default::default(),
    );
    assert!(
        out.failover.is_some(),
        "production silent: {:?}",
        c.table.network
    );
}

#[test]
fn a_clock_offset_past_the_limit_is_told_once_each_way_and_decides_nothing() {
    let s = Instant::now();
    let mut c = standby(s);
    assert!(feed(&mut c, s, 1..=5, 0, 0).is_empty());
    let changes = feed(&mut c, s, 6..=10, 120_000, 0);
    assert_eq!(changes.len(), 2, "network and mirror: {changes:?}");
    assert!(changes
        .iter()
        .all(|ch| ch.past && (ch.offset_ms - 120_000).abs() <= 200));
    assert!(feed(&mut c, s, 11..=15, 120_000, 0).is_empty(), "told once");
    let back = feed(&mut c, s, 16..=20, 0, 0);
    assert_eq!(back.len(), 2);
    assert!(back.iter().all(|ch| !ch.past));
    // The status API's channels carry it too.
    assert!(c
        .table
        .channels
        .iter()
        .all(|ch| ch.clock_offset_ms.is_some()));
}

#[test]
fn a_restarted_standby_without_its_table_takes_no_replay_and_a_live_peer_at_once() {
    let s = Instant::now();
    let mut before = standby(s);
    feed(&mut before, s, 1..=10, 0, 0);
    // Captured on the way: production's heartbeats, each echoing a nonce
    // of the standby's first run. Production then dies; the standby
    // restarts with no table (a new disk) and a new run's nonces.
    let captured: Vec<Beat> = (1..=10u32)
        .map(|i| {
            let mut b = beat(i, u64::from(i) * 200);
            b.echoes = vec![ECHO + u64::from(i)];
            b
        })
        .collect();
    let mut t = Table::new("standby-a", Group::Standby, true);
    t.install("hb0", "/mnt/hbfs/hb0".into(), Direction::Receive, None);
    let s2 = s + Duration::from_secs(5);
    let mut after = Checker::new(t, vec!["prod-a".into()], timing(), ArmPolicy::SeenAlive, s2);
    for (i, b) in captured.iter().enumerate() {
        let now = At {
            mono: s2 + Duration::from_millis(i as u64 * 100),
            wall_ms: W,
        };
        after.identity(0xBEEF, i as u64 * 100, 0xAB00 + i as u64, now.mono);
        let e = after
            .network_beat("network", Ok(b), now)
            .expect_err("a replay");
        assert_eq!(e.kind, "no fresh echo");
        assert_eq!(after.mirror_read("hb0", Ok(b), now), Observation::Stale);
        after.evaluate(now.mono);
    }
    assert!(!after.table.armed, "no replay is a sign of life");
    assert_ne!(after.table.remote_group_via_network, GroupStatus::Alive);
    // A live production echoes the new run's nonce: taken at once.
    let mut live = beat(11, 2200);
    live.echoes = vec![0xAB09];
    let now = At {
        mono: s2 + Duration::from_millis(1000),
        wall_ms: W,
    };
    assert_eq!(
        after.network_beat("network", Ok(&live), now),
        Ok(Observation::Advanced)
    );
}

#[test]
fn a_stall_of_this_host_is_no_evidence_and_a_real_death_is_still_found() {
    let s = Instant::now();
    let mut c = standby(s);
    feed(&mut c, s, 1..=10, 0, 0);
    // Stopped for 60 s right after the last beat (SIGSTOP): production
    // went on beating, unheard. On waking, nothing is judged on that silence.
    let wake = at(s, 2000 + 60_000).mono;
    let absent = crate::hb::logic::step::Absence {
        stopped: Duration::from_secs(60),
        suspended: Duration::ZERO,
    };
    let out = crate::hb::logic::step::tick_step(&mut c, wake, false, absent);
    assert_eq!(out.stalled, Some(Duration::from_secs(60)));
    assert!(out.transitions.is_empty(), "{:?}", out.transitions);
    assert_eq!(out.failover, None);
    // Production really is dead: found a timeout after the last beat counted.
    let out = crate::hb::logic::step::tick_step(
        &mut c,
        wake + Duration::from_millis(1300),
        false,
        Default::default(),
    );
    assert!(out.failover.is_some(), "{:?}", c.table.network);
    // A suspend is told but stops the monotonic clock too: nothing to forgive.
    let mut d = standby(s);
    feed(&mut d, s, 1..=10, 0, 0);
    let absent = crate::hb::logic::step::Absence {
        stopped: Duration::ZERO,
        suspended: Duration::from_secs(3600),
    };
    let out = crate::hb::logic::step::tick_step(&mut d, at(s, 2100).mono, false, absent);
    assert_eq!(out.stalled, Some(Duration::from_secs(3600)));
    assert_eq!(out.failover, None);
}
