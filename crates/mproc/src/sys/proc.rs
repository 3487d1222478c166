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

/// `fork()`: in the child, runs `in_child` and leaves with the exit code
/// it returns (through [`exit_now`]: never back into the caller's frames, no
/// destructor of the parent's state runs in the copy; a panic that escapes
/// `in_child` aborts). In the parent, the child's pid; `in_child` is
/// dropped there unrun, with what it owns.
///
/// In the child only the calling thread exists: a lock another thread held
/// at the fork stays locked. That is a deadlock, not a memory error; the
/// callers take the locks their child needs across the fork (`ForkLocks`)
/// or fork from a single-threaded process (the fork server). `in_child`
/// gets the proof that it runs on the child's only thread, [`JustForked`].
pub(crate) fn fork_then_exit(in_child: impl FnOnce(JustForked) -> i32) -> io::Result<i32> {
    // SAFETY: `fork` itself has no memory-safety precondition. What makes
    // a fork unsound in Rust is the child returning into frames whose
    // owners also live in the parent (destructors run twice: temp files,
    // shared state) or continuing the parent's other threads' work; here
    // the child runs only `in_child` and leaves with `_exit`, or aborts if
    // it unwinds. glibc keeps `malloc` and stdio usable in the child (its
    // own atfork handlers).
    let pid = cvt(unsafe { libc::fork() })?;
    if pid == 0 {
        let forked = JustForked {
            _one_thread: std::marker::PhantomData,
        };
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| in_child(forked)))
            .unwrap_or_else(|_| std::process::abort());
        exit_now(code)
    }
    Ok(pid)
}

/// The proof that the process is a child just made by [`fork_then_exit`],
/// running on its only thread (a fork copies the calling thread alone).
/// Made nowhere else, and neither `Send`, `Sync` nor `Clone`, so it stays
/// on that thread; it holds as long as its holder starts no thread (the
/// fork server's child uses it before its task runs). What needs a
/// single-threaded process ([`replace_environment`]) asks for it rather
/// than counting threads.
pub(crate) struct JustForked {
    _one_thread: std::marker::PhantomData<*const ()>,
}

/// Registers `handler` to run at the process's normal exit (`atexit`).
pub(crate) fn at_exit(handler: extern "C" fn()) -> io::Result<()> {
    // SAFETY: `atexit` only stores the pointer; `handler` is a plain
    // `extern "C" fn()` with no arguments, valid for the process's life (a
    // function item), and one that unwinds aborts rather than crossing the
    // C frames.
    let ret = unsafe { libc::atexit(handler) };
    if ret != 0 {
        return Err(io::Error::other("atexit refused the handler"));
    }
    Ok(())
}

/// A value each process has its own copy of, made on first use in that
/// process. A forked child does not see its parent's (nor lock it: another
/// thread of the parent may have held its lock at the fork, and nobody
/// would release it in the child): it finds the parent's pid on it and
/// makes its own. The parent's is left as it is (what it holds is the
/// parent's, not the child's to close) and leaked, as is every one made:
/// at most one per process image.
pub(crate) struct PerProcess<T: 'static> {
    current: std::sync::atomic::AtomicPtr<(i32, T)>,
}

