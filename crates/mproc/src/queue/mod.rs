//! Queues across processes: `Queue`, `JoinableQueue`, `SimpleQueue`.
//!
//! All three are one design (the untyped `core::Core`, described in
//! `README.md`): a ring of records in shared memory written by the caller,
//! one robust lock for producers and one for consumers, futex waits that
//! spin first.
//!
//! | file          | what                                                        |
//! |---------------|-------------------------------------------------------------|
//! | `queue.rs`    | `Queue<T>`: the typed queue                                 |
//! | `joinable.rs` | `JoinableQueue<T>`: a `Queue` with `task_done` and `join`    |
//! | `simple.rs`   | `SimpleQueue<T>`: the minimal unbounded queue               |
//! | `error.rs`    | `PutError`, `GetError`                                      |
//! | `core.rs`     | the untyped queue's handle: parts, wire form, sizes, `Wait`, `Stop`; `len`, `shutdown`, `task_done`, `join` |
//! | `header.rs`   | the shared layout: every word of the header, the record format |
//! | `index.rs`    | the two index words: checked snapshot, `publish` and `free` (one store, then the wake-up) |
//! | `record.rs`   | copies of records in and out of the ring, a record's checked header |
//! | `wait.rs`     | waiting: the lock (`trylock`, then naps), futex naps, `notify` |
//! | `space.rs`    | where records go: pacing, starting the ring again, giving pages back, reserving memory |
//! | `put.rs`      | the put path: whole and streamed items, repair, room, commit |
//! | `get.rs`      | the get path: the consumer's state machine (`At`), the wait for data |
//! | `handles.rs`  | items holding OS handles: the `SOCK_SEQPACKET` pair, tags, put and take |
//! | `aio.rs`      | (feature `tokio`) `get_async`, `put_async`, `join_async`: the eventfd, announcements, the look after a lock's release |
//!
//! `core.rs` defines `Core`; each protocol file below it adds an `impl Core`
//! block for its concern, and keeps the argument (fences, kill windows)
//! beside the code it argues.

mod aio;
mod core;
mod error;
mod get;
mod handles;
mod header;
mod index;
mod joinable;
mod put;
#[allow(clippy::module_inception)]
mod queue;
mod record;
mod simple;
mod space;
mod wait;

pub use error::{GetError, PutError};
pub use joinable::JoinableQueue;
pub use queue::Queue;
pub use simple::SimpleQueue;

/// Whether some handle holds the queue's get lock (tests: a consumer is
/// inside a `get`).
#[doc(hidden)]
pub fn __get_lock_held<T>(q: &Queue<T>) -> bool {
    q.core().get_lock.is_locked()
}
