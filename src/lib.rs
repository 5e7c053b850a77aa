//! # hbmirror: storage-based heartbeat for two-site clusters
//!
//! This package holds the host-side tools and what they share; the storage
//! side lives in the member crates `mirrord` (volumes on io_uring, the
//! remote link, pairs) and `hbfs` (the FUSE view of volumes), and the
//! vocabulary all of them speak in `hbcore`.
//!
//! In reading order:
//!
//! - [`hb`]: hbd, the heartbeat check (seed Figures 2–11): its pure
//!   decisions ([`hb::logic`]: the message, the status table, the rules that
//!   decide), its config and API, the daemon around them ([`hb::daemon`]:
//!   parts that own their state, wired by [`hb::daemon::run`]) and the
//!   simulation that drives the decisions ([`hb::sim`]).
//! - [`cluster`]: clusters of many hosts (seed 004; seed 000's groups): the
//!   cluster MIB, node states and takeover, hot add/remove, start of day,
//!   the master host of each group; a member agent that the `hbd` binary
//!   starts beside hbd when its config has `[cluster]`. `cluster` builds on
//!   `hb`; `hb` never imports `cluster`.
//! - `src/bin/hbd.rs`: the thin daemon binary (config, then [`hb::daemon::run`]
//!   with [`cluster::start`] beside it).
//! - `src/bin/hbctl/`: the command line for mirrord and hbd (`cli`, `storage`,
//!   `hb`, `print`).
//! - [`bench`](mod@bench): measurements for `scripts/bench.sh` (`src/bin/hbbench.rs`).
//! - `src/bin/hbsim.rs`: the deterministic simulation of the heartbeat
//!   check ([`hb::sim`]) for `scripts/simulate.sh`.
//!
//! The data path of one heartbeat, and where it changes hands
//! (`═>` another thread, task or process):
//!
//! ```text
//!  prod host: hbd tick task
//!   ├─ UDP datagram (HBBT frame) ───────────────────────────────> standby hbd: UDP task ──┐
//!   └═> blocking thread: one 4 KiB write to /mnt/hbfs/hb0                                 │
//!        ═> kernel FUSE ═> hbfs worker thread in mirrord ═> mirrord's runtime:            │
//!             PVOL write (io_uring) ─> file/device                                        │
//!             └─ Write frame ── TCP remote link ─> standby mirrord ─> SVOL                │
//!  standby host: hbd tick task                                                            │
//!   └═> blocking thread: read slot 0 of /mnt/hbfs/hb0 (FUSE ═> mirrord ─> SVOL)           │
//!        ─> decode ─> checker (one lock) <────────────────────────────────────────────────┘
//!         └─ every channel dead ═> failover task ═> mirrord takeover, hook process (once)
//!
//!  hbctl ─ JSON line ─> control socket ═> task per client ─> mirrord or hbd ─> JSON line back
//! ```

pub mod bench;
pub mod cluster;
pub mod hb;
