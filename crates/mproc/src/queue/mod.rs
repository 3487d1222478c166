//! Queues across processes: `Queue`, `JoinableQueue`, `SimpleQueue`.
//!
//! All three are one design (`core.rs`, described in `README.md`): a ring
//! of records in shared memory written by the caller, one robust lock for
//! producers and one for consumers, futex waits that spin first.

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
