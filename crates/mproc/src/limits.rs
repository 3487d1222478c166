//! [`Limits`]: what a child may use (memory, CPU time, descriptors, core
//! dumps, priority), applied by the child to itself before its task runs;
//! [`Limit`], the one a child exceeded; [`Resources`], what a child used.
//!
//! Layer: plain values under `task` (which carries them in the header),
//! `process/`, `pool/` and `context.rs`; the child applies them in
//! `start::bootstrap::apply` through `sys::rlimit`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Resource limits for a child process, applied by the child to itself
/// before its task runs (`setrlimit`, `setpriority`), under every start
/// method (a fork-server child applies them after the fork: the fork
/// server itself and the parent are never limited).
///
/// ```
/// use std::time::Duration;
/// use mproc::{Error, Limit, Limits, Process};
///
/// // Grows by a MiB at a time.
/// fn hog(mib: usize) -> usize {
///     let v: Vec<Vec<u8>> = (0..mib).map(|_| vec![1u8; 1 << 20]).collect();
///     v.iter().map(|m| m.len()).sum()
/// }
///
/// let limits = Limits::new()
///     .memory(64 << 20)
///     .cpu_time(Duration::from_secs(10))
///     .nice(5)
///     .open_files(256)
///     .core_dumps(false);
/// let ctx = mproc::get_context(None).limits(limits);
/// // Within its cap.
/// assert_eq!(ctx.spawn(hog, 8)?.join()?, 8 << 20);
/// // Past it: a typed error, not a crash.
/// match ctx.spawn(hog, 1024)?.join() {
///     Err(Error::LimitExceeded { limit: Limit::Memory, .. }) => {}
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), mproc::Error>(())
/// ```
///
/// Set on a [`Process`](crate::Process) with
/// [`Process::limits`](crate::Process::limits), on every worker of a
/// pool with [`PoolBuilder::limits`](crate::PoolBuilder::limits), and as
/// a [`Context`](crate::Context)'s default (for its processes, `spawn`s
/// and pools) with [`Context::limits`](crate::Context::limits).
///
/// # Memory: `RLIMIT_DATA` or `RLIMIT_AS`
///
/// [`memory`](Limits::memory) caps, by default, the child's private
/// writable memory (`RLIMIT_DATA`: its heap and anonymous mappings, which
/// is where every allocator gets its memory), not its address space
/// (`RLIMIT_AS`). The address space also counts what is reserved and never
/// used, and what is shared: the C library reserves 64 MiB of address space
/// per thread arena (a multi-threaded child would hit an `RLIMIT_AS` cap
/// with little memory in use), and mproc's own queues, pipes and shared
/// values are shared mappings, not the child's allocations. Choose the
/// stricter address-space cap with
/// [`memory_kind(MemoryKind::AddressSpace)`](Limits::memory_kind): it
/// also counts shared and file mappings, thread stacks and reservations.
///
/// Either way an allocation past the cap fails: Rust's allocation-failure
/// handler prints `memory allocation of N bytes failed` and aborts, and the
/// child ends with [`Error::LimitExceeded`](crate::Error::LimitExceeded)
/// naming [`Limit::Memory`] (a plain `abort` is an ordinary
/// [`Error::Signaled`](crate::Error::Signaled)). Code that handles failed
/// allocations itself (C's `malloc` returning null) sees them fail and
/// goes on.
///
/// # CPU time
///
/// [`cpu_time`](Limits::cpu_time) is counted in whole seconds (rounded
/// up, at least one) of user plus system time. At the limit the child gets
/// `SIGXCPU` (which kills it unless handled), one second later `SIGKILL`;
/// either ends it with [`Limit::CpuTime`] named. A child that sleeps or
/// waits uses no CPU time: bound wall-clock time with a timeout
/// ([`PoolBuilder::task_timeout`](crate::PoolBuilder::task_timeout),
/// [`JoinHandle::join_timeout`](crate::JoinHandle::join_timeout)).
///
/// # Confinement
///
/// Soft and hard limits are both lowered: the child cannot raise them
/// again (what it runs, and its own children, inherit them). A limit above
/// the child's current hard limit is not raised (it keeps the lower one);
/// a nice value the child may not take (below its current one, without
/// privilege) fails its start with [`Error::Bootstrap`](crate::Error::Bootstrap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Limits {
    memory: Option<u64>,
    memory_kind: MemoryKind,
    cpu_seconds: Option<u64>,
    nice: Option<i32>,
    open_files: Option<u64>,
    core_dumps: Option<bool>,
}

/// Which resource [`Limits::memory`] caps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MemoryKind {
    /// `RLIMIT_DATA` (the default): private writable memory, where the
    /// allocators get theirs. Shared mappings (mproc's queues and shared
    /// values) and reserved, inaccessible address space are not counted.
    #[default]
    Data,
    /// `RLIMIT_AS`: the whole address space, reservations and shared and
    /// file mappings included.
    AddressSpace,
}

