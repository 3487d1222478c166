//! `Array`: plain values in shared memory with the lock that guards them.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use bytemuck::Zeroable;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::lock_kind::SharedLock;
use super::locked::{Locked, SliceGuard};
use crate::error::Result;
use crate::shm::cells::check_range;
use crate::shm::plain::Plain;
use crate::sync::{LockResult, RLock};

/// An array of plain values in shared memory with its own lock, as
/// Python's `multiprocessing.Array`.
///
/// Each call ([`get`](Self::get), [`set`](Self::set),
/// [`to_vec`](Self::to_vec)...) takes the lock for itself; hold a guard
/// from [`lock`](Self::lock) (`&mut [T]`) to make several reads and writes
/// one atomic step. An index out of range is an
/// [`Error::OutOfRange`](crate::Error::OutOfRange) inside
/// [`LockError::Failed`](crate::LockError::Failed); calls never panic on it (the guard's slice
/// indexing panics, as slices do). The lock, owner-death and re-entrance
/// rules are those of [`Value`](crate::Value).
///
/// ```
/// use mproc::Array;
///
/// fn square_all(a: Array<u64>) {
///     for x in a.lock().unwrap().iter_mut() {
///         *x *= *x;
///     }
/// }
///
/// let a = Array::from_slice(&[1u64, 2, 3])?;
/// mproc::spawn(square_all, a.clone())?.join()?;
/// assert_eq!(a.to_vec()?, [1, 4, 9]);
/// assert!(a.get(3).is_err());
/// # Ok::<(), mproc::Error>(())
/// ```
pub struct Array<T, L = RLock> {
    inner: Locked<T, L>,
}

impl<T, L: Clone> Clone for Array<T, L> {
    fn clone(&self) -> Self {
        Array {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Plain> Array<T> {
    /// `len` zeroed values with a new [`RLock`].
    ///
    /// ```
    /// let a = mproc::Array::<i32>::new(3)?;
    /// assert_eq!(a.to_vec()?, [0, 0, 0]);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn new(len: usize) -> Result<Self>
    where
        T: Zeroable,
    {
        Ok(Array {
            inner: Locked::zeroed(len)?,
        })
    }

    /// A copy of `values` with a new [`RLock`].
    ///
    /// ```
    /// let a = mproc::Array::from_slice(&[1.0f32, 2.0])?;
    /// assert_eq!(a.len(), 2);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn from_slice(values: &[T]) -> Result<Self> {
        Ok(Array {
            inner: Locked::from_slice(values)?,
        })
    }
}

impl<T: Plain, L: SharedLock> Array<T, L> {
    /// `len` zeroed values guarded by an existing lock.
    ///
    /// ```
    /// use mproc::{Array, Lock};
    /// let a = Array::<u8, Lock>::with_lock(2, Lock::new()?)?;
    /// assert_eq!(a.to_vec()?, [0, 0]);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn with_lock(len: usize, lock: L) -> Result<Self>
    where
        T: Zeroable,
    {
        Ok(Array {
            inner: Locked::apart(len, None, lock)?,
        })
    }

    /// A copy of `values` guarded by an existing lock.
    ///
    /// ```
    /// use mproc::{Array, RLock};
    /// let a = Array::from_slice_with_lock(&[3u8, 4], RLock::new()?)?;
    /// assert_eq!(a.get(1)?, 4);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn from_slice_with_lock(values: &[T], lock: L) -> Result<Self> {
        Ok(Array {
            inner: Locked::apart(values.len(), Some(values), lock)?,
        })
    }

    /// The number of values.
    ///
    /// ```
    /// assert_eq!(mproc::Array::<u8>::new(7)?.len(), 7);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether the array has no values.
    ///
    /// ```
    /// assert!(mproc::Array::<u8>::new(0)?.is_empty());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value at `index`, read under the lock.
    ///
    /// ```
    /// use mproc::Error;
    /// let a = mproc::Array::from_slice(&[5i16, 6])?;
    /// assert_eq!(a.get(1)?, 6);
    /// assert!(matches!(a.get(2).map_err(Error::from), Err(Error::OutOfRange { index: 2, len: 2 })));
    /// # Ok::<(), mproc::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If the bytes are not a valid `T` (see [`Plain`]); never for `Pod`
    /// types.
    pub fn get(&self, index: usize) -> LockResult<T> {
        check_range(index, 1, self.len())?;
        self.inner.with(|c| c.read(index))
    }

    /// Writes `value` at `index`, under the lock.
    ///
    /// ```
    /// let a = mproc::Array::<i16>::new(2)?;
    /// a.set(0, -1)?;
    /// assert_eq!(a.to_vec()?, [-1, 0]);
    /// assert!(a.set(2, 0).is_err());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn set(&self, index: usize, value: T) -> LockResult<()> {
        check_range(index, 1, self.len())?;
        self.inner.with(|c| c.write(index, value))
    }

