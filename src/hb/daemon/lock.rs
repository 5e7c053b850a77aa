//! One rule for hbd's locks (and the cluster member's): a value guarded by
//! a lock stays consistent across a panic, so a poisoned lock is still
//! used. Any thread or task may call it.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `m`; the values hbd guards stay consistent across a panic, so a
/// poisoned lock is still usable.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
