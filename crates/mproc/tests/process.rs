//! `Process`, `spawn`/`JoinHandle` and the start methods, with real
//! processes.
//!
//! The behaviours CPython's `Lib/test/_test_multiprocessing.py` checks for
//! processes (`_TestProcess`: exit codes, terminate, kill, recursion,
//! sentinels, active children, daemon restrictions), rewritten in Rust. The
//! suite is written once and run under every start method: `fork::*`,
//! `spawn::*` and `forkserver::*` (see [`per_method!`]).
//!
//! No test sleeps to synchronise: a child may sleep to stay alive, but the
//! test waits on events (join, a pipe, a sentinel) or, where only `/proc`
//! can tell (a zombie disappearing), polls it under a generous deadline.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use common::{Unserialisable, GENEROUS, LONG};
use mproc::{Connection, Error, Pipe, Process, StartMethod};

per_method! {
    args_arrive_exactly
    values_come_back
    process_args_arrive_exactly
    return_gives_exit_code_0
    exit_gives_its_code
    panic_gives_1_and_its_message
    terminate_gives_minus_15
    kill_gives_minus_9
    interrupt_gives_minus_2
    abort_gives_minus_6
    segfault_gives_minus_11
    join_timeout_zero_returns_at_once
    state_before_and_after_start
    invalid_states_are_typed_errors
    terminate_100_just_started
    hundred_children_leave_nothing
    nested_children_run_depth_first
    child_knows_itself_and_its_parent
    daemon_cannot_have_children
    wait_returns_the_finished_one
    active_children_lists_and_reaps
    unserialisable_argument
    unserialisable_result_is_an_encode_error
    dropped_process_is_reaped
    dropped_join_handle_is_reaped
    child_joins_its_children_at_exit
    join_timeout_keeps_its_deadline_once_the_value_came
}

/// The suite above covers every start method there is.
#[test]
fn the_suite_covers_every_start_method() {
    use StartMethod::*;
    assert_eq!(mproc::all_start_methods(), vec![Fork, Spawn, ForkServer]);
}

// ---------------------------------------------------------------------
// Functions the children run.

fn echo<T>(x: T) -> T {
    x
}

fn nap(d: Duration) {
    std::thread::sleep(d);
}

fn nothing(_: ()) {}

fn exit_with(code: i32) {
    std::process::exit(code)
}

fn panic_with(n: u32) {
    panic!("boom {n}")
}

fn abort(_: ()) {
    std::process::abort()
}

fn segfault(_: ()) {
    // Not address 0: debug builds check `write_volatile`'s pointer for null
    // and abort (SIGABRT) before writing. 16 is just as unmapped (the kernel
    // never maps the first page) and passes the check.
    let p = std::ptr::null_mut::<u64>().wrapping_add(2);
    // SAFETY: none; the point is to fault. The write goes to an address no
    // process has mapped, so the child dies of SIGSEGV.
    unsafe { std::ptr::write_volatile(p, 1) }
}

/// Sends its arguments back on the connection.
fn send_back((conn, list, pair): (Connection<Echoed>, Vec<i64>, (u8, String))) {
    conn.send(&Echoed { list, pair }).unwrap();
}

