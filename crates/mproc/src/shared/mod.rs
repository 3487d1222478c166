//! Shared memory: the typed blocks every shared object is made of, and the
//! objects a Python user knows — [`Value`], [`Array`], their raw forms
//! [`RawValue`] and [`RawArray`], and [`SharedMemory`].
//!
//! All live in `MAP_SHARED` mappings of a `memfd` (or, for a named
//! `SharedMemory`, a file of `/dev/shm`) and travel to a child inside its
//! arguments, their descriptor beside the bytes.

mod array;
pub(crate) mod block;
mod cells;
mod lock_kind;
mod locked;
mod memory;
mod plain;
mod raw;
mod value;

pub use array::{Array, ArrayGuard};
pub use lock_kind::SharedLock;
pub use memory::SharedMemory;
pub use plain::Plain;
pub use raw::{RawArray, RawValue};
pub use value::{Value, ValueGuard};
