//! The master host of a group (seed 000): of the hosts listed in `[cluster]
//! group_members`, one — the master — sends and checks the inter-site
//! heartbeats and keeps the status table on the table volume (hbd's
//! `master_gate`); it also sends its group a master heartbeat every
//! interval (master id, cluster instance id, time). Another host of the
//! group becomes master — the next in the list — when the master sent no
//! valid heartbeat for `master_timeout_ms`; a master heartbeat whose time
//! does not advance (the master's own monotonic uptime, per run of its hbd:
//! a replay, or a master whose clock is stuck) is refused and logged, so
//! such a master is re-elected after the timeout; one with a cluster
//! instance id that expired (an older reign) is refused. No wall clock is
//! compared with another host's. The new master raises the instance id and
//! takes over the table from the table volume; after a silence it also
//! marks the old master DOWN in the MIB (its applications are taken over
//! as after any DOWN). A heartbeat from another
//! host at the same instance (a wrong master id) is refused and logged; a
//! master that hears a newer instance steps down. The hosts answer each
//! valid heartbeat, so the master finds a silent one (see `liveness`).
//! A host whose own ticks stopped for more than 3 intervals (SIGSTOP, a
//! paused VM) judges no silence on waking: the master and the group get a
//! full timeout from then.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hbcore::vocab::Level;

use super::group::rules;
use super::member::Member;
use super::notice::{Kind, Notice};
use super::roles::MasterView;
use crate::hb::daemon::lock::lock;
use crate::hb::daemon::record::{read_volume, VolumeRead};
use crate::hb::logic::message::next_serial;
use crate::hb::logic::table::now_ms;

/// Serials a new master skips past the table it took over (more than the
/// beats an old master can send between two saves of the table volume).
const SERIAL_SKIP_AT_TAKEOVER: u32 = 64;

/// Intervals between two of this host's own ticks beyond which this host
/// was stalled (stopped, a paused VM) and cannot judge a silence.
const STALL_INTERVALS: u32 = 3;

impl Member {
    pub(super) fn master_timeout(&self) -> Duration {
        Duration::from_millis(
            self.shared
                .config
                .cluster
                .as_ref()
                .map_or(60_000, |c| c.master_timeout_ms),
        )
    }

    /// At start: the first host of the group is master, reign 1, until a
    /// heartbeat says otherwise.
    pub fn master_start(&self) {
        let group = self.group();
        let Some(first) = group.first() else {
            return;
        };
        self.install_master(first.clone(), 1);
    }

    /// Records `master` (and opens or closes this host's gate).
    fn install_master(&self, master: String, instance: u64) {
        let me = master == self.me;
        if let Some(mut seen) = self.seen() {
            // A new reign: this host may reign again if it is the master
            // (once its claim is clear, while its slot writes keep its
            // lease: `channels`), unless fenced.
            seen.resigned = seen.fenced.is_some();
            seen.resigned_ms = None;
            seen.claim = rules::Claim::new(instance);
        }
        let without_volume = self.group_seen.is_none();
        self.shared
            .master_gate
            .set(me && without_volume && self.fenced().is_none());
        {
            let mut c = self.shared.checker();
            c.table.master = Some(master.clone());
            c.table.master_instance = instance;
        }
        *lock(&self.master) = Some(MasterView {
            master,
            instance,
            last_seen: Instant::now(),
            last_time: None,
        });
        self.reign_begins();
    }

    /// Every interval: the master sends its heartbeat to its group; the
    /// others check that it is not silent.
    pub async fn master_tick(&self) {
        if let Some(gap) = self.stalled_for() {
            // What it did not hear while stopped is not the others' silence:
            // the master and the group get a full timeout from now.
            tracing::warn!("this host was stalled for {gap:?}: no master re-elected and no member marked DOWN on a silence it could not hear");
            if let Some(v) = lock(&self.master).as_mut() {
                v.last_seen = Instant::now();
            }
            self.reign_begins();
        }
        let Some(view) = lock(&self.master).clone() else {
            return;
        };
        if view.master == self.me && !self.keeps_reign() {
            self.after_resigning(&view);
            return;
        }
        if view.master == self.me {
            let mut beat = self.notice(&self.me, Kind::Master, None);
            beat.instance = Some(view.instance);
            beat.time_ms = Some(now_ms());
            beat.run = Some(self.shared.clock.instance);
            beat.uptime_ms = Some(self.shared.clock.uptime_ms());
            let targets = self.group_targets(&beat);
            self.send_once(beat, targets);
            self.find_silent_members();
        } else if view.last_seen.elapsed() > self.master_timeout()
            && self.master_slot_stopped(&view)
        {
            let why = format!(
                "master {} sent no heartbeat for {:?}{}",
                view.master,
                self.master_timeout(),
                if self.seen().is_some() {
                    " and its slot stopped"
                } else {
                    ""
                }
            );
            // Its heartbeat goes to every address of each host of the
            // group: silence is every channel's. The successor alone says so.
            if self.elect(&view, why).as_deref() == Some(self.me.as_str()) {
                let how = format!("no master heartbeat for {:?}", self.master_timeout());
                self.silent(&view.master, &how);
            }
        }
    }

