//! [`wait_async`]: [`crate::wait`] as a future.

use std::future::poll_fn;
use std::task::Poll;
use std::time::Duration;

use super::Readiness;
use crate::error::Result;
use crate::wait::Waitable;

/// Disarms every object when the wait ends or its future is dropped.
struct Armed<'a, 'b>(&'a [&'b dyn Waitable]);

impl Drop for Armed<'_, '_> {
    fn drop(&mut self) {
        for o in self.0 {
            o.disarm();
        }
    }
}

/// As [`wait`](crate::wait()), without blocking a thread (feature
/// `tokio`): waits until at least one of `objects` is ready, or `timeout`
/// passes (`None`: no limit), and returns the indices of the ready ones
/// (empty on timeout).
///
/// Each object is armed as the blocking `wait` arms it (a connection asks
/// its writer for a wake byte on the socket beside its rings; nobody pays
/// for it when no one waits), then its descriptor is registered with the
/// runtime's reactor. An object ready at once is reported without touching
/// the reactor.
///
/// Cancel-safe: the wait takes nothing from the objects, and dropping the
/// future disarms them.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> mproc::Result<()> {
/// use std::time::Duration;
/// use mproc::Pipe;
///
/// let (a, b) = Pipe::<u32>::new()?;
/// let (c, _d) = Pipe::<u32>::new()?;
/// b.send(&7)?;
/// let ready = mproc::aio::wait_async(&[&c, &a], Some(Duration::from_secs(10))).await?;
/// assert_eq!(ready, [1]);
/// let none = mproc::aio::wait_async(&[&c], Some(Duration::from_millis(10))).await?;
/// assert!(none.is_empty());
/// # Ok(())
/// # }
/// ```
pub async fn wait_async(
    objects: &[&dyn Waitable],
    timeout: Option<Duration>,
) -> Result<Vec<usize>> {
    let armed: Vec<bool> = objects.iter().map(|o| o.arm()).collect();
    let _disarm = Armed(objects);
    if armed.contains(&true) {
        // Something is ready already: look at the others without waiting,
        // as the blocking `wait` does.
        let fds = objects
            .iter()
            .map(|o| o.wait_fd())
            .collect::<Result<Vec<_>>>()?;
        let polled = crate::sys::fdpass::wait_any(&fds, Some(std::time::Instant::now()))
            .map_err(crate::error::Error::io("poll failed"))?;
        return Ok((0..objects.len())
            .filter(|i| armed[*i] || polled.contains(i))
            .collect());
    }
    let ready = objects
        .iter()
        .map(|o| o.wait_fd().and_then(Readiness::new))
        .collect::<Result<Vec<_>>>()?;
    let any = poll_fn(|cx| {
        let mut found = Vec::new();
        for (i, r) in ready.iter().enumerate() {
            match r.poll_readable(cx) {
                Poll::Ready(Ok(())) => found.push(i),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {}
            }
        }
        match found.is_empty() {
            true => Poll::Pending,
            false => Poll::Ready(Ok(found)),
        }
    });
    match timeout {
        None => any.await,
        Some(t) => match tokio::time::timeout(t, any).await {
            Ok(r) => r,
            Err(_) => Ok(Vec::new()),
        },
    }
}
