//! `Pool`: a function mapped over inputs by worker processes.
//!
//! | file            | what                                                     |
//! |-----------------|----------------------------------------------------------|
//! | `mod.rs`        | the public `Pool` and its builder                        |
//! | `callback.rs`   | `Callbacks` of the async forms, the callback thread       |
//! | `calls.rs`      | `map`, `starmap`, `apply` and their async forms          |
//! | `imap.rs`       | `imap`, `imap_unordered`, `try_imap`: lazy, bounded iterators (and, feature `tokio`, streams) |
//! | `star.rs`       | `starmap` over tuples of 1 to 8 arguments                 |
//! | `result.rs`     | `AsyncResult` (feature `tokio`: a `Future`)              |
//! | `supervisor.rs` | one thread per worker in the parent: hand-off, deaths, deadlines |
//! | `link.rs`       | `WorkerLink`: the seam between a supervisor and its worker |
//! | `local.rs`      | the local worker process and its pipe, as a `WorkerLink` |
//! | `remote.rs`     | `Remote`: workers elsewhere, the seam a backend (MPI) plugs into |
//! | `worker.rs`     | the worker process's loop and the chunk runners          |
//! | `wire.rs`       | the messages between the two                             |
//! | `inbox.rs`      | where finished chunks land; the waker of an awaiting caller |
//! | `timeline.rs`   | the recorded chunk runs and their exports                |

mod callback;
mod calls;
mod imap;
mod inbox;
mod link;
mod local;
mod remote;
mod result;
mod star;
mod supervisor;
mod timeline;
mod wire;
mod worker;

pub use callback::Callbacks;
pub use imap::{IMap, TryIMap};
pub use result::AsyncResult;
pub use star::StarArgs;
pub use timeline::{TaskEvent, Timeline};

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::observe::{debug_event, info_event};
use crate::start::{get_start_method, StartMethod};
use inbox::Fail;
use link::WorkerLink;
use local::LocalWorker;
use remote::Remote;
use supervisor::{Config, Shared, Supervisor};

#[cfg(feature = "mpi")]
pub(crate) use {inbox::Place, link::WorkerHandle, worker::Init};
#[cfg(feature = "mpi")]
pub(crate) mod backend {
    //! What an MPI backend needs of the pool's internals.
    pub(crate) use super::link::WorkerLink;
    pub(crate) use super::local::LocalWorker;
    pub(crate) use super::remote::Remote;
    pub(crate) use super::supervisor::Config;
}

