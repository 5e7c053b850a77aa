//! One simulated hbd: its config (parsed from TOML like hbd's), its
//! [`Checker`] and its analyses (the analyzer's book), and the same calls
//! the daemon's rooms make (see [`crate::hb::logic::step`]): compose and sign a
//! beat, take a datagram or a slot read, absorb controls, tick, commit a
//! failover, run and decide a fault analysis, hand over and decide a
//! handover. Only the I/O is the simulator's: the local network check
//! answers from the simulated NICs, and the QoS from them and the
//! simulated checks (production's SYSTEM DOWN check, a side's SERIOUS
//! one). A restart rebuilds the side from its table as persisted, through
//! `config::resume`, as hbd's start does.

use std::path::Path;
use std::time::{Duration, Instant};

use hbcore::vocab::Group;

use super::faults::{Shape, SideId, PROD};
use crate::hb::config::resume::resume;
use crate::hb::config::Config;
use crate::hb::logic::analysis::{EchoMethod, NetworkCheck, Nic, Report, VerdictKind};
use crate::hb::logic::book::Analyses;
use crate::hb::logic::checker::{At, Checker, Timing};
use crate::hb::logic::handover::{self, GroupCount, Standing};
use crate::hb::logic::message::{Beat, ControlBody, Notice};
use crate::hb::logic::qos::{can_carry, Qos};
use crate::hb::logic::step::{
    self, apply_to_table, commit_failover, compose_beat, encode_fitting, queue_control,
    take_controls, Absence, Applied, FailoverStep,
};
use crate::hb::logic::table::{Direction, Table};
use crate::hb::logic::watch::Observation;
use hbcore::vocab::Level;

/// The key both sides sign with.
pub const KEY: &[u8] = b"simulated-pre-shared-key-0123456789";

/// The wall clock at simulated time 0, ms since the epoch.
pub const EPOCH_MS: u64 = 1_800_000_000_000;

