//! The child's side: from a fresh process to a finished task.
//!
//! Every binary linking mproc carries [`bootstrap`], an ELF constructor that
//! runs before `main`. It does nothing unless [`ENV_CHILD`] is set; then it
//! removes the variable (so neither the program nor what it runs sees it)
//! and, if the process may trust it, becomes an mproc child (or the fork
//! server): it reads its first frame from the descriptor the variable names,
//! runs it and leaves with `_exit`, never entering `main`.
//!
//! # Trust
//!
//! The variable runs code chosen by whoever wrote the first frame, so the
//! child believes it only when that writer is its own parent, which already
//! chose this program, its environment and its descriptors, and could run
//! anything as this user anyway:
//!
//! - never in a secure-execution process (`AT_SECURE`: setuid, setgid or file
//!   capabilities), where the environment comes from a less privileged user;
//! - only when the descriptor is a Unix stream socket whose peer (the
//!   process that created the socket pair) is the pid the variable names,
//!   which must be our parent, with our effective uid.
//!
//! A value that fails these checks prints one line on stderr and `main`
//! runs, nothing else: the descriptor is left as it is (it may be the
//! program's own). One exception: a socket from the named process that is
//! no longer our parent is a child whose parent died before it started; it
//! leaves with [`ORPHANED_EXIT_CODE`](crate::exit::ORPHANED_EXIT_CODE)
//! (with one line) rather than run the program as an orphan. The adopted
//! socket is made close-on-exec, so programs the child executes do not
//! inherit it.

use std::ffi::OsStr;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

use crate::codec::{self, Frame};
use crate::error::Error;
use crate::exit::{BOOTSTRAP_EXIT_CODE, ORPHANED_EXIT_CODE};
use crate::identity::{self, ProcessInfo};
use crate::sys::{fdpass, proc};
use crate::task::{self, Outcome, Settings, MAX_FRAME};

/// The environment variable that marks a process as an mproc child:
/// `task:<fd>:<parent pid>` or `forkserver:<fd>:<parent pid>`.
pub(crate) const ENV_CHILD: &str = "MPROC_CHILD";

#[ctor::ctor(unsafe)]
fn bootstrap() {
    let Some(value) = std::env::var_os(ENV_CHILD) else {
        return;
    };
    std::env::remove_var(ENV_CHILD);
    let (kind, fd, parent) = match parse_env(&value, proc::secure_execution()) {
        Ok(parsed) => parsed,
        Err(reason) => return ignore(&value, &reason),
    };
    let peer = proc::socket_peer(fd).map_err(|e| e.to_string());
    match judge_peer(peer, parent, proc::getppid(), proc::geteuid()) {
        PeerVerdict::Trusted => {}
        PeerVerdict::Orphaned => orphaned(parent, proc::getppid()),
        PeerVerdict::Untrusted(reason) => return ignore(&value, &reason),
    }
    if die_with_parent(parent).is_err() {
        fail("cannot set the parent-death signal");
    }
    // The parent left this descriptor open for us across exec (its peer is
    // our parent: checked above).
    let Ok(ctl) = proc::adopt_inherited_fd(fd) else {
        fail("cannot adopt the control socket")
    };
    if proc::set_cloexec(ctl.as_fd()).is_err() {
        fail("cannot make the control socket close-on-exec");
    }
    take_parent_name(parent);
    match kind {
        Kind::Task => run_task_child(ctl),
        Kind::ForkServer => super::forkserver::serve(ctl),
    }
}

/// What a child is asked to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A child that runs one task.
    Task,
    /// The fork server.
    ForkServer,
}

/// Reads `kind:fd:parent_pid`. An error (the reason, for one line on
/// stderr) when the value is malformed or the process runs in secure
/// execution (`secure`), where the environment is not to be trusted.
fn parse_env(value: &OsStr, secure: bool) -> Result<(Kind, i32, i32), String> {
    if secure {
        return Err("secure-execution process (setuid, setgid or capabilities)".into());
    }
    let malformed = || "expected kind:fd:parent_pid".to_string();
    let value = std::str::from_utf8(value.as_bytes()).map_err(|_| malformed())?;
    let mut parts = value.split(':');
    let kind = match parts.next() {
        Some("task") => Kind::Task,
        Some("forkserver") => Kind::ForkServer,
        _ => return Err(malformed()),
    };
    let number = |p: Option<&str>| p.and_then(|p| p.parse::<i32>().ok()).filter(|&n| n > 0);
    let (Some(fd), Some(parent), None) = (number(parts.next()), number(parts.next()), parts.next())
    else {
        return Err(malformed());
    };
    if fd <= 2 {
        return Err(format!("descriptor {fd} is stdio"));
    }
    Ok((kind, fd, parent))
}

