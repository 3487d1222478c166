//! Workers that live elsewhere: the seam a backend (the MPI ranks of
//! `src/mpi/`) plugs into, so that the pool names no backend.
//!
//! A builder given a [`Remote`] that [`has_workers`](Remote::has_workers)
//! asks it for the default size and lets it start the pool
//! ([`start`](Remote::start)), typically as
//! [`Pool::start_on`](super::Pool::start_on) with its own
//! [`WorkerLink`](super::link::WorkerLink); its links find it again in the
//! [`Config`] through [`as_any`](Remote::as_any).

use std::any::Any;

use super::supervisor::Config;
use super::Pool;
use crate::error::Result;

/// Where a pool's workers run when not on this machine.
pub(crate) trait Remote: Send + Sync + std::fmt::Debug + 'static {
    /// Whether it has workers to offer (else the pool stays local).
    fn has_workers(&self) -> bool;

    /// How many workers when the user sets none.
    fn default_processes(&self) -> usize;

    /// Starts the pool's workers and supervisors on it.
    fn start(&self, cfg: Config) -> Result<Pool>;

    /// Itself, for its links to downcast (unused when no backend is built).
    #[cfg_attr(not(feature = "mpi"), allow(dead_code))]
    fn as_any(&self) -> &dyn Any;
}
