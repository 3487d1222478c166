//! `spawn` and `fork`, whose `JoinHandle` returns the child's value.

use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::payload::{ClosureTask, FnTask, RawFrame};
use super::Process;
use crate::child::Child;
use crate::codec;
use crate::error::{Error, Result};
use crate::limits::{Limits, Resources};
use crate::start::{Payload, StartMethod};
use crate::sys::fdpass;
use crate::task::{Outcome, MAX_FRAME};

/// Runs `f(args)` in a new child process and returns a handle to its
/// result, like `std::thread::spawn`. Uses the default start method.
///
/// ```
/// fn sum_up_to(n: u64) -> u64 {
///     (1..=n).sum()
/// }
///
/// let total = mproc::spawn(sum_up_to, 100)?.join()?;
/// assert_eq!(total, 5050);
/// # Ok::<(), mproc::Error>(())
/// ```
///
/// A capturing closure does not compile: it cannot travel to a clean child.
///
/// ```compile_fail
/// let offset = 10u64;
/// let h = mproc::spawn(move |x: u64| x + offset, 1);
/// ```
///
/// # Dropping
///
/// Dropping the handle detaches the child: it runs on and is reaped in the
/// background when it ends (never left a zombie); its value is discarded.
pub fn spawn<A, R>(f: fn(A) -> R, args: A) -> Result<JoinHandle<R>>
where
    A: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    spawn_with(crate::get_start_method(), Limits::new(), f, args)
}

pub(crate) fn spawn_with<A, R>(
    method: StartMethod,
    limits: Limits,
    f: fn(A) -> R,
    args: A,
) -> Result<JoinHandle<R>>
where
    A: Serialize + DeserializeOwned + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    JoinHandle::start(Box::new(FnTask { f, args }), method, limits)
}

/// Forks the calling process and runs any closure in the child (the `Fork`
/// start method whatever the default). The closure may capture anything:
/// the child is a copy of the parent.
///
/// ```
/// let data = vec![1, 2, 3];
/// let h = mproc::fork(move || data.iter().sum::<i32>())?;
/// assert_eq!(h.join()?, 6);
/// # Ok::<(), mproc::Error>(())
/// ```
///
/// See [`StartMethod::Fork`] for the hazard of forking a multi-threaded
/// process.
pub fn fork<F, R>(f: F) -> Result<JoinHandle<R>>
where
    F: FnOnce() -> R + Send + 'static,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    JoinHandle::start(Box::new(ClosureTask(f)), StartMethod::Fork, Limits::new())
}

/// Starts a child whose first frame is `bytes` followed by end of file (for
/// tests of a child's refusal of garbage).
#[doc(hidden)]
pub fn __start_with_raw_first_frame(method: StartMethod, bytes: Vec<u8>) -> Result<JoinHandle<()>> {
    JoinHandle::start(Box::new(RawFrame(bytes)), method, Limits::new())
}

/// An owned permission to join a child and take its value.
pub struct JoinHandle<R> {
    process: Process,
    ctl: OwnedFd,
    taken: bool,
    /// What the control socket brought, kept until the child has ended
    /// (a timed join may see the value before the end).
    report: Option<Report>,
    _result: PhantomData<fn() -> R>,
}

/// The child's report on its control socket.
enum Report {
    /// An encoded `Outcome` and the descriptors that came with it.
    Frame(Vec<u8>, Vec<OwnedFd>),
    /// End of file (or a broken frame): the child ended without a word.
    Nothing,
}

impl<R: DeserializeOwned> JoinHandle<R> {
    fn start(payload: Box<dyn Payload>, method: StartMethod, limits: Limits) -> Result<Self> {
        let mut process = Process::with_payload(payload)
            .start_method(method)
            .limits(limits);
        let ctl = process.start_wanting(true)?;
        Ok(JoinHandle {
            process,
            ctl,
            taken: false,
            report: None,
            _result: PhantomData,
        })
    }

    /// Waits for the child and returns its value, or why there is none:
    /// [`Error::Panicked`] (with message and location), [`Error::Exited`]
    /// (it called `exit`), [`Error::Signaled`] (killed), or the child's
    /// refusal to start ([`Error::BinaryMismatch`], [`Error::Bootstrap`]),
    /// or [`Error::LimitExceeded`] (one of its [`Limits`] ended it).
    pub fn join(mut self) -> Result<R> {
        self.wait_result(None)
    }

