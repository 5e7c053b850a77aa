//! The dirty bitmap of one pair at one site: one bit per 4 KiB block, set
//! while the other side lacks that block's latest data.
//!
//! ```text
//!  write(seq s) ─ mark: bits set, block_seq[b] = s ─ extent not yet on disk? ─> persist extent as all-ones, fdatasync
//!  ack(s)      ─ clear bit b only if block_seq[b] == s (no newer write touched it)
//!  every 1 s   ─ extents idle for a while are rewritten on disk with their exact bits
//! ```
//!
//! The file on disk is always a superset of the true dirty set: a block
//! is written only after its extent (2 MiB of volume) is marked on disk, and
//! bits on disk are cleared only by writing the exact in-memory bits. So a
//! crash may over-mark (the extents that were being written), never
//! under-mark; a clean shutdown writes the exact bits.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bytes per bit.
pub const BLOCK: u64 = 4096;
/// Blocks per on-disk activation unit (2 MiB of volume, 64 bytes of bitmap).
const EXTENT_BLOCKS: u64 = 512;

/// A bitmap that could not be read or persisted.
#[derive(Debug, thiserror::Error)]
#[error("dirty bitmap {path}")]
pub struct BitmapError {
    /// Bitmap file.
    pub path: PathBuf,
    /// OS error.
    pub source: io::Error,
}

/// A run of dirty blocks with the write sequence each block had when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// First block.
    pub first: u64,
    /// Number of blocks.
    pub len: u64,
}

/// The dirty bitmap of a pair at this site.
pub struct DirtyMap {
    path: PathBuf,
    file: File,
    blocks: u64,
    bits: Vec<u8>,
    dirty: u64,
    /// Sequence of the latest write to each block.
    block_seq: Vec<u64>,
    next_seq: u64,
    /// Extents marked all-ones on disk, with their last write.
    active: HashMap<u64, Instant>,
    /// When the bitmap went from clean to dirty.
    dirty_since: Option<Instant>,
    /// Blocks a verify found different: only a copy of the whole block
    /// clears them, never the acknowledgement of a host write into them.
    pinned: HashSet<u64>,
}

impl DirtyMap {
    /// Opens (or creates, clean) the bitmap of a volume of `size` bytes.
    /// What the file holds is taken as dirty.
    pub fn open(path: &Path, size: u64) -> Result<DirtyMap, BitmapError> {
        let err = |source| BitmapError {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let blocks = size.div_ceil(BLOCK);
        let bytes = blocks.div_ceil(8) as usize;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(err)?;
        let mut bits = vec![0u8; bytes];
        let on_disk = file.metadata().map_err(err)?.len();
        if on_disk == bytes as u64 {
            file.read_exact_at(&mut bits, 0).map_err(err)?;
        } else {
            // New, or from a volume of another size: start clean, on disk too.
            file.set_len(bytes as u64).map_err(err)?;
            file.write_all_at(&bits, 0).map_err(err)?;
            file.sync_all().map_err(err)?;
        }
        // Bits past the last block are never set.
        let dirty = bits.iter().map(|b| u64::from(b.count_ones())).sum();
        Ok(DirtyMap {
            path: path.to_path_buf(),
            file,
            blocks,
            bits,
            dirty,
            block_seq: vec![0; blocks as usize],
            next_seq: 1,
            active: HashMap::new(),
            dirty_since: (dirty > 0).then(Instant::now),
            pinned: HashSet::new(),
        })
    }

    fn err(&self) -> impl FnOnce(io::Error) -> BitmapError + '_ {
        |source| BitmapError {
            path: self.path.clone(),
            source,
        }
    }

    fn is_set(&self, b: u64) -> bool {
        self.bits[(b / 8) as usize] & (1 << (b % 8)) != 0
    }

    fn set(&mut self, b: u64) {
        if !self.is_set(b) {
            self.bits[(b / 8) as usize] |= 1 << (b % 8);
            self.dirty += 1;
            self.dirty_since.get_or_insert_with(Instant::now);
        }
    }

    fn clear(&mut self, b: u64) {
        self.pinned.remove(&b);
        if self.is_set(b) {
            self.bits[(b / 8) as usize] &= !(1 << (b % 8));
            self.dirty -= 1;
            if self.dirty == 0 {
                self.dirty_since = None;
            }
        }
    }

    /// Blocks covering `len` bytes at `offset`.
    pub fn blocks_of(offset: u64, len: u64) -> std::ops::Range<u64> {
        offset / BLOCK..(offset + len).div_ceil(BLOCK)
    }

