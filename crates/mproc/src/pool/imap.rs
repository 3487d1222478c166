//! `imap` and `imap_unordered`: lazy iterators with a bounded window.

use std::any::Any;
use std::collections::{HashMap, VecDeque};
use std::iter::Fuse;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::calls::Task;
use super::inbox::{Done, Inbox, State, Want};
use super::Pool;
use crate::error::{Error, Result};

/// Chunks in flight per worker at most, for an `imap`: its input is read
/// this far ahead of its output, no further.
const AHEAD_PER_WORKER: usize = 1024;

/// The iterator of [`Pool::imap`] and [`Pool::imap_unordered`].
///
/// It reads its input lazily: at most a bounded number of chunks
/// (1024 per worker) are submitted and not yet consumed, so mapping over an
/// endless iterator runs in constant memory. Each item is a value or why
/// there is none (the same errors as [`Pool::map_results`]).
///
/// If the input iterator panics, the results of the chunks read before
/// it are yielded first, then the panic resumes in the caller's `next`
/// (the items read of the chunk in which it panicked are dropped, as
/// CPython's `imap` does); the iterator ends there and the pool is
/// unharmed: nothing of this `imap` is left in flight.
///
/// ```
/// let pool = mproc::Pool::new(2)?;
/// let firsts: Vec<u64> = pool
///     .imap(|x: u64| x * x, 0..) // endless
///     .take(5)
///     .collect::<Result<_, _>>()?;
/// assert_eq!(firsts, [0, 1, 4, 9, 16]);
/// # Ok::<(), mproc::Error>(())
/// ```
pub struct IMap<'p, I: Iterator, R> {
    pool: &'p Pool,
    task: Task,
    input: Fuse<I>,
    chunksize: usize,
    ordered: bool,
    inbox: Arc<Inbox>,
    /// Submitted chunks not yet consumed, by tag: their sizes.
    sizes: HashMap<usize, usize>,
    next_tag: usize,
    /// Ordered: the next tag to yield.
    next_out: usize,
    ready: VecDeque<Result<R>>,
    /// Failures of input that could not be submitted, yielded last.
    tail: VecDeque<Result<R>>,
    stopped: bool,
    /// The input iterator's panic, re-raised after the results before it.
    input_panic: Option<Box<dyn Any + Send>>,
    window: usize,
    /// Withdraws the waker a poll left in the inbox if the stream is
    /// dropped first (a field, not a `Drop` of `IMap`: the borrow of the
    /// pool ends where it would without the feature).
    #[cfg(feature = "tokio")]
    withdraw: Withdraw,
    _r: PhantomData<fn() -> R>,
}

impl<'p, I, A, R> IMap<'p, I, R>
where
    I: Iterator<Item = A>,
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned + 'static,
{
    pub(crate) fn new(
        pool: &'p Pool,
        f: fn(A) -> R,
        input: I,
        chunksize: usize,
        ordered: bool,
    ) -> Self {
        let inbox = Arc::new(Inbox::new());
        IMap {
            pool,
            task: Task::new(f),
            input: input.fuse(),
            chunksize: chunksize.max(1),
            ordered,
            inbox: inbox.clone(),
            sizes: HashMap::new(),
            next_tag: 0,
            next_out: 0,
            ready: VecDeque::new(),
            tail: VecDeque::new(),
            stopped: false,
            input_panic: None,
            window: AHEAD_PER_WORKER * pool.processes(),
            #[cfg(feature = "tokio")]
            withdraw: Withdraw::new(&inbox),
            _r: PhantomData,
        }
    }

    /// The next item, waiting at most `timeout` ([`Error::Timeout`], the
    /// iterator stays usable); `None` at the end.
    #[doc(alias = "next")]
    pub fn next_timeout(&mut self, timeout: Duration) -> Option<Result<R>> {
        self.next_until(Some(Instant::now() + timeout))
    }

    fn next_until(&mut self, deadline: Option<Instant>) -> Option<Result<R>> {
        loop {
            let want = match self.step() {
                Step::Item(item) => return item,
                Step::Wait(want) => want,
            };
            let Some(mut st) = self.inbox.wait(want, deadline) else {
                return Some(Err(Error::Timeout));
            };
            let (tag, done) = pick(&mut st, self.ordered, &mut self.next_out);
            drop(st);
            self.absorb(tag, done);
        }
    }

    /// What to yield next without waiting, or what to wait for.
    fn step(&mut self) -> Step<R> {
        if let Some(r) = self.ready.pop_front() {
            return Step::Item(Some(r));
        }
        self.fill();
        if let Some(r) = self.ready.pop_front() {
            return Step::Item(Some(r));
        }
        if self.sizes.is_empty() {
            if let Some(payload) = self.input_panic.take() {
                panic::resume_unwind(payload);
            }
            return Step::Item(self.tail.pop_front());
        }
        Step::Wait(if self.ordered {
            Want::Tag(self.next_out)
        } else {
            Want::Any
        })
    }

    /// A chunk waited for, taken from the inbox: its items, ready.
    fn absorb(&mut self, tag: usize, done: Done) {
        let n = self.sizes.remove(&tag).expect("a submitted chunk");
        done.items::<R>(n, &mut self.ready);
    }

    /// Submits chunks until the window is full or the input ends.
    fn fill(&mut self) {
        while !self.stopped && self.sizes.len() < self.window {
            let input = &mut self.input;
            let size = self.chunksize;
            let read = panic::catch_unwind(AssertUnwindSafe(|| {
                input.by_ref().take(size).collect::<Vec<A>>()
            }));
            let chunk = match read {
                Ok(chunk) => chunk,
                Err(payload) => {
                    // The input is not touched again; the items read of
                    // this chunk are dropped (as CPython does); the panic
                    // goes on once the chunks before it are consumed.
                    self.input_panic = Some(payload);
                    self.stopped = true;
                    return;
                }
            };
            if chunk.is_empty() {
                return;
            }
            let tag = self.next_tag;
            let submitted = self
                .pool
                .job(self.task, &chunk, &self.inbox, tag)
                .and_then(|job| self.pool.shared.submit([job]));
            if let Err(e) = submitted {
                // These items fail after those already submitted; no more
                // input is read.
                self.tail
                    .extend(chunk.iter().skip(1).map(|_| Err(copy(&e))));
                self.tail.push_front(Err(e));
                self.stopped = true;
                return;
            }
            self.sizes.insert(tag, chunk.len());
            self.next_tag += 1;
        }
    }
}

