//! The QoS rule of the fault analysis (seed 002, Fig 6 636) at failover,
//! with real processes (see `hbcluster`): a standby fails over only if it
//! can carry the duties.

mod common;
mod hbcluster;

use std::time::Duration;

use common::wait_for;
use hbcluster::{Cluster, TIMEOUT_MS};

#[test]
fn a_standby_that_cannot_carry_the_duties_holds_the_failover_until_it_can() {
    let Some(mut c) = Cluster::start_with(
        "a_standby_that_cannot_carry_the_duties_holds_the_failover_until_it_can",
        |sites, _, standby| {
            // A part of the standby site the application needs; it fails
            // until out/standby.ok exists.
            *standby += &format!(
                "[[checks]]\npart = \"app-host\"\nlevel = \"SERIOUS\"\ncommand = \"test -e {}\"\n",
                sites.root.path().join("out/standby.ok").display()
            );
        },
    ) else {
        return;
    };
    let ok = c.out.join("standby.ok");
    c.prod.kill();
    c.sites.prod.kill();
    c.standby.wait_table("the failover held", |t| {
        t["failover_held"]
            .as_str()
            .is_some_and(|h| h.contains("SERIOUS check fails (app-host)"))
    });
    std::thread::sleep(Duration::from_millis(2 * TIMEOUT_MS));
    assert_eq!(
        c.failovers(),
        0,
        "failed over while unable to carry the duties"
    );
    let text = c.standby.ok(&["hb", "status"]);
    assert!(text.contains("FAILOVER HELD"), "{text}");
    let events = c.standby.ok(&["hb", "events"]);
    assert!(events.contains("cannot carry the duties"), "{events}");
    // The part works again: the failover happens, once.
    std::fs::write(&ok, "").expect("standby.ok");
    wait_for("the failover hook", || c.failovers() == 1);
    assert_eq!(c.standby.table()["failover_held"], serde_json::Value::Null);
    c.standby.wait_table("a node-dead verdict", |t| {
        t["analysis"]["verdict"]["verdict"] == "node-dead"
    });
}
