//! Locking that survives a thread that panicked while holding the lock.
//!
//! Every mutex in readyloop guards a value that is never left half-changed
//! (a queue, a list, counters), so a poisoned lock is still safe to take:
//! one panicking job or connection thread must not take the server down.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, poisoned or not.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
