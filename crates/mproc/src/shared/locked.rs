//! What `Value` and `Array` are made of: cells of plain data and the lock
//! that guards them.
//!
//! `Value::new` and `Array::new` put the data in the lock's own block,
//! after the mutex: one memfd, one descriptor, one mapping. A value made
//! with an existing lock (`with_lock`) has its data in a block of its own.
//!
//! Re-entrance: a value's default lock is an [`RLock`](crate::RLock), as
//! in Python, so the thread that holds a guard (`&mut T`) could call
//! `get`/`set`/`lock` again and alias the guard's reference. Each process
//! keeps a borrow flag per block of cells (shared by the clones of a
//! handle); a call that finds it set after taking the lock is that thread
//! re-entering, and fails instead.

use std::time::Duration;

use bytemuck::Zeroable;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::lock_kind::SharedLock;
use super::raw::{data_len, layout_error};
use crate::error::{Error, Result};
use crate::shm::block::ShmBlock;
use crate::shm::cells::{Cells, Lent};
use crate::shm::plain::Plain;
use crate::sync::{LockError, LockGuard, LockResult, SharedMutex};

/// Cells and their lock.
pub(crate) struct Locked<T, L> {
    lock: L,
    cells: Cells<T>,
    /// Where the cells live, for serialisation: `None` in the lock's block.
    apart: Option<ShmBlock<()>>,
}

impl<T, L: Clone> Clone for Locked<T, L> {
    fn clone(&self) -> Self {
        Locked {
            lock: self.lock.clone(),
            cells: self.cells.clone(),
            apart: self.apart.clone(),
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
        let cells = lock
            .shared_mutex()
            .block()
            .cells(len)
            .map_err(layout_error)?;
        Ok(Locked {
            lock,
            cells,
            apart: None,
        })
    }

    /// A copy of `values` in the block of a new lock.
    pub(crate) fn from_slice(values: &[T]) -> Result<Self> {
        let lock = L::with_data(data_len::<T>(values.len())?)?;
        let cells = lock
            .shared_mutex()
            .block()
            .cells(values.len())
            .map_err(layout_error)?;
        cells.write_from(0, values);
        Ok(Locked {
            lock,
            cells,
            apart: None,
        })
    }

    /// `len` cells in a block of their own, guarded by `lock`, holding
    /// `values` if given (zeros otherwise).
    pub(crate) fn apart(len: usize, values: Option<&[T]>, lock: L) -> Result<Self> {
        let block = ShmBlock::<()>::create("mproc-array", data_len::<T>(len)?)?;
        let cells = block.cells(len).map_err(layout_error)?;
        if let Some(values) = values {
            cells.write_from(0, values);
        }
        Ok(Locked {
            lock,
            cells,
            apart: Some(block),
        })
    }

    pub(crate) fn lock(&self) -> &L {
        &self.lock
    }

    pub(crate) fn len(&self) -> usize {
        self.cells.len()
    }

    /// Runs `f` on the cells with the lock held; the outcome of the
    /// acquisition (owner died) wraps `f`'s result.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&Cells<T>) -> R) -> LockResult<R> {
        let (g, died) = match self.acquire(None) {
            Ok(Some(held)) => held,
            Ok(None) => unreachable!("a blocking acquire returns with the lock"),
            Err(e) => return Err(LockError::Failed(e)),
        };
        if self.cells.is_borrowed() {
            drop(g);
            return Err(LockError::Failed(Error::InvalidState(REENTERED)));
        }
        let out = f(&self.cells);
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
        let pinned = Pinned::new(self.lock.shared_mutex(), g);
        #[allow(unsafe_code)] // the one promise only this caller can make (below)
        // SAFETY: `pinned` holds the lock that guards these cells (every
        // process writes them only through a guard of this `Locked`'s lock;
        // the raw types have cells of their own, never locked), and keeps
        // it until dropped: its level is pinned, so neither a `release()`
        // of the same lock nor a condition's wait on it can free it early.
        let guard = match unsafe { self.cells.lend(pinned) } {
            Ok(guard) => guard,
            Err(pinned) => {
                drop(pinned);
                return Err(LockError::Failed(Error::InvalidState(REENTERED)));
            }
        };
        outcome(died, Some(guard))
    }

    /// Takes the lock: the guard and whether the previous owner died. A
    /// dead owner's borrow (a guard of a thread of this process that died
    /// holding it) ends with it.
    #[inline]
    fn acquire(&self, timeout: Option<Duration>) -> Result<Option<(LockGuard<'_>, bool)>> {
        match self.lock.guard(timeout) {
            Ok(g) => Ok(g.map(|g| (g, false))),
            Err(LockError::OwnerDied(g)) => {
                self.cells.unborrow();
                Ok(g.map(|g| (g, true)))
            }
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

/// Holds the lock and a borrow of the cells, whose values it has checked
/// (so they are `&mut [T]` until it drops).
pub(crate) type SliceGuard<'a, T> = Lent<'a, T, Pinned<'a>>;

/// A held lock whose level is pinned while it lends the cells: unpinned,
/// then released, when it drops.
pub(crate) struct Pinned<'a> {
    mutex: &'a SharedMutex,
    // Dropped (the lock released) after `Drop::drop` unpinned it.
    _guard: LockGuard<'a>,
}

impl<'a> Pinned<'a> {
    fn new(mutex: &'a SharedMutex, guard: LockGuard<'a>) -> Self {
        mutex.pin();
        Pinned {
            mutex,
            _guard: guard,
        }
    }
}

impl Drop for Pinned<'_> {
    fn drop(&mut self) {
        self.mutex.unpin();
    }
}

/// How a `Locked` travels: its lock, and its cells' block unless they live
/// in the lock's.
#[derive(Serialize, Deserialize)]
enum Wire<L, B> {
    InLock { lock: L, len: u64 },
    Apart { lock: L, block: B, len: u64 },
}

impl<T, L: Serialize> Serialize for Locked<T, L> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let len = self.cells.len() as u64;
        let lock = &self.lock;
        match &self.apart {
            None => Wire::<_, &ShmBlock<()>>::InLock { lock, len },
            Some(block) => Wire::Apart { lock, block, len },
        }
        .serialize(s)
    }
}

impl<'de, T: Plain, L: SharedLock> Deserialize<'de> for Locked<T, L> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let usize_len = |len: u64| usize::try_from(len).map_err(D::Error::custom);
        match Wire::<L, ShmBlock<()>>::deserialize(d)? {
            Wire::InLock { lock, len } => {
                let cells = lock.shared_mutex().block().cells(usize_len(len)?);
                Ok(Locked {
                    cells: cells.map_err(D::Error::custom)?,
                    lock,
                    apart: None,
                })
            }
            Wire::Apart { lock, block, len } => Ok(Locked {
                cells: block.cells(usize_len(len)?).map_err(D::Error::custom)?,
                lock,
                apart: Some(block),
            }),
        }
    }
}
