//! A child's resource limits and resource usage: the calls a child makes
//! on itself to confine itself (`setrlimit`, `setpriority`, the abort
//! report of an exhausted memory cap) and the reap that returns a child's
//! `rusage` with its status.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicUsize, Ordering};
use std::time::Duration;

use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};

/// The resources a child's limits set (a subset of `RLIMIT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rlim {
    /// `RLIMIT_AS`: the address space.
    AddressSpace,
    /// `RLIMIT_DATA`: private writable memory (heap, anonymous mappings).
    Data,
    /// `RLIMIT_CPU`: CPU seconds.
    Cpu,
    /// `RLIMIT_NOFILE`: one more than the highest descriptor number.
    OpenFiles,
    /// `RLIMIT_CORE`: the largest core file.
    Core,
}

impl Rlim {
    fn resource(self) -> Resource {
        match self {
            Rlim::AddressSpace => Resource::As,
            Rlim::Data => Resource::Data,
            Rlim::Cpu => Resource::Cpu,
            Rlim::OpenFiles => Resource::Nofile,
            Rlim::Core => Resource::Core,
        }
    }
}

/// This process's `(soft, hard)` limit of `r`, `u64::MAX` for none.
pub(crate) fn get(r: Rlim) -> (u64, u64) {
    let l = getrlimit(r.resource());
    (l.current.unwrap_or(u64::MAX), l.maximum.unwrap_or(u64::MAX))
}

/// Sets this process's limit of `r` to `(soft, hard)` (`u64::MAX`: none).
/// Raising a hard limit needs privilege (`EPERM` otherwise).
pub(crate) fn set(r: Rlim, soft: u64, hard: u64) -> io::Result<()> {
    let some = |v: u64| (v != u64::MAX).then_some(v);
    setrlimit(
        r.resource(),
        Rlimit {
            current: some(soft),
            maximum: some(hard),
        },
    )
    .map_err(io::Error::from)
}

/// Sets this process's nice value (`setpriority(PRIO_PROCESS, 0, nice)`).
/// Lowering it below the current value needs privilege.
pub(crate) fn set_nice(nice: i32) -> io::Result<()> {
    rustix::process::setpriority_process(None, nice).map_err(io::Error::from)
}

/// What a child used, as its reap reports it (`struct rusage`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Peak resident set size, bytes (`ru_maxrss`, which Linux counts in
    /// KiB).
    pub(crate) max_rss: u64,
    /// CPU time in user mode.
    pub(crate) user: Duration,
    /// CPU time in the kernel on its behalf.
    pub(crate) system: Duration,
}

impl Usage {
    fn of(ru: &libc::rusage) -> Usage {
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec.max(0) as u64)
                + Duration::from_micros(t.tv_usec.clamp(0, 999_999) as u64)
        };
        Usage {
            max_rss: (ru.ru_maxrss.max(0) as u64).saturating_mul(1024),
            user: tv(ru.ru_utime),
            system: tv(ru.ru_stime),
        }
    }

    /// Its bytes in a fork server's status message (after the exit code):
    /// peak RSS in bytes, user and system time in microseconds, each a
    /// little-endian `u64`.
    pub(crate) fn to_bytes(self) -> [u8; USAGE_BYTES] {
        let mut b = [0u8; USAGE_BYTES];
        b[..8].copy_from_slice(&self.max_rss.to_le_bytes());
        b[8..16].copy_from_slice(&(self.user.as_micros() as u64).to_le_bytes());
        b[16..].copy_from_slice(&(self.system.as_micros() as u64).to_le_bytes());
        b
    }

    /// Reads what [`to_bytes`](Usage::to_bytes) wrote.
    pub(crate) fn from_bytes(b: &[u8; USAGE_BYTES]) -> Usage {
        let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Usage {
            max_rss: u(0),
            user: Duration::from_micros(u(8)),
            system: Duration::from_micros(u(16)),
        }
    }
}

/// The size of a [`Usage`] on the wire.
pub(crate) const USAGE_BYTES: usize = 24;

/// Reaps a child of this process through its pidfd, as
/// [`reap_pidfd`](super::proc::reap_pidfd), with what it used: `waitid`'s
/// fifth argument (the kernel's, which the C library's wrapper lacks).
/// `Ok(None)` while it runs (when `block` is false).
pub(crate) fn reap_pidfd_with_usage(
    pidfd: BorrowedFd<'_>,
    block: bool,
) -> io::Result<Option<(i32, Usage)>> {
    const P_PIDFD: libc::c_long = 3;
    let mut opts = libc::WEXITED;
    if !block {
        opts |= libc::WNOHANG;
    }
    loop {
        // SAFETY: zeroed `siginfo_t` and `rusage` are valid (plain C
        // structs); the kernel writes into them through the pointers,
        // which live for the call.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `waitid(P_PIDFD, fd, &info, options, &rusage)`, the
        // Linux system call (5.4 and later), with a descriptor we borrow
        // and two out-pointers valid for writes of their types.
        let r = unsafe {
            libc::syscall(
                libc::SYS_waitid,
                P_PIDFD,
                pidfd.as_raw_fd() as libc::c_long,
                &mut info as *mut libc::siginfo_t,
                opts as libc::c_long,
                &mut ru as *mut libc::rusage,
            )
        };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        // SAFETY: the kernel filled `info` (or left it zeroed, for a
        // child not yet reapable under WNOHANG: `si_pid` 0).
        let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
        if pid == 0 {
            return Ok(None);
        }
        let code = match info.si_code {
            libc::CLD_EXITED => status,
            // Killed or dumped: the signal.
            _ => -status,
        };
        return Ok(Some((code, Usage::of(&ru))));
    }
}

