//! The words every part shares: volume roles, pair states and the one table
//! of their legal transitions, remote-copy modes, fence levels, pair kinds,
//! heartbeat groups and failure levels.
//!
//! Each type displays (and serialises) as the name a storage administrator
//! or cluster engineer knows: `PSUE`, `semi-sync`, `SYSTEM DOWN`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Role of a volume in a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Primary: written by hosts, copied to the peer.
    Pvol,
    /// Secondary: receives the copies, read-only to hosts.
    Svol,
}

/// Pair states, with the names storage administrators know.
///
/// Every change of a pair's state goes through [`PairState::to`], which
/// consults the one transition table below:
///
/// ```text
///            create/attach          copy done
///   SMPL ───────────────> COPY ─────────────────> PAIR
///    ▲                    ▲ │ link lost              │ split ─> PSUS ─┐
///    │ delete (any)       │ └───────> PSUE <─────────┤ link lost      │ resync
///    │                    │ resync     │             │ takeover       │ (or takeover)
///    │                    └────────────┴─────────────┴──> SSWS <──────┘
///    │                       resync --reverse / the peer's copy   │
///    └────────────────────────────────────────────────────────────┘
/// ```
///
/// Besides: PSUE ─> PAIR at a re-attach that finds nothing to copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PairState {
    /// No pair.
    #[serde(rename = "SMPL")]
    Smpl,
    /// Initial copy or resync under way.
    #[serde(rename = "COPY")]
    Copy,
    /// In sync: every host write reaches both volumes.
    #[serde(rename = "PAIR")]
    Pair,
    /// Split by a person; changes tracked.
    #[serde(rename = "PSUS")]
    Psus,
    /// Suspended by an error (link or peer lost); changes tracked.
    #[serde(rename = "PSUE")]
    Psue,
    /// The SVOL side took over and is writable.
    #[serde(rename = "SSWS")]
    Ssws,
}

/// A state change the transition table does not allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a pair in {from} cannot go to {to}")]
pub struct IllegalTransition {
    /// The state the pair is in.
    pub from: PairState,
    /// The state asked for.
    pub to: PairState,
}

impl PairState {
    /// The transition table: whether a pair in `self` may go to `to`.
    /// Staying in the same state is always allowed (a no-op).
    pub fn allows(self, to: PairState) -> bool {
        use PairState::*;
        self == to
            || to == Smpl // delete dissolves a pair in any state
            || matches!(
                (self, to),
                // Initial copy, resync (also restarted after a reconnect), reverse resync.
                (Smpl | Pair | Psus | Psue | Ssws, Copy)
                    // The copy is complete.
                    | (Copy, Pair)
                    // Re-attach (mirrord's `reattach`): the PVOL kept PAIR through a clean
                    // restart with nothing to copy, so the SVOL that the lost link suspended
                    // joins again without a copy.
                    | (Psue, Pair)
                    // Link or peer lost, or a write could not be shipped.
                    | (Copy | Pair | Psus, Psue)
                    // A person splits (after what is pending has shipped).
                    | (Pair | Psue, Psus)
                    // The SVOL's site takes over, reachable PVOL site or not.
                    | (Copy | Pair | Psus | Psue, Ssws)
                    // The taken-over side learns the old PVOL site is back and split.
                    | (Ssws, Psus)
            )
    }

    /// Checks `self → to` against the table.
    pub fn to(self, to: PairState) -> Result<PairState, IllegalTransition> {
        if self.allows(to) {
            Ok(to)
        } else {
            Err(IllegalTransition { from: self, to })
        }
    }

    /// Whether changes made now are tracked in the dirty bitmap for a later resync.
    pub fn tracks_changes(self) -> bool {
        matches!(self, PairState::Psus | PairState::Psue | PairState::Ssws)
    }
}

/// Remote-copy mode of a pair.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// A host write returns once the PVOL holds it and the peer acknowledged the SVOL holds it.
    #[default]
    Sync,
    /// A host write returns after the PVOL write; its transfer starts at once, and the
    /// next write to the pair waits until it is acknowledged (at most one unacknowledged).
    SemiSync,
    /// A host write returns after the PVOL write; pending data ships when the link can
    /// take it, bounded in memory by the skew (beyond it, blocks are tracked and read back).
    Adaptive,
}

/// What a synchronous pair does with a write that cannot reach the SVOL.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Fence {
    /// The write succeeds on the PVOL, the pair suspends (PSUE) and tracks it.
    #[default]
    Never,
    /// The write fails with EIO and the PVOL is left untouched: the copies never diverge.
    Data,
}

