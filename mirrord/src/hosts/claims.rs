//! What the host link remembers per host: which connection holds the
//! host's mount (one hbfs per host id), and the answers to its recent
//! writes, so that a write re-sent after a lost connection is applied
//! once. Bounded: one claim and one window of [`WINDOW`] answers per
//! allowed host (a new hbfs process of the host replaces the window).
//!
//! Touched by the host sessions' tasks, under one short lock.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use hbcore::host::{HostError, HostReply};
use tokio::sync::OnceCell;

/// Answers kept per host: a re-sent write older than these is refused.
pub const WINDOW: usize = 4096;

/// One write's answer, set once by whichever call applies it first.
pub type Slot = Arc<OnceCell<Result<HostReply, HostError>>>;

/// A connection holding a host's mount.
#[derive(Debug, Clone)]
struct Claim {
    incarnation: u64,
    session: u64,
    from: String,
}

#[derive(Default)]
struct Writes {
    incarnation: u64,
    slots: BTreeMap<u64, Slot>,
}

#[derive(Default)]
struct State {
    mounts: HashMap<String, Claim>,
    writes: HashMap<String, Writes>,
}

/// Every host's claim and write window.
#[derive(Default)]
pub struct Claims {
    state: Mutex<State>,
}

/// Why a write cannot be matched to its earlier answer.
#[derive(Debug)]
pub struct TooOld {
    /// The oldest write id still known.
    pub oldest: u64,
}

impl Claims {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A poisoned lock only means a panic between two map updates.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims `host`'s mount for `session` of process `incarnation`: taken
    /// over from the same process (a reconnect), refused while another
    /// process's session holds it (`alive` says whether a session lives).
    pub fn mount(
        &self,
        host: &str,
        incarnation: u64,
        session: u64,
        from: &str,
        alive: impl Fn(u64) -> bool,
    ) -> Result<(), HostError> {
        let mut state = self.state();
        if let Some(c) = state.mounts.get(host) {
            if c.incarnation != incarnation && alive(c.session) {
                return Err(HostError {
                    errno: libc::EBUSY,
                    message: format!(
                        "host '{host}' has hbfs mounted already (from {}); one mount per host id: \
                         unmount it there, or give this host its own id and [[hosts.allow]] entry",
                        c.from
                    ),
                });
            }
        }
        state.mounts.insert(
            host.into(),
            Claim {
                incarnation,
                session,
                from: from.into(),
            },
        );
        Ok(())
    }

    /// Releases what `session` claimed when it ends.
    pub fn release(&self, host: &str, session: u64) {
        let mut state = self.state();
        if state.mounts.get(host).is_some_and(|c| c.session == session) {
            state.mounts.remove(host);
        }
    }

    /// The slot of write `id` of `host`'s process `incarnation`: new (the
    /// caller applies it), or the one an earlier send of it filled or is
    /// filling.
    pub fn write_slot(&self, host: &str, incarnation: u64, id: u64) -> Result<Slot, TooOld> {
        let mut state = self.state();
        let w = state.writes.entry(host.into()).or_default();
        if w.incarnation != incarnation {
            *w = Writes {
                incarnation,
                slots: BTreeMap::new(),
            };
        }
        if let Some(slot) = w.slots.get(&id) {
            return Ok(Arc::clone(slot));
        }
        if w.slots.len() >= WINDOW {
            if let Some((&oldest, _)) = w.slots.first_key_value() {
                if id < oldest {
                    return Err(TooOld { oldest });
                }
            }
            w.slots.pop_first();
        }
        let slot = Slot::default();
        w.slots.insert(id, Arc::clone(&slot));
        Ok(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mount_per_host_unless_the_same_process_reconnects() {
        let c = Claims::default();
        c.mount("p1", 7, 1, "10.0.0.2:5000", |_| true)
            .expect("first");
        c.mount("p1", 7, 2, "10.0.0.2:5001", |_| true)
            .expect("same process");
        let e = c
            .mount("p1", 8, 3, "10.0.0.3:5000", |_| true)
            .expect_err("second");
        assert_eq!(e.errno, libc::EBUSY);
        assert!(e.message.contains("10.0.0.2:5001"), "{e}");
        c.mount("p1", 8, 3, "10.0.0.3:5000", |s| s != 2)
            .expect("holder gone");
        c.release("p1", 2);
        c.mount("p2", 1, 4, "x", |_| true).expect("other host");
    }

    #[tokio::test]
    async fn a_write_resent_gets_the_first_answer_and_old_ids_are_refused() {
        let c = Claims::default();
        let first = c.write_slot("p1", 7, 1).expect("new");
        first.get_or_init(|| async { Ok(HostReply::Done) }).await;
        let again = c.write_slot("p1", 7, 1).expect("known");
        assert!(again.initialized());
        for id in 2..=(WINDOW as u64 + 1) {
            c.write_slot("p1", 7, id).expect("in window");
        }
        assert!(c.write_slot("p1", 7, 1).is_err());
        let fresh = c.write_slot("p1", 8, 1).expect("a new process starts over");
        assert!(!fresh.initialized());
    }
}
