//! (feature `tokio`) A periodic timer descriptor: readable once per period,
//! for futures that look again now and then on their own (a wake lost to
//! a publisher killed between its store and its wake, as the blocking
//! waits' naps cover).

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};

/// A timerfd (monotonic, close-on-exec, non-blocking, above stdio) that
/// expires every `period`, the first time one `period` from now.
pub(crate) fn periodic(period: Duration) -> io::Result<OwnedFd> {
    let fd = timerfd_create(
        TimerfdClockId::Monotonic,
        TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK,
    )?;
    let every = Timespec {
        tv_sec: i64::try_from(period.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(period.subsec_nanos()),
    };
    timerfd_settime(
        &fd,
        TimerfdTimerFlags::empty(),
        &Itimerspec {
            it_interval: every,
            it_value: every,
        },
    )?;
    super::above_stdio(fd)
}

/// Whether the timer expired since the last call (taking its count).
/// Never blocks.
pub(crate) fn expired(fd: BorrowedFd<'_>) -> bool {
    let mut count = [0u8; 8];
    matches!(rustix::io::read(fd, &mut count), Ok(8))
}