    /// How long this host's ticks stopped, if longer than a few intervals
    /// (and notes this tick).
    fn stalled_for(&self) -> Option<Duration> {
        let now = Instant::now();
        let last = lock(&self.ticked).replace(now)?;
        let gap = now.duration_since(last);
        (gap > self.shared.config.interval() * STALL_INTERVALS).then_some(gap)
    }

    fn group_targets(&self, notice: &Notice) -> Vec<SocketAddr> {
        let group = self.group();
        notice
            .mib
            .nodes
            .iter()
            .filter(|n| n.id != self.me && group.contains(&n.id))
            .flat_map(|n| n.all_addresses())
            .map(|ip| SocketAddr::new(ip, self.port()))
            .collect()
    }

    /// Takes a master heartbeat (true when `notice` is one).
    pub fn master_input(&self, notice: &Notice) -> bool {
        if notice.kind != Kind::Master {
            return false;
        }
        let Some(view) = lock(&self.master).clone() else {
            return true;
        };
        let (instance, sent) = (notice.instance.unwrap_or(0), notice.time_ms.unwrap_or(0));
        if !self.group().contains(&notice.about) {
            return true;
        }
        if instance > view.instance {
            // A newer reign: its master (a former master steps down).
            if view.master == self.me {
                tracing::warn!(master = %notice.about, instance, "another host is master now: this one steps down");
            }
            self.install_master(notice.about.clone(), instance);
            return true;
        }
        if instance < view.instance {
            tracing::warn!(from = %notice.about, instance, current = view.instance, "master heartbeat with an expired cluster instance id refused");
            return true;
        }
        if notice.about != view.master {
            tracing::warn!(from = %notice.about, master = %view.master, "master heartbeat with a wrong master id refused");
            return true;
        }
        let time = notice.run.zip(notice.uptime_ms);
        if let (Some((run, uptime)), Some((last_run, last_uptime))) = (time, view.last_time) {
            if run == last_run && uptime <= last_uptime {
                // Fig 7 rule 3: the time must advance (never compared with this host's clock).
                tracing::warn!(from = %notice.about, uptime, last_uptime, sent_ms = sent, "master heartbeat whose time does not advance refused (a replay, or the master's clock is stuck)");
                return true;
            }
        }
        if let Some(v) = lock(&self.master).as_mut() {
            v.last_time = time.or(v.last_time);
        }
        if let Some(v) = lock(&self.master).as_mut() {
            v.last_seen = Instant::now();
        }
        self.answer_master(&view.master);
        true
    }

    /// The next host of the group after the failed master becomes master
    /// (returned; None without a group).
    fn elect(&self, failed: &MasterView, why: String) -> Option<String> {
        let group = self.group();
        let at = group.iter().position(|h| *h == failed.master).unwrap_or(0);
        // None: no group, this host is its own master.
        let next = group.iter().cycle().nth(at + 1).cloned()?;
        let instance = failed.instance + 1;
        tracing::warn!("{why}: {next} is master now (cluster instance {instance})");
        self.event(
            Some(Level::Serious),
            format!("{why}: {next} is master now (cluster instance {instance})"),
        );
        if next == self.me {
            self.take_over_table();
        }
        self.install_master(next.clone(), instance);
        Some(next)
    }

    /// A master keeps its reign only while its lease holds (its last good
    /// claiming slot write began less than `master_timeout_ms / 2` ago; see
    /// `group::rules::Claim`); until its claim landed and is clear it waits;
    /// once the lease ran out it gives up the reign for good (the group
    /// elects another after the full timeout). Without a group volume: always.
    fn keeps_reign(&self) -> bool {
        let (now, claim, limit) = {
            let Some(seen) = self.seen() else {
                return true;
            };
            if seen.resigned {
                return false;
            }
            let limit = self.master_timeout().as_millis() as u64;
            (seen.ms(Instant::now()), seen.claim.clone(), limit)
        };
        match claim.state(now, limit) {
            rules::Reign::Keep => true,
            rules::Reign::Wait => false,
            rules::Reign::Resign => {
                let ms = claim.wrote_ms.map_or(0, |t| now.saturating_sub(t));
                self.resign(&format!(
                    "its last good write of its slot began {ms} ms ago"
                ));
                false
            }
        }
    }

