//! The `ForkServer` start method.
//!
//! A server is started once per process by spawn: a fresh copy of this
//! executable, single-threaded and clean, that forks children on request.
//!
//! # Protocol
//!
//! The user process holds one end of the server's *control* socket. To start
//! a child it sends a frame carrying two descriptors: the child's end of a
//! new control socket (its task will arrive there, as for spawn) and the
//! write end of a *status* pipe. The server forks; the child runs the task
//! child bootstrap on its socket; the server writes the child's pid (4 bytes,
//! little-endian) on the status pipe, reaps the child when it ends and
//! writes its exit code (4 bytes) there. The user process reads both; the
//! status pipe is the child's sentinel.
//!
//! The server dies with its user (`PR_SET_PDEATHSIG`, and end of file on the
//! control socket) and its children die with it; at a normal exit the user
//! closes the control socket and reaps the server ([`shutdown`]). If the server is killed,
//! the next start notices (a refused send or an end of file where the pid
//! should be) and starts a new server, transparently.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{bootstrap, spawn, Started};
use crate::child::Waiter;
use crate::error::{Error, Result};
use crate::sys::{fdpass, proc};

/// A guard against a server that stops answering (it never should).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

struct Server {
    pid: i32,
    pidfd: OwnedFd,
    control: OwnedFd,
}

/// The fork server of one process, under its own lock.
struct Slot {
    owner: i32,
    server: Mutex<Option<Server>>,
}

/// The slot of the process that made it. A forked child must not lock its
/// parent's: another thread of the parent may have held that lock at the
/// fork (it is held while a server starts), and nobody would release it in
/// the child. So a process that finds another pid's slot here puts in a
/// fresh one of its own; the parent's is left as it is (its server and
/// descriptors are the parent's, not ours to close).
static SLOT: AtomicPtr<Slot> = AtomicPtr::new(std::ptr::null_mut());

/// This process's fork server, locked.
fn server() -> MutexGuard<'static, Option<Server>> {
    slot().server.lock().unwrap_or_else(|e| e.into_inner())
}

fn slot() -> &'static Slot {
    let me = proc::getpid();
    loop {
        let current = SLOT.load(Ordering::Acquire);
        // SAFETY: a non-null SLOT comes from `Box::into_raw` below and is
        // never freed, so it is valid for 'static.
        if let Some(slot) = unsafe { current.as_ref() } {
            if slot.owner == me {
                return slot;
            }
        }
        let fresh = Box::into_raw(Box::new(Slot {
            owner: me,
            server: Mutex::new(None),
        }));
        match SLOT.compare_exchange(current, fresh, Ordering::AcqRel, Ordering::Acquire) {
            // SAFETY: published just now, never freed (see above).
            Ok(_) => return unsafe { &*fresh },
            // SAFETY: another thread published its slot first; `fresh` was
            // never shared, so this is its only owner.
            Err(_) => drop(unsafe { Box::from_raw(fresh) }),
        }
    }
}

/// Asks the fork server (starting it if needed) for a child that waits for
/// its first frame on the returned `ctl`.
pub(crate) fn start() -> Result<Started> {
    let mut last = None;
    for _ in 0..2 {
        match request() {
            Ok(started) => return Ok(started),
            Err(e) => {
                retire_server();
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or(Error::InvalidState("fork server unavailable")))
}

fn request() -> Result<Started> {
    let (ctl, child_end) =
        fdpass::stream_pair().map_err(Error::io("cannot create the control socket"))?;
    let (status_r, status_w) = fdpass::pipe().map_err(Error::io("cannot create a pipe"))?;
    {
        let mut guard = server();
        if guard.is_none() {
            *guard = Some(launch()?);
        }
        let server = guard.as_ref().expect("server set above");
        fdpass::send_frame(
            server.control.as_fd(),
            b"fork",
            &[child_end.as_fd(), status_w.as_fd()],
        )
        .map_err(Error::io("cannot reach the fork server"))?;
    }
    drop((child_end, status_w));
    let pid = read_i32(&status_r)?;
    // The child is alive: it waits for the first frame we have not sent.
    let pidfd = proc::open_pidfd(pid).map_err(Error::io("pidfd_open failed"))?;
    Ok(Started {
        pid,
        pidfd,
        waiter: Waiter::Served { status: status_r },
        ctl,
    })
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
    let pid = spawn::exec_self("forkserver", server_end)?;
    let pidfd = proc::open_pidfd(pid).map_err(Error::io("pidfd_open failed"))?;
    Ok(Server {
        pid,
        pidfd,
        control,
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
    let server = match slot().server.try_lock() {
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
            let code = code.unwrap_or(crate::child::UNKNOWN_EXIT_CODE);
            let _ = rustix::io::write(&kid.status, &code.to_le_bytes());
        }
        if ready.first() == Some(&0) {
            match fdpass::recv_frame(control.as_fd(), None, 64) {
                Ok(Some((_, fds))) if fds.len() == 2 => {
                    let mut fds = fds.into_iter();
                    let (ctl, status) = (fds.next().unwrap(), fds.next().unwrap());
                    if let Some(kid) = fork_child(me, &control, &mut kids, ctl, status) {
                        kids.push(kid);
                    }
                }
                Ok(Some(_)) => {}
                // The user process closed its end or died: our children
                // die with us (their death signal).
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
    // SAFETY: the server is single-threaded (it runs in the constructor of a
    // fresh exec and starts no thread), so no lock is held by anyone else.
    match unsafe { proc::fork() } {
        Ok(proc::Forked::Child) => {
            // Close every descriptor the server holds for others.
            kids.clear();
            drop(status);
            proc::close_raw(proc::raw(control));
            proc::block_sigint(false);
            let _ = proc::die_with_parent(me);
            bootstrap::run_task_child(ctl)
        }
        Ok(proc::Forked::Parent(pid)) => {
            drop(ctl);
            let _ = rustix::io::write(&status, &pid.to_le_bytes());
            match proc::open_pidfd(pid) {
                Ok(pidfd) => Some(Kid { pidfd, status }),
                Err(_) => None,
            }
        }
        Err(_) => None,
    }
}
