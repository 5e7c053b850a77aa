//! The pair machine: every decision about one pair at one site, pure (no
//! I/O, no locks, no clocks). `(record, event) → (state, what to do)`: the
//! site ([`crate::site`]) reads the pair's record under its lock, asks the
//! machine, and executes what it answers; the simulation
//! ([`crate::pairsim`]) drives the same functions with a model of two sites.
//! This module is the only caller of the transition table
//! ([`PairState::to`]). Called on whatever thread asks (FUSE workers, the
//! link's tasks, the control socket), always with plain data.
//!
//! ```text
//!  host write ─> host_write ─> Refuse | Alone (new generation first?) | Sync | Fenced | SemiSync | Adaptive (queue?)
//!  ack failed ─> write_failed ─> Outdate | SplitByPeer | Suspend (reset the link?)
//!  SVOL apply ─> accepts_copies
//!  Event (link lost, copy start/end, split, takeover, resync, the peer's word, reverse) ─> change ─> new state
//!  outdate (SVOL taken over) ─> outdate ─> PSUE + outdated
//!  reconnect ─> on_divergence (verdict) ─> resume (state, dirty, previous)
//!  resync ─> plain_resync (verdict) ─> allowed? full copy?
//! ```

use hbcore::control::SplitBrainPolicy;
use hbcore::vocab::{IllegalTransition, Mode, PairState, Role};

use crate::fence::{fenced, write_refusal, Refusal};
use crate::generation::{split_brain_victim, Side, Verdict};
use crate::meta::PairMeta;
use crate::pair::mirroring;

/// Every state, for changes the transition table alone decides.
pub const ANY_STATE: &[PairState] = &[
    PairState::Smpl,
    PairState::Copy,
    PairState::Pair,
    PairState::Psus,
    PairState::Psue,
    PairState::Ssws,
];

/// Checks `from → to` against the transition table (a validation before
/// work that would lead there).
pub fn check(from: PairState, to: PairState) -> Result<PairState, IllegalTransition> {
    from.to(to)
}

/// What happened to a pair, as far as its state goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A pair was created (the PVOL) or attached (the SVOL).
    Created,
    /// Loaded after a crash (no clean shutdown).
    LoadedAfterCrash,
    /// A replication failure or lost link: a mirrored pair suspends.
    Suspend,
    /// The peer split (or took over) the pair; this side splits too.
    PeerSplit,
    /// A copy task starts (initial copy, resync, restart).
    CopyStarted,
    /// The copy is complete, no write in flight, bitmap clean.
    CopyDone,
    /// The mode left adaptive with blocks pending: a copy ships them.
    AdaptiveDrained,
    /// A resync starts at the PVOL.
    ResyncStarted,
    /// A split at the PVOL (after draining), or asked by the peer.
    Split,
    /// A split at the SVOL, which was in the given state when asked.
    SplitSvol(PairState),
    /// A takeover at the SVOL, which was in the given state when asked.
    Takeover(PairState),
    /// The peer set the pair's state.
    PeerSet(PairState),
    /// The roles reverse: this site takes the given role and starts over in COPY.
    Reversed(Role),
}

impl Event {
    /// The states the event applies to (in others nothing happens) and the state it leads to.
    fn rule(self) -> (&'static [PairState], PairState) {
        use PairState::*;
        match self {
            Event::Created => (&[Smpl], Copy),
            Event::LoadedAfterCrash | Event::Suspend => (&[Pair, Copy], Psue),
            Event::PeerSplit => (&[Pair, Psue], Psus),
            Event::CopyStarted => (&[Psue, Pair, Copy], Copy),
            Event::CopyDone => (&[Copy], Pair),
            Event::AdaptiveDrained => (&[Pair], Copy),
            Event::ResyncStarted => (&[Pair, Psue, Psus, Copy], Copy),
            Event::Split => (ANY_STATE, Psus),
            Event::SplitSvol(s) => (one(s), Psus),
            Event::Takeover(s) => (one(s), Ssws),
            Event::PeerSet(to) => (ANY_STATE, to),
            Event::Reversed(_) => (ANY_STATE, Copy),
        }
    }
}

