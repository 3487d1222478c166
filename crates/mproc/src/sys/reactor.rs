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
