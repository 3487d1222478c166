//! `set_start_method`, `get_start_method` and `get_context`: the default
//! start method is global state, so these checks run in one test, in
//! order, in their own binary (as CPython's `test_set_get`).

mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use mproc::{Error, StartMethod};

/// Changed by the parent after it started: only a forked child sees it.
static MARK: AtomicU32 = AtomicU32::new(0);

/// How a child came to be, as the child sees it.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Origin {
    /// The parent's memory came with the child.
    forked: bool,
    /// The test process is the child's parent (not a fork server).
    ours: bool,
    name: String,
}

fn origin(parent: i32) -> Origin {
    Origin {
        forked: MARK.load(Ordering::SeqCst) == 1,
        ours: std::os::unix::process::parent_id() as i32 == parent,
        name: mproc::current_process().name().to_string(),
    }
}

/// The method that started a child, told by its origin.
fn method_of(o: &Origin) -> StartMethod {
    match (o.forked, o.ours) {
        (true, true) => StartMethod::Fork,
        (false, true) => StartMethod::Spawn,
        (false, false) => StartMethod::ForkServer,
        (true, false) => panic!("a forked child of a fork server? {o:?}"),
    }
}

fn nested(parent: i32) -> Vec<Origin> {
    let me = std::process::id() as i32;
    let child = mproc::spawn(origin, me).unwrap().join().unwrap();
    vec![origin(parent), child]
}

fn me() -> i32 {
    std::process::id() as i32
}

#[test]
fn start_method_semantics() {
    let _g = common::shared();
    MARK.store(1, Ordering::SeqCst);

    // A context with its own method leaves the default open...
    let mut names = Vec::new();
    for m in mproc::all_start_methods() {
        let ctx = mproc::get_context(Some(m));
        assert_eq!(ctx.start_method(), m);
        let o = ctx.spawn(origin, me()).unwrap().join().unwrap();
        assert_eq!(method_of(&o), m, "{o:?}");
        names.push(o.name);
    }
    assert_eq!(names, ["Process-1", "Process-2", "Process-3"]);
    // A child's children are numbered below it.
    let family = mproc::get_context(Some(StartMethod::Spawn))
        .spawn(nested, me())
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(family[0].name, "Process-4");
    assert_eq!(family[1].name, "Process-4:1");
    assert_eq!(method_of(&family[1]), StartMethod::ForkServer, "{family:?}");

    // So it can still be set without force, once.
    mproc::set_start_method(StartMethod::Spawn, false).unwrap();
    assert_eq!(mproc::get_start_method(), StartMethod::Spawn);
    assert!(matches!(
        mproc::set_start_method(StartMethod::Fork, false),
        Err(Error::InvalidState(_))
    ));
    assert_eq!(mproc::get_start_method(), StartMethod::Spawn);

    // The default serves spawn, Process::new and get_context(None).
    let o = mproc::spawn(origin, me()).unwrap().join().unwrap();
    assert_eq!(method_of(&o), StartMethod::Spawn, "{o:?}");
    assert_eq!(mproc::get_context(None).start_method(), StartMethod::Spawn);

    // With force it changes again, each time.
    for m in [
        StartMethod::Fork,
        StartMethod::ForkServer,
        StartMethod::Spawn,
    ] {
        mproc::set_start_method(m, true).unwrap();
        assert_eq!(mproc::get_start_method(), m);
        assert_eq!(mproc::get_context(None).start_method(), m);
        let o = mproc::spawn(origin, me()).unwrap().join().unwrap();
        assert_eq!(method_of(&o), m, "{o:?}");
        let (here, there) = mproc::Pipe::<Origin>::new().unwrap();
        let mut p = mproc::Process::new(
            |(conn, parent): (mproc::Connection<Origin>, i32)| conn.send(&origin(parent)).unwrap(),
            (there, me()),
        );
        p.start().unwrap();
        let o = here.recv_timeout(common::GENEROUS).unwrap();
        p.join().unwrap();
        assert_eq!(method_of(&o), m, "{o:?}");
        // A context still overrides the default.
        let other = if m == StartMethod::Spawn {
            StartMethod::ForkServer
        } else {
            StartMethod::Spawn
        };
        let o = mproc::get_context(Some(other))
            .spawn(origin, me())
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(method_of(&o), other, "{o:?}");
    }

    // A process takes the default in force when it starts, as in Python.
    mproc::set_start_method(StartMethod::ForkServer, true).unwrap();
    let (here, there) = mproc::Pipe::<Origin>::new().unwrap();
    let mut p = mproc::Process::new(
        |(conn, parent): (mproc::Connection<Origin>, i32)| conn.send(&origin(parent)).unwrap(),
        (there, me()),
    );
    mproc::set_start_method(StartMethod::Spawn, true).unwrap();
    p.start().unwrap();
    assert_eq!(
        method_of(&here.recv_timeout(common::GENEROUS).unwrap()),
        StartMethod::Spawn
    );
    p.join().unwrap();

    // Names, both ways.
    for m in mproc::all_start_methods() {
        assert_eq!(m.name().parse::<StartMethod>().unwrap(), m);
        assert_eq!(m.to_string(), m.name());
    }
    assert_eq!(
        mproc::all_start_methods()
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>(),
        ["fork", "spawn", "forkserver"]
    );
    match "thread".parse::<StartMethod>() {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("thread"), "{m}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}
