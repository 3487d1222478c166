//! `Semaphore` and `BoundedSemaphore`: a count of permits in shared memory.
//!
//! # Shared state
//!
//! | word | values | changed by |
//! |---|---|---|
//! | `value` | permits available now (`0..=SEM_VALUE_MAX`; any `u32` is tolerated) | `acquire`: CAS `v -> v - 1` when `v > 0`; `release`: CAS `v -> v + 1` unless `v` is at the bound |
//! | `sleepers` | threads announced asleep on `value` | waiters, around each `futex_wait` |
//! | `async_waiters` | futures announced asleep (feature `tokio`) | `acquire_async`, from its first sleep until it is dropped |
//!
//! With feature `tokio`, a release that sees `async_waiters` non-zero also
//! rings the semaphore's `Bell` (an eventfd every handle holds): every
//! awaiting future looks, one takes the permit, the others sleep again.
//!
//! An acquirer that finds no permit spins, then sleeps on `value`
//! ([`futex::wait_until`]); a releaser adds its permit first and calls
//! `FUTEX_WAKE` for one thread only when `sleepers` is non-zero, so neither
//! side makes a system call when nobody waits. A woken thread that loses the
//! permit to a faster one sleeps again; a thread whose timeout expires takes
//! a last look, so a permit released to it is never stranded.
//!
//! A semaphore has no owner: a process killed while holding permits does not
//! give them back (the classic semantics, as in CPython and POSIX). A process
//! killed while asleep leaves `sleepers` one too high, which costs later
//! releases a needless `FUTEX_WAKE`, never a lost wake-up.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{deadline_after, wake_sleepers};
use crate::error::{Error, Result};
use crate::shm::block::{shm_state, ShmBlock};
use crate::sys::futex;

/// The largest value a semaphore can hold, as POSIX's `SEM_VALUE_MAX` on
/// Linux.
///
/// # Examples
///
/// ```
/// assert!(mproc::Semaphore::new(mproc::SEM_VALUE_MAX + 1).is_err());
/// ```
pub const SEM_VALUE_MAX: u32 = i32::MAX as u32;

shm_state! {
    struct SemState {
        value: AtomicU32,
        sleepers: AtomicU32,
        async_waiters: AtomicU32,
    }
}

/// The shared part of both semaphores.
#[derive(Clone, Serialize, Deserialize)]
#[cfg_attr(not(feature = "tokio"), serde(transparent))]
struct Core {
    block: ShmBlock<SemState>,
    #[cfg(feature = "tokio")]
    bell: super::bell::Bell,
}

impl Core {
    fn new(value: u32) -> Result<Self> {
        if value > SEM_VALUE_MAX {
            return Err(Error::InvalidArgument(format!(
                "semaphore value {value} is larger than SEM_VALUE_MAX ({SEM_VALUE_MAX})"
            )));
        }
        let block = ShmBlock::<SemState>::create("mproc-semaphore", 0)?;
        block.header().value.store(value, Ordering::Release);
        Ok(Core {
            block,
            #[cfg(feature = "tokio")]
            bell: super::bell::Bell::new()?,
        })
    }

    fn state(&self) -> &SemState {
        self.block.header()
    }

    fn try_acquire(&self) -> bool {
        let value = &self.state().value;
        let mut v = value.load(Ordering::Relaxed);
        while v > 0 {
            match value.compare_exchange_weak(v, v - 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => v = now,
            }
        }
        false
    }

    /// Takes a permit, waiting until `deadline` (`None`: forever).
    fn acquire(&self, deadline: Option<Instant>) -> Result<bool> {
        if self.try_acquire() {
            return Ok(true);
        }
        let s = self.state();
        let got = futex::wait_until(&s.value, &s.sleepers, deadline, |_| {
            self.try_acquire().then_some(())
        })
        .map_err(Error::io("cannot wait on a semaphore"))?;
        Ok(got.is_some())
    }

    fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        if timeout.is_zero() {
            return Ok(self.try_acquire());
        }
        self.acquire(deadline_after(timeout))
    }

    /// Gives a permit back, refusing to pass `bound`.
    fn release(&self, bound: u32) -> Result<()> {
        let s = self.state();
        let mut v = s.value.load(Ordering::Relaxed);
        loop {
            if v >= bound {
                return Err(Error::InvalidState("semaphore released too many times"));
            }
            match s
                .value
                .compare_exchange_weak(v, v + 1, Ordering::SeqCst, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
        wake_sleepers(&s.value, &s.sleepers, 1);
        #[cfg(feature = "tokio")]
        self.bell.ring(&s.async_waiters);
        Ok(())
    }

    fn value(&self) -> u32 {
        self.state().value.load(Ordering::Relaxed)
    }
}

/// A semaphore shared between processes, as Python's
/// `multiprocessing.Semaphore`: a count of permits that
/// [`acquire`](Semaphore::acquire) takes (waiting while there is none) and
/// [`release`](Semaphore::release) gives back.
///
/// An uncontended acquire or release makes no system call. A semaphore has
/// no owner: any process may release, and a process killed while holding a
/// permit does not give it back (as in CPython and POSIX). A semaphore of
/// value 1 is the ownerless lock CPython's `Lock` is.
///
/// # Examples
///
/// At most two children in the section at once:
///
/// ```
/// use mproc::{Process, Semaphore};
///
/// fn work(sem: Semaphore) {
///     let _permit = sem.permit().unwrap();
///     // ... at most two processes here ...
/// }
///
/// let sem = Semaphore::new(2)?;
/// let mut children: Vec<_> = (0..4).map(|_| Process::new(work, sem.clone())).collect();
/// for p in &mut children {
///     p.start()?;
/// }
/// for p in &mut children {
///     p.join()?;
/// }
/// assert_eq!(sem.value(), 2);
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Semaphore {
    core: Core,
}

/// A semaphore that refuses to be released past its initial value, as
/// Python's `multiprocessing.BoundedSemaphore`: an extra
/// [`release`](BoundedSemaphore::release) is an error (it usually means a
/// bug), not a silent extra permit.
///
/// # Examples
///
/// ```
/// let sem = mproc::BoundedSemaphore::new(1)?;
/// sem.acquire()?;
/// sem.release()?;
/// assert!(sem.release().is_err()); // past the initial value
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct BoundedSemaphore {
    core: Core,
    bound: u32,
}

/// A permit of a [`Semaphore`] or [`BoundedSemaphore`], given back when
/// dropped.
///
/// # Examples
///
/// ```
/// let sem = mproc::Semaphore::new(1)?;
/// {
///     let _permit = sem.permit()?;
///     assert_eq!(sem.value(), 0);
/// }
/// assert_eq!(sem.value(), 1);
/// # Ok::<(), mproc::Error>(())
/// ```
#[must_use = "the permit is given back as soon as it is dropped"]
pub struct SemaphoreGuard<'a> {
    core: &'a Core,
    bound: u32,
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        // Fails only if someone else released past the bound meanwhile.
        let _ = self.core.release(self.bound);
    }
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SemaphoreGuard")
    }
}

