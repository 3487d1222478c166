//! The core both `Lock` and `RLock` are made of: a process-shared mutex
//! that knows its owner (`sys::robust`), in its own shared block.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::deadline_after;
use super::poison::{LockError, LockResult};
use crate::error::Error;
use crate::observe::warn_event;
use crate::shm::block::ShmBlock;
use crate::shm::guarded::LockHeader;
use crate::sys::robust::{Locked, RobustMutex};

#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct SharedMutex {
    block: ShmBlock<LockHeader>,
}

#[cold]
fn failed(context: &'static str, e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EDEADLK) => {
            Error::InvalidState("deadlock: the calling thread already holds this lock")
        }
        Some(libc::EAGAIN) => Error::InvalidState("an RLock re-entered too many times"),
        _ => Error::io(context)(e),
    }
}

impl SharedMutex {
    pub(crate) fn new(recursive: bool) -> crate::Result<Self> {
        Self::with_data(recursive, 0)
    }

    /// A mutex whose block has `data_len` bytes of data after it (where a
    /// `Value` keeps the data its own lock guards).
    pub(crate) fn with_data(recursive: bool, data_len: usize) -> crate::Result<Self> {
        let block = ShmBlock::<LockHeader>::create("mproc-lock", data_len)?;
        block.header().mutex.init(recursive);
        Ok(SharedMutex { block })
    }

    /// The shared block the mutex heads.
    pub(crate) fn block(&self) -> &ShmBlock<LockHeader> {
        &self.block
    }

    fn raw(&self) -> &RobustMutex {
        &self.block.header().mutex
    }

    /// Takes the mutex: `Ok(true)` acquired, `Ok(false)` timed out (or busy,
    /// for a zero timeout). `timeout: None` waits forever.
    ///
    /// No acquisition relies on a single wake-up (see `sys::robust`): an
    /// unlock wakes every sleeper, and sleepers nap, so a waiter or a holder
    /// killed at any point cannot leave the others asleep.
    #[inline]
    pub(crate) fn acquire(&self, timeout: Option<Duration>) -> LockResult<bool> {
        let r = match timeout {
            None => self.raw().lock(None),
            // A try by the holder of a non-re-entrant lock: busy, as for
            // anyone else.
            Some(t) if t.is_zero() => self.raw().try_lock(),
            Some(t) => self.raw().lock(deadline_after(t)),
        };
        match r {
            Ok(Some(Locked::Clean)) => Ok(true),
            Ok(None) => Ok(false),
            Ok(Some(Locked::OwnerDied)) => Err(owner_died()),
            Err(e) => Err(LockError::Failed(failed("cannot acquire a lock", e))),
        }
    }

    #[inline]
    pub(crate) fn release(&self) -> crate::Result<()> {
        self.raw().unlock().map_err(not_held)
    }

    pub(crate) fn is_locked(&self) -> bool {
        self.raw().is_locked()
    }
}

/// What a condition variable needs of its lock.
impl SharedMutex {
    /// Whether the calling thread holds the mutex (no system call).
    pub(crate) fn held_by_caller(&self) -> bool {
        self.raw().held_by_caller()
    }

    /// Releases every level the calling thread holds (one for a `Lock`,
    /// the recursion depth for an `RLock`) and returns how many. Call only
    /// while [`held_by_caller`](Self::held_by_caller).
    pub(crate) fn release_all(&self) -> crate::Result<u32> {
        self.raw().unlock_all().map_err(not_held)
    }

    /// Takes the mutex again `levels` times (at least once), as
    /// [`release_all`](Self::release_all) found it. An owner death met on
    /// the first, blocking, acquisition is reported after all levels are
    /// restored.
    pub(crate) fn reacquire(&self, levels: u32) -> LockResult<()> {
        let died = match self.acquire(None) {
            Ok(_) => false,
            Err(LockError::OwnerDied(_)) => true,
            Err(LockError::Failed(e)) => return Err(LockError::Failed(e)),
        };
        self.raw().set_levels(levels);
        super::poison::with_outcome(died, ())
    }
}

/// A lock taken over from a holder that died: told at `warn` (what it
/// guarded may be half done).
#[cold]
#[inline(never)]
fn owner_died() -> LockError<bool> {
    warn_event!(
        pid = std::process::id(),
        "lock taken over: its holder died holding it"
    );
    LockError::OwnerDied(true)
}

#[cold]
fn not_held(e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EPERM) => {
            Error::InvalidState("release of a lock the calling thread does not hold")
        }
        Some(libc::EBUSY) => Error::InvalidState(
            "the lock is held by a guard of a shared value: drop the guard to release it",
        ),
        _ => Error::io("cannot release a lock")(e),
    }
}
