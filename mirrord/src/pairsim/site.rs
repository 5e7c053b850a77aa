//! One simulated site of a pair: what survives a kill -9 (the pair's record
//! [`PairMeta`], the volume's blocks, the bitmap's marks on disk) and what
//! does not (the exact bitmap with its sequences, writes in flight, the
//! adaptive queue, the copy task). The volume is a block → write id map: 0
//! is the zeroed volume, every host write has a new id. Single-threaded:
//! the world steps it.

use std::collections::VecDeque;

use hbcore::control::IntegrityOptions;
use hbcore::link::Generations;
use hbcore::vocab::{Fence, Kind, Mode, PairSettings, PairState, Role};

use crate::meta::PairMeta;

/// Blocks of the simulated volume.
pub const BLOCKS: usize = 6;

/// What a frame answers when it comes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// A host write (sync, fenced, semi-sync) of `id` to `block` as of `seq`.
    Host {
        /// The write's id.
        id: u64,
        /// Its block.
        block: usize,
        /// Its sequence in the bitmap.
        seq: u64,
    },
    /// A queued adaptive write.
    Queued {
        /// Its block.
        block: usize,
        /// Its sequence.
        seq: u64,
    },
    /// A block read back from the volume by a copy (or adaptive overflow).
    Copy {
        /// The block.
        block: usize,
        /// Its sequence when read.
        seq: u64,
    },
}

/// A host write waiting for its ack (sync, fenced, semi-sync).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flight {
    /// The write's id.
    pub id: u64,
    /// Its block.
    pub block: usize,
    /// Its sequence.
    pub seq: u64,
    /// Fenced: the PVOL is written only after the ack; `clean` says the
    /// block was clean before.
    pub fenced: Option<bool>,
    /// Semi-sync: the host was answered already.
    pub answered: bool,
}

/// One site.
#[derive(Debug)]
pub struct SimSite {
    /// "prod" or "standby".
    pub name: &'static str,
    /// The pair's record (persisted at every change).
    pub meta: PairMeta,
    /// The volume: the write id each block holds (survives kill -9).
    pub vol: Vec<u64>,
    /// The bitmap's marks on disk: set before a write, cleared only when flushed.
    pub disk_dirty: Vec<bool>,
    /// The bitmap in memory: each block's latest sequence, 0 when clean.
    pub dirty: Vec<u64>,
    /// The last sequence given.
    pub seq: u64,
    /// Host writes on the wire.
    pub flights: Vec<Flight>,
    /// Adaptive: writes held (block, id, seq), and the overflow flag.
    pub queue: VecDeque<(usize, u64, u64)>,
    /// Adaptive: writes past the skew are tracked only.
    pub overflowed: bool,
    /// Adaptive: queued writes on the wire.
    pub shipping: usize,
    /// A copy task runs.
    pub copying: bool,
    /// Blocks read back (copy, adaptive overflow) on the wire, with their sequences.
    pub in_copy: Vec<(usize, u64)>,
    /// The process runs.
    pub alive: bool,
    /// The process is frozen (a stopped VM, a long pause): takes no steps.
    pub frozen: bool,
    /// The link went down while frozen: handled at the thaw.
    pub missed_link_down: bool,
    /// The next volume write fails.
    pub disk_fails: bool,
    /// The latest id applied from the peer per block (the order checker's).
    pub applied: Vec<u64>,
}

/// The settings of the simulated pair.
pub fn settings(mode: Mode, fence: Fence, auto_resync: bool) -> PairSettings {
    PairSettings {
        mode,
        fence,
        skew: 2,
        auto_resync,
        installed: false,
        c_max_rate: 0,
        c_min_rate: 0,
    }
}

