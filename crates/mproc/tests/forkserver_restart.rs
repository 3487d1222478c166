//! The fork server: killed, it is restarted transparently by the next
//! start; its children end (and are reported) when it dies; it dies with
//! its user. Its own binary: killing the server would disturb every other
//! test's fork-server children.

mod common;

use std::time::Duration;

use common::{GENEROUS, LONG};
use mproc::{Connection, Error, Pipe, StartMethod};

fn square(x: u64) -> u64 {
    x * x
}

fn nap(d: Duration) {
    std::thread::sleep(d);
}

fn fork_server() -> mproc::Context {
    mproc::get_context(Some(StartMethod::ForkServer))
}

#[test]
fn a_killed_fork_server_is_restarted_by_the_next_start() {
    let _g = common::exclusive();
    let ctx = fork_server();
    assert_eq!(ctx.spawn(square, 3).unwrap().join().unwrap(), 9);
    let mut killed = Vec::new();
    for round in 0..3u64 {
        let server = mproc::__private::kill_fork_server().expect("a fork server runs");
        assert!(killed.iter().all(|s: &common::Stat| s.pid != server));
        killed.push(common::stat(server).expect("the server is ours until reaped"));
        // The next start finds the server dead, reaps it, starts another.
        assert_eq!(
            ctx.spawn(square, round).unwrap().join().unwrap(),
            round * round
        );
        let mut p = ctx.process(square, 5);
        p.start().unwrap();
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));
    }
    for old in &killed {
        assert!(
            common::reaped(old),
            "killed server {} left: {old:?}",
            old.pid
        );
    }
    assert_eq!(common::zombie_children(), Vec::<i32>::new());
    // One server now runs, and nothing else below us.
    assert_eq!(common::descendant_ids().len(), 1);
}

#[test]
fn children_of_a_killed_server_end_and_are_reported() {
    let _g = common::exclusive();
    let ctx = fork_server();
    let mut p = ctx.process(nap, LONG);
    p.start().unwrap();
    let h = ctx.spawn(nap, LONG).unwrap();
    let child = common::stat(p.pid().unwrap()).unwrap();
    mproc::__private::kill_fork_server().expect("a fork server runs");
    // The children die with their server (their death signal); with the
    // server gone nobody knows their status: 255, as in CPython.
    assert!(
        p.join_timeout(GENEROUS).unwrap(),
        "a child outlived its server"
    );
    assert_eq!(p.exitcode(), Some(255));
    match h.join() {
        Err(Error::Exited { code: 255, .. }) => {}
        other => panic!("expected Exited {{ code: 255 }}, got {other:?}"),
    }
    assert!(common::eventually(GENEROUS, || {
        common::stat(child.pid).is_none_or(|s| s.state == 'Z' || s.start != child.start)
    }));
    // And the next start works.
    assert_eq!(ctx.spawn(square, 4).unwrap().join().unwrap(), 16);
}

/// Starts a fork server (by running a child with it), reports the server's
/// pid, then waits to be killed.
fn start_a_server_then_wait(conn: Connection<i32>) {
    let ctx = fork_server();
    assert_eq!(ctx.spawn(square, 2).unwrap().join().unwrap(), 4);
    let me = std::process::id() as i32;
    let server = common::all_processes()
        .into_iter()
        .find(|s| s.ppid == me)
        .expect("the fork server is this process's only child");
    conn.send(&server.pid).unwrap();
    std::thread::sleep(LONG);
}

#[test]
fn a_fork_server_dies_with_its_user() {
    let _g = common::exclusive();
    let (here, there) = Pipe::new().unwrap();
    let mut user =
        mproc::get_context(Some(StartMethod::Spawn)).process(start_a_server_then_wait, there);
    user.start().unwrap();
    let server_pid = here.recv_timeout(GENEROUS).unwrap();
    let server = common::stat(server_pid).unwrap();
    user.kill().unwrap();
    user.join().unwrap();
    assert_eq!(user.exitcode(), Some(-9));
    // Orphaned, the server is gone (or a zombie of whoever adopted it).
    assert!(
        common::eventually(GENEROUS, || {
            common::stat(server.pid).is_none_or(|s| s.state == 'Z' || s.start != server.start)
        }),
        "the fork server outlived its user: {:?}",
        common::stat(server.pid)
    );
}

/// A child that started its own fork server: its pid, once a grandchild
/// ran through it.
fn start_through_own_server(_: ()) -> i32 {
    assert_eq!(fork_server().spawn(square, 4).unwrap().join().unwrap(), 16);
    mproc::__private::fork_server_pid().expect("the child's own fork server")
}

#[test]
fn a_process_that_ends_stops_and_reaps_its_fork_server() {
    let _g = common::exclusive();
    let ctx = mproc::get_context(Some(StartMethod::Spawn));
    let server = ctx
        .spawn(start_through_own_server, ())
        .unwrap()
        .join()
        .unwrap();
    // The child reaped its server before it exited: no orphan is left for
    // the init process to reap (nor a zombie in the meantime).
    assert!(common::stat(server).is_none(), "{:?}", common::stat(server));
}

#[test]
fn a_garbled_request_is_refused_and_the_server_stays() {
    let _g = common::exclusive();
    let ctx = fork_server();
    assert_eq!(ctx.spawn(square, 2).unwrap().join().unwrap(), 4);
    let server = mproc::__private::fork_server_pid().expect("a fork server runs");
    for garbage in [&b"fork"[..], b"", b"mproc-f2", b"mproc-f3 and more"] {
        match mproc::__private::fork_server_raw_request(garbage, b"") {
            Err(Error::Protocol(_)) => {}
            other => panic!("{garbage:?}: expected a refusal, got {other:?}"),
        }
        assert_eq!(mproc::__private::fork_server_pid(), Some(server));
    }
    // A child whose state frame is garbled refuses to start (and says so
    // on stderr); the server serves on.
    let mut truncated = b"mproc-s2".to_vec();
    truncated.extend_from_slice(&[0xff; 6]);
    for state in [&b""[..], b"fork", &truncated] {
        assert_eq!(
            mproc::__private::fork_server_raw_request(b"mproc-f3", state).unwrap(),
            mproc::BOOTSTRAP_EXIT_CODE
        );
    }
    assert_eq!(ctx.spawn(square, 3).unwrap().join().unwrap(), 9);
    assert_eq!(mproc::__private::fork_server_pid(), Some(server));
    assert_eq!(common::descendant_ids().len(), 1);
}
