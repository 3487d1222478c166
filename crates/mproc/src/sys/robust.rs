//! Process-shared robust mutexes (glibc's `PTHREAD_MUTEX_ROBUST`).
//!
//! The kernel learns that a mutex holder died through the robust-futex list
//! each thread registers with `set_robust_list`; glibc owns that list, so a
//! robust lock has to be glibc's. On the holder's death the kernel marks the
//! mutex `FUTEX_OWNER_DIED` and wakes a waiter, whose lock call returns
//! `EOWNERDEAD`: it holds the mutex and must make it consistent.

use std::cell::UnsafeCell;
use std::io;
use std::mem::MaybeUninit;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The result of a successful lock call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Locked {
    /// Acquired normally.
    Clean,
    /// Acquired from a holder that died; the mutex was made consistent.
    OwnerDied,
}

/// A robust, process-shared mutex to be placed in shared memory.
///
/// Only ever used through a shared reference; glibc mutates it in place.
#[repr(C)]
pub(crate) struct RobustMutex(UnsafeCell<libc::pthread_mutex_t>);

// SAFETY: a process-shared pthread mutex is designed to be used from many
// threads and processes at once; every access goes through glibc.
unsafe impl Sync for RobustMutex {}
// SAFETY: as above.
unsafe impl Send for RobustMutex {}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(r))
    }
}

impl RobustMutex {
    /// Initialises the mutex in place: robust, process-shared, and
    /// `recursive` (re-entrant) or error-checking.
    pub(crate) fn init(&self, recursive: bool) -> io::Result<()> {
        let kind = if recursive {
            libc::PTHREAD_MUTEX_RECURSIVE
        } else {
            libc::PTHREAD_MUTEX_ERRORCHECK
        };
        let mut attr = MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
        // SAFETY: `attr` is initialised by `pthread_mutexattr_init` before
        // any other use and destroyed after; `self.0` points to memory owned
        // by this mutex, not yet shared with anyone (the caller creates it).
        unsafe {
            check(libc::pthread_mutexattr_init(attr.as_mut_ptr()))?;
            let r = (|| {
                check(libc::pthread_mutexattr_setpshared(
                    attr.as_mut_ptr(),
                    libc::PTHREAD_PROCESS_SHARED,
                ))?;
                check(libc::pthread_mutexattr_setrobust(
                    attr.as_mut_ptr(),
                    libc::PTHREAD_MUTEX_ROBUST,
                ))?;
                check(libc::pthread_mutexattr_settype(attr.as_mut_ptr(), kind))?;
                check(libc::pthread_mutex_init(self.0.get(), attr.as_ptr()))
            })();
            libc::pthread_mutexattr_destroy(attr.as_mut_ptr());
            r
        }
    }

    fn after_lock(&self, r: libc::c_int) -> io::Result<Option<Locked>> {
        match r {
            0 => Ok(Some(Locked::Clean)),
            libc::EOWNERDEAD => {
                // SAFETY: we hold the mutex (EOWNERDEAD means acquired).
                check(unsafe { libc::pthread_mutex_consistent(self.0.get()) })?;
                Ok(Some(Locked::OwnerDied))
            }
            libc::EBUSY | libc::ETIMEDOUT => Ok(None),
            e => Err(io::Error::from_raw_os_error(e)),
        }
    }

    /// Locks, waiting until `deadline` (`None`: forever). `Ok(None)` on
    /// timeout; `EDEADLK` if the calling thread holds an error-checking
    /// mutex already.
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> io::Result<Option<Locked>> {
        // SAFETY: `self.0` was initialised by `init` (in this or another
        // process); glibc synchronises all access.
        let r = unsafe {
            match deadline {
                None => libc::pthread_mutex_lock(self.0.get()),
                Some(d) => libc::pthread_mutex_timedlock(self.0.get(), &realtime_deadline(d)),
            }
        };
        self.after_lock(r)
    }

    /// Locks if free. `Ok(None)` if held (also by the caller, for an
    /// error-checking mutex).
    pub(crate) fn try_lock(&self) -> io::Result<Option<Locked>> {
        // SAFETY: as in `lock`.
        let r = unsafe { libc::pthread_mutex_trylock(self.0.get()) };
        self.after_lock(r)
    }

    /// Unlocks. `EPERM` when the calling thread does not hold it.
    pub(crate) fn unlock(&self) -> io::Result<()> {
        // SAFETY: as in `lock`; glibc checks ownership of a robust mutex.
        check(unsafe { libc::pthread_mutex_unlock(self.0.get()) })
    }
}

/// `pthread_mutex_timedlock` takes a `CLOCK_REALTIME` deadline.
fn realtime_deadline(d: Instant) -> libc::timespec {
    let left = d.saturating_duration_since(Instant::now());
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        + left;
    libc::timespec {
        tv_sec: at.as_secs() as libc::time_t,
        tv_nsec: at.subsec_nanos() as libc::c_long,
    }
}

impl RobustMutex {
    /// Whether some thread holds the mutex (a snapshot).
    ///
    /// Reads glibc's lock word: the first `int` of `pthread_mutex_t`, which
    /// holds the owner's thread id (plus the `FUTEX_WAITERS` and
    /// `FUTEX_OWNER_DIED` bits). Its place is fixed by the kernel's
    /// robust-futex ABI (glibc registers its offset with `set_robust_list`).
    pub(crate) fn is_locked(&self) -> bool {
        const TID_MASK: u32 = 0x3fff_ffff;
        // SAFETY: the first 4 bytes of the mutex are an aligned `int` that
        // glibc and the kernel only ever change atomically; an atomic load
        // of them races with nothing.
        let word = unsafe { std::sync::atomic::AtomicU32::from_ptr(self.0.get().cast::<u32>()) };
        word.load(std::sync::atomic::Ordering::Acquire) & TID_MASK != 0
    }
}

impl RobustMutex {
    /// Whether the calling thread holds the mutex.
    ///
    /// A robust mutex's lock word holds its owner's kernel thread id (the
    /// kernel's robust-futex ABI), compared here with the caller's.
    pub(crate) fn held_by_caller(&self) -> bool {
        const TID_MASK: u32 = 0x3fff_ffff;
        // SAFETY: as in `is_locked`.
        let word = unsafe { std::sync::atomic::AtomicU32::from_ptr(self.0.get().cast::<u32>()) };
        word.load(std::sync::atomic::Ordering::Relaxed) & TID_MASK == current_tid()
    }
}

thread_local! {
    /// The calling thread's kernel id, 0 until first asked for.
    static TID: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// The calling thread's kernel thread id, without a system call after the
/// first one. A forked child (whose only thread has a new id) forgets the
/// cached value in a `pthread_atfork` handler; should that handler fail to
/// register, nothing is cached.
pub(crate) fn current_tid() -> u32 {
    TID.with(|c| match c.get() {
        0 => {
            let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
            if forget_tid_on_fork() {
                c.set(tid);
            }
            tid
        }
        tid => tid,
    })
}

/// Registers the fork handler once; whether it is in place.
fn forget_tid_on_fork() -> bool {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    extern "C" fn in_child() {
        // `try_with`: the thread may be tearing its locals down.
        let _ = TID.try_with(|c| c.set(0));
    }
    *REGISTERED.get_or_init(|| {
        // SAFETY: `in_child` is an `extern "C" fn()` that only writes a
        // thread-local `Cell`; it runs in the single thread of a freshly
        // forked child.
        unsafe { libc::pthread_atfork(None, None, Some(in_child)) == 0 }
    })
}
