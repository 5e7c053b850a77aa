//! Quality of service (seed 002, Fig 6 steps 622–644), pure: what each side
//! can do for the cluster now, exchanged in the fault analysis, and the rule
//! that lets a side take over only if it can carry the duties.
//!
//! The metric ([`Qos`]) counts working networks (configured, turned on, and
//! passing this host's local check: NIC up and, where a probe is
//! configured, echoing), passing local checks (Fig 10) and the parts whose
//! SYSTEM DOWN or SERIOUS check fails, healthy heartbeat mirrors, and the
//! load (1-minute load average per CPU).
//!
//! The rule ([`can_carry`]): a side can carry the duties when no SYSTEM DOWN
//! or SERIOUS check fails there, at least one of its networks works (when it
//! has any), and its load per CPU is within `max_load` (when set). Sides are
//! ranked ([`Qos::rank`]) by, in order: no serious failure, working
//! networks, healthy mirrors, passing checks, lower load.

use std::cmp::Reverse;

use serde::{Deserialize, Serialize};

/// One side's quality of service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Qos {
    /// Networks configured and turned on.
    pub networks: u32,
    /// Of those, the ones passing the local check.
    pub networks_working: u32,
    /// Local checks (Fig 10) configured.
    pub checks: u32,
    /// Of those, passing.
    pub checks_passing: u32,
    /// Parts whose SYSTEM DOWN or SERIOUS check fails.
    pub serious_failing: Vec<String>,
    /// Heartbeat mirrors installed and turned on.
    pub mirrors: u32,
    /// Of those, without a problem (written, or read and advancing).
    pub mirrors_healthy: u32,
    /// The 1-minute load average per CPU, in thousandths.
    pub load_milli: u32,
}

/// The limits of [`can_carry`] (`[analysis]` in hbd's config).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QosRule {
    /// Above this load per CPU (thousandths) a side cannot carry the duties.
    pub max_load_milli: Option<u32>,
}

/// What the QoS comparison decides after a fault verdict (Fig 6, 634–644).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Takeover {
    /// This side's QoS exceeds the peer's and it can carry the duties: the
    /// peer is failed and this side takes over (638).
    FailRemote,
    /// The peer's QoS is at least this side's and it can carry this side's
    /// duties: this side is failed over to the peer (644).
    FailLocal,
    /// Neither (640): why.
    Nothing(String),
}

impl Qos {
    /// The order of the comparison: better is greater.
    pub fn rank(&self) -> (bool, u32, u32, u32, Reverse<u32>) {
        (
            self.serious_failing.is_empty(),
            self.networks_working,
            self.mirrors_healthy,
            self.checks_passing,
            Reverse(self.load_milli),
        )
    }

    /// In words, for logs and `hbctl hb analyze`.
    pub fn summary(&self) -> String {
        let serious = if self.serious_failing.is_empty() {
            String::new()
        } else {
            format!(", failing: {}", self.serious_failing.join(", "))
        };
        format!(
            "networks {}/{}, checks {}/{}{serious}, mirrors {}/{}, load {:.2}/CPU",
            self.networks_working,
            self.networks,
            self.checks_passing,
            self.checks,
            self.mirrors_healthy,
            self.mirrors,
            f64::from(self.load_milli) / 1000.0
        )
    }
}

/// Whether a side with `q` can carry the duties of both; `Err(why not)`.
pub fn can_carry(q: &Qos, rule: &QosRule) -> Result<(), String> {
    let mut not = vec![];
    if !q.serious_failing.is_empty() {
        not.push(format!(
            "its SYSTEM DOWN or SERIOUS check fails ({})",
            q.serious_failing.join(", ")
        ));
    }
    if q.networks > 0 && q.networks_working == 0 {
        not.push(format!("none of its {} networks works", q.networks));
    }
    if let Some(max) = rule.max_load_milli {
        if q.load_milli > max {
            not.push(format!(
                "its load ({:.2} per CPU) is above max_load ({:.2})",
                f64::from(q.load_milli) / 1000.0,
                f64::from(max) / 1000.0
            ));
        }
    }
    if not.is_empty() {
        Ok(())
    } else {
        Err(not.join("; "))
    }
}

