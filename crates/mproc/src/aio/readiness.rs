//! [`Readiness`]: a descriptor registered with the async runtime's reactor
//! (tokio's `AsyncFd`), and the poll loop every mproc future is built on.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::task::{ready, Context, Poll};

use tokio::io::unix::AsyncFd;

use crate::error::{Error, Result};

/// A duplicate of an object's wake descriptor, registered with the current
/// tokio runtime's reactor (which must have I/O enabled, as for tokio's own
/// sockets). Dropping it deregisters and closes the duplicate; the object's
/// own descriptor is untouched.
pub(crate) struct Readiness {
    fd: AsyncFd<OwnedFd>,
}

impl Readiness {
    /// Registers a duplicate of `fd` for readability with the runtime this
    /// task runs on. Outside a tokio runtime: [`Error::NoAsyncRuntime`]
    /// (tokio itself would panic).
    pub(crate) fn new(fd: BorrowedFd<'_>) -> Result<Self> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::NoAsyncRuntime);
        }
        let dup = fd
            .try_clone_to_owned()
            .map_err(Error::io("duplicating a wake descriptor"))?;
        let fd = crate::sys::reactor::register_readable(dup)
            .map_err(Error::io("registering a wake descriptor with the runtime"))?;
        Ok(Readiness { fd })
    }

    /// Whether the descriptor is readable (hung up counts), keeping `cx`'s
    /// waker with the reactor while it is not. Leaves the readiness set
    /// (for a caller that is done once it is readable).
    pub(crate) fn poll_readable(&self, cx: &mut Context<'_>) -> Poll<Result<()>> {
        match ready!(self.fd.poll_read_ready(cx)) {
            Ok(mut guard) => {
                guard.retain_ready();
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(Error::io("waiting for readiness")(e))),
        }
    }

    /// Calls `attempt` until it yields a value or fails, sleeping (returning
    /// `Pending` with `cx`'s waker kept by the reactor) while the descriptor
    /// is not readable. `attempt` must not block; `Ok(None)` means "not
    /// yet", and the descriptor's readiness is then cleared so that the next
    /// poll sleeps until a new event. An attempt that needs an announcement
    /// before a sleep (arming a wake) makes it inside `attempt` before it
    /// looks a last time, as the blocking `wait` does.
    pub(crate) fn poll_until<T>(
        &self,
        cx: &mut Context<'_>,
        mut attempt: impl FnMut() -> Result<Option<T>>,
    ) -> Poll<Result<T>> {
        loop {
            let mut guard = match ready!(self.fd.poll_read_ready(cx)) {
                Ok(guard) => guard,
                Err(e) => return Poll::Ready(Err(Error::io("waiting for readiness")(e))),
            };
            match attempt() {
                Ok(Some(value)) => return Poll::Ready(Ok(value)),
                Ok(None) => guard.clear_ready(),
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// How often a napping future looks again by itself: the blocking waits'
/// longest nap.
pub(crate) const NAP: std::time::Duration = std::time::Duration::from_millis(50);

/// A periodic timer in the reactor, for a future whose wake could be lost
/// (a publisher killed between its store and its wake writes nothing): it
/// looks again every [`NAP`] while it sleeps, as the blocking waits nap.
/// Made only when the future is about to sleep.
pub(crate) struct Nap {
    timer: OwnedFd,
    ready: Readiness,
}

impl Nap {
    pub(crate) fn new() -> Result<Self> {
        let timer = crate::sys::timer::periodic(NAP).map_err(Error::io("creating a timer"))?;
        let ready = Readiness::new(std::os::fd::AsFd::as_fd(&timer))?;
        Ok(Nap { timer, ready })
    }
}

impl Readiness {
    /// As [`poll_until`](Readiness::poll_until), looking again at every
    /// tick of `nap` too.
    pub(crate) fn poll_until_napping<T>(
        &self,
        cx: &mut Context<'_>,
        nap: &Nap,
        mut attempt: impl FnMut() -> Result<Option<T>>,
    ) -> Poll<Result<T>> {
        if let Poll::Ready(r) = self.poll_until(cx, &mut attempt) {
            return Poll::Ready(r);
        }
        let timer = std::os::fd::AsFd::as_fd(&nap.timer);
        nap.ready
            .poll_until(cx, || match crate::sys::timer::expired(timer) {
                true => attempt(),
                false => Ok(None),
            })
    }
}
