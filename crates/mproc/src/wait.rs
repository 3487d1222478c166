//! `wait`: block until any of several processes or connections is ready,
//! as `multiprocessing.connection.wait`.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::sys::fdpass;

/// Something [`wait`] can wait for: a process (ready when it ended) or a
/// connection (ready when a message or end of file can be received).
pub trait Waitable {
    /// The descriptor that becomes readable when the object is ready.
    #[doc(hidden)]
    fn wait_fd(&self) -> Result<BorrowedFd<'_>>;

    /// Prepares the object for a wait on its descriptor; `true` if it is
    /// ready already.
    #[doc(hidden)]
    fn arm(&self) -> bool {
        false
    }

    /// Undoes [`arm`](Waitable::arm).
    #[doc(hidden)]
    fn disarm(&self) {}
}

/// Waits until at least one of `objects` is ready, or `timeout` passes
/// (`None`: no limit). Returns the indices of the ready ones (empty on
/// timeout).
///
/// ```
/// use std::time::Duration;
/// use mproc::{Pipe, Process};
///
/// fn nap(ms: u64) { std::thread::sleep(Duration::from_millis(ms)) }
///
/// let (a, b) = Pipe::<u32>::new()?;
/// let mut p = Process::new(nap, 10);
/// p.start()?;
/// b.send(&7)?;
/// let ready = mproc::wait(&[&p, &a], Some(Duration::from_secs(10)))?;
/// assert!(ready.contains(&1)); // the message is there at once
/// p.join()?;
/// # Ok::<(), mproc::Error>(())
/// ```
pub fn wait(objects: &[&dyn Waitable], timeout: Option<Duration>) -> Result<Vec<usize>> {
    let armed: Vec<bool> = objects.iter().map(|o| o.arm()).collect();
    // Something is ready already: look at the others without blocking.
    let deadline = match armed.contains(&true) {
        true => Some(Instant::now()),
        false => timeout.map(|t| Instant::now() + t),
    };
    let polled = objects
        .iter()
        .map(|o| o.wait_fd())
        .collect::<Result<Vec<_>>>()
        .and_then(|fds| fdpass::wait_any(&fds, deadline).map_err(Error::io("poll failed")));
    for o in objects {
        o.disarm();
    }
    let polled = polled?;
    Ok((0..objects.len())
        .filter(|i| armed[*i] || polled.contains(i))
        .collect())
}

impl Waitable for crate::Process {
    fn wait_fd(&self) -> Result<BorrowedFd<'_>> {
        self.sentinel()
    }

    /// A child already reaped is ready, whatever its sentinel says (a fork
    /// server child's status socket is empty once its status was read).
    fn arm(&self) -> bool {
        self.exitcode().is_some()
    }
}

impl<R> Waitable for crate::JoinHandle<R>
where
    R: serde::de::DeserializeOwned,
{
    fn wait_fd(&self) -> Result<BorrowedFd<'_>> {
        Ok(self.sentinel())
    }

    fn arm(&self) -> bool {
        self.exitcode().is_some()
    }
}
