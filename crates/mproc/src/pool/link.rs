//! The seam between a supervisor and its worker: what the supervisor needs
//! of a worker, whatever carries its messages.
//!
//! The supervisor owns the protocol (`wire.rs`: jobs messages, one reply
//! per chunk, `QUIT`) and every decision (hand-off, deadlines, retries,
//! replacement, breaking); a [`WorkerLink`] only starts a worker, moves
//! messages to and from it, and says whether and how it ended. Today's one
//! implementation is a local worker process and its pipe
//! ([`LocalWorker`](super::local::LocalWorker)); a worker reachable another
//! way (a rank on another host) implements the same trait and the
//! supervisor runs it unchanged.
//!
//! # Contract
//!
//! - **Ready on start.** [`start`](WorkerLink::start) returns once the
//!   worker has sent [`READY`](super::wire::READY) (its initializer ran);
//!   a worker that ends or answers anything else first is reaped there and
//!   its end returned as the error ([`Error::Exited`](crate::Error::Exited)
//!   or [`Error::Signaled`](crate::Error::Signaled)); a start that fails
//!   for want of descriptors, processes or memory says so in its chain of
//!   causes (an `io::Error` with `EMFILE`, `ENFILE`, `EAGAIN`, `ENOMEM`),
//!   as the supervisor retries those.
//! - **In order, whole, or broken.** Messages arrive whole and in the
//!   order sent, both ways. An error from [`send`](WorkerLink::send),
//!   [`poll`](WorkerLink::poll) or [`recv`](WorkerLink::recv) means the
//!   worker is gone or going: the supervisor then learns how it ended
//!   ([`wait`](WorkerLink::wait), [`stop`](WorkerLink::stop)). Since the
//!   worker runs its chunks in order and replies to each, the first
//!   unanswered chunk is the one it was running: that one fails (or is
//!   retried), the others never started.
//! - **Ends are exit codes.** [`wait`](WorkerLink::wait) and
//!   [`stop`](WorkerLink::stop) give the end as an exit code (negative: the
//!   signal that killed it), and an `io::Error` only when the end cannot be
//!   learnt.
//! - **Stopping from outside.** [`handle`](WorkerLink::handle) gives what
//!   `terminate` and a breaking pool hold, from other threads, to stop the
//!   worker at once; the supervisor then sees its link break.
//! - **Dropping stops.** A link dropped while its worker runs stops it
//!   without grace and reaps it: no worker outlives its pool.
//!
//! The hot path (`send`, `poll`, `recv`, `is_alive`) is called through a
//! type parameter of the supervisor: no dynamic dispatch. Only the
//! [`WorkerHandle`]s in the pool's shared state are trait objects, used
//! when the pool lists, terminates or breaks.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use super::inbox::Place;
use super::supervisor::Config;
use crate::error::Result;

/// One worker as its supervisor sees it (see the module's contract).
pub(crate) trait WorkerLink: Sized + Send + 'static {
    /// Starts the worker of `slot` (0-based) with the pool's settings and
    /// waits until it is ready.
    fn start(cfg: &Config, slot: usize) -> Result<Self>;

    /// Its pid, for errors and the timeline.
    fn pid(&self) -> i32;

    /// Where it runs, if not on this host's pool (an MPI rank): its
    /// failures carry it. `None` (the default) for a local worker.
    #[inline]
    fn place(&self) -> Option<Arc<Place>> {
        None
    }

    /// What other threads hold to stop it (see [`WorkerHandle`]).
    fn handle(&self) -> Arc<dyn WorkerHandle>;

    /// Sends one message.
    fn send(&self, msg: &[u8]) -> Result<()>;

    /// Waits at most `timeout` for a message to be there to
    /// [`recv`](WorkerLink::recv) (or the link to break): whether one is.
    fn poll(&self, timeout: Duration) -> Result<bool>;

    /// Receives one message (blocks until one is there).
    fn recv(&self) -> Result<Vec<u8>>;

    /// Whether the worker still runs (never blocks).
    fn is_alive(&self) -> bool;

    /// Waits at most `timeout` for the worker to end on its own: its exit
    /// code, `None` if it runs on.
    fn wait(&self, timeout: Duration) -> io::Result<Option<i32>>;

    /// Stops it now: asks it to end (SIGTERM), forces it after `grace`
    /// (SIGKILL), and waits until it is gone; its exit code.
    fn stop(&mut self, grace: Duration) -> io::Result<i32>;
}

/// What the pool holds of each current worker, to list and stop it from
/// any thread.
pub(crate) trait WorkerHandle: Send + Sync {
    /// The worker's pid.
    fn pid(&self) -> i32;
    /// Asks it to end (SIGTERM): `terminate`.
    fn terminate(&self);
    /// Ends it at once (SIGKILL): a breaking pool.
    fn kill(&self);
}
