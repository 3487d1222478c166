//! How a child comes to life: the three start methods, the default among
//! them, and the bootstrap that turns a fresh process into a child.
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | [`start`]: the one dispatch on [`StartMethod`]; [`Payload`] (what a task gives each method), [`Started`] and [`Waiter`] (what a start gives back) |
//! | `method.rs` | [`StartMethod`], the process-wide default (`get_start_method`, `set_start_method`) |
//! | `fork.rs` | the `Fork` method: the locks held across the fork (with those hooked in from above, [`on_fork`]), the multi-threaded warning |
//! | `spawn.rs` | the `Spawn` method: exec of `/proc/self/exe` with [`ENV_CHILD`] |
//! | `forkserver.rs` | the `ForkServer` method: the server, its protocol, the state a child takes from its user at each start |
//! | `launcher.rs` | the long-lived thread that creates children (`PR_SET_PDEATHSIG` follows the creating thread) |
//! | `atexit.rs` | the steps of a normal exit: those hooked in from above ([`at_exit`]), then the fork server's shutdown |
//! | `bootstrap.rs` | the child's side: the constructor before `main`, trust checks, the first frame, settings, running the task, the exit codes it chooses |
//!
//! Layer: above `sys/`, `identity`, `exit`, `codec` and `task`; below the
//! child registry (`child.rs`), `process/` and `context.rs`, which it never
//! imports: the registry hooks its exit step in with [`at_exit`] and its
//! lock into every fork with [`on_fork`].

mod atexit;
mod bootstrap;
pub(crate) mod fork;
mod forkserver;
mod launcher;
mod method;
mod spawn;

pub use fork::set_fork_warning;
pub use method::{all_start_methods, get_start_method, set_start_method, StartMethod};

pub(crate) use crate::task::Settings;
pub(crate) use atexit::at_exit;
pub(crate) use bootstrap::{after_fork_in_child, payload_message, prepare_fork, ENV_CHILD};
pub(crate) use fork::{on_fork, ForkHook};

use std::os::fd::{AsFd, OwnedFd};

use crate::codec::Frame;
use crate::error::{Error, Result};
use crate::identity::ProcessInfo;
use crate::observe::{debug_event, warn_event};
use crate::sys::fdpass;

/// How to learn that a child ended.
pub(crate) enum Waiter {
    /// Our own child: reap it through its pidfd.
    Direct,
    /// The fork server's child: read its exit code from this socket.
    Served { status: OwnedFd },
}

/// A child that exists and waits for (or already runs) its task.
pub(crate) struct Started {
    pub(crate) pid: i32,
    pub(crate) pidfd: OwnedFd,
    pub(crate) waiter: Waiter,
    /// The parent's end of the control socket: the first frame goes out on
    /// it (spawn, fork server), the child's outcome comes back on it.
    pub(crate) ctl: OwnedFd,
}

/// What a forked copy runs: the task, its value encoded (empty unless the
/// parent wants it).
pub(crate) type ForkedBody = Box<dyn FnOnce() -> Result<Frame> + Send>;

/// What a fresh child (`Spawn`, `ForkServer`) reads first.
pub(crate) enum FirstFrame {
    /// A task header and the arguments, sent with the arguments'
    /// descriptors.
    Task { body: Vec<u8>, args: Frame },
    /// Raw bytes followed by end of file (tests of a child's refusal of
    /// garbage and of truncated frames).
    Raw(Vec<u8>),
}

/// A task not yet started, as each start method takes it. Consumed by
/// [`start`]: the arguments move to the child and the parent's copy is
/// dropped (so a pipe end given to a child is closed in the parent).
pub(crate) trait Payload: Send {
    /// What a `Fork` child runs; an error if this task cannot run forked.
    fn forked(self: Box<Self>, want_result: bool) -> Result<ForkedBody>;

    /// The first frame of a `Spawn` or `ForkServer` child; an error if this
    /// task cannot travel to a fresh process.
    fn first_frame(
        self: Box<Self>,
        me: ProcessInfo,
        settings: Settings,
        want_result: bool,
    ) -> Result<FirstFrame>;
}

/// Starts a child that will be `me`, apply `settings` and run `payload`,
/// with `method`; with `own_group`, in a new process group it leads,
/// made before the pid comes back (so that signalling the group reaches
/// it from the start). The only place that chooses by start method.
pub(crate) fn start(
    method: StartMethod,
    payload: Box<dyn Payload>,
    me: ProcessInfo,
    settings: Settings,
    want_result: bool,
    own_group: bool,
) -> Result<Started> {
    #[cfg(feature = "tracing")]
    let began = std::time::Instant::now();
    let r = start_by(method, payload, me, settings, want_result, own_group);
    match &r {
        Ok(_started) => debug_event!(
            method = ?method,
            pid = _started.pid,
            took_us = began.elapsed().as_micros() as u64,
            "process started"
        ),
        Err(_e) => warn_event!(method = ?method, error = %_e, "process could not start"),
    }
    r
}

fn start_by(
    method: StartMethod,
    payload: Box<dyn Payload>,
    me: ProcessInfo,
    settings: Settings,
    want_result: bool,
    own_group: bool,
) -> Result<Started> {
    if method == StartMethod::Fork {
        let body = payload.forked(want_result)?;
        return fork::start(
            me,
            Box::new(move |ctl: OwnedFd| {
                bootstrap::apply(&ctl, &settings);
                bootstrap::run_and_exit(ctl, want_result, body)
            }),
            own_group,
        );
    }
    let frame = payload.first_frame(me, settings, want_result)?;
    if method == StartMethod::Spawn {
        let started = spawn::start(own_group)?;
        send_first_frame(&started.ctl, &frame)?;
        return Ok(started);
    }
    // The fork server sends it itself, before the child exists if it can.
    forkserver::start(&frame, own_group)
}

impl FirstFrame {
    /// Its size on the wire, about.
    fn len(&self) -> usize {
        match self {
            FirstFrame::Task { body, .. } => body.len() + 8,
            FirstFrame::Raw(bytes) => bytes.len(),
        }
    }
}

/// Sends a child its first frame on `ctl`.
fn send_first_frame(ctl: &OwnedFd, frame: &FirstFrame) -> Result<()> {
    let cannot_send = Error::io("cannot send the task to the child");
    match frame {
        FirstFrame::Task { body, args } => {
            fdpass::send_frame(ctl.as_fd(), body, &args.borrowed_fds()).map_err(cannot_send)
        }
        FirstFrame::Raw(bytes) => {
            fdpass::send_all(ctl.as_fd(), bytes).map_err(cannot_send)?;
            rustix::net::shutdown(ctl, rustix::net::Shutdown::Write)
                .map_err(|e| Error::io("shutdown failed")(e.into()))
        }
    }
}

pub use forkserver::kill_server as kill_fork_server;
#[doc(hidden)]
pub use forkserver::raw_request as fork_server_raw_request;
#[doc(hidden)]
pub use forkserver::server_pid as fork_server_pid;
