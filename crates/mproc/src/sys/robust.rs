//! Process-shared mutexes that know their owner and notice its death, with
//! no help from glibc or the kernel's robust-futex list (which belongs to
//! glibc's threads).
//!
//! # Shared state
//!
//! | word | values | changed by |
//! |---|---|---|
//! | `state` (64 bits) | `0` free; else bits 0..=29 the owner's kernel thread id, bit 31 [`WAITERS`], bits 32..=63 the owner's stamp | a locker: CAS `0 -> me`; a waiter: CAS `x -> x \| WAITERS`; the owner: CAS `me -> 0`, or (with `WAITERS`) CAS to `0` and wake every sleeper; a recoverer: CAS `dead -> me \| WAITERS` |
//! | `depth` | levels a recursive mutex's owner holds beyond the first | its owner only |
//! | `kind` | bit 0: `0` error-checking, `1` recursive (set at creation); bits 8..: levels pinned by guards that lend the data the mutex guards ([`RobustMutex::pin`]) | the kind at creation; the pins by the owner only (reset by a recoverer) |
//!
//! Sleepers sleep on the low 32 bits of `state` (thread id and `WAITERS`),
//! the only part a futex can compare.
//!
//! # Who the owner is
//!
//! A thread is named by its kernel thread id *and* its stamp: its start
//! time in clock ticks since boot (`/proc/thread-self/stat`, field 22,
//! truncated to 32 bits; 0 when unknown), read once per thread and
//! forgotten in a forked child. Both are written by the one CAS that takes
//! the lock, so a reader never sees one owner's id with another's stamp. A
//! thread id reused by a later thread comes with a different start time
//! unless the whole pid space wrapped within one clock tick (10 ms).
//!
//! # Death of the owner
//!
//! A waiter sleeps in naps (1 ms, doubling up to 50 ms). When a nap ends
//! by its timeout and the owner is still the same, the waiter asks
//! `/proc/<tid>/stat` whether that thread lives: gone, a zombie, or a
//! different start time means dead, and the waiter takes the lock from it
//! with one CAS (so two waiters cannot both take it) and reports
//! [`Locked::OwnerDied`]. A `try_lock` that finds the lock busy asks too,
//! at most once a millisecond per thread. Assumption: every user of one
//! mutex sees the same pid namespace in `/proc` (as processes started by
//! mproc do); a thread id from another namespace would be judged by the
//! wrong thread. Without a usable `/proc`, only an owner whose id no longer
//! exists (`kill(tid, 0)`: `ESRCH`) counts as dead; zombies then wait for
//! their reaping.
//!
//! # Kills at any point
//!
//! An unlock with `WAITERS` set wakes *every* sleeper, so a sleeper killed
//! as it is woken cannot take the wake-up of the others with it (glibc's
//! robust mutex wakes one, and lost it that way). A waiter killed while
//! asleep leaves `WAITERS` set: the next unlock makes one needless wake
//! and clears it. An owner killed between its unlocking CAS and its wake
//! leaves sleepers asleep until their nap ends (at most 50 ms).

use std::cell::Cell;
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rustix::thread::futex::{self, Flags};

use super::{remaining, timespec};

/// The owner's thread id bits (the kernel's `FUTEX_TID_MASK`).
const TID_MASK: u64 = 0x3fff_ffff;
/// Someone may be asleep on the low half of `state`.
const WAITERS: u64 = 1 << 31;
/// The first nap of a blocked acquisition; also the least time between two
/// death checks of one thread's `try_lock`s.
const FIRST_NAP: Duration = Duration::from_millis(1);
/// The longest nap.
const MAX_NAP: Duration = Duration::from_millis(50);
/// `FUTEX_WAKE`'s count for "everyone".
const WAKE_ALL: u32 = i32::MAX as u32;

/// The result of a successful lock call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Locked {
    /// Acquired normally.
    Clean,
    /// Acquired from a holder that died.
    OwnerDied,
}

/// A process-shared mutex to be placed in shared memory (see the module's
/// table). Every bit pattern is a valid state.
#[repr(C)]
pub(crate) struct RobustMutex {
    state: AtomicU64,
    depth: AtomicU32,
    kind: AtomicU32,
}

/// One pinned level in `kind` (bits 8 and up; bit 0 is the kind).
const PIN_ONE: u32 = 1 << 8;

