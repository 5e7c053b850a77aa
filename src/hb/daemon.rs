//! The hbd daemon: one tick per interval sends (Fig 6), reads the mirrors
//! and evaluates (Fig 7), decides failover, and runs the local checks (Fig 10);
//! a UDP task receives network heartbeats; a control task answers `hbctl hb`.
//!
//! ```text
//!  tick ─┬─ Beat{serial+1, now, outbox, ack} ─┬─> UDP to each peer address
//!        │                                    └─> one 4 KiB write to each PVOL path
//!        ├─ read slot 0 of each SVOL path ─> Checker::mirror_read ─┐
//!  UDP ──┼─────────────────────────────────> Checker::network_beat ┼─> absorb controls, acks
//!        ├─ Checker::evaluate ─> transitions (log, events)         │
//!        ├─ Checker::failover_reason ─> take over pairs, run hook (once)
//!        └─ local checks ─> failure notices into the outbox
//! ```

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::{UdpSocket, UnixListener};

use super::api::{Event, HbReply, HbRequest, Source};
use super::config::{CheckConfig, Config};
use super::message::{
    next_serial, Beat, Control, ControlBody, MessageError, Notice, Procedure, SLOT,
};
use super::table::{now_ms, Checker, DeviceStatus, Direction, Enable, Table};
use hbcore::align::AlignedBuf;
use hbcore::control::{PairInfo, PairInstall, PairStatus, PairTakeover, Reply, Request};
use hbcore::daemon::Shutdown;
use hbcore::jsonl;
use hbcore::vocab::Level;
use hbcore::vocab::{Kind, Role};

/// Events kept in memory for `hbctl hb events`.
const EVENTS_KEPT: usize = 1000;
/// Longest the table file may lag behind counts and last-seen times.
const TABLE_SAVE_EVERY: Duration = Duration::from_secs(10);
/// Control messages carried at most in one heartbeat.
const OUTBOX_MAX: usize = 8;

/// One host's heartbeat check.
struct Hbd {
    config: Config,
    key: Vec<u8>,
    checker: Mutex<Checker>,
    events: Mutex<VecDeque<Event>>,
    udp: Option<UdpSocket>,
    /// Last outcome of each local check: true while it passes.
    checks_ok: Mutex<HashMap<String, bool>>,
    table_path: PathBuf,
    events_path: PathBuf,
    files: Arc<OpenFiles>,
    saved_at: Mutex<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values stay consistent across a panic, so a poisoned lock is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs hbd with `config` until `shutdown` resolves.
pub async fn run(config: Config, shutdown: Shutdown) -> anyhow::Result<()> {
    let key = config.key()?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data_dir {}", config.data_dir.display()))?;
    let table_path = config.data_dir.join("table.json");
    let events_path = config.data_dir.join("events.jsonl");
    let mut table = match std::fs::read(&table_path) {
        Ok(bytes) => {
            let mut t: Table = serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "status table {} is damaged; move it away to start afresh",
                    table_path.display()
                )
            })?;
            tracing::info!(path = %table_path.display(), serial = t.serial, "resuming the status table");
            // Failover needs fresh evidence that the peer was alive.
            t.armed = false;
            t.network_configured = config.network.is_some();
            t.group = config.group;
            t
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Table::new(&config.host, config.group, config.network.is_some())
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", table_path.display())),
    };
    for m in &config.mirrors {
        if let Some(p) = &m.pvol {
            table.install(&m.name, p.clone(), Direction::Send, m.pair.clone());
        } else if let Some(s) = &m.svol {
            table.install(&m.name, s.clone(), Direction::Receive, m.pair.clone());
        }
    }
    let udp = match &config.network {
        Some(n) => Some(UdpSocket::bind(n.listen).await.with_context(|| {
            format!(
                "cannot listen for heartbeats on {} (network.listen)",
                n.listen
            )
        })?),
        None => None,
    };
    let control = jsonl::bind(&config.control_socket).with_context(|| {
        format!(
            "cannot open the control socket {}",
            config.control_socket.display()
        )
    })?;
    let checker = Checker::new(
        table,
        config.peers.clone(),
        config.timeout(),
        config.interval(),
        Instant::now(),
    );
    let hbd = Arc::new(Hbd {
        key,
        checker: Mutex::new(checker),
        events: Mutex::new(load_events(&events_path)),
        udp,
        checks_ok: Mutex::new(HashMap::new()),
        table_path,
        events_path,
        files: Arc::new(OpenFiles::default()),
        saved_at: Mutex::new(Instant::now()),
        config,
    });
    hbd.save();
    tracing::info!(
        host = %hbd.config.host,
        group = ?hbd.config.group,
        interval_ms = hbd.config.interval_ms,
        timeout_ms = hbd.config.timeout_ms,
        "hbd ready"
    );

    let receiver = tokio::spawn(Arc::clone(&hbd).receive_network());
    let controller = tokio::spawn(Arc::clone(&hbd).serve(control));
    let ticker = tokio::spawn(Arc::clone(&hbd).tick_loop());
    shutdown.await;
    ticker.abort();
    receiver.abort();
    controller.abort();
    hbd.save();
    let _ = std::fs::remove_file(&hbd.config.control_socket);
    tracing::info!("hbd stopped");
    Ok(())
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

