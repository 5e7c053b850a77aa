//! What every task of hbd shares, and its record on disk.
//!
//! [`Shared`] is one `Arc` held by the tick, the UDP receivers, the control
//! server's tasks, the analyzer's and failover tasks and the cluster
//! member: the configuration and key, this run's clock, the master gate
//! and the group's hosts alive (both set by the cluster member), the
//! checker (the status table and the channels' watches) behind one lock,
//! taken briefly and never across an await, and the events
//! (`journal`). The table is kept in `data_dir/table.json` and on
//! the table volume, if configured (the [`Keeper`] of [`super::record`]).
//! What only one concern needs is in that concern's part (the networks in
//! `netio`, the analyses in `analyzer`, the checks' outcomes in `checks`,
//! the mirrors' protection in `install`, the tick's counts in `tick`).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use super::hostclock::{nonce, HostClock};
use super::journal::Journal;
use super::lock::lock;
use super::record::Keeper;
use crate::hb::api::{Event, Source};
use crate::hb::config::Config;
use crate::hb::logic::analysis::Analysis;
use crate::hb::logic::checker::{Checker, Timing};
use crate::hb::logic::handover::GroupCount;
use crate::hb::logic::message::{ControlBody, MessageError};
use crate::hb::logic::step::{compose_beat, encode_fitting, queue_control};
use crate::hb::logic::table::{now_ms, Table};
use hbcore::vocab::Level;

/// One host's heartbeat check: what every task of hbd shares.
pub struct Shared {
    /// The configuration.
    pub config: Config,
    /// The pre-shared key of the heartbeat messages.
    pub key: Vec<u8>,
    /// This host is its group's master (seed 000): it sends and checks the
    /// heartbeats and keeps the table volume. Always, unless a cluster
    /// member with `[cluster] group_members` is not master, or its lease
    /// on the group volume ran out.
    pub master_gate: MasterGate,
    /// Hosts of this host's group alive, itself included (`min_hosts`):
    /// 1 (itself) unless its group's master, the cluster member, counts
    /// the group's members it has not marked DOWN.
    pub group_alive: AtomicU32,
    /// This run's instance id, uptime and suspend detector.
    pub clock: HostClock,
    checker: Mutex<Checker>,
    journal: Journal,
    record: Keeper,
}

impl Shared {
    /// hbd around `table`, with the events recorded before.
    pub fn new(config: Config, key: Vec<u8>, table: Table) -> Shared {
        let timing = Timing {
            timeout: config.timeout(),
            interval: config.interval(),
            clock_warn: config.clock_warn(),
            counter: config.counter,
        };
        let checker = Checker::new(
            table,
            config.peers.clone(),
            timing,
            config.arm_policy(),
            Instant::now(),
        );
        let events_path = config.data_dir.join("events.jsonl");
        Shared {
            key,
            master_gate: MasterGate::default(),
            group_alive: AtomicU32::new(1),
            clock: HostClock::new(),
            checker: Mutex::new(checker),
            journal: Journal::open(events_path),
            record: Keeper::new(&config),
            config,
        }
    }

    /// Whether this host is its group's master (see `master_gate`).
    pub fn is_group_master(&self) -> bool {
        self.master_gate.is_open(Instant::now())
    }

    /// This host's group: its size, the hosts alive (`group_alive`, at
    /// most the size) and `min_hosts`.
    pub fn group_count(&self) -> GroupCount {
        let size = self.config.group_size();
        GroupCount {
            alive: self.group_alive.load(Ordering::Relaxed).clamp(1, size),
            size,
            min_hosts: self.config.min_hosts,
        }
    }

    /// The checker, locked: hold it briefly, never across an await.
    pub fn checker(&self) -> MutexGuard<'_, Checker> {
        lock(&self.checker)
    }

    /// The next heartbeat (serial + 1, this run's identity, the outbox),
    /// signed and encoded.
    pub fn next_frame(&self) -> Result<(u32, Vec<u8>), MessageError> {
        let uptime = self.clock.uptime_ms();
        let beat = {
            let mut c = self.checker();
            let id = c.identity(self.clock.instance, uptime, nonce(), Instant::now());
            compose_beat(&mut c.table, now_ms(), id)
        };
        encode_fitting(beat, &self.key)
    }

    /// Queues a control message for the peer: it rides every heartbeat
    /// until acknowledged.
    pub fn queue(&self, body: ControlBody) {
        let dropped = queue_control(&mut self.checker().table, body);
        if let Some(dropped) = dropped {
            tracing::warn!(
                id = dropped.id,
                "control outbox full (the peer acknowledges nothing): dropped the oldest message"
            );
        }
    }

    /// The table as saved now (its `saved_ms` set), in JSON.
    fn snapshot(&self, pretty: bool) -> Option<Vec<u8>> {
        let mut c = self.checker();
        c.table.saved_ms = now_ms();
        let text = if pretty {
            serde_json::to_vec_pretty(&c.table)
        } else {
            serde_json::to_vec(&c.table)
        };
        text.map_err(|e| tracing::error!("cannot serialize the status table: {e}"))
            .ok()
    }

    /// Replaces `table.json` with the table as it is now.
    pub fn save_file(&self) {
        self.record.keep_file(|| self.snapshot(true));
    }

    /// Persists the table: `table.json`, and the table volume if configured
    /// (which may block on the storage: the tick calls it on a blocking thread).
    pub fn save(&self) {
        self.save_file();
        let Some(volume) = &self.config.table_volume else {
            return;
        };
        if !self.is_group_master() {
            return; // the master keeps the table volume
        }
        self.record
            .keep_volume(volume, &self.key, || self.snapshot(false));
    }

    /// Records an event (memory and events.jsonl).
    pub fn event(&self, source: Source, level: Option<Level>, part: &str, text: String) {
        self.journal.event(source, level, part, text);
    }

    /// Records the event of a fault analysis, with its evidence.
    pub fn analysis_event(&self, level: Option<Level>, text: String, analysis: &Analysis) {
        self.journal.analysis_event(level, text, analysis);
    }

    /// The latest `limit` events, oldest first.
    pub fn recent_events(&self, limit: usize) -> Vec<Event> {
        self.journal.recent(limit)
    }
}

/// This host's right to act as its group's master: open or closed and,
/// for a group with a group volume, a lease that the member renews after
/// each good write of its slot (see `crate::cluster`'s group rules). The
/// lease is checked at every use, so a master frozen past it acts on
/// nothing when it thaws, whichever of its tasks runs first.
#[derive(Debug)]
pub struct MasterGate {
    open: AtomicBool,
    /// None: no lease (no group volume).
    lease: Mutex<Option<Instant>>,
}

impl Default for MasterGate {
    fn default() -> MasterGate {
        MasterGate {
            open: AtomicBool::new(true),
            lease: Mutex::new(None),
        }
    }
}

impl MasterGate {
    /// Opens or closes the gate.
    pub fn set(&self, open: bool) {
        self.open.store(open, Ordering::Relaxed);
    }

    /// The lease now ends at `until`.
    pub fn lease_until(&self, until: Instant) {
        *lock(&self.lease) = Some(until);
    }

    /// Whether this host acts as master at `now`.
    pub fn is_open(&self, now: Instant) -> bool {
        self.open.load(Ordering::Relaxed) && lock(&self.lease).is_none_or(|until| now < until)
    }
}
