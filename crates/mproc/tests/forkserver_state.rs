//! What a `ForkServer` child inherits is its parent's state at the start,
//! not the state the parent had when the server started: environment,
//! current directory, umask, resource limits. Its own binary with one
//! test: the test changes process-wide state.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use mproc::StartMethod;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use serde::{Deserialize, Serialize};

/// What a process sees of the state a child must inherit.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct State {
    var: Option<String>,
    /// The current directory as `/proc` names it (` (deleted)` once
    /// removed) and as the file system knows it (device, inode).
    cwd: PathBuf,
    dir: (u64, u64),
    umask: u32,
    nofile: (u64, u64),
    core: (u64, u64),
}

fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .unwrap();
    u32::from_str_radix(line.trim(), 8).unwrap()
}

fn limit(resource: Resource) -> (u64, u64) {
    let lim = getrlimit(resource);
    let or_none = |v: Option<u64>| v.unwrap_or(u64::MAX);
    (or_none(lim.current), or_none(lim.maximum))
}

fn set_limit(resource: Resource, (soft, hard): (u64, u64)) -> bool {
    let some = |v: u64| (v != u64::MAX).then_some(v);
    let lim = Rlimit {
        current: some(soft),
        maximum: some(hard),
    };
    setrlimit(resource, lim).is_ok()
}

fn set_umask(mask: u32) -> u32 {
    // SAFETY: `umask` has no memory-safety preconditions.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

fn state(_: ()) -> State {
    State {
        var: std::env::var("MPROC_STATE_TEST").ok(),
        cwd: std::fs::read_link("/proc/self/cwd").unwrap(),
        dir: std::fs::metadata(".").map(|m| (m.dev(), m.ino())).unwrap(),
        umask: umask(),
        nofile: limit(Resource::Nofile),
        core: limit(Resource::Core),
    }
}

fn big_var(_: ()) -> Option<usize> {
    std::env::var("MPROC_STATE_BIG").ok().map(|v| v.len())
}

fn in_child() -> State {
    mproc::get_context(Some(StartMethod::ForkServer))
        .spawn(state, ())
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn a_fork_server_child_sees_the_parent_state_of_its_start() {
    let _g = common::exclusive();
    // The server runs (and has the state of this moment) before anything
    // changes.
    let before = in_child();
    assert_eq!(before, state(()));

    let dir = std::env::temp_dir().join(format!("mproc-state-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let old_cwd = std::env::current_dir().unwrap();
    let old_nofile = limit(Resource::Nofile);
    let old_core = limit(Resource::Core);
    std::env::set_var("MPROC_STATE_TEST", "seen");
    std::env::set_current_dir(&dir).unwrap();
    let old_umask = set_umask(0o027);
    let nofile = (old_nofile.0.saturating_sub(1).min(200), old_nofile.1);
    assert!(set_limit(Resource::Nofile, nofile));
    // A hard limit lowered (which only a privileged process could raise
    // again) is applied as it is.
    let core = (old_core.0.min(4096), old_core.1.min(8192));
    assert!(set_limit(Resource::Core, core));

    let changed = state(());
    let child = in_child();

    std::env::remove_var("MPROC_STATE_TEST");
    std::env::set_current_dir(&old_cwd).unwrap();
    set_umask(old_umask);
    assert!(set_limit(Resource::Nofile, old_nofile));
    // Only a privileged process can raise the hard limit again; without
    // the privilege, the comparisons below still hold (the restored soft
    // limit is capped).
    if !set_limit(Resource::Core, old_core) {
        assert!(set_limit(Resource::Core, (core.1, core.1)));
    }
    std::fs::remove_dir(&dir).unwrap();

    assert_eq!(changed.var.as_deref(), Some("seen"));
    assert_eq!(changed.cwd, dir);
    assert_eq!(changed.umask, 0o027);
    assert_eq!((changed.nofile, changed.core), (nofile, core));
    assert_eq!(child, changed);
    // And back: the next child has the restored state.
    assert_eq!(in_child(), state(()));

    // A directory removed while it is the current one: the child is in it
    // too (no path could name it).
    let gone = std::env::temp_dir().join(format!("mproc-gone-{}", std::process::id()));
    std::fs::create_dir_all(&gone).unwrap();
    std::env::set_current_dir(&gone).unwrap();
    std::fs::remove_dir(&gone).unwrap();
    let parent = state(());
    let child = in_child();
    std::env::set_current_dir(&old_cwd).unwrap();
    assert!(
        parent.cwd.to_string_lossy().ends_with(" (deleted)"),
        "{parent:?}"
    );
    assert_eq!(child, parent);

    // An environment larger than a socket buffer holds at once.
    std::env::set_var("MPROC_STATE_BIG", "x".repeat(1 << 20));
    let ctx = mproc::get_context(Some(StartMethod::ForkServer));
    let seen = ctx.spawn(big_var, ()).unwrap().join().unwrap();
    std::env::remove_var("MPROC_STATE_BIG");
    assert_eq!(seen, Some(1 << 20));
}
