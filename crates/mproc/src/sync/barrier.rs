//! `Barrier`: a meeting point for a fixed number of parties, in shared
//! memory.
//!
//! # Shared state
//!
//! | word | values | changed by |
//! |---|---|---|
//! | `state` (64 bits) | bits 32..=63: the cycle number (wrapping); bit 31: broken; bit 30: resetting; bits 0..=29: parties arrived in this cycle | arrivals (CAS `count + 1`); the last arrival (CAS to `(cycle + 1, 0)`); a timeout, `abort`, a failed action (set *broken*); `reset` (set *broken* and *resetting*, then CAS to `(cycle + 1, 0)`) |
//! | `ended_broken` (64 bits) | bit `c % 64`: cycle `c` ended broken (by `reset`), not released | cleared for cycle `c + 1` by whoever moves the barrier to it, *before* the move; set for `c` by `reset` before it moves on from broken cycle `c` |
//! | `seq` | bumped on every release, break and reset | the party that made the change, after it |
//! | `sleepers` | threads announced asleep on `seq` | waiters, around each `futex_wait` |
//!
//! A party's arrival is one CAS on `state`, which gives it its cycle and
//! its index (the count before it). The last party runs the action, then
//! moves the barrier to the next cycle; the others wait (spin, then sleep on
//! `seq`) until the cycle changes or the barrier breaks. Counting by cycles
//! rather than Python's *filling/draining* states means a released party
//! need not leave before the next cycle fills: a party killed between two
//! cycles blocks nobody.
//!
//! `reset` breaks the current cycle (its waiters leave with an error), then
//! moves to the next; in between, *resetting* makes arrivals wait for the
//! move rather than fail, as Python's `resetting` state does. A `reset`
//! killed in between leaves the barrier broken until the next `reset`.
//!
//! A waiter of cycle `c` that sees the cycle move on learns how `c` ended
//! from bit `c % 64` of `ended_broken`: released (clear) or reset while it
//! waited (set). The bit is exact as long as the barrier went through fewer
//! than 64 cycles before the waiter looked, which takes more processes than
//! parties and one of them descheduled for 64 whole cycles.
//!
//! A party killed while waiting makes the others wait forever — unless they
//! wait with a timeout (the barrier's default or their own), which breaks
//! the barrier for everyone. Any bit pattern is a state: garbage may break
//! or block a barrier, never cause undefined behaviour or a panic.

