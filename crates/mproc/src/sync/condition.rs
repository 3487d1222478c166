//! `Condition`: a condition variable in shared memory, over a `Lock` or an
//! `RLock`.
//!
//! # Shared state
//!
//! Waiters queue by ticket. Ticket `t` uses slot `t % SLOTS` of a ring; each
//! slot is its own futex word, so `notify(n)` wakes exactly the `n` oldest
//! waiters, each with its own `FUTEX_WAKE`, and nobody else.
//!
//! | word | values | changed by |
//! |---|---|---|
//! | `head` | oldest ticket that may still be waiting (wrapping) | `notify`, and a waiter that gives up, *holding the lock* |
//! | `tail` | next ticket to hand out (wrapping); `tail - head <= SLOTS` | a waiter registering, *holding the lock* |
//! | `slots[t % SLOTS].word` | `t << 2 \| 1` waiting, `t << 2 \| 2` notified, `t << 2 \| 3` cancelled, anything else: another ticket's, or unused | the waiter sets *waiting* and *cancelled*, `notify` sets *notified*, all *holding the lock*; the waiter reads it without |
//! | `slots[t % SLOTS].sleepers` | threads announced asleep on `word` | the waiter, around each `futex_wait` |
//!
//! **Wait.** Holding the lock: take ticket `t = tail`, mark its slot
//! *waiting*, `tail += 1`; then release every level of the lock, spin and
//! sleep until the slot's word is no longer `t`'s *waiting* (or the
//! deadline passes), and take the lock back at its former depth. A waiter
//! whose deadline passed looks at its slot again, holding the lock: still
//! *waiting* means not notified, so it marks the slot *cancelled* (notify
//! skips it); anything else means a notify chose it in the meantime, and it
//! reports being notified. Either way no notification is lost.
//!
//! **Notify(n).** Holding the lock: from `head`, mark up to `n` *waiting*
//! slots *notified*, skipping cancelled ones, waking each sleeper found;
//! move `head` past them. A slot is reused by ticket `t + SLOTS` only once
//! `head` has passed `t`; a waiter that sees its slot carry another ticket's
//! value was therefore notified long ago.
//!
//! Registering, notifying and cancelling happen only under the lock, so they
//! need no atomic read-modify-write among themselves; the waiter's lock-free
//! read of its slot and the futex protocol ([`futex::wait_until`]) are the
//! only races. Shared memory is untrusted: a `tail - head` larger than the
//! ring is clamped, a slot holding garbage is skipped (or, for its waiter,
//! ends the wait early): at worst a spurious or absorbed wake-up, never
//! undefined behaviour or a panic.
//!
//! A waiter killed while waiting keeps its slot *waiting*: one later
//! notification goes to it and wakes nobody (CPython behaves the same).
//! A lock holder killed in the middle of `notify` leaves a consistent ring:
//! each step is a single store.

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::lock::{Lock, LockGuard, RLock};
use super::mutex::SharedMutex;
use super::poison::{with_outcome, LockError, LockResult};
use super::{deadline_after, wake_sleepers, WAKE_ALL};
use crate::error::{Error, Result};
use crate::shm::block::{shm_state, ShmBlock};
use crate::sys::futex;
use crate::sys::remaining;

/// How many threads may wait on one condition at once; one more is an
/// error.
///
/// # Examples
///
/// ```
/// assert_eq!(mproc::MAX_CONDITION_WAITERS, 1024);
/// ```
pub const MAX_CONDITION_WAITERS: usize = 1024;

const SLOTS: u32 = MAX_CONDITION_WAITERS as u32;
const WAITING: u32 = 1;
const NOTIFIED: u32 = 2;
const CANCELLED: u32 = 3;

fn tag(ticket: u32, state: u32) -> u32 {
    (ticket << 2) | state
}

shm_state! {
    struct Slot {
        word: AtomicU32,
        sleepers: AtomicU32,
    }
}