/// The bootstrap's judgement of the descriptor the variable names.
#[derive(Debug, PartialEq, Eq)]
enum PeerVerdict {
    /// Our parent's socket: run what it sends.
    Trusted,
    /// The named process made the socket but is no longer our parent: it
    /// died before we started.
    Orphaned,
    /// Not our parent's socket (the reason).
    Untrusted(String),
}

/// Decides whether descriptor facts `peer` (or why they could not be had)
/// show a control socket from `parent`, given our parent `ppid` and
/// effective uid `euid`.
fn judge_peer(peer: Result<proc::Peer, String>, parent: i32, ppid: i32, euid: u32) -> PeerVerdict {
    let peer = match peer {
        Ok(peer) => peer,
        Err(e) => return PeerVerdict::Untrusted(format!("descriptor is not a socket: {e}")),
    };
    if !peer.unix || !peer.stream {
        return PeerVerdict::Untrusted("descriptor is not a Unix stream socket".into());
    }
    if peer.uid != euid {
        return PeerVerdict::Untrusted(format!(
            "socket belongs to uid {}, not to our uid {euid}",
            peer.uid
        ));
    }
    if peer.pid != parent {
        return PeerVerdict::Untrusted(format!(
            "socket comes from pid {}, not from pid {parent}",
            peer.pid
        ));
    }
    if ppid != parent {
        return PeerVerdict::Orphaned;
    }
    PeerVerdict::Trusted
}

/// Prints one line on stderr saying the variable is ignored; `main` runs.
fn ignore(value: &OsStr, reason: &str) {
    let mut shown = value.to_string_lossy().into_owned();
    if shown.len() > 64 {
        let mut end = 64;
        while !shown.is_char_boundary(end) {
            end -= 1;
        }
        shown.truncate(end);
        shown.push('…');
    }
    let _ = writeln!(
        std::io::stderr(),
        "mproc: ignoring {ENV_CHILD}={shown:?}: {reason}"
    );
}

/// Takes the parent's name (`/proc/<parent>/comm`) as ours: an executed
/// `/proc/self/exe` would otherwise show as `exe` in `ps`.
fn take_parent_name(parent: i32) {
    let name = std::fs::read(format!("/proc/{parent}/comm"))
        .ok()
        .or_else(|| {
            let arg0 = std::env::args_os().next()?;
            let path = std::path::Path::new(&arg0);
            Some(path.file_name()?.as_bytes().to_vec())
        });
    if let Some(name) = name {
        let name = name.strip_suffix(b"\n").unwrap_or(&name);
        proc::set_thread_name(name);
    }
}

/// Asks to die with `parent` (see [`proc::die_with_parent`]); a child whose
/// parent already ended prints one line on stderr and leaves with
/// [`ORPHANED_EXIT_CODE`].
pub(super) fn die_with_parent(parent: i32) -> std::io::Result<()> {
    match proc::die_with_parent(parent) {
        Ok(()) => Ok(()),
        Err(proc::ParentDeath::Failed(e)) => Err(e),
        Err(proc::ParentDeath::Gone { ppid }) => orphaned(parent, ppid),
    }
}

/// Prints why a child will not run (the process that started it is no
/// longer its parent: it exited) and leaves with [`ORPHANED_EXIT_CODE`].
fn orphaned(expected_parent: i32, ppid: i32) -> ! {
    let _ = writeln!(
        std::io::stderr(),
        "mproc: child {} not started: process {expected_parent} is no longer its parent (now {ppid}); did it exit?",
        proc::getpid()
    );
    proc::exit_now(ORPHANED_EXIT_CODE)
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
    let (header, start) = match task::parse_first_frame(&body) {
        Ok(parsed) => parsed,
        Err(outcome) => refuse(&ctl, outcome),
    };
    apply(&ctl, &header.settings);
    identity::set_current(header.me.clone(), Some(header.parent.clone()));
    let want = header.want_result;
    run_and_exit(ctl, want, || task::run_wire(&header, body, start, fds))
}