impl Limits {
    /// No limit (the child keeps its parent's).
    pub const fn new() -> Limits {
        Limits {
            memory: None,
            memory_kind: MemoryKind::Data,
            cpu_seconds: None,
            nice: None,
            open_files: None,
            core_dumps: None,
        }
    }

    /// Caps the child's memory at `bytes` (see [`MemoryKind`] for what is
    /// counted).
    pub const fn memory(mut self, bytes: u64) -> Limits {
        self.memory = Some(bytes);
        self
    }

    /// Chooses what [`memory`](Limits::memory) counts (default
    /// [`MemoryKind::Data`]).
    pub const fn memory_kind(mut self, kind: MemoryKind) -> Limits {
        self.memory_kind = kind;
        self
    }

    /// Caps the child's CPU time (user plus system), in whole seconds:
    /// `d` rounded up, at least one second.
    pub const fn cpu_time(mut self, d: Duration) -> Limits {
        let mut s = d.as_secs();
        if d.subsec_nanos() > 0 || s == 0 {
            s += 1;
        }
        self.cpu_seconds = Some(s);
        self
    }

    /// Sets the child's nice value (-20, the highest priority, to 19, the
    /// lowest; values outside are clamped).
    pub const fn nice(mut self, nice: i32) -> Limits {
        self.nice = Some(if nice < -20 {
            -20
        } else if nice > 19 {
            19
        } else {
            nice
        });
        self
    }

    /// Caps the child's descriptors: every descriptor number is below `n`
    /// (`RLIMIT_NOFILE`); opening one more fails with `EMFILE` (the child
    /// goes on).
    pub const fn open_files(mut self, n: u64) -> Limits {
        self.open_files = Some(n);
        self
    }

    /// `false`: the child never dumps core (`RLIMIT_CORE` 0); `true`: it
    /// may, as far as its hard limit allows (the soft limit is raised to
    /// it).
    pub const fn core_dumps(mut self, yes: bool) -> Limits {
        self.core_dumps = Some(yes);
        self
    }

    /// The memory cap, bytes.
    pub const fn get_memory(&self) -> Option<u64> {
        self.memory
    }

    /// What the memory cap counts.
    pub const fn get_memory_kind(&self) -> MemoryKind {
        self.memory_kind
    }

    /// The CPU-time cap (whole seconds).
    pub const fn get_cpu_time(&self) -> Option<Duration> {
        match self.cpu_seconds {
            Some(s) => Some(Duration::from_secs(s)),
            None => None,
        }
    }

    /// The nice value.
    pub const fn get_nice(&self) -> Option<i32> {
        self.nice
    }

    /// The descriptor cap.
    pub const fn get_open_files(&self) -> Option<u64> {
        self.open_files
    }

    /// The core-dump switch.
    pub const fn get_core_dumps(&self) -> Option<bool> {
        self.core_dumps
    }

    /// Whether no limit is set.
    pub fn is_empty(&self) -> bool {
        *self == Limits::new()
    }

    /// The limit a child that ended with exit code `code` (`-N`: signal N)
    /// after using `usage` exceeded, if its end shows one: a `SIGABRT` it
    /// reported as a failed allocation (`memory_report`) under a memory
    /// cap, a `SIGXCPU` or `SIGKILL` under a CPU cap it used up.
    pub(crate) fn exceeded(
        &self,
        code: i32,
        usage: Option<&Resources>,
        memory_report: bool,
    ) -> Option<(Limit, u64)> {
        if let Some(bytes) = self.memory {
            if code == -libc::SIGABRT && memory_report {
                return Some((Limit::Memory, bytes));
            }
        }
        if let (Some(secs), Some(usage)) = (self.cpu_seconds, usage) {
            // The kernel signals at the soft limit (SIGXCPU, which only
            // it sends in practice) and kills at the hard one, a second
            // later (SIGKILL, which others send too), counting the exact
            // run time. The reaped user and system times fall short of
            // it, by up to a fifth measured on a loaded virtual machine
            // (820 ms at a one-second limit): a SIGXCPU counts after half
            // the limit, a SIGKILL after three quarters of it.
            let used = usage.cpu_time().as_secs_f64();
            let limit = secs as f64;
            let hit = match -code {
                libc::SIGXCPU => used >= limit * 0.5,
                libc::SIGKILL => used >= limit * 0.75,
                _ => false,
            };
            if hit {
                return Some((Limit::CpuTime, secs));
            }
        }
        None
    }
}

/// A limit a child exceeded (see [`Error::LimitExceeded`](crate::Error::LimitExceeded)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Limit {
    /// The memory cap ([`Limits::memory`]): an allocation failed.
    Memory,
    /// The CPU-time cap ([`Limits::cpu_time`]).
    CpuTime,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limit::Memory => "memory",
            Limit::CpuTime => "CPU time",
        })
    }
}