fn errno(e: i32) -> io::Error {
    io::Error::from_raw_os_error(e)
}

impl RobustMutex {
    /// Initialises the mutex in place, free: `recursive` (re-entrant) or
    /// error-checking.
    pub(crate) fn init(&self, recursive: bool) {
        self.state.store(0, Ordering::Relaxed);
        self.depth.store(0, Ordering::Relaxed);
        self.kind.store(u32::from(recursive), Ordering::Release);
    }

    fn recursive(&self) -> bool {
        self.kind.load(Ordering::Relaxed) & 1 != 0
    }

    /// Pins one level the calling thread holds: until [`unpin`](Self::unpin),
    /// [`unlock`](Self::unlock) and [`unlock_all`](Self::unlock_all) refuse
    /// (`EBUSY`) to release the pinned levels. A guard that lends the data
    /// this mutex protects pins its level, so that no other release (a
    /// `release()` of the same lock, a condition's wait on it) can free the
    /// data while references into it live. Call only while holding it.
    ///
    /// Only the holder writes the pins (the kind bit never changes), so a
    /// load and a store suffice: the lock orders them between holders.
    #[inline]
    pub(crate) fn pin(&self) {
        debug_assert!(self.held_by_caller());
        let kind = self.kind.load(Ordering::Relaxed);
        self.kind.store(kind + PIN_ONE, Ordering::Relaxed);
    }

    /// Undoes one [`pin`](Self::pin), before the guard releases its level.
    #[inline]
    pub(crate) fn unpin(&self) {
        let kind = self.kind.load(Ordering::Relaxed);
        self.kind
            .store(kind.saturating_sub(PIN_ONE), Ordering::Relaxed);
    }

