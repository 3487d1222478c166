//! The `ForkServer` start method.
//!
//! A server is started once per process by spawn: a fresh copy of this
//! executable, single-threaded and clean, that forks children on request.
//!
//! # Protocol
//!
//! The user process holds one end of the server's *control* socket. To start
//! a child it sends a request frame ([`REQUEST`], or [`REQUEST_SAME_GROUP`]
//! for a child that stays in the server's process group; nothing else) carrying two
//! descriptors: the child's end of a new control socket (its task will
//! arrive there, as for spawn) and one end of a new *status* socket. The
//! server forks; it sends the child's pid (4 bytes, little-endian) on the
//! status socket with the child's pidfd attached (having made it the
//! leader of a new process group first, unless asked not to), reaps the
//! child when it ends and writes its exit code (4 bytes) there, followed by
//! what it used (its `rusage`: peak RSS, user and system time, 8 bytes
//! each), which its user, not being its parent, cannot learn otherwise. The
//! user process reads
//! both; the status socket is the child's sentinel. A request of other
//! bytes is refused (a pid of 0, no fork); a failed fork is told as
//! `-errno` in place of the pid.
//!
//! What the child reads first is on its control socket before the request
//! leaves, whenever the socket's buffer surely holds it: the state it
//! inherits from its user *now* ([`State`]: what differs from the server's
//! own, which it inherits by the fork: environment, umask, resource limits,
//! current directory as a descriptor), then its first frame. So a start
//! costs the child no wait for its user, and the user no wait for the
//! child: the pidfd comes from the server, which cannot have reaped the
//! child before it opened it (so no pid reuse can fool it). The server
//! never reads the state.
//!
//! The server dies with its user (`PR_SET_PDEATHSIG`, and end of file on the
//! control socket) and its children die with it; at a normal exit the user
//! closes the control socket and reaps the server ([`shutdown`]). If the server is killed,
//! the next start notices (a refused send or an end of file where the pid
//! should be) and starts a new server, transparently.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{bootstrap, spawn, FirstFrame, Started, Waiter};
use crate::error::{Error, Result};
use crate::sys::{fdpass, proc, rlimit};
use crate::task::Outcome;

/// A guard against a server that stops answering (it never should).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

struct Server {
    pid: i32,
    pidfd: OwnedFd,
    control: OwnedFd,
    /// What the server's children inherit from it by the fork: its user's
    /// state when it was spawned (it never changes its own), each part
    /// known only if it did not change around the spawn.
    inherits: Arc<Snapshot>,
}

/// An environment, as `std::env::vars_os` gives it.
type Env = Vec<(std::ffi::OsString, std::ffi::OsString)>;

/// A process's state as far as a fork-server child inherits it; `None`
/// where unknown.
#[derive(Clone, Debug, Default, PartialEq)]
struct Snapshot {
    /// The environment's entries as the C library holds them.
    env: Option<Vec<Vec<u8>>>,
    umask: Option<u32>,
    limits: Option<[proc::Limit; proc::RESOURCE_COUNT]>,
    cwd: Option<proc::DirId>,
}

impl Snapshot {
    /// This process's state, now.
    fn now() -> Snapshot {
        Snapshot {
            env: Some(proc::environ_entries()),
            umask: proc::current_umask(),
            limits: Some(proc::resource_limits()),
            cwd: proc::current_dir_id(),
        }
    }

    /// What `self` and `other` agree on (the state of a process spawned
    /// between the two: another thread may have changed any part).
    fn common(self, other: &Snapshot) -> Snapshot {
        fn same<T: PartialEq>(a: Option<T>, b: &Option<T>) -> Option<T> {
            a.filter(|a| Some(a) == b.as_ref())
        }
        Snapshot {
            env: same(self.env, &other.env),
            umask: same(self.umask, &other.umask),
            limits: same(self.limits, &other.limits),
            cwd: same(self.cwd, &other.cwd),
        }
    }
}

/// The fork server of each process, under its own lock. A forked child
/// must not lock its parent's: another thread of the parent may have held
/// that lock at the fork (it is held while a server starts), and nobody
/// would release it in the child. So each process has its own slot
/// ([`proc::PerProcess`]); the parent's is left as it is (its server and
/// descriptors are the parent's, not ours to close).
static SLOT: proc::PerProcess<Mutex<Option<Server>>> = proc::PerProcess::new();

/// This process's fork server, locked.
fn server() -> MutexGuard<'static, Option<Server>> {
    slot().lock().unwrap_or_else(|e| e.into_inner())
}