    /// As [`join`](JoinHandle::join), waiting at most `timeout`:
    /// [`Error::Timeout`] leaves the handle usable.
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<R> {
        self.wait_result(Some(Instant::now() + timeout))
    }

    /// Whether the child has ended.
    pub fn is_finished(&self) -> bool {
        !self.process.is_alive()
    }

    /// The child's pid.
    pub fn pid(&self) -> i32 {
        self.process
            .pid()
            .expect("a JoinHandle's process is started")
    }

    /// The child's exit code, once it ended (see [`Process::exitcode`]).
    pub fn exitcode(&self) -> Option<i32> {
        self.process.exitcode()
    }

    /// What the child used, once it ended and was reaped (after a
    /// [`join_timeout`](JoinHandle::join_timeout) that returned, or
    /// [`is_finished`](JoinHandle::is_finished) seen `true`); see
    /// [`Process::resources`].
    pub fn resources(&self) -> Option<Resources> {
        self.process.resources()
    }

    /// Sends SIGTERM to the child.
    pub fn terminate(&self) -> Result<()> {
        self.process.terminate()
    }

    /// Sends SIGKILL to the child.
    pub fn kill(&self) -> Result<()> {
        self.process.kill()
    }

    /// A descriptor readable once the child ended (see [`crate::wait`]).
    pub fn sentinel(&self) -> BorrowedFd<'_> {
        self.child().sentinel()
    }

    fn child(&self) -> &Arc<Child> {
        self.process
            .child
            .as_ref()
            .expect("a JoinHandle's process is started")
    }

    fn wait_result(&mut self, deadline: Option<Instant>) -> Result<R> {
        if self.taken {
            return Err(Error::InvalidState("the result was already taken"));
        }
        let pid = self.pid();
        while self.report.is_none() {
            let fds = [self.ctl.as_fd(), self.child().sentinel()];
            let ready =
                fdpass::wait_any(&fds, deadline).map_err(Error::io("waiting for a child"))?;
            if ready.is_empty() {
                return Err(Error::Timeout);
            }
            if ready.contains(&0) {
                // The child writes its outcome when its task ends: read it
                // whole.
                self.report = Some(
                    match fdpass::recv_frame(self.ctl.as_fd(), None, MAX_FRAME) {
                        Ok(Some((bytes, fds))) => Report::Frame(bytes, fds),
                        Ok(None) | Err(_) => Report::Nothing,
                    },
                );
                break;
            }
            let code = self
                .child()
                .try_code()
                .map_err(Error::io("waiting for a child"))?;
            if code.is_some()
                && !fdpass::wait_readable(self.ctl.as_fd(), Some(Instant::now())).unwrap_or(false)
            {
                self.report = Some(Report::Nothing);
            }
        }
        // The child may outlive its report (it joins its own children):
        // wait for its end within the same deadline, keeping the report.
        let ended = self
            .child()
            .wait(deadline)
            .map_err(Error::io("waiting for a child"))?;
        if ended.is_none() {
            return Err(Error::Timeout);
        }
        self.taken = true;
        match self.report.take() {
            Some(Report::Frame(bytes, fds)) => self.decode(pid, &bytes, fds),
            _ => Err(self.died(pid, false)),
        }
    }

    /// As [`join`](JoinHandle::join), without blocking a thread (feature
    /// `tokio`): waits in the runtime's reactor for the child's report (on
    /// its control socket) or its end (its sentinel), whichever comes
    /// first, as `join` does: a large value is read as soon as the child
    /// starts writing it, so a child blocked on a full socket is never
    /// waited for. The same errors as `join`: [`Error::Panicked`],
    /// [`Error::Exited`], [`Error::Signaled`], [`Error::BinaryMismatch`],
    /// [`Error::Bootstrap`]. `handle.await` (through [`IntoFuture`](std::future::IntoFuture)) is the
    /// same future.
    ///
    /// Once the child has begun to write its value, the rest is read with
    /// the task's thread waiting for the child's writes (a fraction of a
    /// millisecond for a large value; the child is running).
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: the future owns the handle, so dropping it before
    /// it completes detaches the child as dropping the handle does (it runs
    /// on, is reaped in the background, and its value is lost). Bound the
    /// wait on a handle you keep with [`join_timeout`](JoinHandle::join_timeout)
    /// in `spawn_blocking`, or race it without dropping it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> mproc::Result<()> {
    /// fn square(x: u64) -> u64 {
    ///     x * x
    /// }
    ///
    /// let h = mproc::spawn(square, 12)?;
    /// assert_eq!(h.join_async().await?, 144);
    /// assert_eq!(mproc::spawn(square, 3)?.await?, 9);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tokio")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
    pub async fn join_async(mut self) -> Result<R> {
        use crate::aio::Readiness;
        use std::task::Poll;

        if self.taken {
            return Err(Error::InvalidState("the result was already taken"));
        }
        let pid = self.pid();
        let sentinel = Readiness::new(self.child().sentinel())?;
        if self.report.is_none() {
            let ctl = Readiness::new(self.ctl.as_fd())?;
            let (fd, child) = (self.ctl.as_fd(), self.child().clone());
            let report = std::future::poll_fn(|cx| {
                if let Poll::Ready(r) = ctl.poll_until(cx, || try_report(fd)) {
                    return Poll::Ready(r);
                }
                sentinel.poll_until(cx, || try_report_at_end(fd, &child))
            })
            .await?;
            self.report = Some(report);
        }
        // The child may outlive its report (it joins its own children).
        let child = self.child().clone();
        std::future::poll_fn(|cx| sentinel.poll_until(cx, || child.try_wait_ended())).await?;
        self.taken = true;
        match self.report.take() {
            Some(Report::Frame(bytes, fds)) => self.decode(pid, &bytes, fds),
            _ => Err(self.died(pid, false)),
        }
    }

    fn decode(&self, pid: i32, bytes: &[u8], fds: Vec<OwnedFd>) -> Result<R> {
        match codec::decode::<Outcome>(bytes, Vec::new())? {
            Outcome::Returned(value) => codec::decode(&value, fds),
            Outcome::OutOfMemory => Err(self.died(pid, true)),
            other => Err(other.into_error(pid)),
        }
    }

    /// The error for a child that ended without reporting an outcome
    /// (`memory_report`: but with its abort report): a limit it exceeded,
    /// or how it ended.
    fn died(&self, pid: i32, memory_report: bool) -> Error {
        let child = self.child();
        if let Some(code) = child.known_code() {
            let limits = self.process.get_limits();
            if let Some((limit, cap)) =
                limits.exceeded(code, child.resources().as_ref(), memory_report)
            {
                return Error::LimitExceeded {
                    pid,
                    limit,
                    cap,
                    code,
                };
            }
        }
        match child.known_code() {
            Some(signal) if signal < 0 => Error::Signaled {
                pid,
                signal: -signal,
            },
            Some(code) => Error::Exited { pid, code },
            None => Error::InvalidState("child state unknown"),
        }
    }
}

