//! What a lock call returns when the previous holder died holding the lock.

use std::fmt;

use crate::error::Error;

/// The result of taking a lock: `Ok` normally; [`LockError::OwnerDied`]
/// when the lock was taken from a holder that died (a crash, a kill) while
/// holding it. As with std's `PoisonError`, the lock *is* held then: the
/// guard (or value) is inside, and the data the lock protects may be
/// half-updated. `?` turns it into [`Error::OwnerDied`] (dropping the guard
/// releases the lock).
pub type LockResult<G> = std::result::Result<G, LockError<G>>;

/// Why a lock call did not simply succeed.
pub enum LockError<G> {
    /// Acquired, from a holder that died holding the lock.
    OwnerDied(G),
    /// Not acquired: the OS call failed.
    Failed(Error),
}

impl<G> LockError<G> {
    /// The guard (or value) of an [`OwnerDied`](LockError::OwnerDied)
    /// acquisition: the lock is yours, check the data it protects.
    pub fn recover(self) -> crate::Result<G> {
        match self {
            LockError::OwnerDied(g) => Ok(g),
            LockError::Failed(e) => Err(e),
        }
    }

    /// Whether the previous holder died.
    pub fn is_owner_died(&self) -> bool {
        matches!(self, LockError::OwnerDied(_))
    }
}

/// Recovers from an owner death, as `PoisonError::into_inner` does.
pub trait Recover<G> {
    /// The guard even if the previous owner died; only OS failures remain
    /// errors.
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
