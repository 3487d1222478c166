//! `Queue<T>`: many producers, many consumers, any processes.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::core::{Core, Wait, MIN_CAP, RING_CAP};
use super::error::{GetError, PutError};
use super::header::record_len;
use crate::codec;
use crate::error::{Error, Result};

thread_local! {
    /// Where a `put` encodes its value before copying it into the ring.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Where a `get` copies an item out of the ring before decoding it.
    static INBOX: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The largest buffer kept between puts (or gets) by each thread.
const SCRATCH_KEEP: usize = 4 << 20;

/// A FIFO queue shared between processes, as Python's
/// `multiprocessing.Queue`.
///
/// Items are encoded (serde, mproc's binary format) and copied into a ring in shared
/// memory *by the caller*: there is no feeder thread, so an item that does
/// not encode is an error returned by `put` (the queue is unchanged), and a
/// `put` that returned is in the queue, even if its process exits at once.
///
/// # Examples
///
/// ```
/// use mproc::{Process, Queue};
///
/// fn produce(q: Queue<String>) {
///     q.put("hello".to_string()).unwrap();
/// }
///
/// let q = Queue::new()?;
/// let mut p = Process::new(produce, q.clone());
/// p.start()?;
/// assert_eq!(q.get()?, "hello");
/// p.join()?;
/// # Ok::<(), mproc::Error>(())
/// ```
///
/// # Caveats
///
/// - [`Queue::new`] has no limit on the number of items; its ring holds
///   1 GiB of queued bytes (each item: its encoding plus 8 to 15 bytes),
///   and only a `put` that finds it full waits for a consumer (CPython
///   buffers without limit in the producer). Memory (and address space)
///   is used only as far as the backlog reaches, and memory given back
///   once the queue has drained. Memory is reserved before it is written:
///   a `put` that finds none left fails with [`Error::NoSpace`] (in
///   [`PutError::Failed`]), the queue unchanged, instead of the process
///   being killed. Items
///   larger than a quarter of a MiB are streamed in chunks and may be any
///   size. [`Queue::with_byte_limit`] sets a smaller ring.
/// - A `put` of a small item while more than 64 KiB are queued, or that
///   finds the producer far into the ring, may spin for a few microseconds
///   (never sleeps) while its consumers make progress, so that they stay
///   close behind and read from the caches.
/// - Items may hold OS handles: another queue, a
///   [`Connection`](crate::Connection), a lock, shared memory... (Python
///   refuses a queue inside a queue). Such an item encodes to at most
///   256 KiB and holds at most 253 handles (else [`PutError::Failed`] with
///   [`Error::InvalidArgument`]), and about 270 of them can wait in one
///   queue (the kernel's socket buffer): a `put` of one more waits for a
///   consumer (`try_put`: `Full`), without holding up other puts' locks.
/// - A process killed inside `put` or `get` does not wedge the queue: the
///   item it was writing or reading may be lost with it, nothing else is.
///   A waiter that a killed process should have woken looks again within
///   50 ms (every sleep of a queue is cut in such naps).
/// - A consumer waiting on an empty queue whose producers all died waits
///   for ever: use [`get_timeout`](Queue::get_timeout).
/// - A `get` (even `try_get` or `get_timeout`) that has begun reading a
///   chunked item finishes it, or sees it voided by its producer (timed
///   out, shut down or dead): it does not leave half an item behind.
/// - A `try_*` call that finds another producer (consumer) inside the
///   queue's put (get) lock answers `Full` (`Empty`), as CPython's
///   `block=False` does.
/// - With the feature `tokio`, `get_async` and `put_async` (and
///   `JoinableQueue::join_async`) await on a tokio runtime instead of
///   blocking a thread; blocking and async users may share a queue across
///   processes. A queue then holds one more descriptor per process (an
///   eventfd that producers write only while an async waiter is
///   announced).
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct Queue<T> {
    core: Core,
    #[serde(skip)]
    closed: AtomicBool,
    #[serde(skip)]
    _type: PhantomData<fn(T) -> T>,
}

impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            core: self.core.clone(),
            closed: AtomicBool::new(self.closed.load(Relaxed)),
            _type: PhantomData,
        }
    }
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("len", &self.len())
            .field("maxsize", &self.maxsize())
            .finish()
    }
}