fn slot() -> &'static Mutex<Option<Server>> {
    SLOT.get(|| Mutex::new(None))
}

/// Asks the fork server (starting it if needed) for a child that runs
/// `first`; its outcome comes back on the returned `ctl`.
pub(crate) fn start(first: &FirstFrame, own_group: bool) -> Result<Started> {
    let mut last = None;
    let kind = if own_group {
        REQUEST
    } else {
        REQUEST_SAME_GROUP
    };
    for _ in 0..2 {
        match request(kind, State::capture, Some(first)) {
            Ok(started) => return Ok(started),
            Err(Failed::Here(e)) => return Err(e),
            Err(Failed::Server(e)) => {
                retire_server();
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(Error::InvalidState("fork server unavailable")))
}

/// Why a request failed: on our side (no descriptor left, a refusal: the
/// server is fine and stays), or the server's (it is retired and the
/// request tried once more with a new one). Retiring a server kills its
/// children, so a shortage of descriptors here must never do it.
enum Failed {
    Here(Error),
    Server(Error),
}

/// A start request, all of it: this protocol's tag and version, sent with
/// two descriptors (the child's control socket, the status socket's other
/// end). Anything else is refused.
/// The child leads a new process group, made by the server (and the child)
/// before the pid is sent.
const REQUEST: &[u8] = b"mproc-f3";

/// As [`REQUEST`], the child staying in the server's process group (its
/// user's: the server is not put in a group of its own).
const REQUEST_SAME_GROUP: &[u8] = b"mproc-f3 same-group";

/// The longest request frame the server reads: a longer one leaves a
/// stream it cannot follow, and the server leaves (its user starts
/// another).
const MAX_REQUEST: u64 = 64;

/// Asks for a child: makes its state frame with `state` (from what the
/// server's children inherit), sends it and `first` to the child, and the
/// request to the server; the state and first frame before the request
/// when they surely fit in the socket's buffer (then nobody waits for
/// anybody), after the pid came if not.
fn request(
    request: &[u8],
    state: impl FnOnce(&Snapshot) -> Result<State>,
    first: Option<&FirstFrame>,
) -> std::result::Result<Started, Failed> {
    let here = |context| move |e: std::io::Error| Failed::Here(Error::io(context)(e));
    let (ctl, child_end) =
        fdpass::stream_pair().map_err(here("cannot create the control socket"))?;
    let (status, status_end) =
        fdpass::stream_pair().map_err(here("cannot create the status socket"))?;
    let mut guard = server();
    if guard.is_none() {
        *guard = Some(launch().map_err(Failed::Here)?);
    }
    let server = guard.as_ref().expect("server set above");
    let state = state(&server.inherits).map_err(Failed::Here)?;
    let size = state.bytes.len() + first.map_or(0, FirstFrame::len);
    let early = fits_before_the_fork(&ctl, size);
    if early {
        send_to_child(&ctl, &state, first).map_err(Failed::Here)?;
    }
    fdpass::send_frame(
        server.control.as_fd(),
        request,
        &[child_end.as_fd(), status_end.as_fd()],
    )
    .map_err(|e| Failed::Server(Error::io("cannot reach the fork server")(e)))?;
    drop(guard);
    drop((child_end, status_end));
    let (pid, pidfd) = read_answer(&status).map_err(Failed::Server)?;
    if pid < 0 {
        return Err(Failed::Here(Error::Io {
            context: "the fork server cannot fork",
            source: std::io::Error::from_raw_os_error(-pid),
        }));
    }
    if pid == 0 {
        return Err(Failed::Here(Error::Protocol(
            "the fork server refused the start request".into(),
        )));
    }
    let Some(pidfd) = pidfd else {
        return Err(Failed::Server(Error::Protocol(
            "the fork server sent a pid without its pidfd".into(),
        )));
    };
    if !early {
        // The child is alive and waits for its state, then its first frame.
        if let Err(e) = send_to_child(&ctl, &state, first) {
            // It ends at the end of file on its control socket: take its
            // status, as the server tells it.
            drop(ctl);
            let _ = read_i32(&status);
            return Err(Failed::Here(e));
        }
    }
    Ok(Started {
        pid,
        pidfd,
        waiter: Waiter::Served { status },
        ctl,
    })
}

/// The state frame, then the first frame (if any), on the child's `ctl`.
fn send_to_child(ctl: &OwnedFd, state: &State, first: Option<&FirstFrame>) -> Result<()> {
    let cwd: Vec<_> = state.cwd.iter().map(AsFd::as_fd).collect();
    fdpass::send_frame(ctl.as_fd(), &state.bytes, &cwd)
        .map_err(Error::io("cannot send the state to the child"))?;
    match first {
        Some(frame) => super::send_first_frame(ctl, frame),
        None => Ok(()),
    }
}

/// The most sent to a child before it exists (the user holds the server's
/// lock meanwhile).
const EARLY_MAX: usize = 64 << 10;

/// Whether `size` bytes (in two frames) surely fit in `ctl`'s send buffer
/// with nobody reading: then sending them cannot block. The kernel counts
/// each message's bookkeeping too, and reports the buffer doubled.
fn fits_before_the_fork(ctl: &OwnedFd, size: usize) -> bool {
    const BOOKKEEPING: usize = 4 << 10;
    let buffer = rustix::net::sockopt::socket_send_buffer_size(ctl).unwrap_or(0);
    size <= EARLY_MAX && size + BOOKKEEPING <= buffer / 2
}

/// The first bytes of a state frame (its version).
const STATE_TAG: &[u8; 8] = b"mproc-s2";

/// The longest state frame a child reads (the environment is most of it).
const MAX_STATE: usize = 16 << 20;

/// What a child inherits from its user, captured at each start (the fork
/// server started long before, and the user may have changed all of it
/// since) and sent to the child itself on its control socket, before its
/// first frame: the server never reads it. Only what differs from what the
/// child inherits from the server is in it (nothing, most of the time).
/// Its bytes:
///
/// ```text
/// tag        8 bytes   STATE_TAG
/// cwd        u32       0: the server's; 1: the descriptor sent with the frame
/// umask      u32       u32::MAX: the server's
/// limits     u32 n, then n x (u32 index, soft u64, hard u64): those that
///            differ from the server's (index in RLIMIT_* order)
/// env        u32 n, then n x (u32 len, `NAME=value` bytes, no NUL);
///            n = u32::MAX: the server's
/// ```
///
/// all little-endian.
struct State {
    bytes: Vec<u8>,
    /// The current directory, sent with the frame, if not the server's.
    cwd: Option<OwnedFd>,
}

impl State {
    /// This process's state, now, as far as it differs from `server`'s
    /// (what the child inherits from the server).
    fn capture(server: &Snapshot) -> Result<State> {
        let mut bytes = Vec::with_capacity(64);
        bytes.extend_from_slice(STATE_TAG);
        let here = proc::current_dir_id();
        let cwd = if here.is_some() && here == server.cwd {
            None
        } else {
            let fd =
                proc::current_dir_fd().map_err(Error::io("cannot open the current directory"))?;
            Some(fd)
        };
        put_u32(&mut bytes, usize::from(cwd.is_some()));
        let umask = proc::current_umask().filter(|&m| Some(m) != server.umask);
        bytes.extend_from_slice(&umask.unwrap_or(u32::MAX).to_le_bytes());
        let limits = proc::resource_limits();
        let changed: Vec<(usize, &proc::Limit)> = (limits.iter().enumerate())
            .filter(|&(i, l)| server.limits.is_none_or(|s| s[i] != *l))
            .collect();
        put_u32(&mut bytes, changed.len());
        for (i, (soft, hard)) in changed {
            put_u32(&mut bytes, i);
            bytes.extend_from_slice(&soft.to_le_bytes());
            bytes.extend_from_slice(&hard.to_le_bytes());
        }
        // Compared in place: copying it costs more than the rest.
        if server.env.as_deref().is_some_and(proc::environ_is) {
            bytes.extend_from_slice(&u32::MAX.to_le_bytes());
            return Ok(State { bytes, cwd });
        }
        let env: Env = std::env::vars_os().collect();
        put_u32(&mut bytes, env.len());
        for (k, v) in &env {
            let (k, v) = (k.as_encoded_bytes(), v.as_encoded_bytes());
            put_u32(&mut bytes, k.len() + 1 + v.len());
            bytes.extend_from_slice(k);
            bytes.push(b'=');
            bytes.extend_from_slice(v);
        }
        if bytes.len() > MAX_STATE {
            return Err(Error::InvalidArgument(format!(
                "the environment is too large for a fork-server child ({} bytes, at most {MAX_STATE})",
                bytes.len()
            )));
        }
        Ok(State { bytes, cwd })
    }
}

fn put_u32(buf: &mut Vec<u8>, n: usize) {
    // Every count and length is below MAX_STATE (checked before sending).
    buf.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

/// A state frame as the child reads it: checked, borrowing its bytes.
#[derive(Debug, PartialEq)]
struct Inherited<'a> {
    /// A directory comes with the frame.
    cwd: bool,
    umask: Option<u32>,
    /// The limits to set, by index.
    limits: Vec<(usize, proc::Limit)>,
    /// `None`: the server's environment, unchanged.
    env: Option<Vec<&'a [u8]>>,
}

/// Reads a state frame; `None` if it is not one (wrong tag, truncated,
/// longer than it says, a count beyond the bytes there are, a NUL in the
/// environment, a value out of range).
fn parse_state(bytes: &[u8]) -> Option<Inherited<'_>> {
    let mut rest = bytes.strip_prefix(STATE_TAG)?;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = rest.split_at_checked(n)?;
        rest = tail;
        Some(head)
    };
    let u32_at = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes"));
    let u64_at = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let cwd = match u32_at(take(4)?) {
        0 => false,
        1 => true,
        _ => return None,
    };
    let umask = Some(u32_at(take(4)?)).filter(|&m| m != u32::MAX);
    if umask.is_some_and(|m| m > 0o777) {
        return None;
    }
    let n = u32_at(take(4)?) as usize;
    if n > proc::RESOURCE_COUNT {
        return None;
    }
    let mut limits = Vec::with_capacity(n);
    for _ in 0..n {
        let entry = take(20)?;
        let index = u32_at(&entry[..4]) as usize;
        let (soft, hard) = (u64_at(&entry[4..12]), u64_at(&entry[12..]));
        if index >= proc::RESOURCE_COUNT || soft > hard {
            return None;
        }
        limits.push((index, (soft, hard)));
    }
    let n = u32_at(take(4)?);
    let env = if n == u32::MAX {
        None
    } else {
        let n = n as usize;
        let mut env = Vec::with_capacity(n.min(bytes.len() / 4));
        for _ in 0..n {
            let len = u32_at(take(4)?) as usize;
            let entry = take(len)?;
            if entry.contains(&0) || !entry.contains(&b'=') {
                return None;
            }
            env.push(entry);
        }
        Some(env)
    };
    rest.is_empty().then_some(Inherited {
        cwd,
        umask,
        limits,
        env,
    })
}

