//! (feature `tokio`) An eventfd that wakes async waiters in any process
//! holding it: a write makes it readable (and, in an edge-triggered
//! reactor such as tokio's epoll, is one new edge for every registration
//! of it, in every process).

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::event::{eventfd, EventfdFlags};

/// A new eventfd (close-on-exec, non-blocking, above stdio), its counter 0.
pub(crate) fn create() -> io::Result<OwnedFd> {
    let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
    super::above_stdio(fd)
}

/// Adds 1 to the counter of `fd`: every reactor watching it sees a new
/// edge. Never blocks; a counter at its maximum (2^64 - 2: only a hostile
/// writer gets there, who could as well garble what the waiters wait
/// for) makes this a no-op, as does any other failure.
pub(crate) fn signal(fd: BorrowedFd<'_>) {
    let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
}