/// A pool of worker processes, as Python's `multiprocessing.Pool`.
///
/// ```
/// use mproc::Pool;
///
/// let pool = Pool::new(2)?;
/// let squares = pool.map(|x: u64| x * x, 0..10)?;
/// assert_eq!(squares, [0, 1, 4, 9, 16, 25, 36, 49, 64, 81]);
/// # Ok::<(), mproc::Error>(())
/// ```
///
/// Functions are plain `fn(A) -> R` (closures without captures), as for
/// [`Process`](crate::Process); arguments and results travel encoded.
/// Arguments and results cannot carry OS handles (connections, locks...)
/// in a pool: pass those to the workers through the
/// [`initializer`](PoolBuilder::initializer).
///
/// # Failures
///
/// Every call ends; none hangs. Per item:
///
/// - a panic fails that item with [`Error::Panicked`] (message and
///   location); the worker survives;
/// - a result that does not encode fails that item with [`Error::Encode`];
/// - a worker that dies (killed, `abort`, segfault, `exit` in the task)
///   fails the items of the chunk it was running with [`Error::Signaled`]
///   or [`Error::Exited`] (its pid and status); the chunks it had been
///   handed but not started go to another worker; a new worker replaces it
///   and the pool goes on — unless the pool was built with
///   [`break_on_worker_death`](PoolBuilder::break_on_worker_death), which
///   fails everything pending with [`Error::PoolBroken`] instead;
/// - a worker that one of its [`limits`](PoolBuilder::limits) ends fails
///   the items of its chunk with [`Error::LimitExceeded`], naming the
///   limit, and is replaced likewise;
/// - a chunk past the [`task_timeout`](PoolBuilder::task_timeout) has its
///   worker terminated (SIGTERM, then SIGKILL after the grace period) and
///   replaced, and fails with [`Error::TaskTimeout`].
///
/// [`map`](Pool::map) returns the first failure in input order **after
/// every item has finished**: it does not cancel the rest. A chunk already
/// handed to a worker cannot be withdrawn without killing the worker, and
/// stopping half-way would leave side effects of an unknown subset of the
/// items; waiting keeps the pool's state simple — every item ran exactly
/// once or failed — and [`map_results`](Pool::map_results) returns every
/// item's outcome. Use [`imap`](Pool::imap) to stop early.
///
/// # Lifecycle and dropping
///
/// [`close`](Pool::close) refuses new work and lets the workers finish what
/// is queued; [`terminate`](Pool::terminate) stops them at once, failing
/// pending items with [`Error::PoolTerminated`]; [`join`](Pool::join)
/// waits for the workers to end after either. **Dropping a pool
/// terminates it** (as CPython's `Pool.__del__`): pending items fail with
/// [`Error::PoolTerminated`] (their error callbacks run), every worker is
/// sent SIGTERM, then SIGKILL after the [grace period](PoolBuilder::grace_period),
/// and reaped, and the drop returns once the supervisor threads and the
/// callback thread have ended: no process, descriptor or shared memory
/// outlives it. Close and join first to let queued work finish.
///
/// # Progress
///
/// [`imap`](Pool::imap) yields each result as it is ready, in input order:
/// count them into a progress bar, e.g. with the `indicatif` crate
/// (`examples/pool_progress.rs` runs a long one).
///
/// ```
/// use indicatif::ProgressBar;
///
/// fn work(x: u64) -> u64 {
///     x * 2
/// }
/// let pool = mproc::Pool::new(2)?;
/// let n = 1_000;
/// let bar = ProgressBar::new(n); // draws on a terminal only
/// let mut sum = 0;
/// for r in pool.imap_chunked(work, 0..n, 10) {
///     sum += r?;
///     bar.inc(1);
/// }
/// bar.finish();
/// assert_eq!((bar.position(), sum), (n, n * (n - 1)));
/// # Ok::<(), mproc::Error>(())
/// ```
///
/// # Async
///
/// With the feature `tokio`, an [`AsyncResult`] (of
/// [`apply_async`](Pool::apply_async), [`map_async`](Pool::map_async),
/// [`starmap_async`](Pool::starmap_async) and their `_with` forms) is a
/// `Future` and an [`IMap`] a `Stream`: an async program awaits thousands
/// of pending results without a thread for each (see
/// `examples/async_server.rs`). Both are cancel-safe; their docs say what
/// dropping them does.
///
/// # Ctrl-C
///
/// Workers block SIGINT: Ctrl-C in a terminal reaches the parent alone,
/// no worker prints anything or dies of it. If the parent dies of it
/// (Rust's default), its workers die with it (their death signal) and
/// nothing is reaped in order. To stop in order, handle SIGINT in the
/// parent and call [`terminate`](Pool::terminate) from the handler: the
/// pool is `Sync`, so share it in an `Arc` (the handler holding a `Weak`,
/// so that `main` can still close, join or drop it). The calls waiting
/// on it then end with [`Error::PoolTerminated`] and the program goes on
/// to its own end. With the `ctrlc` crate:
///
/// ```
/// use std::sync::Arc;
///
/// let pool = Arc::new(mproc::Pool::new(2)?);
/// let weak = Arc::downgrade(&pool);
/// ctrlc::set_handler(move || {
///     if let Some(pool) = weak.upgrade() {
///         pool.terminate();
///     }
/// })
/// .expect("the only handler");
/// match pool.map(|x: u32| x + 1, 0..100) {
///     Ok(v) => assert_eq!(v.len(), 100),
///     Err(mproc::Error::PoolTerminated) => eprintln!("interrupted"),
///     Err(e) => return Err(e),
/// }
/// # Ok::<(), mproc::Error>(())
/// ```
///
/// `examples/pool_progress.rs` does this around a progress bar.
pub struct Pool {
    shared: Arc<Shared>,
    threads: Vec<thread::JoinHandle<()>>,
}

