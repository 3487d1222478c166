//! The limits: the same operations at the lowest level, written against
//! `libc` with nothing in between. Each is the floor a library could reach
//! on this machine; see `bench/README.md` for what each one stands for.
//!
//! A forked child here runs only async-signal-safe code (atomics, `read`,
//! `write`, `fork`, `waitpid`, `futex`) and leaves with `_exit`.

pub mod bulk;
pub mod lifecycle;
pub mod lock;
pub mod pingpong;

use std::io;

/// Turns a `-1` return into the thread's `errno`.
fn cvt(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Forks; the child runs `child` and `_exit`s with its result.
///
/// `child` must be async-signal-safe: it runs in a copy of a possibly
/// multi-threaded process.
fn fork(child: impl FnOnce() -> i32) -> io::Result<libc::pid_t> {
    // SAFETY: the child only runs `child` (async-signal-safe by this
    // function's contract) and `_exit`, never returning into Rust code
    // that might take a lock another thread held at the fork.
    let pid = cvt(unsafe { libc::fork() } as libc::c_long)? as libc::pid_t;
    if pid == 0 {
        let code = child();
        // SAFETY: `_exit` ends the child without running atexit handlers
        // or destructors that belong to the parent.
        unsafe { libc::_exit(code) };
    }
    Ok(pid)
}

/// Waits for `pid` and fails unless it exited with status 0.
fn reap(pid: libc::pid_t) -> io::Result<()> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer for the call.
        match cvt(unsafe { libc::waitpid(pid, &mut status, 0) } as libc::c_long) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => r?,
        };
        break;
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "child {pid} failed: status {status:#x}"
        )))
    }
}

/// Writes all of `buf` to `fd`. Async-signal-safe.
fn write_all(fd: libc::c_int, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is valid for `buf.len()` bytes.
        match cvt(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) } as libc::c_long) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
            Ok(n) => buf = &buf[n as usize..],
        }
    }
    Ok(())
}

/// Fills `buf` from `fd`; `Ok(false)` at end of file before the first
/// byte. Async-signal-safe.
fn read_exact(fd: libc::c_int, buf: &mut [u8]) -> io::Result<bool> {
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        // SAFETY: `rest` is valid for writes of `rest.len()` bytes.
        match cvt(unsafe { libc::read(fd, rest.as_mut_ptr().cast(), rest.len()) } as libc::c_long) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
            Ok(0) if done == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n as usize,
        }
    }
    Ok(true)
}

/// An AF_UNIX stream socket pair.
fn socketpair() -> io::Result<[libc::c_int; 2]> {
    let mut sv = [0; 2];
    // SAFETY: `sv` has room for the two descriptors.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            sv.as_mut_ptr(),
        )
    } as libc::c_long)?;
    Ok(sv)
}

fn close(fd: libc::c_int) {
    // SAFETY: the caller owns `fd` and does not use it afterwards.
    unsafe { libc::close(fd) };
}

/// Closes every descriptor from 3 up except `keep`, so that a forked
/// child does not hold the parent's pipes open (a CPython runner waits for
/// end of file on its stdin). Async-signal-safe.
fn close_all_but(keep: libc::c_int) {
    let close_range = |first: libc::c_int, last: libc::c_uint| {
        if first as libc::c_uint <= last {
            // SAFETY: closes descriptors only this forked child uses; none
            // is touched afterwards except `keep`, which stays open.
            unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_uint, last, 0) };
        }
    };
    if keep < 3 {
        close_range(3, libc::c_uint::MAX);
    } else {
        close_range(3, keep as libc::c_uint - 1);
        close_range(keep + 1, libc::c_uint::MAX);
    }
}

/// A fresh, zero-filled anonymous `MAP_SHARED` mapping of `size` bytes,
/// shared with the children forked afterwards.
fn map_shared(size: usize) -> io::Result<*mut libc::c_void> {
    // SAFETY: a new mapping chosen by the kernel (null hint) touches no
    // existing memory.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    match p == libc::MAP_FAILED {
        true => Err(io::Error::last_os_error()),
        false => Ok(p),
    }
}
