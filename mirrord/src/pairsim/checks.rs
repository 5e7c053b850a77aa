//! The properties every simulated history must keep (DESIGN.md, safety
//! rules 4 and 5), each checked where it can break:
//!
//! - a write acknowledged in sync (or fenced) mode is at the SVOL when
//!   acknowledged, and the two volumes are identical whenever the pair is
//!   (or returns to) PAIR with nothing pending ([`quiet_pair`]);
//! - an SVOL never applies a block's writes out of order ([`applied_in_order`]);
//! - after any copy (initial, resync, reverse) both volumes are identical ([`copy_done`]);
//! - an outdated PVOL never acknowledges a write ([`acknowledged`]);
//! - every divergence is caught by the generation verdicts: a verdict that
//!   copies less than the whole volume covers every differing block with a
//!   bitmap ([`verdict`]).

use hbcore::vocab::{PairState, Role};

use super::ops::Compared;
use super::site::BLOCKS;
use super::world::World;
use crate::generation::Verdict;

fn violation(w: &mut World, what: String) {
    w.note(|| format!("VIOLATION: {what}"));
    w.out.violations.push(what);
}

/// Site `i` answered a host write `id` to `block` as done; `mirrored`: the SVOL acknowledged it.
pub fn acknowledged(w: &mut World, i: usize, id: u64, block: usize, mirrored: bool) {
    if w.sites[i].meta.outdated.is_some() {
        let name = w.sites[i].name;
        violation(
            w,
            format!("outdated PVOL at '{name}' acknowledged write {id}"),
        );
    }
    if mirrored {
        w.out.counts.acked_mirrored += 1;
        let svol = &w.sites[1 - i];
        if svol.vol[block] < id {
            let (name, has) = (svol.name, svol.vol[block]);
            violation(
                w,
                format!("write {id} acknowledged as mirrored, but block {block} at '{name}' holds {has}"),
            );
        }
    } else {
        w.out.counts.acked_alone += 1;
    }
}

/// Site `r`'s SVOL applied `data` to `block`: never older than what it applied before.
pub fn applied_in_order(w: &mut World, r: usize, block: usize, data: u64) {
    let before = w.sites[r].applied[block];
    // Older data may replace only a write the PVOL never wrote (a copy puts its block back).
    if data < before && w.written.contains(&before) {
        let name = w.sites[r].name;
        violation(
            w,
            format!("SVOL at '{name}' applied write {data} to block {block} after write {before}"),
        );
    }
    w.sites[r].applied[block] = data;
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
        violation(
            w,
            format!("copy from '{name}' done, blocks {diff:?} differ"),
        );
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
        violation(
            w,
            format!(
                "verdict {:?} at '{name}' misses blocks {uncovered:?}, which differ and no bitmap holds",
                c.verdict
            ),
        );
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
        violation(
            w,
            format!("pair in PAIR with nothing pending, blocks {diff:?} differ"),
        );
    }
}
