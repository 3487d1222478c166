//! How a child comes to life: the three start methods, the [`Context`] that
//! selects one, and the bootstrap that turns a fresh process into a child.

mod bootstrap;
pub(crate) mod fork;
mod forkserver;
mod launcher;
mod method;
mod spawn;

pub use fork::set_fork_warning;
pub use method::{all_start_methods, get_start_method, set_start_method, StartMethod};

pub(crate) use bootstrap::{
    after_fork_in_child, payload_message, prepare_fork, run_and_exit, ENV_CHILD,
};
pub(crate) use fork::start as start_fork;
pub(crate) use forkserver::shutdown as shutdown_forkserver;
pub(crate) use forkserver::start as start_forkserver;
pub(crate) use spawn::start as start_spawn;

use std::os::fd::OwnedFd;

use crate::child::Waiter;

/// A child that exists and waits for (or already runs) its task.
pub(crate) struct Started {
    pub(crate) pid: i32,
    pub(crate) pidfd: OwnedFd,
    pub(crate) waiter: Waiter,
    /// The parent's end of the control socket: the first frame goes out on
    /// it (spawn, fork server), the child's outcome comes back on it.
    pub(crate) ctl: OwnedFd,
}

pub use forkserver::kill_server as kill_fork_server;
#[doc(hidden)]
pub use forkserver::raw_request as fork_server_raw_request;
#[doc(hidden)]
pub use forkserver::server_pid as fork_server_pid;