/// Opens a heartbeat volume (file or device), with O_DIRECT where the filesystem allows it.
fn open_slot(path: &Path, write: bool) -> std::io::Result<std::fs::File> {
    let open = |direct: bool| {
        let mut o = std::fs::OpenOptions::new();
        if write {
            o.write(true);
        } else {
            o.read(true);
        }
        if direct {
            o.custom_flags(libc::O_DIRECT);
        }
        o.open(path)
    };
    match open(true) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => open(false),
        other => other,
    }
}

/// Heartbeat files kept open between ticks (a FUSE open costs more round
/// trips than the write itself); a handle that fails is dropped and reopened.
#[derive(Default)]
struct OpenFiles(Mutex<HashMap<(PathBuf, bool), Arc<std::fs::File>>>);

impl OpenFiles {
    fn get(&self, path: &Path, write: bool) -> std::io::Result<Arc<std::fs::File>> {
        let key = (path.to_path_buf(), write);
        if let Some(f) = lock(&self.0).get(&key) {
            return Ok(Arc::clone(f));
        }
        let f = Arc::new(open_slot(path, write)?);
        lock(&self.0).insert(key, Arc::clone(&f));
        Ok(f)
    }

    /// Runs `io` on the open file, reopening once if the kept handle failed.
    fn with<T>(
        &self,
        path: &Path,
        write: bool,
        io: impl Fn(&std::fs::File) -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        match io(self.get(path, write)?.as_ref()) {
            Ok(v) => Ok(v),
            Err(_) => {
                lock(&self.0).remove(&(path.to_path_buf(), write));
                io(self.get(path, write)?.as_ref())
            }
        }
    }
}

/// Writes one message as slot 0 of a PVOL, with one aligned write.
fn write_slot(files: &OpenFiles, path: &Path, frame: &[u8]) -> std::io::Result<()> {
    let mut buf = AlignedBuf::zeroed(SLOT);
    buf.as_mut_slice()[..frame.len()].copy_from_slice(frame);
    files.with(path, true, |f| f.write_all_at(buf.as_slice(), 0))
}

/// Reads slot 0 of an SVOL.
fn read_slot(files: &OpenFiles, path: &Path) -> std::io::Result<AlignedBuf> {
    files.with(path, false, |f| {
        let mut buf = AlignedBuf::zeroed(SLOT);
        f.read_exact_at(buf.as_mut_slice(), 0)?;
        Ok(buf)
    })
}

