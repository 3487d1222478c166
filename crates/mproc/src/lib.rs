//! Python's `multiprocessing` for Rust: real OS processes, each with its own
//! memory, behind the objects a Python user knows.
//!
//! ```
//! use mproc::{Pipe, Process, Connection};
//!
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! fn echo(conn: Connection<String>) {
//!     let msg = conn.recv().unwrap();
//!     conn.send(&msg.to_uppercase()).unwrap();
//! }
//!
//! // A value back, like std::thread::spawn:
//! assert_eq!(mproc::spawn(square, 12)?.join()?, 144);
//!
//! // A process and a pipe, like Python:
//! let (here, there) = Pipe::<String>::new()?;
//! let mut p = Process::new(echo, there);
//! p.start()?;
//! here.send(&"hello".to_string())?;
//! assert_eq!(here.recv()?, "HELLO");
//! p.join()?;
//! assert_eq!(p.exitcode(), Some(0));
//! # Ok::<(), mproc::Error>(())
//! ```
//!
//! # How a child runs your function
//!
//! Every binary that links mproc can act as a child, with no code in
//! `main`: a constructor that runs before `main` recognises a child by an
//! environment variable, receives its task and runs it. A task is a plain
//! `fn(A) -> R` (a closure without captures coerces to one) with arguments
//! and result that implement serde's traits; the function travels as an
//! offset in this executable, checked against the executable's build-id.
//! OS handles inside the arguments ([`Connection`]s) travel beside the bytes.
//!
//! # Start methods
//!
//! See [`StartMethod`]: `ForkServer` (default), `Spawn`, `Fork`; pick one
//! per process, per [`Context`] or globally with [`set_start_method`].
//!
//! # Shared state
//!
//! [`Value`] and [`Array`] hold plain data ([`Plain`]: integers, floats,
//! `bool`, `#[repr(C)]` structs) in shared memory with their own lock, as
//! Python's; [`RawValue`] and [`RawArray`] have no lock; [`SharedMemory`]
//! is a block of bytes, named or anonymous. All travel to a child inside
//! its arguments:
//!
//! ```
//! use mproc::{Process, Value};
//!
//! fn deposit(balance: Value<i32>) {
//!     *balance.lock().unwrap() += 10;
//! }
//!
//! let balance = Value::new(100)?;
//! let mut p = Process::new(deposit, balance.clone());
//! p.start()?;
//! p.join()?;
//! assert_eq!(balance.get()?, 110);
//! # Ok::<(), mproc::Error>(())
//! ```
//!
//! # Queues
//!
//! [`Queue`] (bounded or not), [`JoinableQueue`] and [`SimpleQueue`] carry
//! serde values between any number of producer and consumer processes
//! through a ring in shared memory. There is no feeder thread: a `put` that
//! returned is in the queue, and one that fails hands the value back
//! ([`PutError`]). A process killed inside `put` or `get` loses at most the
//! item it was moving; the others carry on.
//!
//! ```
//! use mproc::{Process, Queue};
//!
//! fn worker((jobs, results): (Queue<Option<u32>>, Queue<u32>)) {
//!     while let Ok(Some(n)) = jobs.get() {
//!         results.put(n * n).unwrap();
//!     }
//! }
//!
//! let (jobs, results) = (Queue::bounded(10)?, Queue::new()?);
//! let mut p = Process::new(worker, (jobs.clone(), results.clone()));
//! p.start()?;
//! jobs.put(Some(7))?;
//! jobs.put(None)?; // the sentinel
//! assert_eq!(results.get()?, 49);
//! p.join()?;
//! # Ok::<(), mproc::Error>(())
//! ```
//!
//! # Synchronisation
//!
//! [`Lock`], [`RLock`], [`Semaphore`], [`BoundedSemaphore`], [`Event`],
//! [`Condition`] and [`Barrier`] live in shared memory and are woken through
//! futexes: an uncontended call makes no system call, and a wait spins
//! briefly before it sleeps. Clone a handle to keep it, pass it to a child
//! in its arguments, or make one from a [`Context`] (`ctx.event()`...). A
//! lock whose holder dies is handed to the next acquirer with
//! [`LockError::OwnerDied`] instead of staying locked forever.
//!
//! ```
//! use mproc::{Barrier, Event, Process};
//!
//! fn party((barrier, done): (Barrier, Event)) {
//!     barrier.wait().unwrap(); // both processes meet here
//!     done.set();
//! }
//!
//! let (barrier, done) = (Barrier::new(2)?, Event::new()?);
//! let mut p = Process::new(party, (barrier.clone(), done.clone()));
//! p.start()?;
//! barrier.wait()?;
//! done.wait()?;
//! p.join()?;
//! # Ok::<(), mproc::Error>(())
//! ```
//!
//! # Managers, listeners and clients
//!
//! A [`Manager`] holds dicts, lists, namespaces, values, queues, locks,
//! events, semaphores and your own [`manager::Servable`] types in a server
//! process and hands out proxies (one round trip per call; batch calls
//! for bulk). [`Listener`] and [`Client`] connect processes over Unix, Linux
//! abstract or TCP addresses with CPython's framing and authentication
//! handshake, so they talk to Python's `multiprocessing.connection`:
//!
//! ```
//! let m = mproc::Manager::start()?;
//! let d = m.dict::<String, u64>()?;
//! d.update([("a".to_string(), 1), ("b".to_string(), 2)])?;
//! assert_eq!(d.get_many(&["a".into(), "c".into()])?, vec![Some(1), None]);
//! # Ok::<(), mproc::Error>(())
//! ```
//!
//! # Pools
//!
//! A [`Pool`] maps a function over inputs with worker processes, as
//! Python's: [`map`](Pool::map), [`starmap`](Pool::starmap),
//! [`imap`](Pool::imap) and [`imap_unordered`](Pool::imap_unordered)
//! (lazy, bounded), [`apply`](Pool::apply), and
//! [`apply_async`](Pool::apply_async)/[`map_async`](Pool::map_async)
//! returning an [`AsyncResult`]. A panic fails its item only; a worker that
//! dies fails only the chunk it was running and is replaced; a chunk past
//! the [`task_timeout`](PoolBuilder::task_timeout) has its worker killed.
//! [`Callbacks`] run CPython's `callback`/`error_callback`
//! ([`map_async_with`](Pool::map_async_with)); a [`Timeline`] shows which
//! worker ran what, when ([`record_timeline`](PoolBuilder::record_timeline)).
//!
//! ```
//! let pool = mproc::Pool::new(2)?;
//! assert_eq!(pool.map(|x: u64| x * x, 1..=3)?, [1, 4, 9]);
//! # Ok::<(), mproc::Error>(())
//! ```
//!
//! # Failure model
//!
//! A child's [`Process::exitcode`] is `0` on return, `n` for `exit(n)`, `1`
//! for a panic and `-N` for signal N; [`JoinHandle::join`] turns each into a
//! typed [`Error`]. A child that cannot start its task exits with
//! [`BOOTSTRAP_EXIT_CODE`] after a one-line reason on stderr. Children die
//! with their parent; none is left a zombie.
//!
//! # Observability
//!
//! With the `tracing` feature, mproc reports through the
//! [`tracing`](https://docs.rs/tracing) crate what an operator needs, under
//! targets that are its module paths (`RUST_LOG=mproc=debug` with
//! `tracing-subscriber`'s `EnvFilter` selects them all;
//! `examples/tracing.rs` shows them):
//!
//! - `warn`: a pool worker that died (`pid`, `status` such as
//!   `signal 9 (SIGKILL)`, `code`, the `chunk` it ran), a task retried
//!   (`chunk`, `attempt`, `max`) or timed out (`pid`, `chunk`,
//!   `timeout_ms`), a pool broken, a refused connection (`peer`, `reason`),
//!   a lock taken over from a holder that died, a queue item voided because
//!   its producer or consumer died inside it;
//! - `info`: a pool started or terminated, a worker replaced (`old_pid`,
//!   `new_pid`, `cause`) or retired (`max_tasks_per_child`), a manager
//!   server listening or stopped;
//! - `debug`: a process started (`method`, `pid`, `took_us`), a pool worker
//!   started, each task run in a worker (a `pool task` span with `pid` and
//!   `chunk`, closed by a `pool task ran` event with `duration_us` and
//!   `outcome`: `ok`, `err` or `panic`), connections accepted and
//!   authenticated, a pipe or connection whose peer is gone.
//!
//! Each process reports to its own subscriber. A worker started by fork
//! inherits its parent's (and writes where it writes); one started by
//! spawn or the fork server has none unless its program installs one. With
//! no subscriber an event costs a load and a branch; without the feature
//! nothing is compiled.
//!
//! # Confinement
//!
//! [`Limits`] cap a child's memory and CPU time, its descriptors and core
//! dumps, and set its nice value, per [`Process`], per [`Context`] (for its
//! `spawn`s too) and per pool worker ([`PoolBuilder::limits`]). A child
//! that exceeds its memory or CPU cap ends with [`Error::LimitExceeded`]
//! naming the [`Limit`] (in a pool, only its task fails), and
//! [`Process::resources`] says what a child used (peak resident memory,
//! CPU time).

#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_op_in_unsafe_fn)]
// `unsafe` lives in `sys/` (the kernel) and `shm/` (the shared-memory
// substrate, where `shm_state!` declares the state blocks of the layers
// above and `guarded.rs` lends a `Value`'s cells to the holder of its lock);
// no item elsewhere opts out. (The bootstrap's `#[ctor::ctor(unsafe)]` is
// that crate's acknowledgment that the constructor runs before `main`, not
// unsafe code: the constructor itself is safe Rust.)
#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]
#![warn(unreachable_pub)]
#![warn(missing_docs)]

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub mod aio;
mod child;
mod codec;
mod connection;
mod context;
mod error;
mod exit;
mod identity;
mod limits;
pub mod manager;
#[cfg(feature = "mpi")]
#[cfg_attr(docsrs, doc(cfg(feature = "mpi")))]
pub mod mpi;
mod observe;
#[cfg(feature = "pickle")]
#[cfg_attr(docsrs, doc(cfg(feature = "pickle")))]
pub mod pickle;
mod pipe;
mod pool;
mod process;
mod queue;
mod shared;
#[allow(unsafe_code)]
mod shm;
mod start;
mod sync;
#[allow(unsafe_code)]
mod sys;
mod task;
mod util;
mod wait;

pub use connection::{
    Address, Client, Listener, ListenerBuilder, SocketConnection, DEFAULT_HANDSHAKE_TIMEOUT,
};
pub use context::{get_context, Context};
pub use error::{AuthError, CodecError, Error, RemoteError, Result};
pub use limits::{Limit, Limits, MemoryKind, Resources};
pub use manager::Manager;
pub use pipe::{Connection, Pipe};
pub use pool::{
    AsyncResult, Callbacks, IMap, Pool, PoolBuilder, StarArgs, TaskEvent, Timeline, TryIMap,
};
pub use process::{
    active_children, cpu_count, current_process, fork, parent_process, spawn, JoinHandle, Process,
    ProcessInfo, BOOTSTRAP_EXIT_CODE,
};
pub use queue::{GetError, JoinableQueue, PutError, Queue, SimpleQueue};
pub use shared::{
    Array, ArrayGuard, Plain, RawArray, RawValue, SharedLock, SharedMemory, Value, ValueGuard,
};
pub use start::{
    all_start_methods, get_start_method, set_fork_warning, set_start_method, StartMethod,
};
pub use sync::{
    Barrier, BarrierBuilder, BoundedSemaphore, Condition, ConditionLock, Event, Lock, LockError,
    LockGuard, LockResult, RLock, Recover, Semaphore, SemaphoreGuard, MAX_CONDITION_WAITERS,
    MAX_PARTIES, SEM_VALUE_MAX,
};
pub use wait::{wait, Waitable};

/// The crate whose traits say which types are [`Plain`] (derive
/// `bytemuck::Pod` and `bytemuck::Zeroable` on your `#[repr(C)]` structs).
pub use bytemuck;

/// Support for mproc's own tests; not part of the API.
#[doc(hidden)]
pub mod __private {
    /// Entry points for fuzzing the decoders a peer reaches.
    pub mod fuzz {
        pub use crate::connection::fuzz::*;

        /// Decodes `data` as a manager request, as the server does with
        /// every message of an authenticated peer.
        pub fn manager_request(data: &[u8]) -> crate::Result<()> {
            crate::manager::decode_request(data)
        }
    }
    pub use crate::pipe::__cast_connection as cast_connection;
    pub use crate::process::__start_with_raw_first_frame as start_with_raw_first_frame;
    pub use crate::queue::__get_lock_held as queue_get_lock_held;
    pub use crate::start::{fork_server_pid, fork_server_raw_request, kill_fork_server};
    pub use crate::sys::proc::open_fd_count;
    pub use crate::task::__first_frame_claiming as first_frame_claiming;
}