macro_rules! semaphore_api {
    ($name:ident, $bound:expr) => {
        impl $name {
            /// Blocks until a permit is available and takes it. Give it back
            /// with [`release`](Self::release), or prefer
            /// [`permit`](Self::permit).
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let sem = mproc::", stringify!($name), "::new(1)?;")]
            /// sem.acquire()?;
            /// assert_eq!(sem.value(), 0);
            /// sem.release()?;
            /// # Ok::<(), mproc::Error>(())
            /// ```
            pub fn acquire(&self) -> Result<()> {
                self.core.acquire(None).map(drop)
            }

            /// As [`acquire`](Self::acquire), without blocking a thread
            /// (feature `tokio`): takes a permit, waiting in the runtime's
            /// reactor until one is released (in any process).
            ///
            /// Cancel-safe: the permit is taken only in the poll that
            /// completes the future; a future dropped before took nothing.
            /// The permit is then held until [`release`](Self::release):
            /// across `.await`s too, which is the point (and a permit held
            /// while awaiting something that needs it deadlocks, as with a
            /// blocking `acquire`).
            ///
            /// ```
            /// # #[tokio::main(flavor = "current_thread")]
            /// # async fn main() -> mproc::Result<()> {
            #[doc = concat!("let sem = mproc::", stringify!($name), "::new(1)?;")]
            /// sem.acquire_async().await?;
            /// assert!(!sem.try_acquire());
            /// sem.release()?;
            /// sem.acquire_async().await?;
            /// # Ok(())
            /// # }
            /// ```
            #[cfg(feature = "tokio")]
            #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
            pub async fn acquire_async(&self) -> Result<()> {
                let core = &self.core;
                core.bell
                    .wait(&core.state().async_waiters, || core.try_acquire())
                    .await
            }

            /// Takes a permit if one is available now.
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let sem = mproc::", stringify!($name), "::new(1)?;")]
            /// assert!(sem.try_acquire());
            /// assert!(!sem.try_acquire());
            /// # Ok::<(), mproc::Error>(())
            /// ```
            pub fn try_acquire(&self) -> bool {
                self.core.try_acquire()
            }

            /// Waits at most `timeout` for a permit; `false` if none came (a
            /// zero timeout only tries, as in Python).
            ///
            /// # Examples
            ///
            /// ```
            /// use std::time::Duration;
            #[doc = concat!("let sem = mproc::", stringify!($name), "::new(0)?;")]
            /// assert!(!sem.acquire_timeout(Duration::from_millis(10))?);
            /// # Ok::<(), mproc::Error>(())
            /// ```
            #[doc(alias = "acquire")]
            pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
                self.core.acquire_timeout(timeout)
            }

            /// Gives a permit back, waking one waiter if any.
            ///
            /// # Errors
            ///
            /// [`Error::InvalidState`] when the value would pass
            #[doc = $bound]
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let sem = mproc::", stringify!($name), "::new(1)?;")]
            /// assert!(sem.try_acquire());
            /// sem.release()?;
            /// assert_eq!(sem.value(), 1);
            /// # Ok::<(), mproc::Error>(())
            /// ```
            pub fn release(&self) -> Result<()> {
                self.core.release(self.bound())
            }

            /// The number of permits available now (a snapshot), Python's
            /// `get_value()`.
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let sem = mproc::", stringify!($name), "::new(3)?;")]
            /// assert_eq!(sem.value(), 3);
            /// # Ok::<(), mproc::Error>(())
            /// ```
            #[doc(alias = "get_value")]
            pub fn value(&self) -> u32 {
                self.core.value()
            }

            /// Blocks until a permit is available; it is given back when
            /// the guard is dropped (Python's `with sem:`).
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let sem = mproc::", stringify!($name), "::new(1)?;")]
            /// let permit = sem.permit()?;
            /// assert!(!sem.try_acquire());
            /// drop(permit);
            /// assert!(sem.try_acquire());
            /// # Ok::<(), mproc::Error>(())
            /// ```
            pub fn permit(&self) -> Result<SemaphoreGuard<'_>> {
                self.acquire()?;
                Ok(self.guard())
            }

            /// A permit if one is available now.
            ///
            /// # Examples
            ///
            /// ```
            #[doc = concat!("let sem = mproc::", stringify!($name), "::new(1)?;")]
            /// let first = sem.try_permit();
            /// assert!(first.is_some());
            /// assert!(sem.try_permit().is_none());
            /// # Ok::<(), mproc::Error>(())
            /// ```
            pub fn try_permit(&self) -> Option<SemaphoreGuard<'_>> {
                self.try_acquire().then(|| self.guard())
            }

            /// A permit if one comes within `timeout`.
            ///
            /// # Examples
            ///
            /// ```
            /// use std::time::Duration;
            #[doc = concat!("let sem = mproc::", stringify!($name), "::new(1)?;")]
            /// let first = sem.permit_timeout(Duration::from_millis(10))?;
            /// assert!(first.is_some());
            /// assert!(sem.permit_timeout(Duration::ZERO)?.is_none());
            /// # Ok::<(), mproc::Error>(())
            /// ```
            pub fn permit_timeout(&self, timeout: Duration) -> Result<Option<SemaphoreGuard<'_>>> {
                Ok(self.acquire_timeout(timeout)?.then(|| self.guard()))
            }

            fn guard(&self) -> SemaphoreGuard<'_> {
                SemaphoreGuard {
                    core: &self.core,
                    bound: self.bound(),
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("value", &self.value())
                    .finish()
            }
        }
    };
}

semaphore_api!(Semaphore, "[`SEM_VALUE_MAX`].");
semaphore_api!(
    BoundedSemaphore,
    "the initial value (or [`SEM_VALUE_MAX`])."
);

impl Semaphore {
    /// A semaphore holding `value` permits (Python's default is 1).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `value` exceeds [`SEM_VALUE_MAX`];
    /// [`Error::Io`] when shared memory cannot be had.
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = mproc::Semaphore::new(2)?;
    /// assert_eq!(sem.value(), 2);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn new(value: u32) -> Result<Self> {
        Ok(Semaphore {
            core: Core::new(value)?,
        })
    }

    fn bound(&self) -> u32 {
        SEM_VALUE_MAX
    }
}

impl BoundedSemaphore {
    /// A semaphore holding `value` permits, and never more.
    ///
    /// # Errors
    ///
    /// As [`Semaphore::new`].
    ///
    /// # Examples
    ///
    /// ```
    /// let sem = mproc::BoundedSemaphore::new(2)?;
    /// assert_eq!(sem.value(), 2);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn new(value: u32) -> Result<Self> {
        Ok(BoundedSemaphore {
            core: Core::new(value)?,
            bound: value,
        })
    }

    fn bound(&self) -> u32 {
        self.bound.min(SEM_VALUE_MAX)
    }
}