/// The child's report if its control socket has something (never waits
/// for a first byte; reads a begun frame whole).
#[cfg(feature = "tokio")]
fn try_report(ctl: BorrowedFd<'_>) -> Result<Option<Report>> {
    let now = Some(Instant::now());
    if !fdpass::wait_readable(ctl, now).map_err(Error::io("waiting for a child"))? {
        return Ok(None);
    }
    Ok(Some(match fdpass::recv_frame(ctl, None, MAX_FRAME) {
        Ok(Some((bytes, fds))) => Report::Frame(bytes, fds),
        Ok(None) | Err(_) => Report::Nothing,
    }))
}

/// After the sentinel turned readable: once the child really ended,
/// whatever its control socket holds (everything it wrote is there).
#[cfg(feature = "tokio")]
fn try_report_at_end(ctl: BorrowedFd<'_>, child: &Child) -> Result<Option<Report>> {
    if child.try_wait_ended()?.is_none() {
        return Ok(None);
    }
    Ok(Some(try_report(ctl)?.unwrap_or(Report::Nothing)))
}

/// `handle.await`: [`JoinHandle::join_async`] (feature `tokio`).
#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
impl<R> std::future::IntoFuture for JoinHandle<R>
where
    R: DeserializeOwned + Send + 'static,
{
    type Output = Result<R>;
    type IntoFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Result<R>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.join_async())
    }
}

impl<R> std::fmt::Debug for JoinHandle<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinHandle")
            .field("process", &self.process)
            .finish()
    }
}
