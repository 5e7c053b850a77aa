//! `hbctl monitor`: a live full-screen view of this site, like drbdmon:
//! pairs with state, lag, copy progress and rate, link RTT; hbd's channels
//! with health and last-seen; recent events. Refreshed about once a second
//! by a background thread (a slow daemon never freezes the keys); drawn by
//! ratatui, which writes only the cells that changed (no flicker).
//!
//! Keys: `q`/`Esc`/`Ctrl-C` quit, `Tab`/`→` and `Shift-Tab`/`←` switch views,
//! `1`-`4` pick one (overview, pairs, heartbeat, events), `r` refreshes now.
//! Not on a terminal (a pipe, a log): one plain snapshot (JSON with `--json`).

mod rows;
mod view;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};
use hbcore::control::{self, PairInfo, Reply, Request};
use hbcore::jsonl::{self, ClientError};
use hbmirror::hb::api::{self, Event, Events, HbReply, HbRequest};
use hbmirror::hb::logic::table::Table;

use crate::mirrord::Mirrord;

/// The monitor's options.
#[derive(clap::Args, Debug)]
pub struct MonitorArgs {
    /// mirrord's control socket [default: the global --socket ($HBCTL_SOCKET),
    /// else /run/hbmirror/mirrord.sock]; with the global --storage, mirrord is
    /// reached over the host link instead.
    #[arg(long)]
    pub mirrord: Option<PathBuf>,
    /// hbd's control socket.
    #[arg(long, default_value = api::DEFAULT_SOCKET)]
    pub hbd: PathBuf,
    /// Milliseconds between refreshes.
    #[arg(long, default_value_t = 1000)]
    pub interval_ms: u64,
    /// Recent events shown.
    #[arg(long, default_value_t = 200)]
    pub events: usize,
    /// mirrord over the host link (the global --storage), instead of a socket.
    #[arg(skip)]
    pub remote: Option<Mirrord>,
}

/// What the daemons said at one refresh.
#[derive(Debug)]
pub struct Snapshot {
    /// mirrord's pairs, or why they are not known.
    pub pairs: Result<Vec<PairInfo>, String>,
    /// hbd's status table, or why it is not known.
    pub table: Result<Box<Table>, String>,
    /// hbd's latest events, oldest first.
    pub events: Vec<Event>,
    /// When, ms since the epoch.
    pub time_ms: u64,
}

impl Snapshot {
    /// As JSON: `pairs` and `table` (null when unknown, with `pairs_error` /
    /// `table_error` saying why), `events`, `time_ms`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "pairs": self.pairs.as_ref().ok(),
            "pairs_error": self.pairs.as_ref().err(),
            "table": self.table.as_ref().ok(),
            "table_error": self.table.as_ref().err(),
            "events": self.events,
            "time_ms": self.time_ms,
        })
    }
}

fn why(e: ClientError) -> String {
    hbcore::report::chain(&e)
}

/// Asks both daemons.
pub fn fetch(args: &MonitorArgs) -> Snapshot {
    let status = Request::PairStatus(control::PairStatus { name: None });
    let pairs = match &args.remote {
        Some(remote) => remote.call(&status),
        None => {
            let socket = args.mirrord.as_deref();
            jsonl::call(
                socket.unwrap_or(Path::new(control::DEFAULT_SOCKET)),
                &status,
            )
        }
    };
    let pairs = match pairs {
        Ok(Reply::Pairs(p)) => Ok(p),
        Ok(_) => Err("mirrord answered no pairs".into()),
        Err(e) => Err(why(e)),
    };
    let table = match jsonl::call::<_, HbReply>(&args.hbd, &HbRequest::Status) {
        Ok(HbReply::Table(t)) => Ok(t),
        Ok(_) => Err("hbd answered no table".into()),
        Err(e) => Err(why(e)),
    };
    let events = match jsonl::call::<_, HbReply>(
        &args.hbd,
        &HbRequest::Events(Events { limit: args.events }),
    ) {
        Ok(HbReply::Events(e)) => e,
        _ => Vec::new(),
    };
    Snapshot {
        pairs,
        table,
        events,
        time_ms: hbmirror::hb::logic::table::now_ms(),
    }
}

/// Runs the monitor until a quit key (or prints one snapshot when not on a terminal).
pub fn run(args: MonitorArgs) -> Result<(), ClientError> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        let snapshot = fetch(&args);
        if crate::output::json() {
            crate::print::json(&snapshot.json());
        } else {
            println!("{}", view::plain(&snapshot));
        }
        return Ok(());
    }
    let latest = Arc::new(Mutex::new(fetch(&args)));
    let (wake, woken) = mpsc::channel::<()>();
    let (changed, on_change) = mpsc::channel::<()>();
    let interval = Duration::from_millis(args.interval_ms.max(100));
    {
        let latest = Arc::clone(&latest);
        std::thread::spawn(move || loop {
            match woken.recv_timeout(interval) {
                Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            let snapshot = fetch(&args);
            if let Ok(mut l) = latest.lock() {
                *l = snapshot;
            }
            if changed.send(()).is_err() {
                return;
            }
        });
    }
    let terminal = ratatui::init();
    let result = ui(terminal, &latest, &wake, &on_change);
    ratatui::restore();
    result.map_err(|source| ClientError::Io {
        path: Path::new("/dev/tty").into(),
        source,
    })
}

fn ui(
    mut terminal: ratatui::DefaultTerminal,
    latest: &Mutex<Snapshot>,
    wake: &mpsc::Sender<()>,
    on_change: &mpsc::Receiver<()>,
) -> std::io::Result<()> {
    let mut view = view::View::Overview;
    let mut dirty = true;
    loop {
        if dirty || on_change.try_recv().is_ok() {
            while on_change.try_recv().is_ok() {}
            let snapshot = latest.lock().unwrap_or_else(|e| e.into_inner());
            terminal.draw(|frame| view::draw(frame, &snapshot, view))?;
            dirty = false;
        }
        let deadline = Instant::now() + Duration::from_millis(100);
        if !event::poll(deadline.saturating_duration_since(Instant::now()))? {
            continue;
        }
        match event::read()? {
            TermEvent::Key(key) if key.kind == KeyEventKind::Press => {
                let ctrl_c =
                    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                match key.code {
                    KeyCode::Char('q') | KeyCode::Esc => return Ok(()),
                    _ if ctrl_c => return Ok(()),
                    KeyCode::Tab | KeyCode::Right => view = view.next(),
                    KeyCode::BackTab | KeyCode::Left => view = view.previous(),
                    KeyCode::Char(c @ '1'..='4') => {
                        view = view::View::ALL[c as usize - '1' as usize]
                    }
                    KeyCode::Char('r') => {
                        let _ = wake.send(());
                    }
                    _ => {}
                }
                dirty = true;
            }
            TermEvent::Resize(..) => dirty = true,
            _ => {}
        }
    }
}
