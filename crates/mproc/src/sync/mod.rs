//! Synchronisation primitives in shared memory.
//!
//! `Lock` and `RLock` are glibc's robust process-shared mutexes (the kernel
//! tells the next acquirer that a holder died). The others are words in a
//! shared block of their own, woken through futexes with the spin-then-sleep
//! protocol of [`crate::sys::futex`]; each file opens with a table of its
//! shared words.

mod barrier;
mod condition;
mod event;
mod lock;
mod mutex;
mod poison;
mod semaphore;

pub use barrier::{Barrier, BarrierBuilder, MAX_PARTIES};
pub use condition::{Condition, ConditionLock, MAX_CONDITION_WAITERS};
pub use event::Event;
pub use lock::{Lock, LockGuard, RLock};
pub use poison::{LockError, LockResult, Recover};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard, SEM_VALUE_MAX};

use std::time::{Duration, Instant};

/// `FUTEX_WAKE`'s count for "everyone" (the kernel reads it as an `int`).
const WAKE_ALL: u32 = i32::MAX as u32;

/// The deadline `timeout` from now; `None` (forever) if it is too far to
/// represent.
fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}