/// Waits for one message, then returns.
fn wait_for_go(conn: Connection<()>) {
    let _ = conn.recv_timeout(LONG);
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Record {
    id: u64,
    name: String,
    scores: Vec<f64>,
    nested: Option<Box<Record>>,
    tag: Tag,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
enum Tag {
    Plain,
    Weighted(f32),
    Named { label: String },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Echoed {
    list: Vec<i64>,
    pair: (u8, String),
}

fn record() -> Record {
    Record {
        id: u64::MAX - 1,
        name: "zoë ✓".into(),
        scores: vec![0.5, -1.25, f64::MAX],
        nested: Some(Box::new(Record {
            id: 0,
            name: String::new(),
            scores: Vec::new(),
            nested: None,
            tag: Tag::Named {
                label: "inner".into(),
            },
        })),
        tag: Tag::Weighted(2.5),
    }
}

fn setup(m: StartMethod) -> (std::sync::RwLockReadGuard<'static, ()>, mproc::Context) {
    (common::shared(), mproc::get_context(Some(m)))
}

fn setup_exclusive(m: StartMethod) -> (std::sync::RwLockWriteGuard<'static, ()>, mproc::Context) {
    (common::exclusive(), mproc::get_context(Some(m)))
}

/// Runs `f(args)` to its end in a `Process` and returns its exit code.
fn exit_code_of<A, R>(ctx: mproc::Context, f: fn(A) -> R, args: A) -> i32
where
    A: Serialize + serde::de::DeserializeOwned + Send + 'static,
    R: Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let mut p = ctx.process(f, args);
    p.start().unwrap();
    p.join().unwrap();
    p.exitcode().expect("joined")
}

// ---------------------------------------------------------------------
// Arguments and results.

fn args_arrive_exactly(m: StartMethod) {
    let (_g, ctx) = setup(m);
    let list: Vec<i64> = vec![i64::MIN, -1, 0, 1, i64::MAX];
    assert_eq!(ctx.spawn(echo, list.clone()).unwrap().join().unwrap(), list);
    let tuple = (7u8, "seven".to_string(), Some(7.5f64), true, ('x', -7i16));
    assert_eq!(
        ctx.spawn(echo, tuple.clone()).unwrap().join().unwrap(),
        tuple
    );
    assert_eq!(ctx.spawn(echo, record()).unwrap().join().unwrap(), record());
    let empty: (Vec<String>, String, ()) = Default::default();
    assert_eq!(
        ctx.spawn(echo, empty.clone()).unwrap().join().unwrap(),
        empty
    );
    let big = vec![0xa5u8; 3 << 20];
    assert_eq!(ctx.spawn(echo, big.clone()).unwrap().join().unwrap(), big);
}

fn values_come_back(m: StartMethod) {
    fn square(x: u64) -> u64 {
        x * x
    }
    fn count_to(n: u32) -> Vec<u32> {
        (1..=n).collect()
    }
    fn shout(s: String) -> String {
        s.to_uppercase()
    }
    fn make_record(id: u64) -> Record {
        Record { id, ..record() }
    }
    let (_g, ctx) = setup(m);
    assert_eq!(ctx.spawn(square, 12).unwrap().join().unwrap(), 144);
    assert_eq!(
        ctx.spawn(count_to, 5).unwrap().join().unwrap(),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(
        ctx.spawn(shout, "hello".into()).unwrap().join().unwrap(),
        "HELLO"
    );
    assert_eq!(
        ctx.spawn(make_record, 3).unwrap().join().unwrap(),
        Record { id: 3, ..record() }
    );
    let unit: () = ctx.spawn(nothing, ()).unwrap().join().unwrap();
    assert_eq!(unit, ());
}

fn process_args_arrive_exactly(m: StartMethod) {
    let (_g, ctx) = setup(m);
    let (here, there) = Pipe::<Echoed>::new().unwrap();
    let list = vec![3, 1, 4, 1, 5, 9, 2, 6];
    let pair = (42u8, "forty-two".to_string());
    let mut p = ctx.process(send_back, (there, list.clone(), pair.clone()));
    p.start().unwrap();
    assert_eq!(here.recv_timeout(GENEROUS).unwrap(), Echoed { list, pair });
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
}

// ---------------------------------------------------------------------
// Exit codes, and the typed errors of `JoinHandle::join`.

fn return_gives_exit_code_0(m: StartMethod) {
    let (_g, ctx) = setup(m);
    assert_eq!(exit_code_of(ctx, nothing, ()), 0);
}

fn exit_gives_its_code(m: StartMethod) {
    let (_g, ctx) = setup(m);
    assert_eq!(exit_code_of(ctx, exit_with, 8), 8);
    let h = ctx.spawn(exit_with, 8).unwrap();
    let pid = h.pid();
    match h.join() {
        Err(Error::Exited { pid: p, code: 8 }) => assert_eq!(p, pid),
        other => panic!("expected Exited {{ code: 8 }}, got {other:?}"),
    }
}

fn panic_gives_1_and_its_message(m: StartMethod) {
    let (_g, ctx) = setup(m);
    assert_eq!(exit_code_of(ctx, panic_with, 1), 1);
    let h = ctx.spawn(panic_with, 42).unwrap();
    let pid = h.pid();
    match h.join() {
        Err(Error::Panicked {
            pid: p,
            message,
            location,
        }) => {
            assert_eq!(p, pid);
            assert_eq!(message, "boom 42");
            assert!(location.contains("process.rs"), "location: {location}");
        }
        other => panic!("expected Panicked, got {other:?}"),
    }
}

/// Starts a child that sleeps, signals it with `send`, and checks both the
/// `Process` exit code and the `JoinHandle` error.
fn signal_check(
    m: StartMethod,
    signal: i32,
    send: fn(&Process),
    send_h: fn(&mproc::JoinHandle<()>),
) {
    let (_g, ctx) = setup(m);
    let mut p = ctx.process(nap, LONG);
    p.start().unwrap();
    send(&p);
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(-signal));
    assert!(!p.is_alive());

    let h = ctx.spawn(nap, LONG).unwrap();
    let pid = h.pid();
    send_h(&h);
    match h.join() {
        Err(Error::Signaled { pid: p, signal: s }) => {
            assert_eq!((p, s), (pid, signal));
        }
        other => panic!("expected Signaled {{ signal: {signal} }}, got {other:?}"),
    }
}

fn terminate_gives_minus_15(m: StartMethod) {
    signal_check(
        m,
        15,
        |p| p.terminate().unwrap(),
        |h| h.terminate().unwrap(),
    );
}

fn kill_gives_minus_9(m: StartMethod) {
    signal_check(m, 9, |p| p.kill().unwrap(), |h| h.kill().unwrap());
}

/// Naps after restoring SIGINT's default action and saying so: a test run
/// started with SIGINT ignored (a background job of a non-interactive
/// shell) passes that on to every child, which would sleep through it.
fn nap_interruptible(ready: mproc::Event) {
    // SAFETY: setting a signal's disposition to its default has no
    // preconditions.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_DFL) };
    ready.set();
    nap(LONG);
}

fn interrupt_gives_minus_2(m: StartMethod) {
    let (_g, ctx) = setup(m);
    let ready = mproc::Event::new().unwrap();
    let mut p = ctx.process(nap_interruptible, ready.clone());
    p.start().unwrap();
    assert!(ready.wait_timeout(GENEROUS).unwrap());
    p.interrupt().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(-2));
}

fn abort_gives_minus_6(m: StartMethod) {
    let (_g, ctx) = setup(m);
    assert_eq!(exit_code_of(ctx, abort, ()), -6);
    match ctx.spawn(abort, ()).unwrap().join() {
        Err(Error::Signaled { signal: 6, .. }) => {}
        other => panic!("expected Signaled {{ signal: 6 }}, got {other:?}"),
    }
}

fn segfault_gives_minus_11(m: StartMethod) {
    let (_g, ctx) = setup(m);
    assert_eq!(exit_code_of(ctx, segfault, ()), -11);
    match ctx.spawn(segfault, ()).unwrap().join() {
        Err(Error::Signaled { signal: 11, .. }) => {}
        other => panic!("expected Signaled {{ signal: 11 }}, got {other:?}"),
    }
}

// ---------------------------------------------------------------------
// State, timeouts and misuse.

fn join_timeout_zero_returns_at_once(m: StartMethod) {
    let (_g, ctx) = setup(m);
    let mut p = ctx.process(nap, LONG);
    p.start().unwrap();
    let t = Instant::now();
    assert!(!p.join_timeout(Duration::ZERO).unwrap());
    assert!(!p.join_timeout(Duration::from_millis(20)).unwrap());
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(p.is_alive());
    assert_eq!(p.exitcode(), None);

    let mut h = ctx.spawn(nap, LONG).unwrap();
    assert!(matches!(
        h.join_timeout(Duration::ZERO),
        Err(Error::Timeout)
    ));
    assert!(!h.is_finished());
    h.terminate().unwrap();
    assert!(matches!(h.join(), Err(Error::Signaled { signal: 15, .. })));

    p.terminate().unwrap();
    assert!(p.join_timeout(GENEROUS).unwrap());
    assert_eq!(p.exitcode(), Some(-15));
}

fn state_before_and_after_start(m: StartMethod) {
    let (_g, ctx) = setup(m);
    let (here, there) = Pipe::<()>::new().unwrap();
    let mut p = ctx.process(wait_for_go, there);
    assert_eq!(p.pid(), None);
    assert_eq!(p.exitcode(), None);
    assert!(!p.is_alive());
    assert!(format!("{p:?}").contains("initial"), "{p:?}");

    p.start().unwrap();
    let pid = p.pid().expect("started");
    assert!(pid > 0 && pid != std::process::id() as i32);
    assert!(p.is_alive());
    assert_eq!(p.exitcode(), None);

    here.send(&()).unwrap();
    p.join().unwrap();
    assert!(!p.is_alive());
    assert_eq!(p.pid(), Some(pid));
    assert_eq!(p.exitcode(), Some(0));
    // Joining again is harmless, as in Python.
    p.join().unwrap();
    assert!(p.join_timeout(Duration::ZERO).unwrap());
    assert!(format!("{p:?}").contains("exitcode=0"), "{p:?}");
}

fn invalid_states_are_typed_errors(m: StartMethod) {
    let (_g, ctx) = setup(m);
    let mut p = ctx.process(nothing, ());
    let invalid = |r: mproc::Result<()>| matches!(r, Err(Error::InvalidState(_)));
    assert!(invalid(p.join()));
    assert!(invalid(p.join_timeout(Duration::ZERO).map(drop)));
    assert!(invalid(p.terminate()));
    assert!(invalid(p.kill()));
    assert!(invalid(p.interrupt()));
    assert!(invalid(p.sentinel().map(drop)));

    p.start().unwrap();
    assert!(invalid(p.start()));
    p.join().unwrap();
    assert!(invalid(p.start()));
    assert_eq!(p.exitcode(), Some(0));
    // Signalling a finished process is not an error.
    p.terminate().unwrap();
    p.kill().unwrap();
}

fn terminate_100_just_started(m: StartMethod) {
    let (_g, ctx) = setup(m);
    let mut children: Vec<Process> = (0..100).map(|_| ctx.process(nap, LONG)).collect();
    for p in &mut children {
        p.start().unwrap();
    }
    for p in &children {
        p.terminate().unwrap();
    }
    for p in &mut children {
        p.join().unwrap();
    }
    let codes: Vec<_> = children.iter().map(|p| p.exitcode()).collect();
    assert!(codes.iter().all(|&c| c == Some(-15)), "{codes:?}");
}

fn hundred_children_leave_nothing(m: StartMethod) {
    let (_g, ctx) = setup_exclusive(m);
    // A first child starts what lasts (the fork server, the launcher).
    assert_eq!(exit_code_of(ctx, nothing, ()), 0);
    let fds = mproc::__private::open_fd_count();
    let before = common::descendant_ids();

    let mut children: Vec<Process> = (0..100).map(|_| ctx.process(nothing, ())).collect();
    for p in &mut children {
        p.start().unwrap();
    }
    for p in &mut children {
        p.join().unwrap();
    }
    let codes: Vec<_> = children.iter().map(|p| p.exitcode()).collect();
    assert!(codes.iter().all(|&c| c == Some(0)), "{codes:?}");
    let pids: Vec<i32> = children.iter().filter_map(|p| p.pid()).collect();
    drop(children);
    assert!(mproc::active_children()
        .iter()
        .all(|c| !pids.contains(&c.pid())));

    assert_eq!(common::zombie_children(), Vec::<i32>::new());
    assert_eq!(common::descendant_ids(), before);
    assert_eq!(mproc::__private::open_fd_count(), fds);
}

// ---------------------------------------------------------------------
// Who is who: names, identities, parents, daemons.

/// CPython's `_test_recursion`: each process records its name, then starts
/// two children one after the other and joins each, down to `depth` 2.
fn recurse((method, depth): (String, u32)) -> Vec<String> {
    let mut names = vec![mproc::current_process().name().to_string()];
    if depth < 2 {
        let ctx = mproc::get_context(Some(method.parse().unwrap()));
        for _ in 0..2 {
            let h = ctx.spawn(recurse, (method.clone(), depth + 1)).unwrap();
            names.extend(h.join().unwrap());
        }
    }
    names
}

fn nested_children_run_depth_first(m: StartMethod) {
    let (_g, ctx) = setup(m);
    let names = ctx
        .spawn(recurse, (m.name().to_string(), 0))
        .unwrap()
        .join()
        .unwrap();
    // The first child's number depends on the tests that ran before.
    let top = &names[0];
    assert!(
        top.strip_prefix("Process-")
            .is_some_and(|n| n.parse::<u32>().is_ok()),
        "{names:?}"
    );
    let expected: Vec<String> = ["", ":1", ":1:1", ":1:2", ":2", ":2:1", ":2:2"]
        .iter()
        .map(|suffix| format!("{top}{suffix}"))
        .collect();
    assert_eq!(names, expected);
}

#[derive(Debug, Serialize, Deserialize)]
struct Identity {
    name: String,
    pid: i32,
    identity: Vec<u32>,
    daemon: bool,
    parent_pid: Option<i32>,
    parent_name: Option<String>,
    os_parent: i32,
}

fn who_am_i(_: ()) -> Identity {
    let me = mproc::current_process();
    let parent = mproc::parent_process();
    Identity {
        name: me.name().into(),
        pid: me.pid(),
        identity: me.identity().to_vec(),
        daemon: me.daemon(),
        parent_pid: parent.as_ref().map(|p| p.pid()),
        parent_name: parent.map(|p| p.name().to_string()),
        os_parent: std::os::unix::process::parent_id() as i32,
    }
}

fn who_am_i_sent(conn: Connection<Identity>) {
    conn.send(&who_am_i(())).unwrap();
}

fn child_knows_itself_and_its_parent(m: StartMethod) {
    let (_g, ctx) = setup(m);
    let me = std::process::id() as i32;

    let h = ctx.spawn(who_am_i, ()).unwrap();
    let pid = h.pid();
    let id = h.join().unwrap();
    assert_eq!(id.pid, pid);
    assert_eq!(id.parent_pid, Some(me));
    assert_eq!(id.parent_name.as_deref(), Some("MainProcess"));
    assert!(!id.daemon);
    assert_eq!(id.identity.len(), 1, "{id:?}");
    assert_eq!(id.name, format!("Process-{}", id.identity[0]));
    if m != StartMethod::ForkServer {
        assert_eq!(id.os_parent, me, "a {m} child is ours");
    }

    let (here, there) = Pipe::<Identity>::new().unwrap();
    let mut p = ctx
        .process(who_am_i_sent, there)
        .name("worker")
        .daemon(true);
    assert_eq!(p.get_name(), "worker");
    assert!(p.is_daemon());
    p.start().unwrap();
    let id = here.recv_timeout(GENEROUS).unwrap();
    p.join().unwrap();
    assert_eq!(Some(id.pid), p.pid());
    assert_eq!(id.name, "worker");
    assert!(id.daemon);
    assert_eq!(id.parent_pid, Some(me));
}

/// Tries to start a child and reports whether it was refused as it should.
fn try_to_have_children(conn: Connection<(bool, String)>) {
    let r = Process::new(nothing, ()).start();
    let refused = matches!(r, Err(Error::InvalidState(_)));
    conn.send(&(refused, format!("{r:?}"))).unwrap();
}

fn daemon_cannot_have_children(m: StartMethod) {
    let (_g, ctx) = setup(m);
    let (here, there) = Pipe::new().unwrap();
    let mut p = ctx.process(try_to_have_children, there).daemon(true);
    p.start().unwrap();
    let (refused, what) = here.recv_timeout(GENEROUS).unwrap();
    assert!(refused, "a daemon started a child: {what}");
    assert!(what.contains("daemon"), "{what}");
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
}

// ---------------------------------------------------------------------
// Waiting on several, and the list of children.

fn wait_returns_the_finished_one(m: StartMethod) {
    let (_g, ctx) = setup(m);
    let mut slow = ctx.process(nap, LONG);
    let mut fast = ctx.process(nothing, ());
    slow.start().unwrap();
    fast.start().unwrap();
    let ready = mproc::wait(&[&slow, &fast], Some(GENEROUS)).unwrap();
    assert_eq!(ready, vec![1]);
    // Nothing else is ready: a short timeout gives an empty list.
    assert_eq!(
        mproc::wait(&[&slow], Some(Duration::from_millis(10))).unwrap(),
        Vec::<usize>::new()
    );

    let h = ctx.spawn(nothing, ()).unwrap();
    let ready = mproc::wait(&[&slow, &h], Some(GENEROUS)).unwrap();
    assert_eq!(ready, vec![1]);
    h.join().unwrap();

    slow.terminate().unwrap();
    assert_eq!(mproc::wait(&[&slow], Some(GENEROUS)).unwrap(), vec![0]);
    slow.join().unwrap();
    fast.join().unwrap();
    assert_eq!((slow.exitcode(), fast.exitcode()), (Some(-15), Some(0)));
}

fn active_children_lists_and_reaps(m: StartMethod) {
    let (_g, ctx) = setup(m);
    let (here, there) = Pipe::<()>::new().unwrap();
    let mut p = ctx.process(wait_for_go, there).name("listed");
    p.start().unwrap();
    let pid = p.pid().unwrap();
    let entry = mproc::active_children()
        .into_iter()
        .find(|c| c.pid() == pid)
        .expect("a running child is listed");
    assert_eq!(entry.name(), "listed");
    assert!(!entry.daemon());
    assert_eq!(entry.identity().len(), 1, "{entry:?}");

    here.send(&()).unwrap();
    // Wait for its end without reaping it: only its sentinel.
    assert_eq!(mproc::wait(&[&p], Some(GENEROUS)).unwrap(), vec![0]);
    let os_parent = common::stat(pid).map(|s| s.ppid);
    assert!(mproc::active_children().iter().all(|c| c.pid() != pid));
    // `active_children` reaped it: no zombie of ours is left, and its
    // exit code is known without a join.
    if os_parent == Some(std::process::id() as i32) {
        assert!(common::stat(pid).is_none_or(|s| s.state != 'Z'));
    }
    assert_eq!(p.exitcode(), Some(0));
}

// ---------------------------------------------------------------------
// Values that cannot travel.

fn take_unserialisable(_: Unserialisable) {}

fn give_unserialisable(_: ()) -> Unserialisable {
    Unserialisable
}

fn unserialisable_argument(m: StartMethod) {
    let (_g, ctx) = setup_exclusive(m);
    assert_eq!(exit_code_of(ctx, nothing, ()), 0);
    let before = common::descendant_ids();
    let mut p = ctx.process(take_unserialisable, Unserialisable);
    let r = ctx.spawn(take_unserialisable, Unserialisable);
    if m == StartMethod::Fork {
        // A forked child gets its arguments in memory, never serialised
        // (as in Python): it runs.
        p.start().unwrap();
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(0));
        r.unwrap().join().unwrap();
        return;
    }
    match p.start() {
        Err(Error::Encode(e)) => assert!(e.to_string().contains("refuses"), "{e}"),
        other => panic!("expected Encode, got {other:?}"),
    }
    assert_eq!(p.pid(), None);
    assert!(!p.is_alive());
    match r {
        Err(Error::Encode(_)) => {}
        other => panic!("expected Encode, got {other:?}"),
    }
    assert_eq!(common::descendant_ids(), before, "a child was started");
}

