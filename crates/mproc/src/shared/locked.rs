//! What `Value` and `Array` are made of: cells of plain data and the lock
//! that guards them (paired and lent in `shm/guarded.rs`).
//!
//! `Value::new` and `Array::new` put the data in the lock's own block,
//! after the mutex: one memfd, one descriptor, one mapping. A value made
//! with an existing lock (`with_lock`) has its data in a block of its own,
//! whose header names the lock.
//!
//! Re-entrance: a value's default lock is an [`RLock`](crate::RLock), as
//! in Python, so the thread that holds a guard (`&mut T`) could call
//! `get`/`set`/`lock` again and alias the guard's reference. The cells
//! carry a lent mark in shared memory (the lending thread); a call that
//! finds it naming the calling thread after taking the lock is that thread
//! re-entering, and fails instead.

use std::time::Duration;

use bytemuck::Zeroable;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::lock_kind::SharedLock;
use super::raw::{data_len, layout_error};
use crate::error::{Error, Result};
use crate::shm::block::ShmBlock;
use crate::shm::cells::Cells;
use crate::shm::guarded::{ApartHeader, Guarded, Lent, Refused};
use crate::shm::plain::Plain;
use crate::sync::{LockError, LockGuard, LockResult};

/// Cells and their lock.
pub(crate) struct Locked<T, L> {
    lock: L,
    cells: Guarded<T>,
}

impl<T, L: Clone> Clone for Locked<T, L> {
    fn clone(&self) -> Self {
        Locked {
            lock: self.lock.clone(),
            cells: self.cells.clone(),
        }
    }
}

const REENTERED: &str = "the calling thread already holds a guard on this shared value";

impl<T: Plain, L: SharedLock> Locked<T, L> {
    /// `len` zeroed cells in the block of a new lock.
    pub(crate) fn zeroed(len: usize) -> Result<Self>
    where
        T: Zeroable,
    {
        let lock = L::with_data(data_len::<T>(len)?)?;
        let cells = Guarded::in_lock(lock.shared_mutex().block(), len).map_err(layout_error)?;
        Ok(Locked { lock, cells })
    }

    /// A copy of `values` in the block of a new lock.
    pub(crate) fn from_slice(values: &[T]) -> Result<Self> {
        let lock = L::with_data(data_len::<T>(values.len())?)?;
        let cells =
            Guarded::in_lock(lock.shared_mutex().block(), values.len()).map_err(layout_error)?;
        cells.cells().write_from(0, values);
        Ok(Locked { lock, cells })
    }

    /// `len` cells in a block of their own, guarded by `lock`, holding
    /// `values` if given (zeros otherwise).
    pub(crate) fn apart(len: usize, values: Option<&[T]>, lock: L) -> Result<Self> {
        let cells = Guarded::create_apart(lock.shared_mutex().block(), len, data_len::<T>(len)?)?;
        if let Some(values) = values {
            cells.cells().write_from(0, values);
        }
        Ok(Locked { lock, cells })
    }

    pub(crate) fn lock(&self) -> &L {
        &self.lock
    }

    pub(crate) fn len(&self) -> usize {
        self.cells.cells().len()
    }

    /// Runs `f` on the cells with the lock held; the outcome of the
    /// acquisition (owner died) wraps `f`'s result.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&Cells<T>) -> R) -> LockResult<R> {
        let (g, died) = match self.acquire(None) {
            Ok(Some(held)) => held,
            Ok(None) => unreachable!("a blocking acquire returns with the lock"),
            Err(e) => return Err(LockError::Failed(e)),
        };
        if self.cells.lent_to_caller() {
            drop(g);
            return Err(LockError::Failed(Error::InvalidState(REENTERED)));
        }
        let out = f(self.cells.cells());
        drop(g);
        outcome(died, out)
    }

    /// A guard over all the cells, waiting `timeout` (`None`: forever; zero:
    /// only trying).
    #[inline]
    pub(crate) fn guard(&self, timeout: Option<Duration>) -> LockResult<Option<SliceGuard<'_, T>>> {
        let (g, died) = match self.acquire(timeout) {
            Ok(Some(held)) => held,
            Ok(None) => return Ok(None),
            Err(e) => return Err(LockError::Failed(e)),
        };
        let guard = match self.cells.lend(g) {
            Ok(guard) => guard,
            Err((g, why)) => {
                drop(g);
                return Err(LockError::Failed(Error::InvalidState(match why {
                    Refused::Reentered => REENTERED,
                    Refused::NotHeld => "a shared value's guard does not hold its lock",
                })));
            }
        };
        outcome(died, Some(guard))
    }

    /// Takes the lock: the guard and whether the previous owner died.
    #[inline]
    fn acquire(&self, timeout: Option<Duration>) -> Result<Option<(LockGuard<'_>, bool)>> {
        match self.lock.guard(timeout) {
            Ok(g) => Ok(g.map(|g| (g, false))),
            Err(LockError::OwnerDied(g)) => Ok(g.map(|g| (g, true))),
            Err(LockError::Failed(e)) => Err(e),
        }
    }
}

fn outcome<R>(died: bool, r: R) -> LockResult<R> {
    if died {
        Err(LockError::OwnerDied(r))
    } else {
        Ok(r)
    }
}

/// Holds the lock (its level pinned) and the cells lent, whose values it
/// has checked (so they are `&mut [T]` until it drops).
pub(crate) type SliceGuard<'a, T> = Lent<'a, T, LockGuard<'a>>;

/// How a `Locked` travels: its lock, and its cells' block unless they live
/// in the lock's.
#[derive(Serialize, Deserialize)]
enum Wire<L, B> {
    InLock { lock: L, len: u64 },
    Apart { lock: L, block: B, len: u64 },
}

impl<T, L: Serialize> Serialize for Locked<T, L> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let len = self.cells.cells().len() as u64;
        let lock = &self.lock;
        match self.cells.apart_block() {
            None => Wire::<_, &ShmBlock<ApartHeader>>::InLock { lock, len },
            Some(block) => Wire::Apart { lock, block, len },
        }
        .serialize(s)
    }
}

impl<'de, T: Plain, L: SharedLock> Deserialize<'de> for Locked<T, L> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let usize_len = |len: u64| usize::try_from(len).map_err(D::Error::custom);
        let (lock, cells) = match Wire::<L, ShmBlock<ApartHeader>>::deserialize(d)? {
            Wire::InLock { lock, len } => {
                let cells = Guarded::in_lock(lock.shared_mutex().block(), usize_len(len)?);
                (lock, cells)
            }
            Wire::Apart { lock, block, len } => {
                let cells = Guarded::apart(lock.shared_mutex().block(), block, usize_len(len)?);
                (lock, cells)
            }
        };
        Ok(Locked {
            cells: cells.map_err(D::Error::custom)?,
            lock,
        })
    }
}
