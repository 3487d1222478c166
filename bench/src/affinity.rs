//! Where the two processes of a pipe workload run. Left to the scheduler,
//! a parent and child that ping-pong sometimes share one CPU (round trips
//! of ~5 us, context switches) and sometimes not (~45 us, cross-CPU
//! wake-ups), at random per runner. Pinned, every runner gets the same
//! placement: parent on [`PARENT_CPU`], child on [`CHILD_CPU`].
//!
//! The parent is pinned only while a repetition runs (see the harness),
//! never while children or servers are created, so nothing it starts
//! inherits the pinning by accident (an mproc fork server created then
//! would confine every later child to one CPU); each child pins itself.

use std::io;

pub const PARENT_CPU: usize = 0;
pub const CHILD_CPU: usize = 1;

/// The child's CPU, or `None` on a one-CPU machine (no pinning at all).
pub fn child_cpu() -> Option<usize> {
    (mproc::cpu_count() >= 2).then_some(CHILD_CPU)
}

/// The calling thread's allowed CPUs.
pub fn get() -> io::Result<libc::cpu_set_t> {
    // SAFETY: an all-zero cpu_set_t is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid out-pointer of the size passed.
    let r = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    match r {
        0 => Ok(set),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Restricts the calling thread (and the children it creates) to `set`.
/// Async-signal-safe.
pub fn set(set: &libc::cpu_set_t) -> io::Result<()> {
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    match unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(set), set) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Pins the calling thread to `cpu`; `None` does nothing.
/// Async-signal-safe.
pub fn pin(cpu: Option<usize>) -> io::Result<()> {
    let Some(cpu) = cpu else {
        return Ok(());
    };
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    // SAFETY: an all-zero cpu_set_t is a valid (empty) set.
    let mut s: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE, inside the set (checked above).
    unsafe { libc::CPU_SET(cpu, &mut s) };
    set(&s)
}

/// A CPython script's last two arguments: the parent's and the child's CPU
/// (-1: not pinned).
pub fn script_cpus() -> Vec<String> {
    match child_cpu() {
        Some(c) => vec![PARENT_CPU.to_string(), c.to_string()],
        None => vec!["-1".into(), "-1".into()],
    }
}
