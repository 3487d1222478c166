//! `Event`: a flag in shared memory that processes wait for.
//!
//! # Shared state
//!
//! | word | values | changed by |
//! |---|---|---|
//! | `word` | bit 0: the flag; bits 1..=31: how many times the flag went from clear to set (wrapping) | `set`: CAS `(n, 0) -> (n + 1, 1)`; `clear`: `fetch_and(!1)` |
//! | `sleepers` | threads announced asleep on `word` | waiters, around each `futex_wait` |
//! | `async_waiters` | futures announced asleep (feature `tokio`) | `wait_async`, from its first sleep until it is dropped |
//!
//! With feature `tokio`, every handle also holds the event's `Bell`, an
//! eventfd created with it that travels with the handle (`bell.rs`): a
//! `set` that raised the flag and sees `async_waiters` non-zero rings it,
//! and each awaiting future's reactor wakes. A `set` with no future
//! waiting pays one load.
//!
//! A waiter returns when the flag is set *or* the set count differs from the
//! one it saw first: a `set` quickly followed by a `clear` still releases
//! everyone who was waiting, as `threading.Event` promises (CPython's
//! `multiprocessing.Event` can miss it). `set` on a set event changes
//! nothing; `set` wakes sleepers (all of them) only when `sleepers` is
//! non-zero, so a set nobody waits for, a clear and a wait on a set event
//! make no system call. Any bit pattern is a valid state.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{deadline_after, wake_sleepers, WAKE_ALL};
use crate::error::{Error, Result};
use crate::shm::block::{shm_state, ShmBlock};
use crate::sys::futex;

const FLAG: u32 = 1;
const ONE_SET: u32 = 2;

shm_state! {
    struct EventState {
        word: AtomicU32,
        sleepers: AtomicU32,
        async_waiters: AtomicU32,
    }
}

/// An event shared between processes, as Python's `multiprocessing.Event`:
/// a flag that [`set`](Event::set) raises, [`clear`](Event::clear) lowers
/// and [`wait`](Event::wait) waits for.
///
/// Waiting spins briefly before it sleeps, so a peer that answers quickly is
/// seen within a fraction of a microsecond; setting an event nobody waits
/// for makes no system call.
///
/// # Examples
///
/// ```
/// use mproc::{Event, Process};
///
/// fn worker((ready, go): (Event, Event)) {
///     ready.set();
///     go.wait().unwrap();
/// }
///
/// let (ready, go) = (Event::new()?, Event::new()?);
/// let mut p = Process::new(worker, (ready.clone(), go.clone()));
/// p.start()?;
/// ready.wait()?; // the child is running
/// go.set(); // let it finish
/// p.join()?;
/// assert_eq!(p.exitcode(), Some(0));
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(not(feature = "tokio"), serde(transparent))]
pub struct Event {
    block: ShmBlock<EventState>,
    /// Rung by a `set` that sees a future waiting (see the module doc).
    #[cfg(feature = "tokio")]
    bell: super::bell::Bell,
}