/// In the forked child (`forked`: on its only thread), before its task:
/// reads its user's state on `ctl` and takes on what differs from the
/// server's. The limits come last (a lowered address-space limit must not
/// stop the environment's copy). A state it cannot read or a directory it
/// cannot enter ends it (its parent is told why): running in another
/// directory or environment than its user's would be the silent error this
/// is here to prevent.
fn take_on(ctl: &OwnedFd, forked: &proc::JustForked) {
    let refuse = |why: String| -> ! { bootstrap::refuse(ctl, Outcome::Refused(why)) };
    let (bytes, mut fds) = match fdpass::recv_frame(ctl.as_fd(), None, MAX_STATE as u64) {
        Ok(Some(frame)) => frame,
        Ok(None) => refuse("end of file before its parent's state".into()),
        Err(e) => refuse(format!("cannot read its parent's state: {e}")),
    };
    let Some(inherited) = parse_state(&bytes) else {
        refuse("its parent's state is garbled".into())
    };
    if fds.len() != usize::from(inherited.cwd) {
        refuse(format!(
            "its parent's state came with {} descriptors, not {}",
            fds.len(),
            usize::from(inherited.cwd)
        ));
    }
    if let Some(cwd) = fds.pop() {
        if let Err(e) = proc::enter_dir(cwd.as_fd()) {
            refuse(format!("cannot enter its parent's current directory: {e}"));
        }
    }
    if let Some(env) = &inherited.env {
        let env = (env.iter())
            .filter_map(|e| std::ffi::CString::new(*e).ok())
            .collect();
        proc::replace_environment(forked, env);
    }
    if let Some(mask) = inherited.umask {
        proc::set_umask(mask);
    }
    proc::set_resource_limits(&inherited.limits);
}

