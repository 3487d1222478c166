//! Process start + reap at the lowest level.

use std::process::Command;

use super::{close, close_all_but, fork, read_exact, reap, socketpair, write_all};
use crate::harness::{micros_per_op, session, Result, Session};

/// The environment variable that makes this binary `_exit(0)` in a
/// constructor, before Rust's runtime and `main` (as an mproc child starts
/// its task before `main`).
const EXIT_AT_ONCE: &str = "MPROC_BENCH_EXIT_AT_ONCE";

#[used]
#[link_section = ".init_array"]
static EXIT_AT_ONCE_HOOK: extern "C" fn() = exit_at_once_hook;

extern "C" fn exit_at_once_hook() {
    // SAFETY: a NUL-terminated name; `getenv` only reads the environment,
    // which nothing modifies while constructors run (one thread).
    if !unsafe { libc::getenv(c"MPROC_BENCH_EXIT_AT_ONCE".as_ptr()) }.is_null() {
        // SAFETY: leaves at once, running nothing that belongs to Rust.
        unsafe { libc::_exit(0) };
    }
}

/// `fork()`; the child `_exit(0)`s; `waitpid()`. Microseconds per process.
pub fn fork_exit_waitpid(n: usize) -> Result<Box<dyn Session>> {
    session(move || micros_per_op(n, || Ok(reap(fork(|| 0)?)?)))
}

/// `posix_spawn` of this same binary (as `std::process::Command` does),
/// which `_exit`s in a constructor; `waitpid()`. Microseconds per process.
pub fn reexec_self(n: usize) -> Result<Box<dyn Session>> {
    let exe = std::env::current_exe()?;
    session(move || {
        micros_per_op(n, || {
            let status = Command::new(&exe).env(EXIT_AT_ONCE, "1").status()?;
            match status.success() {
                true => Ok(()),
                false => Err(format!("re-exec failed: {status}").into()),
            }
        })
    })
}

/// The smallest fork server: a process forked once, which for each
/// request (an 8-byte number `x` on a socket) forks a child that writes
/// `2 * x` back on the same socket and `_exit(0)`s; the server reaps it and
/// writes its 4-byte wait status. The user reads both: one clean start,
/// an argument in, a value out, the exit status, two hops as in a real
/// fork server.
pub struct MiniForkServer {
    sock: libc::c_int,
    server: libc::pid_t,
    next: u64,
}

impl MiniForkServer {
    pub fn start() -> Result<MiniForkServer> {
        let [ours, theirs] = socketpair()?;
        let server = fork(|| {
            close_all_but(theirs);
            serve(theirs)
        });
        close(theirs);
        match server {
            Ok(server) => Ok(MiniForkServer {
                sock: ours,
                server,
                next: 0,
            }),
            Err(e) => {
                close(ours);
                Err(e.into())
            }
        }
    }

    /// One child: sends `x`, returns the child's `2 * x`.
    pub fn call(&mut self, x: u64) -> Result<u64> {
        write_all(self.sock, &x.to_ne_bytes())?;
        let mut value = [0u8; 8];
        let mut status = [0u8; 4];
        if !read_exact(self.sock, &mut value)? || !read_exact(self.sock, &mut status)? {
            return Err("mini fork server ended".into());
        }
        match i32::from_ne_bytes(status) {
            0 => Ok(u64::from_ne_bytes(value)),
            s => Err(format!("mini fork server child failed: status {s:#x}").into()),
        }
    }

    /// A session doing `n` calls per repetition. Microseconds per process.
    pub fn session(n: usize) -> Result<Box<dyn Session>> {
        let mut server = MiniForkServer::start()?;
        session(move || {
            micros_per_op(n, || {
                server.next += 1;
                let x = server.next;
                match server.call(x)? == 2 * x {
                    true => Ok(()),
                    false => Err("wrong value".into()),
                }
            })
        })
    }
}

impl Drop for MiniForkServer {
    fn drop(&mut self) {
        close(self.sock);
        let _ = reap(self.server);
    }
}

/// The server's loop (in the forked server; async-signal-safe).
fn serve(sock: libc::c_int) -> i32 {
    let mut req = [0u8; 8];
    while let Ok(true) = read_exact(sock, &mut req) {
        let x = u64::from_ne_bytes(req);
        let child = fork(|| match write_all(sock, &(2 * x).to_ne_bytes()) {
            Ok(()) => 0,
            Err(_) => 1,
        });
        let status: i32 = match child {
            Ok(pid) => wait_status(pid),
            Err(_) => -1,
        };
        if write_all(sock, &status.to_ne_bytes()).is_err() {
            return 1;
        }
    }
    0
}

/// The raw wait status of `pid` (0 for a clean exit), or -1.
fn wait_status(pid: libc::pid_t) -> i32 {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer for the call.
    while unsafe { libc::waitpid(pid, &mut status, 0) } == -1 {
        if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return -1;
        }
    }
    status
}
