//! The child's side: from a fresh process to a finished task.
//!
//! Every binary linking mproc carries [`bootstrap`], an ELF constructor that
//! runs before `main`. It does nothing unless [`ENV_CHILD`] is set; then the
//! process is an mproc child (or the fork server): it removes the variable
//! (so its own children start clean), reads its first frame from the
//! inherited descriptor the variable names, runs it and leaves with
//! `_exit`, never entering `main`.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

use crate::codec::{self, Frame};
use crate::error::Error;
use crate::process::{self, ProcessInfo, BOOTSTRAP_EXIT_CODE};
use crate::sys::{fdpass, proc};
use crate::task::{self, Outcome, MAX_FRAME};

/// The environment variable that marks a process as an mproc child:
/// `task:<fd>:<parent pid>` or `forkserver:<fd>:<parent pid>`.
pub(crate) const ENV_CHILD: &str = "MPROC_CHILD";

#[ctor::ctor(unsafe)]
fn bootstrap() {
    let Some(value) = std::env::var_os(ENV_CHILD) else {
        return;
    };
    std::env::remove_var(ENV_CHILD);
    let value = value.to_string_lossy().into_owned();
    let Some((kind, fd, parent)) = parse_env(&value) else {
        fail(&format!("bad {ENV_CHILD} value {value:?}"));
    };
    if proc::die_with_parent(parent).is_err() {
        fail("cannot set the parent-death signal");
    }
    // SAFETY: the parent left this descriptor open for us across exec and
    // nothing else in this fresh process knows of it.
    let ctl = unsafe { proc::adopt_fd(fd) };
    match kind {
        "task" => run_task_child(ctl),
        "forkserver" => super::forkserver::serve(ctl),
        _ => fail(&format!("bad {ENV_CHILD} value {value:?}")),
    }
}

/// `kind:fd:parent_pid`, with `fd` an open descriptor above stdio.
fn parse_env(value: &str) -> Option<(&str, i32, i32)> {
    let mut parts = value.split(':');
    let kind = parts.next()?;
    let fd = parts.next()?.parse::<i32>().ok()?;
    let parent = parts.next()?.parse::<i32>().ok()?;
    (parts.next().is_none() && fd > 2 && proc::fd_is_open(fd)).then_some((kind, fd, parent))
}

/// Prints one line on stderr and leaves with the bootstrap exit code.
fn fail(reason: &str) -> ! {
    let _ = writeln!(std::io::stderr(), "mproc: child cannot start: {reason}");
    proc::exit_now(BOOTSTRAP_EXIT_CODE)
}

/// Reads the first frame from `ctl`, checks it, runs the task, exits.
pub(crate) fn run_task_child(ctl: OwnedFd) -> ! {
    let (body, fds) = match fdpass::recv_frame(ctl.as_fd(), None, MAX_FRAME) {
        Ok(Some(frame)) => frame,
        Ok(None) => refuse(
            &ctl,
            Outcome::Refused("end of file before the first frame".into()),
        ),
        Err(e) => refuse(
            &ctl,
            Outcome::Refused(format!("cannot read the first frame: {e}")),
        ),
    };
    let (header, args) = match task::parse_first_frame(&body) {
        Ok(parsed) => parsed,
        Err(outcome) => refuse(&ctl, outcome),
    };
    process::set_current(header.me.clone(), Some(header.parent.clone()));
    let want = header.want_result;
    run_and_exit(ctl, want, || task::run_wire(&header, args, fds))
}

/// Tells the parent why this child cannot start, prints it, exits.
pub(super) fn refuse(ctl: &OwnedFd, outcome: Outcome) -> ! {
    let line = match &outcome {
        Outcome::Mismatch { expected, found } => format!(
            "binary mismatch: the parent runs build {}, this child runs build {}",
            task::hex(expected),
            task::hex(found)
        ),
        Outcome::Refused(reason) => reason.clone(),
        _ => "unexpected outcome".into(),
    };
    send_outcome(ctl, &outcome, &[]);
    fail(&line)
}

fn send_outcome(ctl: &OwnedFd, outcome: &Outcome, fds: &[OwnedFd]) {
    if let Ok(frame) = codec::encode(outcome) {
        let _ = fdpass::send_frame(ctl.as_fd(), &frame.bytes, &fdpass::borrow_all(fds));
    }
}

