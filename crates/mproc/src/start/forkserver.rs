//! The `ForkServer` start method.
//!
//! A server is started once per process by spawn: a fresh copy of this
//! executable, single-threaded and clean, that forks children on request.
//!
//! # Protocol
//!
//! The user process holds one end of the server's *control* socket. To start
//! a child it sends a request frame ([`REQUEST`], nothing else) carrying two
//! descriptors: the child's end of a new control socket (its task will
//! arrive there, as for spawn) and the write end of a *status* pipe. The
//! server forks; the server writes the child's pid (4 bytes, little-endian)
//! on the status pipe, reaps the child when it ends and writes its exit
//! code (4 bytes) there. The user process reads both; the status pipe is
//! the child's sentinel. A request of other bytes is refused (a pid of 0,
//! no fork); a failed fork is told as `-errno` in place of the pid.
//!
//! While the server forks, the user captures what the child must inherit
//! from it *now* ([`State`]: environment, umask, resource limits, and its
//! current directory as a descriptor) and sends it to the child itself,
//! first on the child's control socket. The child takes it on, then runs
//! the task child bootstrap on that socket. The server never reads it, and
//! its capture costs the start nothing it would not wait for anyway.
//!
//! The server dies with its user (`PR_SET_PDEATHSIG`, and end of file on the
//! control socket) and its children die with it; at a normal exit the user
//! closes the control socket and reaps the server ([`shutdown`]). If the server is killed,
//! the next start notices (a refused send or an end of file where the pid
//! should be) and starts a new server, transparently.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{bootstrap, spawn, Started, Waiter};
use crate::error::{Error, Result};
use crate::sys::{fdpass, proc};
use crate::task::Outcome;

/// A guard against a server that stops answering (it never should).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

struct Server {
    pid: i32,
    pidfd: OwnedFd,
    control: OwnedFd,
    /// The environment the server was started with, which its children
    /// inherit (it never changes its own); `None` if it changed while the
    /// server started (unknown).
    env: Option<Arc<Env>>,
}

/// An environment, as `std::env::vars_os` gives it.
type Env = Vec<(std::ffi::OsString, std::ffi::OsString)>;

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

