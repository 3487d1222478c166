//! The shared-memory substrate: typed views of `MAP_SHARED` mappings that
//! every shared object (the user's `Value`, `Array`, `SharedMemory`; the
//! locks, queues and events of `sync/` and `queue/`) is made of. Every
//! `unsafe` of the shared-memory kind lives here (the mappings themselves
//! are made in `sys/shm.rs`), each with its `// SAFETY:` argument; the
//! layers above use safe functions, with two exceptions that carry a
//! promise only they can make: `Locked` (`shared/locked.rs`) calls
//! [`Cells::lend`](cells::Cells::lend) vouching that its guard holds the
//! cells' lock, and the public `unsafe fn`s `SharedMemory::as_slice` and
//! `as_mut_slice` pass their caller's promise on to
//! [`SharedBytes`](bytes::SharedBytes).
//!
//! | file       | what                                                         |
//! |------------|--------------------------------------------------------------|
//! | `bytes.rs` | `SharedBytes`: bytes copied atomically, or lent as slices: `SharedMemory`'s |
//! | `block.rs` | `ShmBlock<T>`: a shared header of type `T` and data after it, one descriptor |
//! | `cells.rs` | `Cells<T>`: `len` plain values at a place in a mapping       |
//! | `plain.rs` | `Plain` data and its relaxed atomic copies in and out        |

pub(crate) mod block;
pub(crate) mod bytes;
pub(crate) mod cells;
pub(crate) mod plain;
