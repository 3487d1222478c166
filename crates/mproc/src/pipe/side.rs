//! The socket beside the rings: descriptors, wake bytes and hang-ups.
//!
//! Each direction of the socket pair carries single bytes:
//!
//! | byte  | descriptors | meaning                                                 |
//! |-------|-------------|---------------------------------------------------------|
//! | `'F'` | 1 to 253    | the descriptors of the next ring message that has any   |
//! | `'W'` | none        | a wake-up for a reader in `mproc::wait` (no content)    |
//!
//! A writer sends a message's `'F'` before it publishes the message in the
//! ring, so a reader that reaches a message with descriptors finds them on
//! the socket (or already queued here). The socket's hang-up, seen when every
//! copy of the peer end is closed or its process died, is how an end learns
//! that its peer is gone.

use std::collections::VecDeque;
use std::os::fd::{BorrowedFd, OwnedFd};

use crate::error::{Error, Result};
use crate::sys::fdpass;

const FDS: u8 = b'F';
const WAKE: u8 = b'W';

/// Sends the descriptors of the message about to be published.
pub(super) fn send_fds(sock: BorrowedFd<'_>, fds: &[BorrowedFd<'_>]) -> Result<()> {
    match fdpass::send_tag(sock, FDS, fds, false) {
        Ok(_) => Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPIPE | libc::ECONNRESET)) => {
            Err(Error::Disconnected)
        }
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            Err(Error::InvalidArgument(e.to_string()))
        }
        Err(e) => Err(Error::io("cannot send descriptors")(e)),
    }
}

/// Wakes a reader waiting in `mproc::wait`. Never blocks: a full socket is
/// readable already, and a gone peer needs no wake-up.
pub(super) fn send_wake(sock: BorrowedFd<'_>) {
    let _ = fdpass::send_tag(sock, WAKE, &[], true);
}

/// Descriptor batches read from the socket before their messages.
#[derive(Default)]
pub(super) struct Inbox {
    batches: VecDeque<Vec<OwnedFd>>,
}

impl Inbox {
    /// Reads whatever the socket holds, without blocking: whether there
    /// was anything.
    pub(super) fn drain(&mut self, sock: BorrowedFd<'_>) -> Result<bool> {
        let mut any = false;
        while self.pump(sock, true)? {
            any = true;
        }
        Ok(any)
    }

    /// The next batch of descriptors, which must hold `n`; waits for it.
    pub(super) fn take(&mut self, sock: BorrowedFd<'_>, n: u32) -> Result<Vec<OwnedFd>> {
        loop {
            if let Some(batch) = self.batches.pop_front() {
                if batch.len() != n as usize {
                    return Err(protocol(format!(
                        "a message announces {n} descriptors but {} came",
                        batch.len()
                    )));
                }
                return Ok(batch);
            }
            if !self.pump(sock, false)? {
                return Err(protocol("descriptors of a message are missing".into()));
            }
        }
    }

    /// One read from the socket; `false` when nothing (more) is there.
    fn pump(&mut self, sock: BorrowedFd<'_>, nonblocking: bool) -> Result<bool> {
        let mut buf = [0u8; 64];
        let (n, fds) = match fdpass::recv_tagged(sock, &mut buf, nonblocking) {
            Ok(Some((n, fds))) if n > 0 => (n, fds),
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return Err(protocol(e.to_string()))
            }
            Err(e) => return Err(Error::io("cannot read a pipe's socket")(e)),
        };
        let tags = &buf[..n];
        let batches = tags.iter().filter(|&&b| b == FDS).count();
        if tags.iter().any(|&b| b != FDS && b != WAKE) || batches != usize::from(!fds.is_empty()) {
            return Err(protocol(format!(
                "unexpected bytes on a pipe's socket: {tags:02x?}"
            )));
        }
        if !fds.is_empty() {
            self.batches.push_back(fds);
        }
        Ok(true)
    }
}

fn protocol(msg: String) -> Error {
    Error::Protocol(msg)
}
