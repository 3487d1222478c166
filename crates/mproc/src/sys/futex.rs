//! Futex wait/wake on words that may live in `MAP_SHARED` memory.
//!
//! Never `FUTEX_PRIVATE_FLAG`: a private futex is keyed by the address space
//! and does not wake another process.
//!
//! # Protocol
//!
//! A waiter spins briefly (adaptively, see [`SpinBudget`]) on the condition,
//! then announces itself in a `sleepers` counter and sleeps on the word. A
//! waker changes the word first and calls `FUTEX_WAKE` only when `sleepers`
//! is non-zero, so an uncontended hand-off makes no syscall. Both sides use
//! sequentially consistent operations on the word and the counter, so either
//! the waker sees the sleeper or the sleeper sees the new word (Dekker).
//!
//! A process killed while asleep leaves `sleepers` one too high: wakers then
//! make a needless syscall, never a lost wake-up.

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustix::thread::futex::{self, Flags};

use super::{remaining, timespec};

/// Sleeps while `*word == expected`, at most `timeout`.
///
/// Returns on a wake-up, a changed word, a signal or the timeout alike: the
/// caller re-checks its condition.
pub(crate) fn wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) -> io::Result<()> {
    let ts = timeout.map(timespec);
    match futex::wait(word, Flags::empty(), expected, ts.as_ref()) {
        Ok(()) => Ok(()),
        Err(e)
            if e == rustix::io::Errno::AGAIN
                || e == rustix::io::Errno::TIMEDOUT
                || e == rustix::io::Errno::INTR =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Wakes up to `n` processes sleeping on `word`.
pub(crate) fn wake(word: &AtomicU32, n: u32) {
    // FUTEX_WAKE can fail only for a bad address, which a reference is not.
    let _ = futex::wake(word, Flags::empty(), n);
}

const MIN_SPIN: Duration = Duration::from_micros(2);
const MAX_SPIN: Duration = Duration::from_micros(60);
/// Spinning longer than this yields the CPU between looks.
const YIELD_AFTER: Duration = Duration::from_micros(1);

thread_local! {
    static SPIN_NANOS: Cell<u64> = const { Cell::new(20_000) };
}

/// The adaptive spin budget of the calling thread: doubled when a spin ends
/// in success, halved when the waiter had to sleep anyway. Bounded so that an
/// oversubscribed machine loses at most [`MAX_SPIN`] per wait.
struct SpinBudget;

impl SpinBudget {
    fn get() -> Duration {
        Duration::from_nanos(SPIN_NANOS.with(Cell::get))
    }
    fn reward() {
        SPIN_NANOS.with(|c| c.set((c.get() * 2).min(MAX_SPIN.as_nanos() as u64)));
    }
    fn punish() {
        SPIN_NANOS.with(|c| c.set((c.get() / 2).max(MIN_SPIN.as_nanos() as u64)));
    }
}

/// Waits until `check` returns `Some`, spinning briefly, then sleeping on
/// `word` (announced in `sleepers`). `check` is given the word's value.
///
/// Returns `None` when `deadline` passes first. A `slice` bounds each sleep,
/// so that callers can look at things a futex cannot tell (a dead peer).
pub(crate) fn wait_until<T>(
    word: &AtomicU32,
    sleepers: &AtomicU32,
    deadline: Option<Instant>,
    check: impl FnMut(u32) -> Option<T>,
) -> io::Result<Option<T>> {
    wait_until_napping(word, sleepers, deadline, None, check)
}

/// As [`wait_until`], but no sleep lasts longer than `nap`: the waiter then
/// looks at its condition again, whether woken or not. For waiters whose
/// waker may be killed between making the condition true and waking them
/// (the wake-up is lost with it): a nap bounds the loss. Costs nothing
/// before the waiter goes to sleep.
pub(crate) fn wait_until_napping<T>(
    word: &AtomicU32,
    sleepers: &AtomicU32,
    deadline: Option<Instant>,
    nap: Option<Duration>,
    check: impl FnMut(u32) -> Option<T>,
) -> io::Result<Option<T>> {
    wait_inner(word, sleepers, deadline, nap, false, check)
}

fn wait_inner<T>(
    word: &AtomicU32,
    sleepers: &AtomicU32,
    deadline: Option<Instant>,
    nap: Option<Duration>,
    heavy: bool,
    mut check: impl FnMut(u32) -> Option<T>,
) -> io::Result<Option<T>> {
    if let Some(v) = check(word.load(Ordering::SeqCst)) {
        return Ok(Some(v));
    }
    if let Some(v) = spin(word, deadline, &mut check) {
        SpinBudget::reward();
        return Ok(Some(v));
    }
    SpinBudget::punish();
    loop {
        let left = remaining(deadline);
        if left == Some(Duration::ZERO) {
            return Ok(check(word.load(Ordering::SeqCst)));
        }
        sleepers.fetch_add(1, Ordering::SeqCst);
        if heavy {
            heavy_fence();
        }
        let seen = word.load(Ordering::SeqCst);
        let ready = check(seen);
        if ready.is_none() {
            let sleep = match (left, nap) {
                (Some(left), Some(nap)) => Some(left.min(nap)),
                (left, nap) => left.or(nap),
            };
            let r = wait(word, seen, sleep);
            sleepers.fetch_sub(1, Ordering::SeqCst);
            r?;
            continue;
        }
        sleepers.fetch_sub(1, Ordering::SeqCst);
        return Ok(ready);
    }
}

fn spin<T>(
    word: &AtomicU32,
    deadline: Option<Instant>,
    check: &mut impl FnMut(u32) -> Option<T>,
) -> Option<T> {
    let start = Instant::now();
    let mut budget = SpinBudget::get();
    if let Some(d) = deadline {
        budget = budget.min(d.saturating_duration_since(start));
    }
    // Look at the word every four `pause`s (about 10 to 140 cycles each,
    // ~20 ns on the reference Xeon), so a change is seen within a fraction
    // of a microsecond; read the clock only every 16 looks. Looking after
    // every `pause` was tried: pipe round trips did not change (0.84-0.85
    // against 0.85-0.88 µs, interleaved) but a queue's small-item
    // throughput fell from ~4.0 to 2.7-3.6 M/s: a waiter that reads the
    // word that often pulls its line back from the writer after every
    // store, and each next store must take it again.
    loop {
        for _ in 0..16 {
            for _ in 0..4 {
                std::hint::spin_loop();
            }
            if let Some(v) = check(word.load(Ordering::Acquire)) {
                return Some(v);
            }
        }
        let spent = start.elapsed();
        if spent >= budget {
            return None;
        }
        if spent >= YIELD_AFTER {
            // The peer may be waiting for this very CPU.
            std::thread::yield_now();
        }
    }
}

/// As [`wait_until`], for a waker that announces its change with
/// [`light_fence`] rather than a `SeqCst` store: the waiter announces
/// itself, then runs [`heavy_fence`] before its last look.
pub(crate) fn wait_until_fenced<T>(
    word: &AtomicU32,
    sleepers: &AtomicU32,
    deadline: Option<Instant>,
    check: impl FnMut(u32) -> Option<T>,
) -> io::Result<Option<T>> {
    wait_inner(word, sleepers, deadline, None, true, check)
}

/// Asymmetric fences (`membarrier(2)`): whether this kernel has them
/// (`MEMBARRIER_CMD_GLOBAL_EXPEDITED`), and whether this process is
/// registered to receive them. Registration is kept across `fork` (the
/// kernel copies it with the address space) and lost at `exec`, like this
/// static.
#[derive(Clone, Copy)]
struct Membarrier {
    supported: bool,
    registered: bool,
}

/// [`Membarrier`] as one byte: 0 while not yet probed, else 1 + the
/// two flags. Not a `OnceLock`: a `fork` while another thread was inside
/// its initialisation would leave the child waiting for that thread for
/// ever (seen: a `Fork` child stuck in its first send). Two threads that
/// probe at once both register, which the kernel allows.
static MEMBARRIER: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

fn membarrier() -> Membarrier {
    use rustix::thread::{membarrier, membarrier_query, MembarrierCommand as C};
    let known = MEMBARRIER.load(Ordering::Acquire);
    if known != 0 {
        let bits = known - 1;
        return Membarrier {
            supported: bits & 1 != 0,
            registered: bits & 2 != 0,
        };
    }
    let q = membarrier_query();
    let supported =
        q.contains_command(C::GlobalExpedited) && q.contains_command(C::RegisterGlobalExpedited);
    let registered = supported && membarrier(C::RegisterGlobalExpedited).is_ok();
    MEMBARRIER.store(
        1 + u8::from(supported) + 2 * u8::from(registered),
        Ordering::Release,
    );
    Membarrier {
        supported,
        registered,
    }
}

/// The cheap side of a store-then-load (Dekker) pair whose other side runs
/// [`heavy_fence`]: between a store that a sleeper waits for and the load
/// of its sleepers counter. Only a compiler fence where the kernel can
/// make the other side's fence reach this CPU (the hand-off's fast path
/// then has no `mfence`/locked instruction: ~15 ns of ~70 on the
/// reference machine); a full fence otherwise.
#[inline]
pub(crate) fn light_fence() {
    if membarrier().registered {
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
    } else {
        std::sync::atomic::fence(Ordering::SeqCst);
    }
}

/// The expensive side of the pair (see [`light_fence`]): a full fence on
/// this CPU and on every CPU running a registered process (~1 µs, an
/// inter-processor interrupt). For the rare side: a waiter about to sleep.
pub(crate) fn heavy_fence() {
    use rustix::thread::MembarrierCommand as C;
    std::sync::atomic::fence(Ordering::SeqCst);
    if membarrier().supported {
        // Cannot fail once supported (no registration is needed to send);
        // were it to, a waker's light fence may be missed: the pipe's
        // waiters sleep in slices and look again, so a wake-up would be
        // late, not lost.
        let _ = rustix::thread::membarrier(C::GlobalExpedited);
    }
}

/// A lock for the threads of one process whose release is a plain store:
/// an uncontended acquire + release costs one atomic read-modify-write
/// (`std::sync::Mutex` releases with a `swap`, a second one: ~15 ns each
/// on the reference machine, a third of a pipe message's cost).
///
/// Without a fence between the releaser's store and its look at `waiters`,
/// a waiter that announces itself just then may be missed: so a waiter
/// sleeps at most [`NAP`](TurnLock::NAP) at a time and looks again. A
/// missed wake-up costs that much, once, and only under contention.
pub(crate) struct TurnLock<T> {
    /// 0: free, 1: held.
    state: AtomicU32,
    /// Threads asleep (or about to be) on `state`.
    waiters: AtomicU32,
    data: std::cell::UnsafeCell<T>,
}

// SAFETY: `data` is reached only through a guard, and one guard exists at a
// time (the `state` word's acquire/release), as with `std::sync::Mutex`.
unsafe impl<T: Send> Sync for TurnLock<T> {}

/// The holder of a [`TurnLock`]: access to its data until dropped.
pub(crate) struct TurnGuard<'a, T> {
    lock: &'a TurnLock<T>,
}

impl<T> TurnLock<T> {
    /// The longest sleep of a waiter between looks.
    const NAP: Duration = Duration::from_millis(1);

    pub(crate) fn new(data: T) -> Self {
        TurnLock {
            state: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
            data: std::cell::UnsafeCell::new(data),
        }
    }

    /// Takes the lock if it is free.
    pub(crate) fn try_lock(&self) -> Option<TurnGuard<'_, T>> {
        self.state
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| TurnGuard { lock: self })
    }

    /// Takes the lock, waiting for it.
    pub(crate) fn lock(&self) -> TurnGuard<'_, T> {
        if let Some(g) = self.try_lock() {
            return g;
        }
        let mut spins = 0u32;
        loop {
            if self.state.load(Ordering::Relaxed) == 0 {
                if let Some(g) = self.try_lock() {
                    return g;
                }
            }
            spins += 1;
            if spins < 100 {
                std::hint::spin_loop();
                continue;
            }
            self.waiters.fetch_add(1, Ordering::SeqCst);
            if self.state.load(Ordering::SeqCst) != 0 {
                let _ = wait(&self.state, 1, Some(Self::NAP));
            }
            self.waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl<T> std::ops::Deref for TurnGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: this guard holds the lock (see `TurnLock`'s `Sync`).
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> std::ops::DerefMut for TurnGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard holds the lock, and `&mut self` makes the
        // reference unique.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for TurnGuard<'_, T> {
    fn drop(&mut self) {
        self.lock.state.store(0, Ordering::Release);
        if self.lock.waiters.load(Ordering::Relaxed) != 0 {
            wake(&self.lock.state, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn wait_returns_when_value_differs() {
        let w = AtomicU32::new(1);
        wait(&w, 0, None).unwrap();
    }

    #[test]
    fn wait_until_times_out() {
        let w = AtomicU32::new(0);
        let s = AtomicU32::new(0);
        let d = Instant::now() + Duration::from_millis(20);
        let r = wait_until(&w, &s, Some(d), |v| (v == 1).then_some(())).unwrap();
        assert!(r.is_none());
        assert!(Instant::now() >= d);
        assert_eq!(s.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_turn_lock_keeps_threads_apart() {
        let lock = TurnLock::new((0u64, 0u64));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for i in 0..20_000u64 {
                        let mut g = lock.lock();
                        g.0 += 1;
                        if i % 1000 == 0 {
                            // Held across a sleep: the others must wait.
                            std::thread::sleep(Duration::from_micros(200));
                        }
                        g.1 += 1;
                        assert_eq!(g.0, g.1);
                    }
                });
            }
        });
        assert_eq!(*lock.lock(), (80_000, 80_000));
        let g = lock.lock();
        assert!(lock.try_lock().is_none());
        drop(g);
        assert!(lock.try_lock().is_some());
    }

    #[test]
    fn wake_reaches_a_sleeper() {
        let w = Arc::new(AtomicU32::new(0));
        let s = Arc::new(AtomicU32::new(0));
        let (w2, s2) = (w.clone(), s.clone());
        let t = std::thread::spawn(move || {
            wait_until(&w2, &s2, None, |v| (v == 1).then_some(v)).unwrap()
        });
        while s.load(Ordering::SeqCst) == 0 {
            std::thread::yield_now();
        }
        w.store(1, Ordering::SeqCst);
        if s.load(Ordering::SeqCst) != 0 {
            wake(&w, 1);
        }
        assert_eq!(t.join().unwrap(), Some(1));
    }
}