/// Something a side did that the world and the checkers hear of.
#[derive(Debug)]
pub enum Did {
    /// The failover (committed, once).
    FailedOver(String),
    /// The step-down (recorded, once).
    SteppedDown(String),
    /// A fault analysis was decided.
    Verdict(VerdictKind),
    /// A control message was applied (its kind).
    Applied(&'static str),
    /// Mirror `.0` installed or removed at this side (its evidence forgotten).
    MirrorReset(String),
    /// This side's local check of analysis `.0` is due after the echo time.
    RunLocal(String),
    /// A channel failed or recovered, or its counter went BAD or GOOD (for the trace).
    Changed(String),
    /// Production stepped down to hand over (it cannot serve), then asked
    /// the standby (the request's id; none if nothing was asked).
    HandedOver {
        /// Why it cannot serve.
        why: String,
        /// The request sent.
        request: Option<u64>,
    },
    /// The standby decided on a handover request.
    HandoverDecided {
        /// It took over (or had before).
        accepted: bool,
        /// It fails over now.
        take: bool,
        /// Why, in words.
        why: String,
    },
    /// Production took the standby's answer (accepted or not).
    HandoverAnswered(bool),
}

/// One hbd.
pub struct Side {
    /// 0 production, 1 the standby.
    pub id: SideId,
    /// Its config.
    pub config: Config,
    /// Running (else killed; its checker's table is what it persisted).
    pub up: bool,
    /// The decision state.
    pub checker: Checker,
    /// Its analyses under way.
    pub analyses: Analyses,
    /// Ticks since start.
    pub ticks: u64,
    /// The wall clock's offset from simulated time, ms.
    pub skew_ms: i64,
    /// Each network's NIC is down here.
    pub nic_down: Vec<bool>,
    /// This run's instance id.
    pub instance: u64,
    /// Stopped (SIGSTOP) until this simulated time: nothing runs before it.
    pub stalled_until: Option<u64>,
    /// Ms it was stopped, for its next tick (what the stall watch measures).
    pub stopped_ms: u64,
    /// Its SYSTEM DOWN check fails (production cannot serve).
    pub cannot_serve: bool,
    /// Its SERIOUS check fails (it cannot carry the duties).
    pub serious: bool,
    /// Simulated time of this run's start (its uptime counts from here).
    started: u64,
    /// The monotonic clock at simulated time 0.
    base: Instant,
}

/// Both sides' configs for `shape` (production, standby).
pub fn configs(shape: &Shape) -> [Config; 2] {
    [0, 1].map(|id| {
        let (host, group, peer) = if id == PROD {
            ("prod-a", "production", "standby-a")
        } else {
            ("standby-a", "standby", "prod-a")
        };
        let mut text = format!(
            "host = \"{host}\"\ngroup = \"{group}\"\npeers = [\"{peer}\"]\ndata_dir = \"/nonexistent/sim\"\npsk_file = \"/nonexistent/psk\"\ninterval_ms = {}\ntimeout_ms = {}\n[analysis]\necho_rounds = 3\necho_interval_ms = {}\n",
            shape.interval_ms, shape.timeout_ms, shape.interval_ms
        );
        for n in 0..shape.networks {
            text += &format!(
                "[[networks]]\nname = \"net{n}\"\nlisten = \"10.{n}.0.{}:7000\"\npeers = [\"10.{n}.0.{}:7000\"]\n",
                id + 1,
                2 - id
            );
        }
        for m in 0..shape.mirrors() {
            let name = shape.mirror_name(m);
            let way = if shape.writer(m) == id { "pvol" } else { "svol" };
            text += &format!("[[mirrors]]\nname = \"{name}\"\n{way} = \"/sim/{name}\"\n");
        }
        // A fixed text of our own: it parses (the tests say so).
        Config::parse(&text, Path::new("sim.toml")).unwrap_or_else(|e| {
            panic!("the simulator's config does not parse: {e}\n{text}")
        })
    })
}

fn timing(config: &Config) -> Timing {
    Timing {
        timeout: config.timeout(),
        interval: config.interval(),
        clock_warn: config.clock_warn(),
        counter: config.counter,
    }
}

impl Side {
    /// Starts hbd at side `id` at simulated time `t` from `persisted` (none:
    /// a first start), as run `instance`; `base` is the monotonic clock at time 0.
    pub fn start(
        id: SideId,
        config: Config,
        persisted: Option<Table>,
        base: Instant,
        t: u64,
        instance: u64,
    ) -> Side {
        let now = base + Duration::from_millis(t);
        let (table, _) = resume(&config, persisted);
        let checker = Checker::new(
            table,
            config.peers.clone(),
            timing(&config),
            config.arm_policy(),
            now,
        );
        let networks = config.network_names().len();
        Side {
            id,
            config,
            up: true,
            checker,
            analyses: Analyses::default(),
            ticks: 0,
            skew_ms: 0,
            nic_down: vec![false; networks],
            instance,
            stalled_until: None,
            stopped_ms: 0,
            cannot_serve: false,
            serious: false,
            started: t,
            base,
        }
    }

    /// hbd here is stopped at `t` for `ms` (SIGSTOP): nothing of it runs
    /// until then; its next tick is told how long (as the stall watch would).
    pub fn stop(&mut self, t: u64, ms: u64) {
        if self.up && !self.stalled(t) {
            self.stalled_until = Some(t + ms);
            self.stopped_ms += ms;
        }
    }

    /// Whether it is stopped at `t`.
    pub fn stalled(&self, t: u64) -> bool {
        self.stalled_until.is_some_and(|u| t < u)
    }

    fn mono(&self, t: u64) -> Instant {
        self.base + Duration::from_millis(t)
    }

    /// Kills hbd here: what stays is the table it persisted (every tick and
    /// every accepted datagram, as the daemon does).
    pub fn crash(&mut self) {
        self.up = false;
    }