/// Settings for a [`Pool`], from [`Pool::builder`].
///
/// ```
/// use std::time::Duration;
///
/// let pool = mproc::Pool::builder()
///     .processes(2)
///     .max_tasks_per_child(100)
///     .task_timeout(Duration::from_secs(10))
///     .build()?;
/// assert_eq!(pool.apply(|x: i32| x + 1, 41)?, 42);
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Debug)]
pub struct PoolBuilder {
    processes: Option<usize>,
    method: Option<StartMethod>,
    init: Option<worker::Init>,
    init_error: Option<String>,
    max_tasks: Option<usize>,
    max_memory: Option<u64>,
    task_timeout: Option<Duration>,
    grace: Duration,
    break_on_death: bool,
    record_timeline: bool,
    retries: usize,
    limits: crate::Limits,
    retry_limits: bool,
    /// Workers elsewhere (a backend's), if any.
    pub(crate) remote: Option<Arc<dyn Remote>>,
}

impl Pool {
    /// A pool of `processes` workers (at least 1), default settings.
    pub fn new(processes: usize) -> Result<Pool> {
        Pool::builder().processes(processes).build()
    }

    /// A builder, for the other settings.
    pub fn builder() -> PoolBuilder {
        PoolBuilder {
            processes: None,
            method: None,
            init: None,
            init_error: None,
            max_tasks: None,
            max_memory: None,
            task_timeout: None,
            grace: Duration::from_millis(500),
            break_on_death: false,
            record_timeline: false,
            retries: 0,
            limits: crate::Limits::new(),
            retry_limits: false,
            remote: None,
        }
    }

    /// The number of workers.
    pub fn processes(&self) -> usize {
        self.shared.cfg.processes
    }

    /// The pids of the current workers (they change as workers are
    /// replaced).
    pub fn pids(&self) -> Vec<i32> {
        self.shared
            .lock()
            .workers
            .iter()
            .flatten()
            .map(|w| w.pid())
            .collect()
    }

    /// The chunks run so far, if the pool was built with
    /// [`record_timeline`](PoolBuilder::record_timeline) (else empty);
    /// the record is kept (see [`take_timeline`](Pool::take_timeline)).
    /// It stays readable after [`close`](Pool::close) and
    /// [`join`](Pool::join).
    pub fn timeline(&self) -> Timeline {
        self.snapshot(false)
    }

    /// As [`timeline`](Pool::timeline), and clears the record: the next
    /// call returns only chunks that end after this one.
    pub fn take_timeline(&self) -> Timeline {
        self.snapshot(true)
    }

    fn snapshot(&self, take: bool) -> Timeline {
        match &self.shared.timeline {
            Some(rec) => rec.snapshot(self.processes(), take),
            None => Timeline::default(),
        }
    }

    /// Refuses new work; the workers finish what is queued, then leave.
    pub fn close(&self) {
        let mut st = self.shared.lock();
        if !st.closed {
            debug_event!(pending = st.queue.len(), "pool closed");
        }
        st.closed = true;
        drop(st);
        self.shared.wake_all();
    }

    /// Stops the workers now: pending items fail with
    /// [`Error::PoolTerminated`].
    pub fn terminate(&self) {
        let mut st = self.shared.lock();
        if !st.terminated && !self.threads.is_empty() {
            info_event!(pending = st.queue.len(), "pool terminated");
        }
        st.terminated = true;
        st.closed = true;
        for job in st.queue.drain(..) {
            job.inbox
                .deliver(job.tag, inbox::Done::Failed(Fail::Terminated));
        }
        for w in st.workers.iter().flatten() {
            w.terminate();
        }
        drop(st);
        self.shared.wake_all();
    }

    /// Waits for every worker to end, after [`close`](Pool::close) or
    /// [`terminate`](Pool::terminate) (an error otherwise).
    pub fn join(&mut self) -> Result<()> {
        if !self.shared.lock().closed {
            return Err(Error::InvalidState("join a pool that is still running"));
        }
        let joined = !self.threads.is_empty();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // Every result is complete now: its callbacks are queued or ran.
        callback::finish(&self.shared.callbacks);
        if joined {
            debug_event!("pool joined: every worker ended");
        }
        Ok(())
    }

    fn start(cfg: Config) -> Result<Pool> {
        if let Some(remote) = cfg.remote.clone() {
            return remote.start(cfg);
        }
        Pool::start_on::<LocalWorker>(cfg)
    }

