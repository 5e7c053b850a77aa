//! # hbd: the storage-based heartbeat check (seed Figures 2–11)
//!
//! Modules in reading order:
//!
//! - [`config`]: hbd's TOML configuration (host, group, channels, hooks, checks).
//! - [`message`]: the heartbeat message (Fig 3) and the control messages it
//!   carries: activation (Fig 4/5), procedure (Fig 8), failure notice (Fig 11).
//! - [`table`]: the heartbeat status table (Fig 2), the validity rules (Fig 7)
//!   and the failover decision, as pure code.
//! - [`api`]: the control API that `hbctl hb` speaks.
//! - [`daemon`]: the ticks that send (Fig 6), receive (Fig 7), decide, fail
//!   over, and run the local checks (Fig 10).
//!
//! ```text
//!  production host                                standby host
//!  hbd ── Beat (UDP, HMAC) ──────────────────────> hbd ─ network watch ─┐
//!   │  └─ one 4 KiB write ─> PVOL ══ mirrord ══> SVOL <─ read slot 0 ─ mirror watch ─┤
//!   │                                                                   evaluate ─> failover?
//!   └ <────────────────── the same, the other way (Fig 9) ─────────────── (standby only, once)
//! ```

pub mod api;
pub mod config;
pub mod daemon;
pub mod message;
pub mod table;
