//! The member's second channel inside its group: every interval, on a
//! task of its own, this host reads every slot and mailbox of its
//! group's volume and writes its own slot (see [`super::group`]). What it
//! reads feeds the judgements of `liveness` (a member DOWN only when both
//! channels are silent) and `master` (a successor only after the old
//! master's slot stopped; a newer reign claimed in a slot is followed); a
//! poison in its mailbox is obeyed (`fence`); both channels lost past
//! `fence_timeout_ms / 2` fence this host. Each good slot write renews a
//! master's lease (hbd's gate) to `master_timeout_ms / 2` after the write
//! began.
//!
//! Run by the member's group task; the state it keeps ([`Seen`]) is behind
//! the member's lock, held briefly, never across an await.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::group::disk::{GroupVolume, Read};
use super::group::rules::{must_self_fence, newest_reign, rival_claims, SlotWatch};
use super::group::slot::{Poison, Slot, SlotState};
use super::group::Seen;
use super::member::Member;
use super::mib::NodeState;
use crate::hb::daemon::lock::lock;
use hbcore::report;

impl Member {
    /// The group volume's state, locked (None without a group volume).
    pub(super) fn seen(&self) -> Option<std::sync::MutexGuard<'_, Seen>> {
        self.group_seen.as_ref().map(lock)
    }

    /// The group volume's task (beside the run task, so that a hung
    /// storage path never delays the LAN's notices): every interval, one
    /// [`Member::group_tick`].
    pub async fn group_run(self: Arc<Self>) {
        if self.group_seen.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(self.shared.config.interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.group_tick().await;
        }
    }

    /// Reads the group volume, obeys a poison, writes this host's slot,
    /// fences this host if both channels are lost.
    async fn group_tick(self: &Arc<Self>) {
        let Some(volume) = self.seen().map(|s| Arc::clone(&s.volume)) else {
            return;
        };
        let Some(index) = volume.index(&self.me) else {
            return;
        };
        // The run's first read comes before its first write (an earlier
        // run's acknowledgement, a reign already claimed); after it, the
        // write goes beside the read, so a slow read never delays the write
        // that keeps a master's lease.
        let started = self.seen().is_some_and(|s| s.started);
        let read_began = Instant::now();
        let read = if started {
            tokio::join!(volume.read_all(), self.write_now(&volume, index)).0
        } else {
            volume.read_all().await
        };
        match read {
            Ok(reads) => {
                if let Some(poison) = self.take_reads(&volume, reads, read_began, Instant::now()) {
                    self.obey(poison).await;
                }
            }
            Err(e) => self.volume_trouble("cannot read the group volume", &e),
        }
        if !started {
            self.write_now(&volume, index).await;
        }
        self.check_self_fence().await;
    }

    /// Takes what one read (begun at `began`) found: the slots watched,
    /// this host's claim cleared if no rival claims (its gate opened), a
    /// newer reign followed; returns a poison this host must obey.
    fn take_reads(
        &self,
        volume: &GroupVolume,
        reads: Vec<Read>,
        began: Instant,
        now: Instant,
    ) -> Option<Poison> {
        let run = self.shared.clock.instance;
        let mut reigns: Vec<(String, u64)> = Vec::new();
        let mut obey = None;
        let at_start;
        {
            let mut seen = self.seen()?;
            let now_ms = seen.ms(now);
            seen.last_read_ms = Some(now_ms);
            for (host, read) in volume.hosts.iter().zip(reads) {
                match read.slot {
                    Ok(Some(slot)) if *host == self.me => {
                        if !seen.started && slot.run != run {
                            // An earlier run's acknowledgement: its poison is not obeyed again.
                            seen.ack = slot.ack;
                        }
                    }
                    Ok(Some(slot)) => {
                        // The reigns a slot claims, or follows.
                        reigns.extend(slot.master.map(|i| (host.clone(), i)));
                        reigns.extend(slot.follows.clone());
                        let before = seen.watches.get(host);
                        let watch = SlotWatch::observe(before, slot, now_ms);
                        seen.watches.insert(host.clone(), watch);
                        seen.refused.remove(host);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        let why = format!("its slot is refused: {}", report::chain(&e));
                        if seen.refused.insert(host.clone(), why.clone()).as_ref() != Some(&why) {
                            tracing::warn!(host = %host, volume = %volume.path.display(), "{why}");
                        }
                    }
                }
                if *host != self.me {
                    continue;
                }
                match read.mailbox {
                    Ok(Some(p)) if Some(p.id) == seen.ack => {}
                    Ok(Some(p)) if p.run != run && p.run != 0 => {}
                    Ok(Some(p)) if p.from == self.me || volume.index(&p.from).is_none() => {
                        let why = format!(
                            "a poison from '{}', not a host of this group, is refused",
                            p.from
                        );
                        if seen.refused.insert(self.me.clone(), why.clone()).as_ref() != Some(&why)
                        {
                            tracing::error!(volume = %volume.path.display(), "{why}");
                        }
                    }
                    Ok(Some(p)) if seen.fenced.is_none() => obey = Some(p),
                    Ok(_) => {}
                    Err(e) => {
                        let why = format!(
                            "the poison in this host's mailbox is refused: {}",
                            report::chain(&e)
                        );
                        if seen.refused.insert(self.me.clone(), why.clone()).as_ref() != Some(&why)
                        {
                            tracing::error!(volume = %volume.path.display(), "{why}");
                        }
                    }
                }
            }
            at_start = !seen.started;
            seen.started = true;
            let limit = self.master_timeout().as_millis() as u64;
            let rival = rival_claims(seen.watches.values(), now_ms, limit);
            let began_ms = seen.ms(began);
            if seen.claim.read(began_ms, rival) && !seen.resigned && seen.fenced.is_none() {
                // Only a master's claims land: its first read after them
                // found no rival claiming a reign, so it acts from now.
                self.shared.master_gate.set(true);
                tracing::info!(
                    instance = seen.claim.instance,
                    "this host's claim of its group's reign is clear: it acts as master"
                );
            }
        }
        if let Some((host, instance)) = newest_reign(reigns) {
            self.slot_claims_reign(&host, instance, at_start);
        }
        obey
    }

    /// Writes this host's slot; a master's good write renews its lease
    /// from when it began, if the lease still held then (a lapsed lease is
    /// given up, never renewed: after a stall, a successor may be counting).
    pub(super) async fn write_now(&self, volume: &Arc<GroupVolume>, index: usize) {
        let view = lock(&self.master).clone();
        let began = Instant::now();
        let limit = self.master_timeout().as_millis() as u64;
        let lapsed;
        // Read before `seen` is locked: `seen` is a leaf lock (nothing else
        // is taken while it is held; `liveness` holds the MIB and `heard`
        // and then takes it).
        let (down, down_reason) = {
            let mib = lock(&self.mib);
            let down = mib.state(&self.me) == NodeState::Down;
            (down, mib.node(&self.me).and_then(|n| n.reason.clone()))
        };
        let (slot, claims) = {
            let Some(mut seen) = self.seen() else {
                return;
            };
            seen.serial += 1;
            let fenced = seen.fenced.clone();
            let master = fenced.is_none()
                && !seen.resigned
                && view.as_ref().is_some_and(|v| v.master == self.me);
            let claims;
            (claims, lapsed) = seen.claim.next_write(master, seen.ms(began), limit);
            let slot = Slot {
                host: self.me.clone(),
                run: self.shared.clock.instance,
                serial: seen.serial,
                state: match (&fenced, down) {
                    (Some(_), _) => SlotState::Fenced,
                    (None, true) => SlotState::Down,
                    (None, false) => SlotState::Up,
                },
                master: view.as_ref().filter(|_| claims).map(|v| v.instance),
                follows: view.map(|v| (v.master, v.instance)),
                ack: seen.ack,
                reason: fenced.or(down_reason.filter(|_| down)),
            };
            let claimed = slot.master;
            (slot, claimed)
        };
        if lapsed {
            self.resign("its lease ran out before its next slot write (a stall, or a slow volume)");
        }
        match volume.write_slot(index, &slot).await {
            Ok(()) => {
                let mut seen = self.seen();
                let Some(seen) = seen.as_mut() else {
                    return;
                };
                if seen.last_write_ms.is_none() || seen.trouble.take().is_some() {
                    tracing::info!(volume = %volume.path.display(), "this host's slot is written on the group volume");
                }
                let (began_ms, returned_ms) = (seen.ms(began), seen.ms(Instant::now()));
                seen.last_write_ms = Some(began_ms);
                self.petting.connected_until(began + self.fence_timeout());
                if claims.is_some_and(|i| seen.claim.wrote(i, began_ms, returned_ms, limit)) {
                    self.shared
                        .master_gate
                        .lease_until(began + self.master_timeout() / 2);
                }
            }
            Err(e) => self.volume_trouble("cannot write this host's slot", &e),
        }
    }

    /// Logs a failed group-volume I/O once, until the volume works again.
    fn volume_trouble(&self, what: &str, e: &(dyn std::error::Error + 'static)) {
        let text = format!("{what}: {}", report::chain(e));
        let Some(mut seen) = self.seen() else {
            return;
        };
        if seen.trouble.as_ref() != Some(&text) {
            tracing::warn!(volume = %seen.volume.path.display(), "{text}");
            seen.trouble = Some(text);
        }
    }

    /// The fence timeout (`fence_timeout_ms`).
    pub(super) fn fence_timeout(&self) -> Duration {
        self.shared.config.fence_timeout()
    }

    /// Fences this host when it has lost both its LAN (no word from any
    /// host of its group) and its slot (no good write) for half the fence
    /// timeout.
    async fn check_self_fence(self: &Arc<Self>) {
        let group = self.group();
        if group.len() < 2 {
            return;
        }
        let last_heard = {
            let heard = lock(&self.heard);
            group
                .iter()
                .filter(|h| **h != self.me)
                .filter_map(|h| heard.get(h).copied())
                .max()
        };
        let why = {
            let Some(seen) = self.seen() else {
                return;
            };
            if seen.fenced.is_some() {
                return;
            }
            let now = Instant::now();
            let lan = last_heard.map_or(0, |t| seen.ms(t));
            let slot = seen.last_write_ms.unwrap_or(seen.watching_ms);
            let now_ms = seen.ms(now);
            let limit = self.fence_timeout().as_millis() as u64;
            if !must_self_fence(lan, slot, now_ms, limit) {
                return;
            }
            format!(
                "it lost both its LAN (no word from its group for {} ms) and its slot (no good write for {} ms)",
                now_ms.saturating_sub(lan),
                now_ms.saturating_sub(slot)
            )
        };
        self.fence_self(why, None).await;
    }
}