fn unserialisable_result_is_an_encode_error(m: StartMethod) {
    let (_g, ctx) = setup(m);
    let h = ctx.spawn(give_unserialisable, ()).unwrap();
    match h.join() {
        Err(Error::Encode(e)) => assert!(e.to_string().contains("refuses"), "{e}"),
        other => panic!("expected Encode, got {other:?}"),
    }
}

// ---------------------------------------------------------------------
// Dropping handles of running children.

/// Starts a child waiting for a message, lets `drop_it` drop its handle,
/// then wakes it and waits until it is reaped and every descriptor the
/// handle held is closed.
fn dropped_handle_is_reaped(
    m: StartMethod,
    start_and_drop: fn(mproc::Context, Connection<()>) -> i32,
) {
    let (_g, ctx) = setup_exclusive(m);
    assert_eq!(exit_code_of(ctx, nothing, ()), 0);
    let fds = mproc::__private::open_fd_count();
    let (here, there) = Pipe::<()>::new().unwrap();
    let pid = start_and_drop(ctx, there);
    let child = common::stat(pid).expect("the child runs");
    here.send(&()).unwrap();
    drop(here);
    assert!(
        common::eventually(GENEROUS, || common::reaped(&child)),
        "child {pid} was not reaped: {:?}",
        common::stat(pid)
    );
    assert!(
        common::eventually(GENEROUS, || mproc::__private::open_fd_count() == fds),
        "descriptors left: {} instead of {fds}",
        mproc::__private::open_fd_count()
    );
    assert_eq!(common::zombie_children(), Vec::<i32>::new());
}