/// Where [`IMap::step`] leaves the caller.
enum Step<R> {
    /// Yield this (`None`: the end).
    Item(Option<Result<R>>),
    /// Wait for this, then [`pick`] and [`IMap::absorb`].
    Wait(Want),
}

/// Takes the chunk waited for (`Want::Tag(next_out)` if `ordered`, else
/// any): its tag and how it ended.
fn pick(st: &mut State, ordered: bool, next_out: &mut usize) -> (usize, Done) {
    if ordered {
        let done = st.arrived.remove(next_out).expect("waited for it");
        *next_out += 1;
        (*next_out - 1, done)
    } else {
        st.arrived.pop_first().expect("waited for one")
    }
}

/// An error for each item of a chunk that could not be submitted.
fn copy(e: &Error) -> Error {
    match e {
        Error::PoolTerminated => Error::PoolTerminated,
        Error::PoolBroken { reason } => Error::PoolBroken {
            reason: reason.clone(),
        },
        Error::InvalidState(s) => Error::InvalidState(s),
        other => Error::InvalidArgument(other.to_string()),
    }
}

impl<I, A, R> Iterator for IMap<'_, I, R>
where
    I: Iterator<Item = A>,
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned + 'static,
{
    type Item = Result<R>;

    fn next(&mut self) -> Option<Result<R>> {
        self.next_until(None)
    }
}

/// With the feature `tokio`, an `IMap` is also a
/// [`Stream`](futures_core::Stream) of the same items, in the same order
/// (input order for `imap`, completion order for `imap_unordered`), with
/// the same bounded window: a chunk is read from the input and submitted
/// only as results are consumed. Polling never blocks a thread: the
/// supervisor that delivers the chunk waited for wakes the task. The input
/// iterator is still read in `poll_next` (keep it cheap: a blocking input
/// blocks the runtime's thread).
///
/// **Cancel-safe.** Dropping a `next()` future loses no item: items are
/// taken from the inbox only by the poll that yields them (a chunk of
/// several items is kept in the stream, yielded one by one). Dropping the
/// stream is dropping the iterator: the chunks in flight run on, their
/// results are discarded, and its waker is withdrawn.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> mproc::Result<()> {
/// use std::future::poll_fn;
/// use std::pin::Pin;
/// use futures_core::Stream;
///
/// let pool = mproc::Pool::new(2)?;
/// let mut squares = pool.imap(|x: u64| x * x, 0..);  // endless input
/// let mut firsts = Vec::new();
/// // `futures::StreamExt::next` does the same.
/// while let Some(r) = poll_fn(|cx| Pin::new(&mut squares).poll_next(cx)).await {
///     firsts.push(r?);
///     if firsts.len() == 5 {
///         break;
///     }
/// }
/// assert_eq!(firsts, [0, 1, 4, 9, 16]);
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
impl<I, A, R> futures_core::Stream for IMap<'_, I, R>
where
    I: Iterator<Item = A>,
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned + 'static,
{
    type Item = Result<R>;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<R>>> {
        use std::task::Poll;
        let this = self.get_mut();
        loop {
            let want = match this.step() {
                Step::Item(item) => return Poll::Ready(item),
                Step::Wait(want) => want,
            };
            let Some(mut st) = this.inbox.poll(want, cx.waker()) else {
                this.withdraw.armed = true;
                return Poll::Pending;
            };
            let (tag, done) = pick(&mut st, this.ordered, &mut this.next_out);
            drop(st);
            this.withdraw.armed = false;
            this.absorb(tag, done);
        }
    }
}

/// Nothing in an `IMap` is pinned: its stream moves freely.
#[cfg(feature = "tokio")]
impl<I: Iterator, R> Unpin for IMap<'_, I, R> {}