shm_state! {
    struct CondState {
        head: AtomicU32,
        tail: AtomicU32,
        slots: [Slot; MAX_CONDITION_WAITERS],
    }
}

impl CondState {
    fn slot(&self, ticket: u32) -> &Slot {
        &self.slots[(ticket % SLOTS) as usize]
    }

    /// `head` and `tail`, with `head` clamped so that at most `SLOTS`
    /// tickets are pending (garbage cannot make the ring larger).
    fn bounds(&self) -> (u32, u32) {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Relaxed);
        if tail.wrapping_sub(head) > SLOTS {
            (tail.wrapping_sub(SLOTS), tail)
        } else {
            (head, tail)
        }
    }

    /// Moves `head` past tickets that no longer wait. Lock held.
    fn compact(&self) -> (u32, u32) {
        let (mut head, tail) = self.bounds();
        while head != tail && self.slot(head).word.load(Ordering::Relaxed) != tag(head, WAITING) {
            head = head.wrapping_add(1);
        }
        self.head.store(head, Ordering::Relaxed);
        (head, tail)
    }

    /// Takes a ticket and marks its slot waiting. Lock held.
    fn register(&self) -> Result<u32> {
        let (head, tail) = self.compact();
        if tail.wrapping_sub(head) >= SLOTS {
            return Err(Error::InvalidState(
                "too many waiters on one condition (MAX_CONDITION_WAITERS)",
            ));
        }
        self.slot(tail)
            .word
            .store(tag(tail, WAITING), Ordering::SeqCst);
        self.tail.store(tail.wrapping_add(1), Ordering::Relaxed);
        Ok(tail)
    }

    /// Marks up to `n` waiting tickets notified, oldest first, and wakes
    /// them. Lock held.
    fn notify(&self, mut n: usize) {
        let (mut head, tail) = self.bounds();
        while n > 0 && head != tail {
            let slot = self.slot(head);
            if slot.word.load(Ordering::Relaxed) == tag(head, WAITING) {
                slot.word.store(tag(head, NOTIFIED), Ordering::SeqCst);
                wake_sleepers(&slot.word, &slot.sleepers, WAKE_ALL);
                n -= 1;
            }
            head = head.wrapping_add(1);
        }
        self.head.store(head, Ordering::Relaxed);
        self.compact();
    }

    /// After a wait that was not seen to end by a notify: whether a notify
    /// chose `ticket` after all; if not, cancels it. Lock held.
    fn settle(&self, ticket: u32) -> bool {
        let slot = self.slot(ticket);
        if slot.word.load(Ordering::Relaxed) != tag(ticket, WAITING) {
            return true;
        }
        slot.word.store(tag(ticket, CANCELLED), Ordering::Relaxed);
        self.compact();
        false
    }
}

/// The lock of a [`Condition`]: a [`Lock`] or an [`RLock`].
///
/// # Examples
///
/// ```
/// use mproc::{Condition, Lock};
/// let cond = Condition::with_lock(Lock::new()?)?;
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ConditionLock {
    /// A non-re-entrant lock.
    Lock(Lock),
    /// A re-entrant lock (Python's default for a condition).
    RLock(RLock),
}

impl From<Lock> for ConditionLock {
    fn from(l: Lock) -> Self {
        ConditionLock::Lock(l)
    }
}

impl From<RLock> for ConditionLock {
    fn from(l: RLock) -> Self {
        ConditionLock::RLock(l)
    }
}

impl ConditionLock {
    fn mutex(&self) -> &SharedMutex {
        match self {
            ConditionLock::Lock(l) => l.shared_mutex(),
            ConditionLock::RLock(l) => l.shared_mutex(),
        }
    }
}

