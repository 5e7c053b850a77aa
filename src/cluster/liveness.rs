//! A member that dies silently. Seed 004's I/O processor sends DOWN even
//! when its host is dead; software on the host cannot, so a group's master
//! watches its group instead, at the price of one small datagram per member
//! per interval (still no "system up" broadcast to everyone):
//!
//! - each host of a group answers every valid master heartbeat with an
//!   `Alive` notice to every address of the master (every network); it
//!   carries the member's MIB, so a member that missed a change is brought up
//!   to date within an interval;
//! - any valid notice from a member is word of it; a member of the group the
//!   master has had no word of for hbd's `timeout_ms` — no channel brought
//!   any, the rule of hbd's all-channels-dead verdict — is DOWN, and its
//!   applications move to their standbys as after any DOWN;
//! - the master counts its group's hosts not DOWN for hbd's `min_hosts`
//!   (production with fewer hands over to the standby).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::member::Member;
use super::mib::NodeState;
use super::notice::Kind;
use crate::hb::daemon::lock::lock;

impl Member {
    /// A valid notice came from `node`.
    pub(super) fn heard_from(&self, node: &str) {
        lock(&self.heard).insert(node.to_string(), Instant::now());
    }

    /// A new reign (this host or another became master): every host of the
    /// group gets a full timeout from now.
    pub(super) fn reign_begins(&self) {
        let now = Instant::now();
        let mut heard = lock(&self.heard);
        for host in self.group() {
            heard.insert(host, now);
        }
    }

    /// Answers the master's heartbeat: this member is alive.
    pub(super) fn answer_master(&self, master: &str) {
        let alive = self.notice(&self.me, Kind::Alive, None);
        let targets: Vec<SocketAddr> = alive
            .mib
            .node(master)
            .map(|n| n.all_addresses())
            .unwrap_or_default()
            .into_iter()
            .map(|ip| SocketAddr::new(ip, self.port()))
            .collect();
        self.send_once(alive, targets);
    }

    /// At the master, every interval: the hosts of the group it had no word
    /// of for the timeout are DOWN.
    pub(super) fn find_silent_members(&self) {
        let timeout = self.shared.config.timeout();
        let silent: Vec<String> = {
            let mib = lock(self.mib_lock());
            let heard = lock(&self.heard);
            self.group()
                .into_iter()
                .filter(|h| *h != self.me)
                .filter(|h| mib.node(h).is_some_and(|n| n.status != NodeState::Down))
                .filter(|h| heard.get(h).is_none_or(|t| t.elapsed() > timeout))
                .collect()
        };
        for node in silent {
            let how = format!("no answer to the master's heartbeat for {timeout:?}");
            self.silent(&node, &how);
        }
        self.count_group_alive();
    }

    /// At the master, every interval: the hosts of its group alive (this
    /// one, and those the MIB does not say DOWN), for hbd's `min_hosts`.
    fn count_group_alive(&self) {
        let alive = {
            let mib = lock(self.mib_lock());
            self.group()
                .iter()
                .filter(|h| {
                    **h == self.me || mib.node(h).is_some_and(|n| n.status != NodeState::Down)
                })
                .count()
        };
        self.shared
            .group_alive
            .store(alive.max(1) as u32, Ordering::Relaxed);
    }
}
