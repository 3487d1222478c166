//! [`Context`]: the objects of mproc bound to one start method, as Python's
//! `multiprocessing.get_context`.
//!
//! It builds processes, pools, managers, queues, locks and shared values, so
//! it sits above all of them (the top of the stack, under `lib.rs` only).

use serde::de::DeserializeOwned;
use serde::Serialize;

use bytemuck::Zeroable;

use crate::error::Result;
use crate::limits::Limits;
use crate::pipe::{Connection, Pipe};
use crate::process::{JoinHandle, Process};
use crate::queue::{JoinableQueue, Queue, SimpleQueue};
use crate::shared::{Array, Plain, RawArray, RawValue, SharedMemory, Value};
use crate::start::{get_start_method, StartMethod};
use crate::sync::{
    Barrier, BoundedSemaphore, Condition, ConditionLock, Event, Lock, RLock, Semaphore,
};

/// A context bound to one start method (`None`: the default).
///
/// ```
/// use mproc::StartMethod;
/// let ctx = mproc::get_context(Some(StartMethod::Spawn));
/// assert_eq!(ctx.start_method(), StartMethod::Spawn);
/// ```
pub fn get_context(method: Option<StartMethod>) -> Context {
    Context {
        method: method.unwrap_or_else(get_start_method),
        limits: Limits::new(),
    }
}

/// The objects of mproc, bound to one start method, as Python's
/// `multiprocessing.get_context(method)`.
///
/// ```
/// use mproc::StartMethod;
/// fn square(x: u64) -> u64 { x * x }
///
/// let ctx = mproc::get_context(Some(StartMethod::Fork));
/// assert_eq!(ctx.spawn(square, 7)?.join()?, 49);
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Context {
    method: StartMethod,
    limits: Limits,
}

impl Context {
    /// The start method of this context.
    pub fn start_method(&self) -> StartMethod {
        self.method
    }

    /// This context with `limits` as the default [`Limits`] of its
    /// processes, `spawn`s and pools' workers (none by default).
    ///
    /// ```
    /// use mproc::Limits;
    /// fn open_files_limit(_: ()) -> String {
    ///     let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    ///     let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    ///     line.split_whitespace().nth(3).unwrap().to_string()
    /// }
    ///
    /// let ctx = mproc::get_context(None).limits(Limits::new().open_files(100));
    /// assert_eq!(ctx.spawn(open_files_limit, ())?.join()?, "100");
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn limits(mut self, limits: Limits) -> Context {
        self.limits = limits;
        self
    }

    /// The default limits of this context's processes.
    pub fn get_limits(&self) -> Limits {
        self.limits
    }

