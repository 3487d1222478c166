//! `Process`, `spawn`/`JoinHandle`: the user's handles on a child.
//!
//! | file | holds |
//! |---|---|
//! | `mod.rs` | [`Process`] (Python's), [`active_children`]; re-exports who is who (`crate::identity`) and the bootstrap exit code (`crate::exit`) |
//! | `handle.rs` | [`spawn`], [`fork`], [`JoinHandle`]: a child's value back, or why there is none |
//! | `payload.rs` | the tasks a `Process` carries until it starts (`FnTask`, `ClosureTask`, `RawFrame`), as `start::Payload`s |
//!
//! Layer: above `start/` (which it asks for a child with `start::start`)
//! and the child registry (`crate::child`, which records and reaps it);
//! below `context.rs`, `pool/` and `manager/`.

mod handle;
mod payload;

pub use crate::exit::BOOTSTRAP_EXIT_CODE;
pub use crate::identity::{cpu_count, current_process, parent_process, ProcessInfo};
pub(crate) use handle::spawn_with;
pub use handle::{__start_with_raw_first_frame, fork, spawn, JoinHandle};

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::child::{self, Child};
use crate::codec;
use crate::error::{Error, Result};
use crate::limits::{Limit, Limits, Resources};
use crate::start::{self, get_start_method, Payload, Settings, StartMethod};
use crate::sys::fdpass;
use crate::task::{Outcome, MAX_FRAME};
use payload::FnTask;

/// A child process running `f(args)`, as Python's `multiprocessing.Process`.
///
/// ```
/// use mproc::Process;
///
/// fn greet(name: String) {
///     println!("hello {name}");
/// }
///
/// let mut p = Process::new(greet, "bob".to_string()).name("greeter");
/// p.start()?;
/// p.join()?;
/// assert_eq!(p.exitcode(), Some(0));
/// # Ok::<(), mproc::Error>(())
/// ```
///
/// `f` is a plain function (or a closure without captures); its arguments
/// travel to the child. A capturing closure does not compile:
///
/// ```compile_fail
/// let y = 1;
/// let p = mproc::Process::new(move |x: u32| x + y, 1);
/// ```
///
/// # Exit codes
///
/// [`exitcode`](Process::exitcode) is `None` while the child runs, `0` when
/// `f` returned, `n` for `std::process::exit(n)`, `1` for a panic (whose
/// message and location the child prints on its stderr), and `-N` when a
/// signal N killed it.
///
/// # Dropping
///
/// Dropping a `Process` does not stop the child. It keeps running and is
/// reaped in the background when it ends, so it never stays a zombie; at
/// the parent's normal exit non-daemon children are joined and daemon
/// children terminated, as in Python. If the parent dies abruptly, every
/// child is killed with it.
pub struct Process {
    name: String,
    identity: Vec<u32>,
    daemon: bool,
    /// `None`: the default in force when the process starts.
    method: Option<StartMethod>,
    payload: Option<Box<dyn Payload>>,
    /// What the child applies to itself before its task (carried in its
    /// task header): its limits.
    settings: Settings,
    /// The child leads a process group of its own (see
    /// [`process_group`](Process::process_group)).
    own_group: bool,
    child: Option<Arc<Child>>,
    /// The parent's end of the control socket, kept (when nobody else
    /// reads it) for a child under a memory cap: its abort report comes
    /// there.
    ctl: Option<OwnedFd>,
    /// Whether that report came, once the child ended.
    memory_report: OnceLock<bool>,
}