/// A condition variable shared between processes, as Python's
/// `multiprocessing.Condition`: threads (of any process) holding its lock
/// [`wait`](Condition::wait) until another [`notify`](Condition::notify)s
/// them.
///
/// The lock is a [`Lock`] or an [`RLock`] (the default, as in Python); take
/// it with [`lock`](Condition::lock) or [`acquire`](Condition::acquire).
/// Waiting or notifying without holding it is an error. A wait releases the
/// lock entirely (every level of an `RLock` held several times) and takes it
/// back at the same depth before returning.
///
/// `notify(n)` wakes exactly the `n` longest-waiting threads (fewer if fewer
/// wait), and a wait ends only when a notify issued after it began chooses
/// it, or when its timeout passes: there are no spurious wake-ups.
/// Re-checking the awaited state is still right (another thread may change
/// it before the lock comes back), and [`wait_for`](Condition::wait_for)
/// does it for you.
///
/// If a holder of the lock dies while a thread waits, that thread's wait
/// returns [`LockError::OwnerDied`] (holding the lock again).
///
/// # Limits
///
/// At most [`MAX_CONDITION_WAITERS`] threads may wait at once; one more is
/// an error. A waiter killed while waiting absorbs one later notification.
///
/// # Examples
///
/// ```
/// use mproc::{Condition, Process, Semaphore};
///
/// fn worker((cond, items): (Condition, Semaphore)) {
///     let _guard = cond.lock().unwrap();
///     items.release().unwrap();
///     cond.notify(1).unwrap();
/// }
///
/// let cond = Condition::new()?;
/// let items = Semaphore::new(0)?;
/// let _guard = cond.lock()?;
/// let mut p = Process::new(worker, (cond.clone(), items.clone()));
/// p.start()?;
/// cond.wait_for(|| items.value() > 0)?; // releases the lock while waiting
/// drop(_guard);
/// p.join()?;
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
pub struct Condition {
    lock: ConditionLock,
    block: ShmBlock<CondState>,
}

impl Condition {
    /// A condition over a new [`RLock`].
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = mproc::Condition::new()?;
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn new() -> Result<Self> {
        Self::with_lock(RLock::new()?)
    }

