//! Waiting: for a lock (a `trylock`, then naps), for a futex word (spin,
//! then naps), and the wake-up after an index store. No wait relies on a
//! wake-up (see `README.md`, *What a kill loses*): each sleep lasts at most
//! [`NAP`].

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
use std::time::{Duration, Instant};

use super::aio::Side;
use super::core::{Core, Res, Stop, Wait};
use crate::error::Error;
use crate::sync::{LockError, SharedMutex};
use crate::sys::futex;

/// The longest a waiter for a lock, for room, for data or for `join`
/// sleeps before it looks again, whatever it was told: a wake-up can be
/// lost with a process SIGKILLed at the wrong instant, and this bounds
/// what such a loss costs (see [`acquire`] and [`Core::wait_on`]). An
/// idle waiter wakes this often; nothing else depends on it.
pub(super) const NAP: Duration = Duration::from_millis(50);

/// A lock held until dropped.
pub(super) struct Held<'a>(&'a SharedMutex);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let _ = self.0.release();
    }
}

/// Paired after a queue lock's [`Held`] in a tuple (so dropped after it):
/// the look, after the release, for async waiters the holder kept out
/// (`Core::after_unlock`; nothing without the feature `tokio`).
pub(super) struct Unlocked<'a>(pub(super) &'a Core, pub(super) Side);

impl Drop for Unlocked<'_> {
    #[inline]
    fn drop(&mut self) {
        self.0.after_unlock(self.1);
    }
}

/// Takes `m` within `wait`. An owner that died holding it is not an error:
/// the caller repairs what the dead holder may have left half done.
///
/// A wait for the lock is cut into naps (`SharedMutex` naps itself, at
/// most [`NAP`] here between deadline checks): no wait relies on a
/// wake-up. glibc's robust mutex, the lock's first implementation, woke
/// **one** sleeper on unlock, and that wake was lost when the sleeper was
/// being SIGKILLed (seen as a queue wedged after a producer was killed);
/// the owner-naming lock that replaced it wakes every sleeper and checks a
/// silent owner's liveness between naps, so a lost wake costs at most one
/// nap.
///
/// An uncontended acquisition is one `trylock` and reads no clock: `Try`
/// and `Until` try first (the deadline's nap reads the clock only once the
/// lock is busy), and `Forever` is `SharedMutex`'s own wait without a
/// deadline, which tries first. (A `trylock` here before every wait was a
/// second attempt, and a `Some(NAP)` timeout a clock read, on every
/// acquisition.)
#[inline]
pub(super) fn acquire(m: &SharedMutex, wait: Wait) -> Res<Held<'_>> {
    let mut timeout = match wait {
        Wait::Forever => None,
        Wait::Try | Wait::Until(_) => Some(Duration::ZERO),
    };
    loop {
        match m.acquire(timeout) {
            Ok(true) | Err(LockError::OwnerDied(_)) => return Ok(Held(m)),
            Ok(false) => {}
            Err(LockError::Failed(e)) => return Err(Stop::Failed(e)),
        }
        let left = match wait {
            Wait::Try => return Err(Stop::Busy),
            Wait::Until(d) => d.saturating_duration_since(Instant::now()),
            // Not reached (a wait without a deadline returns acquired),
            // but harmless: wait again.
            Wait::Forever => NAP,
        };
        if left.is_zero() {
            return Err(Stop::Timeout);
        }
        timeout = Some(left);
    }
}

/// The longest sleep of a consumer inside a chunked item between looks at
/// its producer (a futex cannot tell that the producer died).
pub(super) const SLICE: Duration = Duration::from_millis(20);
/// Wakes every sleeper of a futex word.
pub(super) const WAKE_ALL: u32 = i32::MAX as u32;

impl Core {
    /// Wakes the sleepers of `seq` if `sleepers` says there are any (after
    /// the `SeqCst` store they wait for; see `sys::futex`), and, if some of
    /// them are async waiters (`waiters`, feature `tokio`), every async
    /// waiter of the queue through its eventfd (`aio.rs`). An async waiter
    /// counts itself in `sleepers` too: with none announced, this is still
    /// one load of `sleepers`.
    #[inline]
    pub(super) fn notify(&self, seq: &AtomicU32, sleepers: &AtomicU32, waiters: &AtomicU32) {
        if sleepers.load(SeqCst) != 0 {
            self.wake(seq, waiters);
        }
    }

    /// The rest of [`notify`](Core::notify), out of line: a system call
    /// follows anyway.
    #[cold]
    #[inline(never)]
    fn wake(&self, seq: &AtomicU32, waiters: &AtomicU32) {
        seq.fetch_add(1, SeqCst);
        futex::wake(seq, WAKE_ALL);
        self.wake_async_if(waiters);
    }

    /// Spins, then sleeps on `seq`, until `check` reports something or
    /// `until` passes (`Ok(None)`).
    ///
    /// Each sleep lasts at most [`NAP`]: the side that makes `check` true
    /// stores its index word, then wakes the sleepers (`notify`), and a
    /// process SIGKILLed between the two leaves a sleeper that nobody will
    /// wake (a consumer asleep on an item that is there, a producer on
    /// room that is there) until some other process happens to notify,
    /// which may be never. Looking again after a nap bounds that to a nap.
    pub(super) fn wait_on<R>(
        &self,
        seq: &AtomicU32,
        sleepers: &AtomicU32,
        until: Option<Instant>,
        check: impl Fn() -> Res<Option<R>>,
    ) -> Res<Option<R>> {
        let got =
            futex::wait_until_napping(seq, sleepers, until, Some(NAP), |_| check().transpose())
                .map_err(Error::io("cannot wait on a queue"))?;
        got.transpose()
    }
}
