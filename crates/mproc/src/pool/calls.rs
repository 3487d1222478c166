//! `map`, `starmap`, `apply` and their async forms.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::inbox::{Done, Inbox, Want};
use super::result::AsyncResult;
use super::supervisor::{Chunk, WINDOW};
use super::worker::{chunk_runner, ChunkFn};
use super::Pool;
use crate::codec;
use crate::error::{Error, Result};
use crate::sys::fnref::FnRef;

/// Python's default chunksize for `map`: `ceil(n / (4 × workers))`.
pub(crate) fn default_chunksize(n: usize, workers: usize) -> usize {
    n.div_ceil(4 * workers).max(1)
}

/// A function and its chunk runner, by offset (each vouched for by this
/// process: made with `FnRef::new`).
#[derive(Clone, Copy)]
pub(crate) struct Task {
    func: i64,
    runner: i64,
}

impl Task {
    pub(crate) fn new<A, R>(f: fn(A) -> R) -> Self
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        let runner: ChunkFn = chunk_runner::<A, R>;
        Task {
            func: FnRef::new(f).offset(),
            runner: FnRef::new(runner).offset(),
        }
    }

    /// `func` (an offset vouched for) with the chunk runner `runner`.
    pub(crate) fn with_runner(func: i64, runner: ChunkFn) -> Self {
        Task {
            func,
            runner: FnRef::new(runner).offset(),
        }
    }
}

/// Where a waiting map puts each chunk's outcomes, in input order.
pub(crate) trait Gather<R> {
    /// Room for `n` items.
    fn reserve(&mut self, n: usize);
    /// The next chunk, of `n` items.
    fn take(&mut self, done: Done, n: usize);
}

/// Every item's own outcome (`map_results`).
impl<R: DeserializeOwned> Gather<R> for Vec<Result<R>> {
    fn reserve(&mut self, n: usize) {
        Vec::reserve(self, n);
    }
    fn take(&mut self, done: Done, n: usize) {
        done.items(n, self);
    }
}

/// The values, or the first failure in input order (`map`): a chunk whose
/// items all returned is decoded straight into the result.
pub(crate) struct Values<R> {
    values: Vec<R>,
    failed: Option<Error>,
}

impl<R> Default for Values<R> {
    fn default() -> Self {
        Values {
            values: Vec::new(),
            failed: None,
        }
    }
}

impl<R: DeserializeOwned> Gather<R> for Values<R> {
    fn reserve(&mut self, n: usize) {
        self.values.reserve_exact(n);
    }
    fn take(&mut self, done: Done, n: usize) {
        if self.failed.is_some() {
            return;
        }
        let Some(items) = done.values_into(n, &mut self.values) else {
            return;
        };
        for item in items {
            match item {
                Ok(v) => self.values.push(v),
                Err(e) => {
                    self.failed = Some(e);
                    return;
                }
            }
        }
    }
}

impl<R> Values<R> {
    pub(crate) fn finish(self) -> Result<Vec<R>> {
        match self.failed {
            Some(e) => Err(e),
            None => Ok(self.values),
        }
    }
}

impl Pool {
    /// A chunk as a job for `inbox`, tagged `tag`.
    pub(crate) fn job<A: Serialize>(
        &self,
        task: Task,
        chunk: &[A],
        inbox: &Arc<Inbox>,
        tag: usize,
    ) -> Result<Chunk> {
        let frame = codec::encode(chunk)?;
        if !frame.fds.is_empty() {
            return Err(Error::InvalidArgument(
                "pool task arguments cannot carry OS handles".into(),
            ));
        }
        Ok(Chunk {
            id: self.shared.next_id(),
            func: task.func,
            chunk_fn: task.runner,
            args: frame.bytes,
            inbox: inbox.clone(),
            tag,
        })
    }

