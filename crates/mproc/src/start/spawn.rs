//! The `Spawn` start method: a fresh exec of this executable, which the
//! bootstrap constructor turns into a child before `main`.

use std::ffi::OsString;
use std::os::fd::AsFd;

use super::{launcher, Started, Waiter, ENV_CHILD};
use crate::error::{Error, Result};
use crate::sys::{fdpass, proc};

/// Starts a child that waits for its first frame on the returned `ctl`;
/// with `own_group`, in a new process group it leads.
pub(crate) fn start(own_group: bool) -> Result<Started> {
    let (ctl, child_end) =
        fdpass::stream_pair().map_err(Error::io("cannot create the control socket"))?;
    let pid = exec_self("task", child_end, own_group)?;
    let pidfd = proc::open_pidfd(pid).map_err(Error::io("pidfd_open failed"))?;
    Ok(Started {
        pid,
        pidfd,
        waiter: Waiter::Direct,
        ctl,
    })
}

/// Executes this program as an mproc child of `kind`, handing it `fd`;
/// with `own_group`, in a new process group it leads (made before the
/// exec).
///
/// Refused in a secure-execution process (a setuid or setgid program run by
/// another user): the executed copy would be one too, whose bootstrap
/// ignores [`ENV_CHILD`] and would run `main` instead of the task.
pub(crate) fn exec_self(
    kind: &'static str,
    fd: std::os::fd::OwnedFd,
    own_group: bool,
) -> Result<i32> {
    if proc::secure_execution() {
        return Err(Error::InvalidState(
            "Spawn and ForkServer children cannot start in a setuid or setgid process \
             (secure execution): use StartMethod::Fork",
        ));
    }
    launcher::on_lasting_thread(move || {
        let ctl = proc::CHILD_CTL_FD;
        let value = OsString::from(format!("{kind}:{ctl}:{}", proc::getpid()));
        proc::spawn_self(&[(ENV_CHILD, value)], fd.as_fd(), own_group)
    })
    .map_err(Error::io("cannot reach the launcher thread"))?
    .map_err(Error::io("cannot execute /proc/self/exe"))
}