/// Fig 6, steps 632–644: compare this side's QoS with the peer's. If this
/// side's exceeds the peer's, fail the peer when this side can carry the
/// duties; otherwise fail this side when the peer can carry them.
pub fn takeover(local: &Qos, remote: &Qos, rule: &QosRule) -> Takeover {
    if local.rank() > remote.rank() {
        match can_carry(local, rule) {
            Ok(()) => Takeover::FailRemote,
            Err(why) => Takeover::Nothing(format!(
                "this host's QoS exceeds the peer's, but it cannot carry the duties: {why}"
            )),
        }
    } else {
        match can_carry(remote, rule) {
            Ok(()) => Takeover::FailLocal,
            Err(why) => Takeover::Nothing(format!(
                "the peer's QoS is at least this host's, but it cannot carry the duties: {why}"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Qos {
        Qos {
            networks: 2,
            networks_working: 2,
            checks: 1,
            checks_passing: 1,
            serious_failing: vec![],
            mirrors: 2,
            mirrors_healthy: 2,
            load_milli: 300,
        }
    }

    #[test]
    fn a_side_carries_the_duties_unless_serious_checks_fail_no_network_works_or_load_is_high() {
        let rule = QosRule {
            max_load_milli: Some(2000),
        };
        assert_eq!(can_carry(&healthy(), &rule), Ok(()));
        let serious = Qos {
            serious_failing: vec!["db".into()],
            checks_passing: 0,
            ..healthy()
        };
        assert!(can_carry(&serious, &rule)
            .expect_err("serious")
            .contains("SERIOUS check fails (db)"));
        let cut = Qos {
            networks_working: 0,
            ..healthy()
        };
        assert!(can_carry(&cut, &rule)
            .expect_err("cut")
            .contains("none of its 2 networks works"));
        let busy = Qos {
            load_milli: 2500,
            ..healthy()
        };
        assert!(can_carry(&busy, &rule)
            .expect_err("busy")
            .contains("above max_load (2.00)"));
        assert_eq!(
            can_carry(&busy, &QosRule::default()),
            Ok(()),
            "no max_load, no limit"
        );
        let mirrors_only = Qos {
            networks: 0,
            networks_working: 0,
            ..healthy()
        };
        assert_eq!(can_carry(&mirrors_only, &rule), Ok(()));
    }

    #[test]
    fn the_better_side_takes_over_only_if_it_can_carry_the_duties() {
        let rule = QosRule::default();
        let one_nic_down = Qos {
            networks_working: 1,
            ..healthy()
        };
        assert_eq!(
            takeover(&healthy(), &one_nic_down, &rule),
            Takeover::FailRemote
        );
        assert_eq!(
            takeover(&one_nic_down, &healthy(), &rule),
            Takeover::FailLocal
        );
        // Better, but a serious check fails at this side... then it is not better.
        let serious = Qos {
            serious_failing: vec!["app".into()],
            ..healthy()
        };
        assert_eq!(
            takeover(&serious, &one_nic_down, &rule),
            Takeover::FailLocal
        );
        // Equal: the peer keeps its duties if it can carry them.
        assert_eq!(takeover(&healthy(), &healthy(), &rule), Takeover::FailLocal);
        // Neither can: nothing.
        let limit = QosRule {
            max_load_milli: Some(100),
        };
        let Takeover::Nothing(why) = takeover(&healthy(), &one_nic_down, &limit) else {
            panic!("a side above max_load takes nothing over");
        };
        assert!(why.contains("cannot carry the duties"), "{why}");
        assert!(healthy().summary().contains("networks 2/2"));
    }
}
