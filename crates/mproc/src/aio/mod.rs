//! Futures over mproc's objects (feature `tokio`): await a process, a pool
//! result, a queue, a pipe or an event from an async program without a
//! thread per pending wait.
//!
//! The futures are methods beside their blocking forms:
//! [`Process::join_async`](crate::Process::join_async),
//! [`JoinHandle::join_async`](crate::JoinHandle::join_async) (and
//! `handle.await`), [`Connection::recv_async`](crate::Connection::recv_async),
//! [`send_async`](crate::Connection::send_async),
//! [`recv_bytes_async`](crate::Connection::recv_bytes_async),
//! [`send_bytes_async`](crate::Connection::send_bytes_async),
//! [`poll_async`](crate::Connection::poll_async),
//! [`Event::wait_async`](crate::Event::wait_async),
//! [`Semaphore::acquire_async`](crate::Semaphore::acquire_async) (and
//! [`BoundedSemaphore`](crate::BoundedSemaphore)'s); and [`wait_async`]
//! here, [`crate::wait`] as a future. Each says whether it is cancel-safe.
//! They need a tokio runtime with I/O enabled (and time, for
//! `wait_async` with a timeout); outside one they fail with
//! [`Error::NoAsyncRuntime`](crate::Error::NoAsyncRuntime), unless they
//! complete on their fast path.
//!
//! Files:
//! - `readiness.rs`: `Readiness`, the one type that knows the runtime: a
//!   descriptor registered with the reactor, and the loop "try, else sleep
//!   until the descriptor is readable, then try again" every future here is
//!   built on. Another runtime (smol's `async-io`) would be a second
//!   implementation of this file (and of `wait.rs`'s timer and
//!   `sys/reactor.rs`'s registration); nothing else names tokio.
//! - `mod.rs`: `Attempt` and `spin`, the fast path every future takes
//!   before it registers anything.
//! - `wait.rs`: [`wait_async`], [`crate::wait`] as a future.
//!
//! A registration reports what happens from the moment it is made (and
//! whatever the descriptor holds then), so a future that announces itself
//! after registering looks once more by itself before it sleeps: a
//! publisher that came before the announcement wrote nothing.
//!
//! The futures themselves live beside their blocking forms:
//! `process/handle.rs` (`JoinHandle::join_async`), `pipe/aio.rs`
//! (`Connection::recv_async`...), `sync/event.rs` (`Event::wait_async`),
//! `sync/semaphore.rs` (`acquire_async`, over `sync/bell.rs`'s eventfd).
//!
//! How an object becomes awaitable (see DESIGN.md, "Readiness"): every
//! blocking wait in mproc sleeps on something a reactor can watch (a pidfd,
//! the pipe's socket) or is given a descriptor that only an announced async
//! waiter makes the publisher write to, so a program with no async waiter
//! pays nothing on its blocking paths. In-process waits (the pool's results)
//! need no descriptor: a waker list beside the condition variable.
//!
//! A future never needs `O_NONBLOCK` on the descriptors it watches: it only
//! asks the reactor for readability and then makes its own non-blocking
//! attempt (`MSG_DONTWAIT`, a try-get), so blocking users of the same
//! object are unaffected.

mod readiness;
mod wait;

pub(crate) use readiness::{Nap, Readiness};
pub use wait::wait_async;

use std::time::{Duration, Instant};

use crate::error::Result;

/// What one non-blocking attempt of a future found.
pub(crate) enum Attempt<T> {
    /// Done: the value.
    Done(T),
    /// Not yet: sleep until the descriptor says something changed.
    NotYet,
    /// Another thread of this process holds the object's lock (a blocking
    /// call on the same end): try again soon, without sleeping on the
    /// descriptor.
    Busy,
}

/// How long a future looks again before it registers with the reactor and
/// sleeps: about the time a prompt peer in another process takes to answer
/// (the blocking path spins 2 to 60 µs). Short enough not to hold up the
/// runtime's other tasks noticeably, long enough that a round trip with a
/// peer that answers at once never touches the reactor.
pub(crate) const SPIN: Duration = Duration::from_micros(20);

/// Calls `attempt` for up to [`SPIN`] while it reports [`Attempt::NotYet`];
/// whatever else it reports ends the spin.
pub(crate) fn spin<T>(mut attempt: impl FnMut() -> Result<Attempt<T>>) -> Result<Attempt<T>> {
    let mut until = None;
    loop {
        match attempt()? {
            Attempt::NotYet => {}
            other => return Ok(other),
        }
        let now = Instant::now();
        let end = *until.get_or_insert(now + SPIN);
        if now >= end {
            return Ok(Attempt::NotYet);
        }
        for _ in 0..32 {
            std::hint::spin_loop();
        }
    }
}
