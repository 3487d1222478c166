//! What a `ForkServer` child inherits is its parent's state at the start,
//! not the state the parent had when the server started: environment,
//! current directory, umask, resource limits. Its own binary with one
//! test: the test changes process-wide state.

mod common;

use std::path::PathBuf;

use mproc::StartMethod;
use serde::{Deserialize, Serialize};

/// What a process sees of the state a child must inherit.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct State {
    var: Option<String>,
    cwd: PathBuf,
    umask: u32,
    nofile: (u64, u64),
}

fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .unwrap();
    u32::from_str_radix(line.trim(), 8).unwrap()
}

fn nofile() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit to fill.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    (lim.rlim_cur, lim.rlim_max)
}

fn set_nofile((soft, hard): (u64, u64)) {
    let lim = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    // SAFETY: `lim` is a valid rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

fn set_umask(mask: u32) -> u32 {
    // SAFETY: `umask` has no memory-safety preconditions.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

fn state(_: ()) -> State {
    State {
        var: std::env::var("MPROC_STATE_TEST").ok(),
        cwd: std::env::current_dir().unwrap(),
        umask: umask(),
        nofile: nofile(),
    }
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
    let old_nofile = nofile();
    std::env::set_var("MPROC_STATE_TEST", "seen");
    std::env::set_current_dir(&dir).unwrap();
    let old_umask = set_umask(0o027);
    set_nofile((old_nofile.0.saturating_sub(1).min(200), old_nofile.1));

    let changed = state(());
    let child = in_child();

    std::env::remove_var("MPROC_STATE_TEST");
    std::env::set_current_dir(&old_cwd).unwrap();
    set_umask(old_umask);
    set_nofile(old_nofile);
    std::fs::remove_dir(&dir).unwrap();

    assert_eq!(changed.var.as_deref(), Some("seen"));
    assert_eq!(changed.umask, 0o027);
    assert_eq!(child, changed);
    // And back: the next child has the restored state.
    assert_eq!(in_child(), before);
}