    /// hbd starts again at `t` from its persisted table, as run `instance`.
    pub fn restart(&mut self, t: u64, instance: u64) {
        let persisted = self.checker.table.clone();
        let (skew, nics) = (self.skew_ms, std::mem::take(&mut self.nic_down));
        // Its checks fail again after a restart as before it.
        let (cannot_serve, serious) = (self.cannot_serve, self.serious);
        *self = Side::start(
            self.id,
            self.config.clone(),
            Some(persisted),
            self.base,
            t,
            instance,
        );
        self.skew_ms = skew;
        self.nic_down = nics;
        (self.cannot_serve, self.serious) = (cannot_serve, serious);
    }

    /// This side's wall clock at simulated time `t` ms.
    pub fn wall(&self, t: u64) -> u64 {
        (EPOCH_MS + t).saturating_add_signed(self.skew_ms)
    }

    /// Both clocks at simulated time `t`.
    pub fn at(&self, t: u64) -> At {
        At {
            mono: self.mono(t),
            wall_ms: self.wall(t),
        }
    }

    /// Fig 6: the next heartbeat, signed (its truth, and the bytes).
    pub fn beat(&mut self, t: u64) -> Option<(Beat, Vec<u8>)> {
        let wall = self.wall(t);
        let nonce = mix(self.instance ^ u64::from(self.checker.table.serial).rotate_left(32));
        let id = self
            .checker
            .identity(self.instance, t - self.started, nonce, self.mono(t));
        let beat = compose_beat(&mut self.checker.table, wall, id);
        let truth = beat.clone();
        encode_fitting(beat, KEY)
            .ok()
            .map(|(_, bytes)| (truth, bytes))
    }

    /// A datagram on network `name`: the beat, if it advanced the channel.
    pub fn datagram(&mut self, name: &str, bytes: &[u8], at: At) -> Option<Beat> {
        let read = Beat::decode(bytes, KEY).map_err(|e| e.to_string());
        let seen = self
            .checker
            .network_beat(name, read.as_ref().map_err(String::clone), at);
        match (seen, read) {
            (Ok(Observation::Advanced), Ok(beat)) => Some(beat),
            _ => None,
        }
    }

    /// A read of mirror `name`'s SVOL: the beat, if it advanced the channel.
    pub fn slot_read(&mut self, name: &str, read: Result<&[u8], String>, at: At) -> Option<Beat> {
        let beat = read.and_then(|b| Beat::decode(b, KEY).map_err(|e| e.to_string()));
        let seen = self
            .checker
            .mirror_read(name, beat.as_ref().map_err(String::clone), at);
        match (seen, beat) {
            (Observation::Advanced, Ok(beat)) => Some(beat),
            _ => None,
        }
    }

    /// Takes a valid beat's acknowledgement and controls (controls::absorb).
    pub fn absorb(&mut self, beat: &Beat, t: u64, did: &mut Vec<Did>) {
        let fresh = take_controls(&mut self.checker.table, beat);
        for ctl in fresh {
            let volume_dir = Some(Path::new("/sim"));
            match apply_to_table(&mut self.checker, &beat.sender, ctl.body, volume_dir) {
                Applied::Installed { mirror, .. } | Applied::Removed(mirror, true) => {
                    did.push(Did::Applied("activation"));
                    did.push(Did::MirrorReset(mirror));
                }
                Applied::Removed(_, false) | Applied::Unregistered { .. } => {
                    did.push(Did::Applied("activation"))
                }
                Applied::Procedure(_) => did.push(Did::Applied("procedure")),
                Applied::Other(ControlBody::Notice(_)) => did.push(Did::Applied("notice")),
                Applied::Other(ControlBody::AnalysisRequest { id, trigger }) => {
                    did.push(Did::Applied("analysis-request"));
                    let now = self.mono(t);
                    self.analyses.join(&id, &trigger, None, now);
                    self.run_local(&id, did);
                }
                Applied::Other(ControlBody::AnalysisReport {
                    id,
                    trigger,
                    report,
                }) => {
                    did.push(Did::Applied("analysis-report"));
                    let now = self.mono(t);
                    self.analyses.join(&id, &trigger, Some(*report), now);
                    self.run_local(&id, did);
                    self.try_decide(&id, false, t, did);
                }
                Applied::Other(ControlBody::HandoverRequest(request)) => {
                    did.push(Did::Applied("handover-request"));
                    let me = Standing {
                        qos: self.qos(),
                        rule: self.config.qos_rule(),
                        group_short: None,
                        master: true,
                    };
                    let wall = self.wall(t);
                    let d = handover::decide(&mut self.checker, &beat.sender, request, me, wall);
                    did.push(Did::HandoverDecided {
                        accepted: d.answer.accepted,
                        take: d.take,
                        why: d.answer.why,
                    });
                }
                Applied::Other(ControlBody::HandoverAnswer(answer)) => {
                    did.push(Did::Applied("handover-answer"));
                    let accepted = answer.accepted;
                    if handover::answered(&mut self.checker.table, answer).is_ok() {
                        did.push(Did::HandoverAnswered(accepted));
                    }
                }
                Applied::Other(_) => {}
            }
        }
    }

