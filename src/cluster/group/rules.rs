//! The group's rules inside a site, as pure functions of what a host saw
//! and when (milliseconds of its own monotonic clock): no I/O, so the
//! simulator drives the same code as hbd. Two channels inside a site —
//! the LAN (notices) and the group volume (slots) — and one master:
//!
//! - a member is DOWN only when it is silent on the LAN **and** its slot
//!   stopped advancing, or when its slot says so itself; LAN silence with a
//!   live slot is a LAN fault, never a takeover ([`judge`]);
//! - a master reigns only while it can write its slot: it gives up once its
//!   last good write is `master_timeout / 2` old ([`may_reign`]); a successor
//!   waits out the full `master_timeout` of LAN silence and of stillness of
//!   the master's slot, or sees the master say in its slot that it no longer
//!   reigns ([`may_succeed`]). Because the old master measures from the
//!   start of its last good write and the successor from when it saw that
//!   write, the two never reign at once, whatever the two hosts' clocks
//!   read (only their rates are assumed alike);
//! - a new master acts only once its claim landed and a read begun after
//!   it shows no rival claim; its lease runs from its claiming writes, is
//!   renewed by each that begins while it holds, and once lapsed is given
//!   up, never renewed ([`Claim`]); a master that gave up its reign starts
//!   the next one after the full timeout ([`resigned_long_enough`]);
//! - a host that has lost both its LAN and its slot for `fence_timeout / 2`
//!   fences itself ([`must_self_fence`]), within `fence_timeout`.

use super::slot::{Slot, SlotState};

/// What this host saw of another host's slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotWatch {
    /// The slot as last read.
    pub slot: Slot,
    /// When it was first seen with its current run and serial.
    pub advanced_ms: u64,
    /// The newest reign this run of the host was seen claiming.
    pub claimed: Option<u64>,
}

impl SlotWatch {
    /// `slot` read at `now_ms`, after `before`.
    pub fn observe(before: Option<&SlotWatch>, slot: Slot, now_ms: u64) -> SlotWatch {
        let advanced_ms = match before {
            Some(b) if b.slot.run == slot.run && b.slot.serial == slot.serial => b.advanced_ms,
            _ => now_ms,
        };
        let claimed = match before {
            Some(b) if b.slot.run == slot.run => b.claimed.max(slot.master),
            _ => slot.master,
        };
        SlotWatch {
            slot,
            advanced_ms,
            claimed,
        }
    }

    /// How long the slot had not advanced at `read_ms`, this host's last
    /// good read of the group volume (from `watching_ms`, when this host
    /// began to watch, if it never saw it). Counted to the last good read,
    /// not to now: a host that cannot read the volume sees no slot stop.
    pub fn still_ms(watch: Option<&SlotWatch>, watching_ms: u64, read_ms: u64) -> u64 {
        read_ms.saturating_sub(watch.map_or(watching_ms, |w| w.advanced_ms.max(watching_ms)))
    }
}

/// A member as the group's two channels show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Heard on the LAN within the timeout.
    Alive,
    /// Silent on the LAN, but its slot advances: the LAN is at fault.
    LanFault,
    /// DOWN: both channels silent, or its slot says so (why).
    Down(String),
}

/// Judges a member from its LAN silence and its slot as of `read_ms`, the
/// last good read of the group volume (`timeout_ms`: hbd's `timeout_ms`).
pub fn judge(
    lan_silent_ms: u64,
    watch: Option<&SlotWatch>,
    watching_ms: u64,
    read_ms: u64,
    timeout_ms: u64,
) -> Judgement {
    if let Some(w) = watch {
        if w.slot.state != SlotState::Up {
            let what = match w.slot.state {
                SlotState::Fenced => "fenced",
                _ => "DOWN",
            };
            let why = w.slot.reason.as_deref().unwrap_or("no reason given");
            return Judgement::Down(format!("its slot says it is {what}: {why}"));
        }
    }
    if lan_silent_ms <= timeout_ms {
        return Judgement::Alive;
    }
    let still = SlotWatch::still_ms(watch, watching_ms, read_ms);
    if still <= timeout_ms {
        Judgement::LanFault
    } else {
        Judgement::Down(format!(
            "silent on the LAN for {lan_silent_ms} ms and its slot still for {still} ms"
        ))
    }
}

/// What a host that holds the reign in its view does with it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reign {
    /// Its claim is clear and its lease holds: it acts as master (and its
    /// next write renews the lease).
    Keep,
    /// Its claim has not landed yet, or is not clear yet: it does not act
    /// yet, and gives up nothing.
    Wait,
    /// Its lease ran out: it gives up the reign (a lapsed lease is never
    /// renewed: a successor may already be counting).
    Resign,
}