/// Reads the server's answer to a request on the status socket: the pid
/// (or why there is none) and the child's pidfd.
fn read_answer(status: &OwnedFd) -> Result<(i32, Option<OwnedFd>)> {
    wait_for_server(status)?;
    proc::recv_answer(status.as_fd()).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Error::Io {
            context: "the fork server did not answer",
            source: e,
        },
        _ => Error::io("reading from the fork server")(e),
    })
}

fn wait_for_server(fd: &OwnedFd) -> Result<()> {
    let deadline = Some(Instant::now() + ANSWER_TIMEOUT);
    if !fdpass::wait_readable(fd.as_fd(), deadline)
        .map_err(Error::io("waiting for the fork server"))?
    {
        return Err(Error::Timeout);
    }
    Ok(())
}

fn read_i32(fd: &OwnedFd) -> Result<i32> {
    wait_for_server(fd)?;
    let mut buf = [0u8; 4];
    let n = rustix::io::read(fd, &mut buf)
        .map_err(|e| Error::io("reading from the fork server")(e.into()))?;
    if n != 4 {
        return Err(Error::Io {
            context: "the fork server did not answer",
            source: std::io::ErrorKind::UnexpectedEof.into(),
        });
    }
    Ok(i32::from_le_bytes(buf))
}

fn launch() -> Result<Server> {
    let (control, server_end) =
        fdpass::stream_pair().map_err(Error::io("cannot create the control socket"))?;
    // The server's state is ours as the spawn takes it: known where it did
    // not change around the spawn (another thread's `set_var`, `chdir`...).
    let before = Snapshot::now();
    // In its user's process group: a child asked to stay there does so.
    let pid = spawn::exec_self("forkserver", server_end, false)?;
    let inherits = Arc::new(before.common(&Snapshot::now()));
    let pidfd = proc::open_pidfd(pid).map_err(Error::io("pidfd_open failed"))?;
    Ok(Server {
        pid,
        pidfd,
        control,
        inherits,
    })
}

