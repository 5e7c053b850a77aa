//! Procedures that differ between the two ends (`hbctl hb procedure
//! --force`): what each end can tell, shown until it is reconciled.

use super::*;
use crate::hb::logic::message::Choice;

fn network_off(c: &mut Checker) {
    let said = c
        .table
        .apply_one_network(&Choice(Some(("network".into(), false))));
    assert_eq!(said, "network network off");
}

#[test]
fn a_network_off_here_on_which_the_peer_still_sends_is_a_mismatch_until_it_stops() {
    let s = Instant::now();
    let mut c = standby(s);
    network_off(&mut c);
    assert!(!c.table.network_on(), "its only network is off");
    let now = at(s, 200);
    let seen = c.network_beat("network", Ok(&beat(1, 200)), now);
    assert!(matches!(seen, Ok(Observation::Ignored)), "{seen:?}");
    c.evaluate(now.mono);
    assert_eq!(
        c.table.procedure_mismatch.len(),
        1,
        "{:?}",
        c.table.procedure_mismatch
    );
    assert!(c.table.procedure_mismatch[0].contains("network network is off here"));
    // A message from no approved sender says nothing of the peer.
    let mut other = standby(s);
    network_off(&mut other);
    let mut stranger = beat(1, 200);
    stranger.sender = "someone".into();
    let _ = other.network_beat("network", Ok(&stranger), now);
    other.evaluate(now.mono);
    assert!(other.table.procedure_mismatch.is_empty());
    // Silence on it for longer than the timeout: the ends agree again.
    let later = at(s, 200 + 1200);
    c.evaluate(later.mono);
    assert!(
        c.table.procedure_mismatch.is_empty(),
        "{:?}",
        c.table.procedure_mismatch
    );
}

#[test]
fn a_change_of_this_ends_own_not_yet_at_the_peer_is_a_mismatch_until_acknowledged() {
    let s = Instant::now();
    let mut c = standby(s);
    c.table.outbox.push(Control {
        id: 1,
        body: ControlBody::OneNetwork(Choice(Some(("network".into(), false)))),
    });
    c.evaluate(s);
    assert_eq!(c.table.procedure_mismatch.len(), 1);
    assert!(
        c.table.procedure_mismatch[0]
            .contains("change 'network network off' has not reached the peer"),
        "{:?}",
        c.table.procedure_mismatch
    );
    c.table.outbox.clear();
    c.evaluate(s);
    assert!(c.table.procedure_mismatch.is_empty());
}