fn dropped_process_is_reaped(m: StartMethod) {
    dropped_handle_is_reaped(m, |ctx, conn| {
        let mut p = ctx.process(wait_for_go, conn);
        p.start().unwrap();
        p.pid().unwrap()
    });
}

fn dropped_join_handle_is_reaped(m: StartMethod) {
    dropped_handle_is_reaped(m, |ctx, conn| ctx.spawn(wait_for_go, conn).unwrap().pid());
}

// ---------------------------------------------------------------------
// A child's own children at its exit.

/// Starts a non-daemon grandchild and returns without joining it: as in
/// Python, the child's exit joins it first.
fn leave_a_child((method, conn): (String, Connection<String>)) {
    let ctx = mproc::get_context(Some(method.parse().unwrap()));
    ctx.process(answer_when_asked, conn).start().unwrap();
}

fn answer_when_asked(conn: Connection<String>) {
    let question = conn.recv_timeout(LONG).unwrap();
    conn.send(&format!("answer to {question}")).unwrap();
}

fn child_joins_its_children_at_exit(m: StartMethod) {
    let (_g, ctx) = setup(m);
    let (here, there) = Pipe::<String>::new().unwrap();
    let mut p = ctx.process(leave_a_child, (m.name().to_string(), there));
    p.start().unwrap();
    here.send(&"ping".to_string()).unwrap();
    assert_eq!(here.recv_timeout(GENEROUS).unwrap(), "answer to ping");
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
}

