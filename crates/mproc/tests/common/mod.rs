//! Helpers shared by the integration tests: isolation of the tests that
//! count descriptors or children, a view of this process's descendants
//! through `/proc`, and event-driven waits with generous deadlines.
#![allow(dead_code)] // each test binary uses its own subset

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How long a child that must outlive a check sleeps. It is always
/// terminated, killed or woken before that; the bound only matters if a
/// test fails half-way.
pub const LONG: Duration = Duration::from_secs(30);

/// A generous bound for a wait on an event that is expected at once, so
/// that a loaded machine does not make a test fail.
pub const GENEROUS: Duration = Duration::from_secs(20);

/// Tests that count descriptors or children take this lock exclusively;
/// every other test holds it shared, so their children do not disturb the
/// counts.
static ISOLATION: RwLock<()> = RwLock::new(());

/// For ordinary tests: the shared side of the isolation lock.
pub fn shared() -> RwLockReadGuard<'static, ()> {
    mproc::set_fork_warning(false);
    ISOLATION.read().unwrap_or_else(|e| e.into_inner())
}

/// For tests that count descriptors or children: no other test of this
/// binary runs meanwhile.
pub fn exclusive() -> RwLockWriteGuard<'static, ()> {
    mproc::set_fork_warning(false);
    ISOLATION.write().unwrap_or_else(|e| e.into_inner())
}

/// One line of `/proc/<pid>/stat`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub state: char,
    pub ppid: i32,
    /// Start time in clock ticks after boot: with the pid, names a process
    /// even when pids are reused.
    pub start: u64,
}

/// The `stat` of `pid`, if such a process exists (zombies included).
pub fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name is in parentheses and may contain anything: split after it.
    let (_, rest) = text.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        pid,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Every process on the machine.
pub fn all_processes() -> Vec<Stat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter_map(stat)
        .collect()
}

/// Every process below this one (children, grandchildren...), sorted by pid.
pub fn descendants() -> Vec<Stat> {
    let all = all_processes();
    let mut found = vec![std::process::id() as i32];
    let mut out: Vec<Stat> = Vec::new();
    while let Some(parent) = found.pop() {
        for s in all.iter().filter(|s| s.ppid == parent) {
            found.push(s.pid);
            out.push(s.clone());
        }
    }
    out.sort_by_key(|s| s.pid);
    out
}

/// The processes below this one, each as (pid, start time): a name that
/// does not change while the process runs (its state does).
pub fn descendant_ids() -> Vec<(i32, u64)> {
    descendants().iter().map(|s| (s.pid, s.start)).collect()
}

/// This process's children that are zombies (ended, not reaped).
pub fn zombie_children() -> Vec<i32> {
    let me = std::process::id() as i32;
    all_processes()
        .into_iter()
        .filter(|s| s.ppid == me && s.state == 'Z')
        .map(|s| s.pid)
        .collect()
}

/// Polls `cond` until it holds or `timeout` passes; whether it held. For
/// events that have no descriptor to wait on (a process disappearing from
/// `/proc`), never as a stand-in for joining.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// True once the process `s` names has been reaped: no entry for its pid,
/// or one for another process that reused the pid.
pub fn reaped(s: &Stat) -> bool {
    stat(s.pid).is_none_or(|now| now.start != s.start)
}

/// A value whose serialisation always fails.
#[derive(Debug)]
pub struct Unserialisable;

impl Serialize for Unserialisable {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom(
            "Unserialisable refuses to be serialised",
        ))
    }
}

impl<'de> Deserialize<'de> for Unserialisable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <()>::deserialize(d).map(|()| Unserialisable)
    }
}

/// xorshift64*: a small seeded PRNG for the kill moments of the stress
/// tests, reproducible from the seed (which must not be 0).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Connects a raw socket (no handshake) to the abstract listener `addr`.
pub fn raw_connect(addr: &mproc::Address) -> std::os::unix::net::UnixStream {
    use std::os::linux::net::SocketAddrExt;
    let mproc::Address::Abstract(name) = addr else {
        unreachable!("an abstract address")
    };
    let a = std::os::unix::net::SocketAddr::from_abstract_name(name).unwrap();
    std::os::unix::net::UnixStream::connect_addr(&a).unwrap()
}

/// A tokio runtime on the calling thread, with I/O and timers.
pub fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A tokio runtime with two worker threads, with I/O and timers.
pub fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// This process's threads now.
pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

/// Polls a future to completion on this thread with no runtime at all.
pub fn block_on_without_runtime<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// Generates one `#[test]` per suite function and start method.
#[allow(unused_macros)] // used by the test binaries that test per start method
macro_rules! per_method {
    ($($test:ident)*) => {
        per_method!(@module fork Fork; $($test)*);
        per_method!(@module spawn Spawn; $($test)*);
        per_method!(@module forkserver ForkServer; $($test)*);
    };
    (@module $module:ident $method:ident; $($test:ident)*) => {
        mod $module {
            $(
                #[test]
                fn $test() {
                    super::$test(mproc::StartMethod::$method)
                }
            )*
        }
    };
}
