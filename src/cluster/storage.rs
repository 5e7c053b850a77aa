//! Storage nodes as members (seed 004): each member asks its site's mirrord
//! every few intervals whether it answers. When it does not, the site's
//! storage node is DOWN in the MIB and this member fails its self-check
//! (it cannot reach its volumes), so its applications go to the other
//! site as a server failure's would; when it answers again, ACTIVE.

use std::time::Duration;

use hbcore::control::{PairStatus, Request};
use hbcore::report;

use super::member::Member;
use super::mib::NodeState;
use super::notice::Kind;
use crate::hb::daemon::lock::lock;
use crate::hb::daemon::storage_client;

/// Ticks between two probes of mirrord.
pub const PROBE_TICKS: u64 = 5;

impl Member {
    /// Probes this site's mirrord; a change of its answer changes the
    /// storage node's state in the MIB. The problem, if any.
    pub async fn probe_storage(&self) -> Option<String> {
        let mirrord = self.shared.config.mirrord();
        let limit = (self.shared.config.interval() * 5).max(Duration::from_secs(1));
        let request = Request::PairStatus(PairStatus { name: None });
        let problem = storage_client::call_within(&mirrord, request, limit)
            .await
            .err()
            .map(|e| format!("mirrord does not answer: {}", report::chain(&e)));
        let site = {
            let mib = lock(self.mib_lock());
            mib.node(&self.me)
                .and_then(|n| n.site.clone())
                .filter(|site| {
                    let want = if problem.is_some() {
                        NodeState::Down
                    } else {
                        NodeState::Active
                    };
                    mib.storage
                        .iter()
                        .any(|s| &s.id == site && s.status != want)
                })
        };
        if let Some(site) = site {
            let state = if problem.is_some() {
                NodeState::Down
            } else {
                NodeState::Active
            };
            tracing::warn!(storage = %site, "storage node {site} is {state}");
            let notice = self.notice(&site, Kind::State(state), problem.clone());
            self.change(notice, None, vec![]);
        }
        problem
    }
}
