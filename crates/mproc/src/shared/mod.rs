//! Shared memory: the typed blocks every shared object is made of.

pub(crate) mod block;
