//! `LockProxy` and `EventProxy`: a lock and an event held by the server.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::protocol::{BarrierOp, EventOp, LockOp, Op, ReentrantOp, SemaphoreOp};
use super::proxy::Handle;
use crate::error::{Error, Result};

fn micros(d: Duration) -> Option<u64> {
    Some(d.as_micros().min(u64::MAX as u128) as u64)
}

/// A proxy to a lock in a [`Manager`](crate::Manager)'s server (Python's
/// `manager.Lock()`, an `AcquirerProxy`).
///
/// The lock has no owner: any proxy may release it, and a lock acquired by
/// a process that then exits stays locked until someone releases it (as
/// CPython's). For a lock in shared memory that survives its holder's
/// death, use [`Lock`](crate::Lock).
///
/// A proxy waiting in [`acquire`](LockProxy::acquire) holds its own
/// connection: give each thread its own clone.
///
/// ```
/// use std::time::Duration;
///
/// let m = mproc::Manager::start()?;
/// let lock = m.lock()?;
/// lock.acquire()?;
/// assert!(!lock.clone().acquire_timeout(Duration::from_millis(10))?);
/// lock.release()?;
/// assert!(lock.release().is_err()); // not held
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LockProxy {
    pub(crate) handle: Handle,
}

impl LockProxy {
    /// Waits until the lock is free and takes it.
    pub fn acquire(&self) -> Result<()> {
        self.handle.call::<bool>(Op::Lock(LockOp::Acquire(None)))?;
        Ok(())
    }

    /// Takes the lock if it becomes free within `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.handle.call(Op::Lock(LockOp::Acquire(micros(timeout))))
    }

    /// Takes the lock if it is free now (`acquire(blocking=False)`).
    pub fn try_acquire(&self) -> Result<bool> {
        self.acquire_timeout(Duration::ZERO)
    }

    /// Frees the lock; [`RemoteError::NotLocked`](crate::RemoteError) if
    /// it is not held.
    pub fn release(&self) -> Result<()> {
        self.handle.call(Op::Lock(LockOp::Release))
    }

    /// Whether someone holds the lock.
    pub fn locked(&self) -> Result<bool> {
        self.handle.call(Op::Lock(LockOp::Locked))
    }
}

/// A proxy to an event in a [`Manager`](crate::Manager)'s server (Python's
/// `manager.Event()`).
///
/// ```
/// let m = mproc::Manager::start()?;
/// let e = m.event()?;
/// assert!(!e.is_set()?);
/// e.set()?;
/// assert!(e.wait_timeout(std::time::Duration::ZERO)?);
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventProxy {
    pub(crate) handle: Handle,
}

impl EventProxy {
    /// Sets the flag and wakes every waiter.
    pub fn set(&self) -> Result<()> {
        self.handle.call(Op::Event(EventOp::Set))
    }

    /// Clears the flag.
    pub fn clear(&self) -> Result<()> {
        self.handle.call(Op::Event(EventOp::Clear))
    }

    /// Whether the flag is set.
    pub fn is_set(&self) -> Result<bool> {
        self.handle.call(Op::Event(EventOp::IsSet))
    }

    /// Waits until the flag is set.
    pub fn wait(&self) -> Result<()> {
        self.handle.call::<bool>(Op::Event(EventOp::Wait(None)))?;
        Ok(())
    }

    /// Waits up to `timeout`; returns whether the flag is set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.handle.call(Op::Event(EventOp::Wait(micros(timeout))))
    }
}

/// A proxy to a semaphore in a [`Manager`](crate::Manager)'s server
/// (Python's `manager.Semaphore(n)` and `manager.BoundedSemaphore(n)`).
///
/// ```
/// let m = mproc::Manager::start()?;
/// let s = m.bounded_semaphore(1)?;
/// assert!(s.try_acquire()?);
/// assert!(!s.try_acquire()?);
/// s.release()?;
/// assert!(s.release().is_err()); // over its bound
/// assert_eq!(s.value()?, 1);
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SemaphoreProxy {
    pub(crate) handle: Handle,
}

impl SemaphoreProxy {
    /// Waits until the count is positive and decrements it.
    pub fn acquire(&self) -> Result<()> {
        self.handle
            .call::<bool>(Op::Semaphore(SemaphoreOp::Acquire(None)))
            .map(drop)
    }

    /// As [`acquire`](SemaphoreProxy::acquire), for at most `timeout`;
    /// returns whether it decremented.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.handle
            .call(Op::Semaphore(SemaphoreOp::Acquire(micros(timeout))))
    }

    /// Decrements if the count is positive now.
    pub fn try_acquire(&self) -> Result<bool> {
        self.acquire_timeout(Duration::ZERO)
    }

    /// Increments the count; for a bounded semaphore, past its initial
    /// value is [`RemoteError::Failed`](crate::RemoteError).
    pub fn release(&self) -> Result<()> {
        self.handle.call(Op::Semaphore(SemaphoreOp::Release))
    }

    /// The count now.
    pub fn value(&self) -> Result<u64> {
        self.handle.call(Op::Semaphore(SemaphoreOp::Value))
    }
}

