//! Registering a descriptor with tokio's reactor (feature `tokio`).

use std::io;
use std::os::fd::OwnedFd;

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Registers `fd` for readability with the current tokio runtime's
/// reactor, which then owns it. The caller has checked that a runtime is
/// current (tokio panics otherwise).
pub(crate) fn register_readable(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: tokio's contract is that the descriptor stays open and names
    // the same file description for as long as the `AsyncFd` holds it, and
    // that `as_raw_fd` keeps returning it. An `OwnedFd` is a descriptor
    // this process owns alone (nobody else may close it), it is moved into
    // the `AsyncFd` and closed only when the `AsyncFd` drops it (after
    // deregistering), and its `as_raw_fd` is a constant field.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| e.into_parts().1)
}

/// A new eventfd (close-on-exec, non-blocking): the descriptor an object
/// without one of its own (a futex word) writes to for its async waiters.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    use rustix::event::{eventfd, EventfdFlags};
    Ok(eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?)
}

/// Adds one to an eventfd's counter, making it readable (and waking every
/// reactor that watches it). Never blocks; a counter at its maximum is
/// readable already.
pub(crate) fn signal(fd: std::os::fd::BorrowedFd<'_>) {
    let _ = rustix::io::write(fd, &1u64.to_ne_bytes());
}
