//! Hot add and remove (seed 004, Fig 6), while the cluster runs: a node is
//! added as DOWN (it validates itself, see `validate`), or taken out
//! (refused while it runs an application or is the last standby of one
//! that runs, unless forced). Either is one MIB change sent to every member.

use std::net::SocketAddr;

use super::api::{Add, Remove};
use super::member::Member;
use super::mib::{Mib, NodeState, ServerNode};
use super::notice::Kind;
use super::states;
use crate::hb::daemon::lock::lock;

impl Member {
    /// `hbctl cluster add`.
    pub fn add(&self, r: Add) -> Result<String, String> {
        {
            let mib = lock(self.mib_lock());
            if mib.node(&r.id).is_some() {
                return Err(format!("node '{}' is already in the cluster", r.id));
            }
            if let Some(app) = r.standby_for.iter().find(|a| mib.application(a).is_none()) {
                return Err(format!(
                    "no application '{app}' in the cluster (see hbctl cluster show)"
                ));
            }
        }
        let reason = "added: validating its resources".to_string();
        let edit = |mib: &mut Mib| {
            let number = mib.nodes.iter().map(|n| n.number).max().unwrap_or(0) + 1;
            mib.nodes.push(ServerNode {
                number,
                id: r.id.clone(),
                primary_ip: r.ip,
                addresses: vec![],
                site: r.site.clone(),
                floating_ips: vec![],
                status: NodeState::Down,
                reason: Some(reason.clone()),
            });
            for a in &mut mib.applications {
                if r.standby_for.contains(&a.name) {
                    a.standby.push(r.id.clone());
                }
            }
            true
        };
        let notice = self.notice(&r.id, Kind::State(NodeState::Down), Some(reason.clone()));
        self.change(notice, Some(&edit), vec![]);
        tracing::info!(node = %r.id, "added to the cluster as DOWN; it validates itself");
        Ok(format!(
            "node {} added as DOWN; it becomes STANDBY once it has validated its resources (see hbctl cluster show)",
            r.id
        ))
    }

    /// `hbctl cluster remove`.
    pub fn remove(&self, r: Remove) -> Result<String, String> {
        let also: Vec<SocketAddr> = {
            let mib = lock(self.mib_lock());
            states::may_remove(&mib, &r.id, r.force)?;
            mib.node(&r.id)
                .map(|n| n.all_addresses())
                .unwrap_or_default()
                .into_iter()
                .map(|ip| SocketAddr::new(ip, self.port()))
                .collect()
        };
        let edit = |mib: &mut Mib| {
            states::remove(mib, &r.id);
            true
        };
        let notice = self.notice(
            &r.id,
            Kind::State(NodeState::Down),
            Some("removed from the cluster".into()),
        );
        self.change(notice, Some(&edit), also);
        tracing::info!(node = %r.id, force = r.force, "removed from the cluster");
        Ok(format!("node {} removed from the cluster", r.id))
    }
}
