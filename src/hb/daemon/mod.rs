//! hbd, the daemon around the decisions of [`super::logic`]: start-up and
//! shutdown ([`run`]: load the status table, open the sockets, start the
//! tick, the UDP receivers and the control server, and stop them when the
//! shutdown resolves: a signal, or a test completing the future).
//!
//! Its parts, each owning its state and naming what it uses (in the order
//! they use each other; none uses one after it):
//!
//! - `lock`: the one locking rule (a poisoned lock is still used).
//! - `journal`: the events, in memory and `events.jsonl`.
//! - `hostclock`: this run's instance id, the uptime its heartbeats carry
//!   (CLOCK_BOOTTIME) and the suspend seen between two ticks.
//! - `slot`: one 4 KiB heartbeat slot written to a PVOL or read from an
//!   SVOL; the volumes kept open between ticks (`OpenFiles`).
//! - `storage_client`: hbd as a client of mirrord's control API (pair
//!   checks and protection, takeover, outdate), over its socket or, with
//!   `[failover] mirrord = "tcp://…"`, over the host link.
//! - `netcheck`: the local network check (seed 002, Fig 8): each network's
//!   NIC state and rounds of ICMP echo (raw sockets, else the ping socket).
//! - `record`: the table on disk: `table.json` (atomic rename) and the
//!   table volume; at start, the newer of the two.
//! - `shared`: [`shared::Shared`], what every task shares: config, key,
//!   clock, master gate, the checker behind one lock, the journal, saving
//!   the table; the outbox's door (`queue`) and the next heartbeat.
//! - `checks`: the local checks (Fig 10) and their last outcomes
//!   ([`checks::Checks`]), which become failure notices.
//! - `report`: what this host says in a fault analysis (its local network
//!   check, channels and QoS), and its QoS now.
//! - `failover`: take over pairs and run the hook; step down and run the
//!   step-down hook; run the alert command.
//! - `analyzer`: the fault analysis wired (`Analyzer`, Figs
//!   6, 7): started when a counter reaches 0 or on request, exchanged with
//!   the peer as control messages, decided, recorded.
//! - `handover`: production that cannot serve steps down and asks the
//!   standby to take over; the standby's decision on its QoS, and the
//!   answer (the decisions: `logic::handover`).
//! - `controls`: the peer's controls applied (mirror activated, procedure,
//!   notice ═> alert, analysis request or report ═> the analyzer, handover
//!   request or answer ═> `handover`).
//! - `netio`: each network's UDP socket, its disconnect counter and
//!   re-open (Fig 5), and its receiver task (`Networks`).
//! - `install`: mirrors installed and de-installed (Fig 4/5), and their
//!   pairs protected from split, again at start and after a failure
//!   (`Mirrors`).
//! - `service`, `metrics`: systemd's readiness, status line and watchdog;
//!   the OpenMetrics endpoint.
//! - `watchdog`: the watchdog device (`watchdog_device`), opened at start
//!   and petted every interval by a task of its own while this host is not
//!   fenced and is connected ([`watchdog::Petting`], which the cluster
//!   member keeps); disarmed (magic close) at a clean stop.
//! - `tick`: send (Fig 6), read the mirrors (Fig 7), evaluate, step the
//!   counters, act (`Ticker`).
//! - `server`: the control server answering `hbctl hb`.
//!
//! A cluster member that is not its group's master keeps `master_gate`
//! shut: its tick neither sends, reads the mirrors, nor fails over, and it
//! leaves the table volume to the master.
//!
//! The data path, and where work changes hands (`═>` to another thread,
//! task or process). The checker (table and watches) is behind one lock,
//! taken briefly by each task and never held across an await:
//!
//! ```text
//!  start: record::load_table (table.json or the table volume, the newer; config seeds)
//!   └─ protect_installed: mirrord pair checks ─> protected, or the mirror FAILED
//!
//!  tick task, every interval_ms (only channels turned on, Fig 8):
//!   ├─ next_frame: Beat{serial+1, instance, uptime, nonce, echoes, outbox, ack, failed_over}
//!   ├─ each network: disconnect counter (re-open a silent one's socket) ─> UDP send_to each peer
//!   ├═> io_uring ring thread (slot): write_slot, one 4 KiB write to each PVOL, all in one
//!   │     submission (hbfs ═> mirrord ═> peer SVOL)
//!   ├═> io_uring ring thread (slot): read_slot of each SVOL, all at once (polled once per
//!   │     interval) ─> decode ─> Checker::mirror_read ─> absorb
//!   ├─ step::tick_step: a stall of this host (a late tick, a suspend) forgiven;
//!   │     Checker::evaluate ─> transitions ─> log, events.jsonl; clock offsets past clock_warn_ms
//!   ├─ every period: Checker::counter_period ─> a channel BAD ─> fault analysis:
//!   │     ═> spawn_blocking: netcheck (NIC, ICMP echo on every network, a thread each)
//!   │     ─> AnalysisRequest / AnalysisReport into the outbox (ride the heartbeats)
//!   │     ─> the peer's report arrives (absorb) ─> decide ─> verdict: log, event, table, alert
//!   ├─ Checker::failover_reason ─> QoS: can this host carry the duties? ═> failover task (once):
//!   │     ═> spawn_blocking: mirrord pair takeover, then the hook ═> `sh -c` process
//!   ├─ Checker::step_down_reason ═> step-down task (once): the step-down hook ═> `sh -c` process
//!   ├─ a failed pair protection, every timeout ═> protect_installed task
//!   ├─ local checks, all at once: `sh -c` processes, spawn_blocking opens, TCP connects
//!   │     └─ a new failure ─> Notice into the outbox (rides the next heartbeats)
//!   ├─ production that cannot serve (SYSTEM DOWN check, min_hosts) ─> handover::due
//!   │     ═> step-down task: pairs outdated, the hook ─> HandoverRequest into the outbox
//!   └═> spawn_blocking: save table.json (rename) and the table volume
//!
//!  a UDP task per network, as datagrams arrive: recv_from ─> decode ─> Checker::network_beat
//!   ├─ accepted ─> absorb, then save table.json (the watermark on disk)
//!   └─ refused ─> counted; logged once a minute per address and kind (Throttle)
//!
//!  absorb, on the task that got the beat: step::take_controls drops acknowledged controls from the outbox;
//!   apply the peer's new ones (mirror activated / de-activated, procedure, notice
//!   ═> alert `sh -c` process, analysis request or report ═> the analyzer's tasks,
//!   handover request ─> decide on the QoS now ═> failover task; handover answer ─> table)
//!
//!  control socket: accept task ═> a task per client ─> dispatch(HbRequest)
//!   └─ install: ═> spawn_blocking: mirrord calls; a probe write_slot ─> Activate into the outbox
//! ```
//!
//! Both directions run at once (Fig 9): each host writes its own PVOL and
//! reads the mirror of the peer's; only the standby ever fails over.

