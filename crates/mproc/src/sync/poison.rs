//! What a lock call returns when the previous holder died holding the lock.

use std::fmt;

use crate::error::Error;

/// The result of taking a lock: `Ok` normally; [`LockError::OwnerDied`]
/// when the lock was taken from a holder that died (a crash, a kill) while
/// holding it. As with std's `PoisonError`, the lock *is* held then: the
/// guard (or value) is inside, and the data the lock protects may be
/// half-updated. `?` turns it into [`Error::OwnerDied`] (dropping the guard
/// releases the lock).
///
/// # Examples
///
/// ```
/// use mproc::{Lock, LockResult, LockGuard};
/// let lock = Lock::new()?;
/// let r: LockResult<LockGuard<'_>> = lock.lock();
/// assert!(r.is_ok()); // nobody died
/// # Ok::<(), mproc::Error>(())
/// ```
pub type LockResult<G> = std::result::Result<G, LockError<G>>;

/// Why a lock call did not simply succeed.
///
/// # Examples
///
/// A child dies holding the lock; the parent gets it, and is told:
///
/// ```
/// use mproc::{Event, Lock, LockError, Process};
///
/// fn hold((lock, held, never): (Lock, Event, Event)) {
///     let _guard = lock.lock().unwrap();
///     held.set();
///     never.wait().unwrap(); // until killed
/// }
///
/// let (lock, held, never) = (Lock::new()?, Event::new()?, Event::new()?);
/// let mut p = Process::new(hold, (lock.clone(), held.clone(), never));
/// p.start()?;
/// held.wait()?;
/// p.kill()?;
/// p.join()?;
/// match lock.lock() {
///     Err(LockError::OwnerDied(guard)) => drop(guard), // check the data, then go on
///     other => panic!("{other:?}"),
/// }
/// assert!(lock.lock().is_ok()); // a clean lock again
/// # Ok::<(), mproc::Error>(())
/// ```
pub enum LockError<G> {
    /// Acquired, from a holder that died holding the lock.
    OwnerDied(G),
    /// Not acquired: the call failed (an OS error, or a misuse such as
    /// waiting on a [`Condition`](crate::Condition) without its lock).
    Failed(Error),
}

impl<G> LockError<G> {
    /// The guard (or value) of an [`OwnerDied`](LockError::OwnerDied)
    /// acquisition: the lock is yours, check the data it protects.
    ///
    /// # Examples
    ///
    /// ```
    /// use mproc::LockError;
    /// let e: LockError<u8> = LockError::OwnerDied(7);
    /// assert_eq!(e.recover()?, 7);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn recover(self) -> crate::Result<G> {
        match self {
            LockError::OwnerDied(g) => Ok(g),
            LockError::Failed(e) => Err(e),
        }
    }

    /// Whether the previous holder died.
    ///
    /// # Examples
    ///
    /// ```
    /// use mproc::{Error, LockError};
    /// assert!(LockError::OwnerDied(()).is_owner_died());
    /// assert!(!LockError::<()>::Failed(Error::Timeout).is_owner_died());
    /// ```
    pub fn is_owner_died(&self) -> bool {
        matches!(self, LockError::OwnerDied(_))
    }
}

/// Recovers from an owner death, as `PoisonError::into_inner` does.
///
/// # Examples
///
/// ```
/// use mproc::Recover;
/// let lock = mproc::Lock::new()?;
/// let _guard = lock.lock().recover()?; // the guard, whoever died before
/// # Ok::<(), mproc::Error>(())
/// ```
pub trait Recover<G> {
    /// The guard even if the previous owner died; only other failures
    /// remain errors.
    ///
    /// # Examples
    ///
    /// ```
    /// use mproc::{LockResult, Recover};
    /// let r: LockResult<u8> = Err(mproc::LockError::OwnerDied(1));
    /// assert_eq!(r.recover()?, 1);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    fn recover(self) -> crate::Result<G>;
}

impl<G> Recover<G> for LockResult<G> {
    fn recover(self) -> crate::Result<G> {
        self.or_else(LockError::recover)
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            LockError::Failed(e) => f.debug_tuple("Failed").field(e).finish(),
        }
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => {
                f.write_str("the previous holder of the lock died holding it")
            }
            LockError::Failed(e) => e.fmt(f),
        }
    }
}

impl<G> std::error::Error for LockError<G> {}

impl<G> From<LockError<G>> for Error {
    fn from(e: LockError<G>) -> Error {
        match e {
            LockError::OwnerDied(_) => Error::OwnerDied,
            LockError::Failed(e) => e,
        }
    }
}

impl<G> From<Error> for LockError<G> {
    fn from(e: Error) -> Self {
        LockError::Failed(e)
    }
}

/// Maps an owner-death outcome onto a value.
pub(crate) fn with_outcome<G>(died: bool, g: G) -> LockResult<G> {
    if died {
        Err(LockError::OwnerDied(g))
    } else {
        Ok(g)
    }
}
