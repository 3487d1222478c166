//! Where children are created.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that created a child ends, not
//! the process. A child created by a short-lived thread (a test's thread, a
//! scoped worker) would be killed with that thread. So creation runs on the
//! main thread when the caller is the main thread (its end is the process's
//! end), and otherwise on one long-lived launcher thread.

use std::io;
use std::sync::mpsc::Sender;
use std::sync::Mutex;

use crate::sys::proc;
use crate::util::job_thread::{with_reply, Job, JobThread};

/// The launcher of the process whose pid is recorded beside it (a forked
/// child inherits the record, not the thread).
static LAUNCHER: Mutex<Option<(i32, Sender<Job>)>> = Mutex::new(None);

/// The launcher record, locked across a fork (see `fork::ForkLocks`).
pub(crate) type LauncherGuard = std::sync::MutexGuard<'static, Option<(i32, Sender<Job>)>>;

/// Locks the launcher record before a fork.
pub(crate) fn lock_for_fork() -> LauncherGuard {
    LAUNCHER.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` on a thread whose end is the process's end, and returns its
/// result.
pub(crate) fn on_lasting_thread<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    if proc::is_main_thread() {
        return Ok(f());
    }
    let (job, rx) = with_reply(f);
    let me = proc::getpid();
    let mut guard = LAUNCHER.lock().unwrap_or_else(|e| e.into_inner());
    let job = match guard.as_ref().filter(|(pid, _)| *pid == me) {
        Some((_, sender)) => match sender.send(job) {
            Ok(()) => None,
            Err(returned) => Some(returned.0),
        },
        None => Some(job),
    };
    if let Some(job) = job {
        // Detached: it lives as long as the process (or until a fork
        // leaves its record behind in a child).
        let sender = JobThread::start("mproc-launcher")?.detach();
        let _ = sender.send(job);
        *guard = Some((me, sender));
    }
    drop(guard);
    rx.recv()
        .map_err(|_| io::Error::other("the launcher thread failed to run the job"))
}

/// True if this process has a launcher thread.
pub(crate) fn exists() -> bool {
    let me = proc::getpid();
    LAUNCHER
        .try_lock()
        .map(|g| g.as_ref().is_some_and(|(pid, _)| *pid == me))
        .unwrap_or(true)
}
