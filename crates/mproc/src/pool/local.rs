//! The local worker: a child process of the pool's start method and the
//! parent's end of its pipe, as a [`WorkerLink`].

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::link::{WorkerHandle, WorkerLink};
use super::supervisor::{fail_of, Config};
use super::wire;
use super::worker::{worker_main, MemoryWatch, WorkerArgs};
use crate::child::Child;
use crate::error::Result;
use crate::pipe::{Connection, Pipe};
use crate::process::Process;

/// A worker process and the parent's end of its pipe. `Sync`: one thread
/// may send while another receives (an MPI rank's relay does).
pub(crate) struct LocalWorker {
    /// Kept for its life; the child is reached through `child`.
    _process: Mutex<Process>,
    child: Arc<Child>,
    conn: Connection<()>,
    pid: i32,
}

impl LocalWorker {
    fn child(&self) -> Arc<Child> {
        self.child.clone()
    }
}

impl WorkerLink for LocalWorker {
    fn start(cfg: &Config, slot: usize) -> Result<LocalWorker> {
        let (here, there) = Pipe::<()>::new()?;
        let args = WorkerArgs {
            conn: there,
            init: cfg.init.clone(),
            memory: MemoryWatch {
                report: cfg.record_timeline,
                max: cfg.max_memory,
            },
        };
        let mut process = Process::new(worker_main, args)
            .name(format!("PoolWorker-{}", slot + 1))
            .daemon(true)
            .start_method(cfg.method)
            .limits(cfg.limits);
        process.start()?;
        let pid = process.pid().expect("started");
        let child = process.child().expect("started");
        let mut w = LocalWorker {
            _process: Mutex::new(process),
            child,
            conn: here,
            pid,
        };
        match w.conn.recv_bytes() {
            Ok(m) if m == [wire::READY] => Ok(w),
            _ => {
                let ended = super::supervisor::reap(&mut w);
                Err(fail_of(pid, ended).to_error())
            }
        }
    }

    #[inline]
    fn pid(&self) -> i32 {
        self.pid
    }

    fn handle(&self) -> Arc<dyn WorkerHandle> {
        self.child()
    }

    #[inline]
    fn send(&self, msg: &[u8]) -> Result<()> {
        self.conn.send_bytes(msg)
    }

    #[inline]
    fn poll(&self, timeout: Duration) -> Result<bool> {
        self.conn.poll(timeout)
    }

    #[inline]
    fn recv(&self) -> Result<Vec<u8>> {
        self.conn.recv_bytes()
    }

    fn limit_exceeded(&self) -> Option<(crate::Limit, u64)> {
        let process = self._process.lock().unwrap_or_else(|e| e.into_inner());
        let (limit, error) = process.limit_error()?;
        match error {
            crate::Error::LimitExceeded { cap, .. } => Some((limit, cap)),
            _ => None,
        }
    }

    #[inline]
    fn is_alive(&self) -> bool {
        matches!(self.child.try_code(), Ok(None))
    }

    fn wait(&self, timeout: Duration) -> io::Result<Option<i32>> {
        self.child().wait(Some(Instant::now() + timeout))
    }

    /// SIGTERM, SIGKILL after `grace`, reaped. Reaping needs no new
    /// descriptor, so this fails only if the OS does.
    fn stop(&mut self, grace: Duration) -> io::Result<i32> {
        let child = &self.child;
        let _ = child.signal(libc::SIGTERM);
        if let Some(code) = self.wait(grace)? {
            return Ok(code);
        }
        let _ = child.signal(libc::SIGKILL);
        // With no deadline, `wait` returns only once the child is reaped.
        child
            .wait(None)?
            .ok_or_else(|| io::Error::other("a child seen ended was not reaped"))
    }
}

impl Drop for LocalWorker {
    fn drop(&mut self) {
        if self.is_alive() {
            let _ = self.stop(Duration::ZERO);
        }
    }
}

impl WorkerHandle for Child {
    fn pid(&self) -> i32 {
        self.pid
    }

    fn terminate(&self) {
        let _ = self.signal(libc::SIGTERM);
    }

    fn kill(&self) {
        let _ = self.signal(libc::SIGKILL);
    }
}