    /// Locks, waiting until `deadline` (`None`: forever). `Ok(None)` on
    /// timeout; `EDEADLK` if the calling thread holds an error-checking
    /// mutex already; `EAGAIN` past `u32::MAX` levels of a recursive one.
    #[inline]
    pub(crate) fn lock(&self, deadline: Option<Instant>) -> io::Result<Option<Locked>> {
        let me = identity();
        match self
            .state
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => Ok(Some(Locked::Clean)),
            Err(cur) => self.lock_slow(me, cur, Some(deadline)),
        }
    }

    /// Locks if free (or held by a dead owner, see the module's text).
    /// `Ok(None)` if held, also by the caller for an error-checking mutex.
    #[inline]
    pub(crate) fn try_lock(&self) -> io::Result<Option<Locked>> {
        let me = identity();
        match self
            .state
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
        {
            Ok(_) => Ok(Some(Locked::Clean)),
            Err(cur) => self.lock_slow(me, cur, None),
        }
    }

    /// The contended path. `wait`: `None` only tries; `Some(deadline)`.
    #[cold]
    fn lock_slow(
        &self,
        me: u64,
        mut cur: u64,
        wait: Option<Option<Instant>>,
    ) -> io::Result<Option<Locked>> {
        if cur & !WAITERS == me {
            return self.reenter(wait.is_none());
        }
        let mut nap = FIRST_NAP;
        loop {
            if cur & TID_MASK == 0 {
                // Free (a free word carries nothing else; anything else is
                // garbage and goes).
                match self
                    .state
                    .compare_exchange(cur, me, Ordering::Acquire, Ordering::Relaxed)
                {
                    Ok(_) => return Ok(Some(Locked::Clean)),
                    Err(now) => {
                        cur = now;
                        continue;
                    }
                }
            }
            let Some(deadline) = wait else {
                if try_may_check() && owner_dead(cur) {
                    match self.take_from_dead(cur, me) {
                        Ok(got) => return Ok(Some(got)),
                        Err(now) => {
                            cur = now;
                            continue;
                        }
                    }
                }
                return Ok(None);
            };
            if cur & WAITERS == 0 {
                if let Err(now) = self.state.compare_exchange(
                    cur,
                    cur | WAITERS,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    cur = now;
                    continue;
                }
                cur |= WAITERS;
            }
            let left = remaining(deadline);
            let timed_out = match left {
                Some(Duration::ZERO) => true,
                _ => {
                    let sleep = left.map_or(nap, |l| l.min(nap));
                    nap = (nap * 2).min(MAX_NAP);
                    sleep_on(&self.state, cur as u32, sleep)?
                }
            };
            let now = self.state.load(Ordering::Relaxed);
            if timed_out && now == cur && owner_dead(cur) {
                match self.take_from_dead(cur, me) {
                    Ok(got) => return Ok(Some(got)),
                    Err(now) => {
                        cur = now;
                        continue;
                    }
                }
            }
            if left == Some(Duration::ZERO) {
                return Ok(None);
            }
            cur = now;
        }
    }

    /// Takes the mutex from the dead owner `dead` (the value last read),
    /// marked as waited on (sleepers may be waiting for `dead`'s unlock).
    /// `Err` with the present value if it changed meanwhile.
    fn take_from_dead(&self, dead: u64, me: u64) -> Result<Locked, u64> {
        self.state
            .compare_exchange(dead, me | WAITERS, Ordering::Acquire, Ordering::Relaxed)?;
        self.depth.store(0, Ordering::Relaxed);
        // The dead owner's guards died with it.
        let kind = self.kind.load(Ordering::Relaxed);
        self.kind.store(kind & (PIN_ONE - 1), Ordering::Relaxed);
        Ok(Locked::OwnerDied)
    }

    /// An acquisition by the owner.
    fn reenter(&self, only_try: bool) -> io::Result<Option<Locked>> {
        if !self.recursive() {
            return match only_try {
                true => Ok(None),
                false => Err(errno(libc::EDEADLK)),
            };
        }
        let depth = self.depth.load(Ordering::Relaxed);
        if depth == u32::MAX {
            return Err(errno(libc::EAGAIN));
        }
        self.depth.store(depth + 1, Ordering::Relaxed);
        Ok(Some(Locked::Clean))
    }

    /// Unlocks one level. `EPERM` when the calling thread does not hold it;
    /// `EBUSY` when that level is pinned by a guard ([`pin`](Self::pin)).
    #[inline]
    pub(crate) fn unlock(&self) -> io::Result<()> {
        let me = identity();
        let kind = self.kind.load(Ordering::Relaxed);
        if kind != 0 {
            return self.unlock_checked(me, kind);
        }
        self.release(me)
    }

    /// Unlocking a recursive or pinned mutex: the levels held beyond the
    /// first go one by one, and pinned levels stay.
    #[cold]
    fn unlock_checked(&self, me: u64, kind: u32) -> io::Result<()> {
        // `depth` and the pins are the owner's; anyone else reads values
        // it must not act on.
        let owner = self.state.load(Ordering::Relaxed) & !WAITERS == me;
        let pins = kind / PIN_ONE;
        let depth = match kind & 1 {
            0 => 0,
            _ => self.depth.load(Ordering::Relaxed),
        };
        if (depth != 0 || pins != 0) && !owner {
            return Err(errno(libc::EPERM));
        }
        // `depth + 1` levels held; after this release `depth` remain.
        if depth < pins {
            return Err(errno(libc::EBUSY));
        }
        if depth != 0 {
            self.depth.store(depth - 1, Ordering::Relaxed);
            return Ok(());
        }
        self.release(me)
    }

    /// Frees the mutex held at its last level by `me`.
    #[inline(always)]
    fn release(&self, me: u64) -> io::Result<()> {
        match self
            .state
            .compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => Ok(()),
            Err(cur) => self.unlock_slow(me, cur),
        }
    }

    #[cold]
    fn unlock_slow(&self, me: u64, mut cur: u64) -> io::Result<()> {
        loop {
            if cur & !WAITERS != me {
                return Err(errno(libc::EPERM));
            }
            // Only `WAITERS` can have changed since; its sleepers are woken
            // below (all of them: see the module's text).
            match self
                .state
                .compare_exchange(cur, 0, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        if cur & WAITERS != 0 {
            let _ = futex::wake(low_half(&self.state), Flags::empty(), WAKE_ALL);
        }
        Ok(())
    }

    /// Releases every level the calling thread holds (one for an
    /// error-checking mutex) and says how many. `EPERM` if it holds none,
    /// `EBUSY` if a level is pinned ([`pin`](Self::pin)).
    pub(crate) fn unlock_all(&self) -> io::Result<u32> {
        if !self.held_by_caller() {
            return Err(errno(libc::EPERM));
        }
        if self.kind.load(Ordering::Relaxed) >= PIN_ONE {
            return Err(errno(libc::EBUSY));
        }
        let levels = match self.recursive() {
            true => self.depth.swap(0, Ordering::Relaxed).saturating_add(1),
            false => 1,
        };
        self.unlock()?;
        Ok(levels)
    }

    /// After a fresh acquisition by the caller, makes it hold `levels`
    /// levels of a recursive mutex (one, for an error-checking one).
    pub(crate) fn set_levels(&self, levels: u32) {
        if self.recursive() && self.held_by_caller() {
            self.depth
                .store(levels.saturating_sub(1), Ordering::Relaxed);
        }
    }

    /// Whether some thread holds the mutex (a snapshot).
    pub(crate) fn is_locked(&self) -> bool {
        self.state.load(Ordering::Acquire) & TID_MASK != 0
    }

    /// Whether the calling thread holds the mutex.
    #[inline]
    pub(crate) fn held_by_caller(&self) -> bool {
        self.held_by(identity())
    }

    /// Whether the thread named `me` ([`caller_identity`]) holds it.
    #[inline]
    pub(crate) fn held_by(&self, me: u64) -> bool {
        self.state.load(Ordering::Relaxed) & !WAITERS == me
    }
}

/// The futex word of `state`: its low 32 bits (owner id and `WAITERS`).
fn low_half(state: &AtomicU64) -> &AtomicU32 {
    let low = state.as_ptr().cast::<u32>();
    #[cfg(target_endian = "big")]
    let low = low.wrapping_add(1);
    // SAFETY: `low` points to the aligned low 4 bytes of `state`, which
    // live as long as the borrow. The reference is handed only to the
    // futex system calls, whose reads the kernel makes as single 32-bit
    // atomic loads; no Rust code loads or stores through it, so there is
    // no mixed-size access in Rust's memory model.
    unsafe { AtomicU32::from_ptr(low) }
}

/// Sleeps on the low half of `state` while it is `expected`, at most
/// `timeout`. `true` if the timeout ended the sleep.
fn sleep_on(state: &AtomicU64, expected: u32, timeout: Duration) -> io::Result<bool> {
    let ts = timespec(timeout);
    match futex::wait(low_half(state), Flags::empty(), expected, Some(&ts)) {
        Ok(()) => Ok(false),
        Err(e) if e == rustix::io::Errno::TIMEDOUT => Ok(true),
        Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::INTR => Ok(false),
        Err(e) => Err(e.into()),
    }
}

thread_local! {
    /// The calling thread's identity (`tid | stamp << 32`), 0 until first
    /// asked for.
    static ME: Cell<u64> = const { Cell::new(0) };
    /// When the calling thread's last `try_lock` asked whether an owner
    /// lives.
    static LAST_TRY_CHECK: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// The calling thread's identity as a lock word names its owner (thread
/// id and start stamp): what `held_by_caller` compares.
#[inline]
pub(crate) fn caller_identity() -> u64 {
    identity()
}

/// The calling thread's identity as an owner: its kernel thread id, and
/// its stamp above it. No system call after the first.
#[inline]
fn identity() -> u64 {
    match ME.with(Cell::get) {
        0 => identity_slow(),
        me => me,
    }
}

#[cold]
fn identity_slow() -> u64 {
    let tid = current_tid();
    let stamp = std::fs::read("/proc/thread-self/stat")
        .ok()
        .and_then(|stat| parse_stat(&stat))
        .map_or(0, |(_, start)| stamp_of(start));
    let me = u64::from(tid) | u64::from(stamp) << 32;
    if forget_on_fork() {
        ME.with(|c| c.set(me));
    }
    me
}

/// A start time as a stamp: its low 32 bits, never 0 (which means
/// unknown).
fn stamp_of(start: u64) -> u32 {
    (start as u32).max(1)
}

/// The state letter and start time (field 22) of a `/proc/<id>/stat`.
fn parse_stat(stat: &[u8]) -> Option<(u8, u64)> {
    // The command name (field 2) is in parentheses and may hold anything,
    // parentheses included: the fields go on after the last `)`.
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(stat.get(close + 1..)?).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Whether a `try_lock` that found the lock busy may ask whether its owner
/// lives (at most once per [`FIRST_NAP`] per thread).
fn try_may_check() -> bool {
    let now = Instant::now();
    LAST_TRY_CHECK.with(|c| match c.get() {
        Some(last) if now.duration_since(last) < FIRST_NAP => false,
        _ => {
            c.set(Some(now));
            true
        }
    })
}

/// Whether the thread that `owner` (a `state` value) names has ended.
fn owner_dead(owner: u64) -> bool {
    let tid = (owner & TID_MASK) as u32;
    let stamp = (owner >> 32) as u32;
    if tid == 0 {
        return false;
    }
    match std::fs::read(format!("/proc/{tid}/stat")) {
        Ok(stat) => match parse_stat(&stat) {
            Some((state, start)) => {
                matches!(state, b'Z' | b'X' | b'x') || (stamp != 0 && stamp_of(start) != stamp)
            }
            None => false,
        },
        Err(e) if proc_usable() => {
            e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
        }
        Err(_) => {
            let Some(pid) = rustix::process::Pid::from_raw(tid as i32) else {
                return false;
            };
            rustix::process::test_kill_process(pid) == Err(rustix::io::Errno::SRCH)
        }
    }
}

/// Whether this process reads its threads' states in `/proc` (checked
/// once): only then does a missing `/proc/<tid>` mean a dead thread.
fn proc_usable() -> bool {
    static USABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *USABLE.get_or_init(|| std::fs::metadata("/proc/thread-self/stat").is_ok())
}

thread_local! {
    /// The calling thread's kernel id, 0 until first asked for.
    static TID: Cell<u32> = const { Cell::new(0) };
}

/// The calling thread's kernel thread id, without a system call after the
/// first one. A forked child (whose only thread has a new id) forgets the
/// cached value in a `pthread_atfork` handler; should that handler fail to
/// register, nothing is cached.
pub(crate) fn current_tid() -> u32 {
    TID.with(|c| match c.get() {
        0 => {
            let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
            if forget_on_fork() {
                c.set(tid);
            }
            tid
        }
        tid => tid,
    })
}

/// Registers the fork handler once; whether it is in place.
fn forget_on_fork() -> bool {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    extern "C" fn in_child() {
        // `try_with`: the thread may be tearing its locals down.
        let _ = TID.try_with(|c| c.set(0));
        let _ = ME.try_with(|c| c.set(0));
        let _ = LAST_TRY_CHECK.try_with(|c| c.set(None));
    }
    *REGISTERED.get_or_init(|| {
        // SAFETY: `in_child` is an `extern "C" fn()` that only writes
        // thread-local `Cell`s; it runs in the single thread of a freshly
        // forked child.
        unsafe { libc::pthread_atfork(None, None, Some(in_child)) == 0 }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_past_odd_command_names() {
        let line = b"42 (a) b) (c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19 20\n";
        assert_eq!(parse_stat(line), Some((b'S', 777)));
        assert_eq!(parse_stat(b"42 (x) S 1 2"), None);
        assert_eq!(parse_stat(b"garbage"), None);
    }

    #[test]
    fn the_caller_lives_and_a_changed_stamp_or_id_does_not() {
        let me = identity();
        assert_ne!(me >> 32, 0, "the stamp is read");
        assert!(!owner_dead(me));
        // The same thread id with another start time: a reused id.
        assert!(owner_dead(me ^ (1 << 40)));
        // A thread id that no thread has (beyond any pid_max).
        assert!(owner_dead(TID_MASK));
    }

    #[test]
    fn a_thread_that_ended_holding_the_mutex_is_dead_to_the_next_locker() {
        let m = RobustMutex {
            state: AtomicU64::new(0),
            depth: AtomicU32::new(0),
            kind: AtomicU32::new(1),
        };
        m.init(true);
        std::thread::scope(|s| {
            s.spawn(|| {
                assert_eq!(m.lock(None).unwrap(), Some(Locked::Clean));
                assert_eq!(m.lock(None).unwrap(), Some(Locked::Clean));
            });
        });
        assert!(m.is_locked() && !m.held_by_caller());
        assert_eq!(m.unlock().unwrap_err().raw_os_error(), Some(libc::EPERM));
        assert_eq!(m.lock(None).unwrap(), Some(Locked::OwnerDied));
        assert_eq!(m.unlock_all().unwrap(), 1, "the dead owner's depth is gone");
        assert!(!m.is_locked());
    }
}
