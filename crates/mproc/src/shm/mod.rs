//! The shared-memory substrate: typed views of `MAP_SHARED` mappings that
//! every shared object (the user's `Value`, `Array`, `SharedMemory`; the
//! locks, queues and events of `sync/` and `queue/`) is made of. Every
//! `unsafe` of the shared-memory kind lives here (the mappings themselves
//! are made in `sys/shm.rs`), each with its `// SAFETY:` argument; the
//! layers above use safe functions only. State blocks above (`sync/`,
//! `queue/`) are declared with [`shm_state!`](block::shm_state), which
//! checks their fields instead of an `unsafe impl` of their own; the cells
//! of `Value` and `Array` are paired with their lock and lent to its holder
//! here ([`guarded`]). `SharedMemory` lives here because its raw views
//! (`as_slice`, `as_mut_slice`) are the substrate's own `unsafe`.
//!
//! | file       | what                                                         |
//! |------------|--------------------------------------------------------------|
//! | `bytes.rs` | `SharedBytes`: bytes copied atomically, or lent as slices: `SharedMemory`'s |
//! | `block.rs` | `ShmBlock<T>`: a shared header of type `T` and data after it, one descriptor |
//! | `cells.rs` | `Cells<T>`: `len` plain values at a place in a mapping       |
//! | `guarded.rs` | `Guarded<T>`: cells paired with their lock, lent to its holder as `&mut [T]` |
//! | `plain.rs` | `Plain` data and its relaxed atomic copies in and out        |
//! | `memory.rs` | `SharedMemory`: the user's block of bytes, named or anonymous, with its raw views |

pub(crate) mod block;
pub(crate) mod bytes;
pub(crate) mod cells;
pub(crate) mod guarded;
pub(crate) mod memory;
pub(crate) mod plain;
