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
    // Look at the word every few `pause`s (about 10 to 140 cycles each,
    // depending on the CPU) so that a change is seen within a fraction of a
    // microsecond; read the clock only every 16 looks.
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