/// Drops the current server (after a failed request), reaping it if it died.
fn retire_server() {
    if let Some(s) = server().take() {
        let _ = proc::signal_pidfd(s.pidfd.as_fd(), libc::SIGKILL);
        let _ = proc::reap_pidfd(s.pidfd.as_fd(), true);
    }
}

/// Stops this process's fork server, if it started one, and reaps it: at a
/// normal exit, after every child was joined. Closing the control socket
/// makes the server leave on its own; one that has not within a second is
/// killed. Left alone, it would outlive us for a moment, an orphan for the
/// init process to reap. Skipped if another thread is using the server
/// (the exit must not wait for it).
pub(crate) fn shutdown() {
    // A process that never started a server (a child) has no slot either.
    let Some(slot) = SLOT.current() else {
        return;
    };
    let server = match slot.try_lock() {
        Ok(mut guard) => guard.take(),
        Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner().take(),
        Err(std::sync::TryLockError::WouldBlock) => None,
    };
    let Some(Server { pidfd, control, .. }) = server else {
        return;
    };
    drop(control);
    let deadline = Some(Instant::now() + Duration::from_secs(1));
    if !matches!(fdpass::wait_readable(pidfd.as_fd(), deadline), Ok(true)) {
        let _ = proc::signal_pidfd(pidfd.as_fd(), libc::SIGKILL);
    }
    let _ = proc::reap_pidfd(pidfd.as_fd(), true);
}

/// This process's fork server's pid, if one runs (tests).
#[doc(hidden)]
pub fn server_pid() -> Option<i32> {
    server().as_ref().map(|s| s.pid)
}

/// Kills the fork server (tests of the transparent restart).
#[doc(hidden)]
pub fn kill_server() -> Option<i32> {
    let guard = server();
    let s = guard.as_ref()?;
    proc::signal_pidfd(s.pidfd.as_fd(), libc::SIGKILL).ok()?;
    Some(s.pid)
}

/// Starts a fork-server child with a request and a state frame of the
/// caller's choosing (tests of the checks on both): the child's exit code
/// once it ended (it never gets a first frame), or the server's refusal.
#[doc(hidden)]
pub fn raw_request(request: &[u8], state: &[u8]) -> Result<i32> {
    let state = |_: &Snapshot| {
        Ok(State {
            bytes: state.to_vec(),
            cwd: None,
        })
    };
    match self::request(request, state, None) {
        Ok(started) => {
            let Waiter::Served { status } = &started.waiter else {
                unreachable!("a fork-server child is served")
            };
            // It waits for its first frame: none comes.
            drop(started.ctl);
            read_i32(status)
        }
        Err(Failed::Here(e) | Failed::Server(e)) => Err(e),
    }
}

/// One child of the server: its pidfd and the status socket to report on.
struct Kid {
    pidfd: OwnedFd,
    status: OwnedFd,
}

