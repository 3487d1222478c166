//! `SimpleQueue<T>`: the minimal unbounded queue.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::{GetError, PutError};
use super::queue::Queue;
use crate::error::Result;

/// The minimal queue, as Python's `multiprocessing.SimpleQueue`: `put`,
/// `get`, `is_empty`, `close`. The same ring as [`Queue`]: a `put` waits
/// only past 1 GiB of queued bytes.
///
/// # Examples
///
/// ```
/// use mproc::{Process, SimpleQueue};
///
/// fn double((inq, outq): (SimpleQueue<u32>, SimpleQueue<u32>)) {
///     let n = inq.get().unwrap();
///     outq.put(n * 2).unwrap();
/// }
///
/// let (inq, outq) = (SimpleQueue::new()?, SimpleQueue::new()?);
/// let mut p = Process::new(double, (inq.clone(), outq.clone()));
/// p.start()?;
/// inq.put(21)?;
/// assert_eq!(outq.get()?, 42);
/// p.join()?;
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "", transparent)]
pub struct SimpleQueue<T> {
    queue: Queue<T>,
}

impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> std::fmt::Debug for SimpleQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimpleQueue")
            .field("empty", &self.is_empty())
            .finish()
    }
}

impl<T> SimpleQueue<T> {
    #[cfg(feature = "tokio")]
    pub(super) fn queue(&self) -> &Queue<T> {
        &self.queue
    }

    /// A new, empty queue.
    pub fn new() -> Result<Self> {
        Ok(SimpleQueue {
            queue: Queue::new()?,
        })
    }

    /// Whether the queue is empty (a snapshot). Python's `empty()`.
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Says that this handle will put and get no more.
    pub fn close(&self) {
        self.queue.close()
    }
}

impl<T: Serialize> SimpleQueue<T> {
    /// Puts `value`.
    pub fn put(&self, value: T) -> std::result::Result<(), PutError<T>> {
        self.queue.put(value)
    }
}

impl<T: DeserializeOwned> SimpleQueue<T> {
    /// Takes the oldest item, waiting while the queue is empty.
    pub fn get(&self) -> std::result::Result<T, GetError> {
        self.queue.get()
    }
}