use std::fmt;
use std::panic::{catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{deadline_after, wake_sleepers, WAKE_ALL};
use crate::error::{Error, Result};
use crate::shm::block::{shm_state, ShmBlock};
use crate::sys::fnref::FnRef;
use crate::sys::{futex, image};

/// The largest number of parties a [`Barrier`] can have.
///
/// # Examples
///
/// ```
/// assert!(mproc::Barrier::new(mproc::MAX_PARTIES + 1).is_err());
/// ```
pub const MAX_PARTIES: u32 = (1 << 30) - 1;

const COUNT: u64 = MAX_PARTIES as u64;
const RESETTING: u64 = 1 << 30;
const BROKEN: u64 = 1 << 31;

shm_state! {
    struct BarrierState {
        state: AtomicU64,
        ended_broken: AtomicU64,
        seq: AtomicU32,
        sleepers: AtomicU32,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Snapshot {
    cycle: u32,
    count: u32,
    broken: bool,
    resetting: bool,
}

impl Snapshot {
    fn of(word: u64) -> Self {
        Snapshot {
            cycle: (word >> 32) as u32,
            count: (word & COUNT) as u32,
            broken: word & BROKEN != 0,
            resetting: word & RESETTING != 0,
        }
    }

    fn word(self) -> u64 {
        let flag = |set: bool, bit: u64| if set { bit } else { 0 };
        (u64::from(self.cycle) << 32)
            | u64::from(self.count)
            | flag(self.broken, BROKEN)
            | flag(self.resetting, RESETTING)
    }

    /// The first state of the cycle after this one.
    fn next(self) -> Snapshot {
        Snapshot {
            cycle: self.cycle.wrapping_add(1),
            count: 0,
            broken: false,
            resetting: false,
        }
    }
}

fn cycle_bit(cycle: u32) -> u64 {
    1 << (cycle % 64)
}

impl BarrierState {
    fn load(&self) -> Snapshot {
        Snapshot::of(self.state.load(Ordering::SeqCst))
    }

    fn cas(&self, from: Snapshot, to: Snapshot) -> bool {
        self.state
            .compare_exchange(from.word(), to.word(), Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    /// Tells the waiters that `state` changed.
    fn publish(&self) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        wake_sleepers(&self.seq, &self.sleepers, WAKE_ALL);
    }

    /// Moves from `from` (its cycle ended, released or broken) to the next
    /// cycle, empty. `false` if `state` was no longer `from`.
    fn advance(&self, from: Snapshot) -> bool {
        let next = from.next();
        self.ended_broken
            .fetch_and(!cycle_bit(next.cycle), Ordering::SeqCst);
        if from.broken {
            self.ended_broken
                .fetch_or(cycle_bit(from.cycle), Ordering::SeqCst);
        }
        let moved = self.cas(from, next);
        if moved {
            self.publish();
        }
        moved
    }

    /// Breaks `cycle` if it is still the current one and not broken.
    fn break_cycle(&self, cycle: u32) {
        loop {
            let s = self.load();
            if s.cycle != cycle || s.broken {
                return;
            }
            if self.cas(s, Snapshot { broken: true, ..s }) {
                self.publish();
                return;
            }
        }
    }

    /// How cycle `cycle`, which the barrier has left, ended.
    fn outcome(&self, cycle: u32, index: u32) -> Result<usize> {
        if self.ended_broken.load(Ordering::SeqCst) & cycle_bit(cycle) != 0 {
            Err(Error::BrokenBarrier)
        } else {
            Ok(index as usize)
        }
    }
}

/// What woke a waiting party.
enum Woken {
    Moved,
    Broken,
}

/// The action as this process knows it.
#[derive(Clone, Copy)]
enum Action {
    /// A function of this executable this process vouches for: it made the
    /// barrier, or received it from its parent, or vouches for the function
    /// otherwise (see `sys::fnref`).
    Local(FnRef<fn()>),
    /// Received from a process running another executable: not callable.
    Foreign,
}

/// A barrier shared between processes, as Python's
/// `multiprocessing.Barrier`: each of `parties` parties calls
/// [`wait`](Barrier::wait), and all are released together when the last
/// arrives; then the barrier is ready for the next cycle.
///
/// An optional action (a plain `fn()`) runs once per cycle, in the last
/// party to arrive, before the others are released. A party that times out,
/// an [`abort`](Barrier::abort), or an action that panics *breaks* the
/// barrier: every waiting and later party gets [`Error::BrokenBarrier`]
/// until [`reset`](Barrier::reset).
///
/// A party killed while others wait leaves them waiting unless they wait
/// with a timeout; give the barrier a default timeout
/// ([`BarrierBuilder::timeout`]) when parties may die.
///
/// # Trust
///
/// The action travels as the function's address in the executable. A
/// process runs only an action it vouches for: one it gave a barrier
/// itself, or received from its parent (in a child's arguments, a pool's
/// initializer). A barrier with any other action, received from a child,
/// a sibling or a peer (through a [`Connection`](crate::Connection), a
/// [`Queue`](crate::Queue)...), does not decode: the receiver gets
/// [`Error::UntrustedCode`] and nothing runs. So a child cannot make its
/// parent call a function of its choice, nor crash it with a garbage
/// address.
///
/// # Examples
///
/// ```
/// use mproc::{Barrier, Process};
///
/// fn party(barrier: Barrier) {
///     for _ in 0..3 {
///         barrier.wait().unwrap(); // all move in lockstep
///     }
/// }
///
/// let barrier = Barrier::new(3)?;
/// let mut children: Vec<_> = (0..2).map(|_| Process::new(party, barrier.clone())).collect();
/// for p in &mut children {
///     p.start()?;
/// }
/// for _ in 0..3 {
///     let index = barrier.wait()?; // 0, 1 or 2: unique in each cycle
///     assert!(index < 3);
/// }
/// for p in &mut children {
///     p.join()?;
/// }
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Clone, Serialize, Deserialize)]
#[serde(into = "Wire", try_from = "Wire")]
pub struct Barrier {
    block: ShmBlock<BarrierState>,
    parties: u32,
    timeout: Option<Duration>,
    action: Option<Action>,
}

/// Builds a [`Barrier`] with an action or a default timeout.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// fn announce() {
///     println!("everyone is here");
/// }
/// let barrier = mproc::Barrier::builder(1)
///     .action(announce)
///     .timeout(Duration::from_secs(5))
///     .build()?;
/// assert_eq!(barrier.wait()?, 0); // runs `announce`
/// # Ok::<(), mproc::Error>(())
/// ```
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct BarrierBuilder {
    parties: u32,
    timeout: Option<Duration>,
    action: Option<fn()>,
}

impl BarrierBuilder {
    /// Runs `action` once per cycle, in the last party to arrive, before
    /// the others are released. It is a plain `fn` so that whichever process
    /// arrives last can run it; a panic in it breaks the barrier and goes on
    /// in that party.
    ///
    /// # Examples
    ///
    /// ```
    /// fn action() {}
    /// let barrier = mproc::Barrier::builder(2).action(action).build()?;
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn action(mut self, action: fn()) -> Self {
        self.action = Some(action);
        self
    }

    /// The timeout of [`Barrier::wait`] (default: none, wait forever).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let barrier = mproc::Barrier::builder(2).timeout(Duration::from_millis(10)).build()?;
    /// assert!(barrier.wait().is_err()); // the other party never came
    /// assert!(barrier.is_broken());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The barrier.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] when `parties` is 0 or more than
    /// [`MAX_PARTIES`]; [`Error::Io`] when shared memory cannot be had.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(mproc::Barrier::builder(0).build().is_err());
    /// ```
    pub fn build(self) -> Result<Barrier> {
        check_parties(self.parties).map_err(Error::InvalidArgument)?;
        Ok(Barrier {
            block: ShmBlock::create("mproc-barrier", 0)?,
            parties: self.parties,
            timeout: self.timeout,
            action: self.action.map(|f| Action::Local(FnRef::new(f))),
        })
    }
}

fn check_parties(parties: u32) -> std::result::Result<(), String> {
    if parties == 0 || parties > MAX_PARTIES {
        return Err(format!(
            "a barrier needs 1 to {MAX_PARTIES} parties, not {parties}"
        ));
    }
    Ok(())
}

impl Barrier {
    /// A barrier for `parties` parties, with no action and no default
    /// timeout.
    ///
    /// # Errors
    ///
    /// As [`BarrierBuilder::build`].
    ///
    /// # Examples
    ///
    /// ```
    /// let barrier = mproc::Barrier::new(4)?;
    /// assert_eq!(barrier.parties(), 4);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn new(parties: u32) -> Result<Self> {
        Self::builder(parties).build()
    }

    /// A builder for a barrier with an action or a default timeout.
    ///
    /// # Examples
    ///
    /// ```
    /// let barrier = mproc::Barrier::builder(2).build()?;
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn builder(parties: u32) -> BarrierBuilder {
        BarrierBuilder {
            parties,
            timeout: None,
            action: None,
        }
    }

    fn state(&self) -> &BarrierState {
        self.block.header()
    }

    /// Waits until all parties have called `wait` (at most the barrier's
    /// default timeout, if it has one). Returns this party's index in the
    /// cycle, unique in `0..parties`: arrival order, so exactly one party
    /// gets 0 and the last (who ran the action) gets `parties - 1`.
    ///
    /// # Errors
    ///
    /// [`Error::BrokenBarrier`] when the barrier is or becomes broken, by a
    /// timeout (this party's included), an [`abort`](Self::abort), a
    /// [`reset`](Self::reset) while waiting or a failed action;
    /// [`Error::Timeout`] when the previous cycle did not finish releasing
    /// in time.
    ///
    /// # Panics
    ///
    /// When this party runs the action and it panics (after breaking the
    /// barrier).
    ///
    /// # Examples
    ///
    /// ```
    /// let barrier = mproc::Barrier::new(1)?;
    /// assert_eq!(barrier.wait()?, 0);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn wait(&self) -> Result<usize> {
        self.wait_deadline(self.timeout.and_then(deadline_after))
    }

    /// As [`wait`](Self::wait), for at most `timeout` (a zero timeout does
    /// not block: unless this party is the last, the barrier breaks).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let barrier = mproc::Barrier::new(2)?;
    /// let r = barrier.wait_timeout(Duration::from_millis(10));
    /// assert!(matches!(r, Err(mproc::Error::BrokenBarrier)));
    /// # Ok::<(), mproc::Error>(())
    /// ```
    #[doc(alias = "wait")]
    pub fn wait_timeout(&self, timeout: Duration) -> Result<usize> {
        self.wait_deadline(deadline_after(timeout))
    }

    /// Breaks the barrier: waiting and later parties get
    /// [`Error::BrokenBarrier`] until [`reset`](Self::reset). Useful to
    /// release everyone when a party cannot go on.
    ///
    /// # Examples
    ///
    /// ```
    /// let barrier = mproc::Barrier::new(2)?;
    /// barrier.abort();
    /// assert!(barrier.is_broken());
    /// assert!(barrier.wait().is_err());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn abort(&self) {
        let s = self.state().load();
        self.state().break_cycle(s.cycle);
    }

    /// Returns the barrier to its initial, empty state. Parties waiting now
    /// get [`Error::BrokenBarrier`]; a broken barrier becomes usable again.
    ///
    /// # Examples
    ///
    /// ```
    /// let barrier = mproc::Barrier::new(1)?;
    /// barrier.abort();
    /// barrier.reset();
    /// assert!(!barrier.is_broken());
    /// assert_eq!(barrier.wait()?, 0);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn reset(&self) {
        let state = self.state();
        loop {
            let s = state.load();
            if !s.broken && s.count == 0 {
                return;
            }
            let marked = Snapshot {
                broken: true,
                resetting: true,
                ..s
            };
            if s != marked && !state.cas(s, marked) {
                continue;
            }
            state.publish(); // the waiters of this cycle leave, broken
            if state.advance(marked) {
                return;
            }
        }
    }

    /// The number of parties needed to pass the barrier.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(mproc::Barrier::new(3)?.parties(), 3);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn parties(&self) -> usize {
        self.parties as usize
    }

    /// The number of parties waiting now (a snapshot; 0 when broken).
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(mproc::Barrier::new(3)?.n_waiting(), 0);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn n_waiting(&self) -> usize {
        let s = self.state().load();
        if s.broken {
            0
        } else {
            s.count.min(self.parties) as usize
        }
    }

    /// Whether the barrier is broken.
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(!mproc::Barrier::new(3)?.is_broken());
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn is_broken(&self) -> bool {
        self.state().load().broken
    }

    fn wait_deadline(&self, deadline: Option<Instant>) -> Result<usize> {
        let state = self.state();
        loop {
            let s = state.load();
            if s.broken && !s.resetting {
                return Err(Error::BrokenBarrier);
            }
            if s.resetting || s.count >= self.parties {
                // A reset, or the action of the last party, is under way.
                match self.await_change(s.cycle, deadline, true)? {
                    Some(Woken::Moved) => continue,
                    Some(Woken::Broken) => return Err(Error::BrokenBarrier),
                    None => return Err(Error::Timeout),
                }
            }
            let arrived = Snapshot {
                count: s.count + 1,
                ..s
            };
            if !state.cas(s, arrived) {
                continue;
            }
            return if arrived.count == self.parties {
                self.release(arrived)
            } else {
                self.await_release(s.cycle, s.count, deadline)
            };
        }
    }

    /// Spins, then sleeps until the cycle moves on or breaks (a reset
    /// breaks it only for a party already in it, not for an `arriving` one).
    fn await_change(
        &self,
        cycle: u32,
        deadline: Option<Instant>,
        arriving: bool,
    ) -> Result<Option<Woken>> {
        let state = self.state();
        futex::wait_until(&state.seq, &state.sleepers, deadline, |_| {
            let s = state.load();
            if s.cycle != cycle {
                Some(Woken::Moved)
            } else if s.broken && !(arriving && s.resetting) {
                Some(Woken::Broken)
            } else {
                None
            }
        })
        .map_err(Error::io("cannot wait on a barrier"))
    }

    fn await_release(&self, cycle: u32, index: u32, deadline: Option<Instant>) -> Result<usize> {
        let state = self.state();
        match self.await_change(cycle, deadline, false)? {
            Some(Woken::Moved) => state.outcome(cycle, index),
            Some(Woken::Broken) => Err(Error::BrokenBarrier),
            None => {
                state.break_cycle(cycle);
                if state.load().cycle != cycle {
                    // Released (or reset) just before the break.
                    return state.outcome(cycle, index);
                }
                Err(Error::BrokenBarrier)
            }
        }
    }

    /// The last party: runs the action, then releases the cycle.
    fn release(&self, full: Snapshot) -> Result<usize> {
        let state = self.state();
        match self.action {
            None => {}
            Some(Action::Local(action)) => {
                if let Err(panic) = catch_unwind(action.get()) {
                    state.break_cycle(full.cycle);
                    resume_unwind(panic);
                }
            }
            Some(Action::Foreign) => {
                state.break_cycle(full.cycle);
                return Err(Error::InvalidState(
                    "the barrier's action belongs to another executable",
                ));
            }
        }
        if state.advance(full) {
            Ok(full.count as usize - 1)
        } else {
            // Aborted or reset while the action ran.
            Err(Error::BrokenBarrier)
        }
    }
}

