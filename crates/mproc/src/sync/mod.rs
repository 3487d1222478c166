//! Synchronisation primitives in shared memory.

mod lock;
mod mutex;
mod poison;

pub use lock::{Lock, LockGuard, RLock};
pub(crate) use mutex::SharedMutex;
pub use poison::{LockError, LockResult, Recover};
