//! Generation identifiers of a pair at one site, in the spirit of DRBD's
//! UUIDs, and their comparison: pure, with no I/O.
//!
//! A site's [`Generations`] of a pair are a *current* id (the generation of
//! the data it holds), a *bitmap* id (the generation it last shared with the
//! other site, from which its dirty bitmap counts its own changes) and a
//! short *history* of older ids.
//!
//! ```text
//!  event                                   this site's generations
//!  pair create (PVOL)                      current = new
//!  attach, or a copy to this site starts   current = none (no consistent data of its own); old ids to history
//!  first write on its own (split, suspend, current shared?  bitmap = current, current = new
//!    takeover, reverse)
//!  copy complete (PVOL)                    bitmap to history
//!  copy complete (SVOL)                    current = the PVOL's current; old ids to history
//! ```
//!
//! Comparing both sites' generations at every (re)connect and resync says
//! who holds what ([`compare`]): the same generation (in sync); one side's
//! bitmap id is the other's current (that side wrote since, the other did
//! not: it is ahead, its bitmap covers the difference); both bitmap ids are
//! the same but the currents differ (both wrote: split brain); one side's
//! current is in the other's history (that side is behind by more than a
//! bitmap covers: a full copy); some other id in common (split brain, full
//! copy); nothing in common (unrelated data).

use hbcore::control::SplitBrainPolicy;
use hbcore::link::Generations;
use hbcore::vocab::Role;

/// Older generations kept.
pub const HISTORY: usize = 4;

/// Which site of the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// This site.
    Local,
    /// The other site.
    Remote,
}

/// What the comparison of both sites' generations says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The same generation: neither site wrote on its own since they shared it.
    InSync {
        /// The shared generation.
        common: u64,
    },
    /// One side wrote on its own since the other's generation, or the other
    /// is the target of an unfinished copy from it: a resync copies from it.
    Ahead {
        /// The side ahead.
        side: Side,
        /// The bitmaps do not cover the difference: copy the whole volume.
        full: bool,
        /// The generation both last shared, if known.
        common: Option<u64>,
    },
    /// Both sides wrote on their own since their common generation.
    SplitBrain {
        /// The newest generation both know.
        common: u64,
        /// The bitmaps do not cover the difference: copy the whole volume.
        full: bool,
    },
    /// No generation in common: different data.
    Unrelated,
}

impl Verdict {
    /// Whether a resync after this verdict copies the whole volume.
    pub fn full_copy(self) -> bool {
        match self {
            Verdict::InSync { .. } => false,
            Verdict::Ahead { full, .. } | Verdict::SplitBrain { full, .. } => full,
            Verdict::Unrelated => true,
        }
    }

    /// The generation both sides last shared, if they have one.
    pub fn common(self) -> Option<u64> {
        match self {
            Verdict::InSync { common } | Verdict::SplitBrain { common, .. } => Some(common),
            Verdict::Ahead { common, .. } => common,
            Verdict::Unrelated => None,
        }
    }

    /// The same verdict seen from the other site.
    pub fn mirrored(self) -> Verdict {
        match self {
            Verdict::Ahead { side, full, common } => Verdict::Ahead {
                side: match side {
                    Side::Local => Side::Remote,
                    Side::Remote => Side::Local,
                },
                full,
                common,
            },
            other => other,
        }
    }
}

/// A new generation id (never 0).
pub fn fresh_id() -> u64 {
    loop {
        let id: u64 = rand::random();
        if id != 0 {
            return id;
        }
    }
}

/// The generations of a new pair's PVOL: a generation of its own.
pub fn new_pvol() -> Generations {
    Generations {
        current: Some(fresh_id()),
        bitmap: None,
        history: Vec::new(),
    }
}

/// The generations of a pair recorded before generations existed: derived
/// from the pair's identity, so both sites derive the same one.
pub fn legacy(pair: &str, pvol: &str, svol: &str) -> Generations {
    let identity = format!("hbmirror legacy generation\0{pair}\0{pvol}\0{svol}");
    Generations {
        current: Some(xxhash_rust::xxh3::xxh3_64(identity.as_bytes()) | 1),
        bitmap: None,
        history: Vec::new(),
    }
}

fn remember(g: &mut Generations, id: Option<u64>) {
    if let Some(id) = id {
        g.history.retain(|h| *h != id);
        g.history.insert(0, id);
        g.history.truncate(HISTORY);
    }
}

