//! What a process does at its normal exit: in a main process from `atexit`
//! (registered through `sys/`), in a child before the `_exit` that ends its
//! task.
//!
//! First the steps the layers above `start/` hooked in with [`at_exit`], in
//! the order they came (the child registry joins its children, terminating
//! its daemons), then start's own: the fork server is shut down last, since
//! its children die with it.

use std::sync::{Mutex, MutexGuard, Once};

use crate::sys::proc;

static STEPS: Mutex<Vec<fn()>> = Mutex::new(Vec::new());

fn steps() -> MutexGuard<'static, Vec<fn()>> {
    STEPS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The list of exit steps, locked across a fork (see `fork::ForkLocks`).
pub(crate) type StepsGuard = MutexGuard<'static, Vec<fn()>>;

/// Locks the list of exit steps before a fork.
pub(crate) fn lock_for_fork() -> StepsGuard {
    steps()
}

/// Runs `step` at this process's normal exit (once, however often it is
/// hooked in), before start's own exit step.
pub(crate) fn at_exit(step: fn()) {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        let _ = proc::at_exit(on_exit);
    });
    let mut steps = steps();
    if !steps.iter().any(|s| std::ptr::fn_addr_eq(*s, step)) {
        steps.push(step);
    }
}

/// Runs every exit step: the hooked ones, then the fork server's shutdown.
/// A step that panics does not stop the others.
pub(crate) fn run_exit_steps() {
    let hooked = steps().clone();
    for step in hooked {
        let _ = std::panic::catch_unwind(step);
    }
    let _ = std::panic::catch_unwind(super::forkserver::shutdown);
}

extern "C" fn on_exit() {
    run_exit_steps();
}
