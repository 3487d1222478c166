//! `Value`: one plain value in shared memory with the lock that guards it.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::lock_kind::SharedLock;
use super::locked::{Locked, SliceGuard};
use crate::error::Result;
use crate::shm::plain::Plain;
use crate::sync::{LockResult, RLock};

/// A plain value in shared memory with its own lock, as Python's
/// `multiprocessing.Value`.
///
/// Clones are handles to the same value; pass one to a child inside its
/// arguments. [`get`](Self::get) and [`set`](Self::set) each take the lock,
/// but separately, so `v.set(v.get()? - 1)?` is *not* atomic (as in
/// Python, another process can update the value between the two); a
/// read-modify-write holds a guard from [`lock`](Self::lock):
///
/// ```
/// use mproc::{Process, Value};
///
/// fn deposit(balance: Value<i32>) {
///     for _ in 0..1000 {
///         *balance.lock().unwrap() += 1; // one atomic read-modify-write
///     }
/// }
///
/// let balance = Value::new(100)?;
/// let mut p = Process::new(deposit, balance.clone());
/// p.start()?;
/// for _ in 0..1000 {
///     *balance.lock()? -= 1;
/// }
/// p.join()?;
/// assert_eq!(balance.get()?, 100);
/// # Ok::<(), mproc::Error>(())
/// ```
///
/// The lock is an [`RLock`] unless you choose one ([`with_lock`](Self::with_lock)),
/// and [`get_lock`](Self::get_lock) returns it (hold it to make several
/// calls one critical section). If a process dies holding it, the next
/// taker gets [`LockError::OwnerDied`](crate::LockError::OwnerDied) with
/// its result inside: the value may be half-updated (a `Pod` value is
/// still *a* value, just not necessarily the intended one).
///
/// # Re-entrance
///
/// While a thread holds a guard, its `get`, `set` and `lock` on the same
/// value fail with [`Error::InvalidState`](crate::Error::InvalidState)
/// (the guard's `&mut T` must not be aliased); use the guard instead. Do
/// not release the lock by hand ([`get_lock`](Self::get_lock)`.release()`)
/// while a guard of the value lives: the guard would outlive the exclusion
/// it stands for.
pub struct Value<T, L = RLock> {
    inner: Locked<T, L>,
}

impl<T, L: Clone> Clone for Value<T, L> {
    fn clone(&self) -> Self {
        Value {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Plain> Value<T> {
    /// A value in shared memory, initially `value`, with a new [`RLock`]
    /// (kept in the same block as the value).
    ///
    /// ```
    /// let v = mproc::Value::new(100i32)?;
    /// assert_eq!(v.get()?, 100);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn new(value: T) -> Result<Self> {
        Ok(Value {
            inner: Locked::from_slice(&[value])?,
        })
    }
}

impl<T: Plain, L: SharedLock> Value<T, L> {
    /// A value guarded by an existing lock (Python's `Value(..., lock=l)`):
    /// several values, or a value and other work, under one lock.
    ///
    /// ```
    /// use mproc::{RLock, Value};
    ///
    /// let lock = RLock::new()?;
    /// let a = Value::with_lock(1u8, lock.clone())?;
    /// let b = Value::with_lock(2u8, lock.clone())?;
    /// {
    ///     let _both = lock.lock()?; // a and b change together
    ///     a.set(a.get()? + 1)?;
    ///     b.set(b.get()? - 1)?;
    /// }
    /// assert_eq!((a.get()?, b.get()?), (2, 1));
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn with_lock(value: T, lock: L) -> Result<Self> {
        Ok(Value {
            inner: Locked::apart(1, Some(&[value]), lock)?,
        })
    }

    /// The value, read under the lock.
    ///
    /// ```
    /// let v = mproc::Value::new(2.5f64)?;
    /// assert_eq!(v.get()?, 2.5);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// If the bytes are not a valid `T` (see [`Plain`]); never for `Pod`
    /// types.
    pub fn get(&self) -> LockResult<T> {
        self.inner.with(|c| c.read(0))
    }

    /// Replaces the value, under the lock.
    ///
    /// ```
    /// let v = mproc::Value::new(false)?;
    /// v.set(true)?;
    /// assert!(v.get()?);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn set(&self, value: T) -> LockResult<()> {
        self.inner.with(|c| c.write(0, value))
    }

    /// Takes the lock and gives the value as `&mut T` until the guard
    /// drops: an atomic read-modify-write (Python's
    /// `with v.get_lock(): v.value += 1`).
    ///
    /// ```
    /// let v = mproc::Value::new(41u64)?;
    /// *v.lock()? += 1;
    /// assert_eq!(v.get()?, 42);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// As [`get`](Self::get).
    pub fn lock(&self) -> LockResult<ValueGuard<'_, T>> {
        match self.inner.guard(None) {
            Ok(g) => Ok(ValueGuard::new(g)),
            Err(e) => Err(e.map_owner(ValueGuard::new)),
        }
    }