    /// Gives up this host's reign (its lease ran out: `why`) until a new
    /// one begins; logged once.
    pub(super) fn resign(&self, why: &str) {
        {
            let Some(mut seen) = self.seen() else {
                return;
            };
            if seen.resigned {
                return;
            }
            seen.resigned = true;
            seen.resigned_ms = Some(seen.ms(Instant::now()));
        }
        self.shared.master_gate.set(false);
        let text = format!(
            "{} stops acting as its group's master: {why} (the lease is {:?}); the group elects another",
            self.me,
            self.master_timeout() / 2
        );
        tracing::error!("{text}");
        self.event(Some(Level::Serious), text);
    }

    /// A master that gave up its reign a full timeout ago starts the next
    /// one itself (electing the next host of the group), so a group whose
    /// other hosts cannot reign is not left without a master.
    fn after_resigning(&self, view: &MasterView) {
        let due = self.seen().is_some_and(|s| {
            let now = s.ms(Instant::now());
            s.resigned
                && s.fenced.is_none()
                && s.resigned_ms.is_some_and(|r| {
                    rules::resigned_long_enough(r, now, self.master_timeout().as_millis() as u64)
                })
        });
        if due {
            let why = format!(
                "{} gave up its reign {:?} ago",
                self.me,
                self.master_timeout()
            );
            self.elect(view, why);
        }
    }

    /// Whether the master's slot also says it is gone (always, without a
    /// group volume): still for the full timeout, or no longer claiming
    /// the reign. A master silent on the LAN whose slot advances is a LAN
    /// fault: reported once, no election.
    fn master_slot_stopped(&self, view: &MasterView) -> bool {
        let lan_silent = view.last_seen.elapsed().as_millis() as u64;
        let timeout = self.master_timeout().as_millis() as u64;
        let fault = {
            let Some(mut seen) = self.seen() else {
                return true;
            };
            let read = seen.last_read_ms.unwrap_or(seen.watching_ms);
            let watch = seen.watches.get(&view.master);
            if rules::may_succeed(
                lan_silent,
                watch,
                seen.watching_ms,
                read,
                view.instance,
                timeout,
            ) {
                return true;
            }
            seen.lan_faults.insert(view.master.clone())
        };
        if fault {
            let text = format!(
                "master {} is silent on the LAN but its slot advances: a LAN fault, no election",
                view.master
            );
            tracing::warn!("{text}");
            self.event(Some(Level::Serious), text);
        }
        false
    }

    /// A slot of `host` claims the reign in cluster `instance`: followed
    /// as `rules::follows_reign` says.
    pub(super) fn slot_claims_reign(&self, host: &str, instance: u64, at_start: bool) {
        let Some(view) = lock(&self.master).clone() else {
            return;
        };
        let current = (&view.master.as_str(), view.instance);
        let newer = rules::follows_reign((&host, instance), current, at_start);
        if newer && self.group().iter().any(|h| h == host) {
            if view.master == self.me {
                tracing::warn!(master = %host, instance, "another host claims a newer reign in its slot: this one steps down");
            }
            tracing::info!(master = %host, instance, "master {host} (cluster instance {instance}), from its slot");
            self.install_master(host.to_string(), instance);
        }
    }

    /// The new master's table: the one its predecessor kept on the table
    /// volume (this host's identity kept).
    fn take_over_table(&self) {
        let Some(volume) = &self.shared.config.table_volume else {
            return;
        };
        match read_volume(volume, &self.shared.key) {
            Ok(VolumeRead::Table(t)) => {
                let mut c = self.shared.checker();
                let host = c.table.host.clone();
                c.table = *t;
                c.table.host = host;
                // The volume is written after the beats it counts, so it may
                // lag the last ones the old master sent: skip ahead, so that
                // this master's first heartbeat is newer than all of them.
                for _ in 0..SERIAL_SKIP_AT_TAKEOVER {
                    c.table.serial = next_serial(c.table.serial);
                }
                tracing::info!(
                    serial = c.table.serial,
                    "the status table taken over from the table volume"
                );
            }
            Ok(VolumeRead::Empty) => {
                tracing::warn!("the table volume holds no table yet: this master starts its own")
            }
            Err(e) => tracing::error!(
                "cannot take over the table from {}: {}",
                volume.display(),
                hbcore::report::chain(&e)
            ),
        }
    }
}