/// `s` as a one-state list.
fn one(s: PairState) -> &'static [PairState] {
    let i = ANY_STATE.iter().position(|a| *a == s).unwrap_or(0);
    &ANY_STATE[i..=i]
}

/// A pair's new role and state after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The state now.
    pub state: PairState,
    /// The role now.
    pub role: Role,
    /// Whether anything changed.
    pub changed: bool,
    /// Drop the adaptive queue: the pair enters COPY, whose copy ships the
    /// queued writes' blocks (dirty) read back, newer than the queue's
    /// data; shipped after the copy, the queue would put older data over
    /// them with the bitmap clean (found by the simulation, seed 2545).
    pub drop_queue: bool,
}

/// The pair in `role`/`state` after `event`, as the table allows. An event
/// for other states leaves it as it is (`changed` false); a change the
/// table forbids is an error naming both states.
pub fn change(role: Role, state: PairState, event: Event) -> Result<Change, IllegalTransition> {
    let (from, to) = event.rule();
    if let Event::Reversed(new_role) = event {
        // Always starts over in COPY, also from COPY (a second reverse).
        return Ok(Change {
            state: check(state, to)?,
            role: new_role,
            changed: true,
            drop_queue: true,
        });
    }
    if !from.contains(&state) || state == to {
        return Ok(Change {
            state,
            role,
            changed: false,
            drop_queue: false,
        });
    }
    Ok(Change {
        state: check(state, to)?,
        role,
        changed: true,
        drop_queue: to == PairState::Copy,
    })
}

/// What a host write to this site's volume of a pair does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WritePolicy {
    /// Refused, for the reason given.
    Refuse(Refusal),
    /// Not mirrored (PSUE, PSUS, SSWS): written here only, its blocks
    /// tracked; `diverge`: this site takes a generation of its own first.
    Alone {
        /// Start a generation of this site's own before the write.
        diverge: bool,
    },
    /// Synchronous: shipped, written here, acknowledged once the SVOL has it.
    Sync,
    /// Synchronous with fence `data`: shipped first, written here only once
    /// the SVOL acknowledged it; one write outstanding.
    Fenced,
    /// Semi-synchronous: after the previous write settled, shipped and
    /// written here; acknowledged without waiting.
    SemiSync,
    /// Adaptive: written here and acknowledged; `queue`: held for the
    /// shipper (PAIR), else only tracked (COPY: the copy ships it).
    Adaptive {
        /// Queue it in memory (within the skew).
        queue: bool,
    },
}

/// The policy of a host write to a pair's local volume, as the record says.
pub fn host_write(meta: &PairMeta) -> WritePolicy {
    if let Some(refusal) = write_refusal(meta) {
        return WritePolicy::Refuse(refusal);
    }
    if !mirroring(meta) {
        let own = meta
            .generations
            .as_ref()
            .is_some_and(|g| g.bitmap.is_some());
        return WritePolicy::Alone { diverge: !own };
    }
    match meta.settings.mode {
        Mode::Sync if fenced(meta) => WritePolicy::Fenced,
        Mode::Sync => WritePolicy::Sync,
        Mode::SemiSync => WritePolicy::SemiSync,
        Mode::Adaptive => WritePolicy::Adaptive {
            queue: meta.state == PairState::Pair,
        },
    }
}

/// Whether a mirrored write reaches the SVOL still: semi-sync asks again
/// after the previous write settled (which may have suspended the pair).
pub fn still_mirroring(meta: &PairMeta) -> bool {
    mirroring(meta)
}

/// Why an SVOL does not apply a write its peer shipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotApplied {
    /// This site holds the PVOL.
    NotSvol,
    /// Its state takes no copies (PSUS, SSWS, SMPL): the write is on neither copy.
    WrongState(PairState),
}

/// Whether this site's SVOL applies a write from its peer.
pub fn accepts_copies(role: Role, state: PairState) -> Result<(), NotApplied> {
    if role != Role::Svol {
        return Err(NotApplied::NotSvol);
    }
    match state {
        PairState::Copy | PairState::Pair | PairState::Psue => Ok(()),
        other => Err(NotApplied::WrongState(other)),
    }
}