mod analyzer;
pub mod checks;
mod controls;
pub mod failover;
mod handover;
pub mod hostclock;
mod install;
mod journal;
pub mod lock;
mod metrics;
mod netcheck;
mod netio;
pub mod record;
mod report;
mod server;
mod service;
pub mod shared;
pub mod slot;
pub mod storage_client;
mod tick;
pub mod watchdog;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::hb::api::Source;
use crate::hb::config::Config;
use crate::hb::error::HbError;
use analyzer::Analyzer;
use checks::Checks;
use hbcore::daemon::Shutdown;
use hbcore::jsonl;
use install::Mirrors;
use netio::{retried, NetChannel, Networks};
use server::Server;
use shared::Shared;
use slot::OpenFiles;
use tick::Ticker;
use watchdog::{Petting, Watchdog};

/// What hbd lends a part started beside it (the cluster member, started by
/// the `hbd` binary): what every task shares, and the local checks'
/// outcomes.
pub struct Lent {
    /// What every task of hbd shares.
    pub shared: Arc<Shared>,
    /// The local checks' last outcomes.
    pub checks: Arc<Checks>,
    /// Whether hbd may pet the watchdog: the member fences this host, and
    /// says until when it is connected.
    pub petting: Arc<Petting>,
}

/// Runs hbd with `config` until `shutdown` resolves. `beside` starts a part
/// beside it (the cluster member) before the first tick; what it returns
/// is kept until the shutdown, then dropped (which stops it).
pub async fn run<B, F, R>(config: Config, shutdown: Shutdown, beside: B) -> anyhow::Result<()>
where
    B: FnOnce(Lent) -> F,
    F: Future<Output = anyhow::Result<R>>,
{
    // First, so that a watchdog that cannot be opened stops the start
    // before anything else; petted from here on (a slow start included).
    let petting = Arc::new(Petting::default());
    let petter = match &config.watchdog_device {
        Some(path) => Some(watchdog::start(
            Watchdog::open(path, config.watchdog_timeout())?,
            Arc::clone(&petting),
            config.interval(),
        )),
        None => None,
    };
    let key = config.key()?;
    let (table, origin, seeding) = record::load_table(&config, &key)?;
    // Each network's socket; one whose address is not on a NIC (yet) is
    // opened when it is (netio), any other refusal stops the start.
    let mut nets = vec![];
    for n in config.all_networks() {
        let net = NetChannel::new(n.clone());
        match net.open(&config.counter) {
            Ok(()) => {}
            Err(e) if retried(&e) => tracing::warn!(
                network = %n.name,
                "cannot listen on {} yet ({e}): the address is on no interface; tried again every interval",
                n.listen
            ),
            Err(source) => {
                return Err(HbError::Listen {
                    network: n.name.clone(),
                    address: n.listen,
                    source,
                }
                .into())
            }
        }
        nets.push(net);
    }
    let echo = netcheck::method();
    match &echo.1 {
        Some(note) => tracing::warn!(method = ?echo.0, "local network check: {note}"),
        None => tracing::info!(method = ?echo.0, "local network check: ICMP echo over raw sockets"),
    }
    let control = jsonl::bind(&config.control_socket).map_err(|source| HbError::ControlSocket {
        path: config.control_socket.clone(),
        source,
    })?;
    let mut table = table;
    (table.echo_method, table.echo_note) = (Some(echo.0), echo.1);
    let shared = Arc::new(Shared::new(config, key, table));
    let nets = Arc::new(Networks::new(nets));
    let checks = Arc::new(Checks::default());
    let files = Arc::new(OpenFiles::default());
    let analyzer = Arc::new(Analyzer::new(Arc::clone(&shared), Arc::clone(&checks)));
    let mirrors = Arc::new(Mirrors::new(Arc::clone(&shared), Arc::clone(&files)));
    for name in &seeding.installed {
        shared.event(
            Source::Local,
            None,
            &format!("mirror {name}"),
            "installed from the config (a [[mirrors]] entry new to the table)".into(),
        );
    }
    for (name, _) in &seeding.removed {
        shared.event(
            Source::Local,
            None,
            &format!("mirror {name}"),
            "de-installed: its [[mirrors]] entry left the config".into(),
        );
    }
    mirrors
        .release(seeding.removed.into_iter().filter_map(|(_, p)| p).collect())
        .await;
    // Fig 5: no heartbeat through a mirror whose pair may be split.
    mirrors.protect_installed().await;
    shared.save();
    // What hbd does not hear while it is stopped is no evidence (checker::clocks).
    let period =
        (shared.config.interval() / 4).clamp(Duration::from_millis(5), Duration::from_millis(100));
    if let Err(e) = shared.clock.watch_stalls(period) {
        tracing::warn!("cannot start the stall watch ({e}): a stop of this host will not be told from the peer's silence");
    }
    tracing::info!(
        host = %shared.config.host,
        group = %shared.config.group,
        interval_ms = shared.config.interval_ms,
        networks = ?shared.config.network_names(),
        timeout_ms = shared.config.timeout_ms,
        instance = format!("{:016x}", shared.clock.instance),
        arm = %shared.config.arm_policy(),
        table = ?origin,
        "hbd ready"
    );

    // Before the first tick: a cluster member that is not its group's master sends nothing.
    let cluster = beside(Lent {
        shared: Arc::clone(&shared),
        checks: Arc::clone(&checks),
        petting,
    })
    .await?;
    let (stop_server, server_stopped) = tokio::sync::oneshot::channel::<()>();
    let receivers: Vec<_> = (0..nets.count())
        .map(|i| {
            let (shared, analyzer) = (Arc::clone(&shared), Arc::clone(&analyzer));
            tokio::spawn(Arc::clone(&nets).receive(i, shared, analyzer))
        })
        .collect();
    let server = Arc::new(Server::new(
        Arc::clone(&shared),
        Arc::clone(&analyzer),
        Arc::clone(&mirrors),
    ));
    let server = tokio::spawn(server.serve(control, async {
        let _ = server_stopped.await;
    }));
    let ticker = Ticker::new(Arc::clone(&shared), nets, analyzer, checks, mirrors, files);
    let ticker = tokio::spawn(Arc::new(ticker).tick_loop());
    let metrics = metrics::start(&shared).await?;
    let status = service::ready(&shared);
    shutdown.await;
    status.abort();
    drop(cluster);
    drop(metrics);
    ticker.abort();
    for r in &receivers {
        r.abort();
    }
    let _ = stop_server.send(());
    if let Err(e) = server.await {
        tracing::warn!("the control server ended badly: {e}");
    }
    shared.save();
    let _ = std::fs::remove_file(&shared.config.control_socket);
    // A clean stop: the magic close disarms the watchdog.
    drop(petter);
    tracing::info!("hbd stopped");
    Ok(())
}
