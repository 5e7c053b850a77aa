//! The properties every simulated history must keep (DESIGN.md, safety
//! rules 4 and 5), each checked where it can break:
//!
//! - a write acknowledged in sync (or fenced) mode is at the SVOL when
//!   acknowledged, and the two volumes are identical whenever the pair is
//!   (or returns to) PAIR with nothing pending ([`quiet_pair`]);
//! - an SVOL never applies a block's writes out of order
//!   ([`World::applied_in_order`], checked by the world as it applies);
//! - after any copy (initial, resync, reverse) both volumes are identical ([`copy_done`]);
//! - an outdated PVOL never acknowledges a write ([`World::acknowledged`]);
//! - every divergence is caught by the generation verdicts: a verdict that
//!   copies less than the whole volume covers every differing block with a
//!   bitmap ([`verdict`]).

use hbcore::vocab::{PairState, Role};

use super::site::BLOCKS;
use super::world::World;
use crate::generation::Verdict;

/// What a comparison of generations found, seen from the asking site.
#[derive(Debug, Clone, Copy)]
pub struct Compared {
    /// The verdict.
    pub verdict: Verdict,
    /// Blocks the asking site's bitmap holds.
    pub local_dirty: u64,
    /// Blocks the peer's bitmap holds.
    pub peer_dirty: u64,
    /// The pair's state at the peer.
    pub peer_state: PairState,
}

/// Blocks where the two volumes differ.
fn differing(w: &World) -> Vec<usize> {
    (0..BLOCKS)
        .filter(|b| w.sites[0].vol[*b] != w.sites[1].vol[*b])
        .collect()
}

/// Site `i`'s copy completed (both PAIR): the volumes are identical.
pub fn copy_done(w: &mut World, i: usize) {
    let diff = differing(w);
    if !diff.is_empty() {
        let name = w.sites[i].name;
        w.violation(format!("copy from '{name}' done, blocks {diff:?} differ"));
    }
}

/// A comparison of generations at site `i`: a verdict that copies less
/// than everything covers every differing block with a bitmap.
pub fn verdict(w: &mut World, i: usize, c: &Compared) {
    *w.out.counts.verdicts.entry(kind(c.verdict)).or_default() += 1;
    if c.verdict.full_copy() {
        return;
    }
    let uncovered: Vec<usize> = differing(w)
        .into_iter()
        .filter(|b| w.sites[0].dirty[*b] == 0 && w.sites[1].dirty[*b] == 0)
        .collect();
    if !uncovered.is_empty() {
        let name = w.sites[i].name;
        w.violation(format!(
                "verdict {:?} at '{name}' misses blocks {uncovered:?}, which differ and no bitmap holds",
                c.verdict
            ));
    }
}

fn kind(v: Verdict) -> &'static str {
    match v {
        Verdict::InSync { .. } => "in sync",
        Verdict::Ahead { full: true, .. } => "ahead (full copy)",
        Verdict::Ahead { .. } => "ahead",
        Verdict::SplitBrain { .. } => "split brain",
        Verdict::Unrelated => "unrelated",
    }
}

/// After every step: a pair in PAIR at both sites with nothing pending
/// (nothing on the wire, no write in flight, no dirty block at the PVOL,
/// no queue, no copy) holds the same data at both.
pub fn quiet_pair(w: &mut World) {
    let (a, b) = (&w.sites[0], &w.sites[1]);
    let quiet = a.running()
        && b.running()
        && w.link_up
        && a.meta.role != b.meta.role
        && a.meta.state == PairState::Pair
        && b.meta.state == PairState::Pair
        && w.wire.iter().all(|f| f.is_empty())
        && [a, b].iter().all(|s| {
            s.flights.is_empty()
                && s.queue.is_empty()
                && s.in_copy.is_empty()
                && !s.copying
                && (s.meta.role == Role::Svol || s.dirty_blocks() == 0)
        });
    if !quiet {
        return;
    }
    w.out.counts.quiet_pairs += 1;
    let diff = differing(w);
    if !diff.is_empty() {
        w.violation(format!(
            "pair in PAIR with nothing pending, blocks {diff:?} differ"
        ));
    }
}