/// How a mirrored write failed to reach the SVOL, as the site classes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The SVOL refused it: taken over (SSWS) there.
    TakenOver,
    /// The SVOL refused it: split (PSUS) there.
    SplitThere,
    /// The SVOL's disk failed.
    Disk,
    /// No answer in time (the link is dropped, to be dialed afresh).
    Timeout,
    /// The link is down, or any other failure.
    Other,
}

/// What the site does after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// This PVOL is outdated from now on (its SVOL was taken over).
    Outdate,
    /// A person's split or takeover there: split here too ([`split_by_peer`]).
    SplitByPeer,
    /// Suspend (PSUE); `reset_link`: drop the link first.
    Suspend {
        /// Drop the link, so the dialer reconnects afresh.
        reset_link: bool,
    },
}

/// What a failed replication leads to.
pub fn write_failed(failure: Failure) -> OnFailure {
    match failure {
        Failure::TakenOver => OnFailure::Outdate,
        Failure::SplitThere => OnFailure::SplitByPeer,
        Failure::Timeout => OnFailure::Suspend { reset_link: true },
        Failure::Disk | Failure::Other => OnFailure::Suspend { reset_link: false },
    }
}

/// What this side does when the peer split or took over the pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerSplit {
    /// Outdated already: PSUE until a person resolves it.
    Nothing,
    /// Fence `data`: suspend (PSUE), refusing host writes until a resync.
    SuspendFenced,
    /// Split here too (PSUS), changes tracked ([`Event::PeerSplit`]).
    Split,
    /// Not in a state to split (copying): the copy stops, PSUE.
    Suspend,
}

/// The answer to the peer's split or takeover.
pub fn split_by_peer(meta: &PairMeta) -> PeerSplit {
    if meta.outdated.is_some() {
        return PeerSplit::Nothing;
    }
    if fenced(meta) {
        return PeerSplit::SuspendFenced;
    }
    match change(meta.role, meta.state, Event::PeerSplit) {
        Ok(c) if c.changed => PeerSplit::Split,
        _ => PeerSplit::Suspend,
    }
}

/// The state of a PVOL that learns its SVOL was taken over (outdated and
/// PSUE where the table allows); `None` for an SVOL or one outdated already.
pub fn outdate(meta: &PairMeta) -> Option<PairState> {
    if meta.role != Role::Pvol || meta.outdated.is_some() {
        return None;
    }
    Some(check(meta.state, PairState::Psue).unwrap_or(meta.state))
}

/// Why a person's split is refused before anything is drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitRefused {
    /// Split already.
    Already,
    /// Taken over.
    TakenOver,
    /// Still copying: no consistent SVOL yet.
    Copying,
    /// The table says no.
    Illegal(IllegalTransition),
}

/// Whether a person may split a pair in `state`.
pub fn may_split(state: PairState) -> Result<(), SplitRefused> {
    match state {
        PairState::Psus => Err(SplitRefused::Already),
        PairState::Ssws => Err(SplitRefused::TakenOver),
        PairState::Copy => Err(SplitRefused::Copying),
        s => check(s, PairState::Psus)
            .map(|_| ())
            .map_err(SplitRefused::Illegal),
    }
}

/// What a reconnect does after comparing generations, for a verdict off
/// the usual course.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Divergence {
    /// The split-brain policy keeps this site's (the PVOL's) data: resync from here.
    KeepMine,
    /// The split-brain policy keeps the peer's data: it resyncs from its side.
    KeepTheirs,
    /// The pair stops mirroring and waits for a person: split (`split`,
    /// the SVOL was writable there) or suspended.
    Stop {
        /// Split like the peer ([`split_by_peer`]) rather than suspend.
        split: bool,
        /// Why.
        why: StopWhy,
    },
}

/// Why a reconnect stops a pair for a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopWhy {
    /// Both sites wrote and the policy leaves it to a person.
    SplitBrain,
    /// The bitmaps do not cover the difference.
    FullCopy,
    /// The peer wrote while its state says it could not have.
    PeerAhead,
}

