//! The parent's record of each child: how to wait for it, signal it, and
//! reap it, and the registry that makes sure none is left behind.
//!
//! A child started by `Fork` or `Spawn` is ours: we hold a pidfd and reap it
//! with `waitid(P_PIDFD)`. A child started by the fork server is the
//! server's: the server reaps it and writes its exit status on a socket we
//! read (the *status* socket, which is also its sentinel).
//!
//! Every started child is in the registry until it is reaped. Finished
//! children are reaped when another child starts, by `active_children()`,
//! by a reaper thread once their handle is dropped, and at exit (of the
//! main process, or of a child's task), where daemon children are
//! terminated and the others joined, as in Python.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use crate::exit::UNKNOWN_EXIT_CODE;
use crate::identity::ProcessInfo;
use crate::limits::Resources;
use crate::start::{self, Waiter};
use crate::sys::rlimit::{self, Usage, USAGE_BYTES};
use crate::sys::{fdpass, proc};

/// A started child process.
pub(crate) struct Child {
    pub(crate) pid: i32,
    /// Who the child is (name, identity, daemon flag), for
    /// `active_children` and the exit handler.
    pub(crate) info: ProcessInfo,
    pidfd: OwnedFd,
    waiter: Waiter,
    /// It leads a process group of its own (its pid), which its signals
    /// go to: what it started goes with it.
    group: bool,
    code: OnceLock<i32>,
    /// What it used, learnt with its exit code (unless the reap could not
    /// tell: reaped behind our back, a fork server gone).
    usage: OnceLock<Resources>,
    reaping: Mutex<()>,
    detached: AtomicBool,
    owner: i32,
}

impl Child {
    pub(crate) fn new(
        pid: i32,
        pidfd: OwnedFd,
        waiter: Waiter,
        info: ProcessInfo,
        group: bool,
    ) -> Arc<Self> {
        let child = Arc::new(Child {
            pid,
            info: ProcessInfo { pid, ..info },
            pidfd,
            waiter,
            group,
            code: OnceLock::new(),
            usage: OnceLock::new(),
            reaping: Mutex::new(()),
            detached: AtomicBool::new(false),
            owner: proc::getpid(),
        });
        register(child.clone());
        child
    }

