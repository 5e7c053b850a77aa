//! The rules of node states and takeover (seed 004, Figs 4 and 5), pure:
//! which application a member must take over, what the MIB says after a
//! takeover, and which node may be removed.

use super::mib::{Mib, NodeState};

/// The standby that takes over `app` now: the first node of its standby
/// list that can (STANDBY, its storage up), when its active node is not
/// ACTIVE (or it has none).
pub fn taker<'a>(mib: &'a Mib, app: &str) -> Option<&'a str> {
    let a = mib.application(app)?;
    let failed = a
        .active
        .as_deref()
        .is_none_or(|n| mib.state(n) != NodeState::Active);
    if !failed {
        return None;
    }
    a.standby
        .iter()
        .find(|n| mib.can_take_over(n))
        .map(String::as_str)
}

/// The applications `me` must take over now.
pub fn takeovers(mib: &Mib, me: &str) -> Vec<String> {
    mib.applications
        .iter()
        .filter(|a| taker(mib, &a.name) == Some(me))
        .map(|a| a.name.clone())
        .collect()
}

/// The applications `me` runs, by the MIB.
pub fn runs(mib: &Mib, me: &str) -> Vec<String> {
    mib.applications
        .iter()
        .filter(|a| a.active.as_deref() == Some(me))
        .map(|a| a.name.clone())
        .collect()
}

/// After `me` took over `app`: it runs it (ACTIVE) and leaves its standby
/// list; the failed node joins the end of the list (it stands by once it
/// recovers). Not bumped.
pub fn assign(mib: &mut Mib, app: &str, me: &str) {
    let Some(a) = mib.applications.iter_mut().find(|a| a.name == app) else {
        return;
    };
    let old = a.active.replace(me.to_string());
    a.standby.retain(|n| n != me);
    if let Some(old) = old.filter(|o| o != me && !a.standby.contains(o)) {
        a.standby.push(old);
    }
    mib.set_state(me, NodeState::Active, None);
}

/// After `node` recovered: STANDBY, never ACTIVE by itself; an application
/// still assigned to it has no active node now, and `node` stands by for
/// it. Not bumped.
pub fn stand_by(mib: &mut Mib, node: &str) -> bool {
    let mut changed = false;
    for a in &mut mib.applications {
        if a.active.as_deref() == Some(node) {
            a.active = None;
            if !a.standby.iter().any(|n| n == node) {
                a.standby.push(node.to_string());
            }
            changed = true;
        }
    }
    mib.set_state(node, NodeState::Standby, None) || changed
}

/// Whether `node` may leave the cluster: not while it runs an application,
/// nor when it is the last STANDBY of an application that runs, unless
/// `force`. The refusal says why and the way out.
pub fn may_remove(mib: &Mib, node: &str, force: bool) -> Result<(), String> {
    if mib.node(node).is_none() {
        return Err(format!(
            "node '{node}' is not in the cluster (see hbctl cluster show)"
        ));
    }
    if force {
        return Ok(());
    }
    if let Some(a) = mib
        .applications
        .iter()
        .find(|a| a.active.as_deref() == Some(node))
    {
        return Err(format!(
            "node '{node}' runs application '{}': fail it over first, or give --force",
            a.name
        ));
    }
    for a in mib.applications.iter().filter(|a| a.active.is_some()) {
        let standing: Vec<&String> = a
            .standby
            .iter()
            .filter(|n| mib.state(n) == NodeState::Standby)
            .collect();
        if standing.len() == 1 && standing[0] == node {
            return Err(format!(
                "node '{node}' is the last standby of application '{}', which runs: add another node first, or give --force",
                a.name
            ));
        }
    }
    Ok(())
}

/// Takes `node` out of the MIB and of every application's standby list. Not bumped.
pub fn remove(mib: &mut Mib, node: &str) {
    mib.nodes.retain(|n| n.id != node);
    for a in &mut mib.applications {
        a.standby.retain(|n| n != node);
        if a.active.as_deref() == Some(node) {
            a.active = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::mib::tests::example;

    #[test]
    fn the_first_standing_standby_takes_over_a_down_active_node() {
        let mut mib = example();
        assert_eq!(taker(&mib, "app1"), None, "p1 is alive");
        mib.set_state("p1", NodeState::Down, Some("db".into()));
        assert_eq!(takeovers(&mib, "s1"), vec!["app1".to_string()]);
        assert!(takeovers(&mib, "s2").is_empty(), "s2 is second in line");
        mib.set_state("s1", NodeState::Down, None);
        assert_eq!(taker(&mib, "app1"), Some("s2"), "s1 down: the next one");
        mib.set_state("s1", NodeState::Standby, None);
        assign(&mut mib, "app1", "s1");
        let a = mib.application("app1").expect("app1");
        assert_eq!(a.active.as_deref(), Some("s1"));
        assert_eq!(a.standby, vec!["s2".to_string(), "p1".to_string()]);
        assert_eq!(mib.state("s1"), NodeState::Active);
        assert_eq!(taker(&mib, "app1"), None, "taken over once");
        mib.bump(9);
        assert_eq!(mib.node("s1").expect("s1").floating_ips.len(), 1);
        assert!(mib.node("p1").expect("p1").floating_ips.is_empty());
        assert_eq!(runs(&mib, "s1"), vec!["app1".to_string()]);
    }

    #[test]
    fn the_last_standby_and_the_active_node_stay_unless_forced() {
        let mut mib = example();
        mib.set_state("s2", NodeState::Down, None);
        let e = may_remove(&mib, "s1", false).expect_err("last standby");
        assert!(e.contains("last standby of application 'app1'"), "{e}");
        assert!(may_remove(&mib, "s1", true).is_ok());
        let e = may_remove(&mib, "p1", false).expect_err("active");
        assert!(e.contains("runs application 'app1'"), "{e}");
        assert!(may_remove(&mib, "p2", false).is_ok());
        assert!(may_remove(&mib, "zz", true).is_err());
        remove(&mut mib, "s1");
        assert!(mib.node("s1").is_none());
        assert_eq!(
            mib.application("app1").expect("app1").standby,
            vec!["s2".to_string()]
        );
    }
}