    /// A [`Process`] that will start with this context's method (and
    /// limits).
    pub fn process<A, R>(&self, f: fn(A) -> R, args: A) -> Process
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Process::new(f, args)
            .start_method(self.method)
            .limits(self.limits)
    }

    /// A [`Pool`](crate::Pool) of `processes` workers started with this
    /// context's method.
    ///
    /// ```
    /// let pool = mproc::get_context(None).pool(1)?;
    /// assert_eq!(pool.apply(|x: u8| x + 1, 1)?, 2);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn pool(&self, processes: usize) -> Result<crate::Pool> {
        self.pool_builder().processes(processes).build()
    }

    /// A [`PoolBuilder`](crate::PoolBuilder) with this context's method
    /// (and limits, for every worker).
    pub fn pool_builder(&self) -> crate::PoolBuilder {
        crate::Pool::builder()
            .start_method(self.method)
            .limits(self.limits)
    }

    /// Runs `f(args)` in a new child started with this context's method, as
    /// [`spawn`](crate::spawn).
    pub fn spawn<A, R>(&self, f: fn(A) -> R, args: A) -> Result<JoinHandle<R>>
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        crate::process::spawn_with(self.method, self.limits, f, args)
    }

    /// A duplex [`Pipe`] (the same in every context).
    pub fn pipe<T>(&self) -> Result<(Connection<T>, Connection<T>)> {
        Pipe::new()
    }

    /// A [`Value`] with its own lock (the same in every context), as
    /// Python's `ctx.Value`.
    ///
    /// ```
    /// let ctx = mproc::get_context(None);
    /// let v = ctx.value(100i32)?;
    /// *v.lock()? -= 1;
    /// assert_eq!(v.get()?, 99);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "Value")]
    pub fn value<T: Plain>(&self, value: T) -> Result<Value<T>> {
        Value::new(value)
    }

    /// An [`Array`] of `len` zeros with its own lock, as Python's
    /// `ctx.Array(typecode, size)`.
    ///
    /// ```
    /// let a = mproc::get_context(None).array::<f64>(3)?;
    /// assert_eq!(a.to_vec()?, [0.0; 3]);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "Array")]
    pub fn array<T: Plain + Zeroable>(&self, len: usize) -> Result<Array<T>> {
        Array::new(len)
    }

    /// An [`Array`] holding a copy of `values`, as Python's
    /// `ctx.Array(typecode, sequence)`.
    ///
    /// ```
    /// let a = mproc::get_context(None).array_from_slice(&[1u8, 2])?;
    /// assert_eq!(a.get(1)?, 2);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn array_from_slice<T: Plain>(&self, values: &[T]) -> Result<Array<T>> {
        Array::from_slice(values)
    }

    /// A [`RawValue`] (no lock), as Python's `ctx.RawValue`.
    ///
    /// ```
    /// let v = mproc::get_context(None).raw_value(1u32)?;
    /// assert_eq!(v.get(), 1);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "RawValue")]
    pub fn raw_value<T: Plain>(&self, value: T) -> Result<RawValue<T>> {
        RawValue::new(value)
    }

    /// A [`RawArray`] of `len` zeros (no lock), as Python's
    /// `ctx.RawArray(typecode, size)`.
    ///
    /// ```
    /// let a = mproc::get_context(None).raw_array::<i16>(2)?;
    /// assert_eq!(a.to_vec(), [0, 0]);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "RawArray")]
    pub fn raw_array<T: Plain + Zeroable>(&self, len: usize) -> Result<RawArray<T>> {
        RawArray::new(len)
    }

    /// A [`RawArray`] holding a copy of `values`, as Python's
    /// `ctx.RawArray(typecode, sequence)`.
    ///
    /// ```
    /// let a = mproc::get_context(None).raw_array_from_slice(&[true])?;
    /// assert!(a.get(0)?);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn raw_array_from_slice<T: Plain>(&self, values: &[T]) -> Result<RawArray<T>> {
        RawArray::from_slice(values)
    }

    /// `size` bytes of anonymous [`SharedMemory`] (named segments:
    /// [`SharedMemory::create`] and [`SharedMemory::open`]).
    ///
    /// ```
    /// let shm = mproc::get_context(None).shared_memory(64)?;
    /// assert_eq!(shm.size(), 64);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn shared_memory(&self, size: usize) -> Result<SharedMemory> {
        SharedMemory::anonymous(size)
    }
}

/// The synchronisation objects, as Python's `ctx.Lock()`, `ctx.Event()`...
/// They are the same in every context: shared memory works alike whatever
/// the start method.
impl Context {
    /// A new [`Lock`], Python's `ctx.Lock()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let ctx = mproc::get_context(None);
    /// let lock = ctx.lock()?;
    /// assert!(lock.try_acquire()?);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "Lock")]
    pub fn lock(&self) -> Result<Lock> {
        Lock::new()
    }

