//! The only place that speaks to the kernel.
//!
//! Every raw syscall and every `unsafe` block that touches the OS lives here,
//! each with its `// SAFETY:` argument. The rest of the crate sees safe
//! functions returning `io::Result`.
//!
//! | file           | what                                                    |
//! |----------------|---------------------------------------------------------|
//! | `mod.rs`       | small helpers: `cvt`, descriptors above stdio, deadlines |
//! | `proc.rs`      | process creation, reaping and signals                   |
//! | `rlimit.rs`    | a child's resource limits, its abort report, its rusage  |
//! | `image.rs`     | the running executable: identity, function addresses    |
//! | `fnref.rs`     | `FnRef`: a typed function reference, checked            |
//! | `shm.rs`       | `SharedRegion`: a `memfd` mapped `MAP_SHARED`           |
//! | `posix_shm.rs` | named POSIX shared memory (`/dev/shm`)                  |
//! | `futex.rs`     | futex wait and wake on shared words                     |
//! | `robust.rs`    | process-shared mutexes that notice their owner's death  |
//! | `fdpass.rs`    | frames with descriptors on a Unix socket (`SCM_RIGHTS`) |
//! | `reactor.rs`   | (feature `tokio`) a descriptor registered with tokio    |
//! | `timer.rs`     | (feature `tokio`) a periodic timerfd (futures' naps)    |
//! | `wakefd.rs`    | (feature `tokio`) an eventfd that wakes async waiters   |

pub(crate) mod fdpass;
pub(crate) mod fnref;
pub(crate) mod futex;
pub(crate) mod image;
pub(crate) mod posix_shm;
pub(crate) mod proc;
#[cfg(feature = "tokio")]
pub(crate) mod reactor;
pub(crate) mod ring;
pub(crate) mod rlimit;
pub(crate) mod robust;
pub(crate) mod shm;
#[cfg(feature = "tokio")]
pub(crate) mod timer;
#[cfg(feature = "tokio")]
pub(crate) mod wakefd;

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// Turns a `-1`-on-error libc return value into an `io::Result`.
pub(crate) fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Moves a descriptor mproc just created to a number above 2 (close-on-exec).
///
/// A process whose stdin, stdout or stderr is closed (a daemon) gets its
/// next descriptors at 0, 1 or 2; one of mproc's sockets there would be
/// taken for stdio by a child (or by `println!`). Every descriptor mproc
/// creates and keeps goes through this. Numbers above 2 pass unchanged.
pub(crate) fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    Ok(rustix::io::fcntl_dupfd_cloexec(&fd, 3)?)
}

/// [`above_stdio`] for a std socket or file (a `Listener`'s or `Client`'s
/// socket): the same object, on a number above 2.
pub(crate) fn keep_above_stdio<T: From<OwnedFd> + Into<OwnedFd>>(obj: T) -> io::Result<T> {
    above_stdio(obj.into()).map(T::from)
}

/// Time left until `deadline` (`None`: wait forever), saturating at zero.
pub(crate) fn remaining(deadline: Option<Instant>) -> Option<Duration> {
    deadline.map(|d| d.saturating_duration_since(Instant::now()))
}

/// Converts a duration to the kernel's timespec.
pub(crate) fn timespec(d: Duration) -> rustix::time::Timespec {
    rustix::time::Timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
        tv_nsec: d.subsec_nanos() as _,
    }
}