    /// A condition over `lock`, a [`Lock`] or an [`RLock`] (clone it first
    /// to keep a handle).
    ///
    /// # Examples
    ///
    /// ```
    /// use mproc::{Condition, RLock};
    /// let lock = RLock::new()?;
    /// let cond = Condition::with_lock(lock.clone())?;
    /// let _guard = cond.lock()?;
    /// assert!(lock.is_locked());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn with_lock(lock: impl Into<ConditionLock>) -> Result<Self> {
        Ok(Condition {
            lock: lock.into(),
            block: ShmBlock::create("mproc-condition", 0)?,
        })
    }

    fn state(&self) -> &CondState {
        self.block.header()
    }

    /// The condition's lock.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = mproc::Condition::new()?;
    /// assert!(matches!(cond.get_lock(), mproc::ConditionLock::RLock(_)));
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn get_lock(&self) -> &ConditionLock {
        &self.lock
    }

    /// Blocks until the lock is acquired, as [`Lock::acquire`].
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = mproc::Condition::new()?;
    /// cond.acquire()?;
    /// cond.notify_all()?;
    /// cond.release()?;
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn acquire(&self) -> LockResult<()> {
        match &self.lock {
            ConditionLock::Lock(l) => l.acquire(),
            ConditionLock::RLock(l) => l.acquire(),
        }
    }

    /// Waits at most `timeout` for the lock, as [`Lock::acquire_timeout`].
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = mproc::Condition::new()?;
    /// assert!(cond.acquire_timeout(std::time::Duration::ZERO)?);
    /// cond.release()?;
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "try_acquire")]
    pub fn acquire_timeout(&self, timeout: Duration) -> LockResult<bool> {
        match &self.lock {
            ConditionLock::Lock(l) => l.acquire_timeout(timeout),
            ConditionLock::RLock(l) => l.acquire_timeout(timeout),
        }
    }

    /// Releases one level of the lock, as [`Lock::release`].
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = mproc::Condition::new()?;
    /// assert!(cond.release().is_err()); // not held
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn release(&self) -> Result<()> {
        self.lock.mutex().release()
    }

    /// Blocks until the lock is acquired; released when the guard is
    /// dropped (Python's `with cond:`).
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = mproc::Condition::new()?;
    /// let guard = cond.lock()?;
    /// cond.notify(1)?;
    /// drop(guard);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn lock(&self) -> LockResult<LockGuard<'_>> {
        match &self.lock {
            ConditionLock::Lock(l) => l.lock(),
            ConditionLock::RLock(l) => l.lock(),
        }
    }

    /// Releases the lock, waits for a [`notify`](Self::notify), and takes
    /// the lock back.
    ///
    /// # Errors
    ///
    /// `LockError::Failed(Error::InvalidState)` when the calling thread does
    /// not hold the lock; [`LockError::OwnerDied`] when the lock was taken
    /// back from a holder that died (the lock is held again).
    ///
    /// # Examples
    ///
    /// ```
    /// use mproc::{Condition, Event, Process};
    ///
    /// fn wake((cond, started): (Condition, Event)) {
    ///     started.wait().unwrap();
    ///     let _guard = cond.lock().unwrap();
    ///     cond.notify_all().unwrap();
    /// }
    ///
    /// let (cond, started) = (Condition::new()?, Event::new()?);
    /// let guard = cond.lock()?;
    /// let mut p = Process::new(wake, (cond.clone(), started.clone()));
    /// p.start()?;
    /// started.set(); // the child notifies only once it holds the lock,
    /// cond.wait()?; // which it gets when this wait releases it
    /// drop(guard);
    /// p.join()?;
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn wait(&self) -> LockResult<()> {
        self.wait_deadline(None)
            .map(drop)
            .map_err(|e| e.map_owner(drop))
    }

    /// As [`wait`](Self::wait), for at most `timeout`: `true` if notified,
    /// `false` on timeout (the lock is held again either way). A zero
    /// timeout releases and retakes the lock without blocking.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let cond = mproc::Condition::new()?;
    /// let _guard = cond.lock()?;
    /// assert!(!cond.wait_timeout(Duration::from_millis(10))?);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "wait")]
    pub fn wait_timeout(&self, timeout: Duration) -> LockResult<bool> {
        self.wait_deadline(deadline_after(timeout))
    }

    /// Waits until `predicate` returns `true`, calling it with the lock held
    /// first and after each wake-up.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = mproc::Condition::new()?;
    /// let _guard = cond.lock()?;
    /// cond.wait_for(|| true)?; // returns at once
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn wait_for(&self, predicate: impl FnMut() -> bool) -> LockResult<()> {
        self.wait_for_deadline(predicate, None)
            .map(drop)
            .map_err(|e| e.map_owner(drop))
    }

    /// As [`wait_for`](Self::wait_for), for at most `timeout`; returns the
    /// predicate's last value (`false`: timed out).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let cond = mproc::Condition::new()?;
    /// let _guard = cond.lock()?;
    /// let mut calls = 0;
    /// let ok = cond.wait_for_timeout(|| { calls += 1; false }, Duration::from_millis(10))?;
    /// assert!(!ok && calls >= 1);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "wait_for")]
    pub fn wait_for_timeout(
        &self,
        predicate: impl FnMut() -> bool,
        timeout: Duration,
    ) -> LockResult<bool> {
        self.wait_for_deadline(predicate, deadline_after(timeout))
    }

    /// Wakes the `n` longest-waiting threads (all of them if fewer wait).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidState`] when the calling thread does not hold the
    /// lock.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = mproc::Condition::new()?;
    /// assert!(cond.notify(1).is_err()); // the lock is not held
    /// let _guard = cond.lock()?;
    /// cond.notify(2)?; // nobody waits: nothing happens
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn notify(&self, n: usize) -> Result<()> {
        if !self.lock.mutex().held_by_caller() {
            return Err(Error::InvalidState("cannot notify on an un-acquired lock"));
        }
        self.state().notify(n);
        Ok(())
    }

    /// Wakes every waiting thread.
    ///
    /// # Examples
    ///
    /// ```
    /// let cond = mproc::Condition::new()?;
    /// let _guard = cond.lock()?;
    /// cond.notify_all()?;
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "notifyAll")]
    pub fn notify_all(&self) -> Result<()> {
        self.notify(usize::MAX)
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> LockResult<bool> {
        let mutex = self.lock.mutex();
        if !mutex.held_by_caller() {
            return Err(LockError::Failed(Error::InvalidState(
                "cannot wait on an un-acquired lock",
            )));
        }
        let state = self.state();
        let ticket = state.register()?;
        let levels = match mutex.release_all() {
            Ok(levels) => levels,
            Err(e) => {
                state.settle(ticket);
                return Err(LockError::Failed(e));
            }
        };
        let slot = state.slot(ticket);
        let waiting = tag(ticket, WAITING);
        let woke = futex::wait_until(&slot.word, &slot.sleepers, deadline, |w| {
            (w != waiting).then_some(())
        });
        let relocked = mutex.reacquire(levels);
        if let Err(LockError::Failed(e)) = relocked {
            return Err(LockError::Failed(e));
        }
        let notified = matches!(woke, Ok(Some(()))) || state.settle(ticket);
        if let Err(e) = woke {
            return Err(LockError::Failed(Error::io("cannot wait on a condition")(
                e,
            )));
        }
        with_outcome(relocked.is_err(), notified)
    }

    fn wait_for_deadline(
        &self,
        mut predicate: impl FnMut() -> bool,
        deadline: Option<Instant>,
    ) -> LockResult<bool> {
        let mut result = predicate();
        while !result {
            if remaining(deadline) == Some(Duration::ZERO) {
                break;
            }
            if let Err(e) = self.wait_deadline(deadline) {
                let result = predicate();
                return Err(e.map_owner(|_| result));
            }
            result = predicate();
        }
        Ok(result)
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (head, tail) = self.state().bounds();
        f.debug_struct("Condition")
            .field("lock", &self.lock)
            .field("pending", &tail.wrapping_sub(head))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Garbage in the shared block: no panic, no hang, and the condition
    /// works again afterwards.
    #[test]
    fn garbage_state_is_survived() {
        let cond = Condition::new().unwrap();
        let s = cond.state();
        let _g = cond.lock().unwrap();
        for (head, tail) in [(0, u32::MAX), (u32::MAX, 5), (7, 7 + SLOTS), (3, 2)] {
            s.head.store(head, Ordering::Relaxed);
            s.tail.store(tail, Ordering::Relaxed);
            for (i, slot) in s.slots.iter().enumerate() {
                slot.word
                    .store((i as u32).wrapping_mul(0x9e37_79b9), Ordering::Relaxed);
                slot.sleepers.store(u32::MAX, Ordering::Relaxed);
            }
            cond.notify(3).unwrap();
            cond.notify_all().unwrap();
            let r = cond.wait_timeout(Duration::from_millis(1));
            assert!(r.is_ok(), "{r:?}");
            let (head, tail) = s.bounds();
            assert!(tail.wrapping_sub(head) <= SLOTS);
        }
    }

    #[test]
    fn a_full_ring_is_an_error() {
        let cond = Condition::new().unwrap();
        let s = cond.state();
        let _g = cond.lock().unwrap();
        s.head.store(0, Ordering::Relaxed);
        s.tail.store(SLOTS, Ordering::Relaxed);
        for t in 0..SLOTS {
            s.slot(t).word.store(tag(t, WAITING), Ordering::Relaxed);
        }
        assert!(matches!(
            cond.wait_timeout(Duration::ZERO),
            Err(LockError::Failed(Error::InvalidState(_)))
        ));
        cond.notify(1).unwrap(); // one slot free again
        assert!(!cond.wait_timeout(Duration::ZERO).unwrap());
    }
}