impl Process {
    /// A process that will run `f(args)` once started.
    pub fn new<A, R>(f: fn(A) -> R, args: A) -> Process
    where
        A: Serialize + DeserializeOwned + Send + 'static,
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        Self::with_payload(Box::new(FnTask { f, args }))
    }

    pub(crate) fn with_payload(payload: Box<dyn Payload>) -> Process {
        let (identity, name) = crate::identity::next_child_identity();
        Process {
            name,
            identity,
            daemon: current_process().daemon,
            method: None,
            payload: Some(payload),
            settings: Settings::default(),
            own_group: true,
            child: None,
            ctl: None,
            memory_report: OnceLock::new(),
        }
    }

    /// Sets the name (default `Process-N`, or `Process-N:M` in a child).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Makes the child a daemon: terminated when the parent exits, and not
    /// allowed to start children of its own. Inherited by default.
    pub fn daemon(mut self, daemon: bool) -> Self {
        self.daemon = daemon;
        self
    }

    /// Chooses the start method (default: [`get_start_method`] at the time
    /// of [`start`](Process::start), as in Python).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
        self
    }

    /// Sets the child's resource limits (memory, CPU time, nice value,
    /// descriptors, core dumps), which it applies to itself before `f`
    /// runs; see [`Limits`]. Default: the [`Context`](crate::Context)'s,
    /// none for [`Process::new`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use mproc::{Limit, Limits, Process};
    ///
    /// fn spin(_: ()) {
    ///     let mut x = 0u64;
    ///     loop {
    ///         x = std::hint::black_box(x.wrapping_add(1));
    ///     }
    /// }
    ///
    /// let mut p = Process::new(spin, ()).limits(Limits::new().cpu_time(Duration::from_secs(1)));
    /// p.start()?;
    /// p.join()?;
    /// assert_eq!(p.limit_exceeded(), Some(Limit::CpuTime));
    /// assert!(p.resources().unwrap().cpu_time() >= Duration::from_millis(500));
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn limits(mut self, limits: Limits) -> Self {
        self.settings.limits = limits;
        self
    }

    /// The limits the child applies to itself.
    pub fn get_limits(&self) -> Limits {
        self.settings.limits
    }

    /// Whether the child leads a process group of its own (the default:
    /// `true`), so that [`terminate`](Process::terminate),
    /// [`kill`](Process::kill) and [`interrupt`](Process::interrupt) reach
    /// what it started too (a shell command, a helper binary), and no such
    /// grandchild outlives it when it is stopped.
    ///
    /// `false` keeps the child in its parent's group, as Python does: a
    /// Ctrl-C at the terminal (which signals the terminal's foreground
    /// group) then reaches the child and its own children, but
    /// `terminate` and `kill` reach the child alone.
    ///
    /// In its own group, the child is out of the terminal's foreground
    /// group: Ctrl-C reaches only the parent's group (if the parent dies
    /// of it, the child dies with it, its death signal, but what the
    /// child started does not), and a child that reads the terminal is
    /// stopped (`SIGTTIN`), as a background job is.
    ///
    /// What escapes even so: a grandchild that leaves the group itself
    /// (`setsid`, `setpgid`, a daemon that detaches), and what a
    /// grandchild started by mproc starts (it leads a group of its own,
    /// which its own parent's death signal ends, not this one).
    ///
    /// ```
    /// fn shell(_: ()) {
    ///     let _ = std::process::Command::new("sleep").arg("1000").status();
    /// }
    ///
    /// let mut p = mproc::Process::new(shell, ());
    /// p.start()?;
    /// p.kill()?; // the child and its `sleep`
    /// p.join()?;
    /// assert_eq!(p.exitcode(), Some(-9));
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn process_group(mut self, own: bool) -> Self {
        self.own_group = own;
        self
    }

    /// The process's name.
    pub fn get_name(&self) -> &str {
        &self.name
    }

    /// Whether the process is a daemon.
    pub fn is_daemon(&self) -> bool {
        self.daemon
    }

    /// Starts the child. Errors: started twice, a daemon starting a child,
    /// arguments that do not serialise, or the OS refusing.
    pub fn start(&mut self) -> Result<()> {
        self.start_wanting(false).map(drop)
    }

    pub(crate) fn start_wanting(&mut self, want_result: bool) -> Result<std::os::fd::OwnedFd> {
        if self.child.is_some() || self.payload.is_none() {
            return Err(Error::InvalidState("cannot start a process twice"));
        }
        if current_process().daemon {
            return Err(Error::InvalidState(
                "daemonic processes are not allowed to have children",
            ));
        }
        child::cleanup();
        let me = ProcessInfo {
            name: self.name.clone(),
            pid: 0,
            identity: self.identity.clone(),
            daemon: self.daemon,
        };
        let payload = self.payload.take().expect("checked above");
        let method = self.method.unwrap_or_else(get_start_method);
        let started = start::start(
            method,
            payload,
            me.clone(),
            self.settings.clone(),
            want_result,
            self.own_group,
        )?;
        self.child = Some(Child::new(
            started.pid,
            started.pidfd,
            started.waiter,
            me,
            self.own_group,
        ));
        if !want_result && self.settings.limits.get_memory().is_some() {
            // Best effort: the child runs; without the copy (no descriptor
            // left) its memory cap is named as an ordinary abort.
            self.ctl = started
                .ctl
                .try_clone()
                .and_then(crate::sys::above_stdio)
                .ok();
        }
        Ok(started.ctl)
    }

    /// What the child used (peak resident memory, CPU time), once it ended
    /// and was reaped ([`join`](Process::join), or
    /// [`exitcode`](Process::exitcode) seen `Some`); `None` before, or if
    /// it was reaped elsewhere.
    ///
    /// ```
    /// fn touch(mib: usize) -> u8 {
    ///     let v = vec![1u8; mib << 20];
    ///     v[v.len() - 1]
    /// }
    ///
    /// let mut p = mproc::Process::new(touch, 64).start_method(mproc::StartMethod::Spawn);
    /// p.start()?;
    /// p.join()?;
    /// assert!(p.resources().unwrap().peak_rss() >= 64 << 20);
    /// # Ok::<(), mproc::Error>(())
    /// ```
    pub fn resources(&self) -> Option<Resources> {
        self.child.as_ref()?.resources()
    }

    /// The limit that ended the child, once it ended: [`Limit::Memory`] if
    /// an allocation failed under its memory cap, [`Limit::CpuTime`] if it
    /// used up its CPU time; `None` if it ended for another reason (or
    /// runs, or was never started). See [`Limits`].
    pub fn limit_exceeded(&self) -> Option<Limit> {
        self.limit_error().map(|(limit, _)| limit)
    }

    /// The limit that ended the child, and the error that says so.
    pub(crate) fn limit_error(&self) -> Option<(Limit, Error)> {
        let child = self.child.as_ref()?;
        let code = child.known_code()?;
        let (limit, cap) = self.settings.limits.exceeded(
            code,
            child.resources().as_ref(),
            self.memory_reported(),
        )?;
        let error = Error::LimitExceeded {
            pid: child.pid,
            limit,
            cap,
            code,
        };
        Some((limit, error))
    }

    /// Whether the (ended) child reported a failed allocation on the
    /// control socket kept for it.
    fn memory_reported(&self) -> bool {
        let Some(ctl) = &self.ctl else {
            return false;
        };
        *self.memory_report.get_or_init(|| {
            let mut seen = false;
            while fdpass::wait_readable(ctl.as_fd(), Some(Instant::now())).unwrap_or(false) {
                match fdpass::recv_frame(ctl.as_fd(), None, MAX_FRAME) {
                    Ok(Some((bytes, _))) => {
                        seen |= matches!(
                            codec::decode::<Outcome>(&bytes, Vec::new()),
                            Ok(Outcome::OutOfMemory)
                        );
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            seen
        })
    }

    /// The child's record, once started (a pool signals its workers from
    /// another thread than the one that joins them).
    pub(crate) fn child(&self) -> Option<Arc<Child>> {
        self.child.clone()
    }

    fn started(&self) -> Result<&Arc<Child>> {
        self.child
            .as_ref()
            .ok_or(Error::InvalidState("process not started"))
    }

    /// Waits for the child to end.
    pub fn join(&mut self) -> Result<()> {
        self.started()?
            .wait(None)
            .map_err(Error::io("waiting for a child"))?;
        Ok(())
    }

    /// Waits at most `timeout` for the child to end; `true` if it did. A zero
    /// timeout only polls.
    #[doc(alias = "join")]
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        let code = self
            .started()?
            .wait(Some(deadline))
            .map_err(Error::io("waiting for a child"))?;
        Ok(code.is_some())
    }

    /// Waits for the child to end without blocking a thread (feature
    /// `tokio`): the future sleeps on the child's sentinel (a pidfd, or the
    /// fork server's status socket) in the runtime's reactor. Cancel-safe:
    /// dropping it before the end changes nothing, and a later `join`
    /// or `join_async` waits again.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> mproc::Result<()> {
    /// fn nap(ms: u64) {
    ///     std::thread::sleep(std::time::Duration::from_millis(ms));
    /// }
    ///
    /// let mut p = mproc::Process::new(nap, 10);
    /// p.start()?;
    /// p.join_async().await?;
    /// assert_eq!(p.exitcode(), Some(0));
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn join_async(&mut self) -> Result<()> {
        let child = self.started()?;
        if child.known_code().is_some() {
            return Ok(());
        }
        let ready = crate::aio::Readiness::new(child.sentinel())?;
        std::future::poll_fn(|cx| ready.poll_until(cx, || child.try_wait_ended())).await
    }

    /// Whether the child has been started and has not ended.
    pub fn is_alive(&self) -> bool {
        self.child
            .as_ref()
            .is_some_and(|c| matches!(c.try_code(), Ok(None)))
    }

    /// The child's pid, once started.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.pid)
    }

    /// `None` while running (or not started); then `0` for a return, `n` for
    /// `exit(n)`, `1` for a panic, `-N` for signal N.
    pub fn exitcode(&self) -> Option<i32> {
        self.child
            .as_ref()
            .and_then(|c| c.try_code().ok().flatten())
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) -> Result<()> {
        self.started()?
            .signal(libc::SIGTERM)
            .map_err(Error::io("cannot signal a child"))
    }

    /// Sends SIGKILL.
    pub fn kill(&self) -> Result<()> {
        self.started()?
            .signal(libc::SIGKILL)
            .map_err(Error::io("cannot signal a child"))
    }

    /// Sends SIGINT.
    pub fn interrupt(&self) -> Result<()> {
        self.started()?
            .signal(libc::SIGINT)
            .map_err(Error::io("cannot signal a child"))
    }

    /// A descriptor that becomes readable when the child ends, for
    /// [`wait`](crate::wait) and for your own `poll`.
    pub fn sentinel(&self) -> Result<BorrowedFd<'_>> {
        Ok(self.started()?.sentinel())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            c.detach();
        }
    }
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match (&self.child, self.exitcode()) {
            (None, _) => "initial".to_string(),
            (Some(_), None) => "started".to_string(),
            (Some(_), Some(c)) => format!("stopped exitcode={c}"),
        };
        write!(
            f,
            "<Process name={:?} pid={:?} {state}",
            self.name,
            self.pid()
        )?;
        if self.daemon {
            f.write_str(" daemon")?;
        }
        f.write_str(">")
    }
}

/// The children that are still running; finished ones are reaped.
///
/// ```
/// assert!(mproc::active_children().is_empty());
/// ```
pub fn active_children() -> Vec<ProcessInfo> {
    child::active().iter().map(|c| c.info.clone()).collect()
}

#[cfg(test)]
mod tests {
    fn triple(x: i64) -> i64 {
        3 * x
    }

    /// The bootstrap works inside the library's own unit-test binary too.
    #[test]
    fn children_run_in_unit_tests_under_every_method() {
        crate::set_fork_warning(false);
        for m in crate::all_start_methods() {
            let h = crate::get_context(Some(m)).spawn(triple, 14).unwrap();
            assert_eq!(h.join().unwrap(), 42, "{m}");
        }
    }
}