/// Applies the per-child settings its `Process` chose (carried in the task
/// header, or in memory for a forked child), before the task runs: the one
/// place where a child changes itself as its parent asked. A setting it
/// cannot apply ends it with a refusal its parent reads on `ctl`.
///
/// Under a memory cap, the child also arms its abort report
/// ([`Outcome::OutOfMemory`] on `ctl`, sent by a `SIGABRT` handler when an
/// allocation failed): how its parent tells an exhausted cap from any other
/// abort.
pub(super) fn apply(ctl: &OwnedFd, settings: &Settings) {
    let Settings { limits } = settings;
    if limits.is_empty() {
        return;
    }
    if let Some(cap) = limits.get_memory() {
        let address_space = limits.get_memory_kind() == crate::MemoryKind::AddressSpace;
        let armed = codec::encode(&Outcome::OutOfMemory).and_then(|frame| {
            let mut report = (frame.bytes.len() as u64).to_le_bytes().to_vec();
            report.extend_from_slice(&frame.bytes);
            crate::sys::rlimit::report_enomem_abort(ctl.as_fd(), report, cap, address_space)
                .map_err(Error::io("cannot install the abort handler"))
        });
        if let Err(e) = armed {
            refuse(
                ctl,
                Outcome::Refused(format!("cannot apply its limits: {e}")),
            );
        }
    }
    if let Err(e) = crate::limits::apply(limits) {
        refuse(
            ctl,
            Outcome::Refused(format!("cannot apply its limits: {e}")),
        );
    }
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
                    identity::current_process().name()
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
pub(super) fn run_and_exit(
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
        Ok(Err(e @ (Error::Decode(_) | Error::UntrustedCode { .. }))) => {
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
    super::atexit::run_exit_steps();
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    proc::exit_now(code)
}

/// Puts a freshly forked child in order: the parent's children, launcher
/// and fork server are not its own; it dies with its parent; the locks
/// held across the fork are released; stdio the parent had closed is
/// `/dev/null`; it takes the parent's name unless it has it (`named`:
/// forked by the main thread, whose name is the process's).
pub(crate) fn after_fork_in_child(
    locks: super::fork::ForkLocks,
    parent: i32,
    me: ProcessInfo,
    named: bool,
) {
    let super::fork::ForkLocks {
        stdout,
        stderr,
        hooked,
        me: record,
        default_method,
        launcher,
        exit_steps,
    } = locks;
    hooked.in_child();
    identity::become_forked_child(record, me, parent);
    drop((stdout, stderr, default_method, launcher, exit_steps));
    proc::fill_missing_stdio();
    let _ = die_with_parent(parent);
    // Forked by the launcher thread, the child bears that thread's name.
    if !named {
        take_parent_name(parent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: &str, secure: bool) -> Result<(Kind, i32, i32), String> {
        parse_env(OsStr::new(value), secure)
    }

    #[test]
    fn a_well_formed_value_is_read() {
        assert_eq!(parse("task:3:77", false), Ok((Kind::Task, 3, 77)));
        assert_eq!(
            parse("forkserver:9:1234", false),
            Ok((Kind::ForkServer, 9, 1234))
        );
    }

    #[test]
    fn secure_execution_ignores_every_value() {
        for value in ["task:3:77", "forkserver:3:77", "", "garbage"] {
            let reason = parse(value, true).unwrap_err();
            assert!(reason.contains("secure-execution"), "{reason}");
        }
    }

    #[test]
    fn malformed_values_are_refused() {
        for value in [
            "",
            "garbage",
            "task",
            "task:",
            "task:3",
            "task:3:",
            "task:x:77",
            "task:3:77:1",
            "task:-3:77",
            "task:3:0",
            "task:3:-1",
            "other:3:77",
            "task:1:77",
            "task:99999999999:77",
        ] {
            assert!(parse(value, false).is_err(), "{value:?} accepted");
        }
        let bytes = OsStr::from_bytes(b"task:\xff:1");
        assert!(parse_env(bytes, false).is_err());
    }

    fn peer(unix: bool, stream: bool, pid: i32, uid: u32) -> Result<proc::Peer, String> {
        Ok(proc::Peer {
            unix,
            stream,
            pid,
            uid,
        })
    }

    #[test]
    fn only_a_stream_socket_from_the_parent_with_our_uid_is_trusted() {
        use PeerVerdict::*;
        assert_eq!(
            judge_peer(peer(true, true, 10, 1000), 10, 10, 1000),
            Trusted
        );
        let untrusted = |v: PeerVerdict| matches!(v, Untrusted(_));
        // Not a socket, not Unix, not a stream.
        assert!(untrusted(judge_peer(Err("ENOTSOCK".into()), 10, 10, 1000)));
        assert!(untrusted(judge_peer(
            peer(false, true, 10, 1000),
            10,
            10,
            1000
        )));
        assert!(untrusted(judge_peer(
            peer(true, false, 10, 1000),
            10,
            10,
            1000
        )));
        // Another user's socket (a setuid program's caller).
        assert!(untrusted(judge_peer(peer(true, true, 10, 1000), 10, 10, 0)));
        // Made by another process than the one named, which is our parent.
        assert!(untrusted(judge_peer(
            peer(true, true, 11, 1000),
            10,
            10,
            1000
        )));
        // Our parent's socket, but the value names someone else.
        assert!(untrusted(judge_peer(
            peer(true, true, 10, 1000),
            12,
            10,
            1000
        )));
        // The named process made it but is not our parent (any more).
        assert_eq!(
            judge_peer(peer(true, true, 10, 1000), 10, 1, 1000),
            Orphaned
        );
    }
}
