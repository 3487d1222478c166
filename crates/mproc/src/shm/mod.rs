//! The shared-memory substrate: typed views of `MAP_SHARED` mappings that
//! every shared object (the user's `Value`, `Array`, `SharedMemory`; the
//! locks, queues and events of `sync/` and `queue/`) is made of. Every
//! `unsafe` of the shared-memory kind lives here (the mappings themselves
//! are made in `sys/shm.rs`), each with its `// SAFETY:` argument; the
//! layers above use safe functions only.
//!
//! | file       | what                                                         |
//! |------------|--------------------------------------------------------------|
//! | `block.rs` | `ShmBlock<T>`: a shared header of type `T` and data after it, one descriptor |
//! | `cells.rs` | `Cells<T>`: `len` plain values at a place in a mapping       |
//! | `plain.rs` | `Plain` data and its relaxed atomic copies in and out        |

pub(crate) mod block;
pub(crate) mod cells;
pub(crate) mod plain;