    /// Starts the pool's workers as `W`s, and their supervisors.
    pub(crate) fn start_on<W: WorkerLink>(cfg: Config) -> Result<Pool> {
        let shared = Arc::new(Shared::new(cfg));
        let mut workers = Vec::new();
        for slot in 0..shared.cfg.processes {
            // On error, the workers already started are dropped: killed
            // and reaped.
            let w = W::start(&shared.cfg, slot)?;
            debug_event!(pid = w.pid(), slot, "pool worker started");
            shared.lock().workers[slot] = Some(w.handle());
            workers.push(w);
        }
        let threads = workers
            .into_iter()
            .enumerate()
            .map(|(slot, w)| {
                let sup = Supervisor::new(shared.clone(), slot, w);
                thread::Builder::new()
                    .name(format!("mproc-pool-{slot}"))
                    .spawn(move || sup.run())
            })
            .collect::<std::io::Result<Vec<_>>>();
        let mut pool = Pool {
            shared,
            threads: Vec::new(),
        };
        pool.threads = threads.map_err(Error::io("cannot start a pool thread"))?;
        info_event!(
            processes = pool.shared.cfg.processes,
            method = ?pool.shared.cfg.method,
            "pool started"
        );
        Ok(pool)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.terminate();
        let _ = self.join();
    }
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("processes", &self.processes())
            .field("pids", &self.pids())
            .finish()
    }
}

impl PoolBuilder {
    /// The number of workers (default [`cpu_count`](crate::cpu_count)).
    pub fn processes(mut self, n: usize) -> Self {
        self.processes = Some(n);
        self
    }

    /// How workers start (default: [`get_start_method`] at `build`).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Runs `f(args)` once in each worker as it starts (replacements too).
    /// A worker whose initializer panics makes [`build`](PoolBuilder::build)
    /// fail (or, for a replacement, breaks the pool) instead of restarting
    /// forever as CPython's does.
    ///
    /// `args` may carry OS handles (a [`Queue`](crate::Queue), a
    /// [`Lock`](crate::Lock), a [`Value`](crate::Value)...), as CPython's
    /// `initargs` do: the pool keeps them open while it lives and every
    /// worker, replacements included, receives its own copies. The usual
    /// pattern stores them in a `static` for the tasks:
    ///
    /// ```
    /// use std::sync::OnceLock;
    /// static LOG: OnceLock<mproc::Queue<u32>> = OnceLock::new();
    ///
    /// let log = mproc::Queue::new()?;
    /// let pool = mproc::Pool::builder()
    ///     .processes(2)
    ///     .initializer(|q: mproc::Queue<u32>| { let _ = LOG.set(q); }, log.clone())
    ///     .build()?;
    /// pool.map(|x: u32| LOG.get().unwrap().put(x).unwrap(), [7])?;
    /// assert_eq!(log.get()?, 7);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "initargs")]
    pub fn initializer<A>(mut self, f: fn(A), args: A) -> Self
    where
        A: Serialize + DeserializeOwned,
    {
        match worker::Init::new(f, &args) {
            Ok(init) => self.init = Some(init),
            Err(e) => self.init_error = Some(e.to_string()),
        }
        self
    }

    /// Replaces each worker after it ran `n` chunks (Python's
    /// `maxtasksperchild`, which also counts chunks).
    #[doc(alias = "maxtasksperchild")]
    pub fn max_tasks_per_child(mut self, n: usize) -> Self {
        self.max_tasks = Some(n);
        self
    }

