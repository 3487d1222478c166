//! Futures over mproc's objects (feature `tokio`): await a process, a pool
//! result, a queue, a pipe or an event from an async program without a
//! thread per pending wait.
//!
//! Files:
//! - `readiness.rs`: [`Readiness`], the one type that knows the runtime: a
//!   descriptor registered with the reactor, and the loop "try, else sleep
//!   until the descriptor is readable, then try again" every future here is
//!   built on. Another runtime (smol's `async-io`) would be a second
//!   implementation of this file; nothing else names tokio.
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

pub(crate) use readiness::Readiness;