impl fmt::Debug for Barrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties)
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.is_broken())
            .finish()
    }
}

/// A barrier on the wire: the action travels as an offset in this
/// executable, with the executable's identity. A receiver keeps the action
/// only if it vouches for that offset as a `fn()`; otherwise the barrier
/// does not decode ([`Error::UntrustedCode`]): a peer cannot make this
/// process call an address of its choice, and a barrier this process holds
/// always has an action it may pass on to its own children.
#[derive(Serialize, Deserialize)]
struct Wire {
    block: ShmBlock<BarrierState>,
    parties: u32,
    timeout: Option<Duration>,
    action: Option<(i64, Vec<u8>)>,
}

impl From<Barrier> for Wire {
    fn from(b: Barrier) -> Wire {
        let action = match b.action {
            None => None,
            Some(Action::Local(f)) => Some((f.offset(), image::identity().to_vec())),
            // Not ours to call, nor to describe: the receiver cannot call it either.
            Some(Action::Foreign) => Some((0, Vec::new())),
        };
        Wire {
            block: b.block,
            parties: b.parties,
            timeout: b.timeout,
            action,
        }
    }
}

impl TryFrom<Wire> for Barrier {
    type Error = String;

    fn try_from(w: Wire) -> std::result::Result<Barrier, String> {
        check_parties(w.parties)?;
        let action = match w.action {
            None => None,
            Some((offset, identity)) if identity == image::identity() => Some(Action::Local(
                FnRef::checked(offset).map_err(crate::codec::refuse_untrusted)?,
            )),
            Some(_) => Some(Action::Foreign),
        };
        Ok(Barrier {
            block: w.block,
            parties: w.parties,
            timeout: w.timeout,
            action,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Garbage in the shared block: an error or a timeout, never a panic;
    /// `reset` repairs it.
    #[test]
    fn garbage_state_is_survived() {
        let barrier = Barrier::new(3).unwrap();
        let s = barrier.state();
        for word in [
            u64::MAX,
            COUNT,
            BROKEN | 2,
            RESETTING,
            0xdead_beef_0000_0005,
        ] {
            s.state.store(word, Ordering::Relaxed);
            s.ended_broken.store(u64::MAX, Ordering::Relaxed);
            let r = barrier.wait_timeout(Duration::from_millis(1));
            assert!(r.is_err(), "{word:#x}: {r:?}");
            let _ = (barrier.n_waiting(), barrier.is_broken());
            barrier.reset();
            assert!(!barrier.is_broken());
            assert_eq!(barrier.n_waiting(), 0);
        }
    }

    #[test]
    fn a_barrier_with_foreign_action_breaks_instead_of_calling_it() {
        let mut barrier = Barrier::new(1).unwrap();
        barrier.action = Some(Action::Foreign);
        assert!(matches!(barrier.wait(), Err(Error::InvalidState(_))));
        assert!(barrier.is_broken());
    }

    #[test]
    fn parties_out_of_range_are_refused_on_receipt() {
        let barrier = Barrier::new(2).unwrap();
        let mut wire = Wire::from(barrier);
        wire.parties = 0;
        assert!(Barrier::try_from(wire).is_err());
    }
}
