//! `JoinableQueue<T>`: a `Queue` whose consumers mark items done.

use std::ops::Deref;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::queue::Queue;
use crate::error::{Error, Result};

/// A [`Queue`] that counts unfinished items, as Python's
/// `multiprocessing.JoinableQueue`: every `put` adds one, every
/// [`task_done`](JoinableQueue::task_done) removes one, and
/// [`join`](JoinableQueue::join) waits until none is left. Every method of
/// [`Queue`] is available through `Deref`.
///
/// The count lives in the queue's shared memory, derived from the number of
/// items committed to the ring, so a producer killed inside `put` cannot
/// leave it wrong. An item lost with a consumer killed inside `get` is never
/// marked done: use [`join_timeout`](JoinableQueue::join_timeout) where that
/// can happen.
///
/// # Examples
///
/// ```
/// use mproc::{JoinableQueue, Process};
///
/// fn worker(q: JoinableQueue<u32>) {
///     while let Ok(n) = q.get() {
///         let _ = n * 2; // the work
///         q.task_done().unwrap();
///     }
/// }
///
/// let q = JoinableQueue::new()?;
/// let mut p = Process::new(worker, q.clone()).daemon(true);
/// p.start()?;
/// for n in 0..10 {
///     q.put(n)?;
/// }
/// q.join()?; // every item was processed
/// p.terminate()?;
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Serialize, Deserialize)]
#[serde(bound = "", transparent)]
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> std::fmt::Debug for JoinableQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinableQueue")
            .field("len", &self.len())
            .field("unfinished", &self.unfinished())
            .finish()
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.queue
    }
}

impl<T> JoinableQueue<T> {
    /// A joinable queue with no limit on the number of items.
    pub fn new() -> Result<Self> {
        Self::bounded(0)
    }

    /// A joinable queue of at most `maxsize` items (`0`: no limit).
    pub fn bounded(maxsize: usize) -> Result<Self> {
        Ok(JoinableQueue {
            queue: Queue::bounded(maxsize)?,
        })
    }

    /// Marks one item taken by `get` as done. Calling it more times than
    /// items were put is an error (Python's `ValueError`).
    ///
    /// # Examples
    ///
    /// ```
    /// let q = mproc::JoinableQueue::new()?;
    /// q.put(1)?;
    /// q.get()?;
    /// q.task_done()?;
    /// assert!(q.task_done().is_err()); // one too many
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn task_done(&self) -> Result<()> {
        self.queue.core().task_done()
    }

    /// Items put and not yet marked done (a snapshot).
    pub fn unfinished(&self) -> usize {
        self.queue.core().unfinished().unwrap_or(0) as usize
    }

    /// Waits until every item put has been marked done.
    pub fn join(&self) -> Result<()> {
        self.queue.core().join(None).map(drop)
    }

    /// As [`join`](JoinableQueue::join), at most `timeout`:
    /// [`Error::Timeout`] if items are still unfinished then.
    pub fn join_timeout(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now().checked_add(timeout);
        match self.queue.core().join(deadline)? {
            true => Ok(()),
            false => Err(Error::Timeout),
        }
    }
}