    /// The descriptor that becomes readable when the child ends.
    pub(crate) fn sentinel(&self) -> BorrowedFd<'_> {
        match &self.waiter {
            Waiter::Direct => self.pidfd.as_fd(),
            Waiter::Served { status } => status.as_fd(),
        }
    }

    /// The exit code if the child has ended (reaping it), without blocking.
    pub(crate) fn try_code(&self) -> io::Result<Option<i32>> {
        self.wait(Some(Instant::now()))
    }

    /// Waits until the child ends or `deadline` passes; reaps it.
    pub(crate) fn wait(&self, deadline: Option<Instant>) -> io::Result<Option<i32>> {
        if let Some(c) = self.code.get() {
            return Ok(Some(*c));
        }
        if !fdpass::wait_readable(self.sentinel(), deadline)? {
            return Ok(None);
        }
        let _g = self.reaping.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = self.code.get() {
            return Ok(Some(*c));
        }
        let code = match &self.waiter {
            // Readable, so ending: with no deadline, a reap that finds it
            // not yet reapable (a pidfd readable once the leader thread
            // exits, before the zombie) waits for it rather than returning
            // "still running" to a caller that asked to wait for the end.
            Waiter::Direct => {
                match rlimit::reap_pidfd_with_usage(self.pidfd.as_fd(), deadline.is_none()) {
                    Ok(Some((c, usage))) => (c, Some(usage)),
                    Ok(None) => return Ok(None),
                    // Reaped behind our back (a `waitpid(-1)` elsewhere).
                    Err(e) if e.raw_os_error() == Some(libc::ECHILD) => (UNKNOWN_EXIT_CODE, None),
                    Err(e) => return Err(e),
                }
            }
            Waiter::Served { status } => read_status(status)?,
        };
        let (code, usage) = code;
        if let Some(usage) = usage {
            let _ = self.usage.set(usage.into());
        }
        let code = *self.code.get_or_init(|| code);
        unregister(self);
        Ok(Some(code))
    }

    /// After the sentinel was reported readable: reaps the child if it has
    /// really ended (`None` if the report was stale). Readable means ending,
    /// so the reap waits out the short gap between a pidfd turning readable
    /// and the zombie being reapable instead of reporting "running".
    #[cfg(feature = "tokio")]
    pub(crate) fn try_wait_ended(&self) -> crate::error::Result<Option<()>> {
        let io = || crate::error::Error::io("waiting for a child");
        if self.code.get().is_none()
            && !fdpass::wait_readable(self.sentinel(), Some(Instant::now())).map_err(io())?
        {
            return Ok(None);
        }
        self.wait(None).map_err(io())?;
        Ok(Some(()))
    }

    /// What the child used, once reaped (if the reap could tell).
    pub(crate) fn resources(&self) -> Option<Resources> {
        self.usage.get().copied()
    }

    /// The exit code, if known (never blocks, never reaps).
    pub(crate) fn known_code(&self) -> Option<i32> {
        self.code.get().copied()
    }

    /// Sends a signal unless the child is already reaped: to its process
    /// group when it leads one (what it started, unless that left the
    /// group), and to the child itself if it is not in that group (it left
    /// it, or the group is empty).
    pub(crate) fn signal(&self, sig: i32) -> io::Result<()> {
        if self.code.get().is_some() {
            return Ok(());
        }
        if self.group {
            use proc::GroupSignal;
            let mut sent = proc::signal_group_pidfd(self.pidfd.as_fd(), sig)?;
            if sent == GroupSignal::Unsupported {
                sent = self.signal_group_by_number(sig)?;
            }
            // The group got it; so did the child, if it is still in it. A
            // reused pid here (the child reaped since) reads as another
            // group: the pidfd signal below then finds no process.
            if sent == GroupSignal::Sent && proc::process_group_of(self.pid) == Some(self.pid) {
                return Ok(());
            }
        }
        proc::signal_pidfd(self.pidfd.as_fd(), sig)
    }

    /// Before Linux 6.9: `kill(-pid)`, only while the child is known not to
    /// be reaped, so that its pid, the group's number, is still its own and
    /// no other process can lead a group of that number. Ours: not reaped
    /// while we hold the reaping lock and have no code. The fork server's:
    /// its pidfd is not readable, so it has not even ended (the server
    /// could reap it and the pid be reused between that look and the
    /// `kill` only if the child ended, was reaped, every member of its
    /// group ended and the kernel handed the same number round again, all
    /// within those microseconds).
    fn signal_group_by_number(&self, sig: i32) -> io::Result<proc::GroupSignal> {
        let _g = self.reaping.lock().unwrap_or_else(|e| e.into_inner());
        let unreaped = match self.waiter {
            Waiter::Direct => self.code.get().is_none(),
            Waiter::Served { .. } => proc::pidfd_running(self.pidfd.as_fd()),
        };
        if !unreaped {
            return Ok(proc::GroupSignal::Empty);
        }
        proc::signal_group_by_number(self.pid, sig)
    }

    /// Called when the last user handle is dropped: the registry and the
    /// reaper take over.
    pub(crate) fn detach(self: &Arc<Self>) {
        self.detached.store(true, Ordering::SeqCst);
        if self.code.get().is_none() {
            reaper::wake();
        }
    }
}

