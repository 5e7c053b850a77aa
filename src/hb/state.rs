//! What hbd's tasks share, and its record on disk.
//!
//! [`Hbd`] is one `Arc` for the tick, the UDP receiver, the control server's
//! tasks and the failover task. Its checker (the status table and the
//! channels' watches) is behind one lock, taken briefly and never across
//! an await. The table is kept in `data_dir/table.json` (and on the table
//! volume, if configured), the events in `data_dir/events.jsonl`.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;

use super::api::{Event, Source};
use super::checker::Checker;
use super::config::Config;
use super::error::HbError;
use super::slot::{self, OpenFiles};
use super::table::{now_ms, Direction, Table};
use hbcore::vocab::Level;

/// Events kept in memory for `hbctl hb events`.
const EVENTS_KEPT: usize = 1000;
/// Longest the table file may lag behind counts and last-seen times.
const TABLE_SAVE_EVERY: Duration = Duration::from_secs(10);

/// One host's heartbeat check: what every task of hbd shares.
pub struct Hbd {
    /// The configuration.
    pub config: Config,
    /// The pre-shared key of the heartbeat messages.
    pub key: Vec<u8>,
    /// The network channel's socket, if configured.
    pub udp: Option<UdpSocket>,
    /// Heartbeat volumes kept open between ticks.
    pub files: Arc<OpenFiles>,
    /// Last outcome of each local check: true while it passes.
    pub checks_ok: Mutex<HashMap<String, bool>>,
    checker: Mutex<Checker>,
    events: Mutex<VecDeque<Event>>,
    table_path: PathBuf,
    events_path: PathBuf,
    saved_at: Mutex<Instant>,
}

/// Locks `m`; the values hbd guards stay consistent across a panic, so a
/// poisoned lock is still usable.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn table_path(config: &Config) -> PathBuf {
    config.data_dir.join("table.json")
}

/// The status table to start with: the one kept in data_dir (resumed), or a
/// fresh one; with the mirrors of the config installed.
pub fn load_table(config: &Config) -> Result<Table, HbError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| HbError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let path = table_path(config);
    let mut table = match std::fs::read(&path) {
        Ok(bytes) => {
            let mut t: Table =
                serde_json::from_slice(&bytes).map_err(|source| HbError::TableDamaged {
                    path: path.clone(),
                    source,
                })?;
            tracing::info!(path = %path.display(), serial = t.serial, "resuming the status table");
            // Failover needs fresh evidence that the peer was alive.
            t.armed = false;
            t.network_configured = config.network.is_some();
            t.group = config.group;
            t
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Table::new(&config.host, config.group, config.network.is_some())
        }
        Err(source) => return Err(HbError::TableRead { path, source }),
    };
    for m in &config.mirrors {
        if let Some(p) = &m.pvol {
            table.install(&m.name, p.clone(), Direction::Send, m.pair.clone());
        } else if let Some(s) = &m.svol {
            table.install(&m.name, s.clone(), Direction::Receive, m.pair.clone());
        }
    }
    Ok(table)
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
    /// hbd around `table`, with the events recorded before.
    pub fn new(config: Config, key: Vec<u8>, table: Table, udp: Option<UdpSocket>) -> Hbd {
        let checker = Checker::new(
            table,
            config.peers.clone(),
            config.timeout(),
            config.interval(),
            Instant::now(),
        );
        let events_path = config.data_dir.join("events.jsonl");
        Hbd {
            key,
            udp,
            files: Arc::new(OpenFiles::default()),
            checks_ok: Mutex::new(HashMap::new()),
            checker: Mutex::new(checker),
            events: Mutex::new(load_events(&events_path)),
            table_path: table_path(&config),
            events_path,
            saved_at: Mutex::new(Instant::now()),
            config,
        }
    }

    /// The checker, locked: hold it briefly, never across an await.
    pub fn checker(&self) -> MutexGuard<'_, Checker> {
        lock(&self.checker)
    }

    /// Persists the table (a file, and the table volume if configured).
    pub fn save(&self) {
        *lock(&self.saved_at) = Instant::now();
        let text = match serde_json::to_vec_pretty(&self.checker().table) {
            Ok(t) => t,
            Err(e) => return tracing::error!("cannot serialize the status table: {e}"),
        };
        let tmp = self.table_path.with_extension("json.tmp");
        let written =
            std::fs::write(&tmp, &text).and_then(|()| std::fs::rename(&tmp, &self.table_path));
        if let Err(e) = written {
            tracing::error!(path = %self.table_path.display(), "cannot persist the status table: {e}");
        }
        if let Some(volume) = &self.config.table_volume {
            if let Err(e) = slot::write_table_volume(volume, &text) {
                tracing::warn!(path = %volume.display(), "cannot keep the status table on its volume: {e}");
            }
        }
    }

    /// Saves the table if something of substance `changed`, or if the last
    /// save is old (counts and last-seen times may lag on disk that long).
    pub fn save_if_due(&self, changed: bool) {
        if changed || lock(&self.saved_at).elapsed() >= TABLE_SAVE_EVERY {
            self.save();
        }
    }

    /// Records an event (memory and events.jsonl).
    pub fn event(&self, source: Source, level: Option<Level>, part: &str, text: String) {
        let event = Event {
            time_ms: now_ms(),
            source,
            level,
            part: part.into(),
            text,
        };
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