impl<T> Queue<T> {
    /// A queue with no limit on the number of items.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = mproc::Queue::<u8>::new()?;
    /// assert!(q.is_empty());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn new() -> Result<Self> {
        Self::bounded(0)
    }

    /// A queue of at most `maxsize` items; `0` means no limit, as in
    /// Python.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = mproc::Queue::<u8>::bounded(2)?;
    /// q.put(1)?;
    /// q.put(2)?;
    /// assert!(q.is_full());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn bounded(maxsize: usize) -> Result<Self> {
        Ok(Self::from_core(Core::new(
            check_maxsize(maxsize)?,
            RING_CAP,
        )?))
    }

    /// A queue of at most `maxsize` items (`0`: no limit) and at most
    /// `bytes` bytes of queued records: each item takes its encoded length
    /// plus 8 to 15 bytes; `bytes` is rounded up to a power of two from
    /// 4 KiB to 1 GiB (the ring of [`new`](Queue::new) and
    /// [`bounded`](Queue::bounded)). A `put` waits while its item does not
    /// fit; an item larger than a quarter of the ring is streamed in
    /// pieces, so it needs a consumer to get through.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = mproc::Queue::<Vec<u8>>::with_byte_limit(0, 4096)?;
    /// q.put(vec![0; 3000])?;
    /// assert!(q.try_put(vec![0; 3000]).is_err()); // no room for a second
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn with_byte_limit(maxsize: usize, bytes: usize) -> Result<Self> {
        let maxsize = check_maxsize(maxsize)?;
        let cap = bytes
            .clamp(MIN_CAP as usize, RING_CAP as usize)
            .next_power_of_two();
        Ok(Self::from_core(Core::new(maxsize, cap as u32)?))
    }

    pub(super) fn from_core(core: Core) -> Self {
        Queue {
            core,
            closed: AtomicBool::new(false),
            _type: PhantomData,
        }
    }

    pub(super) fn core(&self) -> &Core {
        &self.core
    }

    /// Items in the queue: a snapshot, stale as soon as it is read.
    /// Python's `qsize()`. A corrupted ring reads as 0 (the next `put` or
    /// `get` reports it).
    #[doc(alias = "qsize")]
    pub fn len(&self) -> usize {
        self.core.len().unwrap_or(0)
    }

    /// Whether the queue is empty (a snapshot).
    #[doc(alias = "empty")]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue holds `maxsize` items (a snapshot); never for an
    /// unbounded queue.
    pub fn is_full(&self) -> bool {
        self.maxsize().is_some_and(|m| self.len() >= m)
    }

    /// The limit given to [`bounded`](Queue::bounded), if any.
    pub fn maxsize(&self) -> Option<usize> {
        Some(self.core.maxsize() as usize).filter(|&m| m != 0)
    }

    /// Says that this handle will put and get no more: later calls on it
    /// fail with `Closed`. Other handles (clones, children's) go on.
    pub fn close(&self) {
        self.closed.store(true, Relaxed);
    }

    /// Whether [`close`](Queue::close) was called on this handle.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    /// Shuts the queue down for every handle in every process, as Python
    /// 3.13's `Queue.shutdown`: later puts fail with `ShutDown`, gets return
    /// what is left and then fail with `ShutDown`; blocked callers wake.
    /// With `immediate`, the items left are dropped (and, for a
    /// [`JoinableQueue`](crate::JoinableQueue), marked done).
    ///
    /// # Examples
    ///
    /// ```
    /// use mproc::{GetError, PutError, Queue};
    /// let q = Queue::new()?;
    /// q.put(1)?;
    /// q.shutdown(false)?;
    /// assert!(matches!(q.put(2), Err(PutError::ShutDown(2))));
    /// assert_eq!(q.get()?, 1);
    /// assert!(matches!(q.get(), Err(GetError::ShutDown)));
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn shutdown(&self, immediate: bool) -> Result<()> {
        self.core.shutdown(immediate).map(drop)
    }

    /// Whether the queue was shut down.
    pub fn is_shut_down(&self) -> bool {
        self.core.is_shut_down()
    }
}

impl<T: Serialize> Queue<T> {
    /// Puts `value`, waiting while the queue is full.
    pub fn put(&self, value: T) -> std::result::Result<(), PutError<T>> {
        self.put_within(value, Wait::Forever)
    }

    /// Puts `value` if there is room now. Python's `put(block=False)`.
    #[doc(alias = "put_nowait")]
    pub fn try_put(&self, value: T) -> std::result::Result<(), PutError<T>> {
        self.put_within(value, Wait::Try)
    }