/// Returns a value at once but, joining the grandchild it leaves, ends
/// only when the test lets that grandchild go.
fn value_then_linger((method, conn): (String, Connection<String>)) -> u32 {
    leave_a_child((method, conn));
    42
}

fn join_timeout_keeps_its_deadline_once_the_value_came(m: StartMethod) {
    let (_g, ctx) = setup(m);
    let (here, there) = Pipe::<String>::new().unwrap();
    let mut h = ctx
        .spawn(value_then_linger, (m.name().to_string(), there))
        .unwrap();
    // The value comes within these waits; the child's end cannot.
    for _ in 0..5 {
        let t = Instant::now();
        assert!(matches!(
            h.join_timeout(Duration::from_millis(50)),
            Err(Error::Timeout)
        ));
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    }
    assert!(!h.is_finished());
    here.send(&"ping".to_string()).unwrap();
    assert_eq!(here.recv_timeout(GENEROUS).unwrap(), "answer to ping");
    assert_eq!(h.join().unwrap(), 42);
}

// ---------------------------------------------------------------------
// Fork-only: closures.

#[test]
fn fork_runs_a_capturing_closure() {
    let _g = common::shared();
    let data: Vec<u64> = (1..=3).collect();
    let offset = 100u64;
    let h = mproc::fork(move || data.iter().sum::<u64>() + offset).unwrap();
    assert_eq!(h.join().unwrap(), 106);

    // The child is a copy: it sees the parent's memory, and knows its parent.
    let text = String::from("captured");
    let h = mproc::fork(move || {
        let parent = mproc::parent_process().map(|p| p.pid());
        (
            text.len(),
            parent,
            std::os::unix::process::parent_id() as i32,
        )
    })
    .unwrap();
    let me = std::process::id() as i32;
    assert_eq!(h.join().unwrap(), (8, Some(me), me));

    let h = mproc::fork(|| -> u8 { panic!("closure panicked") }).unwrap();
    match h.join() {
        Err(Error::Panicked { message, .. }) => assert_eq!(message, "closure panicked"),
        other => panic!("expected Panicked, got {other:?}"),
    }
}