/// The server's loop (runs in the bootstrap constructor, never returns).
pub(crate) fn serve(control: OwnedFd) -> ! {
    // A Ctrl-C at the terminal is for the user's process, not for the
    // server. Blocked, not ignored: a child inherits an ignored SIGINT, and
    // one sent to it before it restored the default would be lost.
    proc::block_sigint(true);
    warm_up();
    let me = proc::getpid();
    let mut kids: Vec<Kid> = Vec::new();
    loop {
        let mut fds = vec![control.as_fd()];
        fds.extend(kids.iter().map(|k| k.pidfd.as_fd()));
        let ready = match fdpass::wait_any(&fds, None) {
            Ok(r) => r,
            Err(_) => proc::exit_now(1),
        };
        drop(fds);
        for &i in ready.iter().rev().filter(|&&i| i > 0) {
            let kid = kids.swap_remove(i - 1);
            let ended = rlimit::reap_pidfd_with_usage(kid.pidfd.as_fd(), true);
            // The code, then what the child used (its user cannot reap it
            // to learn it); the unknown code alone if the reap failed.
            let status = match ended.ok().flatten() {
                Some((code, usage)) => [&code.to_le_bytes()[..], &usage.to_bytes()].concat(),
                None => crate::exit::UNKNOWN_EXIT_CODE.to_le_bytes().to_vec(),
            };
            // Never SIGPIPE: the user may have closed its end.
            let _ = rustix::net::send(&kid.status, &status, rustix::net::SendFlags::NOSIGNAL);
        }
        if ready.first() == Some(&0) {
            match fdpass::recv_frame(control.as_fd(), None, MAX_REQUEST) {
                Ok(Some((bytes, fds))) => {
                    let Ok::<[OwnedFd; 2], _>([ctl, status]) = fds.try_into() else {
                        // Not ours: drop what came (the user sees an end
                        // of file where the pid should be).
                        continue;
                    };
                    let own_group = match &bytes[..] {
                        REQUEST => true,
                        REQUEST_SAME_GROUP => false,
                        _ => {
                            let _ = proc::send_answer(status.as_fd(), 0, None);
                            continue;
                        }
                    };
                    let kid = fork_child(me, &control, &mut kids, ctl, status, own_group);
                    if let Some(kid) = kid {
                        kids.push(kid);
                    }
                }
                // The user process closed its end or died (or sent a frame
                // too long to be a request, after which the stream cannot
                // be followed): our children die with us (their death
                // signal).
                Ok(None) | Err(_) => proc::exit_now(0),
            }
        }
    }
}

/// Does once, in the server, what every child would otherwise do for
/// itself after the fork, each time paying page faults and symbol lookups
/// for it: the panic hook and the binary's identity (as before any fork),
/// stdout and stderr, a thread-local table of the codec (whose first use
/// registers its destructor, through symbols the dynamic linker binds on
/// first call).
fn warm_up() {
    use std::io::Write;
    bootstrap::prepare_fork();
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    if let Ok(frame) = crate::codec::encode(&0u32) {
        let _ = crate::codec::decode::<u32>(&frame.bytes, Vec::new());
    }
}

