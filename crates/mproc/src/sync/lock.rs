//! `Lock` and `RLock`: locks in shared memory that survive their owner's death.

use std::marker::PhantomData;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::mutex::SharedMutex;
use super::poison::{with_outcome, LockError, LockResult};
use crate::error::Result;

/// A lock shared between processes, as Python's `multiprocessing.Lock`.
///
/// # Examples
///
/// An uncontended acquire and release make no system call. Unlike CPython's,
/// the lock has an owner (the thread that acquired it): only the owner may
/// release it, and if the owner dies holding it (killed, crashed), the next
/// acquirer gets the lock *and* learns it, through [`LockError::OwnerDied`],
/// instead of waiting forever.
///
/// ```
/// use mproc::{Lock, Process};
///
/// fn work(lock: Lock) {
///     let _guard = lock.lock().unwrap();
///     // ... the critical section ...
/// }
///
/// let lock = Lock::new()?;
/// let mut p = Process::new(work, lock.clone());
/// p.start()?;
/// {
///     let _guard = lock.lock()?;
/// }
/// p.join()?;
/// # Ok::<(), mproc::Error>(())
/// ```
///
/// Acquiring a lock the calling thread already holds is an error (a
/// deadlock), not a hang (and `try_acquire` says `false`); use [`RLock`]
/// for re-entrant locking.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Lock {
    mutex: SharedMutex,
}

/// A re-entrant lock shared between processes, as Python's
/// `multiprocessing.RLock`: the owning thread may acquire it again, and must
/// release it as many times. Owner death is reported as for [`Lock`].
///
/// # Examples
///
/// ```
/// let lock = mproc::RLock::new()?;
/// let outer = lock.lock()?;
/// let inner = lock.lock()?; // the same thread: fine
/// drop(inner);
/// drop(outer);
/// assert!(!lock.is_locked());
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RLock {
    mutex: SharedMutex,
}

/// Holds a [`Lock`] or [`RLock`] until dropped. Not `Send`: a lock is
/// released by the thread that took it.
///
/// # Examples
///
/// ```
/// let lock = mproc::Lock::new()?;
/// let guard = lock.lock()?;
/// drop(guard); // releases
/// assert!(!lock.is_locked());
/// # Ok::<(), mproc::Error>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    mutex: &'a SharedMutex,
    _not_send: PhantomData<*const ()>,
}

impl LockGuard<'_> {
    fn new(mutex: &SharedMutex) -> LockGuard<'_> {
        LockGuard {
            mutex,
            _not_send: PhantomData,
        }
    }
}

impl Drop for LockGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        let _ = self.mutex.release();
    }
}

impl std::fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LockGuard")
    }
}

/// Converts an acquisition outcome into a guard outcome.
#[inline]
fn guard(mutex: &SharedMutex, r: LockResult<bool>) -> LockResult<Option<LockGuard<'_>>> {
    match r {
        Ok(got) => Ok(got.then(|| LockGuard::new(mutex))),
        Err(LockError::OwnerDied(_)) => with_outcome(true, Some(LockGuard::new(mutex))),
        Err(LockError::Failed(e)) => Err(LockError::Failed(e)),
    }
}

