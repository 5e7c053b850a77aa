//! # hbd: the storage-based heartbeat check (seed 000 Figures 2–11, seed 002)
//!
//! Three rooms, and the doors between them (each uses only those above it
//! in this list; no file imports another that imports it back):
//!
//! - [`logic`]: the decisions, pure: no socket, file, thread, task or
//!   clock of their own (time comes in as an argument), unit-tested and
//!   driven by the simulator. In reading order (each uses only those
//!   before it):
//!   - [`logic::qos`]: the QoS metric, the rule that a side takes over only
//!     if it can carry the duties, and the comparison of two sides (Fig 6).
//!   - [`logic::analysis`]: each side's report in a fault analysis and the
//!     decision routine (Fig 9) that turns two reports into a verdict; the
//!     channels of the status API.
//!   - [`logic::message`]: the heartbeat (Fig 3) and the control messages
//!     it carries: activation (Fig 4/5), procedure (Fig 8), failure notice
//!     (Fig 11), the fault analysis's request and reports (seed 002, Fig 7).
//!   - [`logic::counter`]: seed 002's per-channel counter (Fig 4: start 20,
//!     +Δ sequence, every period clamp 48 and −4, 0 = BAD) and the
//!     generator's disconnect counter (Fig 5).
//!   - [`logic::table`]: the heartbeat status table (Fig 2), as data, with
//!     each network and the channel list.
//!   - [`logic::watch`]: the advancing rule: is a channel's message newer
//!     than the last accepted from its sender (the watermark, kept across
//!     restarts)?
//!   - [`logic::challenge`]: freshness without clocks: nonces issued, the
//!     echoes that prove a new sender instance is no replay; the peer's
//!     clock offset (shown, never acted on).
//!   - [`logic::checker`]: the validity rules (Fig 7) that fill the table,
//!     per network and per mirror; the counters; the failover decision,
//!     the arm policy, the step-down decision.
//!   - [`logic::book`]: the fault analyses under way, their reports and
//!     deadlines, and the verdict with the QoS comparison.
//!   - [`logic::step`]: the daemon's decisions as pure functions of the
//!     checker and the time: compose a beat, take a beat's controls, one
//!     tick's decisions (`tick_step`), commit a failover.
//!   - [`logic::handover`]: production that cannot serve (a SYSTEM DOWN
//!     check, fewer than `min_hosts` hosts) steps down and asks the
//!     standby to take over; the standby's decision by QoS; the answer.
//! - [`config`]: hbd's TOML configuration (with `[cluster]`'s settings) and
//!   [`config::resume`], the table a host starts with under it.
//! - [`api`]: the requests `hbctl hb` sends (one struct per operation);
//!   [`error`]: [`error::HbError`], what hbd's operations refuse and why.
//! - [`daemon`]: hbd around the decisions, in parts that each own their
//!   state and take the others they use as arguments or fields: what every
//!   task shares (`shared`: config, key, checker, clock, master gate,
//!   events, the table's record), the networks (`netio`), the analyzer,
//!   the local checks, the mirrors and their protection (`install`), the
//!   tick, the control server; with slot I/O, the mirrord client
//!   (`storage_client`), the local network check, failover and hooks,
//!   metrics and systemd. [`daemon::run`] wires them (and starts a part
//!   beside them, the cluster member, when the `hbd` binary asks: `hb`
//!   never imports [`crate::cluster`], which builds on it).
//! - [`sim`]: deterministic simulation: two sides running [`logic::step`],
//!   [`logic::checker`], the analyses' book and the real message encoding
//!   on a simulated clock, networks and mirrors, under fault schedules
//!   from seeds; checkers over each history (`hbsim`, `scripts/simulate.sh`).
//!   It uses `logic` and `config`, never `daemon`.
//!
//! The data path and its threads are drawn in [`daemon`]'s header.

pub mod api;
pub mod config;
pub mod daemon;
pub mod error;
pub mod logic;
pub mod sim;
