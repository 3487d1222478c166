//! The `Fork` start method: the child is a copy of the caller.
//!
//! # Hazard
//!
//! Only the forking thread exists in the child. A lock another thread held
//! at that moment (inside `malloc`, `stdout`, a `Mutex` of yours) stays
//! locked in the child forever, and the child hangs when it takes it. So a
//! fork while the process has other threads prints a warning once, as
//! CPython 3.12 does; silence it with [`set_fork_warning`] or the
//! `MPROC_NO_FORK_WARNING` environment variable when you know the other
//! threads hold nothing the child needs.

use std::io::{StderrLock, StdoutLock, Write};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::{atexit, launcher, Started, Waiter};
use crate::error::{Error, Result};
use crate::identity::{self, ProcessInfo};
use crate::sys::{fdpass, proc};

static WARN: AtomicBool = AtomicBool::new(true);
static WARNED: AtomicBool = AtomicBool::new(false);

/// Turns the warning printed when forking a multi-threaded process on or off
/// (it is on unless `MPROC_NO_FORK_WARNING` is set).
///
/// ```
/// mproc::set_fork_warning(false);
/// ```
pub fn set_fork_warning(enabled: bool) {
    WARN.store(enabled, Ordering::SeqCst);
}

fn warn_if_threaded() {
    if !WARN.load(Ordering::Relaxed) || WARNED.load(Ordering::Relaxed) {
        return;
    }
    if std::env::var_os("MPROC_NO_FORK_WARNING").is_some() {
        return;
    }
    let ours = usize::from(launcher::exists()) + hooked_threads();
    if proc::thread_count().saturating_sub(ours) > 1 && !WARNED.swap(true, Ordering::SeqCst) {
        let _ = writeln!(
            std::io::stderr(),
            "mproc: warning: process {} is multi-threaded; use of fork() may lead to deadlocks in the child \
             (set MPROC_NO_FORK_WARNING=1 or call mproc::set_fork_warning(false) to silence)",
            proc::getpid()
        );
    }
}

/// Forks a child that runs `body` with its end of the control socket;
/// with `own_group`, in a new process group it leads. `body` must not
/// return (it ends with `run_and_exit`).
pub(crate) fn start(
    me: ProcessInfo,
    body: Box<dyn FnOnce(OwnedFd) + Send>,
    own_group: bool,
) -> Result<Started> {
    launcher::on_lasting_thread(move || fork_now(me, body, own_group))
        .map_err(Error::io("cannot reach the launcher thread"))?
}

fn fork_now(
    me: ProcessInfo,
    body: Box<dyn FnOnce(OwnedFd) + Send>,
    own_group: bool,
) -> Result<Started> {
    warn_if_threaded();
    super::prepare_fork();
    let (parent_end, child_end) =
        fdpass::stream_pair().map_err(Error::io("cannot create the control socket"))?;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let parent = proc::getpid();
    let locks = ForkLocks::take();
    let parent_raw = proc::raw(&parent_end);
    // A child forked by the main thread already bears the process's name.
    let named = proc::is_main_thread();
    // The child takes only locks this thread held at the fork (`ForkLocks`,
    // released in `after_fork_in_child`) or that the documented hazard
    // above covers, and leaves through `run_and_exit` (`_exit`). In the
    // parent, the closure is dropped unrun: the locks are released and the
    // child's end closed.
    let in_child = move |_: proc::JustForked| {
        if own_group {
            // The parent does it too: the group exists once either did.
            let _ = proc::own_process_group(0);
        }
        proc::close_raw(parent_raw);
        super::after_fork_in_child(locks, parent, me, named);
        body(child_end);
        crate::exit::BOOTSTRAP_EXIT_CODE
    };
    let pid = proc::fork_then_exit(in_child).map_err(Error::io("fork failed"))?;
    if own_group {
        // Before anyone learns the pid, so that a signal to its group
        // never misses it (the child may not have run yet).
        let _ = proc::own_process_group(pid);
    }
    let pidfd = proc::open_pidfd(pid).map_err(Error::io("pidfd_open failed"))?;
    Ok(Started {
        pid,
        pidfd,
        waiter: Waiter::Direct,
        ctl: parent_end,
    })
}