/// Reads a served child's exit status and usage from its status socket
/// (the fork server's message: the code, 4 bytes, then a
/// [`Usage`]). Reads the borrowed descriptor in place: no new descriptor
/// is needed, so a process that has used up its descriptor limit can still
/// join its children.
fn read_status(status: &OwnedFd) -> io::Result<(i32, Option<Usage>)> {
    let mut buf = [0u8; 4 + USAGE_BYTES];
    let mut got = 0;
    while got < buf.len() {
        match rustix::io::read(status, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    if got < 4 {
        return Ok((UNKNOWN_EXIT_CODE, None));
    }
    let code = i32::from_le_bytes(buf[..4].try_into().expect("4 bytes"));
    let usage = (got == buf.len())
        .then(|| Usage::from_bytes(buf[4..].try_into().expect("USAGE_BYTES bytes")));
    Ok((code, usage))
}

static REGISTRY: Mutex<Vec<Arc<Child>>> = Mutex::new(Vec::new());

/// The registry, locked. Hooks it into every fork first (see
/// [`FORK_HOOK`]).
fn registry() -> RegistryGuard {
    static HOOKED: Once = Once::new();
    HOOKED.call_once(|| start::on_fork(&FORK_HOOK));
    lock()
}

/// The registry, locked, without the hook (the hook itself takes it this
/// way: it runs under the fork's lock on the list of hooks, which the
/// first `registry()` may be waiting for).
fn lock() -> RegistryGuard {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a `Fork` start does for the registry: holds it across the fork so
/// that no other thread holds it then (the child could never take it
/// otherwise), and empties it in the child (the parent's children are not
/// the child's); the reaper thread is not the child's either.
static FORK_HOOK: start::ForkHook = start::ForkHook {
    hold: || {
        let mut held = Some(lock());
        Box::new(move || {
            if let Some(mut registry) = held.take() {
                std::mem::take(&mut *registry);
                drop(registry);
                reaper::reset_after_fork();
            }
        })
    },
    threads: || usize::from(reaper::RUNNING.load(Ordering::Relaxed)),
};

fn register(child: Arc<Child>) {
    start::at_exit(finish_children);
    registry().push(child);
}

fn unregister(child: &Child) {
    registry().retain(|c| !std::ptr::eq(&**c, child));
}

/// Reaps finished children (which leaves the registry as it reaps them).
pub(crate) fn cleanup() {
    let list = registry().clone();
    for c in list {
        let _ = c.try_code();
    }
}

/// The children that are still running (reaping the others).
pub(crate) fn active() -> Vec<Arc<Child>> {
    cleanup();
    registry().clone()
}

type RegistryGuard = std::sync::MutexGuard<'static, Vec<Arc<Child>>>;

/// What a normal exit does, as in Python: daemon children are terminated,
/// then every child is joined. An exit step (`start::at_exit`): runs at
/// the exit of a main process and before `_exit` in a child whose task
/// ended, before the fork server is shut down.
fn finish_children() {
    let _ = std::panic::catch_unwind(|| {
        let children: Vec<_> = registry().clone();
        let me = proc::getpid();
        for c in children.iter().filter(|c| c.owner == me) {
            if c.info.daemon {
                let _ = c.signal(libc::SIGTERM);
            }
        }
        for c in children.iter().filter(|c| c.owner == me) {
            let _ = c.wait(None);
        }
    });
}

/// The thread that reaps children whose handles were dropped while they
/// ran: our own, so that none stays a zombie, and the fork server's, so
/// that their status sockets and pidfds are closed when they end (not at the
/// next start). Started on demand, ends when it has nothing left to watch.
mod reaper {
    use super::*;

    pub(super) static RUNNING: AtomicBool = AtomicBool::new(false);

    pub(super) fn wake() {
        if RUNNING.swap(true, Ordering::SeqCst) {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("mproc-reaper".into())
            .spawn(run);
        if spawned.is_err() {
            RUNNING.store(false, Ordering::SeqCst);
        }
    }

    pub(super) fn reset_after_fork() {
        RUNNING.store(false, Ordering::SeqCst);
    }

    fn watched() -> Vec<Arc<Child>> {
        registry()
            .iter()
            .filter(|c| c.detached.load(Ordering::SeqCst))
            .filter(|c| c.code.get().is_none())
            .cloned()
            .collect()
    }

    fn run() {
        loop {
            let list = watched();
            if list.is_empty() {
                RUNNING.store(false, Ordering::SeqCst);
                // A child detached between `watched` and the store above
                // would be missed: look once more.
                if watched().is_empty() || RUNNING.swap(true, Ordering::SeqCst) {
                    return;
                }
                continue;
            }
            let fds: Vec<_> = list.iter().map(|c| c.sentinel()).collect();
            let deadline = Some(Instant::now() + Duration::from_millis(250));
            if fdpass::wait_any(&fds, deadline).is_ok() {
                cleanup();
            }
        }
    }
}