    /// One tick's decisions (tick.rs after its I/O), and their acts.
    pub fn tick(&mut self, t: u64, did: &mut Vec<Did>) {
        let now = self.mono(t);
        self.ticks += 1;
        let every = u64::from(self.config.counter.period_intervals.max(1));
        let absent = Absence {
            stopped: Duration::from_millis(std::mem::take(&mut self.stopped_ms)),
            suspended: Duration::ZERO,
        };
        let out = step::tick_step(&mut self.checker, now, self.ticks % every == 0, absent);
        for tr in &out.transitions {
            let what = if tr.failed { "FAILED" } else { "ENABLE again" };
            did.push(Did::Changed(format!("{} {what}: {}", tr.channel, tr.why)));
        }
        for c in &out.counted {
            did.push(Did::Changed(format!(
                "{} counter {:?}",
                c.channel, c.change
            )));
        }
        if out
            .counted
            .iter()
            .any(|c| c.change == crate::hb::logic::counter::Change::Bad)
        {
            self.analysis_due("BAD", t, did);
        }
        if let Some(reason) = out.failover {
            // Whether it can carry the duties (QoS), as tick.rs asks.
            let carry = can_carry(&self.qos(), &self.config.qos_rule());
            if let FailoverStep::Go { .. } = commit_failover(&mut self.checker, carry, now) {
                did.push(Did::FailedOver(reason));
                self.analysis_due("every channel failed: failover", t, did);
            }
        }
        for id in self.analyses.late(now, self.config.answer_deadline()) {
            self.try_decide(&id, true, t, did);
        }
        if let Some((_, why)) = out.step_down {
            did.push(Did::SteppedDown(why));
        }
        // After the local checks (tick.rs): production that cannot serve
        // steps down (at once here) and asks the standby.
        let failing = if self.cannot_serve {
            vec!["app".to_string()]
        } else {
            vec![]
        };
        let alone = GroupCount {
            alive: 1,
            size: 1,
            min_hosts: 1,
        };
        let cannot = handover::cannot_serve(&failing, alone);
        let (peers, wall) = (self.config.peers.join(", "), self.wall(t));
        if let Some(why) = handover::due(&mut self.checker.table, cannot, &peers, wall) {
            let qos = self.qos();
            let request = handover::ask(&mut self.checker.table, qos, wall).map(|r| r.id);
            did.push(Did::HandedOver { why, request });
        }
    }

    /// A person's procedure change here: applied, and sent to the peer.
    pub fn procedure(&mut self, p: crate::hb::logic::message::Procedure) {
        self.checker.table.apply_procedure(&p);
        queue_control(&mut self.checker.table, ControlBody::Procedure(p));
    }

    /// The writer of mirror `name` installs or de-installs it, telling the peer.
    pub fn install(&mut self, name: &str, on: bool) {
        let t = &mut self.checker.table;
        let body = if on {
            t.install(name, format!("/sim/{name}").into(), Direction::Send, None);
            ControlBody::Activate {
                mirror: name.into(),
                svol: name.into(),
                path: None,
            }
        } else {
            t.uninstall(name);
            ControlBody::Deactivate {
                mirror: name.into(),
            }
        };
        queue_control(t, body);
    }