/// This site starts writing on its own (split, suspend, takeover, reverse):
/// if its current generation may be shared, it starts a new one and keeps
/// the shared one as its bitmap id. True if anything changed (persist it
/// before the write it precedes).
pub fn diverge(g: &mut Generations) -> bool {
    diverge_to(g, fresh_id())
}

/// [`diverge`] with the new generation given (`fresh`, never 0): the
/// simulation draws its ids from its seed.
pub fn diverge_to(g: &mut Generations, fresh: u64) -> bool {
    match (g.current, g.bitmap) {
        // Already a generation of its own.
        (Some(_), Some(_)) => false,
        (Some(shared), None) => {
            g.bitmap = Some(shared);
            g.current = Some(fresh);
            true
        }
        // A copy target written (taken over mid-copy): its changes count from
        // the last generation it held (or, after an initial copy, its own).
        (None, _) => {
            g.current = Some(fresh);
            g.bitmap = Some(g.history.first().copied().unwrap_or(fresh));
            true
        }
    }
}

/// A copy to this site starts: its data is no consistent copy of anything
/// until the copy completes. True if anything changed.
pub fn become_target(g: &mut Generations) -> bool {
    if g.current.is_none() && g.bitmap.is_none() {
        return false;
    }
    let (current, bitmap) = (g.current.take(), g.bitmap.take());
    remember(g, bitmap);
    remember(g, current);
    true
}

/// The copy from this site completed: the changes its bitmap counted are at
/// the other site now. True if anything changed.
pub fn joined_as_source(g: &mut Generations) -> bool {
    let bitmap = g.bitmap.take();
    remember(g, bitmap);
    bitmap.is_some()
}

/// The copy to this site completed: it holds `generation`, the source's current.
pub fn joined_as_target(g: &mut Generations, generation: u64) {
    let (current, bitmap) = (g.current.take(), g.bitmap.take());
    remember(g, bitmap);
    if current != Some(generation) {
        remember(g, current);
    }
    g.history.retain(|h| *h != generation);
    g.current = Some(generation);
}

/// Compares this site's generations with the other site's.
pub fn compare(local: &Generations, remote: &Generations) -> Verdict {
    let (l, r) = (local, remote);
    let (lc, rc) = match (l.current, r.current) {
        (None, None) => return Verdict::Unrelated,
        // The other side is the target of an unfinished copy from this one:
        // the bitmaps still hold what it lacks.
        (Some(_), None) => {
            return Verdict::Ahead {
                side: Side::Local,
                full: false,
                common: None,
            }
        }
        (None, Some(_)) => {
            return Verdict::Ahead {
                side: Side::Remote,
                full: false,
                common: None,
            }
        }
        (Some(lc), Some(rc)) => (lc, rc),
    };
    if lc == rc {
        return Verdict::InSync { common: lc };
    }
    if l.bitmap == Some(rc) {
        return Verdict::Ahead {
            side: Side::Local,
            full: false,
            common: Some(rc),
        };
    }
    if r.bitmap == Some(lc) {
        return Verdict::Ahead {
            side: Side::Remote,
            full: false,
            common: Some(lc),
        };
    }
    if let (Some(lb), Some(rb)) = (l.bitmap, r.bitmap) {
        if lb == rb {
            return Verdict::SplitBrain {
                common: lb,
                full: false,
            };
        }
    }
    // Further apart than the bitmaps reach.
    if r.history.contains(&lc) {
        return Verdict::Ahead {
            side: Side::Remote,
            full: true,
            common: Some(lc),
        };
    }
    if l.history.contains(&rc) {
        return Verdict::Ahead {
            side: Side::Local,
            full: true,
            common: Some(rc),
        };
    }
    let known = |g: &Generations| -> Vec<u64> {
        g.bitmap
            .into_iter()
            .chain(g.history.iter().copied())
            .collect()
    };
    let theirs = known(r);
    match known(l).into_iter().find(|id| theirs.contains(id)) {
        Some(common) => Verdict::SplitBrain { common, full: true },
        None => Verdict::Unrelated,
    }
}

/// The verdict once both sides' changed blocks are counted too: a side the
/// generations call behind that holds blocks of its own the other lacks
/// (writes acknowledged while mirrored that never reached the other side:
/// an adaptive lag, the writes in flight when the link failed) wrote since
/// the common generation as well as the side ahead. That is a split brain,
/// never "ahead": a resync from the side ahead would discard those writes.
pub fn judge(
    local: &Generations,
    remote: &Generations,
    local_changed: u64,
    remote_changed: u64,
) -> Verdict {
    match compare(local, remote) {
        Verdict::Ahead {
            side,
            full,
            common: Some(common),
        } if match side {
            Side::Local => remote_changed,
            Side::Remote => local_changed,
        } > 0 =>
        {
            Verdict::SplitBrain { common, full }
        }
        verdict => verdict,
    }
}