/// A master's hold on one reign (each host keeps one per reign it
/// installs; only the master's claiming writes fill it).
///
/// A host that becomes master may already have been given up for dead by a
/// host that read its slot before its first claim landed (it was stalled,
/// or elected while its I/O hung: `hbsim --group --seed 7022`); a lease
/// taken from that claim alone would overlap the next reign. So a new
/// master acts only once a read begun after its first claim returned shows
/// no other host claiming a reign in a slot that still advances
/// ([`rival_claims`]): of two hosts that write their claim and then read,
/// at least one sees the other, and the older reign follows the newer.
/// Once clear, it reigns while its lease holds ([`may_reign`]): the lease
/// runs from the start of the last claiming write that began while it held;
/// once lapsed, it is given up, never renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The reign (cluster instance) claimed.
    pub instance: u64,
    /// The start of the last good write that claimed it.
    pub wrote_ms: Option<u64>,
    /// When the first good claiming write returned.
    pub landed_ms: Option<u64>,
    /// A read begun after `landed_ms` found no rival claim.
    pub clear: bool,
}

impl Claim {
    /// Nothing claimed yet in reign `instance`.
    pub fn new(instance: u64) -> Claim {
        Claim {
            instance,
            wrote_ms: None,
            landed_ms: None,
            clear: false,
        }
    }

    /// A good slot write claiming reign `instance` began at `began_ms` and
    /// returned at `returned_ms`; true when it renews the lease (it claimed
    /// this reign and began while the lease held, or before there was one).
    pub fn wrote(&mut self, instance: u64, began_ms: u64, returned_ms: u64, mt: u64) -> bool {
        if instance != self.instance || self.state(began_ms, mt) == Reign::Resign {
            return false;
        }
        self.wrote_ms = self.wrote_ms.max(Some(began_ms));
        self.landed_ms.get_or_insert(returned_ms);
        true
    }

    /// A good read began at `began_ms` and found a rival claim or not;
    /// true when it clears this claim (the master may act from now).
    pub fn read(&mut self, began_ms: u64, rival: bool) -> bool {
        let after = self.landed_ms.is_some_and(|landed| began_ms >= landed);
        let clears = after && !rival && !self.clear;
        self.clear |= clears;
        clears
    }

    /// What this host's next slot write says, begun at `now_ms`, when it
    /// is the master in its view and has neither resigned nor been fenced
    /// (`master`): (it claims the reign, its lease lapsed so it resigns
    /// now). A lapsed lease is never claimed again.
    pub fn next_write(&self, master: bool, now_ms: u64, mt: u64) -> (bool, bool) {
        let lapsed = master && self.state(now_ms, mt) == Reign::Resign;
        (master && !lapsed, lapsed)
    }

    /// The reign at `now_ms` (`mt`: `master_timeout_ms`).
    pub fn state(&self, now_ms: u64, mt: u64) -> Reign {
        match self.wrote_ms {
            None => Reign::Wait,
            Some(_) if !may_reign(self.wrote_ms, now_ms, mt) => Reign::Resign,
            Some(_) if self.clear => Reign::Keep,
            Some(_) => Reign::Wait,
        }
    }
}

/// The newest of the reigns the slots read claim or follow (`seen`:
/// (master, cluster instance) pairs, in the group's order; the first wins
/// a tie).
pub fn newest_reign<H>(seen: impl IntoIterator<Item = (H, u64)>) -> Option<(H, u64)> {
    seen.into_iter()
        .fold(None, |newest, (host, instance)| match newest {
            Some((_, i)) if instance <= i => newest,
            _ => Some((host, instance)),
        })
}

/// Whether a host whose view is reign `current` of `master` follows reign
/// `instance` of `host`, read in a slot: a newer one always (as its master
/// heartbeat would be); at this run's first read (`at_start`), also one as
/// new as its start-of-day view held by another host (a restarted host does
/// not claim a reign another holds).
pub fn follows_reign<H: PartialEq>(
    (host, instance): (&H, u64),
    (master, current): (&H, u64),
    at_start: bool,
) -> bool {
    instance > current || (at_start && instance == current && host != master)
}

/// Whether another host's slot claims a reign and advanced less than
/// `master_timeout_ms` before `read_ms` (a host still writing may act on
/// that claim; one whose slot stopped that long cannot, its lease lapsed).
pub fn rival_claims<'a>(
    others: impl IntoIterator<Item = &'a SlotWatch>,
    read_ms: u64,
    master_timeout_ms: u64,
) -> bool {
    others.into_iter().any(|w| {
        w.slot.master.is_some() && read_ms.saturating_sub(w.advanced_ms) < master_timeout_ms
    })
}

