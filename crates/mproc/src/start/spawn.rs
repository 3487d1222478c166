//! The `Spawn` start method: a fresh exec of this executable, which the
//! bootstrap constructor turns into a child before `main`.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd};

use super::{launcher, Started, ENV_CHILD};
use crate::child::Waiter;
use crate::error::{Error, Result};
use crate::sys::{fdpass, proc};

/// Starts a child that waits for its first frame on the returned `ctl`.
pub(crate) fn start() -> Result<Started> {
    let (ctl, child_end) =
        fdpass::stream_pair().map_err(Error::io("cannot create the control socket"))?;
    let pid = exec_self("task", child_end)?;
    let pidfd = proc::open_pidfd(pid).map_err(Error::io("pidfd_open failed"))?;
    Ok(Started {
        pid,
        pidfd,
        waiter: Waiter::Direct,
        ctl,
    })
}

/// Executes this program as an mproc child of `kind`, handing it `fd`.
pub(crate) fn exec_self(kind: &'static str, fd: std::os::fd::OwnedFd) -> Result<i32> {
    launcher::on_lasting_thread(move || {
        let value = OsString::from(format!("{kind}:{}:{}", fd.as_raw_fd(), proc::getpid()));
        proc::spawn_self(&[(ENV_CHILD, value)], fd.as_fd())
    })
    .map_err(Error::io("cannot reach the launcher thread"))?
    .map_err(Error::io("cannot execute /proc/self/exe"))
}
