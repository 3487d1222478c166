//! Who a process is: its name, pid and place in the tree, and the record of
//! who *this* process is.
//!
//! Plain data under every layer that starts or runs a child: the task
//! header carries a [`ProcessInfo`], the bootstrap records it, the child
//! registry keeps one per child. It imports only `sys/`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::sys::proc;

/// A process as `current_process()`, `parent_process()` and
/// `active_children()` describe it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessInfo {
    pub(crate) name: String,
    pub(crate) pid: i32,
    pub(crate) identity: Vec<u32>,
    pub(crate) daemon: bool,
}

impl ProcessInfo {
    /// The process's name (`"MainProcess"`, `"Process-1"`, `"Process-1:2"`
    /// or the name it was given).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether the process is a daemon (killed when its parent exits).
    pub fn daemon(&self) -> bool {
        self.daemon
    }

    /// The hierarchical identity: `[]` for the main process, `[1]` for its
    /// first child, `[1, 2]` for that child's second child.
    pub fn identity(&self) -> &[u32] {
        &self.identity
    }

    /// Whether the process is still running.
    pub fn is_alive(&self) -> bool {
        proc::kill(self.pid, 0).is_ok()
    }
}

pub(crate) struct Me {
    info: Option<ProcessInfo>,
    parent: Option<ProcessInfo>,
}

static ME: Mutex<Me> = Mutex::new(Me {
    info: None,
    parent: None,
});
static CHILDREN_MADE: AtomicU32 = AtomicU32::new(0);

fn me() -> MeGuard {
    ME.lock().unwrap_or_else(|e| e.into_inner())
}

/// The record of who this process is, locked (across a `fork`).
pub(crate) type MeGuard = std::sync::MutexGuard<'static, Me>;

/// Locks the record before a fork, so that no other thread holds it then.
pub(crate) fn lock_for_fork() -> MeGuard {
    me()
}

fn main_process() -> ProcessInfo {
    ProcessInfo {
        name: "MainProcess".into(),
        pid: 0,
        identity: Vec::new(),
        daemon: false,
    }
}

/// The calling process.
///
/// ```
/// let me = mproc::current_process();
/// assert_eq!(me.name(), "MainProcess");
/// assert_eq!(me.pid(), std::process::id() as i32);
/// ```
pub fn current_process() -> ProcessInfo {
    let mut info = me().info.clone().unwrap_or_else(main_process);
    info.pid = proc::getpid();
    info
}

/// The process that started this one, or `None` in the main process.
///
/// ```
/// assert!(mproc::parent_process().is_none());
/// ```
pub fn parent_process() -> Option<ProcessInfo> {
    me().parent.clone()
}

/// Records who this process is (in a child, before its task runs).
pub(crate) fn set_current(info: ProcessInfo, parent: Option<ProcessInfo>) {
    set_current_locked(&mut me(), info, parent);
}

fn set_current_locked(m: &mut Me, info: ProcessInfo, parent: Option<ProcessInfo>) {
    m.info = Some(info);
    m.parent = parent;
    CHILDREN_MADE.store(0, Ordering::SeqCst);
}

/// In a freshly forked child, with the record locked across the fork: the
/// parent (pid `parent`) becomes the parent, `info` the current process.
pub(crate) fn become_forked_child(mut m: MeGuard, info: ProcessInfo, parent: i32) {
    let mut parent_info = m.info.clone().unwrap_or_else(main_process);
    parent_info.pid = parent;
    set_current_locked(&mut m, info, Some(parent_info));
}

/// The identity and default name of the next child of this process.
pub(crate) fn next_child_identity() -> (Vec<u32>, String) {
    let mut identity = current_process().identity;
    identity.push(CHILDREN_MADE.fetch_add(1, Ordering::SeqCst) + 1);
    let digits: Vec<String> = identity.iter().map(u32::to_string).collect();
    let name = format!("Process-{}", digits.join(":"));
    (identity, name)
}

/// The number of CPUs this process may use: its affinity mask, capped by a
/// cgroup CPU quota (unlike Python's `cpu_count()`, which counts the host's).
///
/// ```
/// assert!(mproc::cpu_count() >= 1);
/// ```
pub fn cpu_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
