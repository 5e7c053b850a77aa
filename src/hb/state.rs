//! What hbd's tasks share, and its record on disk.
//!
//! [`Hbd`] is one `Arc` for the tick, the UDP receiver, the control server's
//! tasks and the failover task. Its checker (the status table and the
//! channels' watches) is behind one lock, taken briefly and never across
//! an await. The table is kept in `data_dir/table.json` and on the table
//! volume, if configured (see [`super::record`]); the events in
//! `data_dir/events.jsonl`.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::analysis::Analysis;
use super::analyzer::Analyses;
use super::api::{Event, Source};
use super::checker::{Checker, Timing};
use super::config::Config;
use super::netio::NetChannel;
use super::record;
use super::slot::OpenFiles;
use super::table::{now_ms, Table};
use hbcore::vocab::Level;

/// Events kept in memory for `hbctl hb events`.
const EVENTS_KEPT: usize = 1000;

/// One host's heartbeat check: what every task of hbd shares.
pub struct Hbd {
    /// The configuration.
    pub config: Config,
    /// The pre-shared key of the heartbeat messages.
    pub key: Vec<u8>,
    /// Each network's socket (`[[networks]]`, or the one `[network]`).
    pub nets: Vec<NetChannel>,
    /// Fault analyses under way.
    pub analyses: Mutex<Analyses>,
    /// Ticks since start (the counters' period is a number of them).
    pub ticks: AtomicU64,
    /// Heartbeat volumes kept open between ticks.
    pub files: Arc<OpenFiles>,
    /// Last outcome of each local check: true while it passes.
    pub checks_ok: Mutex<HashMap<String, bool>>,
    /// When the pairs of mirrors whose protection failed are tried again,
    /// and whether a try is under way.
    pub protect_retry: Mutex<(Instant, bool)>,
    /// The standby has logged that production returned after its failover.
    pub told_returned: AtomicBool,
    /// This host is its group's master (seed 000): it sends and checks the
    /// heartbeats and keeps the table volume. Always, unless a cluster
    /// member with `[cluster] group_members` is not master.
    pub master_gate: AtomicBool,
    /// This run's instance id, uptime and suspend detector.
    pub clock: super::hostclock::HostClock,
    checker: Mutex<Checker>,
    events: Mutex<VecDeque<Event>>,
    table_path: PathBuf,
    events_path: PathBuf,
    /// Held while the table file is written (one writer at a time).
    saving: Mutex<()>,
    /// Held while the table volume is written.
    saving_volume: Mutex<()>,
    /// The last write of the table volume worked (warn once when it stops).
    volume_ok: AtomicBool,
}

/// Locks `m`; the values hbd guards stay consistent across a panic, so a
/// poisoned lock is still usable.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn load_events(path: &Path) -> VecDeque<Event> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut events: VecDeque<Event> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    while events.len() > EVENTS_KEPT {
        events.pop_front();
    }
    events
}

impl Hbd {
    /// hbd around `table`, with the events recorded before; `nets` are the
    /// networks' channels (opened or not).
    pub fn new(config: Config, key: Vec<u8>, table: Table, nets: Vec<NetChannel>) -> Hbd {
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
        Hbd {
            key,
            nets,
            analyses: Mutex::new(Analyses::default()),
            ticks: AtomicU64::new(0),
            files: Arc::new(OpenFiles::default()),
            checks_ok: Mutex::new(HashMap::new()),
            protect_retry: Mutex::new((Instant::now(), false)),
            told_returned: AtomicBool::new(false),
            master_gate: AtomicBool::new(true),
            clock: super::hostclock::HostClock::new(),
            checker: Mutex::new(checker),
            events: Mutex::new(load_events(&events_path)),
            table_path: record::table_path(&config),
            events_path,
            saving: Mutex::new(()),
            saving_volume: Mutex::new(()),
            volume_ok: AtomicBool::new(true),
            config,
        }
    }

    /// Whether this host is its group's master (see `master_gate`).
    pub fn is_group_master(&self) -> bool {
        self.master_gate.load(Ordering::Relaxed)
    }

    /// The checker, locked: hold it briefly, never across an await.
    pub fn checker(&self) -> MutexGuard<'_, Checker> {
        lock(&self.checker)
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
        let _one_writer = lock(&self.saving);
        let Some(text) = self.snapshot(true) else {
            return;
        };
        if let Err(e) = record::write_file(&self.table_path, &text) {
            tracing::error!(path = %self.table_path.display(), "cannot persist the status table: {e}");
        }
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
        let _one_writer = lock(&self.saving_volume);
        let Some(text) = self.snapshot(false) else {
            return;
        };
        match record::write_volume(volume, &self.key, &text) {
            Ok(()) => {
                if !self.volume_ok.swap(true, Ordering::Relaxed) {
                    tracing::info!(path = %volume.display(), "the status table is kept on its volume again");
                }
            }
            Err(e) => {
                if self.volume_ok.swap(false, Ordering::Relaxed) {
                    tracing::warn!(path = %volume.display(), "cannot keep the status table on its volume: {e}");
                }
            }
        }
    }

    /// Records an event (memory and events.jsonl).
    pub fn event(&self, source: Source, level: Option<Level>, part: &str, text: String) {
        self.record_event(Event {
            time_ms: now_ms(),
            source,
            level,
            part: part.into(),
            text,
            analysis: None,
        });
    }

    /// Records the event of a fault analysis, with its evidence.
    pub fn analysis_event(&self, level: Option<Level>, text: String, analysis: &Analysis) {
        self.record_event(Event {
            time_ms: now_ms(),
            source: Source::Local,
            level,
            part: "analysis".into(),
            text,
            analysis: Some(Box::new(analysis.clone())),
        });
    }

    fn record_event(&self, event: Event) {
        if let Ok(line) = serde_json::to_string(&event) {
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.events_path)
                .and_then(|mut f| writeln!(f, "{line}"));
            if let Err(e) = appended {
                tracing::warn!(
                    "cannot record an event in {}: {e}",
                    self.events_path.display()
                );
            }
        }
        let mut events = lock(&self.events);
        events.push_back(event);
        if events.len() > EVENTS_KEPT {
            events.pop_front();
        }
    }

    /// The latest `limit` events, oldest first.
    pub fn recent_events(&self, limit: usize) -> Vec<Event> {
        let events = lock(&self.events);
        events
            .iter()
            .skip(events.len().saturating_sub(limit))
            .cloned()
            .collect()
    }
}
