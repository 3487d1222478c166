//! Callbacks of `apply_async_with` and `map_async_with`: run in the parent
//! by one pool-owned thread, started at the first use.

use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::calls::Task;
use super::{AsyncResult, Pool};
use crate::error::{Error, Result};
use crate::util::job_thread::{Job, JobThread};

/// What to run when an [`AsyncResult`](crate::AsyncResult) is ready, as
/// CPython's `callback` and `error_callback` arguments: for
/// [`Pool::apply_async_with`](crate::Pool::apply_async_with) and
/// [`Pool::map_async_with`](crate::Pool::map_async_with).
///
/// Either runs once, in the parent, in a thread the pool owns, as soon as
/// the result is ready and before [`wait`](crate::AsyncResult::wait) or
/// [`get`](crate::AsyncResult::get) return: `callback` with the value,
/// `error_callback` with the first failure (in input order). Callbacks of
/// different results run one at a time, in the order the results became
/// ready: keep them short (a long callback delays the others, never the
/// workers). A callback that panics is caught (the panic hook reports it
/// as usual); the pool and the result are unharmed.
///
/// ```
/// use std::sync::mpsc::channel;
/// use mproc::Callbacks;
///
/// let pool = mproc::Pool::new(2)?;
/// let (tx, rx) = channel();
/// let r = pool.map_async_with(
///     |x: u32| x * x,
///     1..=3,
///     None,
///     Callbacks::new()
///         .callback(move |squares: &Vec<u32>| tx.send(squares.iter().sum::<u32>()).unwrap())
///         .error_callback(|e| eprintln!("failed: {e}")),
/// )?;
/// assert_eq!(rx.recv().unwrap(), 14);
/// assert_eq!(r.get()?, [1, 4, 9]);
/// # Ok::<(), mproc::Error>(())
/// ```
#[doc(alias = "callback")]
#[doc(alias = "error_callback")]
pub struct Callbacks<T> {
    on_ok: Option<OnOk<T>>,
    on_err: Option<OnErr>,
}

type OnOk<T> = Box<dyn FnOnce(&T) + Send>;
type OnErr = Box<dyn FnOnce(&Error) + Send>;

impl<T> Callbacks<T> {
    /// None yet.
    pub fn new() -> Self {
        Callbacks {
            on_ok: None,
            on_err: None,
        }
    }

    /// Runs `f` with the value when the result succeeds.
    pub fn callback(mut self, f: impl FnOnce(&T) + Send + 'static) -> Self {
        self.on_ok = Some(Box::new(f));
        self
    }

    /// Runs `f` with the error when the result fails.
    pub fn error_callback(mut self, f: impl FnOnce(&Error) + Send + 'static) -> Self {
        self.on_err = Some(Box::new(f));
        self
    }

    /// Runs the one that applies to `value`, catching a panic.
    pub(crate) fn run(self, value: &Result<T>) {
        let call = || match value {
            Ok(v) => {
                if let Some(f) = self.on_ok {
                    f(v)
                }
            }
            Err(e) => {
                if let Some(f) = self.on_err {
                    f(e)
                }
            }
        };
        let _ = panic::catch_unwind(AssertUnwindSafe(call));
    }
}

impl<T> Default for Callbacks<T> {
    fn default() -> Self {
        Callbacks::new()
    }
}

impl<T> std::fmt::Debug for Callbacks<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Callbacks")
            .field("callback", &self.on_ok.is_some())
            .field("error_callback", &self.on_err.is_some())
            .finish()
    }
}

/// The pool's callback thread, once started.
pub(crate) type Runner = JobThread;

/// The sender of `slot`'s callback thread, starting it if need be.
pub(crate) fn sender(slot: &Mutex<Option<Runner>>) -> Result<Sender<Job>> {
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(r) = &*slot {
        return Ok(r.sender());
    }
    // It ends when every sender is gone: the pool's and those of the
    // results still to come.
    let runner = JobThread::start("mproc-pool-callbacks")
        .map_err(Error::io("cannot start the pool's callback thread"))?;
    let tx = runner.sender();
    *slot = Some(runner);
    Ok(tx)
}

/// Lets `slot`'s thread end once the pending callbacks ran, and waits for
/// it (unless called from a callback, which cannot wait for itself).
pub(crate) fn finish(slot: &Mutex<Option<Runner>>) {
    let runner = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(runner) = runner {
        runner.finish();
    }
}