static LAST_PANIC: Mutex<Option<(String, String)>> = Mutex::new(None);

/// Set in a child once its task runs: only then does the hook record.
static IN_CHILD: AtomicBool = AtomicBool::new(false);

/// Installs (once per process image) the hook that records a child's
/// panic message and location. A forking parent installs it before the
/// fork (see [`prepare_fork`]): the forked child must not call
/// `take_hook`/`set_hook`, whose global lock another thread of the parent
/// may have held at the fork (a panicking thread holds it), which would
/// leave the child blocked forever. A hook the parent sets after its first
/// fork replaces this one: its forked children then report a panic's
/// message (from the payload) without its location.
fn record_panics() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if IN_CHILD.load(Ordering::Relaxed) {
                record(info);
                // As CPython prints "Process <name>:" above a child's traceback.
                let _ = writeln!(
                    std::io::stderr(),
                    "Process {}:",
                    process::current_process().name()
                );
            }
            default(info);
        }));
    });
}

fn record(info: &panic::PanicHookInfo<'_>) {
    let message = payload_message(info.payload());
    let location = info.location().map(|l| l.to_string()).unwrap_or_default();
    if let Ok(mut last) = LAST_PANIC.lock() {
        *last = Some((message, location));
    }
}

/// A panic's message, as the default hook prints it.
pub(crate) fn payload_message(payload: &(dyn std::any::Any + Send)) -> String {
    match payload.downcast_ref::<&str>() {
        Some(s) => (*s).to_string(),
        None => payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| "Box<dyn Any>".into()),
    }
}

/// In a parent, before `fork`: what the child will need and must not set
/// up itself.
pub(crate) fn prepare_fork() {
    record_panics();
    // Computed once behind a `OnceLock`, which the child would wait on
    // forever if another thread were computing it at the fork.
    crate::sys::image::identity();
}

/// Runs a child's task, reports how it ended on `ctl` and exits: status 0
/// on return, 1 on a panic (its message and location already on stderr).
pub(crate) fn run_and_exit(
    ctl: OwnedFd,
    want_result: bool,
    body: impl FnOnce() -> Result<Frame, Error>,
) -> ! {
    IN_CHILD.store(true, Ordering::Relaxed);
    record_panics();
    let (outcome, fds, code) = match panic::catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(frame)) => (
            want_result.then_some(Outcome::Returned(frame.bytes)),
            frame.fds,
            0,
        ),
        Ok(Err(Error::Decode(e))) => {
            let reason = format!("cannot decode the task's arguments: {e}");
            let _ = writeln!(std::io::stderr(), "mproc: child cannot start: {reason}");
            (
                Some(Outcome::Refused(reason)),
                Vec::new(),
                BOOTSTRAP_EXIT_CODE,
            )
        }
        Ok(Err(e)) => {
            let _ = writeln!(
                std::io::stderr(),
                "mproc: cannot send the task's result: {e}"
            );
            (Some(Outcome::Encode(e.to_string())), Vec::new(), 1)
        }
        Err(payload) => {
            // No record if a hook set after the first fork replaced ours:
            // the message is still in the payload, the location is lost.
            let (message, location) = LAST_PANIC
                .lock()
                .ok()
                .and_then(|mut l| l.take())
                .unwrap_or_else(|| (payload_message(&*payload), String::new()));
            (Some(Outcome::Panicked { message, location }), Vec::new(), 1)
        }
    };
    if let Some(outcome) = outcome {
        send_outcome(&ctl, &outcome, &fds);
    }
    // A child's end is a normal exit for its own children: they are not
    // killed with it (as they would be, by their death signal) but joined,
    // and its daemons terminated.
    crate::child::finish_children();
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    proc::exit_now(code)
}

/// Puts a freshly forked child in order: the parent's children, launcher
/// and fork server are not its own; it dies with its parent; the locks
/// held across the fork are released.
pub(crate) fn after_fork_in_child(locks: super::fork::ForkLocks, parent: i32, me: ProcessInfo) {
    let super::fork::ForkLocks {
        stdout,
        stderr,
        registry,
        me: record,
        default_method,
        launcher,
    } = locks;
    crate::child::forget_all_after_fork(registry);
    process::become_forked_child(record, me, parent);
    drop((stdout, stderr, default_method, launcher));
    let _ = proc::die_with_parent(parent);
}
