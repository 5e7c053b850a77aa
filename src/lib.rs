//! # hbmirror: storage-based heartbeat for two-site clusters
//!
//! This package holds what the binaries share and the host-side tools:
//!
//! - [`bench`]: measurements for `scripts/bench.sh` (`src/bin/hbbench.rs`).
//! - [`hb`]: hbd, the heartbeat check (seed Figures 2–11).
//! - `src/bin/hbctl.rs`, `src/bin/hbd.rs`: the thin binaries.
//!
//! The storage side lives in the member crates: `mirrord` (volumes on
//! io_uring, the remote link, pairs) and `hbfs` (the FUSE view of volumes).
//!
//! ```text
//!  hbctl ──JSON line──> control socket ─> mirrord ─ PVOL write ─> io_uring ─> file/device
//!                                           │  └─ Write frame ── TCP link ─> peer mirrord ─> SVOL
//!  host program ─ open/read/write ─> hbfs (FUSE) ─┘
//! ```

pub mod bench;
pub mod hb;
