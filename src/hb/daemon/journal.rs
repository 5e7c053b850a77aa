//! hbd's events: what happened, for `hbctl hb events`, the metrics and the
//! operator. Kept in memory (the latest [`EVENTS_KEPT`]) and appended to
//! `data_dir/events.jsonl`. Every task records events (the tick, the UDP
//! receivers, the control server's tasks, the failover and analysis tasks,
//! the cluster member); each record takes the one lock briefly.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::lock::lock;
use crate::hb::api::{Event, Source};
use crate::hb::logic::analysis::Analysis;
use crate::hb::logic::table::now_ms;
use hbcore::vocab::Level;

/// Events kept in memory for `hbctl hb events`.
const EVENTS_KEPT: usize = 1000;

/// The events: the latest in memory, all of them in `events.jsonl`.
pub struct Journal {
    events: Mutex<VecDeque<Event>>,
    path: PathBuf,
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

impl Journal {
    /// The journal kept in `path`, with the events recorded there before.
    pub fn open(path: PathBuf) -> Journal {
        Journal {
            events: Mutex::new(load_events(&path)),
            path,
        }
    }

    /// Records an event (memory and events.jsonl).
    pub fn event(&self, source: Source, level: Option<Level>, part: &str, text: String) {
        self.record(Event {
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
        self.record(Event {
            time_ms: now_ms(),
            source: Source::Local,
            level,
            part: "analysis".into(),
            text,
            analysis: Some(Box::new(analysis.clone())),
        });
    }

    fn record(&self, event: Event) {
        if let Ok(line) = serde_json::to_string(&event) {
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .and_then(|mut f| writeln!(f, "{line}"));
            if let Err(e) = appended {
                tracing::warn!("cannot record an event in {}: {e}", self.path.display());
            }
        }
        let mut events = lock(&self.events);
        events.push_back(event);
        if events.len() > EVENTS_KEPT {
            events.pop_front();
        }
    }

    /// The latest `limit` events, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<Event> {
        let events = lock(&self.events);
        events
            .iter()
            .skip(events.len().saturating_sub(limit))
            .cloned()
            .collect()
    }
}