    /// Replaces each worker after the chunk that leaves its resident memory
    /// above `bytes` (billiard's `max_memory_per_child`, here in bytes):
    /// that chunk's results are kept, the chunks the worker held but had
    /// not started go to other workers (or its replacement), and nothing
    /// fails. For a task that leaks (a C library's cache, a fragmented
    /// heap), beside [`max_tasks_per_child`](Self::max_tasks_per_child).
    ///
    /// The worker reads its resident memory (`/proc/self/statm`, through a
    /// descriptor it keeps open: about a microsecond) after each chunk and
    /// retires itself: what counts is what it keeps, not a peak within the
    /// chunk that it gave back before the chunk ended. Among chunks shorter
    /// than 50 µs it reads about once per 50 µs of them (a read would cost
    /// more than such a task), so it retires within that many chunks of
    /// passing the threshold. Resident
    /// memory counts the pages a [`Fork`](crate::StartMethod::Fork) worker
    /// still shares with the parent it was copied from: with `Fork`, set
    /// the threshold above the parent's own. Where `/proc` cannot be read
    /// the threshold is not applied. (A peak, `ru_maxrss`,
    /// starts from what the worker inherited: after `posix_spawn` it is
    /// the parent's whole peak, so it would retire workers of a large
    /// parent after every chunk.) Not a cap: a chunk that allocates without
    /// bound runs to its end; see the limits for that. A threshold of 0 is
    /// refused; workers on other hosts (MPI) do not take it.
    ///
    /// ```
    /// fn leak(x: u64) -> u64 {
    ///     // 8 MiB kept for the worker's life.
    ///     std::mem::forget(vec![1u8; 8 << 20]);
    ///     x
    /// }
    /// let pool = mproc::Pool::builder()
    ///     .processes(1)
    ///     .max_memory_per_child(200 << 20)
    ///     .build()?;
    /// let out = pool.map_chunked(leak, 0..40, Some(1))?;
    /// assert_eq!(out, (0..40).collect::<Vec<_>>());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "maxmemoryperchild")]
    pub fn max_memory_per_child(mut self, bytes: u64) -> Self {
        self.max_memory = Some(bytes);
        self
    }

    /// Fails a chunk that runs longer than `d` with [`Error::TaskTimeout`],
    /// terminating and replacing its worker. The clock starts when the
    /// worker finished its previous chunk (or received this one); it
    /// applies to a chunk, one item with chunksize 1.
    pub fn task_timeout(mut self, d: Duration) -> Self {
        self.task_timeout = Some(d);
        self
    }

    /// How long a worker being stopped has between SIGTERM and SIGKILL
    /// (default 500 ms).
    pub fn grace_period(mut self, d: Duration) -> Self {
        self.grace = d;
        self
    }

    /// When `true`, a worker dying while it runs a task breaks the whole
    /// pool, as `concurrent.futures.ProcessPoolExecutor` does: that task
    /// fails with the death, everything else pending with
    /// [`Error::PoolBroken`], and the pool takes no more work. Default
    /// `false`: only that task fails and the worker is replaced.
    pub fn break_on_worker_death(mut self, yes: bool) -> Self {
        self.break_on_death = yes;
        self
    }

