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

/// Each part of the state changed alone between two starts reaches the
/// second child (and only that part differs from the server's), and
/// changed back, the next child has the server's again: a part that did
/// not change since the server started is not sent, one that did is.
#[test]
fn each_part_changed_alone_between_two_starts_is_seen() {
    let _g = common::exclusive();
    let start = in_child();
    assert_eq!(start, state(()));

    // The umask alone.
    let old_umask = set_umask(0o077);
    let child = in_child();
    set_umask(old_umask);
    assert_eq!(child.umask, 0o077);
    assert_eq!(
        State {
            umask: start.umask,
            ..child
        },
        start
    );
    assert_eq!(in_child(), start);

    // One limit alone (the soft limit of open files, lowered).
    let old_nofile = limit(Resource::Nofile);
    let nofile = (old_nofile.0.saturating_sub(7).min(300), old_nofile.1);
    assert!(set_limit(Resource::Nofile, nofile));
    let child = in_child();
    assert!(set_limit(Resource::Nofile, old_nofile));
    assert_eq!(child.nofile, nofile);
    assert_eq!(
        State {
            nofile: start.nofile,
            ..child
        },
        start
    );
    assert_eq!(in_child(), start);

    // The current directory alone, then back.
    let dir = std::env::temp_dir().join(format!("mproc-alone-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let old_cwd = std::env::current_dir().unwrap();
    std::env::set_current_dir(&dir).unwrap();
    let child = in_child();
    std::env::set_current_dir(&old_cwd).unwrap();
    std::fs::remove_dir(&dir).unwrap();
    assert_eq!(child.cwd, dir);
    assert_eq!(
        State {
            cwd: start.cwd.clone(),
            dir: start.dir,
            ..child
        },
        start
    );
    assert_eq!(in_child(), start);

    // Many starts with nothing changed: every child has the same state.
    for _ in 0..20 {
        assert_eq!(in_child(), start);
    }
}

fn bind_mounted_cwd(_: ()) -> Result<(PathBuf, PathBuf), String> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let fail = |what: &str| Err(format!("{what}: {}", std::io::Error::last_os_error()));
    let none = std::ptr::null();
    // SAFETY: a new mount namespace for this single-threaded child only,
    // its mounts made private; the strings are NUL-terminated.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return fail("unshare(CLONE_NEWNS)");
        }
        let flags = libc::MS_REC | libc::MS_PRIVATE;
        if libc::mount(none, c"/".as_ptr(), none, flags, none.cast()) != 0 {
            return fail("private mounts");
        }
    }
    let base = std::env::temp_dir().join(format!("mproc-bind-{}", std::process::id()));
    let (here, there) = (base.join("here"), base.join("there"));
    std::fs::create_dir_all(&here).unwrap();
    std::fs::create_dir_all(&there).unwrap();
    std::env::set_current_dir(&here).unwrap();
    // The server starts in `here`.
    let first = in_child().cwd;
    let c = |p: &PathBuf| CString::new(p.as_os_str().as_bytes()).unwrap();
    let (from, to) = (c(&here), c(&there));
    // SAFETY: NUL-terminated paths; a bind mount in our own namespace.
    if unsafe { libc::mount(from.as_ptr(), to.as_ptr(), none, libc::MS_BIND, none.cast()) } != 0 {
        return fail("bind mount");
    }
    // The same directory (device and inode), on another mount.
    std::env::set_current_dir(&there).unwrap();
    let second = in_child().cwd;
    std::env::set_current_dir("/").unwrap();
    // SAFETY: a NUL-terminated path, mounted above.
    unsafe { libc::umount2(to.as_ptr(), libc::MNT_DETACH) };
    let _ = std::fs::remove_dir(&here);
    let _ = std::fs::remove_dir(&there);
    let _ = std::fs::remove_dir(&base);
    Ok((first, second))
}

/// The same directory through a bind mount is another current directory
/// (its path and `..` differ): the child is where its parent is.
#[test]
fn a_bind_mount_of_the_servers_directory_is_another_directory() {
    let _g = common::exclusive();
    let ctx = mproc::get_context(Some(StartMethod::Spawn));
    match ctx.spawn(bind_mounted_cwd, ()).unwrap().join().unwrap() {
        Ok((first, second)) => {
            assert!(first.ends_with("here"), "{first:?}");
            assert!(second.ends_with("there"), "{second:?}");
        }
        Err(e) => println!("no private mount namespace here ({e}): skipped"),
    }
}
