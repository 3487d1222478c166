//! Locks at the lowest level: a bare futex mutex (uncontended pairs) and a
//! process-shared robust pthread mutex (two forked processes incrementing a
//! counter under it).
//!
//! | word (futex mutex) | meaning |
//! |---|---|
//! | `0` | free |
//! | `1` | held, nobody waits |
//! | `2` | held, someone may sleep in `FUTEX_WAIT` |

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use super::{close_all_but, fork, map_shared, reap};
use crate::harness::{session, Result, Session};

/// A minimal futex mutex (Drepper's "Futexes are tricky", mutex 2).
struct FutexMutex(AtomicU32);

impl FutexMutex {
    fn lock(&self) {
        if self
            .0
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return;
        }
        while self.0.swap(2, Ordering::Acquire) != 0 {
            futex(&self.0, libc::FUTEX_WAIT, 2);
        }
    }

    fn unlock(&self) {
        if self.0.swap(0, Ordering::Release) == 2 {
            futex(&self.0, libc::FUTEX_WAKE, 1);
        }
    }
}

fn futex(word: &AtomicU32, op: libc::c_int, val: u32) {
    // SAFETY: `word` is a valid, aligned u32; no timeout or second address.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            op,
            val,
            std::ptr::null::<u8>(),
            0,
            0,
        );
    }
}

/// `n` uncontended lock+unlock pairs of a bare futex mutex: ns per pair.
pub fn futex_pairs(n: usize) -> Result<Box<dyn Session>> {
    let m = FutexMutex(AtomicU32::new(0));
    session(move || {
        let t = Instant::now();
        for _ in 0..n {
            m.lock();
            std::hint::black_box(&m);
            m.unlock();
        }
        Ok(t.elapsed().as_nanos() as f64 / n as f64)
    })
}

#[repr(C)]
struct Bank {
    mutex: libc::pthread_mutex_t,
    balance: u64,
}

/// Two forked processes doing `n` increments each of a shared counter under
/// a process-shared robust pthread mutex: ns per increment, start to reap.
pub fn robust_bank(n: usize) -> Result<Box<dyn Session>> {
    // Zeroed memory is a valid `Bank` until the mutex is initialised below.
    let p = map_shared(std::mem::size_of::<Bank>())?;
    let bank = p.cast::<Bank>();
    // SAFETY: `bank` points to the mapping, which lives as long as the
    // session (it is never unmapped: one small page per run).
    unsafe {
        let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        libc::pthread_mutexattr_init(attr.as_mut_ptr());
        libc::pthread_mutexattr_setpshared(attr.as_mut_ptr(), libc::PTHREAD_PROCESS_SHARED);
        libc::pthread_mutexattr_setrobust(attr.as_mut_ptr(), libc::PTHREAD_MUTEX_ROBUST);
        libc::pthread_mutex_init(&mut (*bank).mutex, attr.as_ptr());
        libc::pthread_mutexattr_destroy(attr.as_mut_ptr());
    }
    let addr = bank as usize;
    session(move || {
        let t = Instant::now();
        let mut pids = Vec::new();
        for _ in 0..2 {
            pids.push(fork(|| {
                close_all_but(-1);
                let bank = addr as *mut Bank;
                for _ in 0..n {
                    // SAFETY: the mapping is inherited; the mutex was
                    // initialised process-shared before the fork.
                    unsafe {
                        libc::pthread_mutex_lock(&mut (*bank).mutex);
                        (*bank).balance += 1;
                        libc::pthread_mutex_unlock(&mut (*bank).mutex);
                    }
                }
                0
            })?);
        }
        for pid in pids {
            reap(pid)?;
        }
        Ok(t.elapsed().as_nanos() as f64 / (2 * n) as f64)
    })
}