/// Withdraws the waker an `IMap`'s poll left in its inbox, when dropped
/// while `armed`.
#[cfg(feature = "tokio")]
struct Withdraw {
    inbox: Arc<Inbox>,
    armed: bool,
}

#[cfg(feature = "tokio")]
impl Withdraw {
    fn new(inbox: &Arc<Inbox>) -> Self {
        Withdraw {
            inbox: inbox.clone(),
            armed: false,
        }
    }
}

#[cfg(feature = "tokio")]
impl Drop for Withdraw {
    fn drop(&mut self) {
        if self.armed {
            self.inbox.forget_waker();
        }
    }
}

impl Pool {
    /// Applies `f` to each item lazily, yielding in input order (chunks of
    /// one item, as Python's default).
    pub fn imap<I, A, R>(&self, f: fn(A) -> R, items: I) -> IMap<'_, I::IntoIter, R>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        IMap::new(self, f, items.into_iter(), 1, true)
    }

    /// [`imap`](Pool::imap) with chunks of `chunksize` items.
    pub fn imap_chunked<I, A, R>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> IMap<'_, I::IntoIter, R>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        IMap::new(self, f, items.into_iter(), chunksize, true)
    }

    /// As [`imap`](Pool::imap), yielding in completion order.
    ///
    /// ```
    /// let pool = mproc::Pool::new(2)?;
    /// let mut got: Vec<u32> = pool
    ///     .imap_unordered(|x: u32| x + 1, 0..100)
    ///     .collect::<Result<_, _>>()?;
    /// got.sort();
    /// assert_eq!(got, (1..=100).collect::<Vec<_>>());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn imap_unordered<I, A, R>(&self, f: fn(A) -> R, items: I) -> IMap<'_, I::IntoIter, R>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        IMap::new(self, f, items.into_iter(), 1, false)
    }

    /// [`imap_unordered`](Pool::imap_unordered) with chunks of `chunksize`
    /// items.
    pub fn imap_unordered_chunked<I, A, R>(
        &self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> IMap<'_, I::IntoIter, R>
    where
        I: IntoIterator<Item = A>,
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        IMap::new(self, f, items.into_iter(), chunksize, false)
    }
}

/// The input of a [`TryIMap`]: the `Ok` items, up to the first `Err`,
/// which it keeps.
struct UntilErr<I, E> {
    input: I,
    err: Arc<Mutex<Option<E>>>,
}

impl<I, A, E> Iterator for UntilErr<I, E>
where
    I: Iterator<Item = std::result::Result<A, E>>,
{
    type Item = A;

    fn next(&mut self) -> Option<A> {
        match self.input.next()? {
            Ok(a) => Some(a),
            Err(e) => {
                *self.err.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                None
            }
        }
    }
}

/// The iterator of [`Pool::try_imap`]: an `imap` over an input of
/// `Result`s that stops at the first `Err`.
///
/// It yields `Ok(outcome)` for each item before the input's first error
/// (each outcome a value or why there is none, as [`IMap`]'s), then that
/// error as `Err(e)`, then ends. No input is read past the error.
pub struct TryIMap<'p, E, R> {
    inner: Box<dyn Iterator<Item = Result<R>> + 'p>,
    err: Arc<Mutex<Option<E>>>,
}

impl<E, R> Iterator for TryIMap<'_, E, R> {
    type Item = std::result::Result<Result<R>, E>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.inner.next() {
            Some(r) => Some(Ok(r)),
            None => self
                .err
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take()
                .map(Err),
        }
    }
}

impl Pool {
    /// [`imap_chunked`](Pool::imap_chunked) over an input of `Result`s,
    /// for inputs that can fail (lines of a file, records of a parser):
    /// the items before the first `Err` are mapped and yielded in order
    /// as `Ok(outcome)`, then the input's error as `Err(e)`, and the
    /// iterator ends, with nothing left in flight.
    ///
    /// ```
    /// let pool = mproc::Pool::new(2)?;
    /// let input = ["1", "2", "x", "4"].into_iter().map(|s| s.parse::<u32>());
    /// let mut it = pool.try_imap(|x: u32| x * 10, input, 2);
    /// assert_eq!(it.next().unwrap().unwrap()?, 10);
    /// assert_eq!(it.next().unwrap().unwrap()?, 20);
    /// assert!(it.next().unwrap().is_err()); // "x" did not parse
    /// assert!(it.next().is_none());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn try_imap<'p, I, A, E, R>(
        &'p self,
        f: fn(A) -> R,
        items: I,
        chunksize: usize,
    ) -> TryIMap<'p, E, R>
    where
        I: IntoIterator<Item = std::result::Result<A, E>>,
        I::IntoIter: 'p,
        A: Serialize + DeserializeOwned,
        E: 'p,
        R: Serialize + DeserializeOwned + 'static,
    {
        let err = Arc::new(Mutex::new(None));
        let input = UntilErr {
            input: items.into_iter(),
            err: err.clone(),
        };
        TryIMap {
            inner: Box::new(IMap::new(self, f, input, chunksize, true)),
            err,
        }
    }
}
