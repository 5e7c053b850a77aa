//! The member agent inside hbd: holds the MIB, sends notices on state
//! changes only (over every network, to every member's every address),
//! acts on received ones at once, and takes over by itself.
//!
//! - Self-check: hbd's `[[checks]]` of level SYSTEM DOWN or SERIOUS (their
//!   last results, run by hbd's tick) and this site's storage (see
//!   `storage`). One failing: release the floating IPs, send DOWN, stop the
//!   applications. Passing again: validated (see `validate`), then STANDBY;
//!   a failed validation stays DOWN with its reason.
//! - Silence: hbd's all-channels-dead verdict about its peer(s) (the failover
//!   rule, reached by a standby-group host about production): the peer is
//!   marked DOWN and that is sent. A group master's silence is found by its
//!   successor (see `master`), a group member's by its master (see
//!   `liveness`), each marked DOWN the same way.
//! - A MIB adopted from a notice: if this member is the standby assigned to
//!   an application whose active node is DOWN, it takes over (pairs,
//!   start executable, floating IPs), then sends OK (ACTIVE).
//! - A member starting says hello, adopts any newer MIB, releases floating
//!   IPs it does not run, and runs only what the MIB says it runs.

//!
//! This file: the notice receiver (a task per socket) and the run task
//! (every interval: storage probe, master tick, self-check, silence,
//! takeovers); the [`Member`] they act on is in `member`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::actions;
use super::api::Takeover;
use super::member::Member;
use super::mib::{Merge, Mib, NodeState};
use super::notice::{Kind, Notice, MAX_NOTICE};
use super::states;
use super::validate::{validate, Executables};
use crate::hb::daemon::lock::lock;
use hbcore::report;
use hbcore::vocab::Level;

/// Conflicts kept for `hbctl cluster show`.
const CONFLICTS_KEPT: usize = 20;

