//! Named POSIX shared memory (`shm_open`): the files of `/dev/shm`.
//!
//! The calls the crash-safe naming scheme of
//! [`SharedMemory`](crate::SharedMemory) is made of: exclusive creation,
//! an atomic no-replace rename (to publish a segment fully sized and
//! already locked), `flock` (the owner's liveness mark, dropped by the
//! kernel when the owner dies), and a listing of the directory for the
//! sweep. `rustix::shm` maps a name to `/dev/shm/<name>`; the functions
//! that work on paths use the same directory.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use rustix::fs::{flock, fstat, ftruncate, statat, AtFlags, FlockOperation, Mode, OFlags, CWD};
use rustix::io::Errno;
use rustix::shm;

/// The directory `shm_open` names live in on Linux.
pub(crate) const SHM_DIR: &str = "/dev/shm";

fn path(name: &str) -> String {
    format!("{SHM_DIR}/{name}")
}

/// Creates `name`, failing with `AlreadyExists` if it exists; mode 0600.
pub(crate) fn create_exclusive(name: &str) -> io::Result<OwnedFd> {
    let flags = shm::OFlags::CREATE | shm::OFlags::EXCL | shm::OFlags::RDWR;
    super::above_stdio(shm::open(name, flags, Mode::RUSR | Mode::WUSR)?)
}

/// Opens an existing `name` for reading and writing (`NotFound` if absent).
pub(crate) fn open_existing(name: &str) -> io::Result<OwnedFd> {
    super::above_stdio(shm::open(name, shm::OFlags::RDWR, Mode::empty())?)
}

/// Removes `name` (`NotFound` if absent).
pub(crate) fn unlink(name: &str) -> io::Result<()> {
    Ok(shm::unlink(name)?)
}

/// Sets the size of a segment (`EFBIG` over the file size limit, without
/// the `SIGXFSZ` that would kill the process: see
/// [`check_file_size_limit`](super::shm::check_file_size_limit)).
pub(crate) fn set_len(fd: impl AsFd, len: usize) -> io::Result<()> {
    super::shm::check_file_size_limit(len as u64)?;
    Ok(ftruncate(fd, len as u64)?)
}

/// Renames `from` to `to` unless `to` exists (`AlreadyExists` then).
pub(crate) fn rename_noreplace(from: &str, to: &str) -> io::Result<()> {
    let flags = rustix::fs::RenameFlags::NOREPLACE;
    Ok(rustix::fs::renameat_with(
        CWD,
        path(from),
        CWD,
        path(to),
        flags,
    )?)
}

/// Takes an exclusive `flock` on the open file description of `fd`, without
/// waiting: `Ok(false)` if another description holds a lock on the file.
pub(crate) fn try_lock_exclusive(fd: impl AsFd) -> io::Result<bool> {
    match flock(fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(true),
        Err(Errno::WOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Whether `name` in the shm directory is the very file `fd` refers to.
pub(crate) fn names_file(name: &str, fd: impl AsFd) -> io::Result<bool> {
    let ours = fstat(fd)?;
    match statat(CWD, path(name), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(st.st_ino == ours.st_ino && st.st_dev == ours.st_dev),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// The names in the shm directory that start with `prefix`.
pub(crate) fn list(prefix: &str) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(SHM_DIR)? {
        let name = entry?.file_name();
        if let Some(name) = name.to_str().filter(|n| n.starts_with(prefix)) {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// A new open file description of the file `fd` refers to (through
/// `/proc/self/fd`): it shares the file, not the `flock` of `fd`'s
/// description.
pub(crate) fn reopen(fd: impl AsFd) -> io::Result<OwnedFd> {
    let link = format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd());
    super::above_stdio(rustix::fs::open(
        link,
        OFlags::RDWR | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// Whether a process with this pid exists (it may be a newer process that
/// reused the pid: callers use this only as a hint).
pub(crate) fn pid_exists(pid: i32) -> bool {
    let Some(pid) = rustix::process::Pid::from_raw(pid) else {
        return false;
    };
    !matches!(rustix::process::test_kill_process(pid), Err(Errno::SRCH))
}