/// A result decoded by the callback thread, for the caller to take.
pub(crate) struct Called<T> {
    state: Mutex<CalledState<T>>,
    cv: Condvar,
}

struct CalledState<T> {
    done: bool,
    ok: bool,
    value: Option<Result<T>>,
    /// An awaiting caller's waker, woken with the condition variable.
    #[cfg(feature = "tokio")]
    waker: Option<std::task::Waker>,
}

impl<T> Called<T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Called {
            state: Mutex::new(CalledState {
                done: false,
                ok: false,
                value: None,
                #[cfg(feature = "tokio")]
                waker: None,
            }),
            cv: Condvar::new(),
        })
    }

    pub(crate) fn set(&self, value: Result<T>) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.ok = value.is_ok();
        st.value = Some(value);
        st.done = true;
        #[cfg(feature = "tokio")]
        let waker = st.waker.take();
        drop(st);
        self.cv.notify_all();
        #[cfg(feature = "tokio")]
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The value if set (`Some(None)`: already taken), else `waker` is
    /// kept to be woken when it is and `None`.
    #[cfg(feature = "tokio")]
    pub(crate) fn poll_take(&self, waker: &std::task::Waker) -> Option<Option<Result<T>>> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.done {
            return Some(st.value.take());
        }
        match &mut st.waker {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
        None
    }

    /// Drops the kept waker (a future dropped before it completed).
    #[cfg(feature = "tokio")]
    pub(crate) fn forget_waker(&self) {
        let waker = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .waker
            .take();
        drop(waker);
    }

    /// Whether it is set; `Some(ok)` if so.
    pub(crate) fn peek(&self) -> Option<bool> {
        let st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.done.then_some(st.ok)
    }

    /// Waits until set or `deadline`; whether set.
    pub(crate) fn wait(&self, deadline: Option<std::time::Instant>) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while !st.done {
            st = match deadline {
                None => self.cv.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return false;
                    }
                    self.cv
                        .wait_timeout(st, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
        true
    }

    pub(crate) fn take(&self) -> Option<Result<T>> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .value
            .take()
    }
}

impl Pool {
    /// [`apply_async`](Pool::apply_async) with CPython's `callback` and
    /// `error_callback`: see [`Callbacks`].
    ///
    /// ```
    /// use std::sync::mpsc::channel;
    /// use mproc::Callbacks;
    ///
    /// fn check(x: i32) -> i32 {
    ///     assert!(x >= 0, "negative");
    ///     x
    /// }
    /// let pool = mproc::Pool::new(1)?;
    /// let (tx, rx) = channel();
    /// let r = pool.apply_async_with(
    ///     check,
    ///     -1,
    ///     Callbacks::new().error_callback(move |e| tx.send(e.to_string()).unwrap()),
    /// )?;
    /// r.wait(); // the callback ran before `wait` returns
    /// assert!(rx.try_recv().unwrap().contains("negative"));
    /// assert!(!r.successful()?);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "apply_async")]
    #[doc(alias = "callback")]
    pub fn apply_async_with<A, R>(
        &self,
        f: fn(A) -> R,
        args: A,
        callbacks: Callbacks<R>,
    ) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let runner = sender(&self.shared.callbacks)?;
        let (inbox, sizes) = self.submit_all(Task::new(f), vec![args], Some(1))?;
        Ok(AsyncResult::with_callbacks(
            inbox,
            sizes,
            |mut items| items.pop().expect("one item"),
            callbacks,
            runner,
        ))
    }

    /// [`map_async`](Pool::map_async) with a chunksize (`None`: the
    /// default rule) and CPython's `callback` and `error_callback`: see
    /// [`Callbacks`].
    #[doc(alias = "map_async")]
    #[doc(alias = "callback")]
    pub fn map_async_with<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.task_async_with(
            Task::new(f),
            items.into_iter().collect(),
            chunksize,
            callbacks,
        )
    }

    /// `task` over `items` in chunks, as an [`AsyncResult`] running
    /// `callbacks` (the core of the `*_async_with` calls).
    pub(crate) fn task_async_with<A, R>(
        &self,
        task: Task,
        items: Vec<A>,
        chunksize: Option<usize>,
        callbacks: Callbacks<Vec<R>>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let runner = sender(&self.shared.callbacks)?;
        let (inbox, sizes) = self.submit_all(task, items, chunksize)?;
        Ok(AsyncResult::with_callbacks(
            inbox,
            sizes,
            |items| items.into_iter().collect(),
            callbacks,
            runner,
        ))
    }
}