impl Event {
    /// A new event, not set.
    ///
    /// # Examples
    ///
    /// ```
    /// let event = mproc::Event::new()?;
    /// assert!(!event.is_set());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn new() -> Result<Self> {
        Ok(Event {
            block: ShmBlock::create("mproc-event", 0)?,
            #[cfg(feature = "tokio")]
            bell: super::bell::Bell::new()?,
        })
    }

    fn state(&self) -> &EventState {
        self.block.header()
    }

    /// Whether the flag is set.
    ///
    /// # Examples
    ///
    /// ```
    /// let event = mproc::Event::new()?;
    /// event.set();
    /// assert!(event.is_set());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn is_set(&self) -> bool {
        self.state().word.load(Ordering::Acquire) & FLAG != 0
    }

    /// Sets the flag and wakes every waiter. Setting a set event does
    /// nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// let event = mproc::Event::new()?;
    /// event.set();
    /// event.set();
    /// assert!(event.wait_timeout(std::time::Duration::ZERO)?);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn set(&self) {
        let s = self.state();
        let mut w = s.word.load(Ordering::Relaxed);
        loop {
            if w & FLAG != 0 {
                return;
            }
            let next = (w & !FLAG).wrapping_add(ONE_SET) | FLAG;
            match s
                .word
                .compare_exchange_weak(w, next, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => w = now,
            }
        }
        wake_sleepers(&s.word, &s.sleepers, WAKE_ALL);
        #[cfg(feature = "tokio")]
        self.bell.ring(&s.async_waiters);
    }

    /// Clears the flag: later waiters wait until the next
    /// [`set`](Self::set).
    ///
    /// # Examples
    ///
    /// ```
    /// let event = mproc::Event::new()?;
    /// event.set();
    /// event.clear();
    /// assert!(!event.is_set());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn clear(&self) {
        self.state().word.fetch_and(!FLAG, Ordering::Release);
    }

    /// Blocks until the flag is set (returns at once if it is).
    ///
    /// # Examples
    ///
    /// ```
    /// let event = mproc::Event::new()?;
    /// event.set();
    /// event.wait()?;
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn wait(&self) -> Result<()> {
        self.wait_deadline(None).map(drop)
    }

    /// Waits at most `timeout` for the flag: `true` if it is set (or was
    /// set while waiting), `false` on timeout. A zero timeout only looks, as
    /// in Python.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let event = mproc::Event::new()?;
    /// let start = Instant::now();
    /// assert!(!event.wait_timeout(Duration::from_millis(20))?);
    /// assert!(start.elapsed() >= Duration::from_millis(20));
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "wait")]
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        if timeout.is_zero() {
            return Ok(self.is_set());
        }
        self.wait_deadline(deadline_after(timeout))
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> Result<bool> {
        let s = self.state();
        let first = s.word.load(Ordering::Acquire);
        if first & FLAG != 0 {
            return Ok(true);
        }
        let released = |w: u32| w & FLAG != 0 || (w ^ first) & !FLAG != 0;
        let r = futex::wait_until(&s.word, &s.sleepers, deadline, |w| {
            released(w).then_some(())
        })
        .map_err(Error::io("cannot wait on an event"))?;
        Ok(r.is_some())
    }
}

#[cfg(feature = "tokio")]
impl Event {
    /// As [`wait`](Event::wait), without blocking a thread (feature
    /// `tokio`): completes once the flag is set, or was set while the
    /// future waited (a `set` at once undone by `clear` still completes
    /// it, as for `wait`). Works across processes: the event's handles all
    /// hold an eventfd that a `set` writes to only when a future has
    /// announced itself (a `set` nobody awaits pays one load).
    ///
    /// Cancel-safe: waiting takes nothing; dropping the future withdraws
    /// its announcement. A process killed while a future of its waited
    /// leaves its announcement behind: later `set`s then write one needless
    /// wake-up each.
    ///
    /// ```
    /// use mproc::{Event, Process};
    ///
    /// fn child(event: Event) {
    ///     event.set();
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> mproc::Result<()> {
    /// let event = Event::new()?;
    /// let mut p = Process::new(child, event.clone());
    /// p.start()?;
    /// event.wait_async().await?; // set in the child
    /// p.join_async().await?;
    /// # Ok(())
    /// # }
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn wait_async(&self) -> Result<()> {
        let s = self.state();
        let first = s.word.load(Ordering::Acquire);
        let released = |w: u32| w & FLAG != 0 || (w ^ first) & !FLAG != 0;
        self.bell
            .wait(&s.async_waiters, || released(s.word.load(Ordering::SeqCst)))
            .await
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `set` at once undone by `clear` still releases a thread that was
    /// waiting when it happened, even one that never saw the flag (here
    /// the two are made one store, so that the waiter cannot see the flag).
    #[test]
    fn a_set_undone_before_the_waiter_looks_still_releases_it() {
        let event = Event::new().unwrap();
        let s = event.state();
        std::thread::scope(|scope| {
            let waiter = scope.spawn(|| event.wait_timeout(Duration::from_secs(5)).unwrap());
            while s.sleepers.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            let w = s.word.load(Ordering::SeqCst);
            s.word
                .store(w.wrapping_add(ONE_SET) & !FLAG, Ordering::SeqCst);
            wake_sleepers(&s.word, &s.sleepers, WAKE_ALL);
            assert!(waiter.join().unwrap());
        });
        assert!(!event.is_set());
    }
}