    /// Re-runs a chunk whose worker died while running it (killed,
    /// `abort`, segfault, `exit`) up to `n` more times, on another worker
    /// process (the replacement, or any other), before failing it with the
    /// death. Default 0: no chunk ever runs twice. A chunk that is retried
    /// may have had side effects on its first run: use it for idempotent
    /// tasks. Timeouts ([`task_timeout`](Self::task_timeout)) and panics
    /// are not retried. With [`break_on_worker_death`](Self::break_on_worker_death),
    /// the pool breaks only when a chunk fails for good.
    ///
    /// ```
    /// // The first worker to see 3 dies; the re-run succeeds.
    /// fn fragile((x, mark): (u32, std::path::PathBuf)) -> u32 {
    ///     if x == 3 && std::fs::create_dir(&mark).is_ok() {
    ///         std::process::abort();
    ///     }
    ///     x * 2
    /// }
    /// let mark = std::env::temp_dir().join(format!("mproc-retry-{}", std::process::id()));
    /// let pool = mproc::Pool::builder().processes(1).retry_on_worker_death(1).build()?;
    /// let items = (0..5).map(|x| (x, mark.clone()));
    /// assert_eq!(pool.map_chunked(fragile, items, Some(1))?, [0, 2, 4, 6, 8]);
    /// std::fs::remove_dir(&mark)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn retry_on_worker_death(mut self, n: usize) -> Self {
        self.retries = n;
        self
    }

    /// Gives every worker (replacements included) these [`Limits`](crate::Limits),
    /// applied by the worker to itself as it starts. A worker that a limit
    /// ends (an allocation past its memory cap, its CPU time used up) fails
    /// the chunk it was running with [`Error::LimitExceeded`] naming the
    /// limit, and is replaced; the other chunks go on. The CPU time is the
    /// worker's, over every task it ran: combine with
    /// [`max_tasks_per_child`](Self::max_tasks_per_child) to make it
    /// per-task, or bound each task's wall-clock time with
    /// [`task_timeout`](Self::task_timeout).
    ///
    /// ```
    /// use mproc::{Error, Limit, Limits};
    ///
    /// // Grows by a MiB at a time.
    /// fn alloc(mib: usize) -> usize {
    ///     let v: Vec<Vec<u8>> = (0..mib).map(|_| vec![1u8; 1 << 20]).collect();
    ///     v.len()
    /// }
    /// let pool = mproc::Pool::builder()
    ///     .processes(2)
    ///     .limits(Limits::new().memory(128 << 20))
    ///     .build()?;
    /// let out = pool.map_results_chunked(alloc, [1, 4096, 2], Some(1))?;
    /// assert_eq!(out[0].as_ref().ok(), Some(&1));
    /// assert!(matches!(out[1], Err(Error::LimitExceeded { limit: Limit::Memory, .. })));
    /// assert_eq!(out[2].as_ref().ok(), Some(&2));
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn limits(mut self, limits: crate::Limits) -> Self {
        self.limits = limits;
        self
    }

    /// With [`retry_on_worker_death`](Self::retry_on_worker_death), also
    /// re-runs the chunks whose worker one of its [`limits`](Self::limits)
    /// ended (default `false`: a task that exceeds a limit would most
    /// likely exceed it again, and fails at once).
    pub fn retry_limit_failures(mut self, yes: bool) -> Self {
        self.retry_limits = yes;
        self
    }

    /// Records which worker ran each chunk, from when to when (default
    /// `false`): see [`Pool::timeline`] and [`Timeline`]'s exports (Chrome
    /// trace JSON, ASCII chart). Times are taken by the parent's
    /// supervisor threads ([`TaskEvent`] says exactly what they mean).
    /// Off, it costs one branch per chunk; on, one locked push per chunk
    /// (chunksize-1 `map` of a trivial function: about 10% fewer tasks
    /// per second on 2 CPUs; nothing visible for real tasks).
    ///
    /// ```
    /// let pool = mproc::Pool::builder().processes(2).record_timeline(true).build()?;
    /// pool.map_chunked(|x: u8| x, 0..4, Some(1))?;
    /// let t = pool.timeline();
    /// assert_eq!(t.events().len(), 4);
    /// assert_eq!(t.to_ascii(40).lines().filter(|l| l.starts_with("worker")).count(), 2);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn record_timeline(mut self, yes: bool) -> Self {
        self.record_timeline = yes;
        self
    }

    /// Starts the workers. If one cannot start, those already started are
    /// terminated and reaped, and the error is returned.
    pub fn build(self) -> Result<Pool> {
        if let Some(e) = self.init_error {
            return Err(Error::InvalidArgument(format!("bad initializer: {e}")));
        }
        let remote = self.remote.filter(|r| r.has_workers());
        if let (Some(_), Some(init)) = (&remote, &self.init) {
            if init.has_handles() {
                return Err(Error::InvalidArgument(
                    "an initializer's arguments cannot carry OS handles to other hosts".into(),
                ));
            }
        }
        let processes = match (&remote, self.processes) {
            (_, Some(n)) => n,
            (Some(r), None) => r.default_processes(),
            (None, None) => crate::cpu_count(),
        };
        if processes < 1 {
            return Err(Error::InvalidArgument(
                "a pool needs at least one process".into(),
            ));
        }
        if self.max_tasks == Some(0) {
            return Err(Error::InvalidArgument(
                "max_tasks_per_child must be at least 1".into(),
            ));
        }
        if self.max_memory == Some(0) {
            return Err(Error::InvalidArgument(
                "max_memory_per_child must be at least 1 byte".into(),
            ));
        }
        if remote.is_some() && self.max_memory.is_some() {
            return Err(Error::InvalidArgument(
                "max_memory_per_child applies to local workers only".into(),
            ));
        }
        Pool::start(Config {
            processes,
            method: self.method.unwrap_or_else(get_start_method),
            init: self.init,
            max_tasks: self.max_tasks,
            max_memory: self.max_memory,
            task_timeout: self.task_timeout,
            grace: self.grace,
            break_on_death: self.break_on_death,
            record_timeline: self.record_timeline,
            retries: self.retries,
            limits: self.limits,
            retry_limits: self.retry_limits,
            remote,
        })
    }
}
