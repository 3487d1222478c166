//! `QueueProxy<T>`: a queue held by the server (`manager.Queue()`,
//! `manager.JoinableQueue()`).

use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::protocol::{Bytes, Op, QueueOp};
use super::proxy::Handle;
use crate::connection::decode_plain as dec;
use crate::error::{Error, Result};

fn micros(d: Duration) -> Option<u64> {
    Some(d.as_micros().min(u64::MAX as u128) as u64)
}

/// A proxy to a FIFO queue in a [`Manager`](crate::Manager)'s server, as
/// Python's `manager.Queue(maxsize)` and `manager.JoinableQueue()`: every
/// queue counts unfinished items, so [`task_done`](QueueProxy::task_done)
/// and [`join`](QueueProxy::join) work on any of them.
///
/// A proxy waiting in `get` or `put` holds its own connection: give each
/// thread its own clone.
///
/// ```
/// use std::time::Duration;
/// use mproc::Error;
///
/// let m = mproc::Manager::start()?;
/// let q = m.queue::<String>(2)?;
/// q.put(&"a".into())?;
/// q.put(&"b".into())?;
/// assert!(matches!(q.put_timeout(&"c".into(), Duration::from_millis(5)), Err(Error::Timeout)));
/// assert_eq!(q.get()?, "a");
/// assert_eq!(q.qsize()?, 1);
/// q.get()?;
/// assert!(matches!(q.try_get(), Err(Error::Empty)));
/// q.task_done()?;
/// q.task_done()?;
/// assert!(q.join_timeout(Duration::ZERO)?);
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct QueueProxy<T> {
    pub(crate) handle: Handle,
    #[serde(skip)]
    _t: PhantomData<fn(T) -> T>,
}

impl<T> Clone for QueueProxy<T> {
    fn clone(&self) -> Self {
        QueueProxy {
            handle: self.handle.clone(),
            _t: PhantomData,
        }
    }
}

impl<T: Serialize + DeserializeOwned> QueueProxy<T> {
    pub(crate) fn new(handle: Handle) -> Self {
        QueueProxy {
            handle,
            _t: PhantomData,
        }
    }

    fn call<R: DeserializeOwned>(&self, op: QueueOp) -> Result<R> {
        self.handle.call(Op::Queue(op))
    }

    fn put_within(&self, item: &T, us: Option<u64>) -> Result<()> {
        // Not collected: a proxy in the item keeps its transit reference
        // for the getter to adopt.
        let item = Bytes(crate::connection::encode_plain(item)?);
        match self.call(QueueOp::Put(item, us))? {
            true => Ok(()),
            false => Err(Error::Timeout),
        }
    }

    fn get_within(&self, us: Option<u64>, none: Error) -> Result<T> {
        match self.call::<Option<Bytes>>(QueueOp::Get(us))? {
            Some(b) => dec(&b),
            None => Err(none),
        }
    }

    /// Puts `item`, waiting for room in a bounded queue.
    pub fn put(&self, item: &T) -> Result<()> {
        self.put_within(item, None)
    }

    /// Puts `item`, or [`Error::Timeout`] if no room comes within `timeout`.
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<()> {
        self.put_within(item, micros(timeout))
    }

    /// Takes the oldest item, waiting for one.
    pub fn get(&self) -> Result<T> {
        self.get_within(None, Error::Timeout)
    }

    /// Takes the oldest item, or [`Error::Timeout`] after `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T> {
        self.get_within(micros(timeout), Error::Timeout)
    }

    /// Takes the oldest item if there is one now, else [`Error::Empty`]
    /// (`get(block=False)`).
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> Result<T> {
        self.get_within(Some(0), Error::Empty)
    }

    /// The number of items queued.
    pub fn qsize(&self) -> Result<usize> {
        Ok(self.call::<u64>(QueueOp::Len)? as usize)
    }

    /// Whether the queue is empty now.
    pub fn empty(&self) -> Result<bool> {
        Ok(self.qsize()? == 0)
    }

    /// Whether the queue is full now: a bounded queue holding `maxsize`
    /// items (`q.full()`); an unbounded one never is.
    ///
    /// ```
    /// let m = mproc::Manager::start()?;
    /// let q = m.queue::<u8>(1)?;
    /// assert!(!q.full()?);
    /// q.put(&1)?;
    /// assert!(q.full()?);
    /// assert!(!m.queue::<u8>(0)?.full()?); // 0: no bound
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn full(&self) -> Result<bool> {
        self.call(QueueOp::Full)
    }

    /// Marks one item taken earlier as processed.
    pub fn task_done(&self) -> Result<()> {
        self.call(QueueOp::TaskDone)
    }

    /// Waits until every item put has been marked done.
    pub fn join(&self) -> Result<()> {
        self.call::<bool>(QueueOp::Join(None)).map(drop)
    }

    /// As [`join`](QueueProxy::join), for at most `timeout`; returns
    /// whether every item is done.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool> {
        self.call(QueueOp::Join(micros(timeout)))
    }
}
