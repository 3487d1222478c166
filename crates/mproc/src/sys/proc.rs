//! Process creation, reaping and signals.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use rustix::process::{
    getrlimit, pidfd_open, pidfd_send_signal, setrlimit, waitid, Pid, PidfdFlags, Resource, Rlimit,
    Signal, WaitId, WaitIdOptions, WaitIdStatus,
};

use super::cvt;

/// The outcome of `fork` as seen by the caller.
pub(crate) enum Forked {
    /// In the parent: the child's pid.
    Parent(i32),
    /// In the child.
    Child,
}

/// `fork()`.
///
/// # Safety
///
/// In the child, only the calling thread exists; any lock another thread held
/// stays locked. The caller must make sure the child either runs code that
/// does not depend on such locks or leaves with [`exit_now`].
pub(crate) unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: `fork` has no memory-safety preconditions of its own; what the
    // child may do afterwards is the caller's contract (see above).
    let pid = cvt(unsafe { libc::fork() })?;
    Ok(if pid == 0 {
        Forked::Child
    } else {
        Forked::Parent(pid)
    })
}

/// Leaves the process at once with `code`: no destructors, no `atexit`
/// handlers, no flushing of the parent's inherited buffers.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

/// Asks the kernel to SIGKILL this process when the thread that created it
/// ends, then checks the parent did not end already (`expected_parent`).
pub(crate) fn die_with_parent(expected_parent: i32) -> io::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
    if getppid() != expected_parent {
        exit_now(crate::process::ORPHANED_EXIT_CODE);
    }
    Ok(())
}

/// This process's pid.
pub(crate) fn getpid() -> i32 {
    rustix::process::getpid().as_raw_nonzero().get()
}

/// The parent's pid (0 when there is none).
pub(crate) fn getppid() -> i32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get())
}

/// True on the process's main thread (whose end is the process's end).
pub(crate) fn is_main_thread() -> bool {
    rustix::thread::gettid() == rustix::process::getpid()
}

/// The number of threads in this process, from `/proc/self/stat`.
pub(crate) fn thread_count() -> usize {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 1;
    };
    // Field 20 counts from the first field after the parenthesised name.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(17))
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// A pidfd for `pid`, which must be alive and not yet reaped.
pub(crate) fn open_pidfd(pid: i32) -> io::Result<OwnedFd> {
    let pid = Pid::from_raw(pid).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    Ok(pidfd_open(pid, PidfdFlags::empty())?)
}

/// Sends `signal` through a pidfd (immune to pid reuse). A process that has
/// already exited is not an error.
pub(crate) fn signal_pidfd(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: `signal` is one of the standard signal numbers the crate uses
    // (SIGTERM, SIGKILL, SIGINT); `from_raw_unchecked` only skips validation.
    let sig = unsafe { Signal::from_raw_unchecked(signal) };
    match pidfd_send_signal(pidfd, sig) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Reaps a child of this process through its pidfd. `Ok(None)` while it
/// runs (when `block` is false). The result is a Python-style exit code:
/// the exit status, or `-N` for signal N.
pub(crate) fn reap_pidfd(pidfd: BorrowedFd<'_>, block: bool) -> io::Result<Option<i32>> {
    let mut opts = WaitIdOptions::EXITED;
    if !block {
        opts |= WaitIdOptions::NOHANG;
    }
    loop {
        match waitid(WaitId::PidFd(pidfd), opts) {
            Ok(Some(st)) => return Ok(code_of(&st)),
            Ok(None) => return Ok(None),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

fn code_of(st: &WaitIdStatus) -> Option<i32> {
    if let Some(sig) = st.terminating_signal() {
        Some(-sig)
    } else {
        st.exit_status()
    }
}

/// Starts a fresh copy of this executable (`/proc/self/exe`) with `env` added
/// and `keep` left open across the exec (at the same number). Uses
/// `posix_spawn`, which the C library implements with `vfork` semantics: no
/// copy of the parent's page tables. Returns the new process's pid.
///
/// The child cannot set its death signal before the exec here; the bootstrap
/// constructor does it first thing (and checks the parent is still there).
pub(crate) fn spawn_self(env: &[(&str, OsString)], keep: BorrowedFd<'_>) -> io::Result<i32> {
    let cstr =
        |b: Vec<u8>| CString::new(b).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput));
    let arg0 = std::env::args_os()
        .next()
        .unwrap_or_else(|| "mproc-child".into());
    let argv_owned = [cstr(arg0.into_vec())?];
    let mut env_owned = Vec::new();
    for (k, v) in std::env::vars_os() {
        if !env.iter().any(|(name, _)| k.as_bytes() == name.as_bytes()) {
            env_owned.push(cstr([k.as_bytes(), b"=", v.as_bytes()].concat())?);
        }
    }
    for (k, v) in env {
        env_owned.push(cstr([k.as_bytes(), b"=", v.as_bytes()].concat())?);
    }
    let argv = null_terminated(&argv_owned);
    let envp = null_terminated(&env_owned);
    let path = c"/proc/self/exe";
    let fd = keep.as_raw_fd();
    let mut pid: libc::pid_t = 0;
    // SAFETY: every pointer handed to the C library points to a live,
    // NUL-terminated string or a null-terminated array of them, all of
    // which outlive the call; `actions` is initialised before use and
    // destroyed after. `dup2(fd, fd)` in the file actions clears
    // FD_CLOEXEC on `fd` in the child only (POSIX.1-2024, glibc 2.29+).
    let ret = unsafe {
        let mut actions = std::mem::MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
        let r = libc::posix_spawn_file_actions_init(actions.as_mut_ptr());
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        let mut r = libc::posix_spawn_file_actions_adddup2(actions.as_mut_ptr(), fd, fd);
        if r == 0 {
            r = libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                actions.as_ptr(),
                std::ptr::null(),
                argv.as_ptr(),
                envp.as_ptr(),
            );
        }
        libc::posix_spawn_file_actions_destroy(actions.as_mut_ptr());
        r
    };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(pid)
}

fn null_terminated(strings: &[CString]) -> Vec<*mut libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr().cast_mut())
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect()
}

