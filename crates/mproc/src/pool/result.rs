//! `AsyncResult`: the value of an `apply_async` or `map_async`, later.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::callback::{Callbacks, Called};
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
pub struct AsyncResult<T> {
    inbox: Arc<Inbox>,
    sizes: Vec<usize>,
    finish: Option<Finish<T>>,
    /// With callbacks: the value, decoded by the callback thread.
    called: Option<Arc<Called<T>>>,
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

impl<T: 'static> std::fmt::Debug for AsyncResult<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncResult")
            .field("ready", &self.ready())
            .finish()
    }
}
