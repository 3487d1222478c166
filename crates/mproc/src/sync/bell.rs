//! [`Bell`] (feature `tokio`): the descriptor a futex-based object rings
//! for its async waiters. Linux has no pollable futex, so each object
//! (`Semaphore`...) holds an eventfd created with it and travelling with
//! its handle (as a connection's socket does); a waker that sees the
//! object's `async_waiters` count non-zero writes to it, and only then.
//! The counter is never read: every registration with a reactor is told of
//! each write, so no future can take another's wake-up.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::aio::{spin, Attempt, Nap, Readiness};
use crate::codec::{self, WireFd};
use crate::error::{Error, Result};

/// An eventfd shared by every handle of one object.
#[derive(Clone)]
pub(crate) struct Bell(Arc<OwnedFd>);

impl Bell {
    pub(crate) fn new() -> Result<Self> {
        let fd = crate::sys::reactor::eventfd().map_err(Error::io("cannot create an eventfd"))?;
        Ok(Bell(Arc::new(fd)))
    }

    /// Wakes the async waiters if `waiters` says there are any. Call after
    /// the `SeqCst` change they wait for.
    pub(crate) fn ring(&self, waiters: &AtomicU32) {
        if waiters.load(Ordering::SeqCst) != 0 {
            crate::sys::reactor::signal(self.0.as_fd());
        }
    }

    /// Waits until `attempt` succeeds: a short spin, then announced in
    /// `waiters` (withdrawn on drop) and asleep in the reactor between
    /// rings. `attempt` must not block.
    pub(crate) async fn wait(&self, waiters: &AtomicU32, attempt: impl Fn() -> bool) -> Result<()> {
        let look = || match attempt() {
            true => Ok(Attempt::Done(())),
            false => Ok(Attempt::NotYet),
        };
        if let Attempt::Done(()) = spin(look)? {
            return Ok(());
        }
        // Registered before announced: a ring that sees the announcement
        // writes after the reactor watches. Then one more look, by itself.
        let ready = Readiness::new(self.0.as_fd())?;
        let _announced = Announced::new(waiters);
        // The announcement before the look (a Dekker pair with `ring`'s
        // change-then-load, whatever orderings `attempt` uses).
        std::sync::atomic::fence(Ordering::SeqCst);
        if attempt() {
            return Ok(());
        }
        // A setter killed between its change and its ring rings nothing:
        // look again every nap, as a blocking waiter does.
        let nap = Nap::new()?;
        std::future::poll_fn(|cx| {
            ready.poll_until_napping(cx, &nap, || Ok(attempt().then_some(())))
        })
        .await
    }
}

/// An async waiter's announcement, withdrawn on drop.
struct Announced<'a>(&'a AtomicU32);

impl<'a> Announced<'a> {
    fn new(count: &'a AtomicU32) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Announced(count)
    }
}

impl Drop for Announced<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Serialize for Bell {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        codec::serialize_fd(self.0.as_fd(), s)
    }
}

impl<'de> Deserialize<'de> for Bell {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let WireFd(fd) = WireFd::deserialize(d)?;
        Ok(Bell(Arc::new(fd)))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_waiter_whose_ring_is_lost_looks_again_at_its_nap() {
        // A setter killed between its change and its ring: the change is
        // there, the ring never comes. The waiter finds it at its next nap.
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .unwrap();
            let bell = Bell::new().unwrap();
            let (waiters, flag) = (AtomicU32::new(0), AtomicBool::new(false));
            rt.block_on(async {
                let wait = bell.wait(&waiters, || flag.load(Ordering::SeqCst));
                let change = async {
                    // Past the spin, so the waiter sleeps in the reactor.
                    std::thread::sleep(Duration::from_millis(5));
                    flag.store(true, Ordering::SeqCst); // and no ring
                };
                let (waited, ()) = tokio::join!(wait, change);
                waited.unwrap();
            });
            let _ = done.send(waiters.load(Ordering::SeqCst));
        });
        let began = Instant::now();
        let left = finished
            .recv_timeout(Duration::from_secs(10))
            .expect("the waiter never looked again");
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "{:?}",
            began.elapsed()
        );
        assert_eq!(left, 0, "the announcement is withdrawn");
    }
}