macro_rules! lock_api {
    ($name:ident, $recursive:expr) => {
        impl $name {
            /// Wraps a mutex made elsewhere (a `Value`'s lock with its data).
            pub(crate) fn from_mutex(mutex: SharedMutex) -> Self {
                $name { mutex }
            }

            /// The underlying mutex.
            pub(crate) fn mutex(&self) -> &SharedMutex {
                &self.mutex
            }

            /// A new, unlocked lock.
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let lock = mproc::", stringify!($name), "::new()?;")]
            /// assert!(!lock.is_locked());
            /// # Ok::<(), mproc::Error>(())
            /// ```
            pub fn new() -> Result<Self> {
                Ok($name {
                    mutex: SharedMutex::new($recursive)?,
                })
            }

            /// Blocks until the lock is acquired. Release it with
            /// [`release`](Self::release) (or prefer [`lock`](Self::lock)).
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let lock = mproc::", stringify!($name), "::new()?;")]
            /// lock.acquire()?;
            /// assert!(lock.is_locked());
            /// lock.release()?;
            /// # Ok::<(), mproc::Error>(())
            /// ```
            #[inline]
            pub fn acquire(&self) -> LockResult<()> {
                self.mutex
                    .acquire(None)
                    .map(drop)
                    .map_err(|e| map_err(e, ()))
            }

            /// Acquires the lock if it is free; `false` otherwise.
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let lock = mproc::", stringify!($name), "::new()?;")]
            /// assert!(lock.try_acquire()?);
            /// let other = std::thread::scope(|s| s.spawn(|| lock.try_acquire().unwrap()).join().unwrap());
            /// assert!(!other); // held by this thread
            /// lock.release()?;
            /// # Ok::<(), mproc::Error>(())
            /// ```
            #[inline]
            pub fn try_acquire(&self) -> LockResult<bool> {
                self.mutex.acquire(Some(Duration::ZERO))
            }

            /// Waits at most `timeout` for the lock; `false` if it is still
            /// held (a zero timeout only tries).
            ///
            /// # Examples
            ///
            /// ```
            /// use std::time::Duration;
            #[doc = concat!("let lock = mproc::", stringify!($name), "::new()?;")]
            /// assert!(lock.acquire_timeout(Duration::from_millis(10))?);
            /// lock.release()?;
            /// # Ok::<(), mproc::Error>(())
            /// ```
            #[doc(alias = "acquire")]
            pub fn acquire_timeout(&self, timeout: Duration) -> LockResult<bool> {
                self.mutex.acquire(Some(timeout))
            }

            /// Releases the lock. Releasing a lock the calling thread does
            /// not hold (or an unlocked one) is an error.
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let lock = mproc::", stringify!($name), "::new()?;")]
            /// assert!(lock.release().is_err()); // not held
            /// lock.acquire()?;
            /// lock.release()?;
            /// # Ok::<(), mproc::Error>(())
            /// ```
            #[inline]
            pub fn release(&self) -> Result<()> {
                self.mutex.release()
            }

            /// Blocks until the lock is acquired; it is released when the
            /// guard is dropped (Python's `with lock:`).
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let lock = mproc::", stringify!($name), "::new()?;")]
            /// {
            ///     let _guard = lock.lock()?;
            ///     assert!(lock.is_locked());
            /// }
            /// assert!(!lock.is_locked());
            /// # Ok::<(), mproc::Error>(())
            /// ```
            #[inline]
            pub fn lock(&self) -> LockResult<LockGuard<'_>> {
                // The guard of an owner-death acquisition moves into the
                // error: dropping it (and making another) would release the
                // lock the caller is told it holds.
                const HELD: &str = "a blocking acquire returns with the lock";
                match guard(&self.mutex, self.mutex.acquire(None)) {
                    Ok(g) => Ok(g.expect(HELD)),
                    Err(e) => Err(e.map_owner(|g| g.expect(HELD))),
                }
            }

            /// A guard if the lock is free now.
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let lock = mproc::", stringify!($name), "::new()?;")]
            /// let guard = lock.try_lock()?;
            /// assert!(guard.is_some());
            /// # Ok::<(), mproc::Error>(())
            /// ```
            pub fn try_lock(&self) -> LockResult<Option<LockGuard<'_>>> {
                guard(&self.mutex, self.mutex.acquire(Some(Duration::ZERO)))
            }

            /// A guard if the lock can be had within `timeout`.
            ///
            /// # Examples
            ///
            /// ```
            /// use std::time::Duration;
            #[doc = concat!("let lock = mproc::", stringify!($name), "::new()?;")]
            /// let guard = lock.lock_timeout(Duration::from_millis(10))?;
            /// assert!(guard.is_some());
            /// # Ok::<(), mproc::Error>(())
            /// ```
            pub fn lock_timeout(&self, timeout: Duration) -> LockResult<Option<LockGuard<'_>>> {
                guard(&self.mutex, self.mutex.acquire(Some(timeout)))
            }

            /// Whether some thread holds the lock (a snapshot).
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let lock = mproc::", stringify!($name), "::new()?;")]
            /// assert!(!lock.is_locked());
            /// let _guard = lock.lock()?;
            /// assert!(lock.is_locked());
            /// # Ok::<(), mproc::Error>(())
            /// ```
            pub fn is_locked(&self) -> bool {
                self.mutex.is_locked()
            }

            pub(crate) fn shared_mutex(&self) -> &SharedMutex {
                &self.mutex
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("locked", &self.is_locked())
                    .finish()
            }
        }
    };
}

lock_api!(Lock, false);
lock_api!(RLock, true);

fn map_err<A, B>(e: LockError<A>, b: B) -> LockError<B> {
    match e {
        LockError::OwnerDied(_) => LockError::OwnerDied(b),
        LockError::Failed(e) => LockError::Failed(e),
    }
}

impl<G> LockError<G> {
    pub(crate) fn map_owner<H>(self, f: impl FnOnce(G) -> H) -> LockError<H> {
        match self {
            LockError::OwnerDied(g) => LockError::OwnerDied(f(g)),
            LockError::Failed(e) => LockError::Failed(e),
        }
    }
}
