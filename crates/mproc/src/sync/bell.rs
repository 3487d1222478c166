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

use crate::aio::{spin, Attempt, Readiness};
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
        std::future::poll_fn(|cx| ready.poll_until(cx, || Ok(attempt().then_some(())))).await
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
