//! A round trip between two processes at the lowest level: a counter in a
//! `MAP_SHARED` page, each side spinning briefly then sleeping on a futex.
//!
//! | word          | written by        | meaning                                   |
//! |---------------|-------------------|-------------------------------------------|
//! | `seq`         | both, alternately | odd: the child's turn, even: the parent's; `STOP` ends the child |
//! | `sleeping[i]` | side `i`          | 1 while side `i` may be in `FUTEX_WAIT` on `seq` |
//!
//! The poster stores `seq`, then wakes only if the peer said it sleeps; the
//! waiter says it sleeps, then re-reads `seq` before `FUTEX_WAIT`, so a
//! post is never missed (both are `SeqCst`).

use std::sync::atomic::{AtomicU32, Ordering::SeqCst};

use super::{close_all_but, cvt, fork, map_shared, reap};
use crate::affinity;
use crate::harness::{micros_per_op, Result, Session};

const STOP: u32 = u32::MAX;
const PARENT: usize = 0;
const CHILD: usize = 1;
/// Busy-wait iterations before yielding: a few microseconds, far more
/// than a hand-off between two running processes takes (~0.05 us).
const SPIN: u32 = 200;
/// `sched_yield` rounds before sleeping: lets a peer that shares our CPU
/// (an oversubscribed machine) run without the cost of a futex sleep.
const YIELDS: u32 = 20;

#[repr(C, align(64))]
struct Line(AtomicU32);

#[repr(C)]
struct Shared {
    seq: Line,
    sleeping: [Line; 2],
}

/// The parent's side of a futex ping-pong with a forked child.
pub struct FutexPingPong {
    shared: *mut Shared,
    child: libc::pid_t,
    seq: u32,
    n: usize,
}

impl FutexPingPong {
    /// `n` round trips per repetition. Microseconds per round trip.
    pub fn session(n: usize, cpu: Option<usize>) -> Result<Box<dyn Session>> {
        let size = std::mem::size_of::<Shared>();
        // Zeroed pages are a valid `Shared` (all counters 0).
        let p = map_shared(size)?;
        let shared = p.cast::<Shared>();
        // SAFETY: the mapping lives until `Drop` unmaps it, after the
        // child is reaped; the child has its own copy of the mapping.
        let s = unsafe { &*shared };
        let child = match fork(|| {
            close_all_but(-1);
            match affinity::pin(cpu) {
                Ok(()) => echo(s),
                Err(_) => 1,
            }
        }) {
            Ok(pid) => pid,
            Err(e) => {
                // SAFETY: unmapping what was mapped above, unused since.
                unsafe { libc::munmap(p, size) };
                return Err(e.into());
            }
        };
        Ok(Box::new(FutexPingPong {
            shared,
            child,
            seq: 0,
            n,
        }))
    }

    fn shared(&self) -> &Shared {
        // SAFETY: mapped for the life of `self` (see `session`).
        unsafe { &*self.shared }
    }
}

impl Session for FutexPingPong {
    fn rep(&mut self) -> Result<f64> {
        let mut seq = self.seq;
        let n = self.n;
        let s = self.shared();
        let v = micros_per_op(n, || {
            post(s, CHILD, seq + 1);
            wait_for(s, PARENT, seq + 2);
            seq += 2;
            Ok(())
        });
        self.seq = seq;
        v
    }
}

impl Drop for FutexPingPong {
    fn drop(&mut self) {
        post(self.shared(), CHILD, STOP);
        let _ = reap(self.child);
        // SAFETY: the child is gone and `self` no longer uses the mapping.
        unsafe { libc::munmap(self.shared.cast(), std::mem::size_of::<Shared>()) };
    }
}

/// The child: answers each odd `seq` with the next even one.
fn echo(s: &Shared) -> i32 {
    let mut want = 1u32;
    loop {
        wait_for(s, CHILD, want);
        if s.seq.0.load(SeqCst) == STOP {
            return 0;
        }
        post(s, PARENT, want + 1);
        want += 2;
    }
}

fn futex(word: &AtomicU32, op: libc::c_int, val: u32) {
    // SAFETY: `word` is a valid, aligned u32 in memory shared with the
    // peer; no timeout or second address is passed. Not FUTEX_PRIVATE_FLAG:
    // the waker is another process.
    let _ = cvt(unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            op,
            val,
            std::ptr::null::<libc::timespec>(),
        )
    });
}

fn wait_for(s: &Shared, me: usize, want: u32) {
    let ready = |v: u32| v == want || v == STOP;
    for _ in 0..SPIN {
        if ready(s.seq.0.load(SeqCst)) {
            return;
        }
        std::hint::spin_loop();
    }
    for _ in 0..YIELDS {
        if ready(s.seq.0.load(SeqCst)) {
            return;
        }
        // SAFETY: no arguments; only gives up the CPU.
        unsafe { libc::sched_yield() };
    }
    loop {
        let v = s.seq.0.load(SeqCst);
        if ready(v) {
            return;
        }
        s.sleeping[me].0.store(1, SeqCst);
        let v = s.seq.0.load(SeqCst);
        if !ready(v) {
            futex(&s.seq.0, libc::FUTEX_WAIT, v);
        }
        s.sleeping[me].0.store(0, SeqCst);
    }
}

fn post(s: &Shared, peer: usize, val: u32) {
    s.seq.0.store(val, SeqCst);
    if s.sleeping[peer].0.load(SeqCst) == 1 {
        futex(&s.seq.0, libc::FUTEX_WAKE, i32::MAX as u32);
    }
}
