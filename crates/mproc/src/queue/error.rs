//! What a queue call returns when it cannot do its work: crossbeam's style,
//! with the value a `put` could not deliver handed back.

use std::fmt;

use super::core::Stop;
use crate::error::Error;

/// Why a `put` did not put: the value comes back in every case.
///
/// `?` turns it into [`Error`] (dropping the value).
///
/// # Examples
///
/// ```
/// use mproc::{PutError, Queue};
/// let q = Queue::<u32>::bounded(1)?;
/// q.put(1)?;
/// match q.try_put(2) {
///     Err(PutError::Full(v)) => assert_eq!(v, 2),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), mproc::Error>(())
/// ```
pub enum PutError<T> {
    /// The queue is full (`try_put`, or a large item that would not fit at
    /// once).
    Full(T),
    /// The queue stayed full until the timeout (`put_timeout`).
    Timeout(T),
    /// This handle was closed ([`Queue::close`](crate::Queue::close)).
    Closed(T),
    /// The queue was shut down.
    ShutDown(T),
    /// The value did not encode (the queue is unchanged), or an OS or
    /// protocol error.
    Failed(T, Error),
}

impl<T> PutError<T> {
    /// The value that was not put.
    pub fn into_inner(self) -> T {
        match self {
            PutError::Full(v)
            | PutError::Timeout(v)
            | PutError::Closed(v)
            | PutError::ShutDown(v)
            | PutError::Failed(v, _) => v,
        }
    }

    pub(super) fn from_stop(stop: Stop, v: T) -> Self {
        match stop {
            Stop::Busy => PutError::Full(v),
            Stop::Timeout => PutError::Timeout(v),
            Stop::ShutDown => PutError::ShutDown(v),
            Stop::Failed(e) => PutError::Failed(v, e),
        }
    }

    fn as_error_ref(&self) -> String {
        match self {
            PutError::Full(_) => Error::Full.to_string(),
            PutError::Timeout(_) => Error::Timeout.to_string(),
            PutError::Closed(_) => "the queue handle is closed".into(),
            PutError::ShutDown(_) => Error::ShutDown.to_string(),
            PutError::Failed(_, e) => e.to_string(),
        }
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            PutError::Full(_) => "Full",
            PutError::Timeout(_) => "Timeout",
            PutError::Closed(_) => "Closed",
            PutError::ShutDown(_) => "ShutDown",
            PutError::Failed(_, e) => return write!(f, "Failed(.., {e:?})"),
        };
        write!(f, "{name}(..)")
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_error_ref())
    }
}

impl<T> std::error::Error for PutError<T> {}

impl<T> From<PutError<T>> for Error {
    fn from(e: PutError<T>) -> Error {
        match e {
            PutError::Full(_) => Error::Full,
            PutError::Timeout(_) => Error::Timeout,
            PutError::Closed(_) => Error::InvalidState("the queue handle is closed"),
            PutError::ShutDown(_) => Error::ShutDown,
            PutError::Failed(_, e) => e,
        }
    }
}

/// Why a `get` returned no item.
///
/// `?` turns it into [`Error`].
///
/// # Examples
///
/// ```
/// use mproc::{GetError, Queue};
/// let q = Queue::<u32>::new()?;
/// assert!(matches!(q.try_get(), Err(GetError::Empty)));
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GetError {
    /// Nothing to get now (`try_get`), or another consumer held the
    /// queue's read lock (as CPython's `get(block=False)`).
    #[error("the queue is empty")]
    Empty,
    /// Nothing came before the timeout (`get_timeout`).
    #[error("timed out")]
    Timeout,
    /// This handle was closed ([`Queue::close`](crate::Queue::close)).
    #[error("the queue handle is closed")]
    Closed,
    /// The queue was shut down and is empty.
    #[error("the queue is shut down")]
    ShutDown,
    /// The item did not decode (it is consumed; the queue stays usable), or
    /// an OS or protocol error.
    #[error(transparent)]
    Failed(Error),
}

impl From<Stop> for GetError {
    fn from(stop: Stop) -> Self {
        match stop {
            Stop::Busy => GetError::Empty,
            Stop::Timeout => GetError::Timeout,
            Stop::ShutDown => GetError::ShutDown,
            Stop::Failed(e) => GetError::Failed(e),
        }
    }
}

impl From<GetError> for Error {
    fn from(e: GetError) -> Error {
        match e {
            GetError::Empty => Error::Empty,
            GetError::Timeout => Error::Timeout,
            GetError::Closed => Error::InvalidState("the queue handle is closed"),
            GetError::ShutDown => Error::ShutDown,
            GetError::Failed(e) => e,
        }
    }
}