    /// Records a write of `len` bytes at `offset`: sets its bits (durably
    /// before returning) and returns the write's sequence number.
    pub fn mark(&mut self, offset: u64, len: u64) -> Result<u64, BitmapError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let range = Self::blocks_of(offset, len);
        let now = Instant::now();
        let first_extent = range.start / EXTENT_BLOCKS;
        let last_extent = range.end.saturating_sub(1) / EXTENT_BLOCKS;
        for extent in first_extent..=last_extent {
            if self.active.insert(extent, now).is_none() {
                self.persist_extent(extent, true)?;
            }
        }
        for b in range {
            self.set(b);
            self.block_seq[b as usize] = seq;
        }
        Ok(seq)
    }

    /// The sequences of blocks `first..first+len` now (taken with the data they describe).
    pub fn seqs(&self, first: u64, len: u64) -> Vec<u64> {
        self.block_seq[first as usize..(first + len) as usize].to_vec()
    }

    /// The other side holds blocks from `first` as of `seqs`: clear the bits
    /// of those no newer write touched.
    pub fn acked(&mut self, first: u64, seqs: &[u64]) {
        for (i, seq) in seqs.iter().enumerate() {
            let b = first + i as u64;
            if self.block_seq[b as usize] == *seq {
                self.clear(b);
            }
        }
    }

    /// Acknowledges one write (all its blocks carry `seq`). A pinned block
    /// stays dirty: the write may have covered only part of it.
    pub fn acked_write(&mut self, offset: u64, len: u64, seq: u64) {
        for b in Self::blocks_of(offset, len) {
            if self.block_seq[b as usize] == seq && !self.pinned.contains(&b) {
                self.clear(b);
            }
        }
    }

    /// Marks whole blocks dirty that differ from the other copy (a verify
    /// found them), durably; only a copy of the whole block clears them.
    pub fn mark_differing(&mut self, blocks: &[u64]) -> Result<(), BitmapError> {
        let end = self.blocks;
        for b in blocks.iter().copied().filter(|b| *b < end) {
            self.mark(b * BLOCK, BLOCK)?;
            self.pinned.insert(b);
        }
        Ok(())
    }

    /// Whether block `b` is dirty.
    pub fn is_dirty(&self, b: u64) -> bool {
        b < self.blocks && self.is_set(b)
    }

    /// Marks every block dirty (for a full copy), durably.
    pub fn mark_all(&mut self) -> Result<(), BitmapError> {
        for b in 0..self.blocks {
            self.set(b);
        }
        self.write_all()
    }

    /// Adds the other side's dirty bits (same volume size), durably.
    pub fn merge(&mut self, other: &[u8]) -> Result<(), BitmapError> {
        for b in 0..self.blocks.min(other.len() as u64 * 8) {
            if other[(b / 8) as usize] & (1 << (b % 8)) != 0 {
                self.set(b);
            }
        }
        self.write_all()
    }

    /// Clears every bit (the other side has been told to copy everything), durably.
    pub fn clear_all(&mut self) -> Result<(), BitmapError> {
        for b in 0..self.blocks {
            self.clear(b);
        }
        self.write_all()
    }

    /// The raw bits (for the peer to merge).
    pub fn bits(&self) -> &[u8] {
        &self.bits
    }

    /// Number of dirty blocks.
    pub fn dirty_blocks(&self) -> u64 {
        self.dirty
    }

    /// How long the bitmap has been dirty.
    pub fn dirty_for(&self) -> Option<Duration> {
        self.dirty_since.map(|t| t.elapsed())
    }

    /// Dirty runs in block order, each at most `max` blocks, starting at or after `from`.
    pub fn runs(&self, from: u64, max: u64, limit: usize) -> Vec<Run> {
        let mut runs: Vec<Run> = Vec::new();
        let mut b = from;
        while b < self.blocks && runs.len() < limit {
            if self.bits[(b / 8) as usize] == 0 {
                b = (b / 8 + 1) * 8;
                continue;
            }
            if self.is_set(b) {
                match runs.last_mut() {
                    Some(r) if r.first + r.len == b && r.len < max => r.len += 1,
                    _ => runs.push(Run { first: b, len: 1 }),
                }
            }
            b += 1;
        }
        runs
    }

    /// Rewrites idle extents with their exact bits (clearing on disk what was acked).
    pub fn flush_idle(&mut self, idle: Duration) -> Result<(), BitmapError> {
        let now = Instant::now();
        let idle_extents: Vec<u64> = self
            .active
            .iter()
            .filter(|(_, t)| now.duration_since(**t) >= idle)
            .map(|(e, _)| *e)
            .collect();
        for extent in idle_extents {
            self.persist_extent(extent, false)?;
            self.active.remove(&extent);
        }
        Ok(())
    }

    /// Writes the exact bits, durably (clean shutdown, merges).
    pub fn write_all(&mut self) -> Result<(), BitmapError> {
        self.file.write_all_at(&self.bits, 0).map_err(self.err())?;
        self.file.sync_data().map_err(self.err())?;
        self.active.clear();
        Ok(())
    }

    /// Puts one extent on disk: all ones (before writes into it) or its exact bits.
    fn persist_extent(&mut self, extent: u64, all_ones: bool) -> Result<(), BitmapError> {
        let start = (extent * EXTENT_BLOCKS / 8) as usize;
        let end = (((extent + 1) * EXTENT_BLOCKS).min(self.blocks).div_ceil(8) as usize)
            .min(self.bits.len());
        let bytes: Vec<u8> = if all_ones {
            (start..end)
                .map(|i| self.bits[i] | self.valid_mask(i))
                .collect()
        } else {
            self.bits[start..end].to_vec()
        };
        self.file
            .write_all_at(&bytes, start as u64)
            .map_err(self.err())?;
        if all_ones {
            // Setting bits must be on disk before the write it covers.
            self.file.sync_data().map_err(self.err())?;
        }
        Ok(())
    }

    /// The bits of byte `i` that stand for real blocks.
    fn valid_mask(&self, i: usize) -> u8 {
        let first = i as u64 * 8;
        match self.blocks.saturating_sub(first) {
            n if n >= 8 => 0xff,
            n => ((1u16 << n) - 1) as u8,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_disk(path: &Path, size: u64) -> DirtyMap {
        DirtyMap::open(path, size).expect("reopen")
    }

    #[test]
    fn an_ack_clears_only_what_no_newer_write_touched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut m = DirtyMap::open(&dir.path().join("b"), 1 << 20).expect("open");
        let first = m.mark(0, 8192).expect("mark");
        let second = m.mark(4096, 100).expect("mark");
        assert_eq!(m.dirty_blocks(), 2);
        m.acked_write(0, 8192, first);
        assert_eq!(m.dirty_blocks(), 1, "block 1 was rewritten since");
        m.acked_write(4096, 100, second);
        assert_eq!(m.dirty_blocks(), 0);
        assert!(m.dirty_for().is_none());
    }

    #[test]
    fn a_crash_over_marks_and_never_under_marks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b");
        let size = 16 << 20; // 8 extents
        let mut m = DirtyMap::open(&path, size).expect("open");
        let s = m.mark(3 << 20, 4096).expect("mark"); // extent 1
        m.acked_write(3 << 20, 4096, s);
        m.mark(10 << 20, 4096).expect("mark"); // extent 5, stays dirty
                                               // "Crash": drop without flushing; the file holds both extents whole.
        drop(m);
        let after = on_disk(&path, size);
        assert_eq!(after.dirty_blocks(), 2 * EXTENT_BLOCKS);
        assert!(after
            .runs(0, u64::MAX, 10)
            .iter()
            .any(|r| r.first <= 2560 && 2560 < r.first + r.len));
    }

    #[test]
    fn idle_extents_and_clean_shutdowns_are_exact() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("b");
        let mut m = DirtyMap::open(&path, 4 << 20).expect("open");
        let s = m.mark(0, 4096).expect("mark");
        m.mark(8192, 4096).expect("mark");
        m.acked_write(0, 4096, s);
        m.flush_idle(Duration::ZERO).expect("flush");
        drop(m);
        let after = on_disk(&path, 4 << 20);
        assert_eq!(after.runs(0, 100, 10), vec![Run { first: 2, len: 1 }]);
    }

    #[test]
    fn a_block_verify_found_different_is_cleared_only_by_a_copy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut m = DirtyMap::open(&dir.path().join("b"), 1 << 20).expect("open");
        m.mark_differing(&[3, 9999]).expect("mark");
        assert_eq!(m.dirty_blocks(), 1, "blocks past the end are ignored");
        // A host write of 100 bytes into the block is acknowledged: still dirty.
        let seq = m.mark(3 * BLOCK + 10, 100).expect("mark");
        m.acked_write(3 * BLOCK + 10, 100, seq);
        assert!(m.is_dirty(3));
        // A copy ships the whole block, read back: clean.
        let seqs = m.seqs(3, 1);
        m.acked(3, &seqs);
        assert!(!m.is_dirty(3));
    }

    #[test]
    fn runs_merge_neighbours_up_to_a_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut m = DirtyMap::open(&dir.path().join("b"), 1 << 20).expect("open");
        m.mark(0, 5 * 4096).expect("mark");
        m.mark(100 * 4096, 4096).expect("mark");
        assert_eq!(
            m.runs(0, 3, 10),
            vec![
                Run { first: 0, len: 3 },
                Run { first: 3, len: 2 },
                Run { first: 100, len: 1 }
            ]
        );
        assert_eq!(
            m.runs(4, 3, 10),
            vec![Run { first: 4, len: 1 }, Run { first: 100, len: 1 }]
        );
        let mut other = vec![0u8; m.bits().len()];
        other[20] = 0b1000_0001;
        m.merge(&other).expect("merge");
        assert_eq!(m.dirty_blocks(), 8);
        m.mark_all().expect("all");
        assert_eq!(m.dirty_blocks(), 256);
        assert!(m.is_dirty(255) && !m.is_dirty(256));
        m.clear_all().expect("clear");
        assert_eq!(m.dirty_blocks(), 0);
    }
}