impl<T: Send + Sync + 'static> PerProcess<T> {
    /// None made yet.
    pub(crate) const fn new() -> Self {
        PerProcess {
            current: std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// This process's value, if it made one.
    pub(crate) fn current(&'static self) -> Option<&'static T> {
        use std::sync::atomic::Ordering;
        let current = self.current.load(Ordering::Acquire);
        // SAFETY: a non-null pointer here comes from `Box::into_raw` in
        // `get` and is never freed, so it is valid for 'static.
        let (owner, value) = unsafe { current.as_ref() }?;
        (*owner == getpid()).then_some(value)
    }

    /// This process's value, made with `init` if it has none yet.
    pub(crate) fn get(&'static self, init: impl Fn() -> T) -> &'static T {
        use std::sync::atomic::Ordering;
        let me = getpid();
        loop {
            let current = self.current.load(Ordering::Acquire);
            // SAFETY: a non-null pointer here comes from `Box::into_raw`
            // below and is never freed, so it is valid for 'static.
            if let Some((owner, value)) = unsafe { current.as_ref() } {
                if *owner == me {
                    return value;
                }
            }
            let fresh = Box::into_raw(Box::new((me, init())));
            match (self.current).compare_exchange(
                current,
                fresh,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                // SAFETY: published just now, never freed (see above).
                Ok(_) => return unsafe { &(*fresh).1 },
                // SAFETY: another thread published its value first; `fresh`
                // was never shared, so this is its only owner.
                Err(_) => drop(unsafe { Box::from_raw(fresh) }),
            }
        }
    }
}

/// Leaves the process at once with `code`: no destructors, no `atexit`
/// handlers, no flushing of the parent's inherited buffers.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

/// Why [`die_with_parent`] cannot promise that this process dies with its
/// parent.
#[derive(Debug)]
pub(crate) enum ParentDeath {
    /// The kernel refused the parent-death signal.
    Failed(io::Error),
    /// The signal is set, but `expected_parent` is no longer our parent
    /// (`ppid` is): it ended before the signal could watch it.
    Gone { ppid: i32 },
}

/// Asks the kernel to SIGKILL this process when the thread that created it
/// ends, then checks the parent did not end already (`expected_parent`).
/// What a child does when it did is the caller's choice (the bootstrap
/// leaves with its own exit code).
pub(crate) fn die_with_parent(expected_parent: i32) -> Result<(), ParentDeath> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
        .map_err(|e| ParentDeath::Failed(e.into()))?;
    let ppid = getppid();
    if ppid != expected_parent {
        return Err(ParentDeath::Gone { ppid });
    }
    Ok(())
}

/// True in a secure-execution process (`getauxval(AT_SECURE)`): started
/// setuid or setgid, or with file capabilities, by a less privileged user.
pub(crate) fn secure_execution() -> bool {
    // SAFETY: `getauxval` only reads the auxiliary vector the kernel gave
    // this process; an absent entry reads as 0.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// This process's effective user id.
pub(crate) fn geteuid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// What a descriptor is, for the bootstrap's trust check: a Unix stream
/// socket and the credentials of the process that made its peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Peer {
    /// An `AF_UNIX` socket.
    pub(crate) unix: bool,
    /// A `SOCK_STREAM` socket.
    pub(crate) stream: bool,
    /// The peer's process id (`SO_PEERCRED`): for a socket pair, the
    /// process that created the pair.
    pub(crate) pid: i32,
    /// The peer's effective user id when it created the socket.
    pub(crate) uid: u32,
}

/// The facts [`Peer`] holds about descriptor number `fd`; an error when it
/// is not open or not a connected socket.
pub(crate) fn socket_peer(fd: RawFd) -> io::Result<Peer> {
    if fd < 0 || !fd_is_open(fd) {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: `fd` is open (checked above) and the borrow does not outlive
    // this function; nothing here closes it.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    let family = rustix::net::sockopt::socket_domain(fd)?;
    let kind = rustix::net::sockopt::socket_type(fd)?;
    let cred = rustix::net::sockopt::socket_peercred(fd)?;
    Ok(Peer {
        unix: family == rustix::net::AddressFamily::UNIX,
        stream: kind == rustix::net::SocketType::STREAM,
        pid: cred.pid.as_raw_nonzero().get(),
        uid: cred.uid.as_raw(),
    })
}

/// Marks `fd` close-on-exec (an adopted control socket: programs the
/// child executes must not inherit it).
pub(crate) fn set_cloexec(fd: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)?)
}

/// Gives each of descriptors 0, 1 and 2 that is closed `/dev/null` (a
/// forked child of a parent that closed its stdio), as CPython does, so
/// that the child's own descriptors never take their numbers.
pub(crate) fn fill_missing_stdio() {
    // One `poll` says which of the three are closed (`POLLNVAL`), where a
    // look at each would take three calls.
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: `fds` is a live array of three `pollfd`s, as many as told;
    // `poll` with no events and no wait only reads descriptor numbers.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) };
    if n == 0 {
        return;
    }
    for p in fds {
        // Unsure (poll failed): look at it alone.
        let closed = if n < 0 {
            !fd_is_open(p.fd)
        } else {
            p.revents & libc::POLLNVAL != 0
        };
        if closed {
            open_dev_null_at(p.fd);
        }
    }
}

/// Opens `/dev/null` at descriptor number `fd`, which is closed.
fn open_dev_null_at(fd: RawFd) {
    // SAFETY: `open` reads a NUL-terminated path; `dup2` and `close` act
    // on descriptor numbers only: `got` is the descriptor just opened
    // here, owned by nobody else, and `fd` was closed.
    unsafe {
        let got = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if got >= 0 && got != fd {
            libc::dup2(got, fd);
            libc::close(got);
        }
    }
}

/// Sets this thread's name (what `ps` and `/proc/<pid>/comm` show),
/// truncated to the kernel's 15 bytes.
pub(crate) fn set_thread_name(name: &[u8]) {
    let mut name: Vec<u8> = name.iter().copied().filter(|&b| b != 0).take(15).collect();
    name.push(0);
    if let Ok(name) = std::ffi::CStr::from_bytes_with_nul(&name) {
        let _ = rustix::thread::set_name(name);
    }
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

/// The number of threads in this process, from `/proc/self/stat` (1 when
/// it cannot be read).
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
    super::above_stdio(pidfd_open(pid, PidfdFlags::empty())?)
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

/// Makes process `pid` (0: this one) the leader of a new process group
/// whose id is its pid. A parent may do it for its child until the child
/// executes a program; both doing it (the child for itself, the parent for
/// it) makes the group exist before either goes on, whoever runs first.
pub(crate) fn own_process_group(pid: i32) -> io::Result<()> {
    let pid = Pid::from_raw(pid);
    Ok(rustix::process::setpgid(pid, pid)?)
}

/// `PIDFD_SIGNAL_PROCESS_GROUP` (Linux 6.9): the signal goes to the process
/// group whose id is the pidfd's process's pid.
const PIDFD_SIGNAL_PROCESS_GROUP: libc::c_uint = 1 << 2;

/// What a signal to a process group through a pidfd did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GroupSignal {
    /// The group had members, and each got it.
    Sent,
    /// No process is in the group (its leader left it, and nothing it
    /// started stayed in it; or all of them ended).
    Empty,
    /// The kernel cannot signal a group through a pidfd (before 6.9).
    Unsupported,
}

/// Sends `signal` to the process group whose id is the pid of `pidfd`'s
/// process. Immune to pid reuse: the kernel names the group by the pid
/// structure the pidfd holds, which no later process can get, even once
/// the leader is reaped and its number given to another process.
pub(crate) fn signal_group_pidfd(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<GroupSignal> {
    // SAFETY: a raw `pidfd_send_signal` (rustix has no flags argument):
    // `pidfd` is a live descriptor for the call's duration, the `info`
    // pointer is null (the kernel fills it as `kill` would), and the call
    // writes no memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            PIDFD_SIGNAL_PROCESS_GROUP,
        )
    };
    if r == 0 {
        return Ok(GroupSignal::Sent);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ESRCH) => Ok(GroupSignal::Empty),
        Some(libc::EINVAL) | Some(libc::ENOSYS) => Ok(GroupSignal::Unsupported),
        _ => Err(e),
    }
}

