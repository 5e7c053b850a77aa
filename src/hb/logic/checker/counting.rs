//! The networks' part of the decision (200/210 per network, then the
//! networks together) and the channels' counters (seed 002, Fig 4): opened
//! when a channel is turned on, fed by every valid message, stepped every
//! period by the daemon.

use std::time::Instant;

use super::{Checker, Transition};
use crate::hb::logic::analysis::network_label;
use crate::hb::logic::counter::{Change, Counter};
use crate::hb::logic::table::{DeviceStatus, Direction, Enable, GroupStatus, Seen};

/// A channel that went BAD (counter at 0) or GOOD again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterChange {
    /// The channel: `network NAME` (`network`), `mirror NAME`.
    pub channel: String,
    /// Which way.
    pub change: Change,
}

impl Checker {
    /// 200/210 of each network by the timeout rule, and of the networks
    /// together: ALIVE if any network is, FAILED if every one has failed.
    pub(super) fn evaluate_networks(
        &mut self,
        now: Instant,
        grace: bool,
        changes: &mut Vec<Transition>,
    ) {
        let timeout = self.timeout;
        let t = &mut self.table;
        let on = t.network_on();
        let (mut any_alive, mut all_failed) = (false, !t.networks.is_empty());
        for n in &mut t.networks {
            let watch = self.networks.entry(n.name.clone()).or_default();
            let label = network_label(&n.name);
            if !(on && n.wanted) {
                // A network turned off on its own neither fails nor keeps
                // the network channel alive; the others decide.
                n.enable = Enable::Disable;
                n.remote_group = GroupStatus::Unknown;
                continue;
            }
            if watch.alive(now, timeout) {
                if n.enable == Enable::Failed {
                    changes.push(Transition {
                        channel: label,
                        failed: false,
                        why: "valid heartbeats arrive again".into(),
                    });
                }
                n.enable = Enable::Enable;
                n.remote_group = GroupStatus::Alive;
                n.seen.problem = None;
                any_alive = true;
            } else if grace && watch.advanced_at.is_none() {
                n.enable = Enable::Enable;
                n.remote_group = GroupStatus::Unknown;
            } else {
                let why = match &n.socket_problem {
                    Some(p) => format!("no valid heartbeat for over {timeout:?} ({p})"),
                    None => format!("no valid heartbeat for over {timeout:?}"),
                };
                if n.enable != Enable::Failed {
                    changes.push(Transition {
                        channel: label,
                        failed: true,
                        why: why.clone(),
                    });
                }
                n.enable = Enable::Failed;
                n.remote_group = GroupStatus::Failed;
                n.seen.problem = Some(why);
            }
            if n.enable != Enable::Failed {
                all_failed = false;
            }
        }
        let (enable, group, problem) = if !on {
            (Enable::Disable, GroupStatus::Unknown, None)
        } else if any_alive {
            (Enable::Enable, GroupStatus::Alive, None)
        } else if all_failed {
            let on: Vec<_> = t.networks.iter().filter(|n| n.wanted).collect();
            let problem = if on.len() == 1 {
                on[0].seen.problem.clone().unwrap_or_default()
            } else {
                on.iter()
                    .map(|n| format!("{}: {}", n.name, n.seen.problem.clone().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            (Enable::Failed, GroupStatus::Failed, Some(problem))
        } else {
            (Enable::Enable, GroupStatus::Unknown, None)
        };
        t.network_enable = enable;
        t.remote_group_via_network = group;
        t.network.problem = problem;
    }

    /// A valid message with `serial` on network `name` (the peer's clock
    /// `offset`, if measured): its counts and counter.
    pub(super) fn counted_network(
        &mut self,
        name: &str,
        serial: u32,
        wall_ms: u64,
        offset: Option<i64>,
    ) {
        if let Some(n) = self.table.network_entry(name) {
            n.seen = Seen {
                count: n.seen.count + 1,
                last_ms: Some(wall_ms),
                last_serial: Some(serial),
                problem: n.seen.problem.take(),
                clock_offset_ms: offset.or(n.seen.clock_offset_ms),
            };
            if n.counter.message(serial) == Some(Change::Good) {
                self.counter_changes.push(CounterChange {
                    channel: network_label(name),
                    change: Change::Good,
                });
            }
        }
    }

    /// Opens the counter of every channel turned on and closes those turned
    /// off; `afresh` (at start) opens every counter anew, its counts zeroed.
    pub(super) fn open_counters(&mut self, afresh: bool) {
        let rule = self.rule;
        let t = &mut self.table;
        let network_on = t.network_on();
        let mirrors_wanted = t.mirrors_wanted;
        let counters = t
            .networks
            .iter_mut()
            .map(|n| (network_on && n.wanted, &mut n.counter));
        let mirrors = t
            .devices
            .iter_mut()
            .filter(|d| d.direction == Direction::Receive && d.status != DeviceStatus::Null)
            .map(|d| (mirrors_wanted && d.wanted, &mut d.counter));
        for (on, c) in counters.chain(mirrors) {
            if afresh {
                *c = Counter::default();
            }
            if on && !c.open {
                c.open(&rule);
            } else if !on && c.open {
                c.close();
            }
        }
    }

    /// The counters' period (Fig 4, 425–436): every open counter is clamped,
    /// lowered and floored; those that reach 0 are BAD (see
    /// [`Checker::take_counter_changes`]). Returns the channels with new
    /// gaps in their sequence numbers since the last period, and how many.
    pub fn counter_period(&mut self) -> Vec<(String, u64)> {
        let rule = self.rule;
        let t = &mut self.table;
        let networks = t
            .networks
            .iter_mut()
            .map(|n| (network_label(&n.name), &mut n.counter));
        let mirrors = t
            .devices
            .iter_mut()
            .filter(|d| d.direction == Direction::Receive && d.status != DeviceStatus::Null)
            .map(|d| (format!("mirror {}", d.name), &mut d.counter));
        let mut gaps = vec![];
        for (channel, c) in networks.chain(mirrors) {
            let new = c.new_gaps();
            if new > 0 && c.good() {
                gaps.push((channel.clone(), new));
            }
            if let Some(change) = c.period(&rule) {
                self.counter_changes.push(CounterChange { channel, change });
            }
        }
        t.channels = t.channel_statuses();
        gaps
    }

    /// The channels that went BAD or GOOD since the last call.
    pub fn take_counter_changes(&mut self) -> Vec<CounterChange> {
        std::mem::take(&mut self.counter_changes)
    }

    /// Whether every enabled channel has failed by the timeout rule (the
    /// failover rule's evidence), at least one being enabled.
    pub fn all_channels_failed(&self) -> bool {
        let t = &self.table;
        let network = t.network_on().then_some(t.remote_group_via_network);
        let receiving = t.devices.iter().any(|d| {
            d.direction == Direction::Receive
                && matches!(d.status, DeviceStatus::Enable | DeviceStatus::Failed)
        });
        let mirrors = (t.mirrors_wanted && receiving).then_some(t.remote_group_via_mirrors);
        let evidence: Vec<GroupStatus> = [network, mirrors].into_iter().flatten().collect();
        !evidence.is_empty() && evidence.iter().all(|g| *g == GroupStatus::Failed)
    }
}
