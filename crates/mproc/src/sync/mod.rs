//! Synchronisation primitives in shared memory.

mod lock;
mod mutex;
mod poison;

pub use lock::{Lock, LockGuard, RLock};
pub use poison::{LockError, LockResult, Recover};