/// What a child used, once it ended ([`Process::resources`](crate::Process::resources)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    pub(crate) peak_rss: u64,
    pub(crate) user_time: Duration,
    pub(crate) system_time: Duration,
}

impl Resources {
    /// Its peak resident memory, bytes (`ru_maxrss`). A forked child's
    /// counts from its parent's at the fork.
    pub fn peak_rss(&self) -> u64 {
        self.peak_rss
    }

    /// CPU time spent in user mode.
    pub fn user_time(&self) -> Duration {
        self.user_time
    }

    /// CPU time the kernel spent on its behalf.
    pub fn system_time(&self) -> Duration {
        self.system_time
    }

    /// User plus system time.
    pub fn cpu_time(&self) -> Duration {
        self.user_time + self.system_time
    }
}

impl From<crate::sys::rlimit::Usage> for Resources {
    fn from(u: crate::sys::rlimit::Usage) -> Resources {
        Resources {
            peak_rss: u.max_rss,
            user_time: u.user,
            system_time: u.system,
        }
    }
}

/// Applies `limits` to this process (a child, before its task). Memory
/// last but one and the nice value last: nothing after needs memory or
/// privilege.
pub(crate) fn apply(limits: &Limits) -> Result<(), String> {
    use crate::sys::rlimit::{self, Rlim};
    let lower = |r: Rlim, soft: u64, hard: u64| -> Result<(), String> {
        let (_, have) = rlimit::get(r);
        let hard = hard.min(have);
        rlimit::set(r, soft.min(hard), hard).map_err(|e| format!("cannot set {r:?} limit: {e}"))
    };
    if let Some(n) = limits.open_files {
        lower(Rlim::OpenFiles, n, n)?;
    }
    match limits.core_dumps {
        Some(false) => lower(Rlim::Core, 0, 0)?,
        Some(true) => {
            let (_, hard) = rlimit::get(Rlim::Core);
            lower(Rlim::Core, hard, hard)?;
        }
        None => {}
    }
    if let Some(s) = limits.cpu_seconds {
        lower(Rlim::Cpu, s, s.saturating_add(1))?;
    }
    if let Some(bytes) = limits.memory {
        let r = match limits.memory_kind {
            MemoryKind::Data => Rlim::Data,
            MemoryKind::AddressSpace => Rlim::AddressSpace,
        };
        lower(r, bytes, bytes)?;
    }
    if let Some(n) = limits.nice {
        rlimit::set_nice(n).map_err(|e| format!("cannot set nice value {n}: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_rounds_up_to_whole_seconds() {
        let s = |d| Limits::new().cpu_time(d).get_cpu_time();
        assert_eq!(s(Duration::ZERO), Some(Duration::from_secs(1)));
        assert_eq!(s(Duration::from_millis(1)), Some(Duration::from_secs(1)));
        assert_eq!(s(Duration::from_secs(2)), Some(Duration::from_secs(2)));
        assert_eq!(s(Duration::from_millis(2001)), Some(Duration::from_secs(3)));
    }

    #[test]
    fn only_the_limit_that_was_set_and_used_up_is_named() {
        let usage = |ms| Resources {
            user_time: Duration::from_millis(ms),
            ..Resources::default()
        };
        let mem = Limits::new().memory(1 << 20);
        assert_eq!(
            mem.exceeded(-libc::SIGABRT, None, true),
            Some((Limit::Memory, 1 << 20))
        );
        // An abort without the report, or a report without a cap.
        assert_eq!(mem.exceeded(-libc::SIGABRT, None, false), None);
        assert_eq!(Limits::new().exceeded(-libc::SIGABRT, None, true), None);
        let cpu = Limits::new().cpu_time(Duration::from_secs(1));
        assert_eq!(
            cpu.exceeded(-libc::SIGXCPU, Some(&usage(1000)), false),
            Some((Limit::CpuTime, 1))
        );
        assert_eq!(
            cpu.exceeded(-libc::SIGKILL, Some(&usage(2000)), false),
            Some((Limit::CpuTime, 1))
        );
        // Killed early (by someone else), or by another signal.
        assert_eq!(cpu.exceeded(-libc::SIGKILL, Some(&usage(300)), false), None);
        assert_eq!(cpu.exceeded(-libc::SIGKILL, Some(&usage(700)), false), None);
        assert_eq!(cpu.exceeded(-libc::SIGXCPU, Some(&usage(400)), false), None);
        assert_eq!(
            cpu.exceeded(-libc::SIGXCPU, Some(&usage(820)), false),
            Some((Limit::CpuTime, 1))
        );
        assert_eq!(
            cpu.exceeded(-libc::SIGSEGV, Some(&usage(1500)), false),
            None
        );
        assert_eq!(cpu.exceeded(0, Some(&usage(1500)), false), None);
    }
}
