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
//! - **Room.** [`room`](WorkerLink::room) says how many bytes of messages
//!   `send` can leave for a worker that does not read, without waiting:
//!   the supervisor keeps the jobs it sent and whose replies have not come
//!   within it, so it never waits in `send` while its worker may be
//!   waiting for it to read a reply (both would wait for ever). A job
//!   larger than that goes alone, to a worker that holds nothing (it reads
//!   it whole before it replies). `None`: `send` never waits.
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

    /// How many bytes of unread messages `send` takes without waiting for
    /// the worker to read (see the module's contract), counting each
    /// message's [`PIPE_RECORD`] bytes of framing; `None` if `send` never
    /// waits (the link queues). The default suits a link over a
    /// [`Pipe`](crate::Pipe).
    #[inline]
    fn room(&self) -> Option<usize> {
        Some(PIPE_ROOM)
    }

    /// Waits at most `timeout` for a message to be there to
    /// [`recv`](WorkerLink::recv) (or the link to break): whether one is.
    fn poll(&self, timeout: Duration) -> Result<bool>;

    /// Receives one message (blocks until one is there).
    fn recv(&self) -> Result<Vec<u8>>;

    /// The limit that ended the worker (and its value), once it ended, if
    /// one did ([`Process::limit_exceeded`](crate::Process::limit_exceeded));
    /// `None` (the default) for a worker without limits.
    fn limit_exceeded(&self) -> Option<(crate::Limit, u64)> {
        None
    }

    /// Whether the worker still runs (never blocks).
    fn is_alive(&self) -> bool;

    /// Waits at most `timeout` for the worker to end on its own: its exit
    /// code, `None` if it runs on.
    fn wait(&self, timeout: Duration) -> io::Result<Option<i32>>;

    /// Stops it now: asks it to end (SIGTERM), forces it after `grace`
    /// (SIGKILL), and waits until it is gone; its exit code.
    fn stop(&mut self, grace: Duration) -> io::Result<i32>;
}

/// The bytes of unread messages a [`Pipe`](crate::Pipe) direction takes
/// before `send` waits for the reader: its ring (512 KiB), less an eighth
/// as a margin. As much as possible: chunks of up to a fifth of it still
/// go four at a time (half of the room measured ~15% slower on `map` with
/// the default chunksize over 100,000 items, chunks of 100 KB). The
/// `room_of_a_pipe_never_waits` test checks that a pipe holds this much
/// without a reader.
pub(crate) const PIPE_ROOM: usize = 448 << 10;

/// The framing of one message in a pipe's ring (a record's header).
pub(crate) const PIPE_RECORD: usize = 16;

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

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::{PIPE_RECORD, PIPE_ROOM};
    use crate::Pipe;

    /// A pipe takes [`PIPE_ROOM`] bytes of messages, framing included,
    /// with nobody reading: a supervisor within it never waits in `send`.
    #[test]
    fn room_of_a_pipe_never_waits() {
        let (here, there) = Pipe::<()>::new().unwrap();
        let sizes = [1usize, 100, 64 << 10, (64 << 10) + 1, 100 << 10, 3];
        let (done, finished) = mpsc::channel();
        let writer = std::thread::spawn(move || {
            let mut left = PIPE_ROOM;
            let mut sent = Vec::new();
            for &n in sizes.iter().cycle() {
                if left <= PIPE_RECORD {
                    break;
                }
                let n = n.min(left - PIPE_RECORD);
                here.send_bytes(&vec![sent.len() as u8; n]).unwrap();
                sent.push(n);
                left -= n + PIPE_RECORD;
            }
            let _ = done.send(());
            (here, sent)
        });
        let waited = finished.recv_timeout(Duration::from_secs(30)).is_err();
        if waited {
            drop(there); // the writer sees its peer gone and ends
            let _ = writer.join();
            panic!("a pipe did not take {PIPE_ROOM} bytes without a reader");
        }
        let (_here, sent) = writer.join().unwrap();
        for (i, n) in sent.into_iter().enumerate() {
            assert_eq!(there.recv_bytes().unwrap(), vec![i as u8; n]);
        }
    }
}