/// The adjustable settings of a pair, the same at both sites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairSettings {
    /// Remote-copy mode.
    pub mode: Mode,
    /// Fence level (sync mode).
    pub fence: Fence,
    /// Adaptive mode: most bytes of pending writes held in memory.
    pub skew: u64,
    /// Resynchronise by itself when the link returns after PSUE.
    pub auto_resync: bool,
    /// Heartbeat pairs: installed for heartbeats, hence protected from split and delete.
    pub installed: bool,
    /// Copies (initial copy, resync): most bytes per second, 0 for no ceiling
    /// (DRBD's c-max-rate).
    #[serde(default)]
    pub c_max_rate: u64,
    /// Copies: the least rate a copy keeps while the rate controller slows
    /// it for host I/O on data volumes of its disk (whose latency it steers
    /// toward twice the idle latency); 0 lets host I/O not slow a copy
    /// (DRBD's c-min-rate).
    #[serde(default = "default_c_min_rate")]
    pub c_min_rate: u64,
}

/// Default adaptive skew: 4 MiB.
pub const DEFAULT_SKEW: u64 = 4 << 20;

/// Default copy ceiling: none (a copy with no host I/O beside it runs at disk speed).
pub const DEFAULT_C_MAX_RATE: u64 = 0;

/// Default least copy rate under competing host I/O: 4 MiB/s.
pub const DEFAULT_C_MIN_RATE: u64 = 4 << 20;

fn default_c_min_rate() -> u64 {
    DEFAULT_C_MIN_RATE
}

/// What a pair carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Heartbeat messages only; protected from split while installed for heartbeats.
    Heartbeat,
    /// Application data; may be split for backups.
    #[default]
    Data,
}

/// How a volume is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backing {
    /// A regular file.
    File,
    /// A block device.
    Block,
}

/// Which heartbeat group a host belongs to; only the standby fails over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    /// The production site's group: reports the standby's health, never fails over.
    Production,
    /// The standby site's group: fails over when the production group is dead.
    Standby,
}

/// Failure levels (seed Fig 11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Level {
    /// The whole system is down.
    #[serde(rename = "SYSTEM DOWN")]
    SystemDown,
    /// Serious.
    #[serde(rename = "SERIOUS")]
    Serious,
    /// Moderate.
    #[serde(rename = "MODERATE")]
    Moderate,
    /// Temporary.
    #[serde(rename = "TEMPORARY")]
    Temporary,
}

impl Level {
    /// Whether a received notice of this level runs the alert command.
    pub fn alerts(self) -> bool {
        matches!(self, Level::SystemDown | Level::Serious)
    }
}

/// Displays a unit-only enum by its serde name: one spelling for JSON, logs and tables.
macro_rules! display_as_serde {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // A unit variant serialises to a JSON string; nothing else can come out.
                match serde_json::to_value(self) {
                    Ok(serde_json::Value::String(name)) => f.write_str(&name),
                    _ => Err(fmt::Error),
                }
            }
        }
    )*};
}
display_as_serde!(Role, PairState, Mode, Kind, Fence, Backing, Group, Level);

#[cfg(test)]
mod tests {
    use super::*;
    use PairState::*;

    #[test]
    fn names_are_the_ones_people_know() {
        assert_eq!(Psue.to_string(), "PSUE");
        assert_eq!(Role::Svol.to_string(), "svol");
        assert_eq!(Mode::SemiSync.to_string(), "semi-sync");
        assert_eq!(Fence::Data.to_string(), "data");
        assert_eq!(Level::SystemDown.to_string(), "SYSTEM DOWN");
        assert_eq!(Group::Standby.to_string(), "standby");
        assert_eq!(Backing::Block.to_string(), "block");
    }

    #[test]
    fn the_table_allows_the_storage_life_cycle() {
        for (from, to) in [
            (Smpl, Copy),
            (Copy, Pair),
            (Pair, Psus),
            (Psus, Copy),
            (Pair, Psue),
            (Psue, Copy),
            (Psue, Ssws),
            (Pair, Ssws),
            (Ssws, Copy),
            (Pair, Smpl),
            (Ssws, Smpl),
            (Copy, Copy),
            (Psue, Pair),
        ] {
            assert_eq!(from.to(to), Ok(to), "{from} -> {to}");
        }
    }

    #[test]
    fn illegal_transitions_are_errors_that_name_both_states() {
        for (from, to) in [
            (Smpl, Pair),
            (Smpl, Psus),
            (Psus, Pair),
            (Ssws, Pair),
            (Copy, Psus),
        ] {
            let e = from.to(to).expect_err("illegal");
            assert_eq!(e, IllegalTransition { from, to });
            assert_eq!(e.to_string(), format!("a pair in {from} cannot go to {to}"));
        }
    }
}
