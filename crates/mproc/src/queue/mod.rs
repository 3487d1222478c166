//! Queues across processes: `Queue`, `JoinableQueue`, `SimpleQueue`.
//!
//! All three are one design (`core.rs`, described in `README.md`): a ring
//! of records in shared memory written by the caller, one robust lock for
//! producers and one for consumers, futex waits that spin first.
//!
//! | file          | what                                                     |
//! |---------------|----------------------------------------------------------|
//! | `queue.rs`    | `Queue<T>`: the typed queue                              |
//! | `joinable.rs` | `JoinableQueue<T>`: a `Queue` with `task_done` and `join` |
//! | `simple.rs`   | `SimpleQueue<T>`: the minimal unbounded queue            |
//! | `error.rs`    | `PutError`, `GetError`                                   |
//! | `core.rs`     | the untyped queue: ring, locks, waits                    |
//! | `header.rs`   | the shared header and the records of the ring            |

mod core;
mod error;
mod header;
mod joinable;
#[allow(clippy::module_inception)]
mod queue;
mod simple;

pub use error::{GetError, PutError};
pub use joinable::JoinableQueue;
pub use queue::Queue;
pub use simple::SimpleQueue;
