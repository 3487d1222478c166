//! Whole process trees: a child leads a process group of its own, so that
//! `terminate` and `kill` take what it started (a `sleep` here) with it,
//! under every start method; `process_group(false)` keeps it in ours.

mod common;
mod grandchild;

use std::time::Duration;

use common::GENEROUS;
use grandchild::{ends_within, sleep_and_wait, watch, Tag};
use mproc::{Process, Queue, StartMethod};

fn sleeper((tag, sent): (String, Queue<i32>)) {
    sleep_and_wait(&tag, &sent);
}

/// Starts a child that starts a tagged `sleep`, stops the child with
/// `stop`, and checks that the `sleep` ended with it.
fn stopping_takes_the_tree(method: StartMethod, stop: fn(&Process) -> mproc::Result<()>) {
    let _g = common::shared();
    let tag = Tag::new();
    let sent = Queue::new().unwrap();
    let mut p = Process::new(sleeper, (tag.0.clone(), sent.clone())).start_method(method);
    p.start().unwrap();
    let pid = sent.get_timeout(GENEROUS).expect("the sleep started");
    let sleep = watch(pid, &tag);
    stop(&p).unwrap();
    assert!(p.join_timeout(GENEROUS).unwrap(), "the child ended");
    assert!(
        ends_within(&sleep, GENEROUS),
        "{method}: the grandchild outlived its stopped parent"
    );
    assert_eq!(tag.bearers(), Vec::<i32>::new(), "{method}");
}

#[test]
fn terminate_takes_the_tree_fork() {
    stopping_takes_the_tree(StartMethod::Fork, Process::terminate);
}

#[test]
fn terminate_takes_the_tree_spawn() {
    stopping_takes_the_tree(StartMethod::Spawn, Process::terminate);
}

#[test]
fn terminate_takes_the_tree_forkserver() {
    stopping_takes_the_tree(StartMethod::ForkServer, Process::terminate);
}

#[test]
fn kill_takes_the_tree_fork() {
    stopping_takes_the_tree(StartMethod::Fork, Process::kill);
}

#[test]
fn kill_takes_the_tree_spawn() {
    stopping_takes_the_tree(StartMethod::Spawn, Process::kill);
}

#[test]
fn kill_takes_the_tree_forkserver() {
    stopping_takes_the_tree(StartMethod::ForkServer, Process::kill);
}

/// `spawn`'s handle takes the tree too.
#[test]
fn a_join_handle_kills_the_tree() {
    let _g = common::shared();
    for method in mproc::all_start_methods() {
        let tag = Tag::new();
        let sent = Queue::new().unwrap();
        let ctx = mproc::get_context(Some(method));
        let mut h = ctx.spawn(sleeper, (tag.0.clone(), sent.clone())).unwrap();
        let pid = sent.get_timeout(GENEROUS).expect("the sleep started");
        let sleep = watch(pid, &tag);
        h.kill().unwrap();
        assert!(matches!(
            h.join_timeout(GENEROUS),
            Err(mproc::Error::Signaled { signal: 9, .. })
        ));
        assert!(ends_within(&sleep, GENEROUS), "{method}");
    }
}

fn groups(_: ()) -> (i32, i32) {
    // SAFETY: plain queries of this process's ids.
    unsafe { (libc::getpid(), libc::getpgid(0)) }
}

/// Each child leads its own group from the start; with `process_group(false)`
/// it stays in ours.
#[test]
fn a_child_leads_its_own_group_unless_told() {
    let _g = common::shared();
    // SAFETY: a plain query of this process's group.
    let ours = unsafe { libc::getpgid(0) };
    for method in mproc::all_start_methods() {
        let ctx = mproc::get_context(Some(method));
        let (pid, group) = ctx.spawn(groups, ()).unwrap().join().unwrap();
        assert_eq!(group, pid, "{method}: leads its own group");
        let mut q = Process::new(report_group, ours)
            .start_method(method)
            .process_group(false);
        q.start().unwrap();
        q.join().unwrap();
        assert_eq!(
            q.exitcode(),
            Some(0),
            "{method}: stays in the parent's group"
        );
    }
}

/// Exits 0 if this process is in group `expected`, 1 if not.
fn report_group(expected: i32) {
    // SAFETY: a plain query of this process's group.
    let group = unsafe { libc::getpgid(0) };
    std::process::exit(i32::from(group != expected));
}

/// Out of its group, a child is reached by `terminate` alone: what it
/// started is left (and killed here by its tag).
#[test]
fn without_a_group_of_its_own_the_grandchild_is_not_reached() {
    let _g = common::shared();
    let tag = Tag::new();
    let sent = Queue::new().unwrap();
    let mut p = Process::new(sleeper, (tag.0.clone(), sent.clone()))
        .start_method(StartMethod::ForkServer)
        .process_group(false);
    p.start().unwrap();
    let pid = sent.get_timeout(GENEROUS).expect("the sleep started");
    let sleep = watch(pid, &tag);
    p.kill().unwrap();
    assert!(p.join_timeout(GENEROUS).unwrap());
    assert!(!ends_within(&sleep, Duration::from_millis(200)));
    assert_eq!(tag.bearers(), vec![pid]);
}