/// Asks the fork server (starting it if needed) for a child that waits for
/// its first frame on the returned `ctl`.
pub(crate) fn start() -> Result<Started> {
    let mut last = None;
    for _ in 0..2 {
        match request(REQUEST, |server_env| {
            State::capture(server_env).map(|s| s.bytes)
        }) {
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
/// two descriptors (the child's control socket, the status pipe's write
/// end). Anything else is refused.
const REQUEST: &[u8] = b"mproc-f2";

/// The longest request frame the server reads: a longer one leaves a
/// stream it cannot follow, and the server leaves (its user starts
/// another).
const MAX_REQUEST: u64 = 64;

/// Asks for a child: sends `request`, then, while the server forks, makes
/// the child's state frame with `state` and sends it to the child.
fn request(
    request: &[u8],
    state: impl FnOnce(Option<&Env>) -> Result<Vec<u8>>,
) -> std::result::Result<Started, Failed> {
    let here = |context| move |e: std::io::Error| Failed::Here(Error::io(context)(e));
    let (ctl, child_end) =
        fdpass::stream_pair().map_err(here("cannot create the control socket"))?;
    let (status_r, status_w) = fdpass::pipe().map_err(here("cannot create a pipe"))?;
    let cwd = proc::current_dir_fd().map_err(here("cannot open the current directory"))?;
    let server_env = {
        let mut guard = server();
        if guard.is_none() {
            *guard = Some(launch().map_err(Failed::Here)?);
        }
        let server = guard.as_ref().expect("server set above");
        fdpass::send_frame(
            server.control.as_fd(),
            request,
            &[child_end.as_fd(), status_w.as_fd()],
        )
        .map_err(|e| Failed::Server(Error::io("cannot reach the fork server")(e)))?;
        server.env.clone()
    };
    drop((child_end, status_w));
    // While the server forks: the child's state, sent at once if the
    // socket's buffer surely holds it (then the child finds it there when
    // it starts, and a fork that fails leaves no send blocked); after the
    // pid came if it is larger.
    let mut state = state(server_env.as_deref()).map(Some);
    if let Ok(Some(bytes)) = &state {
        if bytes.len() <= EARLY_STATE {
            state = fdpass::send_frame(ctl.as_fd(), bytes, &[cwd.as_fd()])
                .map(|()| None)
                .map_err(Error::io("cannot reach a new child"));
        }
    }
    let pid = read_i32(&status_r).map_err(Failed::Server)?;
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
    // The child is alive: it waits for its state, then its first frame.
    let pidfd = state.and_then(|late| {
        if let Some(bytes) = late {
            fdpass::send_frame(ctl.as_fd(), &bytes, &[cwd.as_fd()])
                .map_err(Error::io("cannot reach a new child"))?;
        }
        proc::open_pidfd(pid).map_err(Error::io("pidfd_open failed"))
    });
    match pidfd {
        Ok(pidfd) => Ok(Started {
            pid,
            pidfd,
            waiter: Waiter::Served { status: status_r },
            ctl,
        }),
        Err(e) => {
            // It ends at the end of file on its control socket: take its
            // status, as the server tells it.
            drop(ctl);
            let _ = read_i32(&status_r);
            Err(Failed::Here(e))
        }
    }
}

/// A state frame up to this size is sent before the child exists: a new
/// socket's buffer (over 200 KiB by default) holds it.
const EARLY_STATE: usize = 32 << 10;

/// The first bytes of a state frame (its version).
const STATE_TAG: &[u8; 8] = b"mproc-s1";

/// The longest state frame a child reads (the environment is most of it).
const MAX_STATE: usize = 16 << 20;

/// What a child inherits from its user, captured at each start (the fork
/// server started long before, and the user may have changed all of it
/// since) and sent to the child itself on its control socket, before its
/// first frame: the server never reads it. Its bytes:
///
/// ```text
/// tag        8 bytes   STATE_TAG
/// umask      u32       u32::MAX: unknown (the child keeps the server's)
/// limits     u32 n, then n x (soft u64, hard u64), RLIMIT_* order
/// env        u32 n, then n x (u32 len, `NAME=value` bytes, no NUL);
///            n = u32::MAX: the server's own environment, unchanged (the
///            child keeps what it inherited and replaces nothing)
/// ```
///
/// all little-endian; sent with one descriptor, the current directory.
struct State {
    bytes: Vec<u8>,
}

impl State {
    /// This process's state, now; its environment only if it differs
    /// from `server_env`, the one the child inherits from the server.
    fn capture(server_env: Option<&Env>) -> Result<State> {
        let env: Env = std::env::vars_os().collect();
        let mut bytes = Vec::with_capacity(256 + env.len() * 64);
        bytes.extend_from_slice(STATE_TAG);
        let umask = proc::current_umask().unwrap_or(u32::MAX);
        bytes.extend_from_slice(&umask.to_le_bytes());
        let limits = proc::resource_limits();
        put_u32(&mut bytes, limits.len());
        for (soft, hard) in limits {
            bytes.extend_from_slice(&soft.to_le_bytes());
            bytes.extend_from_slice(&hard.to_le_bytes());
        }
        if server_env == Some(&env) {
            bytes.extend_from_slice(&u32::MAX.to_le_bytes());
            return Ok(State { bytes });
        }
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
        Ok(State { bytes })
    }
}

fn put_u32(buf: &mut Vec<u8>, n: usize) {
    // Every count and length is below MAX_STATE (checked before sending).
    buf.extend_from_slice(&u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes());
}

/// A state frame as the child reads it: checked, borrowing its bytes.
struct Inherited<'a> {
    umask: Option<u32>,
    limits: Vec<proc::Limit>,
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
        let pair = take(16)?;
        let (soft, hard) = (u64_at(&pair[..8]), u64_at(&pair[8..]));
        if soft > hard {
            return None;
        }
        limits.push((soft, hard));
    }
    let n = u32_at(take(4)?);
    if n == u32::MAX {
        let (umask, env) = (umask, None);
        return rest.is_empty().then_some(Inherited { umask, limits, env });
    }
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
    let env = Some(env);
    rest.is_empty().then_some(Inherited { umask, limits, env })
}

/// In the forked child, before its task: reads its user's state on `ctl`
/// and takes it on. The limits come last (a lowered address-space limit
/// must not stop the environment's copy). A state it cannot read or a
/// directory it cannot enter ends it (its parent is told why): running in
/// another directory or environment than its user's would be the silent
/// error this is here to prevent.
fn take_on(ctl: &OwnedFd) {
    let refuse = |why: String| -> ! { bootstrap::refuse(ctl, Outcome::Refused(why)) };
    let (bytes, fds) = match fdpass::recv_frame(ctl.as_fd(), None, MAX_STATE as u64) {
        Ok(Some(frame)) => frame,
        Ok(None) => refuse("end of file before its parent's state".into()),
        Err(e) => refuse(format!("cannot read its parent's state: {e}")),
    };
    let Ok::<[OwnedFd; 1], _>([cwd]) = fds.try_into() else {
        refuse("its parent's state came without its directory".into())
    };
    let Some(inherited) = parse_state(&bytes) else {
        refuse("its parent's state is garbled".into())
    };
    if let Err(e) = proc::enter_dir(cwd.as_fd()) {
        refuse(format!("cannot enter its parent's current directory: {e}"));
    }
    drop(cwd);
    if let Some(env) = &inherited.env {
        let env = (env.iter())
            .filter_map(|e| std::ffi::CString::new(*e).ok())
            .collect();
        // A child just forked from the single-threaded server has one thread.
        if let Err(e) = proc::replace_environment(env) {
            refuse(format!("cannot take on its parent's environment: {e}"));
        }
    }
    if let Some(mask) = inherited.umask {
        proc::set_umask(mask);
    }
    proc::set_resource_limits(&inherited.limits);
}

fn read_i32(fd: &OwnedFd) -> Result<i32> {
    let deadline = Some(Instant::now() + ANSWER_TIMEOUT);
    if !fdpass::wait_readable(fd.as_fd(), deadline)
        .map_err(Error::io("waiting for the fork server"))?
    {
        return Err(Error::Timeout);
    }
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
    // The server's environment is ours as the spawn reads it: known if it
    // did not change around the spawn (another thread's `set_var`).
    let before: Env = std::env::vars_os().collect();
    let pid = spawn::exec_self("forkserver", server_end)?;
    let after: Env = std::env::vars_os().collect();
    let env = (before == after).then(|| Arc::new(before));
    let pidfd = proc::open_pidfd(pid).map_err(Error::io("pidfd_open failed"))?;
    Ok(Server {
        pid,
        pidfd,
        control,
        env,
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
    let server = match slot().try_lock() {
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
    match self::request(request, |_| Ok(state.to_vec())) {
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

/// One child of the server: its pidfd and the status pipe to report on.
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
            let code = proc::reap_pidfd(kid.pidfd.as_fd(), true).ok().flatten();
            let code = code.unwrap_or(crate::exit::UNKNOWN_EXIT_CODE);
            let _ = rustix::io::write(&kid.status, &code.to_le_bytes());
        }
        if ready.first() == Some(&0) {
            match fdpass::recv_frame(control.as_fd(), None, MAX_REQUEST) {
                Ok(Some((bytes, fds))) => {
                    let Ok::<[OwnedFd; 2], _>([ctl, status]) = fds.try_into() else {
                        // Not ours: drop what came (the user sees an end
                        // of file where the pid should be).
                        continue;
                    };
                    if bytes != REQUEST {
                        let _ = rustix::io::write(&status, &0i32.to_le_bytes());
                        continue;
                    }
                    if let Some(kid) = fork_child(me, &control, &mut kids, ctl, status) {
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

fn fork_child(
    me: i32,
    control: &OwnedFd,
    kids: &mut Vec<Kid>,
    ctl: OwnedFd,
    status: OwnedFd,
) -> Option<Kid> {
    // The server is single-threaded (it runs in the constructor of a fresh
    // exec and starts no thread), so no lock is held by anyone else.
    let status_raw = proc::raw(&status);
    let in_child = move || {
        // Close every descriptor the server holds for others.
        kids.clear();
        proc::close_raw(status_raw);
        proc::close_raw(proc::raw(control));
        proc::block_sigint(false);
        let _ = bootstrap::die_with_parent(me);
        take_on(&ctl);
        bootstrap::run_task_child(ctl)
    };
    match proc::fork_then_exit(in_child) {
        Ok(pid) => {
            let _ = rustix::io::write(&status, &pid.to_le_bytes());
            match proc::open_pidfd(pid) {
                Ok(pidfd) => Some(Kid { pidfd, status }),
                Err(_) => None,
            }
        }
        Err(e) => {
            // Tell the user why (a pid limit, no memory): the server is
            // fine and must not be retired for it.
            let errno = e.raw_os_error().unwrap_or(libc::EAGAIN);
            let _ = rustix::io::write(&status, &(-errno).to_le_bytes());
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured() -> Vec<u8> {
        State::capture(None).unwrap().bytes
    }

    #[test]
    fn an_environment_equal_to_the_servers_is_not_sent() {
        let env: Env = std::env::vars_os().collect();
        let bytes = State::capture(Some(&env)).unwrap().bytes;
        let got = parse_state(&bytes).expect("our own state");
        assert_eq!(got.env, None);
        assert_eq!(got.limits, proc::resource_limits().to_vec());
        let other: Env = vec![("MPROC_TEST_OTHER".into(), "1".into())];
        let bytes = State::capture(Some(&other)).unwrap().bytes;
        assert!(parse_state(&bytes).expect("our own state").env.is_some());
    }

    #[test]
    fn a_captured_state_reads_back_as_this_process_state() {
        let bytes = captured();
        let got = parse_state(&bytes).expect("our own state");
        assert_eq!(got.umask, proc::current_umask());
        assert_eq!(got.limits, proc::resource_limits().to_vec());
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
        other[7] = b'0';
        assert!(parse_state(&other).is_none());
        // Counts beyond the bytes, limits beyond Linux's, bad values.
        let head = |umask: u32| [&STATE_TAG[..], &umask.to_le_bytes()].concat();
        let with = |parts: &[&[u8]]| [&head(0o22)[..], &parts.concat()].concat();
        let n = |v: u32| v.to_le_bytes().to_vec();
        assert!(parse_state(&with(&[&n(u32::MAX)])).is_none());
        assert!(parse_state(&with(&[&n(17)])).is_none());
        let inverted = [&5u64.to_le_bytes()[..], &4u64.to_le_bytes()].concat();
        assert!(parse_state(&with(&[&n(1), &inverted, &n(0)])).is_none());
        assert!(parse_state(&with(&[&n(0), &n(u32::MAX - 1)])).is_none());
        // u32::MAX entries: the server's environment, and nothing after.
        let kept = with(&[&n(0), &n(u32::MAX)]);
        assert!(parse_state(&kept).expect("kept environment").env.is_none());
        assert!(parse_state(&with(&[&n(0), &n(u32::MAX), &n(0)])).is_none());
        assert!(parse_state(&with(&[&n(0), &n(1), &n(5), b"A=b\0c"])).is_none());
        assert!(parse_state(&with(&[&n(0), &n(1), &n(3), b"Abc"])).is_none());
        assert!(parse_state(&[&head(0o1000)[..], &n(0), &n(0)].concat()).is_none());
        let minimal = with(&[&n(0), &n(1), &n(3), b"A=b"]);
        let ok = parse_state(&minimal).expect("a minimal state frame");
        assert_eq!((ok.umask, ok.env), (Some(0o22), Some(vec![&b"A=b"[..]])));
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
            std::hint::black_box(State::capture(None).unwrap());
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