/// Set by the test below before it forks: only a forked child sees it.
static MARK: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

#[test]
fn fork_forks_whatever_the_default_start_method() {
    use std::sync::atomic::Ordering;
    let _g = common::shared();
    assert_ne!(mproc::get_start_method(), StartMethod::Fork);
    MARK.store(77, Ordering::SeqCst);
    let (here, there) = Pipe::<u32>::new().unwrap();
    let h = mproc::fork(move || there.send(&MARK.load(Ordering::SeqCst)).unwrap()).unwrap();
    assert_eq!(here.recv_timeout(GENEROUS).unwrap(), 77);
    h.join().unwrap();
}

// ---------------------------------------------------------------------
// A child's refusal of a bad first frame (Spawn and ForkServer read one).

/// The transport's frame: an 8-byte little-endian length, then the body.
fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// Starts a child whose first frame is `bytes` (then end of file) and
/// returns what its join gave and its exit code.
fn refusal(m: StartMethod, bytes: Vec<u8>) -> (mproc::Result<()>, i32, Option<i32>) {
    let mut h = mproc::__private::start_with_raw_first_frame(m, bytes).unwrap();
    let r = h.join_timeout(GENEROUS);
    assert!(!matches!(r, Err(Error::Timeout)), "{m}: the child hung");
    (r, h.pid(), h.exitcode())
}

