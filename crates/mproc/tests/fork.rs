//! The `Fork` start method in a multi-threaded parent: a lock another
//! thread holds at the moment of the fork must not leave the child blocked.
//! mproc holds across the fork every lock its forked child takes (stdout,
//! stderr, its registry and its record of who is who) and installs the
//! child's panic hook before forking; these tests fork while other threads
//! take those locks in a loop. Their own binary: they set a panic hook and
//! hold the standard streams' locks.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use common::GENEROUS;
use mproc::Error;

const FORKS: usize = 100;

/// Every test starts here: a panic hook that writes to the process's
/// stderr (the lock mproc holds across the fork), not to libtest's
/// per-test capture buffer, whose lock a forked child could inherit held
/// (the launcher thread inherits the capture of the test that started
/// it): a harness artifact that no real program has. Set before the
/// first fork, so that mproc's recording hook wraps it.
fn setup() -> std::sync::RwLockReadGuard<'static, ()> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = info.payload().downcast_ref::<&str>().copied();
            if !message.is_some_and(|m| m.starts_with("expected:")) {
                let _ = writeln!(std::io::stderr(), "panic: {info}");
            }
        }))
    });
    common::shared()
}

/// Runs `busy` in a loop on another thread until the returned guard drops.
struct Busy {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Busy {
    fn new(busy: fn()) -> Busy {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                busy();
            }
        });
        Busy {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Forks `FORKS` children running `task`, each of which must end within
/// the generous bound; `check` judges each result.
fn fork_many<R>(task: fn() -> R, check: impl Fn(mproc::Result<R>))
where
    R: serde::Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    for _ in 0..FORKS {
        let mut h = mproc::fork(task).unwrap();
        let r = h.join_timeout(GENEROUS);
        if matches!(r, Err(Error::Timeout)) {
            h.kill().unwrap();
            panic!("a forked child hung (pid {})", h.pid());
        }
        check(r);
    }
}

#[test]
fn fork_while_other_threads_hold_stdout_and_stderr() {
    let _g = setup();
    let _out = Busy::new(|| {
        let mut out = std::io::stdout().lock();
        std::thread::yield_now();
        let _ = out.flush();
    });
    let _err = Busy::new(|| {
        let mut err = std::io::stderr().lock();
        std::thread::yield_now();
        let _ = err.flush();
    });
    // The child prints (takes both locks) and flushes at its end.
    fork_many(
        || {
            print!("");
            eprint!("");
            7u8
        },
        |r| assert_eq!(r.unwrap(), 7),
    );
}

#[test]
fn fork_while_another_thread_panics() {
    let _g = setup();
    let _panics = Busy::new(|| {
        let _ = std::panic::catch_unwind(|| panic!("expected: a panic on another thread"));
    });
    fork_many(
        || -> u8 { panic!("expected: the child's own panic") },
        |r| match r {
            Err(Error::Panicked {
                message, location, ..
            }) => {
                assert_eq!(message, "expected: the child's own panic");
                assert!(location.contains("fork.rs"), "{location}");
            }
            other => panic!("expected Panicked, got {other:?}"),
        },
    );
}

#[test]
fn fork_while_another_thread_creates_processes() {
    let _g = setup();
    let _creating = Busy::new(|| {
        let _ = mproc::current_process();
        let _ = mproc::active_children();
        let _ = mproc::get_start_method();
        drop(mproc::Process::new(|x: u8| x, 1));
    });
    fork_many(
        || {
            assert_ne!(mproc::get_start_method(), mproc::StartMethod::Fork);
            mproc::current_process().identity().len()
        },
        |r| assert_eq!(r.unwrap(), 1),
    );
}

fn square(x: u64) -> u64 {
    x * x
}

#[test]
fn fork_while_another_thread_uses_the_fork_server() {
    let _g = setup();
    let _serving = Busy::new(|| {
        // Each round starts a new server (the slow path, under its lock).
        let _ = mproc::__private::kill_fork_server();
        let ctx = mproc::get_context(Some(mproc::StartMethod::ForkServer));
        let _ = ctx.spawn(square, 2).map(|h| h.join());
    });
    // Each forked child starts a fork-server child of its own.
    fork_many(
        || {
            let ctx = mproc::get_context(Some(mproc::StartMethod::ForkServer));
            ctx.spawn(square, 3).unwrap().join().unwrap()
        },
        |r| assert_eq!(r.unwrap(), 9),
    );
}