fn fork_child(
    me: i32,
    control: &OwnedFd,
    kids: &mut Vec<Kid>,
    ctl: OwnedFd,
    status: OwnedFd,
    own_group: bool,
) -> Option<Kid> {
    // The server is single-threaded (it runs in the constructor of a fresh
    // exec and starts no thread), so no lock is held by anyone else.
    let status_raw = proc::raw(&status);
    let in_child = move |forked: proc::JustForked| {
        if own_group {
            // The server does it too: the group exists once either did.
            let _ = proc::own_process_group(0);
        }
        // Close every descriptor the server holds for others.
        kids.clear();
        proc::close_raw(status_raw);
        proc::close_raw(proc::raw(control));
        proc::block_sigint(false);
        let _ = bootstrap::die_with_parent(me);
        take_on(&ctl, &forked);
        bootstrap::run_task_child(ctl)
    };
    let failed = |e: std::io::Error| -e.raw_os_error().unwrap_or(libc::EAGAIN);
    let answer = match proc::fork_then_exit(in_child) {
        // A child we cannot watch (no descriptor left for its pidfd) is
        // not left running: killed and reaped, its start failed.
        Ok(pid) => proc::open_pidfd(pid)
            .map_err(|e| {
                proc::kill_and_reap(pid);
                failed(e)
            })
            .map(|pidfd| (pid, pidfd)),
        // A pid limit, no memory: the server is fine and must not be
        // retired for it.
        Err(e) => Err(failed(e)),
    };
    match answer {
        Ok((pid, pidfd)) => {
            if own_group {
                // Before the pid leaves: a signal to the group never
                // misses the child.
                let _ = proc::own_process_group(pid);
            }
            let _ = proc::send_answer(status.as_fd(), pid, Some(pidfd.as_fd()));
            Some(Kid { pidfd, status })
        }
        Err(errno) => {
            let _ = proc::send_answer(status.as_fd(), errno, None);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Taken by the tests that read this process's umask and the one that
    /// changes it.
    static UMASK: Mutex<()> = Mutex::new(());

    fn umask_steady() -> MutexGuard<'static, ()> {
        UMASK.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Everything, as sent to the child of a server whose state is unknown.
    fn captured() -> Vec<u8> {
        State::capture(&Snapshot::default()).unwrap().bytes
    }

    #[test]
    fn a_state_equal_to_the_servers_is_not_sent() {
        let _umask = umask_steady();
        let state = State::capture(&Snapshot::now()).unwrap();
        assert!(state.cwd.is_none());
        let got = parse_state(&state.bytes).expect("our own state");
        let nothing = Inherited {
            cwd: false,
            umask: None,
            limits: Vec::new(),
            env: None,
        };
        assert_eq!(got, nothing);
        // The tag and four words: the whole frame.
        assert_eq!(state.bytes.len(), 8 + 4 * 4);
    }

    #[test]
    fn only_what_differs_from_the_servers_state_is_sent() {
        let _umask = umask_steady();
        let mut server = Snapshot::now();
        let ours = server.clone();
        server.umask = ours.umask.map(|m| m ^ 0o002);
        let limits = server.limits.as_mut().unwrap();
        limits[3] = (1, 2);
        limits[7] = (3, 4);
        server.env = Some(vec![b"MPROC_TEST_OTHER=1".to_vec()]);
        let state = State::capture(&server).unwrap();
        assert!(state.cwd.is_none());
        let got = parse_state(&state.bytes).expect("our own state");
        let our_limits = ours.limits.unwrap();
        assert_eq!(got.umask, ours.umask);
        assert_eq!(got.limits, vec![(3, our_limits[3]), (7, our_limits[7])]);
        assert_eq!(got.env.map(|e| e.len()), ours.env.map(|e| e.len()));
        let expected: Vec<Vec<u8>> = std::env::vars_os()
            .map(|(k, v)| [k.as_encoded_bytes(), b"=", v.as_encoded_bytes()].concat())
            .collect();
        assert_eq!(ours_env_sent(&server), expected);
        // Another directory than the server's goes as a descriptor.
        server.cwd = None;
        let state = State::capture(&server).unwrap();
        assert!(state.cwd.is_some());
        assert!(parse_state(&state.bytes).expect("our own state").cwd);
    }

    /// The environment a state captured against `server` sends.
    fn ours_env_sent(server: &Snapshot) -> Vec<Vec<u8>> {
        let state = State::capture(server).unwrap();
        let got = parse_state(&state.bytes).expect("our own state");
        got.env
            .expect("sent")
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect()
    }

    #[test]
    fn a_snapshot_keeps_what_did_not_change_around_a_spawn() {
        let before = Snapshot::now();
        let mut after = before.clone();
        after.umask = Some(0o777);
        after.env = None;
        let common = before.clone().common(&after);
        assert_eq!(common.umask, None);
        assert_eq!(common.env, None);
        assert_eq!(common.limits, before.limits);
        assert_eq!(common.cwd, before.cwd);
    }

    #[test]
    fn a_captured_state_reads_back_as_this_process_state() {
        let _umask = umask_steady();
        let state = State::capture(&Snapshot::default()).unwrap();
        assert!(state.cwd.is_some());
        let got = parse_state(&state.bytes).expect("our own state");
        assert!(got.cwd);
        assert_eq!(got.umask, proc::current_umask());
        let all: Vec<_> = proc::resource_limits().into_iter().enumerate().collect();
        assert_eq!(got.limits, all);
        let env: Vec<Vec<u8>> = std::env::vars_os()
            .map(|(k, v)| [k.as_encoded_bytes(), b"=", v.as_encoded_bytes()].concat())
            .collect();
        assert_eq!(
            got.env,
            Some(env.iter().map(Vec::as_slice).collect::<Vec<_>>())
        );
    }

    #[test]
    fn garbled_state_frames_are_refused() {
        let _umask = umask_steady();
        let good = captured();
        // Every truncation, and one byte too many.
        for n in 0..good.len() {
            assert!(parse_state(&good[..n]).is_none(), "truncated at {n}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(parse_state(&longer).is_none());
        // Another frame, a wrong version.
        assert!(parse_state(b"fork").is_none());
        assert!(parse_state(REQUEST).is_none());
        let mut other = good.clone();
        other[7] = b'1';
        assert!(parse_state(&other).is_none());
        // Counts beyond the bytes, limits beyond Linux's, bad values.
        let n = |v: u32| v.to_le_bytes().to_vec();
        let head = |cwd: u32, umask: u32| [&STATE_TAG[..], &n(cwd), &n(umask)].concat();
        let with = |parts: &[&[u8]]| [&head(0, 0o22)[..], &parts.concat()].concat();
        let limit = |i: u32, soft: u64, hard: u64| {
            [&n(i)[..], &soft.to_le_bytes(), &hard.to_le_bytes()].concat()
        };
        assert!(parse_state(&with(&[&n(u32::MAX)])).is_none());
        assert!(parse_state(&with(&[&n(17)])).is_none());
        assert!(parse_state(&with(&[&n(1), &limit(0, 5, 4), &n(0)])).is_none());
        assert!(parse_state(&with(&[&n(1), &limit(16, 4, 5), &n(0)])).is_none());
        assert!(parse_state(&with(&[&n(0), &n(u32::MAX - 1)])).is_none());
        assert!(parse_state(&[&head(2, 0o22)[..], &n(0), &n(u32::MAX)].concat()).is_none());
        // u32::MAX entries: the server's environment, and nothing after.
        let kept = with(&[&n(0), &n(u32::MAX)]);
        assert!(parse_state(&kept).expect("kept environment").env.is_none());
        assert!(parse_state(&with(&[&n(0), &n(u32::MAX), &n(0)])).is_none());
        assert!(parse_state(&with(&[&n(0), &n(1), &n(5), b"A=b\0c"])).is_none());
        assert!(parse_state(&with(&[&n(0), &n(1), &n(3), b"Abc"])).is_none());
        assert!(parse_state(&[&head(0, 0o1000)[..], &n(0), &n(0)].concat()).is_none());
        let minimal = with(&[&n(1), &limit(15, 4, 5), &n(1), &n(3), b"A=b"]);
        let ok = parse_state(&minimal).expect("a minimal state frame");
        assert_eq!(
            ok,
            Inherited {
                cwd: false,
                umask: Some(0o22),
                limits: vec![(15, (4, 5))],
                env: Some(vec![&b"A=b"[..]]),
            }
        );
        let with_dir = [&head(1, u32::MAX)[..], &n(0), &n(u32::MAX)].concat();
        let ok = parse_state(&with_dir).expect("a directory and nothing else");
        assert!(ok.cwd && ok.umask.is_none() && ok.limits.is_empty() && ok.env.is_none());
        // Noise never panics.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..2000 {
            let mut noise = good[..len.min(good.len())].to_vec();
            for b in noise.iter_mut().skip(8) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if x % 7 == 0 {
                    *b = x as u8;
                }
            }
            let _ = parse_state(&noise);
        }
    }

    /// Changes the umask of the test process for a moment, to masks that
    /// only take rights from group and others: harmless to tests running
    /// beside it as the same user.
    #[test]
    fn the_umask_read_follows_changes() {
        let _umask = umask_steady();
        let old = rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o077));
        let seen = (proc::current_umask(), {
            rustix::process::umask(rustix::fs::Mode::from_bits_truncate(0o027));
            proc::current_umask()
        });
        rustix::process::umask(old);
        assert_eq!(seen, (Some(0o077), Some(0o027)));
        assert_eq!(proc::current_umask(), Some(old.bits()));
    }

    /// The cost of capturing the state (run with `--ignored --nocapture`).
    #[test]
    #[ignore]
    fn capture_cost() {
        let n = 2000;
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(State::capture(&Snapshot::default()).unwrap());
        }
        let each = t.elapsed() / n;
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(proc::current_umask());
        }
        let umask = t.elapsed() / n;
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(proc::current_dir_fd().unwrap());
        }
        let cwd = t.elapsed() / n;
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(proc::resource_limits());
        }
        let limits = t.elapsed() / n;
        let t = Instant::now();
        for _ in 0..n {
            std::hint::black_box(std::env::vars_os().count());
        }
        let env = t.elapsed() / n;
        println!(
            "capture {each:?}, of which umask {umask:?}, limits {limits:?}, env {env:?}; \
             cwd fd {cwd:?}"
        );
    }
}