/// The locks a forked child takes that another thread of the parent may
/// hold at the moment of the fork: stdout and stderr (the child flushes
/// them and prints its panic there), what the layers above hooked in ([`on_fork`]: the registry of children), the record
/// of who this process is, the default start method and the launcher
/// record (the child's own children need them). The forking thread takes them all, so
/// that in the child they belong to its only thread, which releases them;
/// a lock held by another thread would stay locked there forever. (glibc
/// does the same for its own stdio and malloc locks.)
///
/// A thread that holds `stdout().lock()` while it waits for a fork done on
/// the launcher thread would wait forever: do not hold a `StdoutLock` or
/// `StderrLock` across a start of a `Fork` child.
pub(crate) struct ForkLocks {
    pub(crate) stdout: StdoutLock<'static>,
    pub(crate) stderr: StderrLock<'static>,
    pub(crate) hooked: Hooked,
    pub(crate) me: identity::MeGuard,
    pub(crate) default_method: std::sync::MutexGuard<'static, Option<super::StartMethod>>,
    pub(crate) launcher: launcher::LauncherGuard,
    pub(crate) exit_steps: atexit::StepsGuard,
}

impl ForkLocks {
    fn take() -> Self {
        ForkLocks {
            stdout: std::io::stdout().lock(),
            stderr: std::io::stderr().lock(),
            hooked: Hooked::take(),
            me: identity::lock_for_fork(),
            default_method: super::method::lock_for_fork(),
            launcher: launcher::lock_for_fork(),
            exit_steps: atexit::lock_for_fork(),
        }
    }
}

/// What a layer above `start/` needs from a `Fork` start, hooked in with
/// [`on_fork`] (the child registry: `start/` does not import it).
pub(crate) struct ForkHook {
    /// Locks the layer's state before the fork; what it returns runs once
    /// in the child (it releases the lock and forgets what is the
    /// parent's), or is dropped in the parent (which releases the lock).
    /// In the child it is called, not dropped: freeing the parent's memory
    /// there writes to heap pages, each one a page copied for the child.
    pub(crate) hold: fn() -> Box<dyn FnMut()>,
    /// How many of the process's threads are the layer's own, which the
    /// multi-threaded warning does not count.
    pub(crate) threads: fn() -> usize,
}

static HOOKS: Mutex<Vec<&'static ForkHook>> = Mutex::new(Vec::new());

fn hooks() -> MutexGuard<'static, Vec<&'static ForkHook>> {
    HOOKS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Hooks `hook` into every later fork. Call it before the layer's state is
/// first used (a lock taken by another thread at a fork that did not know
/// of it would stay taken in the child).
pub(crate) fn on_fork(hook: &'static ForkHook) {
    let mut hooks = hooks();
    if !hooks.iter().any(|h| std::ptr::eq(*h, hook)) {
        hooks.push(hook);
    }
}

fn hooked_threads() -> usize {
    hooks().iter().map(|h| (h.threads)()).sum()
}

/// The hooks' locks, taken before a fork, with the list of hooks itself.
pub(crate) struct Hooked {
    _list: MutexGuard<'static, Vec<&'static ForkHook>>,
    held: Vec<Box<dyn FnMut()>>,
}

impl Hooked {
    fn take() -> Self {
        let list = hooks();
        let held = list.iter().map(|h| (h.hold)()).collect();
        Hooked { _list: list, held }
    }

    /// In the forked child: each layer forgets what is its parent's and
    /// releases its lock; then the list is released.
    pub(crate) fn in_child(self) {
        let Hooked { _list, mut held } = self;
        for hook in &mut held {
            hook();
        }
        // Left to the child's exit (see `ForkHook::hold`).
        std::mem::forget(held);
    }
}