    /// A guard if the lock is free now.
    ///
    /// ```
    /// let v = mproc::Value::new(0i32)?;
    /// let g = v.try_lock()?.expect("free");
    /// assert_eq!(*g, 0);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn try_lock(&self) -> LockResult<Option<ValueGuard<'_, T>>> {
        self.lock_timeout(Duration::ZERO)
    }

    /// A guard if the lock can be had within `timeout` (`None` if not).
    ///
    /// ```
    /// use std::time::Duration;
    /// let v = mproc::Value::new(0i32)?;
    /// assert!(v.lock_timeout(Duration::from_millis(10))?.is_some());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<Option<ValueGuard<'_, T>>> {
        match self.inner.guard(Some(timeout)) {
            Ok(g) => Ok(g.map(|g| ValueGuard::new(Some(g)))),
            Err(e) => Err(e.map_owner(|g| g.map(|g| ValueGuard::new(Some(g))))),
        }
    }

    /// The lock that guards the value (Python's `get_lock()`).
    ///
    /// ```
    /// let v = mproc::Value::new(0i32)?;
    /// let lock = v.get_lock();
    /// let _held = lock.lock()?;
    /// v.set(1)?; // the default RLock lets the holder in again
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn get_lock(&self) -> &L {
        self.inner.lock()
    }
}

impl<T: Plain + fmt::Debug, L: SharedLock> fmt::Debug for Value<T, L> {
    /// Shows the value if its lock is free now, `<locked>` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_tuple("Value");
        match self.try_lock() {
            Ok(Some(g)) => d.field(&*g),
            _ => d.field(&format_args!("<locked>")),
        };
        d.finish()
    }
}

impl<T, L: Serialize> Serialize for Value<T, L> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.inner.serialize(s)
    }
}

impl<'de, T: Plain, L: SharedLock> Deserialize<'de> for Value<T, L> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let inner = Locked::<T, L>::deserialize(d)?;
        if inner.len() != 1 {
            return Err(serde::de::Error::custom("a Value's block holds one value"));
        }
        Ok(Value { inner })
    }
}

/// The value of a [`Value`] as `&mut T`, with its lock held until the
/// guard drops. Not `Send`: the lock is released by the thread that took
/// it.
///
/// ```
/// let v = mproc::Value::new(1u32)?;
/// let mut g = v.lock()?;
/// *g = g.pow(2) + 1;
/// assert_eq!(*g, 2);
/// # Ok::<(), mproc::Error>(())
/// ```
///
/// ```compile_fail
/// fn assert_send<T: Send>() {}
/// assert_send::<mproc::ValueGuard<'static, i32>>();
/// ```
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct ValueGuard<'a, T> {
    inner: SliceGuard<'a, T>,
}

impl<'a, T> ValueGuard<'a, T> {
    fn new(g: Option<SliceGuard<'a, T>>) -> Self {
        ValueGuard {
            inner: g.expect("a blocking acquire returns with the lock"),
        }
    }
}

impl<T> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner.slice()[0]
    }
}

impl<T> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner.slice_mut()[0]
    }
}

impl<T: fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ValueGuard").field(&**self).finish()
    }
}
