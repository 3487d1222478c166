//! Synchronisation primitives in shared memory.
//!
//! `Lock` and `RLock` are mutexes whose word names the owning thread
//! (`sys::robust`): the next acquirer notices a holder that died. The
//! others are words in a
//! shared block of their own, woken through futexes with the spin-then-sleep
//! protocol of [`crate::sys::futex`]; each file opens with a table of its
//! shared words.
//!
//! | file           | what                                                     |
//! |----------------|----------------------------------------------------------|
//! | `mod.rs`       | the futex helpers the primitives share                   |
//! | `mutex.rs`     | `SharedMutex`: the owner-tracking mutex `Lock` and `RLock` are made of |
//! | `lock.rs`      | `Lock`, `RLock` and their guard                          |
//! | `poison.rs`    | `LockError`, `LockResult`, `Recover`: a holder that died |
//! | `condition.rs` | `Condition` over a `Lock` or an `RLock`                  |
//! | `semaphore.rs` | `Semaphore`, `BoundedSemaphore`                          |
//! | `event.rs`     | `Event`                                                  |
//! | `barrier.rs`   | `Barrier`                                                |
//! | `bell.rs`      | `Bell`: the eventfd a semaphore rings for its futures (feature `tokio`) |

mod barrier;
#[cfg(feature = "tokio")]
mod bell;
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
pub(crate) use mutex::SharedMutex;
pub use poison::{LockError, LockResult, Recover};
pub use semaphore::{BoundedSemaphore, Semaphore, SemaphoreGuard, SEM_VALUE_MAX};

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::sys::futex;

/// `FUTEX_WAKE`'s count for "everyone" (the kernel reads it as an `int`).
const WAKE_ALL: u32 = i32::MAX as u32;

/// The deadline `timeout` from now; `None` (forever) if it is too far to
/// represent.
fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Wakes up to `n` threads asleep on `word` if `sleepers` says there are
/// any.
///
/// The caller must have made its change with a `SeqCst` read-modify-write
/// or store: with that, this `SeqCst` load, and the sleeper's `SeqCst`
/// increment of `sleepers` and load of the word in [`futex::wait_until`],
/// either the sleeper sees the change or this load sees the sleeper. So no
/// fence is needed (one costs about 10 ns on x86).
fn wake_sleepers(word: &AtomicU32, sleepers: &AtomicU32, n: u32) {
    if sleepers.load(Ordering::SeqCst) != 0 {
        futex::wake(word, n);
    }
}
