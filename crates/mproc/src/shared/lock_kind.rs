//! The locks a [`Value`](crate::Value) or [`Array`](crate::Array) can be
//! guarded by.

use std::fmt::Debug;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::sync::{Lock, LockGuard, LockResult, RLock, SharedMutex};

/// A [`Lock`] or an [`RLock`]: what guards a [`Value`](crate::Value) or an
/// [`Array`](crate::Array) (Python's `lock=` argument).
///
/// Sealed: implemented for these two only.
///
/// ```
/// use mproc::{Lock, Value};
///
/// let v: Value<i32> = Value::new(1)?; // RLock, as in Python
/// let w: Value<i32, Lock> = Value::with_lock(1, Lock::new()?)?;
/// # let _ = (v, w);
/// # Ok::<(), mproc::Error>(())
/// ```
pub trait SharedLock:
    sealed::Sealed + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
}

pub(crate) mod sealed {
    use super::*;

    /// What the shared objects need from their lock. Its methods name
    /// crate-private types, which is the point: no other crate can call or
    /// implement them.
    #[allow(private_interfaces)]
    pub trait Sealed: Sized {
        /// A new lock whose block has `data_len` bytes after the mutex.
        fn with_data(data_len: usize) -> crate::Result<Self>;
        /// The mutex (its block holds the data of a `Value::new`).
        fn shared_mutex(&self) -> &SharedMutex;
        /// A guard, waiting `timeout` (`None`: forever; zero: only trying).
        fn guard(&self, timeout: Option<Duration>) -> LockResult<Option<LockGuard<'_>>>;
    }
}

macro_rules! shared_lock {
    ($name:ident, $recursive:expr) => {
        impl SharedLock for $name {}

        #[allow(private_interfaces)]
        impl sealed::Sealed for $name {
            fn with_data(data_len: usize) -> crate::Result<Self> {
                Ok($name::from_mutex(SharedMutex::with_data(
                    $recursive, data_len,
                )?))
            }

            fn shared_mutex(&self) -> &SharedMutex {
                self.mutex()
            }

            #[inline]
            fn guard(&self, timeout: Option<Duration>) -> LockResult<Option<LockGuard<'_>>> {
                match timeout {
                    None => self.lock().map(Some).map_err(|e| e.map_owner(Some)),
                    Some(t) => self.lock_timeout(t),
                }
            }
        }
    };
}

shared_lock!(Lock, false);
shared_lock!(RLock, true);