/// Takes ownership of an inherited descriptor number.
///
/// # Safety
///
/// `fd` must be open and owned by nobody else in this process.
pub(crate) unsafe fn adopt_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the caller guarantees `fd` is open and unowned.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// True if `fd` names an open descriptor.
pub(crate) fn fd_is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD on any integer is harmless; EBADF means closed.
    unsafe { libc::fcntl(fd, libc::F_GETFD) != -1 }
}

/// Number of open descriptors in this process (for leak checks).
pub fn open_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count().saturating_sub(1))
}

/// Sends `signal` to a pid (used where no pidfd exists yet).
pub(crate) fn kill(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: `kill` has no memory-safety preconditions.
    cvt(unsafe { libc::kill(pid, signal) }).map(drop)
}

/// The raw number of a borrowed descriptor.
pub(crate) fn raw(fd: &impl AsFd) -> RawFd {
    fd.as_fd().as_raw_fd()
}

/// Closes a descriptor number that an inherited object still names (in a
/// forked child, which will never use that object again).
pub(crate) fn close_raw(fd: RawFd) {
    // SAFETY: closing an integer descriptor has no memory-safety effect;
    // the caller never uses the object that owned it again.
    unsafe { libc::close(fd) };
}

/// Blocks SIGINT for the calling thread (`true`) or unblocks it. A blocked
/// SIGINT stays pending instead of being lost: a child forked while it is
/// blocked gets any SIGINT sent to it in the meantime once it unblocks.
pub(crate) fn block_sigint(block: bool) {
    let how = if block {
        libc::SIG_BLOCK
    } else {
        libc::SIG_UNBLOCK
    };
    // SAFETY: `set` is a local sigset_t initialised by sigemptyset before
    // use; a null old-set pointer is allowed.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// Makes this process ignore `SIGINT` (a manager's server, as CPython's:
/// Ctrl-C in the terminal reaches the whole process group).
pub(crate) fn ignore_sigint() -> io::Result<()> {
    // SAFETY: installing `SIG_IGN` runs no code in a signal context; the
    // previous disposition is not needed.
    let prev = unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    if prev == libc::SIG_ERR {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Every resource limit, in the order a fork-server request carries them
/// (all sixteen `RLIMIT_*` of Linux).
const RESOURCES: [Resource; 16] = [
    Resource::Cpu,
    Resource::Fsize,
    Resource::Data,
    Resource::Stack,
    Resource::Core,
    Resource::Rss,
    Resource::Nproc,
    Resource::Nofile,
    Resource::Memlock,
    Resource::As,
    Resource::Locks,
    Resource::Sigpending,
    Resource::Msgqueue,
    Resource::Nice,
    Resource::Rtprio,
    Resource::Rttime,
];

/// How many resource limits there are (see [`resource_limits`]).
pub(crate) const RESOURCE_COUNT: usize = RESOURCES.len();

/// A resource limit as `(soft, hard)`, `u64::MAX` for no limit (the
/// kernel's `RLIM_INFINITY`).
pub(crate) type Limit = (u64, u64);

const NO_LIMIT: u64 = u64::MAX;

fn to_limit(r: &Rlimit) -> Limit {
    (r.current.unwrap_or(NO_LIMIT), r.maximum.unwrap_or(NO_LIMIT))
}

fn to_rlimit((soft, hard): Limit) -> Rlimit {
    let some = |v: u64| (v != NO_LIMIT).then_some(v);
    Rlimit {
        current: some(soft),
        maximum: some(hard),
    }
}

/// This process's resource limits, in the order of `RESOURCES`.
pub(crate) fn resource_limits() -> [Limit; RESOURCE_COUNT] {
    RESOURCES.map(|r| to_limit(&getrlimit(r)))
}

/// Gives this process the limits `wanted` (in the order of `RESOURCES`;
/// missing ones are left as they are). A limit that cannot be raised (a
/// hard limit above ours, for an unprivileged process) is raised as far as
/// allowed: the hard limit stays ours and the soft limit goes no higher.
/// Lower limits are always applied as they are.
pub(crate) fn set_resource_limits(wanted: &[Limit]) {
    for (&r, &want) in RESOURCES.iter().zip(wanted) {
        let have = to_limit(&getrlimit(r));
        if have == want {
            continue;
        }
        if setrlimit(r, to_rlimit(want)).is_err() {
            let hard = want.1.min(have.1);
            let _ = setrlimit(r, to_rlimit((want.0.min(hard), hard)));
        }
    }
}

/// This process's file-mode creation mask, read without changing it: the
/// `Umask:` line of `/proc/self/status` (Linux 4.7 and later; `None`
/// before). `umask(2)` can only read the mask by setting it, and another
/// thread creating a file between that call and the one that restores the
/// mask would create it with the wrong mode.
///
/// The file stays open (read again from its start, which makes the kernel
/// write it anew): half the cost of opening it each time. It is this
/// process's: a forked child, which inherits the descriptor, opens its own.
pub(crate) fn current_umask() -> Option<u32> {
    static STATUS: std::sync::Mutex<Option<(i32, OwnedFd)>> = std::sync::Mutex::new(None);
    let me = getpid();
    // A lock another thread held at a fork stays held in the child: never
    // wait for it, read without the kept descriptor instead.
    let Ok(mut kept) = STATUS.try_lock() else {
        return umask_from(open_status()?.as_fd());
    };
    if let Some((pid, fd)) = kept.as_ref() {
        if *pid == me {
            if let Some(mask) = umask_from(fd.as_fd()) {
                return Some(mask);
            }
        }
    }
    let fd = open_status()?;
    let mask = umask_from(fd.as_fd());
    *kept = Some((me, fd));
    mask
}

fn open_status() -> Option<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::CLOEXEC;
    rustix::fs::open(c"/proc/self/status", flags, Mode::empty()).ok()
}

fn umask_from(status: BorrowedFd<'_>) -> Option<u32> {
    // The line is among the first few: one read of 1 KiB holds it.
    let mut buf = [0u8; 1024];
    let n = rustix::io::pread(status, &mut buf, 0).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

/// Sets this process's file-mode creation mask.
pub(crate) fn set_umask(mask: u32) {
    rustix::process::umask(rustix::fs::Mode::from_bits_truncate(mask));
}

/// A descriptor for this process's current directory (`O_PATH`): a child
/// that enters it with [`enter_dir`] gets the same directory even when its
/// path is too long to send, or has been removed.
pub(crate) fn current_dir_fd() -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    Ok(rustix::fs::open(c".", flags, Mode::empty())?)
}

/// Makes the directory `dir` names this process's current directory.
pub(crate) fn enter_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::process::fchdir(dir)?)
}

/// Replaces this process's whole environment with `entries` (each
/// `NAME=value`), which are leaked: the C library keeps pointers to them.
///
/// # Safety
///
/// The process must have a single thread (a freshly forked child): nothing
/// may read or change the environment meanwhile.
pub(crate) unsafe fn replace_environment(entries: Vec<CString>) {
    // SAFETY: single-threaded (the caller's contract), so no other thread
    // reads `environ` while it is cleared and refilled; each string handed
    // to `putenv` is leaked, so it lives as long as the environment that
    // points to it.
    unsafe {
        libc::clearenv();
        for entry in entries {
            libc::putenv(entry.into_raw());
        }
    }
}