/// Whether a master that gave up its reign at `resigned_ms` starts the
/// next one now (electing the next host of the group): after the full
/// timeout, as a successor would, so that a group whose other hosts cannot
/// reign (fenced, or deaf to it) is not left without a master.
pub fn resigned_long_enough(resigned_ms: u64, now_ms: u64, master_timeout_ms: u64) -> bool {
    now_ms.saturating_sub(resigned_ms) >= master_timeout_ms
}

/// Whether a master whose last good slot write began at `last_write_ms`
/// may still act as master at `now_ms`.
pub fn may_reign(last_write_ms: Option<u64>, now_ms: u64, master_timeout_ms: u64) -> bool {
    last_write_ms.is_some_and(|t| now_ms.saturating_sub(t) < master_timeout_ms / 2)
}

/// Whether the master of cluster instance `instance` may be succeeded:
/// silent on the LAN for `master_timeout_ms` and its slot still as long,
/// or its slot saying (in a write seen advancing) that it no longer reigns
/// in that instance — only once that run of it was seen claiming the
/// reign, or it is fenced: a host elected while it was stalled does not
/// claim a reign it has not heard of, and that is no resignation;
/// `read_ms`: this host's last good read of the volume.
pub fn may_succeed(
    lan_silent_ms: u64,
    watch: Option<&SlotWatch>,
    watching_ms: u64,
    read_ms: u64,
    instance: u64,
    master_timeout_ms: u64,
) -> bool {
    if lan_silent_ms < master_timeout_ms {
        return false;
    }
    let resigned = watch.is_some_and(|w| {
        (w.claimed >= Some(instance) || w.slot.state == SlotState::Fenced)
            && w.slot.master != Some(instance)
            && w.advanced_ms >= watching_ms
    });
    resigned || SlotWatch::still_ms(watch, watching_ms, read_ms) >= master_timeout_ms
}

