//! The core both `Lock` and `RLock` are made of: a robust, process-shared
//! mutex in its own shared block.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::poison::{LockError, LockResult};
use crate::error::Error;
use crate::shm::block::{ShmBlock, ShmSafe};
use crate::sys::robust::{Locked, RobustMutex};

#[allow(unsafe_code)] // the substrate's contract, argued below
                      // SAFETY: a `pthread_mutex_t` is plain bytes (any pattern is a value glibc
                      // can be handed, zeros are a default mutex) used only through glibc.
unsafe impl ShmSafe for RobustMutex {}

/// The longest a blocked acquisition sleeps before it tries again (see
/// [`SharedMutex::lock_napping`]).
const NAP: Duration = Duration::from_millis(50);

#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct SharedMutex {
    block: ShmBlock<RobustMutex>,
}

fn failed<G>(context: &'static str) -> impl FnOnce(std::io::Error) -> LockError<G> {
    move |e| match e.raw_os_error() {
        Some(libc::EDEADLK) => LockError::Failed(Error::InvalidState(
            "deadlock: the calling thread already holds this lock",
        )),
        _ => LockError::Failed(Error::io(context)(e)),
    }
}

impl SharedMutex {
    pub(crate) fn new(recursive: bool) -> crate::Result<Self> {
        Self::with_data(recursive, 0)
    }

    /// A mutex whose block has `data_len` bytes of data after it (where a
    /// `Value` keeps the data its own lock guards).
    pub(crate) fn with_data(recursive: bool, data_len: usize) -> crate::Result<Self> {
        let block = ShmBlock::<RobustMutex>::create("mproc-lock", data_len)?;
        block
            .header()
            .init(recursive)
            .map_err(Error::io("cannot initialise a lock"))?;
        Ok(SharedMutex { block })
    }

    /// The shared block the mutex heads.
    pub(crate) fn block(&self) -> &ShmBlock<RobustMutex> {
        &self.block
    }

    fn raw(&self) -> &RobustMutex {
        self.block.header()
    }

    /// Takes the mutex: `Ok(true)` acquired, `Ok(false)` timed out (or busy,
    /// for a zero timeout). `timeout: None` waits forever.
    pub(crate) fn acquire(&self, timeout: Option<Duration>) -> LockResult<bool> {
        let r = match timeout {
            // A try by the holder of a non-re-entrant lock: busy, as for
            // anyone else (glibc says EDEADLK).
            Some(t) if t.is_zero() => match self.raw().try_lock() {
                Err(e) if e.raw_os_error() == Some(libc::EDEADLK) => Ok(None),
                r => r,
            },
            Some(t) => self.lock_napping(Some(Instant::now() + t)),
            None => self.lock_napping(None),
        };
        match r.map_err(failed("cannot acquire a lock"))? {
            None => Ok(false),
            Some(Locked::Clean) => Ok(true),
            Some(Locked::OwnerDied) => Err(LockError::OwnerDied(true)),
        }
    }

    /// A blocking lock that never relies on a wake-up: a `trylock`, then
    /// timed locks of at most [`NAP`] until `deadline`.
    ///
    /// glibc's robust mutex wakes one sleeper on unlock. If that sleeper is
    /// being killed (SIGKILL) the wake dies with it, and the kernel's exit
    /// handling makes up for it only when the lock is still free, which it
    /// rarely is: the unlocker retakes it by the fast path, which does not
    /// mark waiters. The other waiters would then sleep until their
    /// deadline, or forever. Each new timed attempt marks the lock as waited
    /// on again, so a lost wake costs at most one nap.
    fn lock_napping(&self, deadline: Option<Instant>) -> std::io::Result<Option<Locked>> {
        if let Some(locked) = self.raw().try_lock()? {
            return Ok(Some(locked));
        }
        loop {
            let nap = Instant::now() + NAP;
            let until = deadline.map_or(nap, |d| d.min(nap));
            if let Some(locked) = self.raw().lock(Some(until))? {
                return Ok(Some(locked));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
        }
    }

    pub(crate) fn release(&self) -> crate::Result<()> {
        self.raw().unlock().map_err(|e| match e.raw_os_error() {
            Some(libc::EPERM) => {
                Error::InvalidState("release of a lock the calling thread does not hold")
            }
            _ => Error::io("cannot release a lock")(e),
        })
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
    /// the recursion depth for an `RLock`) and returns how many.
    ///
    /// glibc keeps the depth of a recursive mutex; rather than read its
    /// private fields, unlock until unlocking fails with `EPERM` (the caller
    /// no longer owns it). Call only while [`held_by_caller`](Self::held_by_caller).
    pub(crate) fn release_all(&self) -> crate::Result<u32> {
        let mut levels = 0u32;
        loop {
            match self.raw().unlock() {
                Ok(()) => levels += 1,
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => return Ok(levels),
                Err(e) => return Err(Error::io("cannot release a lock")(e)),
            }
        }
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
        for _ in 1..levels {
            // Re-entrant acquisitions of a mutex the caller holds.
            self.acquire(None).map_err(|e| e.map_owner(drop))?;
        }
        super::poison::with_outcome(died, ())
    }
}
