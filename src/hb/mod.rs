//! # hbd: the storage-based heartbeat check (seed 000 Figures 2–11, seed 002)
//!
//! Modules in reading order; each uses only modules before it.
//!
//! What is said and kept (pure, unit-tested without a clock or a socket):
//!
//! - [`counter`]: seed 002's per-channel counter (Fig 4: start 20, +Δ
//!   sequence, every period clamp 48 and −4, 0 = BAD) and the generator's
//!   disconnect counter (Fig 5).
//! - [`qos`]: the QoS metric, the rule that a side takes over only if it can
//!   carry the duties, and the comparison of two sides (Fig 6, 622–644).
//! - [`analysis`]: each side's report in a fault analysis (local network
//!   check, channels, QoS) and the decision routine (Fig 9) that turns two
//!   reports into a verdict; the channels of the status API.
//! - [`message`]: the heartbeat (Fig 3) and the control messages it carries:
//!   activation (Fig 4/5), procedure (Fig 8), failure notice (Fig 11), the
//!   fault analysis's request and reports (seed 002, Fig 7).
//! - [`table`]: the heartbeat status table (Fig 2), as data, with each
//!   network and the channel list.
//! - [`watch`]: the advancing rule: is a channel's message newer than the
//!   last accepted from its sender (the watermark, kept across restarts):
//!   same sender instance, serial and the sender's own uptime ahead?
//! - [`challenge`]: freshness without clocks: the nonces this host issued
//!   and the echoes that prove a new sender instance is no replay; the
//!   peer's clock offset from the echo's round trip (shown, never acted on).
//! - [`checker`]: the validity rules (Fig 7: approved, advancing, a new
//!   instance echoing a fresh nonce, on a channel turned on; liveness on
//!   this host's monotonic clock only) that fill the table,
//!   per network and per mirror; the counters; the failover decision, the
//!   arm policy, the step-down decision.
//! - [`step`]: the decisions the daemon's async rooms make, as pure
//!   functions of the checker and the time: compose and sign a beat, take a
//!   beat's acknowledgement and controls and apply them to the table, one
//!   tick's decisions (`tick_step`), commit a failover. The daemon and the
//!   simulation both call them.
//! - [`api`]: the requests `hbctl hb` sends (one struct per operation).
//! - [`config`]: hbd's TOML configuration.
//! - [`error`]: [`error::HbError`], what hbd's operations refuse and why.
//!
//! The daemon, one room per idea (private modules):
//!
//! - `slot`: one 4 KiB heartbeat slot written to a PVOL or read from an SVOL;
//!   the volumes kept open between ticks.
//! - `record`: the table on disk: `table.json` (atomic rename) and the table
//!   volume; at start, the newer of the two, seeded by the config.
//! - `mirrord`: hbd as a client of mirrord (pair checks and protection, takeover).
//! - `hostclock`: this run's instance id, the uptime its heartbeats carry
//!   (CLOCK_BOOTTIME) and the suspend seen between two ticks.
//! - `state`: `Hbd`, what every task shares, and saving its
//!   table and events (`events.jsonl`).
//! - `failover`: take over pairs and run the hook (once, if this host can
//!   carry the duties); step down and run the step-down hook (once); run the
//!   alert command.
//! - `netcheck`: the local network check (seed 002, Fig 8): each network's
//!   NIC state and rounds of ICMP echo (raw sockets, else the ping socket).
//! - `netio`: each network's UDP socket, its disconnect counter and re-open
//!   (Fig 5), and its receiver task.
//! - `controls`: the outbox of control messages, acknowledgements, and applying
//!   the peer's controls.
//! - `checks`: the local checks (Fig 10) that become failure notices.
//! - `install`: mirrors installed and de-installed (Fig 4/5), and their pairs
//!   protected from split again at start (or the mirror FAILED, unwritten).
//! - `report`: what this host says in a fault analysis (its local network
//!   check, channels and QoS), and its QoS now.
//! - `analyzer`: the fault analysis wired (Figs 6, 7): started when a
//!   counter reaches 0 or on request, exchanged with the peer as control
//!   messages, decided, recorded (table, event with evidence, alert); the
//!   analyses under way in its pure book (`analyzer/book.rs`).
//! - `tick`: send (Fig 6), read the mirrors (Fig 7), evaluate, step the
//!   counters, act.
//! - `server`: the control server answering `hbctl hb`.
//! - `service`, `metrics`: systemd's readiness, status line and watchdog; the OpenMetrics endpoint.
//! - [`daemon`]: start-up and shutdown, wiring the above (and the cluster
//!   member, [`crate::cluster`], when the config has `[cluster]`; a member
//!   that is not its group's master keeps `master_gate` shut: its tick
//!   neither sends, reads the mirrors, nor fails over, and it leaves the
//!   table volume to the master).
//!
//! Proof by volume:
//!
//! - [`sim`]: deterministic simulation: two sides running [`step`],
//!   [`checker`], the analyses' book and the real message encoding on a
//!   simulated clock and simulated networks and mirrors, under fault
//!   schedules from seeds; checkers over each history (`hbsim`,
//!   `scripts/simulate.sh`).
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
//!   └═> spawn_blocking: save table.json (rename) and the table volume
//!
//!  a UDP task per network, as datagrams arrive: recv_from ─> decode ─> Checker::network_beat
//!   ├─ accepted ─> absorb, then save table.json (the watermark on disk)
//!   └─ refused ─> counted; logged once a minute per address and kind (Throttle)
//!
//!  absorb, on the task that got the beat: step::take_controls drops acknowledged controls from the outbox;
//!   apply the peer's new ones (mirror activated / de-activated, procedure, notice
//!   ═> alert `sh -c` process, analysis request or report ═> the analyzer's tasks)
//!
//!  control socket: accept task ═> a task per client ─> dispatch(HbRequest)
//!   └─ install: ═> spawn_blocking: mirrord calls; a probe write_slot ─> Activate into the outbox
//! ```
//!
//! Both directions run at once (Fig 9): each host writes its own PVOL and
//! reads the mirror of the peer's; only the standby ever fails over.

pub mod analysis;
mod analyzer;
pub mod api;
pub mod challenge;
pub mod checker;
mod checks;
pub mod config;
mod controls;
pub mod counter;
pub mod daemon;
pub mod error;
mod failover;
mod hostclock;
mod install;
pub mod message;
mod metrics;
pub(crate) mod mirrord;
mod netcheck;
mod netio;
pub mod qos;
pub(crate) mod record;
mod report;
mod server;
mod service;
pub mod sim;
mod slot;
pub(crate) mod state;
pub mod step;
pub mod table;
mod tick;
pub mod watch;
