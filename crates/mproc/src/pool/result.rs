//! `AsyncResult`: the value of an `apply_async` or `map_async`, later.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::callback::{Callbacks, Called};
use super::calls::{Gather, Values};
use super::inbox::{Inbox, Want};
use crate::error::{Error, Result};
use crate::util::job_thread::Job;

type Finish<T> = Box<dyn FnOnce(&Inbox, &[usize]) -> Result<T> + Send>;

/// A result to come, as Python's `AsyncResult`, from
/// [`Pool::apply_async`](crate::Pool::apply_async) and
/// [`Pool::map_async`](crate::Pool::map_async).
///
/// With [`Callbacks`](crate::Callbacks), `ready`, `wait` and `get` see
/// the result once its callback has run.
///
/// It always completes: with the value, with the task's error, with the
/// worker's death, or with [`Error::PoolTerminated`] when the pool is
/// terminated or dropped first.
///
/// ```
/// use std::time::Duration;
///
/// let pool = mproc::Pool::new(2)?;
/// let mut r = pool.map_async(|x: u32| x * 10, [1, 2])?;
/// assert!(r.wait_timeout(Duration::from_secs(20)));
/// assert_eq!(r.get_timeout(Duration::ZERO)?, [10, 20]);
/// # Ok::<(), mproc::Error>(())
/// ```
///
/// With the feature `tokio`, it is also a [`Future`](std::future::Future)
/// whose output is what [`get`](Self::get) returns: see
/// [its `Future` impl](#impl-Future-for-AsyncResult%3CT%3E).
pub struct AsyncResult<T> {
    inbox: Arc<Inbox>,
    sizes: Vec<usize>,
    finish: Option<Finish<T>>,
    /// With callbacks: the value, decoded by the callback thread.
    called: Option<Arc<Called<T>>>,
    /// Whether a poll left a waker in the inbox (or in `called`), to be
    /// withdrawn if it is dropped first.
    #[cfg(feature = "tokio")]
    polled: bool,
}

impl<R: DeserializeOwned + 'static> AsyncResult<Vec<R>> {
    /// As `new`, for the values of a map (the first failure in input
    /// order otherwise): a chunk whose items all returned is decoded
    /// straight into the result, as a waiting `map` does, with no outcome
    /// per item in between.
    pub(crate) fn values(inbox: Arc<Inbox>, sizes: Vec<usize>) -> Self {
        let decode = |inbox: &Inbox, sizes: &[usize]| {
            let mut arrived = std::mem::take(&mut inbox.lock().arrived);
            let mut out = Values::default();
            out.reserve(sizes.iter().sum());
            for (tag, &n) in sizes.iter().enumerate() {
                let done = arrived.remove(&tag).expect("every chunk arrived");
                out.take(done, n);
            }
            out.finish()
        };
        AsyncResult {
            inbox,
            sizes,
            finish: Some(Box::new(decode)),
            called: None,
            #[cfg(feature = "tokio")]
            polled: false,
        }
    }
}