/// Whose changes a split-brain policy discards, given how many blocks each
/// side changed; `None`: a person decides.
pub fn split_brain_victim(
    policy: SplitBrainPolicy,
    pvol_changes: u64,
    svol_changes: u64,
) -> Option<Role> {
    match policy {
        SplitBrainPolicy::Manual => None,
        SplitBrainPolicy::DiscardSvol => Some(Role::Svol),
        SplitBrainPolicy::DiscardLeastChanges => match pvol_changes.cmp(&svol_changes) {
            std::cmp::Ordering::Less => Some(Role::Pvol),
            std::cmp::Ordering::Greater => Some(Role::Svol),
            std::cmp::Ordering::Equal => None,
        },
    }
}

/// An id as people read it: 16 hex digits.
pub fn hex(id: u64) -> String {
    format!("{id:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two sites that just completed a copy from `pvol` to `svol`.
    fn joined() -> (Generations, Generations) {
        let mut pvol = new_pvol();
        let mut svol = Generations::default();
        become_target(&mut svol);
        joined_as_source(&mut pvol);
        joined_as_target(&mut svol, pvol.current.expect("current"));
        (pvol, svol)
    }

    fn ahead(side: Side, full: bool) -> impl Fn(Verdict) -> bool {
        move |v| matches!(v, Verdict::Ahead { side: s, full: f, .. } if s == side && f == full)
    }

    #[test]
    fn a_new_pair_is_ahead_of_its_target_then_in_sync() {
        let pvol = new_pvol();
        let svol = Generations::default();
        assert!(ahead(Side::Local, false)(compare(&pvol, &svol)));
        assert!(ahead(Side::Remote, false)(compare(&svol, &pvol)));
        let (pvol, svol) = joined();
        assert_eq!(
            compare(&pvol, &svol),
            Verdict::InSync {
                common: pvol.current.expect("current")
            }
        );
        assert_eq!(
            compare(&Generations::default(), &Generations::default()),
            Verdict::Unrelated
        );
    }

    #[test]
    fn the_side_that_wrote_alone_is_ahead_and_its_bitmap_covers_it() {
        let (mut pvol, svol) = joined();
        let shared = pvol.current;
        assert!(diverge(&mut pvol));
        assert!(!diverge(&mut pvol), "a generation of its own already");
        assert_eq!(pvol.bitmap, shared);
        assert_ne!(pvol.current, shared);
        assert!(ahead(Side::Local, false)(compare(&pvol, &svol)));
        assert!(ahead(Side::Remote, false)(compare(&svol, &pvol)));
        // A takeover at the SVOL while the PVOL kept quiet: the SVOL is ahead.
        let (pvol, mut svol) = joined();
        diverge(&mut svol);
        assert!(ahead(Side::Remote, false)(compare(&pvol, &svol)));
    }

    #[test]
    fn both_sides_writing_since_the_common_generation_is_split_brain() {
        let (mut pvol, mut svol) = joined();
        let common = pvol.current.expect("current");
        diverge(&mut pvol);
        diverge(&mut svol);
        assert_eq!(
            compare(&pvol, &svol),
            Verdict::SplitBrain {
                common,
                full: false
            }
        );
        assert_eq!(compare(&svol, &pvol), compare(&pvol, &svol).mirrored());
    }

    #[test]
    fn a_side_behind_that_holds_changes_of_its_own_is_split_brain() {
        // The SVOL took over; the PVOL had acknowledged writes that never
        // reached it (its bits are set, its generation unchanged).
        let (pvol, mut svol) = joined();
        let common = pvol.current.expect("current");
        diverge(&mut svol);
        assert!(ahead(Side::Remote, false)(judge(&pvol, &svol, 0, 3)));
        let split = Verdict::SplitBrain {
            common,
            full: false,
        };
        assert_eq!(judge(&pvol, &svol, 5, 3), split);
        assert_eq!(judge(&svol, &pvol, 3, 5), split);
        // Both wrote on their own: split brain whatever the bitmaps hold.
        let mut pvol2 = pvol.clone();
        diverge(&mut pvol2);
        assert_eq!(judge(&pvol2, &svol, 0, 0), split);
        // In sync with a lag, or a copy target: as the generations say.
        let (pvol, svol) = joined();
        assert!(matches!(judge(&pvol, &svol, 7, 0), Verdict::InSync { .. }));
        let target = Generations::default();
        assert!(ahead(Side::Local, false)(judge(&new_pvol(), &target, 9, 0)));
    }

    #[test]
    fn a_resync_joins_both_sides_in_the_source_generation() {
        let (mut pvol, mut svol) = joined();
        diverge(&mut pvol);
        diverge(&mut svol);
        // A person keeps the PVOL's data: the SVOL becomes the copy target.
        assert!(become_target(&mut svol));
        assert!(
            ahead(Side::Local, false)(compare(&pvol, &svol)),
            "an interrupted resync resumes"
        );
        joined_as_target(&mut svol, pvol.current.expect("current"));
        assert!(joined_as_source(&mut pvol));
        assert!(matches!(compare(&pvol, &svol), Verdict::InSync { .. }));
        assert!(pvol.bitmap.is_none() && svol.bitmap.is_none());
    }

    #[test]
    fn a_record_older_than_the_last_resync_needs_a_full_copy() {
        let (mut pvol, mut svol) = joined();
        let restored = svol.clone();
        diverge(&mut pvol);
        become_target(&mut svol);
        joined_as_target(&mut svol, pvol.current.expect("current"));
        joined_as_source(&mut pvol);
        // The SVOL's meta.json is restored from before the resync.
        assert!(ahead(Side::Local, true)(compare(&pvol, &restored)));
        assert!(ahead(Side::Remote, true)(compare(&restored, &pvol)));
        // The restored side writes on its own too: split brain, full copy.
        let mut wrote = restored.clone();
        diverge(&mut wrote);
        let mut pvol2 = pvol.clone();
        diverge(&mut pvol2);
        assert!(matches!(
            compare(&pvol2, &wrote),
            Verdict::SplitBrain { full: true, .. }
        ));
    }

    #[test]
    fn a_copy_target_taken_over_diverges_once() {
        let pvol = new_pvol();
        let mut svol = Generations::default();
        assert!(diverge(&mut svol), "an initial-copy target taken over");
        assert!(!diverge(&mut svol), "and only once");
        assert_eq!(compare(&pvol, &svol), Verdict::Unrelated);
        // Taken over in the middle of a resync: its changes count from the
        // generation it held, which the PVOL wrote from too.
        let (mut pvol, mut svol) = joined();
        let common = pvol.current.expect("current");
        diverge(&mut pvol);
        become_target(&mut svol);
        assert!(diverge(&mut svol));
        assert_eq!(
            compare(&pvol, &svol),
            Verdict::SplitBrain {
                common,
                full: false
            }
        );
        // A copy that joins an unchanged generation leaves no duplicate in the history.
        let (mut pvol, mut svol) = joined();
        become_target(&mut svol);
        joined_as_target(&mut svol, pvol.current.expect("current"));
        joined_as_source(&mut pvol);
        assert!(!svol.history.contains(&svol.current.expect("current")));
    }

    #[test]
    fn a_pair_re_created_at_one_site_is_unrelated() {
        let (_, svol) = joined();
        let recreated = new_pvol();
        assert_eq!(compare(&recreated, &svol), Verdict::Unrelated);
        assert!(Verdict::Unrelated.full_copy());
    }

    #[test]
    fn legacy_generations_agree_at_both_sites_and_the_history_is_short() {
        assert_eq!(legacy("p", "a", "b"), legacy("p", "a", "b"));
        assert_ne!(legacy("p", "a", "b"), legacy("q", "a", "b"));
        let mut g = new_pvol();
        for _ in 0..10 {
            diverge(&mut g);
            joined_as_source(&mut g);
        }
        assert_eq!(g.history.len(), HISTORY);
        assert_eq!(hex(0xab), "00000000000000ab");
    }

    #[test]
    fn policies_name_the_side_to_discard() {
        use SplitBrainPolicy::*;
        assert_eq!(split_brain_victim(Manual, 1, 100), None);
        assert_eq!(split_brain_victim(DiscardSvol, 1, 100), Some(Role::Svol));
        assert_eq!(
            split_brain_victim(DiscardLeastChanges, 1, 100),
            Some(Role::Pvol)
        );
        assert_eq!(
            split_brain_victim(DiscardLeastChanges, 100, 1),
            Some(Role::Svol)
        );
        assert_eq!(split_brain_victim(DiscardLeastChanges, 5, 5), None);
    }
}