    /// A copy of all the values, taken under the lock (a consistent
    /// snapshot).
    ///
    /// ```
    /// let a = mproc::Array::from_slice(&['a', 'b'])?;
    /// assert_eq!(a.to_vec()?, ['a', 'b']);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get).
    pub fn to_vec(&self) -> LockResult<Vec<T>> {
        self.inner
            .with(|c| (0..c.len()).map(|i| c.read(i)).collect())
    }

    /// Copies `out.len()` values starting at `start` into `out`, under the
    /// lock ([`Error::OutOfRange`](crate::Error::OutOfRange) if they run
    /// past the end).
    ///
    /// ```
    /// let a = mproc::Array::from_slice(&[1u32, 2, 3])?;
    /// let mut buf = [0u32; 2];
    /// a.read_into(1, &mut buf)?;
    /// assert_eq!(buf, [2, 3]);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get).
    pub fn read_into(&self, start: usize, out: &mut [T]) -> LockResult<()> {
        check_range(start, out.len(), self.len())?;
        self.inner.with(|c| c.read_into(start, out))
    }

    /// Copies `values` into the array starting at `start`, under the lock
    /// ([`Error::OutOfRange`](crate::Error::OutOfRange) if they run past
    /// the end; nothing is written then). Python's `a[i:j] = values`.
    ///
    /// ```
    /// let a = mproc::Array::<u32>::new(3)?;
    /// a.write_from(1, &[8, 9])?;
    /// assert_eq!(a.to_vec()?, [0, 8, 9]);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn write_from(&self, start: usize, values: &[T]) -> LockResult<()> {
        check_range(start, values.len(), self.len())?;
        self.inner.with(|c| c.write_from(start, values))
    }

    /// Takes the lock and gives the values as `&mut [T]` until the guard
    /// drops.
    ///
    /// ```
    /// let a = mproc::Array::from_slice(&[3u8, 1, 2])?;
    /// a.lock()?.sort();
    /// assert_eq!(a.to_vec()?, [1, 2, 3]);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If a value's bytes are not a valid `T` (see [`Plain`]); never for
    /// `Pod` types.
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        match self.inner.guard(None) {
            Ok(g) => Ok(ArrayGuard::new(g)),
            Err(e) => Err(e.map_owner(ArrayGuard::new)),
        }
    }

    /// A guard if the lock is free now.
    ///
    /// ```
    /// let a = mproc::Array::<u8>::new(1)?;
    /// assert!(a.try_lock()?.is_some());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn try_lock(&self) -> LockResult<Option<ArrayGuard<'_, T>>> {
        self.lock_timeout(Duration::ZERO)
    }

    /// A guard if the lock can be had within `timeout`.
    ///
    /// ```
    /// use std::time::Duration;
    /// let a = mproc::Array::<u8>::new(1)?;
    /// assert!(a.lock_timeout(Duration::from_millis(5))?.is_some());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<Option<ArrayGuard<'_, T>>> {
        match self.inner.guard(Some(timeout)) {
            Ok(g) => Ok(g.map(|g| ArrayGuard::new(Some(g)))),
            Err(e) => Err(e.map_owner(|g| g.map(|g| ArrayGuard::new(Some(g))))),
        }
    }

    /// The lock that guards the array (Python's `get_lock()`).
    ///
    /// ```
    /// let a = mproc::Array::<u8>::new(1)?;
    /// assert!(!a.get_lock().is_locked());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn get_lock(&self) -> &L {
        self.inner.lock()
    }
}

impl<T: Plain + fmt::Debug, L: SharedLock> fmt::Debug for Array<T, L> {
    /// Shows the values if the lock is free now, `<locked>` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_tuple("Array");
        match self.try_lock() {
            Ok(Some(g)) => d.field(&&*g),
            _ => d.field(&format_args!("<locked>")),
        };
        d.finish()
    }
}

impl<T, L: Serialize> Serialize for Array<T, L> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.inner.serialize(s)
    }
}

impl<'de, T: Plain, L: SharedLock> Deserialize<'de> for Array<T, L> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(Array {
            inner: Locked::deserialize(d)?,
        })
    }
}

/// The values of an [`Array`] as `&mut [T]`, with its lock held until the
/// guard drops. Not `Send`.
///
/// ```
/// let a = mproc::Array::from_slice(&[1i32, 2, 3])?;
/// let mut g = a.lock()?;
/// g.reverse();
/// g[0] *= 10;
/// assert_eq!(&*g, &[30, 2, 1]);
/// # Ok::<(), mproc::Error>(())
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ArrayGuard<'a, T> {
    inner: SliceGuard<'a, T>,
}

impl<'a, T> ArrayGuard<'a, T> {
    fn new(g: Option<SliceGuard<'a, T>>) -> Self {
        ArrayGuard {
            inner: g.expect("a blocking acquire returns with the lock"),
        }
    }
}

impl<T> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.inner.slice()
    }
}

impl<T> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.inner.slice_mut()
    }
}

impl<T: fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ArrayGuard").field(&&**self).finish()
    }
}
