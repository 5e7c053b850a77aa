//! `hbctl hb check`: one exit status for a corosync-qdevice heuristics
//! `exec_` line or a Pacemaker agent: is the peer alive on some channel, or
//! is this the site that should survive?
//!
//! | verdict | exit | when |
//! |---|---|---|
//! | `peer-alive` | 0 | a channel says the peer group is alive |
//! | `failed-over` | 0 | this standby took over: it is the site that survives |
//! | `peer-dead` | 0 | every channel that has told says the peer group is dead: this site survives |
//! | `unknown` | 0 at production, 1 at the standby | no channel has told yet: production is the default survivor |
//! | `stepped-down` | 1 | this production host stepped down: the standby took over |
//!
//! hbd unreachable: exit 3 (as for every hbctl command).

use std::path::Path;

use hbcore::jsonl::{self, ClientError};
use hbcore::vocab::Group;
use hbmirror::hb::api::{HbReply, HbRequest};
use hbmirror::hb::logic::table::{GroupStatus, Table};
use serde::Serialize;

/// The answer.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Whether this site may stay (exit status 0).
    pub pass: bool,
    /// `peer-alive`, `failed-over`, `peer-dead`, `unknown` or `stepped-down`.
    pub verdict: &'static str,
    /// Why, in a sentence.
    pub reason: String,
}

/// The verdict of `table`.
pub fn verdict(table: &Table) -> Check {
    let via = [
        ("the network", table.remote_group_via_network),
        ("the heartbeat mirrors", table.remote_group_via_mirrors),
    ];
    let alive: Vec<&str> = via
        .iter()
        .filter(|(_, s)| *s == GroupStatus::Alive)
        .map(|(n, _)| *n)
        .collect();
    let failed = via.iter().any(|(_, s)| *s == GroupStatus::Failed);
    let production = table.group == Group::Production;
    if table.stepped_down {
        return Check {
            pass: false,
            verdict: "stepped-down",
            reason: match &table.handover {
                Some(h) => format!(
                    "this production host stepped down to hand over to the standby ({}): it cannot serve ({})",
                    h.state(),
                    h.reason
                ),
                None => "this production host stepped down: the standby took over".into(),
            },
        };
    }
    if table.failed_over {
        return Check {
            pass: true,
            verdict: "failed-over",
            reason: "this standby took over: it is the site that survives".into(),
        };
    }
    if !alive.is_empty() {
        return Check {
            pass: true,
            verdict: "peer-alive",
            reason: format!("the peer group is alive via {}", alive.join(" and ")),
        };
    }
    if failed {
        return Check {
            pass: true,
            verdict: "peer-dead",
            reason: "every channel that has told says the peer group is dead: this site survives"
                .into(),
        };
    }
    Check {
        pass: production,
        verdict: "unknown",
        reason: if production {
            "no channel has told yet; production is the default survivor".into()
        } else {
            "no channel has told yet; the standby does not claim survival without evidence".into()
        },
    }
}

/// Asks hbd, prints the verdict (JSON under `--json`), and exits 0 or 1.
pub fn run(socket: &Path) -> Result<(), ClientError> {
    let table = match jsonl::call::<_, HbReply>(socket, &HbRequest::Status)? {
        HbReply::Table(t) => t,
        _ => return Err(ClientError::Refused("hbd answered no status table".into())),
    };
    let check = verdict(&table);
    if crate::output::json() {
        crate::print::json(&check);
    } else {
        println!("{}: {}", check.verdict, check.reason);
    }
    if !check.pass {
        std::process::exit(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(group: Group, network: GroupStatus, mirrors: GroupStatus) -> Table {
        let mut t = Table::new("h", group, true);
        t.remote_group_via_network = network;
        t.remote_group_via_mirrors = mirrors;
        t
    }

    #[test]
    fn each_verdict_and_its_exit() {
        use GroupStatus::*;
        let v = verdict(&table(Group::Standby, Failed, Alive));
        assert_eq!((v.pass, v.verdict), (true, "peer-alive"));
        assert!(v.reason.contains("heartbeat mirrors"), "{}", v.reason);
        let v = verdict(&table(Group::Standby, Failed, Failed));
        assert_eq!((v.pass, v.verdict), (true, "peer-dead"));
        let v = verdict(&table(Group::Standby, Unknown, Unknown));
        assert_eq!((v.pass, v.verdict), (false, "unknown"));
        let v = verdict(&table(Group::Production, Unknown, Unknown));
        assert_eq!((v.pass, v.verdict), (true, "unknown"));
        let mut t = table(Group::Standby, Failed, Failed);
        t.failed_over = true;
        assert_eq!(verdict(&t).verdict, "failed-over");
        let mut t = table(Group::Production, Alive, Alive);
        t.stepped_down = true;
        assert_eq!(
            (verdict(&t).pass, verdict(&t).verdict),
            (false, "stepped-down")
        );
    }
}
