//! Events and spans for operators: through `tracing` with the `tracing`
//! feature, nothing at all without it (the macros expand to no code, and
//! their arguments are not evaluated).
//!
//! Levels: `warn` for what an operator should look at (a refused
//! authentication, a worker that died, a retried or timed-out task), `info`
//! for lifecycle steps (a pool terminated, a worker replaced), `debug` for
//! the ordinary flow (a process started, a connection accepted, a task
//! run). Targets are the module paths (`mproc::pool::supervisor`, ...), so
//! `RUST_LOG=mproc=debug` selects them all.
//!
//! Every process reports to its own subscriber: a pool worker's task runs
//! go to whatever subscriber the worker has, which is the parent's for a
//! forked worker (it inherits the parent's memory, subscriber included),
//! none for a spawned or fork-server worker unless its program installs
//! one before `mproc` bootstraps it.
//!
//! With the feature but no subscriber, each site costs one relaxed load
//! (tracing's callsite interest); values that cost something to take (a
//! clock read for a duration) are taken only when the event is enabled.

/// A `debug` event (see the module).
macro_rules! debug_event {
    ($($t:tt)*) => {{
        #[cfg(feature = "tracing")]
        {
            ::tracing::debug!($($t)*);
        }
    }};
}

/// An `info` event (see the module).
macro_rules! info_event {
    ($($t:tt)*) => {{
        #[cfg(feature = "tracing")]
        {
            ::tracing::info!($($t)*);
        }
    }};
}

/// A `warn` event (see the module).
macro_rules! warn_event {
    ($($t:tt)*) => {{
        #[cfg(feature = "tracing")]
        {
            ::tracing::warn!($($t)*);
        }
    }};
}

/// A `debug` span entered until the end of the enclosing scope.
macro_rules! debug_scope {
    ($($t:tt)*) => {
        #[cfg(feature = "tracing")]
        let _entered = ::tracing::debug_span!($($t)*).entered();
    };
}

pub(crate) use {debug_event, debug_scope, info_event, warn_event};

/// A process's end as an operator reads it: `exit code 3`, `signal 9
/// (SIGKILL)`. `code` is an exit code, or minus the signal that ended it
/// (as [`Error::Signaled`](crate::Error::Signaled) reports it).
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) struct Status(pub(crate) i32);

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 >= 0 {
            return write!(f, "exit code {}", self.0);
        }
        let name = match -self.0 {
            libc::SIGHUP => "SIGHUP",
            libc::SIGINT => "SIGINT",
            libc::SIGQUIT => "SIGQUIT",
            libc::SIGILL => "SIGILL",
            libc::SIGTRAP => "SIGTRAP",
            libc::SIGABRT => "SIGABRT",
            libc::SIGBUS => "SIGBUS",
            libc::SIGFPE => "SIGFPE",
            libc::SIGKILL => "SIGKILL",
            libc::SIGUSR1 => "SIGUSR1",
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGUSR2 => "SIGUSR2",
            libc::SIGPIPE => "SIGPIPE",
            libc::SIGALRM => "SIGALRM",
            libc::SIGTERM => "SIGTERM",
            libc::SIGXCPU => "SIGXCPU",
            libc::SIGSYS => "SIGSYS",
            _ => return write!(f, "signal {}", -self.0),
        };
        write!(f, "signal {} ({name})", -self.0)
    }
}

/// One chunk run in a pool worker: a `debug` span (`pid`, `chunk`) entered
/// while it runs, closed by a `debug` event with its duration and outcome
/// (`ok`, `err`: an item's result did not encode or its arguments did not
/// decode, `panic`: an item panicked). Without the feature, or with the
/// span disabled, it is nothing: no clock is read.
pub(crate) struct TaskRun {
    #[cfg(feature = "tracing")]
    on: Option<(tracing::span::EnteredSpan, std::time::Instant, u64)>,
}

impl TaskRun {
    /// Enters the span of chunk `chunk`, run by process `pid`.
    #[inline]
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn begin(pid: u32, chunk: u64) -> TaskRun {
        #[cfg(feature = "tracing")]
        {
            let span = tracing::debug_span!(target: TASK_TARGET, "pool task", pid, chunk);
            if span.is_disabled() {
                return TaskRun { on: None };
            }
            TaskRun {
                on: Some((span.entered(), std::time::Instant::now(), panics())),
            }
        }
        #[cfg(not(feature = "tracing"))]
        TaskRun {}
    }

    /// Ends it; `ok`: whether every item returned a result that encoded.
    #[inline]
    #[cfg_attr(not(feature = "tracing"), allow(unused_variables))]
    pub(crate) fn end(self, ok: bool) {
        #[cfg(feature = "tracing")]
        if let Some((span, began, panics_before)) = self.on {
            let outcome = if ok {
                "ok"
            } else if panics() != panics_before {
                "panic"
            } else {
                "err"
            };
            tracing::debug!(
                target: TASK_TARGET,
                duration_us = began.elapsed().as_micros() as u64,
                outcome,
                "pool task ran"
            );
            drop(span);
        }
    }
}

/// Where task runs are told from: the worker's module, as if written there.
#[cfg(feature = "tracing")]
const TASK_TARGET: &str = "mproc::pool::worker";

#[cfg(feature = "tracing")]
static PANICS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts a panic caught in this process (a pool worker's hook does), so
/// that a [`TaskRun`] can tell a panic from another failure.
#[inline]
pub(crate) fn count_panic() {
    #[cfg(feature = "tracing")]
    PANICS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

#[cfg(feature = "tracing")]
fn panics() -> u64 {
    PANICS.load(std::sync::atomic::Ordering::Relaxed)
}