impl Hbd {
    fn checker(&self) -> MutexGuard<'_, Checker> {
        lock(&self.checker)
    }

    /// Persists the table (a file, and the table volume if configured).
    fn save(&self) {
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
            let mut buf = AlignedBuf::zeroed(text.len().div_ceil(SLOT) * SLOT);
            buf.as_mut_slice()[..text.len()].copy_from_slice(&text);
            if let Err(e) = open_slot(volume, true).and_then(|f| f.write_all_at(buf.as_slice(), 0))
            {
                tracing::warn!(path = %volume.display(), "cannot keep the status table on its volume: {e}");
            }
        }
    }

    fn event(&self, source: Source, level: Option<Level>, part: &str, text: String) {
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

    /// Queues a control message for the peer (carried by every heartbeat until acknowledged).
    fn queue(&self, body: ControlBody) {
        let mut c = self.checker();
        c.table.last_control += 1;
        let id = c.table.last_control;
        c.table.outbox.push(Control { id, body });
        if c.table.outbox.len() > OUTBOX_MAX {
            let dropped = c.table.outbox.remove(0);
            tracing::warn!(
                id = dropped.id,
                "control outbox full (the peer acknowledges nothing): dropped the oldest message"
            );
        }
    }

    /// Fig 6: the next heartbeat, signed.
    fn next_frame(&self) -> Option<(u32, Vec<u8>)> {
        let mut c = self.checker();
        let t = &mut c.table;
        t.serial = next_serial(t.serial);
        let mut beat = Beat {
            serial: t.serial,
            time_ms: now_ms(),
            sender: t.host.clone(),
            group: t.group,
            ack: t.received_control,
            controls: t.outbox.clone(),
        };
        loop {
            match beat.encode(&self.key) {
                Ok(frame) => return Some((beat.serial, frame)),
                Err(MessageError::TooLarge(_)) if !beat.controls.is_empty() => {
                    // Fit what fits; the rest rides later heartbeats.
                    beat.controls.pop();
                }
                Err(e) => {
                    tracing::error!("cannot encode a heartbeat: {e}");
                    return None;
                }
            }
        }
    }

    async fn tick_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.tick().await;
        }
    }

    async fn tick(self: &Arc<Self>) {
        self.send().await;
        self.receive_mirrors().await;
        let now = Instant::now();
        let (transitions, reason) = {
            let mut c = self.checker();
            let transitions = c.evaluate(now);
            let reason = c.failover_reason();
            if reason.is_some() {
                c.table.failed_over = true;
            }
            (transitions, reason)
        };
        let changed = !transitions.is_empty() || !self.checker().table.outbox.is_empty();
        for t in transitions {
            if t.failed {
                tracing::warn!(channel = %t.channel, "heartbeat channel FAILED: {}", t.why);
                self.event(
                    Source::Local,
                    None,
                    &t.channel,
                    format!("FAILED: {}", t.why),
                );
            } else {
                tracing::info!(channel = %t.channel, "heartbeat channel back to ENABLE: {}", t.why);
                self.event(
                    Source::Local,
                    None,
                    &t.channel,
                    format!("ENABLE again: {}", t.why),
                );
            }
        }
        if let Some(reason) = reason {
            let silent = self.checker().silent_for(now).unwrap_or_default();
            self.save();
            let hbd = Arc::clone(self);
            tokio::spawn(async move { hbd.fail_over(reason, silent).await });
        }
        self.run_checks().await;
        // Counts and last-seen times may lag on disk; changes of substance
        // (transitions, controls, failover) are saved where they happen.
        let due = lock(&self.saved_at).elapsed() >= TABLE_SAVE_EVERY;
        if changed || due {
            self.save();
        }
    }

    /// Fig 6: to the network (unless disabled) and to every usable PVOL.
    async fn send(&self) {
        let Some((serial, frame)) = self.next_frame() else {
            return;
        };
        let (network, targets) = {
            let c = self.checker();
            let t = &c.table;
            // Unacknowledged control messages (a procedure change that turns
            // off the last channel, say) still travel every channel until the
            // peer acknowledges them.
            let controls = !t.outbox.is_empty();
            let targets: Vec<(String, PathBuf)> = t
                .devices
                .iter()
                .filter(|d| {
                    d.direction == Direction::Send
                        && d.status != DeviceStatus::Null
                        && (controls || (t.mirrors_wanted && d.wanted))
                })
                .filter_map(|d| d.address.clone().map(|a| (d.name.clone(), a)))
                .collect();
            // FAILED channels are still used, so they can recover.
            (
                controls || (t.network_wanted && t.network_enable != Enable::Disable),
                targets,
            )
        };
        if let (true, Some(udp), Some(net)) = (network, &self.udp, &self.config.network) {
            for peer in &net.peers {
                if let Err(e) = udp.send_to(&frame, peer).await {
                    tracing::debug!(peer = %peer, "network heartbeat not sent: {e}");
                }
            }
        }
        let deadline = self.config.interval();
        for (name, path) in targets {
            let frame = frame.clone();
            let shown = path.display().to_string();
            let written = tokio::time::timeout(deadline, {
                let files = Arc::clone(&self.files);
                tokio::task::spawn_blocking(move || write_slot(&files, &path, &frame))
            })
            .await;
            let result = match written {
                Ok(Ok(Ok(()))) => Ok(serial),
                Ok(Ok(Err(e))) => Err(format!("cannot write {shown}: {e}")),
                Ok(Err(e)) => Err(format!("write of {shown} failed: {e}")),
                Err(_) => Err(format!("write of {shown} took longer than the interval")),
            };
            self.checker().mirror_written(&name, result);
        }
    }

    /// Fig 7: read every receiving mirror in use.
    async fn receive_mirrors(&self) {
        let sources: Vec<(String, PathBuf)> = {
            let c = self.checker();
            let t = &c.table;
            t.devices
                .iter()
                .filter(|d| {
                    d.direction == Direction::Receive
                        && t.mirrors_wanted
                        && d.wanted
                        && d.status != DeviceStatus::Null
                })
                .filter_map(|d| d.address.clone().map(|a| (d.name.clone(), a)))
                .collect()
        };
        let deadline = self.config.interval();
        for (name, path) in sources {
            let shown = path.display().to_string();
            let read = tokio::time::timeout(deadline, {
                let files = Arc::clone(&self.files);
                tokio::task::spawn_blocking(move || read_slot(&files, &path))
            })
            .await;
            let beat = match read {
                Ok(Ok(Ok(buf))) => {
                    Beat::decode(buf.as_slice(), &self.key).map_err(|e| format!("{shown}: {e}"))
                }
                Ok(Ok(Err(e))) => Err(format!("cannot read {shown}: {e}")),
                Ok(Err(e)) => Err(format!("read of {shown} failed: {e}")),
                Err(_) => Err(format!("read of {shown} took longer than the interval")),
            };
            let seen = self.checker().mirror_read(
                &name,
                beat.as_ref().map_err(String::clone),
                Instant::now(),
            );
            if let (Ok(beat), super::table::Observation::Advanced) = (&beat, seen) {
                self.absorb(beat).await;
            }
        }
    }

    async fn receive_network(self: Arc<Self>) {
        let Some(udp) = &self.udp else { return };
        let mut buf = vec![0u8; 65536];
        let mut complained: HashMap<String, Instant> = HashMap::new();
        loop {
            let (n, from) = match udp.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("network heartbeat receive failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let verdict = Beat::decode(&buf[..n], &self.key)
                .map_err(|e| e.to_string())
                .and_then(|beat| {
                    let seen = self.checker().network_beat(&beat, Instant::now())?;
                    Ok((beat, seen))
                });
            match verdict {
                Ok((beat, super::table::Observation::Advanced)) => self.absorb(&beat).await,
                Ok(_) => {}
                Err(why) => {
                    // Say it once a minute per sender address, not at every datagram.
                    let key = format!("{from}: {why}");
                    if complained
                        .get(&key)
                        .is_none_or(|t| t.elapsed() > Duration::from_secs(60))
                    {
                        tracing::warn!(%from, "invalid network heartbeat ignored: {why}");
                        complained.insert(key, Instant::now());
                    }
                }
            }
        }
    }

    /// Takes the acknowledgement and the new control messages of a valid heartbeat.
    async fn absorb(&self, beat: &Beat) {
        let fresh: Vec<Control> = {
            let mut c = self.checker();
            let t = &mut c.table;
            t.outbox.retain(|ctl| ctl.id > beat.ack);
            let fresh: Vec<Control> = beat
                .controls
                .iter()
                .filter(|ctl| ctl.id > t.received_control)
                .cloned()
                .collect();
            if let Some(last) = fresh.last() {
                t.received_control = last.id;
            }
            fresh
        };
        let any = !fresh.is_empty();
        for ctl in fresh {
            self.apply(&beat.sender, ctl.body).await;
        }
        if any {
            self.save();
        }
    }

    /// Applies a control message from the peer.
    async fn apply(&self, peer: &str, body: ControlBody) {
        match body {
            ControlBody::Activate { mirror, svol, path } => {
                let address = path
                    .map(PathBuf::from)
                    .or_else(|| self.config.volume_dir.as_ref().map(|d| d.join(&svol)));
                match address {
                    Some(address) => {
                        tracing::info!(mirror = %mirror, path = %address.display(), "heartbeat mirror activated by {peer}: reading its SVOL");
                        let mut c = self.checker();
                        c.reset_mirror(&mirror);
                        c.table
                            .install(&mirror, address.clone(), Direction::Receive, None);
                        drop(c);
                        self.event(
                            Source::Peer,
                            None,
                            &format!("mirror {mirror}"),
                            format!("installed by {peer}: SVOL {} registered", address.display()),
                        );
                    }
                    None => {
                        let why = format!("cannot register the SVOL '{svol}' of mirror {mirror} activated by {peer}: set volume_dir in hbd's config, or install with --svol-path");
                        tracing::warn!("{why}");
                        self.event(Source::Local, None, &format!("mirror {mirror}"), why);
                    }
                }
            }
            ControlBody::Deactivate { mirror } => {
                let removed = {
                    let mut c = self.checker();
                    c.reset_mirror(&mirror);
                    c.table.uninstall(&mirror)
                };
                if removed {
                    tracing::info!(mirror = %mirror, "heartbeat mirror de-activated by {peer}");
                    self.event(
                        Source::Peer,
                        None,
                        &format!("mirror {mirror}"),
                        format!("de-installed by {peer}"),
                    );
                }
            }
            ControlBody::Procedure(p) => {
                let text = self.set_procedure(&p);
                tracing::info!("checking procedure changed by {peer}: {text}");
                self.event(
                    Source::Peer,
                    None,
                    "procedure",
                    format!("changed by {peer}: {text}"),
                );
            }
            ControlBody::Notice(n) => self.notice_received(n).await,
        }
    }

    /// Fig 8, steps 810/820 (and 840/850 at the peer). Returns what changed.
    fn set_procedure(&self, p: &Procedure) -> String {
        let mut c = self.checker();
        let t = &mut c.table;
        let mut said = vec![];
        if let Some(on) = p.network {
            t.network_wanted = on;
            said.push(format!("network {}", on_off(on)));
        }
        if let Some(on) = p.mirrors {
            t.mirrors_wanted = on;
            said.push(format!("mirrors {}", on_off(on)));
        }
        if let Some((name, on)) = &p.mirror {
            if let Some(d) = t
                .devices
                .iter_mut()
                .find(|d| d.name == *name && d.status != DeviceStatus::Null)
            {
                d.wanted = *on;
                said.push(format!("mirror {name} {}", on_off(*on)));
            }
        }
        said.join(", ")
    }

    async fn notice_received(&self, n: Notice) {
        let text = format!("{} at {}: {} ({})", n.level, n.host, n.part, n.info);
        if n.level.alerts() {
            tracing::error!("failure notice from the peer: {text}");
        } else {
            tracing::warn!("failure notice from the peer: {text}");
        }
        self.event(
            Source::Peer,
            Some(n.level),
            &n.part,
            format!("{} ({}) detected at {}", n.info, n.level, n.time_ms),
        );
        if let (true, Some(alert)) = (n.level.alerts(), &self.config.failover.alert) {
            let env = vec![
                ("HBD_EVENT", "notice".to_string()),
                ("HBD_LEVEL", n.level.to_string()),
                ("HBD_PART", n.part.clone()),
                ("HBD_INFO", n.info.clone()),
                ("HBD_TIME_MS", n.time_ms.to_string()),
                ("HBD_FROM", n.host.clone()),
                ("HBD_HOST", self.config.host.clone()),
            ];
            run_command("alert", alert, env, Duration::from_secs(30)).await;
        }
    }

    /// Fig 7, step 740: take over the data pairs and run the hook, once.
    async fn fail_over(&self, reason: String, silent: Duration) {
        tracing::error!("FAILOVER: {reason}");
        self.event(
            Source::Local,
            Some(Level::SystemDown),
            "failover",
            reason.clone(),
        );
        let mut taken = vec![];
        for pair in &self.config.failover.take_over {
            let socket = self.config.failover.mirrord_socket.clone();
            let request = Request::PairTakeover(PairTakeover { name: pair.clone() });
            let result =
                tokio::task::spawn_blocking(move || jsonl::call::<_, Reply>(&socket, &request))
                    .await;
            let outcome = match result {
                Ok(Ok(Reply::Done(text))) => {
                    tracing::info!(pair = %pair, "taken over: {text}");
                    "ok".to_string()
                }
                Ok(Ok(_)) => "ok".to_string(),
                Ok(Err(e)) => {
                    tracing::error!(pair = %pair, "takeover failed: {e}");
                    format!("failed: {e}")
                }
                Err(e) => format!("failed: {e}"),
            };
            self.event(
                Source::Local,
                None,
                &format!("pair {pair}"),
                format!("takeover {outcome}"),
            );
            taken.push(format!(
                "{pair}:{}",
                if outcome == "ok" { "ok" } else { "failed" }
            ));
        }
        if let Some(hook) = &self.config.failover.hook {
            let table = serde_json::to_string(&self.checker().table).unwrap_or_default();
            let env = vec![
                ("HBD_EVENT", "failover".to_string()),
                ("HBD_REASON", reason),
                ("HBD_HOST", self.config.host.clone()),
                ("HBD_PEERS", self.config.peers.join(",")),
                ("HBD_TAKEN_OVER", taken.join(",")),
                ("HBD_SILENT_FOR_MS", silent.as_millis().to_string()),
                ("HBD_TABLE", table),
            ];
            run_command("failover hook", hook, env, Duration::from_secs(300)).await;
        }
    }

    /// Fig 10: run the local checks; a check that starts failing sends a notice.
    async fn run_checks(&self) {
        let deadline = self.config.interval().max(Duration::from_millis(100));
        let results =
            futures_util::future::join_all(self.config.checks.iter().map(|c| check(c, deadline)))
                .await;
        for (check, failure) in self.config.checks.iter().zip(results) {
            let was_ok = lock(&self.checks_ok)
                .insert(check.part.clone(), failure.is_none())
                .unwrap_or(true);
            match failure {
                Some(info) if was_ok => {
                    let notice = Notice {
                        part: check.part.clone(),
                        level: check.level,
                        info: info.clone(),
                        time_ms: now_ms(),
                        host: self.config.host.clone(),
                    };
                    tracing::warn!(part = %check.part, level = %notice.level, "local failure: {info}; notifying the peer");
                    self.event(
                        Source::Local,
                        Some(check.level),
                        &check.part,
                        format!("failed: {info}"),
                    );
                    self.queue(ControlBody::Notice(notice));
                }
                None if !was_ok => {
                    tracing::info!(part = %check.part, "local check passes again");
                    self.event(Source::Local, None, &check.part, "passes again".into());
                }
                _ => {}
            }
        }
    }

    async fn serve(self: Arc<Self>, listener: UnixListener) {
        jsonl::serve(
            listener,
            "hbmirror::hb::api::HbRequest",
            move |request: HbRequest| {
                let hbd = Arc::clone(&self);
                async move { hbd.dispatch(request).await }
            },
            std::future::pending(),
        )
        .await;
    }

    async fn dispatch(&self, request: HbRequest) -> Result<HbReply, String> {
        match request {
            HbRequest::Status => Ok(HbReply::Table(Box::new(self.checker().table.clone()))),
            HbRequest::Events { limit } => {
                let events = lock(&self.events);
                Ok(HbReply::Events(
                    events
                        .iter()
                        .skip(events.len().saturating_sub(limit))
                        .cloned()
                        .collect(),
                ))
            }
            HbRequest::Install {
                pvol,
                pair,
                name,
                svol,
                svol_path,
            } => self.install(pvol, pair, name, svol, svol_path).await,
            HbRequest::Uninstall { name } => self.uninstall(&name).await,
            HbRequest::Procedure(p) => {
                if let Some((name, _)) = &p.mirror {
                    if self.checker().table.device(name).is_none() {
                        return Err(format!(
                            "no heartbeat mirror '{name}' here; `hbctl hb status` lists them"
                        ));
                    }
                }
                if p.network == Some(true) && self.config.network.is_none() {
                    return Err("this hbd has no [network] section; the network channel cannot be turned on".into());
                }
                let text = self.set_procedure(&p);
                self.queue(ControlBody::Procedure(p));
                self.save();
                self.event(
                    Source::Local,
                    None,
                    "procedure",
                    format!("changed here: {text}"),
                );
                Ok(HbReply::Done(format!(
                    "checking procedure: {text}; forwarded to the peer over a working channel"
                )))
            }
            HbRequest::Rearm => {
                let mut c = self.checker();
                c.table.failed_over = false;
                c.table.armed = false;
                Ok(HbReply::Done("failover re-armed: it happens again once the peer has been seen alive and then every channel fails".into()))
            }
        }
    }

    /// Fig 4: register the PVOL, enable it, protect its pair, tell the peer.
    async fn install(
        &self,
        pvol: PathBuf,
        pair: Option<String>,
        name: Option<String>,
        svol: Option<String>,
        svol_path: Option<String>,
    ) -> Result<HbReply, String> {
        let file_name = || pvol.file_name().map(|n| n.to_string_lossy().into_owned());
        let mut svol_name = svol;
        if let Some(pair) = &pair {
            let info = self.mirrord_pair(pair).await?;
            if info.kind != Kind::Heartbeat {
                return Err(format!("pair '{pair}' is a data pair: production data mirrors are never used for heartbeats (they get split for backups); create a heartbeat pair with `hbctl pair create ... --kind heartbeat`"));
            }
            if info.role != Role::Pvol {
                return Err(format!("pair '{pair}' has its SVOL at this site; install the mirror at site '{}', which writes its PVOL", info.peer));
            }
            svol_name = svol_name.or(Some(info.svol));
            self.mirrord(Request::PairInstall(PairInstall {
                name: pair.clone(),
                installed: true,
            }))
            .await?;
        }
        let name = name
            .or_else(|| pair.clone())
            .or_else(file_name)
            .ok_or_else(|| format!("cannot name a mirror after {}; give --name", pvol.display()))?;
        if self.checker().table.device(&name).is_some() {
            return Err(format!("heartbeat mirror '{name}' is installed already; `hbctl hb mirror uninstall {name}` first"));
        }
        // The PVOL must take a heartbeat now: one write proves it.
        let frame = self
            .next_frame()
            .map(|(_, f)| f)
            .ok_or("cannot encode a heartbeat")?;
        let probe = pvol.clone();
        let files = Arc::clone(&self.files);
        tokio::task::spawn_blocking(move || write_slot(&files, &probe, &frame))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot write the heartbeat PVOL {}: {e}", pvol.display()))?;
        let svol = svol_name.unwrap_or_else(|| name.clone());
        self.checker()
            .table
            .install(&name, pvol.clone(), Direction::Send, pair.clone());
        self.queue(ControlBody::Activate {
            mirror: name.clone(),
            svol: svol.clone(),
            path: svol_path,
        });
        self.save();
        self.event(
            Source::Local,
            None,
            &format!("mirror {name}"),
            format!("installed: PVOL {}", pvol.display()),
        );
        tracing::info!(mirror = %name, pvol = %pvol.display(), "heartbeat mirror installed; activation sent to the peer");
        let protected = pair
            .map(|p| format!("; pair '{p}' is protected from split"))
            .unwrap_or_default();
        Ok(HbReply::Done(format!("heartbeat mirror '{name}' installed: writing {}; the peer registers its SVOL '{svol}'{protected}", pvol.display())))
    }

    /// Fig 5: vacate the entry, lift the pair's protection, tell the peer.
    async fn uninstall(&self, name: &str) -> Result<HbReply, String> {
        let device = self.checker().table.device(name).cloned().ok_or_else(|| {
            format!("no heartbeat mirror '{name}' here; `hbctl hb status` lists them")
        })?;
        if let Some(pair) = &device.pair {
            self.mirrord(Request::PairInstall(PairInstall {
                name: pair.clone(),
                installed: false,
            }))
            .await?;
        }
        {
            let mut c = self.checker();
            c.reset_mirror(name);
            c.table.uninstall(name);
        }
        if device.direction == Direction::Send {
            self.queue(ControlBody::Deactivate {
                mirror: name.into(),
            });
        }
        self.save();
        self.event(
            Source::Local,
            None,
            &format!("mirror {name}"),
            "de-installed".into(),
        );
        tracing::info!(mirror = name, "heartbeat mirror de-installed");
        let lifted = device
            .pair
            .map(|p| format!("; pair '{p}' may now be split"))
            .unwrap_or_default();
        Ok(HbReply::Done(format!(
            "heartbeat mirror '{name}' de-installed{lifted}"
        )))
    }

    async fn mirrord(&self, request: Request) -> Result<Reply, String> {
        let socket = self.config.failover.mirrord_socket.clone();
        tokio::task::spawn_blocking(move || jsonl::call::<_, Reply>(&socket, &request))
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("mirrord: {e}"))
    }

    async fn mirrord_pair(&self, pair: &str) -> Result<PairInfo, String> {
        match self
            .mirrord(Request::PairStatus(PairStatus {
                name: Some(pair.into()),
            }))
            .await?
        {
            Reply::Pairs(mut p) if !p.is_empty() => Ok(p.remove(0)),
            _ => Err(format!("mirrord has no pair '{pair}'")),
        }
    }
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// One local check; `Some(part information)` when it fails.
async fn check(c: &CheckConfig, deadline: Duration) -> Option<String> {
    if let Some(cmd) = &c.command {
        let child = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .status();
        return match tokio::time::timeout(deadline, child).await {
            Ok(Ok(s)) if s.success() => None,
            Ok(Ok(s)) => Some(format!("command `{cmd}` exited with {s}")),
            Ok(Err(e)) => Some(format!("command `{cmd}` could not run: {e}")),
            Err(_) => Some(format!("command `{cmd}` took longer than {deadline:?}")),
        };
    }
    if let Some(path) = &c.writable {
        let p = path.clone();
        let opened = tokio::task::spawn_blocking(move || {
            std::fs::OpenOptions::new().write(true).open(&p).map(|_| ())
        })
        .await;
        return match opened {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("volume {} is not writable: {e}", path.display())),
            Err(e) => Some(format!("volume {}: {e}", path.display())),
        };
    }
    if let Some(address) = &c.network {
        return match tokio::time::timeout(deadline, tokio::net::TcpStream::connect(address)).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(format!("network {address} unreachable: {e}")),
            Err(_) => Some(format!(
                "network {address}: no connection within {deadline:?}"
            )),
        };
    }
    None
}

/// Runs a configured command with `env`, logging its output.
async fn run_command(what: &str, command: &str, env: Vec<(&str, String)>, limit: Duration) {
    let child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .envs(env)
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(limit, child).await {
        Ok(Ok(out)) => {
            let text = String::from_utf8_lossy(&out.stdout);
            let err = String::from_utf8_lossy(&out.stderr);
            if out.status.success() {
                tracing::info!("{what} `{command}` done: {}{}", text.trim(), err.trim());
            } else {
                tracing::error!(
                    "{what} `{command}` exited with {}: {}{}",
                    out.status,
                    text.trim(),
                    err.trim()
                );
            }
        }
        Ok(Err(e)) => tracing::error!("{what} `{command}` could not run: {e}"),
        Err(_) => tracing::error!("{what} `{command}` ran longer than {limit:?} and was killed"),
    }
}