/// Sends `signal` to process group `pgid` by its number (`kill(-pgid)`),
/// for kernels before 6.9. Only while the group's leader, whose pid is
/// `pgid`, is known not to be reaped: then its number is taken, and no
/// other process can lead a group of that number (see the caller).
/// `Empty` when no process is in the group.
pub(crate) fn signal_group_by_number(pgid: i32, signal: i32) -> io::Result<GroupSignal> {
    if pgid <= 1 {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    match kill(-pgid, signal) {
        Ok(()) => Ok(GroupSignal::Sent),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(GroupSignal::Empty),
        Err(e) => Err(e),
    }
}

/// The process group of process `pid`, if it exists.
pub(crate) fn process_group_of(pid: i32) -> Option<i32> {
    let pid = Pid::from_raw(pid)?;
    rustix::process::getpgid(Some(pid))
        .ok()
        .map(|p| p.as_raw_nonzero().get())
}

/// Whether the process behind `pidfd` has not ended (its pidfd is not
/// readable): so not reaped either, and its pid is still its own.
pub(crate) fn pidfd_running(pidfd: BorrowedFd<'_>) -> bool {
    let mut fds = [rustix::event::PollFd::new(
        &pidfd,
        rustix::event::PollFlags::IN,
    )];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(0))
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

/// The descriptor number a spawned child finds its control socket at.
pub(crate) const CHILD_CTL_FD: RawFd = 3;

/// Starts a fresh copy of this executable (`/proc/self/exe`) with `env` added
/// and `keep` at descriptor [`CHILD_CTL_FD`]. Uses `posix_spawn`, which the
/// C library implements with `vfork` semantics: no copy of the parent's
/// page tables. Returns the new process's pid.
///
/// The child inherits no other descriptor: 0, 1 and 2 are the parent's
/// stdio, or `/dev/null` where the parent has none open (a daemon), and
/// everything above [`CHILD_CTL_FD`] is closed before the exec, whether
/// close-on-exec or not (a C library's descriptor, an inherited pipe end).
///
/// With `own_group`, the child leads a new process group of its own
/// (`POSIX_SPAWN_SETPGROUP`), made before the exec: it exists when the pid
/// comes back.
///
/// The child cannot set its death signal before the exec here; the bootstrap
/// constructor does it first thing (and checks the parent is still there).
pub(crate) fn spawn_self(
    env: &[(&str, OsString)],
    keep: BorrowedFd<'_>,
    own_group: bool,
) -> io::Result<i32> {
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
    // Stdio the child would not have after the exec: closed here, or
    // close-on-exec.
    let missing: Vec<RawFd> = (0..3).filter(|&n| !inherited(n)).collect();
    let mut pid: libc::pid_t = 0;
    // SAFETY: every pointer handed to the C library points to a live,
    // NUL-terminated string or a null-terminated array of them, all of
    // which outlive the call; `actions` is initialised before use and
    // destroyed after. The actions run in the child, in order: `dup2`
    // puts the control socket at CHILD_CTL_FD without close-on-exec
    // (`dup2(fd, fd)` clears the flag: POSIX.1-2024, glibc 2.29+), `open`
    // fills the missing stdio, `closefrom` closes the rest (glibc 2.34+).
    // `attr`, likewise initialised before use and destroyed after, asks
    // for a new process group (group 0: the child's pid) when wanted.
    let ret = unsafe {
        let mut attr = std::mem::MaybeUninit::<libc::posix_spawnattr_t>::uninit();
        let r = libc::posix_spawnattr_init(attr.as_mut_ptr());
        if r != 0 {
            return Err(io::Error::from_raw_os_error(r));
        }
        let mut actions = std::mem::MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
        let mut r = libc::posix_spawn_file_actions_init(actions.as_mut_ptr());
        if r != 0 {
            libc::posix_spawnattr_destroy(attr.as_mut_ptr());
            return Err(io::Error::from_raw_os_error(r));
        }
        if own_group {
            r = libc::posix_spawnattr_setpgroup(attr.as_mut_ptr(), 0);
            if r == 0 {
                r = libc::posix_spawnattr_setflags(
                    attr.as_mut_ptr(),
                    libc::POSIX_SPAWN_SETPGROUP as libc::c_short,
                );
            }
        }
        if r == 0 {
            r = libc::posix_spawn_file_actions_adddup2(actions.as_mut_ptr(), fd, CHILD_CTL_FD);
        }
        for &n in &missing {
            if r == 0 {
                r = libc::posix_spawn_file_actions_addopen(
                    actions.as_mut_ptr(),
                    n,
                    c"/dev/null".as_ptr(),
                    libc::O_RDWR,
                    0,
                );
            }
        }
        if r == 0 {
            r = libc::posix_spawn_file_actions_addclosefrom_np(
                actions.as_mut_ptr(),
                CHILD_CTL_FD + 1,
            );
        }
        if r == 0 {
            r = libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                actions.as_ptr(),
                attr.as_ptr(),
                argv.as_ptr(),
                envp.as_ptr(),
            );
        }
        libc::posix_spawn_file_actions_destroy(actions.as_mut_ptr());
        libc::posix_spawnattr_destroy(attr.as_mut_ptr());
        r
    };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(pid)
}