fn bad_first_frames(m: StartMethod) {
    let _g = common::shared();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "garbage",
            b"this is not a frame at all".to_vec(),
            "exceeds the limit",
        ),
        (
            "truncated",
            {
                let mut v = 100u64.to_le_bytes().to_vec();
                v.extend_from_slice(b"abc");
                v
            },
            "truncated",
        ),
        ("truncated length", vec![7, 0, 0], "truncated"),
        ("empty", Vec::new(), "end of file"),
        (
            "garbage header length",
            framed(b"\xff\xff\xff\x7fgarbage"),
            "header",
        ),
        ("garbage header", framed(b"\x03\0\0\0xyz"), "header"),
        ("short body", framed(b"\x01\x00"), "too short"),
        (
            "huge length",
            {
                // Below the limit on a frame's size, far above the memory.
                let mut v = ((1u64 << 40) - 1).to_le_bytes().to_vec();
                v.extend_from_slice(b"abc");
                v
            },
            "truncated",
        ),
    ];
    for (what, bytes, why) in cases {
        match refusal(m, bytes) {
            (Err(Error::Bootstrap { pid, reason }), child, code) => {
                assert_eq!(pid, child);
                assert!(reason.contains(why), "{m}, {what}: {reason}");
                assert_eq!(code, Some(mproc::BOOTSTRAP_EXIT_CODE), "{m}, {what}");
            }
            other => panic!("{m}, {what}: expected Bootstrap, got {other:?}"),
        }
    }
}