impl Member {
    /// Receives notices on socket `i`, for ever.
    pub async fn receive(self: Arc<Self>, i: usize) {
        let socket = Arc::clone(&self.sockets[i]);
        let mut buf = vec![0u8; MAX_NOTICE + 1];
        loop {
            let (len, from) = match socket.recv_from(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!("cluster socket: {e}");
                    tokio::time::sleep(self.shared.config.interval()).await;
                    continue;
                }
            };
            match Notice::decode(&buf[..len], &self.shared.key) {
                Ok(notice) => self.handle(notice, from, Instant::now()),
                Err(e) => tracing::debug!("from {from}: {}", report::chain(&e)),
            }
        }
    }

    /// A notice arrived at `at`: merge its MIB, answer an older one, act.
    fn handle(self: &Arc<Self>, notice: Notice, from: SocketAddr, at: Instant) {
        if notice.from == self.me {
            return;
        }
        self.heard_from(&notice.from);
        if self.forming_input(&notice, from) || self.master_input(&notice) {
            return;
        }
        let merged = lock(&self.mib).merge(&notice.mib);
        match merged {
            Merge::Adopted => {
                self.persist(&notice.mib);
                if let Kind::State(state) = notice.kind {
                    let why = notice.reason.as_deref().unwrap_or("");
                    tracing::info!(node = %notice.about, from = %notice.from, "{} is {state} {why}", notice.about);
                    let level = (state == NodeState::Down).then_some(Level::SystemDown);
                    self.event(
                        level,
                        format!("{} is {state} (from {}) {why}", notice.about, notice.from),
                    );
                }
                self.react(at);
            }
            Merge::Older => {
                let reply = self.notice(&self.me, Kind::Sync, None);
                self.send_to(reply, vec![SocketAddr::new(from.ip(), self.port)]);
            }
            Merge::Same => {}
            Merge::Conflict(why) => {
                let text = format!("MIB from {} refused: {why}", notice.from);
                tracing::error!("{text}");
                self.event(Some(Level::Serious), text.clone());
                {
                    let mut c = lock(&self.conflicts);
                    c.push(text);
                    let excess = c.len().saturating_sub(CONFLICTS_KEPT);
                    c.drain(..excess);
                }
                // Never overwritten: the notice's own change is made in our
                // copy, which goes out as the newer version to everyone.
                if notice.mib.cluster_id == lock(&self.mib).cluster_id {
                    let theirs = notice.mib.version;
                    let mut ours = notice.clone();
                    ours.from = self.me.clone();
                    let edit = |mib: &mut Mib| {
                        notice.apply(mib);
                        mib.version = mib.version.max(theirs);
                        true
                    };
                    self.change(ours, Some(&edit), vec![]);
                    self.react(at);
                }
            }
        }
    }

    /// Takes over what the MIB says this member must, each once (`down_at`:
    /// when the news of the failure arrived).
    fn react(self: &Arc<Self>, down_at: Instant) {
        if !self.synced.load(Ordering::Relaxed) || self.self_check() != Some(Ok(())) {
            return;
        }
        let due = states::takeovers(&lock(&self.mib), &self.me);
        for app in due {
            if lock(&self.taking_over).insert(app.clone()) {
                let member = Arc::clone(self);
                tokio::spawn(async move { member.take_over(app, down_at).await });
            }
        }
    }

    /// Takes over `app`: its pairs, its start executable, its floating IPs; then OK.
    async fn take_over(self: Arc<Self>, app: String, down_at: Instant) {
        let Some(a) = self.mib().application(&app).cloned() else {
            lock(&self.taking_over).remove(&app);
            return;
        };
        tracing::warn!(app = %app, from = ?a.active, "taking over");
        let volume_dir = self.shared.config.volume_dir.clone();
        // Nothing is started before its old host is fenced (inside the group).
        if let Some(old) = a.active.as_deref() {
            match self.fence_host(old).await {
                Ok(how) => {
                    tracing::warn!(app = %app, "fence before the takeover: {how}");
                    self.event(None, format!("before taking over {app}: {how}"));
                }
                Err(why) => {
                    let text = format!("takeover of {app} waits: {why}");
                    tracing::error!("{text}");
                    self.event(Some(Level::Serious), text);
                    lock(&self.taking_over).remove(&app);
                    return;
                }
            }
        }
        let done = async {
            let pairs = actions::take_over_pairs(&a, &self.shared.config.mirrord()).await?;
            actions::run(&a.executables.start, &app, &self.me, volume_dir.as_deref()).await?;
            actions::assume_ips(&a).await?;
            Ok::<_, actions::ActionError>(pairs)
        }
        .await;
        match done {
            Ok(pairs) => {
                let ms = down_at.elapsed().as_millis() as u64;
                let text = format!(
                    "took over {app} from {}: {}; floating IPs up {ms} ms after the DOWN",
                    a.active.as_deref().unwrap_or("nobody"),
                    pairs.join(", ")
                );
                tracing::warn!("{text}");
                self.event(Some(Level::Serious), text);
                lock(&self.takeovers).push(Takeover {
                    application: app.clone(),
                    from: a.active.clone(),
                    down_to_ip_ms: ms,
                });
                let mut ok = self.notice(&self.me, Kind::State(NodeState::Active), None);
                ok.application = Some(app.clone());
                self.change(ok, None, vec![]);
            }
            Err(why) => {
                let why = format!("takeover of {app} failed: {}", report::chain(&why));
                tracing::error!("{why}");
                actions::release_ips(&a).await;
                self.go_down(why).await;
            }
        }
        lock(&self.taking_over).remove(&app);
    }

    /// This member's self-check now: None until every check has run once.
    fn self_check(&self) -> Option<Result<(), String>> {
        let ok = self.checks.outcomes();
        let mut failing = vec![];
        for c in self
            .shared
            .config
            .checks
            .iter()
            .filter(|c| c.level.alerts())
        {
            match ok.get(&c.part) {
                None => return None,
                Some(false) => failing.push(format!("check '{}' ({}) fails", c.part, c.level)),
                Some(true) => {}
            }
        }
        if let Some(problem) = lock(&self.storage_problem).as_ref() {
            failing.push(format!("its storage: {problem}"));
        }
        if let Some(why) = self.fenced() {
            failing.push(format!("fenced ({why}) until its hbd is restarted"));
        }
        Some(if failing.is_empty() {
            Ok(())
        } else {
            Err(failing.join(", "))
        })
    }

    /// DOWN: the floating IPs go first, then the notice, then the
    /// applications are stopped.
    pub(super) async fn go_down(self: &Arc<Self>, why: String) {
        let mine: Vec<_> = {
            let mib = lock(&self.mib);
            states::runs(&mib, &self.me)
                .iter()
                .filter_map(|a| mib.application(a).cloned())
                .collect()
        };
        for a in &mine {
            actions::release_ips(a).await;
        }
        tracing::error!("this member is DOWN: {why}");
        self.event(
            Some(Level::SystemDown),
            format!("{} is DOWN: {why}", self.me),
        );
        let down = self.notice(&self.me, Kind::State(NodeState::Down), Some(why));
        self.change(down, None, vec![]);
        let volume_dir = self.shared.config.volume_dir.clone();
        for a in mine {
            if let Err(e) = actions::run(
                &a.executables.stop,
                &a.name,
                &self.me,
                volume_dir.as_deref(),
            )
            .await
            {
                tracing::warn!(app = %a.name, "stop: {}", report::chain(&e));
            }
        }
    }

    /// Recovered, or added: STANDBY once validated (never ACTIVE by itself),
    /// holding no floating IP; a failed validation keeps it DOWN with the
    /// reason, tried again every 10 intervals.
    async fn recover(self: &Arc<Self>) {
        {
            let mut next = lock(&self.next_validation);
            if Instant::now() < *next {
                return;
            }
            *next = Instant::now() + self.shared.config.interval() * 10;
        }
        for a in self.mib().applications {
            actions::release_ips(&a).await;
        }
        let config = &self.shared.config;
        let checked = validate(
            &self.mib(),
            &self.me,
            &config.mirrord(),
            config.volume_dir.as_deref(),
            Executables::TrialRun,
        )
        .await;
        if let Err(why) = checked {
            if lock(&self.mib)
                .node(&self.me)
                .and_then(|n| n.reason.as_ref())
                != Some(&why)
            {
                tracing::warn!("this member stays DOWN: {why}");
                self.event(
                    Some(Level::Serious),
                    format!("{} stays DOWN: {why}", self.me),
                );
                let down = self.notice(&self.me, Kind::State(NodeState::Down), Some(why));
                self.change(down, None, vec![]);
            }
            return;
        }
        tracing::info!("this member passes its self-check again: STANDBY");
        self.event(None, format!("{} recovered: STANDBY", self.me));
        let standby = self.notice(&self.me, Kind::State(NodeState::Standby), None);
        self.change(standby, None, vec![]);
    }

    /// hbd's verdict that every channel to its peer(s) is dead: they are
    /// DOWN; re-armed once they are back.
    fn silence(&self) {
        let dead = self.shared.checker().table.failed_over;
        if !dead {
            self.saw_silence.store(false, Ordering::Relaxed);
            return;
        }
        if self.saw_silence.swap(true, Ordering::Relaxed) {
            // Once every silent peer is back (it recovered: not DOWN in the
            // MIB), hbd's verdict is re-armed, so a later silence is seen too.
            let back = {
                let mib = lock(&self.mib);
                self.shared
                    .config
                    .peers
                    .iter()
                    .all(|p| mib.node(p).is_none_or(|n| n.status != NodeState::Down))
            };
            if back {
                let text = self.shared.checker().rearm(Instant::now());
                tracing::info!("the silent peer is back in the cluster: {text}");
                self.saw_silence.store(false, Ordering::Relaxed);
            }
            return;
        }
        for peer in &self.shared.config.peers {
            self.silent(peer, "hbd: every channel says the peer is dead");
        }
    }

    /// Starts: hello, adopt a newer MIB, release what is not ours, start
    /// what is; then watch the self-check and the silence every interval.
    pub async fn run(self: Arc<Self>) {
        let hello = self.notice(&self.me, Kind::Hello, None);
        let targets = self.targets(&hello.mib);
        self.send_to(hello, targets);
        let interval = self.shared.config.interval();
        tokio::time::sleep((interval * 5).max(Duration::from_millis(500))).await;
        self.synced.store(true, Ordering::Relaxed);
        let mib = self.mib();
        let active = mib.state(&self.me) == NodeState::Active;
        for a in &mib.applications {
            if !(active && a.active.as_deref() == Some(self.me.as_str())) {
                actions::release_ips(a).await;
            }
        }
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut started = !active;
        let mut ticks: u64 = 0;
        loop {
            tick.tick().await;
            if ticks % super::storage::PROBE_TICKS == 0 {
                let problem = self.probe_storage().await;
                *lock(&self.storage_problem) = problem;
            }
            ticks += 1;
            self.master_tick().await;
            if lock(&self.mib).node(&self.me).is_none() {
                continue; // not (or no longer) a member
            }
            let Some(health) = self.self_check() else {
                continue;
            };
            let state = lock(&self.mib).state(&self.me);
            match (health, state) {
                (Err(why), NodeState::Active | NodeState::Standby) => self.go_down(why).await,
                (Ok(()), NodeState::Down) => self.recover().await,
                (Ok(()), NodeState::Active) if !started => {
                    started = true;
                    self.start_own().await;
                }
                _ => {}
            }
            self.silence();
            self.react(Instant::now());
        }
    }

    /// A clean start of an ACTIVE member: runs its applications.
    async fn start_own(self: &Arc<Self>) {
        let mib = self.mib();
        let volume_dir = self.shared.config.volume_dir.clone();
        for app in states::runs(&mib, &self.me) {
            let Some(a) = mib.application(&app) else {
                continue;
            };
            let started = async {
                actions::run(&a.executables.start, &app, &self.me, volume_dir.as_deref()).await?;
                actions::assume_ips(a).await
            }
            .await;
            if let Err(why) = started {
                let why = format!("start of {app} failed: {}", report::chain(&why));
                return self.go_down(why).await;
            }
            tracing::info!(app = %app, "started");
        }
    }
}