/// At a PVOL's reconnect: what a verdict off the usual course calls for
/// (`None`: the usual course, see [`resume`]). `previous`: the SVOL's
/// state there; the dirty counts are each side's changed blocks.
pub fn on_divergence(
    verdict: Verdict,
    previous: PairState,
    policy: SplitBrainPolicy,
    local_dirty: u64,
    peer_dirty: u64,
) -> Option<Divergence> {
    let split = matches!(previous, PairState::Ssws | PairState::Psus);
    match verdict {
        Verdict::SplitBrain { .. } => {
            Some(match split_brain_victim(policy, local_dirty, peer_dirty) {
                Some(Role::Svol) => Divergence::KeepMine,
                Some(Role::Pvol) => Divergence::KeepTheirs,
                None => Divergence::Stop {
                    split,
                    why: StopWhy::SplitBrain,
                },
            })
        }
        Verdict::Ahead {
            side: Side::Local,
            full: true,
            ..
        } => Some(Divergence::Stop {
            split,
            why: StopWhy::FullCopy,
        }),
        Verdict::Ahead {
            side: Side::Remote, ..
        } if !split => Some(Divergence::Stop {
            split,
            why: StopWhy::PeerAhead,
        }),
        _ => None,
    }
}

/// What a re-attached PVOL does on the usual course.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// The SVOL was taken over: outdated.
    Outdate,
    /// Outdated: nothing resumes by itself.
    Wait,
    /// Split (at either side): split here too.
    Split,
    /// In sync, nothing to copy: both PAIR.
    InSync,
    /// Suspended with blocks to copy, auto-resync off: waits for a person.
    WaitResync,
    /// Resync by itself.
    Resync,
}

/// The usual course at a PVOL's reconnect: `previous` is the SVOL's state
/// there, `dirty` this site's changed blocks.
pub fn resume(meta: &PairMeta, previous: PairState, dirty: u64) -> Resume {
    match (previous, meta.state) {
        (PairState::Ssws, _) => Resume::Outdate,
        _ if meta.outdated.is_some() => Resume::Wait,
        (PairState::Psus, _) | (_, PairState::Psus) => Resume::Split,
        (_, PairState::Pair) if dirty == 0 => Resume::InSync,
        (_, PairState::Psue) if !meta.settings.auto_resync => Resume::WaitResync,
        _ => Resume::Resync,
    }
}

/// Whether a plain resync (the PVOL's data wins) may go ahead at the PVOL
/// in `state` after the verdict, with the SVOL in `peer_state`; if so,
/// whether it copies the whole volume.
pub fn plain_resync(state: PairState, verdict: Verdict, peer_state: PairState) -> Option<bool> {
    let svol_writable = matches!(peer_state, PairState::Psus | PairState::Ssws);
    let allowed = match verdict {
        Verdict::InSync { .. }
        | Verdict::Ahead {
            side: Side::Local, ..
        } => true,
        // The SVOL was split or taken over and wrote: a plain resync
        // discards its changes, as it always has.
        Verdict::Ahead {
            side: Side::Remote,
            full: false,
            ..
        } => svol_writable,
        // Both wrote while a person's split held (PSUS at both sites): the
        // backup cycle, whose resync discards the SVOL's changes.
        Verdict::SplitBrain { .. } => state == PairState::Psus && peer_state == PairState::Psus,
        _ => false,
    };
    allowed.then(|| verdict.full_copy())
}

/// Whether a reverse resync may run at this site (its SVOL, writable, or
/// suspended when a person chose its data).
pub fn may_reverse(meta: &PairMeta, chosen: bool) -> bool {
    let writable = matches!(meta.state, PairState::Ssws | PairState::Psus)
        || (chosen && meta.state == PairState::Psue);
    meta.role == Role::Svol && writable
}

/// Why a reverse resync is refused after the comparison, if it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReverseRefused {
    /// This site holds no consistent copy to keep.
    NothingToKeep,
    /// The data diverged: a person chooses with `--discard-remote`.
    Diverged,
}

/// Whether a reverse resync goes ahead after the verdict (`chosen`: a person chose this site's data).
pub fn reverse_allowed(verdict: Verdict, chosen: bool) -> Result<(), ReverseRefused> {
    match verdict {
        Verdict::Ahead {
            side: Side::Remote,
            common: None,
            ..
        } => Err(ReverseRefused::NothingToKeep),
        Verdict::Unrelated
        | Verdict::Ahead {
            side: Side::Remote,
            full: true,
            ..
        } if !chosen => Err(ReverseRefused::Diverged),
        _ => Ok(()),
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