fn wrong_build_identity(m: StartMethod) {
    let _g = common::shared();
    let bytes = mproc::__private::first_frame_claiming(b"another build".to_vec());
    match refusal(m, bytes) {
        (Err(Error::BinaryMismatch { expected, found }), _, code) => {
            assert_eq!(expected, "616e6f74686572206275696c64"); // "another build"
            assert_ne!(found, expected);
            assert_eq!(code, Some(mproc::BOOTSTRAP_EXIT_CODE));
        }
        other => panic!("{m}: expected BinaryMismatch, got {other:?}"),
    }
    // The same frame with this build's identity runs.
    let ok = mproc::__private::first_frame_claiming(current_build(m));
    assert!(matches!(refusal(m, ok), (Ok(()), _, Some(0))));
}

/// This executable's identity, as a child reports it in a mismatch.
fn current_build(m: StartMethod) -> Vec<u8> {
    let bytes = mproc::__private::first_frame_claiming(Vec::new());
    match refusal(m, bytes).0 {
        Err(Error::BinaryMismatch { found, .. }) => (0..found.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&found[i..i + 2], 16).unwrap())
            .collect(),
        other => panic!("expected BinaryMismatch, got {other:?}"),
    }
}

#[test]
fn spawn_refuses_bad_first_frames() {
    bad_first_frames(StartMethod::Spawn);
}

#[test]
fn forkserver_refuses_bad_first_frames() {
    bad_first_frames(StartMethod::ForkServer);
}

#[test]
fn spawn_refuses_another_build() {
    wrong_build_identity(StartMethod::Spawn);
}

#[test]
fn forkserver_refuses_another_build() {
    wrong_build_identity(StartMethod::ForkServer);
}

#[test]
fn a_forked_child_reads_no_first_frame() {
    let _g = common::shared();
    let r = mproc::__private::start_with_raw_first_frame(StartMethod::Fork, b"x".to_vec());
    assert!(matches!(r, Err(Error::InvalidState(_))), "{r:?}");
}

/// `wait` on a child that was already joined returns at once, under every
/// start method (a fork-server child's status pipe is empty by then).
#[test]
fn wait_on_a_joined_process_is_ready_at_once() {
    let _g = common::shared();
    mproc::set_fork_warning(false);
    for m in mproc::all_start_methods() {
        let mut p = mproc::get_context(Some(m)).process(wait_ready_noop, ());
        p.start().unwrap();
        p.join().unwrap();
        let ready = mproc::wait(&[&p], Some(std::time::Duration::ZERO)).unwrap();
        assert_eq!(ready, vec![0], "{m}");
    }
}

fn wait_ready_noop(_: ()) {}