    /// A new [`RLock`], Python's `ctx.RLock()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let rlock = mproc::get_context(None).rlock()?;
    /// let _outer = rlock.lock()?;
    /// let _inner = rlock.lock()?;
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "RLock")]
    pub fn rlock(&self) -> Result<RLock> {
        RLock::new()
    }

    /// A new [`Semaphore`] holding `value` permits, Python's
    /// `ctx.Semaphore(value)`.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = mproc::get_context(None).semaphore(2)?;
    /// assert_eq!(sem.value(), 2);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "Semaphore")]
    pub fn semaphore(&self, value: u32) -> Result<Semaphore> {
        Semaphore::new(value)
    }

    /// A new [`BoundedSemaphore`], Python's `ctx.BoundedSemaphore(value)`.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = mproc::get_context(None).bounded_semaphore(1)?;
    /// assert!(sem.release().is_err());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "BoundedSemaphore")]
    pub fn bounded_semaphore(&self, value: u32) -> Result<BoundedSemaphore> {
        BoundedSemaphore::new(value)
    }

    /// A new [`Event`], Python's `ctx.Event()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let event = mproc::get_context(None).event()?;
    /// assert!(!event.is_set());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "Event")]
    pub fn event(&self) -> Result<Event> {
        Event::new()
    }

    /// A new [`Condition`] over a new [`RLock`], Python's `ctx.Condition()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = mproc::get_context(None).condition()?;
    /// let _guard = cond.lock()?;
    /// cond.notify_all()?;
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "Condition")]
    pub fn condition(&self) -> Result<Condition> {
        Condition::new()
    }

    /// A new [`Condition`] over `lock`, Python's `ctx.Condition(lock)`.
    ///
    /// # Examples
    ///
    /// ```
    /// let ctx = mproc::get_context(None);
    /// let cond = ctx.condition_with_lock(ctx.lock()?)?;
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn condition_with_lock(&self, lock: impl Into<ConditionLock>) -> Result<Condition> {
        Condition::with_lock(lock)
    }

    /// A new [`Barrier`] for `parties` parties, Python's
    /// `ctx.Barrier(parties)`; see [`Barrier::builder`] for an action and a
    /// default timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// let barrier = mproc::get_context(None).barrier(1)?;
    /// assert_eq!(barrier.wait()?, 0);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "Barrier")]
    pub fn barrier(&self, parties: u32) -> Result<Barrier> {
        Barrier::new(parties)
    }

    /// A new [`Queue`] of at most `maxsize` items (`0`: no limit), Python's
    /// `ctx.Queue(maxsize)`.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = mproc::get_context(None).queue::<u32>(0)?;
    /// q.put(7)?;
    /// assert_eq!(q.get()?, 7);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "Queue")]
    pub fn queue<T>(&self, maxsize: usize) -> Result<Queue<T>> {
        Queue::bounded(maxsize)
    }

    /// A new [`JoinableQueue`] of at most `maxsize` items (`0`: no limit),
    /// Python's `ctx.JoinableQueue(maxsize)`.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = mproc::get_context(None).joinable_queue::<u32>(0)?;
    /// q.put(7)?;
    /// q.get()?;
    /// q.task_done()?;
    /// q.join()?;
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "JoinableQueue")]
    pub fn joinable_queue<T>(&self, maxsize: usize) -> Result<JoinableQueue<T>> {
        JoinableQueue::bounded(maxsize)
    }

    /// A new [`SimpleQueue`], Python's `ctx.SimpleQueue()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let q = mproc::get_context(None).simple_queue::<u32>()?;
    /// q.put(7)?;
    /// assert_eq!(q.get()?, 7);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "SimpleQueue")]
    pub fn simple_queue<T>(&self) -> Result<SimpleQueue<T>> {
        SimpleQueue::new()
    }

    /// A [`Manager`](crate::Manager) whose server starts with this
    /// context's method, Python's `ctx.Manager()`.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut m = mproc::get_context(Some(mproc::StartMethod::Spawn)).manager()?;
    /// let d = m.dict::<u8, u8>()?;
    /// d.insert(&1, &2)?;
    /// assert_eq!(d.get(&1)?, Some(2));
    /// m.shutdown()?;
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "Manager")]
    pub fn manager(&self) -> Result<crate::Manager> {
        self.manager_builder().start()
    }

    /// A [`ManagerBuilder`](crate::manager::ManagerBuilder) set to this
    /// context's start method.
    pub fn manager_builder(&self) -> crate::manager::ManagerBuilder {
        crate::Manager::builder().start_method(self.method)
    }
}