    /// Puts `value`, waiting at most `timeout` for room.
    pub fn put_timeout(&self, value: T, timeout: Duration) -> std::result::Result<(), PutError<T>> {
        self.put_within(value, Wait::timeout(timeout))
    }

    fn put_within(&self, value: T, wait: Wait) -> std::result::Result<(), PutError<T>> {
        if self.is_closed() {
            return Err(PutError::Closed(value));
        }
        self.put_ref(&value, wait)
            .map_err(|stop| PutError::from_stop(stop, value))
    }

    /// Puts a copy of `value` (its encoding) within `wait`; the caller
    /// checked that the handle is open.
    #[inline]
    pub(super) fn put_ref(
        &self,
        value: &T,
        wait: Wait,
    ) -> std::result::Result<(), super::core::Stop> {
        // A size pass, then a small value is encoded straight into the
        // ring (one copy). Larger ones are encoded into this thread's
        // buffer and copied (streamed in chunks past a chunk): the codec's
        // encoder into a slice (`encode_exact`) makes a `memmove` call per
        // primitive, where the one into a `Vec` stores it inline, and in
        // place a 500-`u64` item took 2.1 µs a put and get instead of
        // 1.3 µs. `IN_PLACE` is the one bound to raise once it is as fast.
        match codec::encoded_len(value) {
            Ok(n) if n <= IN_PLACE && record_len(n) <= self.core.chunk() => {
                self.core
                    .put_encoded(n, wait, |dst| codec::encode_exact(value, dst))
            }
            Ok(_) => self.put_large(value, wait),
            Err(e) => Err(e.into()),
        }
    }

    fn put_large(&self, value: &T, wait: Wait) -> std::result::Result<(), super::core::Stop> {
        SCRATCH.with(|s| {
            let mut buf = s
                .try_borrow_mut()
                .map_or_else(|_| Vec::new(), |mut b| std::mem::take(&mut *b));
            buf.clear();
            let r = codec::encode_into(value, &mut buf)
                .map_err(super::core::Stop::from)
                .and_then(|fds| put_checked(&self.core, &buf, fds, wait));
            if buf.capacity() <= SCRATCH_KEEP {
                if let Ok(mut b) = s.try_borrow_mut() {
                    *b = buf;
                }
            }
            r
        })
    }
}

/// Items encoding to at most this many bytes are encoded in place, in the
/// ring (see `put_within`).
const IN_PLACE: usize = 128;

fn check_maxsize(maxsize: usize) -> Result<u32> {
    u32::try_from(maxsize)
        .ok()
        .filter(|&m| m <= 1 << 31)
        .ok_or_else(|| Error::InvalidArgument(format!("queue maxsize {maxsize} too large")))
}

fn put_checked(
    core: &Core,
    buf: &[u8],
    fds: Vec<std::os::fd::OwnedFd>,
    wait: Wait,
) -> std::result::Result<(), super::core::Stop> {
    core.put(buf, &fds, wait)
}

impl<T: DeserializeOwned> Queue<T> {
    /// Takes the oldest item, waiting while the queue is empty.
    pub fn get(&self) -> std::result::Result<T, GetError> {
        self.get_within(Wait::Forever)
    }

    /// Takes the oldest item if there is one now (`Empty` also when
    /// another consumer holds the read lock, as CPython's
    /// `get(block=False)`).
    #[doc(alias = "get_nowait")]
    pub fn try_get(&self) -> std::result::Result<T, GetError> {
        self.get_within(Wait::Try)
    }

    /// Takes the oldest item, waiting at most `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> std::result::Result<T, GetError> {
        self.get_within(Wait::timeout(timeout))
    }

    pub(super) fn get_within(&self, wait: Wait) -> std::result::Result<T, GetError> {
        if self.is_closed() {
            return Err(GetError::Closed);
        }
        INBOX.with(|s| {
            // This thread's buffer, or a new one if a decode on this thread
            // is getting from a queue (a value whose `Deserialize` does).
            let mut own = Vec::new();
            let mut held = s.try_borrow_mut();
            let buf = match &mut held {
                Ok(b) => &mut **b,
                Err(_) => &mut own,
            };
            let r = self
                .core
                .get(buf, wait)
                .map_err(GetError::from)
                .and_then(|fds| codec::decode(buf, fds).map_err(GetError::Failed));
            if buf.capacity() > SCRATCH_KEEP {
                *buf = Vec::new();
            }
            r
        })
    }
}
