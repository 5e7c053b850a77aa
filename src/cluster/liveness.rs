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

use super::group::rules::{judge, Judgement};
use super::member::Member;
use super::mib::NodeState;
use super::notice::Kind;
use crate::hb::daemon::lock::lock;
use hbcore::vocab::Level;

impl Member {
    /// A valid notice came from `node`.
    pub(super) fn heard_from(&self, node: &str) {
        let now = Instant::now();
        lock(&self.heard).insert(node.to_string(), now);
        if self.group().iter().any(|h| h == node) {
            self.petting.connected_until(now + self.fence_timeout());
        }
        let over = self.seen().is_some_and(|mut s| s.lan_faults.remove(node));
        if over {
            let text = format!("{node} is heard on the LAN again: the LAN fault is over");
            tracing::info!("{text}");
            self.event(None, text);
        }
    }

    /// A new reign (this host or another became master): every host of the
    /// group gets a full timeout from now.
    pub(super) fn reign_begins(&self) {
        let now = Instant::now();
        if let Some(mut seen) = self.seen() {
            seen.watching_ms = seen.ms(now);
        }
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

    /// At the master, every interval: each host of the group judged on
    /// both channels (see `group::rules::judge`): DOWN when it had no word
    /// on the LAN for the timeout and its slot stopped too (or its slot
    /// says so); LAN silence with a live slot is a LAN fault, reported
    /// once, never a DOWN. Without a group volume, LAN silence alone.
    pub(super) fn find_silent_members(&self) {
        let timeout = self.shared.config.timeout();
        let now = Instant::now();
        let mut down = vec![];
        let mut faults = vec![];
        {
            let mib = lock(self.mib_lock());
            let heard = lock(&self.heard);
            let mut seen = self.seen();
            for h in self.group().into_iter().filter(|h| *h != self.me) {
                if mib.node(&h).is_none_or(|n| n.status == NodeState::Down) {
                    if let Some(seen) = seen.as_mut() {
                        seen.lan_faults.remove(&h);
                    }
                    continue;
                }
                let lan_silent = heard.get(&h).map_or(timeout, |t| now.duration_since(*t));
                let Some(seen) = seen.as_mut() else {
                    if lan_silent > timeout {
                        let how = format!("no answer to the master's heartbeat for {timeout:?}");
                        down.push((h, how));
                    }
                    continue;
                };
                let read = seen.last_read_ms.unwrap_or(seen.watching_ms);
                let judged = judge(
                    lan_silent.as_millis() as u64,
                    seen.watches.get(&h),
                    seen.watching_ms,
                    read,
                    timeout.as_millis() as u64,
                );
                match judged {
                    Judgement::Alive => {}
                    Judgement::LanFault => {
                        if seen.lan_faults.insert(h.clone()) {
                            faults.push(h);
                        }
                    }
                    Judgement::Down(why) if lan_silent > timeout => {
                        down.push((h, format!("no answer to the master's heartbeat: {why}")));
                    }
                    Judgement::Down(why) => down.push((h, why)),
                }
            }
        }
        for h in faults {
            let text = format!(
                "{h} is silent on the LAN but its slot advances: a LAN fault, not a DOWN (no takeover)"
            );
            tracing::warn!("{text}");
            self.event(Some(Level::Serious), text);
        }
        for (node, how) in down {
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
