//! # hbcore: the vocabulary every part of hbmirror shares
//!
//! mirrord (the storage engine), hbd (the heartbeat check) and hbctl (the
//! command line) each depend on this crate and on nothing of each other's;
//! it depends on nothing in the workspace, and on neither FUSE nor io_uring.
//!
//! Modules in reading order:
//!
//! - [`vocab`]: roles, pair states with their one transition table, modes,
//!   fence levels, pair kinds, heartbeat groups, failure levels.
//! - [`control`]: mirrord's control requests (one struct per operation, serde
//!   for the daemon and clap for hbctl) and replies.
//! - [`jsonl`]: the JSON-lines control transport: the daemons' accept loop,
//!   hbctl's call.
//! - [`auth`]: the one HMAC-SHA256 setup (handshake proofs, heartbeat tags).
//! - [`frame`]: the one frame layout, for the link (`HBLK`) and heartbeats (`HBBT`).
//! - [`link`]: the messages of the remote link between two mirrords, their
//!   codec, sealing and the handshake (shared by the host link).
//! - [`host`]: the host link: a host's requests to its site's mirrord over
//!   the network, and its reconnecting client.
//! - [`config`]: loading a daemon's TOML config and its pre-shared key.
//! - [`daemon`]: the body of a daemon's `main`, with its shutdown as a future.
//! - [`metrics`]: the OpenMetrics endpoint (`GET /metrics`) and a scrape's metric set.
//! - [`notify`]: systemd's readiness, status and watchdog notifications.
//! - [`docs`]: man pages and shell completions from a binary's clap definition.
//! - [`report`]: an error and its causes, each said once.
//! - [`throttle`]: log lines for repeated refusals, counted and bounded.
//! - [`size`]: human sizes.
//!
//! ```text
//!  hbctl ──control::Request──jsonl──> mirrord ──link::Message in frame::Format HBLK──> mirrord
//!  hbfs, hbctl, hbd on a host ──host::HostRequest, sealed HBLK (Lane::Host)──> mirrord
//!  hbctl ──hbd's requests────jsonl──> hbd ──────heartbeat in frame::Format HBBT (UDP, volume slot)──> hbd
//! ```

pub mod auth;
pub mod config;
pub mod control;
pub mod daemon;
pub mod docs;
pub mod frame;
pub mod host;
pub mod jsonl;
pub mod link;
pub mod metrics;
pub mod notify;
pub mod report;
pub mod size;
pub mod throttle;
pub mod vocab;