/// A proxy to a barrier in a [`Manager`](crate::Manager)'s server
/// (Python's `manager.Barrier(parties)`). A wait that times out breaks the
/// barrier; a broken barrier's waits fail with [`Error::BrokenBarrier`].
///
/// ```
/// use std::time::Duration;
/// use mproc::Error;
///
/// let m = mproc::Manager::start()?;
/// let b = m.barrier(2)?;
/// assert!(matches!(b.wait_timeout(Duration::from_millis(5)), Err(Error::BrokenBarrier)));
/// assert!(b.broken()?);
/// b.reset()?;
/// assert!(!b.broken()?);
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BarrierProxy {
    pub(crate) handle: Handle,
}

impl BarrierProxy {
    fn wait_within(&self, us: Option<u64>) -> Result<u64> {
        let index: Option<u64> = self.handle.call(Op::Barrier(BarrierOp::Wait(us)))?;
        index.ok_or(Error::BrokenBarrier)
    }

    /// Waits until every party arrived; returns this caller's arrival
    /// index (`0..parties`).
    pub fn wait(&self) -> Result<u64> {
        self.wait_within(None)
    }

    /// As [`wait`](BarrierProxy::wait), breaking the barrier after
    /// `timeout`.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u64> {
        self.wait_within(micros(timeout))
    }

    /// Breaks the barrier: current and future waits fail.
    pub fn abort(&self) -> Result<()> {
        self.handle.call(Op::Barrier(BarrierOp::Abort))
    }

    /// Back to the initial state; current waiters fail.
    pub fn reset(&self) -> Result<()> {
        self.handle.call(Op::Barrier(BarrierOp::Reset))
    }

    /// The number of parties waiting now.
    pub fn n_waiting(&self) -> Result<u64> {
        self.handle.call(Op::Barrier(BarrierOp::Waiting))
    }

    /// Whether the barrier is broken.
    pub fn broken(&self) -> Result<bool> {
        self.handle.call(Op::Barrier(BarrierOp::Broken))
    }

    /// The number of parties it waits for.
    pub fn parties(&self) -> Result<u64> {
        self.handle.call(Op::Barrier(BarrierOp::Parties))
    }
}

/// A proxy to a reentrant lock in a [`Manager`](crate::Manager)'s server
/// (Python's `manager.RLock()`). Its owner is the proxy handle: the holder
/// may acquire it again and must release it as many times; a clone (or a
/// copy in another process) is another owner.
///
/// ```
/// use mproc::{Error, RemoteError};
///
/// let m = mproc::Manager::start()?;
/// let r = m.rlock()?;
/// r.acquire()?;
/// r.acquire()?;
/// let other = r.clone();
/// assert!(!other.try_acquire()?);
/// assert!(matches!(other.release(), Err(Error::Remote(RemoteError::NotOwner))));
/// r.release()?;
/// r.release()?;
/// assert!(other.try_acquire()?);
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RLockProxy {
    pub(crate) handle: Handle,
}

impl RLockProxy {
    fn call<R: serde::de::DeserializeOwned>(&self, op: ReentrantOp) -> Result<R> {
        self.handle.call(Op::Reentrant(op))
    }

    /// Takes the lock (again, if this proxy holds it).
    pub fn acquire(&self) -> Result<()> {
        self.call::<bool>(ReentrantOp::Acquire(None)).map(drop)
    }

    /// Takes the lock if possible within `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.call(ReentrantOp::Acquire(micros(timeout)))
    }

    /// Takes the lock if possible now.
    pub fn try_acquire(&self) -> Result<bool> {
        self.acquire_timeout(Duration::ZERO)
    }

    /// Releases one level; [`RemoteError::NotOwner`](crate::RemoteError)
    /// if this proxy does not hold it.
    pub fn release(&self) -> Result<()> {
        self.call(ReentrantOp::Release)
    }
}

/// A proxy to a condition variable in a [`Manager`](crate::Manager)'s
/// server (Python's `manager.Condition()`), with its own reentrant lock.
///
/// ```
/// use std::time::Duration;
///
/// let m = mproc::Manager::start()?;
/// let c = m.condition()?;
/// c.acquire()?;
/// assert!(!c.wait_timeout(Duration::from_millis(5))?); // nobody notified
/// c.notify_all()?;
/// c.release()?;
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConditionProxy {
    pub(crate) handle: Handle,
}

impl ConditionProxy {
    fn call<R: serde::de::DeserializeOwned>(&self, op: ReentrantOp) -> Result<R> {
        self.handle.call(Op::Reentrant(op))
    }

    /// Takes the underlying lock.
    pub fn acquire(&self) -> Result<()> {
        self.call::<bool>(ReentrantOp::Acquire(None)).map(drop)
    }

    /// Takes the underlying lock if possible within `timeout`.
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<bool> {
        self.call(ReentrantOp::Acquire(micros(timeout)))
    }

    /// Releases the underlying lock.
    pub fn release(&self) -> Result<()> {
        self.call(ReentrantOp::Release)
    }

    /// Releases the lock, waits for a notification, takes the lock back.
    /// The caller must hold the lock.
    pub fn wait(&self) -> Result<()> {
        self.call::<bool>(ReentrantOp::Wait(None)).map(drop)
    }

    /// As [`wait`](ConditionProxy::wait), for at most `timeout`; returns
    /// whether it was notified.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool> {
        self.call(ReentrantOp::Wait(micros(timeout)))
    }

    /// Wakes up to `n` waiters; the caller must hold the lock.
    pub fn notify(&self, n: u64) -> Result<()> {
        self.call(ReentrantOp::Notify(n))
    }

    /// Wakes every waiter; the caller must hold the lock.
    pub fn notify_all(&self) -> Result<()> {
        self.notify(u64::MAX)
    }
}
