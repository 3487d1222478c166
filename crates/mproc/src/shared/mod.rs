//! The shared objects a Python user knows — [`Value`], [`Array`], their
//! raw forms [`RawValue`] and [`RawArray`], and [`SharedMemory`] — built on
//! the shared-memory substrate (`crate::shm`: blocks, cells, plain data;
//! `SharedMemory`, whose raw views are the substrate's own, lives there).
//!
//! All live in `MAP_SHARED` mappings of a `memfd` (or, for a named
//! `SharedMemory`, a file of `/dev/shm`) and travel to a child inside its
//! arguments, their descriptor beside the bytes.
//!
//! | file           | what                                                      |
//! |----------------|-----------------------------------------------------------|
//! | `value.rs`     | `Value`: one plain value and its lock                     |
//! | `array.rs`     | `Array`: plain values and their lock                      |
//! | `raw.rs`       | `RawValue`, `RawArray`: the same without a lock           |
//! | `locked.rs`    | what `Value` and `Array` are made of: cells and their lock |
//! | `lock_kind.rs` | `SharedLock`: the locks a `Value` or `Array` may use       |

mod array;
mod lock_kind;
mod locked;
mod raw;
mod value;

pub use crate::shm::memory::SharedMemory;
pub use crate::shm::plain::Plain;
pub use array::{Array, ArrayGuard};
pub use lock_kind::SharedLock;
pub use raw::{RawArray, RawValue};
pub use value::{Value, ValueGuard};