/// Whether a host that last heard its group on the LAN at `lan_ms` and
/// last wrote its slot at `slot_ms` must fence itself now.
pub fn must_self_fence(lan_ms: u64, slot_ms: u64, now_ms: u64, fence_timeout_ms: u64) -> bool {
    let half = fence_timeout_ms / 2;
    now_ms.saturating_sub(lan_ms) >= half && now_ms.saturating_sub(slot_ms) >= half
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(serial: u64, state: SlotState, master: Option<u64>) -> Slot {
        Slot {
            host: "p1".into(),
            run: 1,
            serial,
            state,
            master,
            ack: None,
            follows: None,
            reason: None,
        }
    }

    #[test]
    fn lan_silence_with_a_live_slot_is_a_lan_fault_and_both_silent_is_down() {
        let w = SlotWatch::observe(None, slot(1, SlotState::Up, None), 0);
        assert_eq!(judge(500, Some(&w), 0, 500, 1000), Judgement::Alive);
        let w = SlotWatch::observe(Some(&w), slot(9, SlotState::Up, None), 4000);
        assert_eq!(judge(5000, Some(&w), 0, 4500, 1000), Judgement::LanFault);
        let w = SlotWatch::observe(Some(&w), slot(9, SlotState::Up, None), 6000);
        assert_eq!(w.advanced_ms, 4000, "the same serial is no advance");
        assert!(matches!(
            judge(7000, Some(&w), 0, 6000, 1000),
            Judgement::Down(_)
        ));
        // Never seen: still since this host began to watch.
        assert_eq!(judge(7000, None, 5500, 6000, 1000), Judgement::LanFault);
        assert!(matches!(
            judge(7000, None, 0, 6000, 1000),
            Judgement::Down(_)
        ));
    }

    #[test]
    fn a_slot_that_says_down_is_down_at_once() {
        let w = SlotWatch::observe(None, slot(1, SlotState::Fenced, None), 0);
        assert!(
            matches!(judge(0, Some(&w), 0, 0, 1000), Judgement::Down(why) if why.contains("fenced"))
        );
    }

    #[test]
    fn the_old_master_gives_up_before_a_successor_may_start() {
        let t = 1000;
        // The master's last good write began at 10_000; the successor saw it at 10_050.
        let last = 10_000;
        assert!(may_reign(Some(last), last + t / 2 - 1, t));
        assert!(!may_reign(Some(last), last + t / 2, t));
        assert!(!may_reign(None, 0, t));
        let w = SlotWatch::observe(None, slot(5, SlotState::Up, Some(1)), 10_050);
        for now in 10_050..10_050 + t {
            assert!(!may_succeed(now, Some(&w), 0, now, 1, t), "at {now}");
        }
        assert!(may_succeed(99_999, Some(&w), 0, 10_050 + t, 1, t));
        // Every instant a successor may start, the old master no longer reigns.
        for now in 10_000..12_000 {
            assert!(!(may_reign(Some(last), now, t) && may_succeed(now, Some(&w), 0, now, 1, t)));
        }
    }

    #[test]
    fn a_master_that_says_it_resigned_is_succeeded_after_the_lan_silence_alone() {
        let before = SlotWatch::observe(None, slot(5, SlotState::Up, Some(1)), 100);
        let w = SlotWatch::observe(Some(&before), slot(6, SlotState::Up, None), 200);
        assert!(may_succeed(1000, Some(&w), 0, 300, 1, 1000));
        assert!(
            !may_succeed(999, Some(&w), 0, 300, 1, 1000),
            "the LAN silence first"
        );
    }

    #[test]
    fn a_host_fences_itself_only_when_both_channels_are_lost() {
        assert!(!must_self_fence(0, 900, 1000, 2000));
        assert!(!must_self_fence(900, 0, 1000, 2000));
        assert!(must_self_fence(0, 0, 1000, 2000));
    }

    #[test]
    fn a_host_that_never_claimed_the_reign_has_not_resigned_it() {
        // Elected while stalled (hbsim --group --seed 1378): its slot
        // advances without a claim; that is no resignation.
        let before = SlotWatch::observe(None, slot(5, SlotState::Up, None), 100);
        let w = SlotWatch::observe(Some(&before), slot(6, SlotState::Up, None), 200);
        assert_eq!(w.claimed, None);
        assert!(!may_succeed(5000, Some(&w), 0, 300, 2, 1000));
        let fenced = SlotWatch::observe(Some(&w), slot(7, SlotState::Fenced, None), 300);
        assert!(
            may_succeed(5000, Some(&fenced), 0, 400, 2, 1000),
            "a fenced host reigns no more"
        );
    }

    #[test]
    fn a_claim_acts_only_once_clear_and_a_lapsed_lease_is_given_up() {
        let mut c = Claim::new(2);
        assert_eq!(c.state(5000, 1000), Reign::Wait);
        assert!(!c.wrote(1, 4600, 4602, 1000), "another reign's write");
        assert!(c.wrote(2, 4600, 4602, 1000));
        assert_eq!(c.state(4700, 1000), Reign::Wait, "not clear yet");
        assert!(!c.read(4600, false), "a read begun before the claim landed");
        assert!(!c.read(4700, true), "a rival claims");
        assert!(c.read(4800, false));
        assert_eq!(c.state(4900, 1000), Reign::Keep);
        assert_eq!(c.state(5100, 1000), Reign::Resign);
        assert!(
            !c.wrote(2, 5100, 5102, 1000),
            "a lapsed lease is not renewed"
        );
        assert!(!resigned_long_enough(4500, 5000, 1000));
        assert!(resigned_long_enough(4000, 5000, 1000));
    }

    #[test]
    fn the_newest_reign_is_followed_and_at_start_also_one_as_new() {
        let seen = [("h1", 3), ("h2", 5), ("h0", 5), ("h1", 4)];
        assert_eq!(newest_reign(seen), Some(("h2", 5)));
        assert_eq!(newest_reign(Vec::<(&str, u64)>::new()), None);
        assert!(follows_reign((&"h2", 5), (&"h0", 4), false));
        assert!(!follows_reign((&"h2", 4), (&"h0", 4), false));
        assert!(follows_reign((&"h2", 4), (&"h0", 4), true));
        assert!(!follows_reign((&"h0", 4), (&"h0", 4), true));
        let mut c = Claim::new(1);
        assert_eq!(c.next_write(true, 0, 1000), (true, false));
        assert_eq!(c.next_write(false, 0, 1000), (false, false));
        assert!(c.wrote(1, 0, 2, 1000));
        assert_eq!(c.next_write(true, 500, 1000), (false, true), "lapsed");
    }

    #[test]
    fn a_rival_claim_counts_while_its_slot_advances() {
        let w = SlotWatch::observe(None, slot(5, SlotState::Up, Some(1)), 100);
        assert!(rival_claims([&w], 1099, 1000));
        assert!(!rival_claims([&w], 1100, 1000), "its lease lapsed");
        let quiet = SlotWatch::observe(None, slot(5, SlotState::Up, None), 100);
        assert!(!rival_claims([&quiet], 200, 1000));
    }
}