/// The control socket the abort report goes to (-1: none).
static REPORT_FD: AtomicI32 = AtomicI32::new(-1);
/// The report, a leaked frame.
static REPORT: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());
static REPORT_LEN: AtomicUsize = AtomicUsize::new(0);
/// The memory cap, in pages, and which `/proc/self/statm` field it
/// bounds (0: the address space, 5: data).
static CAP_PAGES: AtomicUsize = AtomicUsize::new(usize::MAX);
static CAP_FIELD: AtomicUsize = AtomicUsize::new(5);

/// Makes this process (a child whose memory is capped at `cap` bytes, of
/// its address space if `address_space`, else of its data) report an
/// abort that follows a failed allocation: a `SIGABRT` handler that sends
/// `report` (a whole frame, length prefix included) on `ctl`, then lets
/// the abort proceed (the handler is reset to the default: the child still
/// dies of `SIGABRT`), when either
///
/// - the aborting thread's `errno` is `ENOMEM`: what `malloc` (or the
///   `mmap`/`brk` under it) leaves when the cap refused it, which Rust's
///   allocation-failure path (its message, `abort`) leaves untouched unless
///   it prints a backtrace (`RUST_BACKTRACE`), whose symbolisation may fail
///   a system call of its own; or
/// - the capped memory is within an eighth of the cap (at least 8 MiB) of
///   it: a child that grew to its cap, whatever `errno` says.
///
/// An abort for any other reason sends nothing. The one case neither
/// catches: with `RUST_BACKTRACE` set, a single allocation far beyond the
/// memory left (a 10 GiB buffer under a 1 GiB cap, with most of the cap
/// free).
pub(crate) fn report_enomem_abort(
    ctl: BorrowedFd<'_>,
    report: Vec<u8>,
    cap: u64,
    address_space: bool,
) -> io::Result<()> {
    let report = Box::leak(report.into_boxed_slice());
    REPORT_LEN.store(report.len(), Ordering::SeqCst);
    REPORT.store(report.as_mut_ptr(), Ordering::SeqCst);
    REPORT_FD.store(ctl.as_raw_fd(), Ordering::SeqCst);
    let page = rustix::param::page_size() as u64;
    let margin = (cap / 8).max(8 << 20);
    let near = cap.saturating_sub(margin) / page;
    CAP_PAGES.store(
        usize::try_from(near).unwrap_or(usize::MAX),
        Ordering::SeqCst,
    );
    CAP_FIELD.store(if address_space { 0 } else { 5 }, Ordering::SeqCst);
    // SAFETY: a zeroed `sigaction` is valid; the handler is an
    // `extern "C" fn(c_int)` that only calls async-signal-safe functions
    // (`open`, `read`, `close`, `send`) on data set above and never freed
    // (leaked).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_abort as *const () as libc::sighandler_t;
        sa.sa_flags = libc::SA_RESETHAND;
        libc::sigemptyset(&mut sa.sa_mask);
        super::cvt(libc::sigaction(libc::SIGABRT, &sa, std::ptr::null_mut()))?;
    }
    Ok(())
}

/// Whether the capped memory (the `/proc/self/statm` field `CAP_FIELD`,
/// in pages) is past `CAP_PAGES`. Async-signal-safe: system calls on a
/// buffer of the stack, no allocation.
fn near_the_cap() -> bool {
    let mut buf = [0u8; 256];
    // SAFETY: a NUL-terminated path; `open`, `read` and `close` are
    // async-signal-safe; `read` writes at most `buf.len()` bytes into it.
    let n = unsafe {
        let fd = libc::open(
            c"/proc/self/statm".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return false;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    let Ok(n) = usize::try_from(n) else {
        return false;
    };
    let field = CAP_FIELD.load(Ordering::SeqCst);
    let Some(word) = buf[..n].split(|&b| b == b' ' || b == b'\n').nth(field) else {
        return false;
    };
    let mut pages = 0usize;
    for &d in word {
        if !d.is_ascii_digit() {
            return false;
        }
        pages = pages
            .saturating_mul(10)
            .saturating_add(usize::from(d - b'0'));
    }
    pages >= CAP_PAGES.load(Ordering::SeqCst)
}

extern "C" fn on_abort(_sig: libc::c_int) {
    // SAFETY: `__errno_location` is this thread's `errno`, always valid.
    let errno = unsafe { libc::__errno_location() };
    // SAFETY: as above.
    let saved = unsafe { *errno };
    let fd: RawFd = REPORT_FD.load(Ordering::SeqCst);
    let ptr = REPORT.load(Ordering::SeqCst);
    let len = REPORT_LEN.load(Ordering::SeqCst);
    if fd >= 0 && !ptr.is_null() && (saved == libc::ENOMEM || near_the_cap()) {
        // SAFETY: `ptr..ptr+len` is the leaked report, never freed; `send`
        // is async-signal-safe; `MSG_NOSIGNAL`: a parent that closed its
        // end raises no SIGPIPE here; `MSG_DONTWAIT`: never blocks (a full
        // buffer loses the report, the abort goes on).
        unsafe {
            libc::send(fd, ptr.cast(), len, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT);
        }
    }
    // SAFETY: as above.
    unsafe { *errno = saved };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usage_reads_back_from_its_bytes() {
        let u = Usage {
            max_rss: 64 << 20,
            user: Duration::from_micros(1_234_567),
            system: Duration::from_micros(89),
        };
        assert_eq!(Usage::from_bytes(&u.to_bytes()), u);
    }
}
