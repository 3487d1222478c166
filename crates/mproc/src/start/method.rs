//! The start methods, and the process-wide default (Python's
//! `get_start_method`/`set_start_method`).

use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use crate::error::{Error, Result};

/// How a child process is started.
///
/// | method | how | cost | runs |
/// |---|---|---|---|
/// | [`Fork`](StartMethod::Fork) | `fork()` of the caller | lowest | any `FnOnce` closure; the caller's memory is inherited |
/// | [`Spawn`](StartMethod::Spawn) | exec of `/proc/self/exe` | highest | a `fn(A) -> R` in a clean process |
/// | [`ForkServer`](StartMethod::ForkServer) | `fork()` of a clean server started once by spawn | low | a `fn(A) -> R` in a clean process |
///
/// The default is `ForkServer`: clean like `Spawn`, nearly as fast as
/// `Fork`. `Fork` is only safe while the caller has a single thread: a lock
/// held by another thread at the moment of the fork stays locked in the
/// child forever (see [`set_fork_warning`](crate::set_fork_warning)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StartMethod {
    /// Fork the calling process.
    Fork,
    /// Execute a fresh copy of the program.
    Spawn,
    /// Ask a fork server (started once by spawn) to fork a clean child.
    ///
    /// The server starts with the first such child and serves every later
    /// one, so each start sends what a child must take from its parent *as
    /// the parent is then*, and the child takes it on before its task runs:
    ///
    /// - the whole environment (as [`std::env::vars_os`] shows it);
    /// - the current directory: the directory itself, sent as a descriptor,
    ///   so that a path too long to send or a removed directory still works;
    /// - the umask;
    /// - every resource limit (`RLIMIT_*`). A limit lowered is applied as
    ///   it is, a hard limit lowered included; one raised beyond what the
    ///   server's own hard limit allows (a privilege the child lacks) is
    ///   raised as far as allowed.
    ///
    /// It does not inherit, unlike a [`Fork`](StartMethod::Fork) child:
    ///
    /// - the parent's memory (statics, heap, locks) or threads: it starts
    ///   from the clean server, as a [`Spawn`](StartMethod::Spawn) child;
    /// - descriptors, but for those that travel in its arguments;
    /// - signal dispositions and the signal mask: the server's, as set when
    ///   it started (SIGINT at its default, nothing blocked by mproc);
    /// - what the server took from the parent once, at its own start, and
    ///   keeps: standard input, output and error, credentials (user,
    ///   groups, capabilities), namespaces, cgroup, root directory,
    ///   scheduling priority and CPU affinity. A parent that changes these
    ///   after its first `ForkServer` child and wants its children to
    ///   follow uses `Spawn`.
    ///
    /// ```
    /// use mproc::StartMethod;
    ///
    /// fn var(name: String) -> Option<String> {
    ///     std::env::var(name).ok()
    /// }
    ///
    /// let ctx = mproc::get_context(Some(StartMethod::ForkServer));
    /// ctx.spawn(var, "HOME".to_string())?.join()?; // the server runs now
    /// std::env::set_var("MPROC_DOC_EXAMPLE", "later");
    /// let seen = ctx.spawn(var, "MPROC_DOC_EXAMPLE".to_string())?.join()?;
    /// assert_eq!(seen.as_deref(), Some("later"));
    /// # Ok::<(), mproc::Error>(())
    /// ```
    ForkServer,
}

impl StartMethod {
    /// Python's name for the method (`"fork"`, `"spawn"`, `"forkserver"`).
    pub fn name(self) -> &'static str {
        match self {
            StartMethod::Fork => "fork",
            StartMethod::Spawn => "spawn",
            StartMethod::ForkServer => "forkserver",
        }
    }
}

impl fmt::Display for StartMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for StartMethod {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        all_start_methods()
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| Error::InvalidArgument(format!("cannot find context for '{s}'")))
    }
}

static DEFAULT: Mutex<Option<StartMethod>> = Mutex::new(None);

/// Locks the default start method across a fork (see `fork::ForkLocks`).
pub(crate) fn lock_for_fork() -> std::sync::MutexGuard<'static, Option<StartMethod>> {
    DEFAULT.lock().unwrap_or_else(|e| e.into_inner())
}

/// The start methods this platform supports, as Python lists them.
///
/// ```
/// assert_eq!(mproc::all_start_methods().len(), 3);
/// ```
pub fn all_start_methods() -> Vec<StartMethod> {
    vec![
        StartMethod::Fork,
        StartMethod::Spawn,
        StartMethod::ForkServer,
    ]
}

/// The default start method; fixes it (to `ForkServer` unless
/// [`set_start_method`] chose another) on first use.
///
/// ```
/// let m = mproc::get_start_method();
/// assert!(mproc::all_start_methods().contains(&m));
/// ```
pub fn get_start_method() -> StartMethod {
    *DEFAULT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert(StartMethod::ForkServer)
}

/// Sets the default start method. As in Python, this fails once the default
/// is fixed (by an earlier call or by first use), unless `force` is true.
///
/// ```
/// use mproc::StartMethod;
/// mproc::set_start_method(StartMethod::Spawn, true)?;
/// assert_eq!(mproc::get_start_method(), StartMethod::Spawn);
/// assert!(mproc::set_start_method(StartMethod::Fork, false).is_err());
/// # Ok::<(), mproc::Error>(())
/// ```
pub fn set_start_method(method: StartMethod, force: bool) -> Result<()> {
    let mut d = DEFAULT.lock().unwrap_or_else(|e| e.into_inner());
    if d.is_some() && !force {
        return Err(Error::InvalidState("context has already been set"));
    }
    *d = Some(method);
    Ok(())
}
