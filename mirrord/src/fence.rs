//! The fence of a PVOL: the record that its SVOL was taken over
//! ([`Outdated`], in [`crate::outdated`], kept in the pair's metadata across
//! restarts) and the one
//! rule of which host writes a PVOL refuses ([`write_refusal`]); pure, no
//! I/O. Host-write tasks (FUSE workers) and the link's tasks read them
//! under the site's lock.
//!
//! A PVOL is *outdated* from the moment its site learns that the SVOL was
//! taken over (SSWS at the peer: a write refused for it, the reconnect's
//! exchange, the peer's takeover request, or hbd's step-down): it refuses
//! every host write with `EROFS`, in every mode and fence level, until a
//! person resolves the pair (`pair resync --discard-local` here, a reverse
//! resync at the site that took over, or `--discard-remote` here).

use hbcore::vocab::{Fence, Mode, PairState, Role};

use crate::meta::PairMeta;
pub use crate::outdated::Outdated;
use crate::pair::{host_writable, mirroring};

/// Why a host write to a pair's local volume is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The SVOL, read-only while mirrored.
    ReadOnly,
    /// The PVOL is outdated: its SVOL was taken over (the reason).
    Outdated(String),
    /// Fence `data`: the PVOL is not mirrored, so the SVOL would lack the write.
    Fenced,
}

/// Whether a pair is synchronous with fence `data`.
pub fn fenced(meta: &PairMeta) -> bool {
    meta.settings.mode == Mode::Sync && meta.settings.fence == Fence::Data
}

/// The refusal of a host write to this site's volume of a pair, if any.
///
/// A PVOL with fence `data` takes writes only while it mirrors them (PAIR,
/// COPY) or while a person's split holds (PSUS, entered only by `pair
/// split`, which drains what is pending first): a pair that cannot reach
/// its SVOL for any other reason is PSUE and refuses.
pub fn write_refusal(meta: &PairMeta) -> Option<Refusal> {
    if !host_writable(meta) {
        return Some(Refusal::ReadOnly);
    }
    if meta.role != Role::Pvol {
        return None;
    }
    if let Some(o) = &meta.outdated {
        return Some(Refusal::Outdated(o.reason()));
    }
    if fenced(meta) && !mirroring(meta) && meta.state != PairState::Psus {
        return Some(Refusal::Fenced);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATES: [PairState; 5] = [
        PairState::Copy,
        PairState::Pair,
        PairState::Psus,
        PairState::Psue,
        PairState::Ssws,
    ];

    fn meta(role: Role, state: PairState, mode: Mode, fence: Fence) -> PairMeta {
        PairMeta::test_data(role, state, mode, fence)
    }

    #[test]
    fn an_outdated_pvol_refuses_every_write_in_every_mode_and_state() {
        for mode in [Mode::Sync, Mode::SemiSync, Mode::Adaptive] {
            for fence in [Fence::Never, Fence::Data] {
                for state in STATES.into_iter().filter(|s| *s != PairState::Ssws) {
                    let mut m = meta(Role::Pvol, state, mode, fence);
                    m.outdated = Some(Outdated::now("standby", "a write was refused"));
                    let refusal = write_refusal(&m);
                    assert!(
                        matches!(&refusal, Some(Refusal::Outdated(r)) if r.starts_with("taken over by site 'standby' at ")),
                        "{mode} {fence} {state}: {refusal:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn fence_data_acknowledges_only_what_is_mirrored_or_split_by_a_person() {
        for state in STATES.into_iter().filter(|s| *s != PairState::Ssws) {
            let m = meta(Role::Pvol, state, Mode::Sync, Fence::Data);
            let want = match state {
                PairState::Psue => Some(Refusal::Fenced),
                _ => None,
            };
            assert_eq!(write_refusal(&m), want, "{state}");
            // Fence never: a PVOL takes writes in every state, tracking them.
            let m = meta(Role::Pvol, state, Mode::Sync, Fence::Never);
            assert_eq!(write_refusal(&m), None, "{state}");
        }
    }

    #[test]
    fn the_svol_is_read_only_until_split_or_taken_over() {
        for state in STATES {
            let m = meta(Role::Svol, state, Mode::Sync, Fence::Data);
            let writable = matches!(state, PairState::Psus | PairState::Ssws);
            assert_eq!(
                write_refusal(&m).is_none(),
                writable,
                "{state}: {:?}",
                write_refusal(&m)
            );
        }
    }
}