impl<T: 'static> AsyncResult<T> {
    pub(crate) fn new<R: DeserializeOwned + 'static>(
        inbox: Arc<Inbox>,
        sizes: Vec<usize>,
        finish: fn(Vec<Result<R>>) -> Result<T>,
    ) -> Self {
        AsyncResult {
            inbox,
            sizes,
            finish: Some(Self::decoder(finish)),
            called: None,
            #[cfg(feature = "tokio")]
            polled: false,
        }
    }

    /// As `new`, the value decoded and `callbacks` run by the pool's
    /// callback thread (`runner`) as soon as every chunk arrived.
    pub(crate) fn with_callbacks<R: DeserializeOwned + 'static>(
        inbox: Arc<Inbox>,
        sizes: Vec<usize>,
        finish: fn(Vec<Result<R>>) -> Result<T>,
        callbacks: Callbacks<T>,
        runner: std::sync::mpsc::Sender<Job>,
    ) -> Self
    where
        T: Send,
    {
        let called = Called::new();
        let decode = Self::decoder(finish);
        let (job_inbox, job_sizes, job_called) = (inbox.clone(), sizes.clone(), called.clone());
        let job: Job = Box::new(move || {
            let value = decode(&job_inbox, &job_sizes);
            callbacks.run(&value);
            job_called.set(value);
        });
        inbox.on_complete(
            sizes.len(),
            Box::new(move || {
                // The pool keeps its callback thread until every result's
                // callbacks ran, so this cannot fail while it lives.
                let _ = runner.send(job);
            }),
        );
        AsyncResult {
            inbox,
            sizes,
            finish: None,
            called: Some(called),
            #[cfg(feature = "tokio")]
            polled: false,
        }
    }

    fn decoder<R: DeserializeOwned + 'static>(
        finish: fn(Vec<Result<R>>) -> Result<T>,
    ) -> Finish<T> {
        let decode = move |inbox: &Inbox, sizes: &[usize]| {
            let mut st = inbox.lock();
            let mut items = Vec::with_capacity(sizes.iter().sum());
            for (tag, &n) in sizes.iter().enumerate() {
                let done = st.arrived.remove(&tag).expect("every chunk arrived");
                done.items::<R>(n, &mut items);
            }
            drop(st);
            finish(items)
        };
        Box::new(decode)
    }

    /// Whether the result is there.
    pub fn ready(&self) -> bool {
        if let Some(c) = &self.called {
            return c.peek().is_some();
        }
        self.inbox.lock().count >= self.sizes.len()
    }

    /// Whether every item succeeded; an error if not [`ready`](Self::ready)
    /// yet (as Python's `ValueError`).
    pub fn successful(&self) -> Result<bool> {
        if let Some(c) = &self.called {
            return c
                .peek()
                .ok_or(Error::InvalidState("the result is not ready"));
        }
        let st = self.inbox.lock();
        if st.count < self.sizes.len() {
            return Err(Error::InvalidState("the result is not ready"));
        }
        Ok(st.arrived.values().all(|d| d.all_ok()))
    }

    /// Waits until the result is there.
    pub fn wait(&self) {
        if let Some(c) = &self.called {
            c.wait(None);
            return;
        }
        self.inbox.wait(Want::Count(self.sizes.len()), None);
    }

    /// Waits at most `timeout`; whether the result is there.
    #[doc(alias = "wait")]
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        if let Some(c) = &self.called {
            return c.wait(Some(deadline));
        }
        self.inbox
            .wait(Want::Count(self.sizes.len()), Some(deadline))
            .is_some()
    }

    /// Waits for the value (or the first failure, in input order).
    pub fn get(mut self) -> Result<T> {
        self.wait();
        self.take()
    }

    /// As [`get`](Self::get), waiting at most `timeout`:
    /// [`Error::Timeout`] leaves it usable; once taken, later calls fail.
    #[doc(alias = "get")]
    pub fn get_timeout(&mut self, timeout: Duration) -> Result<T> {
        if !self.wait_timeout(timeout) {
            return Err(Error::Timeout);
        }
        self.take()
    }

    fn take(&mut self) -> Result<T> {
        if let Some(c) = &self.called {
            return c
                .take()
                .unwrap_or(Err(Error::InvalidState("the result was already taken")));
        }
        let finish = self
            .finish
            .take()
            .ok_or(Error::InvalidState("the result was already taken"))?;
        finish(&self.inbox, &self.sizes)
    }
}

/// Awaiting an `AsyncResult` (feature `tokio`) gives what
/// [`get`](AsyncResult::get) returns, with the same errors (the task's
/// [`Error::Panicked`], a killed worker's [`Error::Signaled`],
/// [`Error::TaskTimeout`], [`Error::PoolTerminated`]...), without a
/// thread per pending result: the pool's supervisor thread that delivers
/// the last chunk wakes the task, where it would notify a blocked
/// [`get`](AsyncResult::get). It needs no particular runtime (no reactor,
/// no timer).
///
/// **Cancel-safe.** Dropping the future (e.g. the losing branch of a
/// `select!`, a `timeout`) is dropping the `AsyncResult`: the tasks run
/// on as they would for a blocking one dropped unread, and the waker it
/// left is withdrawn. Awaiting `&mut result` instead keeps it: after a
/// timeout it can be awaited again, waited for or read; once it has
/// completed, awaiting it again is an [`Error::InvalidState`], as a
/// second [`get_timeout`](AsyncResult::get_timeout).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> mproc::Result<()> {
/// use std::time::Duration;
///
/// fn slow_square(x: u64) -> u64 {
///     std::thread::sleep(Duration::from_millis(x));
///     x * x
/// }
/// let pool = mproc::Pool::new(2)?;
/// assert_eq!(pool.apply_async(slow_square, 3)?.await?, 9);
///
/// // A per-call deadline: the result stays usable after the timer wins.
/// let mut r = pool.map_async(slow_square, [100, 200])?;
/// if tokio::time::timeout(Duration::from_millis(1), &mut r).await.is_err() {
///     println!("not yet");
/// }
/// assert_eq!(r.await?, [10_000, 40_000]);
/// # Ok(())
/// # }
/// ```
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
impl<T: 'static> std::future::Future for AsyncResult<T> {
    type Output = Result<T>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<T>> {
        use std::task::Poll;
        let this = self.get_mut();
        if let Some(c) = &this.called {
            let Some(value) = c.poll_take(cx.waker()) else {
                this.polled = true;
                return Poll::Pending;
            };
            this.polled = false;
            return Poll::Ready(
                value.unwrap_or(Err(Error::InvalidState("the result was already taken"))),
            );
        }
        if this.finish.is_none() {
            return Poll::Ready(Err(Error::InvalidState("the result was already taken")));
        }
        let ready = this
            .inbox
            .poll(Want::Count(this.sizes.len()), cx.waker())
            .is_some();
        if !ready {
            this.polled = true;
            return Poll::Pending;
        }
        // The delivery that completed it took the waker.
        this.polled = false;
        Poll::Ready(this.take())
    }
}

#[cfg(feature = "tokio")]
impl<T> Drop for AsyncResult<T> {
    fn drop(&mut self) {
        if !self.polled {
            return;
        }
        match &self.called {
            Some(c) => c.forget_waker(),
            None => self.inbox.forget_waker(),
        }
    }
}

impl<T: 'static> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}
