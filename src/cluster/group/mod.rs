//! A group's second channel inside a site: a slot per host on a volume of
//! its own storage system (seed 000's groups; SBD's slots and poison pill;
//! Oracle CSS's voting disk). The LAN (the member notices) is one channel,
//! the group volume the other:
//!
//! - [`slot`]: the bytes — a host's slot (id, run, serial, state, master
//!   claim, poison acknowledged) and its mailbox (a poison), each one signed
//!   4 KiB block;
//! - [`rules`]: the decisions, pure — a member DOWN only when both channels
//!   are silent (or it says so), a master only while it can write its slot,
//!   a successor only after the full `master_timeout_ms`, a self-fence
//!   when both channels are lost;
//! - [`disk`]: the I/O, bounded by deadlines.
//! - [`sim`]: a deterministic simulation of the master rules (`hbsim --group`), on the rules above.
//!
//! The member's run task drives them every interval (`crate::cluster`'s
//! `channels` and `fence`); [`Seen`] is what it keeps, behind the member's
//! lock, held briefly and never across an await; a leaf lock: no other
//! lock is taken while it is held.

pub mod disk;
pub mod rules;
pub mod sim;
pub mod slot;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use disk::GroupVolume;
use rules::{Claim, SlotWatch};
use slot::SlotState;

/// What this host keeps of its group's volume.
pub struct Seen {
    /// The volume.
    pub volume: Arc<GroupVolume>,
    /// The zero of the millisecond times below (this host's monotonic clock).
    pub epoch: Instant,
    /// This host's slot serial.
    pub serial: u64,
    /// The last poison this host obeyed (carried over from its slot of an
    /// earlier run, so a restart does not obey it again).
    pub ack: Option<u64>,
    /// Why this host is fenced, if it is (for the rest of this run).
    pub fenced: Option<String>,
    /// The start of this host's last good slot write.
    pub last_write_ms: Option<u64>,
    /// This host's hold on the reign in its view (its claims, if master).
    pub claim: Claim,
    /// This host's last good read of the volume.
    pub last_read_ms: Option<u64>,
    /// When this host began to watch the slots (start, or a new reign).
    pub watching_ms: u64,
    /// The other hosts' slots as last seen.
    pub watches: BTreeMap<String, SlotWatch>,
    /// Blocks refused (host → why), reported once each.
    pub refused: BTreeMap<String, String>,
    /// Hosts silent on the LAN whose slot advances (reported once each).
    pub lan_faults: BTreeSet<String>,
    /// This host gave up its reign (its lease ran out): it does not act as
    /// master again until a new reign begins.
    pub resigned: bool,
    /// When it gave it up.
    pub resigned_ms: Option<u64>,
    /// The first read has carried over this host's earlier slot.
    pub started: bool,
    /// What last failed on the volume (logged once until it works again).
    pub trouble: Option<String>,
}

impl Seen {
    /// Nothing seen yet.
    pub fn new(volume: Arc<GroupVolume>) -> Seen {
        Seen {
            volume,
            epoch: Instant::now(),
            serial: 0,
            ack: None,
            fenced: None,
            last_write_ms: None,
            claim: Claim::new(0),
            last_read_ms: None,
            watching_ms: 0,
            watches: BTreeMap::new(),
            refused: BTreeMap::new(),
            lan_faults: BTreeSet::new(),
            resigned: false,
            resigned_ms: None,
            started: false,
            trouble: None,
        }
    }

    /// `at` in milliseconds since the epoch.
    pub fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// The view for `hbctl cluster show`.
    pub fn view(&self, now: Instant) -> GroupView {
        let now_ms = self.ms(now);
        GroupView {
            volume: self.volume.path.display().to_string(),
            slots: self
                .watches
                .iter()
                .map(|(host, w)| SlotView {
                    host: host.clone(),
                    serial: w.slot.serial,
                    state: w.slot.state,
                    master: w.slot.master,
                    still_ms: now_ms.saturating_sub(w.advanced_ms),
                })
                .collect(),
            refused: self.refused.clone(),
            lan_faults: self.lan_faults.iter().cloned().collect(),
            fenced: self.fenced.clone(),
            slot_written_ms_ago: self.last_write_ms.map(|t| now_ms.saturating_sub(t)),
        }
    }
}

/// The group volume as `hbctl cluster show` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupView {
    /// The volume.
    pub volume: String,
    /// The other hosts' slots.
    pub slots: Vec<SlotView>,
    /// Blocks refused: host → why.
    #[serde(default)]
    pub refused: BTreeMap<String, String>,
    /// Hosts silent on the LAN whose slot advances: a LAN fault, not a DOWN.
    #[serde(default)]
    pub lan_faults: Vec<String>,
    /// Why this host is fenced, if it is.
    #[serde(default)]
    pub fenced: Option<String>,
    /// Milliseconds since this host last wrote its slot.
    #[serde(default)]
    pub slot_written_ms_ago: Option<u64>,
}

/// One slot as last seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotView {
    /// Its host.
    pub host: String,
    /// Its serial.
    pub serial: u64,
    /// What the host says of itself.
    pub state: SlotState,
    /// The cluster instance it claims to reign in.
    pub master: Option<u64>,
    /// Milliseconds since it last advanced.
    pub still_ms: u64,
}
