//! The table's tests: install, seeding, the channels each way.

use super::*;
use crate::hb::logic::message::{Choice, Procedure};

#[test]
fn install_reuses_vacant_entries() {
    let mut t = Table::new("h", Group::Production, false);
    t.install("a", "/a".into(), Direction::Send, None);
    t.install("b", "/b".into(), Direction::Send, None);
    assert!(t.uninstall("a"));
    assert_eq!(t.devices[0].status, DeviceStatus::Null);
    assert!(!t.uninstall("a"));
    t.install("c", "/c".into(), Direction::Receive, None);
    assert_eq!(t.devices.len(), 2);
    assert_eq!(t.devices[0].name, "c");
}

fn seed(name: &str, direction: Direction) -> MirrorSeed {
    MirrorSeed {
        name: name.into(),
        address: format!("/mnt/hbfs/{name}").into(),
        direction,
        pair: (direction == Direction::Send).then(|| name.to_string()),
    }
}

#[test]
fn config_entries_seed_once_and_the_table_decides_after() {
    let mut t = Table::new("h", Group::Production, true);
    let config = vec![
        seed("hb0", Direction::Send),
        seed("hb1", Direction::Receive),
    ];
    let first = t.seed(&config);
    assert_eq!(first.installed, vec!["hb0".to_string(), "hb1".to_string()]);
    assert_eq!(
        t.device("hb0").and_then(|d| d.pair.clone()),
        Some("hb0".into())
    );
    // A person de-installs hb0; the next start leaves it so.
    assert!(t.uninstall("hb0"));
    assert_eq!(t.seed(&config), Seeding::default());
    assert!(
        t.device("hb0").is_none(),
        "an uninstalled mirror stays uninstalled"
    );
    // A new entry seeds; an entry that left the config de-installs its mirror.
    let config = vec![seed("hb0", Direction::Send), seed("hb2", Direction::Send)];
    let second = t.seed(&config);
    assert_eq!(second.installed, vec!["hb2".to_string()]);
    assert_eq!(second.removed, vec![("hb1".to_string(), None)]);
    assert!(t.device("hb0").is_none());
    // A table from before seeds were recorded changes nothing.
    t.seeded = None;
    assert_eq!(t.seed(&[seed("hb9", Direction::Send)]), Seeding::default());
    assert!(t.device("hb9").is_none());
}

#[test]
fn channels_each_way_follow_the_procedure() {
    let mut t = Table::new("h", Group::Production, true);
    t.install("hb0", "/hb0".into(), Direction::Send, None);
    t.install("hb1", "/hb1".into(), Direction::Receive, None);
    assert!(t.sends_to_peer() && t.hears_peer());
    let off = |network, mirror: Option<(&str, bool)>| Procedure {
        network,
        mirrors: None,
        mirror: Choice(mirror.map(|(n, on)| (n.to_string(), on))),
    };
    assert_eq!(t.apply_procedure(&off(Some(false), None)), "network off");
    assert!(t.sends_to_peer() && t.hears_peer(), "the mirrors remain");
    let mut u = t.clone();
    u.apply_procedure(&off(None, Some(("hb0", false))));
    assert!(!u.sends_to_peer() && u.hears_peer());
    let mut u = t.clone();
    u.apply_procedure(&off(None, Some(("hb1", false))));
    assert!(u.sends_to_peer() && !u.hears_peer());
    assert_eq!(t.channels(Direction::Send), vec!["mirror hb0".to_string()]);
    t.network_configured = false;
    t.network_wanted = true;
    assert!(!t.network_on(), "no [network], no network channel");
}