impl SimSite {
    /// A site holding `role` of a pair just created (COPY), with `generations`.
    pub fn new(
        name: &'static str,
        role: Role,
        settings: PairSettings,
        generations: Generations,
        policy: hbcore::control::SplitBrainPolicy,
        vol: Vec<u64>,
    ) -> SimSite {
        let peer = if name == "prod" { "standby" } else { "prod" };
        SimSite {
            name,
            meta: PairMeta {
                role,
                state: PairState::Copy,
                kind: Kind::Data,
                settings,
                peer: peer.into(),
                pvol: "vol".into(),
                svol: "vol".into(),
                generations: Some(generations),
                integrity: IntegrityOptions {
                    checksum_resync: false,
                    split_brain: policy,
                },
                outdated: None,
            },
            vol,
            disk_dirty: vec![false; BLOCKS],
            dirty: vec![0; BLOCKS],
            seq: 0,
            flights: Vec::new(),
            queue: VecDeque::new(),
            overflowed: false,
            shipping: 0,
            copying: false,
            in_copy: Vec::new(),
            alive: true,
            frozen: false,
            missed_link_down: false,
            disk_fails: false,
            applied: vec![0; BLOCKS],
        }
    }

    /// Drops the adaptive queue (its blocks stay dirty, shipped read back).
    pub fn clear_queue(&mut self) {
        self.queue.clear();
        self.overflowed = true;
    }

    /// A fenced write holds the volume's order lock until its ack (and
    /// its PVOL write): nothing else goes on the wire meanwhile.
    pub fn order_locked(&self) -> bool {
        self.flights.iter().any(|f| f.fenced.is_some())
    }

    /// Whether it takes steps.
    pub fn running(&self) -> bool {
        self.alive && !self.frozen
    }

    /// Marks `block` dirty (on disk first); its new sequence.
    pub fn mark(&mut self, block: usize) -> u64 {
        self.seq += 1;
        self.dirty[block] = self.seq;
        self.disk_dirty[block] = true;
        self.seq
    }

    /// Marks every block (a full copy).
    pub fn mark_all(&mut self) {
        for b in 0..BLOCKS {
            self.mark(b);
        }
    }

    /// The ack of data that carried `block` as of `seq`: clean if still its latest.
    pub fn acked(&mut self, block: usize, seq: u64) {
        if self.dirty[block] == seq {
            self.dirty[block] = 0;
        }
    }

    /// Dirty blocks in memory.
    pub fn dirty_blocks(&self) -> u64 {
        self.dirty.iter().filter(|s| **s != 0).count() as u64
    }

    /// Merges the peer's bitmap (its dirty blocks become dirty here).
    pub fn merge(&mut self, bits: &[bool]) {
        for (b, d) in bits.iter().enumerate() {
            if *d {
                self.mark(b);
            }
        }
    }

    /// The bitmap as the peer takes it.
    pub fn bits(&self) -> Vec<bool> {
        self.dirty.iter().map(|s| *s != 0).collect()
    }

    /// Clears the bitmap, on disk too.
    pub fn clear_all(&mut self) {
        self.dirty = vec![0; BLOCKS];
        self.disk_dirty = vec![false; BLOCKS];
    }

    /// Writes the exact bitmap to disk.
    pub fn flush(&mut self) {
        for b in 0..BLOCKS {
            self.disk_dirty[b] = self.dirty[b] != 0;
        }
    }

    /// Writes the volume; false if the disk failed.
    pub fn write(&mut self, block: usize, id: u64) -> bool {
        if std::mem::take(&mut self.disk_fails) {
            return false;
        }
        self.vol[block] = id;
        true
    }

    /// kill -9: everything in memory is gone; the record, the volume and
    /// the bitmap's marks on disk stay.
    pub fn kill(&mut self) {
        self.alive = false;
        self.frozen = false;
        self.missed_link_down = false;
        self.flights.clear();
        self.queue.clear();
        self.shipping = 0;
        self.copying = false;
        self.in_copy.clear();
        self.disk_fails = false;
    }

    /// The restart: the bitmap from disk (over-marked), sequences anew.
    pub fn restart(&mut self) {
        self.alive = true;
        self.dirty = vec![0; BLOCKS];
        for b in 0..BLOCKS {
            if self.disk_dirty[b] {
                self.seq += 1;
                self.dirty[b] = self.seq;
            }
        }
        // Adaptive data left unshipped is read back from the PVOL.
        self.overflowed = self.dirty_blocks() > 0;
    }

    /// The generations in the record.
    pub fn generations(&mut self) -> &mut Generations {
        self.meta
            .generations
            .get_or_insert_with(Generations::default)
    }
}