    /// A failing local check: a notice for the peer.
    pub fn notice(&mut self, t: u64) {
        let n = Notice {
            level: Level::Serious,
            host: self.config.host.clone(),
            part: "app".into(),
            info: "a local check failed".into(),
            time_ms: self.wall(t),
        };
        queue_control(&mut self.checker.table, ControlBody::Notice(n));
    }

    fn analysis_due(&mut self, trigger: &str, t: u64, did: &mut Vec<Did>) {
        if !self.analyses.idle() {
            return;
        }
        let dead = self.checker.all_channels_failed();
        let id = self
            .analyses
            .start(&self.config.host, self.wall(t), trigger, dead, self.mono(t));
        if !dead && self.config.group != Group::Production {
            queue_control(
                &mut self.checker.table,
                ControlBody::AnalysisRequest {
                    id: id.clone(),
                    trigger: trigger.into(),
                },
            );
        }
        self.run_local(&id, did);
    }

    fn run_local(&mut self, id: &str, did: &mut Vec<Did>) {
        if self.analyses.claim_local(id) {
            did.push(Did::RunLocal(id.to_string()));
        }
    }

    /// The local check of analysis `id` ended (the echo time after it began).
    pub fn local_done(&mut self, id: &str, t: u64, did: &mut Vec<Did>) {
        let report = self.report(t);
        if let Some(Some(trigger)) = self.analyses.local_done(id, report.clone()) {
            queue_control(
                &mut self.checker.table,
                ControlBody::AnalysisReport {
                    id: id.to_string(),
                    trigger,
                    report: Box::new(report),
                },
            );
        }
        self.try_decide(id, false, t, did);
    }

    fn try_decide(&mut self, id: &str, alone: bool, t: u64, did: &mut Vec<Did>) {
        let failed_now = alone && self.checker.all_channels_failed();
        let peer = self.config.peers.join(", ");
        let deadline = self.config.answer_deadline();
        if let Some(d) = self.analyses.decide(id, alone, failed_now, &peer, deadline) {
            let (analysis, _) = d.into_analysis(self.wall(t));
            did.push(Did::Verdict(analysis.verdict.verdict));
            self.checker.table.analysis = Some(analysis);
        }
    }

    /// This side's QoS now: its simulated NICs and failing checks.
    fn qos(&self) -> Qos {
        self.qos_of(&self.network_checks())
    }

    fn qos_of(&self, networks: &[NetworkCheck]) -> Qos {
        let mut failing = vec![];
        if self.cannot_serve {
            failing.push("app".to_string());
        }
        if self.serious {
            failing.push("app-host".to_string());
        }
        Qos {
            networks: networks.iter().filter(|n| n.on).count() as u32,
            networks_working: networks.iter().filter(|n| n.on && n.operational).count() as u32,
            checks: 2,
            checks_passing: 2 - failing.len() as u32,
            serious_failing: failing,
            load_milli: 100,
            ..Qos::default()
        }
    }

    /// This side's report: the simulated NICs' local check, the channels, the QoS.
    fn report(&self, t: u64) -> Report {
        let networks = self.network_checks();
        let qos = self.qos_of(&networks);
        Report {
            host: self.config.host.clone(),
            group: self.config.group,
            time_ms: self.wall(t),
            echo: EchoMethod::Raw,
            echo_note: None,
            networks,
            channels: self.checker.table.channel_statuses(),
            qos,
        }
    }

    /// The local network check of the simulated NICs.
    fn network_checks(&self) -> Vec<NetworkCheck> {
        let on = self.checker.table.network_on();
        self.config
            .network_names()
            .iter()
            .zip(&self.nic_down)
            .map(|(name, down)| NetworkCheck {
                name: name.clone(),
                on,
                interface: Some(format!("sim-{name}")),
                nic: if *down { Nic::Down } else { Nic::Up },
                target: "probe".into(),
                target_is_peer: false,
                sent: 3,
                replies: if *down { 0 } else { 3 },
                rtt_us: (!*down).then_some(100),
                error: None,
                operational: !*down,
            })
            .collect()
    }
}

/// A deterministic stand-in for a random nonce (splitmix64's finaliser).
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