/// Whether descriptor `fd` is open and survives an exec.
fn inherited(fd: RawFd) -> bool {
    // SAFETY: F_GETFD on any integer is harmless; EBADF means closed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    flags != -1 && flags & libc::FD_CLOEXEC == 0
}

fn null_terminated(strings: &[CString]) -> Vec<*mut libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr().cast_mut())
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect()
}

/// Takes ownership of the descriptor a parent left open across exec for
/// this process's bootstrap: the number its environment variable names.
/// Once per process; a second call, or a descriptor that is not open, is an
/// error.
pub(crate) fn adopt_inherited_fd(fd: RawFd) -> io::Result<OwnedFd> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static ADOPTED: AtomicBool = AtomicBool::new(false);
    if fd < 0 || !fd_is_open(fd) {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    if ADOPTED.swap(true, Ordering::SeqCst) {
        return Err(io::Error::other(
            "the inherited descriptor is already adopted",
        ));
    }
    // SAFETY: `fd` is open (checked above) and owned by nobody: it is the
    // descriptor the parent handed down across exec, named by the variable
    // only the bootstrap reads, which runs in a constructor before `main`
    // (no other code of this process has wrapped it), and the flag above
    // makes this the only adoption in the process.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
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

/// Gives this process the limits `wanted`, each with its index in the
/// order of [`resource_limits`] (an index beyond it is skipped). A limit
/// that cannot be raised (a hard limit above ours, for an unprivileged
/// process) is raised as far as allowed: the hard limit stays ours and the
/// soft limit goes no higher. Lower limits are always applied as they are.
pub(crate) fn set_resource_limits(wanted: &[(usize, Limit)]) {
    for &(i, want) in wanted {
        let Some(&r) = RESOURCES.get(i) else {
            continue;
        };
        if setrlimit(r, to_rlimit(want)).is_err() {
            let have = to_limit(&getrlimit(r));
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
    let fd = rustix::fs::open(c"/proc/self/status", flags, Mode::empty()).ok()?;
    super::above_stdio(fd).ok()
}

fn umask_from(status: BorrowedFd<'_>) -> Option<u32> {
    // The line is among the first few: one read of 1 KiB holds it.
    let mut buf = [0u8; 1024];
    let n = rustix::io::pread(status, &mut buf, 0).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(line.trim(), 8).ok()
}

/// This process's resident memory, read from `/proc/self/statm` through a
/// descriptor kept open (`pread` from its start makes the kernel write it
/// anew: one system call a read, about a microsecond).
///
/// Current, not peak: the kernel's high-water mark (`getrusage`'s
/// `ru_maxrss`, `VmHWM`) starts from what the process inherited (a forked
/// copy's pages; after a `vfork` and exec, as `posix_spawn` does, its
/// parent's whole peak), so in a child of a large parent it says nothing
/// of the child's own growth.
pub(crate) struct ResidentMemory {
    statm: OwnedFd,
    page: u64,
}

impl ResidentMemory {
    /// Opens this process's `statm` (a forked child opens its own).
    pub(crate) fn open() -> io::Result<Self> {
        use rustix::fs::{Mode, OFlags};
        let flags = OFlags::RDONLY | OFlags::CLOEXEC;
        let statm = rustix::fs::open(c"/proc/self/statm", flags, Mode::empty())?;
        Ok(ResidentMemory {
            statm: super::above_stdio(statm)?,
            page: rustix::param::page_size() as u64,
        })
    }

    /// Resident bytes now; `None` if the file cannot be read.
    pub(crate) fn bytes(&self) -> Option<u64> {
        // Seven numbers of at most 20 digits each.
        let mut buf = [0u8; 160];
        let n = rustix::io::pread(&self.statm, &mut buf, 0).ok()?;
        let text = std::str::from_utf8(&buf[..n]).ok()?;
        let pages: u64 = text.split_ascii_whitespace().nth(1)?.parse().ok()?;
        Some(pages.saturating_mul(self.page))
    }
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
    super::above_stdio(rustix::fs::open(c".", flags, Mode::empty())?)
}

/// Makes the directory `dir` names this process's current directory.
pub(crate) fn enter_dir(dir: BorrowedFd<'_>) -> io::Result<()> {
    Ok(rustix::process::fchdir(dir)?)
}

/// What names a directory, for comparing current directories without
/// opening them: its device, inode and mount (a bind mount of the same
/// directory is another place: its `..` differs). A directory keeps its
/// inode number while it is some process's current directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DirId {
    dev: (u32, u32),
    ino: u64,
    mount: u64,
}

/// The [`DirId`] of this process's current directory; `None` if it cannot
/// be had (no `statx`, or a kernel before 5.8, which does not give the
/// mount).
pub(crate) fn current_dir_id() -> Option<DirId> {
    use rustix::fs::{statx, AtFlags, StatxFlags, CWD};
    let want = StatxFlags::INO | StatxFlags::MNT_ID;
    let st = statx(CWD, c".", AtFlags::empty(), want).ok()?;
    if !StatxFlags::from_bits_retain(st.stx_mask).contains(want) {
        return None;
    }
    Some(DirId {
        dev: (st.stx_dev_major, st.stx_dev_minor),
        ino: st.stx_ino,
        mount: st.stx_mnt_id,
    })
}

/// The entries of this process's environment as the C library holds it
/// (`environ`), each `NAME=value` as it is there.
pub(crate) fn environ_entries() -> Vec<Vec<u8>> {
    let mut entries = Vec::new();
    for_each_environ(|entry| {
        entries.push(entry.to_vec());
        true
    });
    entries
}

/// Whether this process's environment is `entries` ([`environ_entries`]),
/// entry by entry and in order; reads it in place, copying nothing.
pub(crate) fn environ_is(entries: &[Vec<u8>]) -> bool {
    let mut expected = entries.iter();
    let same = for_each_environ(|entry| expected.next().is_some_and(|e| e == entry));
    same && expected.next().is_none()
}

/// Calls `f` on each entry of `environ` while it returns `true`; `false`
/// if it stopped.
fn for_each_environ(mut f: impl FnMut(&[u8]) -> bool) -> bool {
    // SAFETY: `environ` is the C library's null-terminated array of
    // NUL-terminated strings, read here as `getenv` reads it. Only a
    // concurrent change by another thread could invalidate it, and that
    // is the changer's obligation to prevent (`std::env::set_var` is
    // `unsafe` for exactly this: no other thread may read the environment
    // through the C library meanwhile). Nothing read is kept beyond `f`.
    unsafe {
        let mut at = libc::environ.cast_const();
        if at.is_null() {
            return true;
        }
        while !(*at).is_null() {
            if !f(std::ffi::CStr::from_ptr(*at).to_bytes()) {
                return false;
            }
            at = at.add(1);
        }
    }
    true
}

/// Replaces this process's whole environment with `entries` (each
/// `NAME=value`), which are leaked: the C library keeps pointers to them.
/// Only in a process just forked, on its only thread ([`JustForked`]).
pub(crate) fn replace_environment(_single: &JustForked, entries: Vec<CString>) {
    // SAFETY: the process has one thread (`JustForked`: this one, which
    // is here), so no other thread reads `environ` while it is cleared
    // and refilled; each string handed to `putenv` is leaked, so it lives
    // as long as the environment that points to it.
    unsafe {
        libc::clearenv();
        for entry in entries {
            libc::putenv(entry.into_raw());
        }
    }
}

/// Sends a fork server's answer on a child's status socket: `value` (a
/// pid, `0` for a refusal, `-errno` for a failed fork) as 4 little-endian
/// bytes, with the child's pidfd attached when there is one. Never raises
/// `SIGPIPE`.
pub(crate) fn send_answer(
    sock: BorrowedFd<'_>,
    value: i32,
    pidfd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let bytes = value.to_le_bytes();
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    let fds = pidfd.as_slice();
    if !fds.is_empty() {
        control.push(SendAncillaryMessage::ScmRights(fds));
    }
    let iov = [io::IoSlice::new(&bytes)];
    loop {
        match sendmsg(sock, &iov, &mut control, SendFlags::NOSIGNAL) {
            Ok(4) => return Ok(()),
            Ok(_) => return Err(io::ErrorKind::WriteZero.into()),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Receives what [`send_answer`] sent: the value and the descriptor that
/// came with it. An end of file is `UnexpectedEof`; more than one
/// descriptor is `InvalidData` (all are closed).
pub(crate) fn recv_answer(sock: BorrowedFd<'_>) -> io::Result<(i32, Option<OwnedFd>)> {
    use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};
    let mut bytes = [0u8; 4];
    let mut got = 0;
    let mut fds = Vec::new();
    while got < bytes.len() {
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let mut iov = [io::IoSliceMut::new(&mut bytes[got..])];
        let n = match recvmsg(sock, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC) {
            Ok(msg) => msg.bytes,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmRights(rights) = m {
                fds.extend(rights);
            }
        }
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        got += n;
    }
    if fds.len() > 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "more than one descriptor in a fork server's answer",
        ));
    }
    let fd = fds.pop().map(super::above_stdio).transpose()?;
    Ok((i32::from_le_bytes(bytes), fd))
}

/// Kills and reaps our child `pid`, for which no pidfd could be had (so it
/// is neither left running untracked nor a zombie). Its pid cannot have
/// been reused: it is our child, not yet reaped.
pub(crate) fn kill_and_reap(pid: i32) {
    let _ = kill(pid, libc::SIGKILL);
    if let Some(pid) = Pid::from_raw(pid) {
        while let Err(rustix::io::Errno::INTR) =
            rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty())
        {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    #[test]
    fn an_answer_carries_its_value_and_descriptor() {
        let (a, b) = crate::sys::fdpass::stream_pair().unwrap();
        let (r, _w) = rustix::pipe::pipe().unwrap();
        send_answer(a.as_fd(), 1234, Some(r.as_fd())).unwrap();
        send_answer(a.as_fd(), -libc::EAGAIN, None).unwrap();
        let (value, fd) = recv_answer(b.as_fd()).unwrap();
        assert_eq!(value, 1234);
        let fd = fd.expect("the descriptor sent");
        assert_eq!(
            rustix::fs::fstat(&fd).unwrap().st_ino,
            rustix::fs::fstat(&r).unwrap().st_ino
        );
        assert!(matches!(recv_answer(b.as_fd()), Ok((v, None)) if v == -libc::EAGAIN));
        drop(a);
        let eof = recv_answer(b.as_fd()).unwrap_err();
        assert_eq!(eof.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_group_is_signalled_through_its_leaders_pidfd_or_by_number() {
        // The child touches no lock: it only waits for a signal.
        let pid = fork_then_exit(|_| {
            let _ = own_process_group(0);
            let _ = die_with_parent(0);
            loop {
                // SAFETY: `pause` only waits for a signal.
                unsafe { libc::pause() };
            }
        })
        .unwrap();
        own_process_group(pid).unwrap();
        let pidfd = open_pidfd(pid).unwrap();
        assert_eq!(process_group_of(pid), Some(pid));
        assert!(pidfd_running(pidfd.as_fd()));
        // Signal 0 only checks that the group has a member.
        assert_eq!(signal_group_by_number(pid, 0).unwrap(), GroupSignal::Sent);
        let by_pidfd = signal_group_pidfd(pidfd.as_fd(), 0).unwrap();
        assert_ne!(by_pidfd, GroupSignal::Empty);
        assert_eq!(
            signal_group_by_number(pid, libc::SIGKILL).unwrap(),
            GroupSignal::Sent
        );
        assert_eq!(reap_pidfd(pidfd.as_fd(), true).unwrap(), Some(-9));
        assert!(!pidfd_running(pidfd.as_fd()));
        // Reaped: the pidfd still names the group, now empty.
        if by_pidfd == GroupSignal::Sent {
            assert_eq!(
                signal_group_pidfd(pidfd.as_fd(), libc::SIGKILL).unwrap(),
                GroupSignal::Empty
            );
        }
    }

    #[test]
    fn resident_memory_follows_growth() {
        let rss = ResidentMemory::open().unwrap();
        let before = rss.bytes().unwrap();
        assert!(before > 0);
        let grown = vec![1u8; 64 << 20];
        let grown = std::hint::black_box(grown);
        let after = rss.bytes().unwrap();
        assert!(after >= before + (32 << 20), "{before} then {after}");
        drop(grown);
    }

    #[test]
    fn the_environment_is_compared_in_place() {
        let entries = environ_entries();
        assert!(environ_is(&entries));
        let expected: Vec<Vec<u8>> = std::env::vars_os()
            .map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat())
            .collect();
        assert_eq!(entries, expected);
        let mut fewer = entries.clone();
        if fewer.pop().is_some() {
            assert!(!environ_is(&fewer));
        }
        let mut more = entries.clone();
        more.push(b"MPROC_NOT_SET=1".to_vec());
        assert!(!environ_is(&more));
        if let Some(first) = more.first_mut() {
            first.push(b'x');
            more.pop();
            assert!(!environ_is(&more));
        }
    }

    #[test]
    fn the_current_directory_is_named_by_device_inode_and_mount() {
        use std::os::unix::fs::MetadataExt;
        let Some(id) = current_dir_id() else {
            println!("no statx with the mount id here: skipped");
            return;
        };
        let meta = std::fs::metadata(".").unwrap();
        assert_eq!(id.ino, meta.ino());
        assert_eq!(current_dir_id(), Some(id));
    }

    #[test]
    fn an_inherited_descriptor_is_adopted_once_and_only_if_open() {
        assert!(adopt_inherited_fd(-1).is_err());
        // No process has this many descriptors: never open.
        assert!(adopt_inherited_fd(i32::MAX).is_err());
        let (r, _w) = rustix::pipe::pipe().unwrap();
        let raw = r.into_raw_fd();
        let adopted = adopt_inherited_fd(raw).expect("an open, unowned descriptor");
        assert_eq!(adopted.as_raw_fd(), raw);
        assert!(adopt_inherited_fd(raw).is_err(), "adopted twice");
    }

    #[test]
    fn a_per_process_value_is_made_once_in_a_process() {
        static VALUE: PerProcess<std::sync::atomic::AtomicU32> = PerProcess::new();
        let made = std::sync::atomic::AtomicU32::new(0);
        let init = || {
            made.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            std::sync::atomic::AtomicU32::new(7)
        };
        let a = VALUE.get(init);
        let b = VALUE.get(init);
        assert!(std::ptr::eq(a, b));
        assert!(std::ptr::eq(VALUE.current().expect("made above"), a));
        static NONE: PerProcess<u8> = PerProcess::new();
        assert!(NONE.current().is_none());
        assert_eq!(made.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