    /// Queues `items` in chunks; the inbox and each chunk's size.
    pub(crate) fn submit_all<A: Serialize>(
        &self,
        task: Task,
        items: Vec<A>,
        chunksize: Option<usize>,
    ) -> Result<(Arc<Inbox>, Vec<usize>)> {
        self.shared.lock().accepting()?;
        let size = match chunksize {
            Some(0) => {
                return Err(Error::InvalidArgument(
                    "chunksize must be at least 1".into(),
                ))
            }
            Some(c) => c,
            None => default_chunksize(items.len(), self.processes()),
        };
        let inbox = Arc::new(Inbox::new());
        let mut jobs = Vec::with_capacity(items.len().div_ceil(size));
        let mut sizes = Vec::with_capacity(jobs.capacity());
        for (tag, chunk) in items.chunks(size).enumerate() {
            jobs.push(self.job(task, chunk, &inbox, tag)?);
            sizes.push(chunk.len());
        }
        drop(items);
        self.shared.submit(jobs)?;
        Ok((inbox, sizes))
    }

    /// Applies `f` to every item, in input order, and waits: the first
    /// failure (in input order) once all have finished — see the
    /// [type's docs](Pool#failures) for why it does not cancel the rest.
    /// Chunks of `ceil(n / (4 × processes))` items, as Python.
    ///
    /// ```
    /// let pool = mproc::Pool::new(2)?;
    /// assert_eq!(pool.map(|s: String| s.len(), ["a", "bcd"].map(String::from))?, [1, 3]);
    /// assert!(pool.map(|x: u8| x, Vec::new())?.is_empty());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn map<A, R>(&self, f: fn(A) -> R, items: impl IntoIterator<Item = A>) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.map_chunked(f, items, None)
    }

    /// [`map`](Pool::map) with chunks of `chunksize` items (`None`: the
    /// default rule).
    pub fn map_chunked<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.map_values(Task::new(f), items.into_iter().collect(), chunksize)
    }

    /// As [`map`](Pool::map), with every item's own outcome; the outer
    /// error only when the pool takes no work (closed, terminated, broken)
    /// or an argument does not encode.
    ///
    /// ```
    /// fn inverse(x: i32) -> i32 {
    ///     assert!(x != 0, "no inverse of zero");
    ///     100 / x
    /// }
    /// let pool = mproc::Pool::new(2)?;
    /// let r = pool.map_results(inverse, [1, 0, 4])?;
    /// assert_eq!(r[0].as_ref().ok(), Some(&100));
    /// assert!(matches!(&r[1], Err(mproc::Error::Panicked { message, .. }) if message == "no inverse of zero"));
    /// assert_eq!(r[2].as_ref().ok(), Some(&25));
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn map_results<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<Vec<Result<R>>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.map_results_chunked(f, items, None)
    }

    /// [`map_results`](Pool::map_results) with an explicit chunksize.
    pub fn map_results_chunked<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<Vec<Result<R>>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.map_pipelined(Task::new(f), items.into_iter().collect(), chunksize)
    }

    /// A waiting map that keeps the workers busy from the first chunk: it
    /// encodes and submits chunks in batches while earlier ones run, and
    /// decodes results as they arrive, with a bounded number in flight.
    pub(crate) fn map_pipelined<A, R>(
        &self,
        task: Task,
        items: Vec<A>,
        chunksize: Option<usize>,
    ) -> Result<Vec<Result<R>>>
    where
        A: Serialize,
        R: DeserializeOwned + 'static,
    {
        self.gather_pipelined(task, items, chunksize, Vec::new())
    }

    /// As [`map_pipelined`](Pool::map_pipelined), for `map`: the values,
    /// or the first failure in input order. A chunk whose items all
    /// returned is decoded straight into the result.
    pub(crate) fn map_values<A, R>(
        &self,
        task: Task,
        items: Vec<A>,
        chunksize: Option<usize>,
    ) -> Result<Vec<R>>
    where
        A: Serialize,
        R: DeserializeOwned + 'static,
    {
        self.gather_pipelined(task, items, chunksize, Values::default())?
            .finish()
    }

    /// The waiting map itself: chunks are gathered into `out` in input
    /// order (one that arrives early waits, still encoded, for those
    /// before it).
    fn gather_pipelined<A, R, G>(
        &self,
        task: Task,
        items: Vec<A>,
        chunksize: Option<usize>,
        mut out: G,
    ) -> Result<G>
    where
        A: Serialize,
        R: DeserializeOwned + 'static,
        G: Gather<R>,
    {
        self.shared.lock().accepting()?;
        let size = match chunksize {
            Some(0) => {
                return Err(Error::InvalidArgument(
                    "chunksize must be at least 1".into(),
                ))
            }
            Some(c) => c,
            None => default_chunksize(items.len(), self.processes()),
        };
        let chunks: Vec<&[A]> = items.chunks(size).collect();
        let ahead = 2 * WINDOW * self.processes();
        let batch = WINDOW / 4;
        let inbox = Arc::new(Inbox::new());
        out.reserve(items.len());
        let mut early = BTreeMap::new();
        let mut gathered = 0;
        let (mut submitted, mut taken) = (0, 0);
        while taken < chunks.len() {
            if submitted < chunks.len() && submitted - taken < ahead {
                let end = chunks.len().min(submitted + batch);
                let jobs = (submitted..end)
                    .map(|tag| self.job(task, chunks[tag], &inbox, tag))
                    .collect::<Result<Vec<_>>>()?;
                self.shared.submit(jobs)?;
                submitted = end;
                if submitted - taken < ahead / 2 && submitted < chunks.len() {
                    continue;
                }
            }
            // Wake for a batch of chunks, not for each.
            let want = chunks.len().min(taken + ((submitted - taken) / 2).max(1));
            let mut st = inbox.wait(Want::Count(want), None).expect("no deadline");
            let mut arrived = std::mem::take(&mut st.arrived);
            drop(st);
            taken += arrived.len();
            early.append(&mut arrived);
            while let Some(done) = early.remove(&gathered) {
                out.take(done, chunks[gathered].len());
                gathered += 1;
            }
        }
        Ok(out)
    }

    /// Runs `f(args)` in a worker and waits for its value.
    ///
    /// ```
    /// let pool = mproc::Pool::new(1)?;
    /// assert_eq!(pool.apply(|x: u8| x * 2, 21)?, 42);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn apply<A, R>(&self, f: fn(A) -> R, args: A) -> Result<R>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.apply_async(f, args)?.get()
    }

    /// Runs `f(args)` in a worker; its value later.
    ///
    /// ```
    /// let pool = mproc::Pool::new(2)?;
    /// let r = pool.apply_async(|x: u64| x + 1, 1)?;
    /// r.wait();
    /// assert!(r.ready() && r.successful()?);
    /// assert_eq!(r.get()?, 2);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn apply_async<A, R>(&self, f: fn(A) -> R, args: A) -> Result<AsyncResult<R>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        let (inbox, sizes) = self.submit_all(Task::new(f), vec![args], Some(1))?;
        Ok(AsyncResult::new(inbox, sizes, |mut items| {
            items.pop().expect("one item")
        }))
    }

    /// [`map`](Pool::map) without waiting: the values later.
    ///
    /// ```
    /// let pool = mproc::Pool::new(2)?;
    /// let r = pool.map_async(|x: i64| -x, 1..=3)?;
    /// assert_eq!(r.get()?, [-1, -2, -3]);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn map_async<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        self.map_async_chunked(f, items, None)
    }

    /// [`map_async`](Pool::map_async) with chunks of `chunksize` items
    /// (`None`: the default rule), as Python's `map_async(f, items,
    /// chunksize)`.
    ///
    /// ```
    /// let pool = mproc::Pool::new(2)?;
    /// let r = pool.map_async_chunked(|x: u32| x + 1, 0..4, Some(1))?;
    /// assert_eq!(r.get()?, [1, 2, 3, 4]);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "map_async")]
    pub fn map_async_chunked<A, R>(
        &self,
        f: fn(A) -> R,
        items: impl IntoIterator<Item = A>,
        chunksize: Option<usize>,
    ) -> Result<AsyncResult<Vec<R>>>
    where
        A: Serialize + DeserializeOwned,
        R: Serialize + DeserializeOwned + 'static,
    {
        let (inbox, sizes) =
            self.submit_all(Task::new(f), items.into_iter().collect(), chunksize)?;
        Ok(AsyncResult::values(inbox, sizes))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_chunksize_is_pythons() {
        assert_eq!(super::default_chunksize(0, 2), 1);
        assert_eq!(super::default_chunksize(1, 2), 1);
        assert_eq!(super::default_chunksize(100_000, 2), 12_500);
        assert_eq!(super::default_chunksize(9, 2), 2);
    }
}
