//! Awaiting a process (feature `tokio`): `Process::join_async` under both
//! tokio runtimes and every start method, and its errors.
#![cfg(feature = "tokio")]

mod common;

use std::time::Duration;

use mproc::{Error, Process, StartMethod};

fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn exit_with(code: i32) {
    std::process::exit(code);
}

const METHODS: [StartMethod; 3] = [
    StartMethod::Fork,
    StartMethod::Spawn,
    StartMethod::ForkServer,
];

async fn join_every_method() {
    for method in METHODS {
        let mut p = Process::new(exit_with, 7).start_method(method);
        p.start().unwrap();
        p.join_async().await.unwrap();
        assert_eq!(p.exitcode(), Some(7), "{method:?}");
        // Joining again is immediate.
        p.join_async().await.unwrap();
    }
}

#[test]
fn join_async_on_a_current_thread_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    rt.block_on(join_every_method());
}

#[test]
fn join_async_on_a_multi_thread_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_io()
        .build()
        .unwrap();
    rt.block_on(join_every_method());
}

#[test]
fn a_killed_child_is_joined_with_its_signal() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    rt.block_on(async {
        for method in METHODS {
            let mut p = Process::new(nap, 60_000).start_method(method);
            p.start().unwrap();
            p.kill().unwrap();
            p.join_async().await.unwrap();
            assert_eq!(p.exitcode(), Some(-9), "{method:?}");
        }
    });
}

#[test]
fn a_dropped_join_future_leaves_the_process_joinable() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut p = Process::new(nap, 60_000);
        p.start().unwrap();
        let early = tokio::time::timeout(Duration::from_millis(20), p.join_async()).await;
        assert!(early.is_err(), "the child naps for a minute");
        assert!(p.is_alive());
        p.terminate().unwrap();
        p.join_async().await.unwrap();
        assert_eq!(p.exitcode(), Some(-15));
    });
}

#[test]
fn join_async_outside_a_runtime_is_a_typed_error() {
    let mut p = Process::new(nap, 60_000);
    p.start().unwrap();
    let outcome = common::block_on_without_runtime(p.join_async());
    assert!(matches!(outcome, Err(Error::NoAsyncRuntime)), "{outcome:?}");
    p.kill().unwrap();
    p.join().unwrap();
}

#[test]
fn an_unstarted_process_is_an_error() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let mut p = Process::new(nap, 1);
    let outcome = rt.block_on(p.join_async());
    assert!(
        matches!(outcome, Err(Error::InvalidState(_))),
        "{outcome:?}"
    );
}

// ---- JoinHandle: the child's value, awaited ----

fn square(x: u64) -> u64 {
    x * x
}

fn panics(_: ()) -> u64 {
    panic!("the child gives up");
}

fn exits(code: i32) -> u64 {
    std::process::exit(code)
}

fn sleeps_forever(_: ()) -> u64 {
    nap(60_000);
    0
}

/// More than a socket buffer holds: the child blocks in its write until
/// the parent reads, while it is still running.
fn big(n: usize) -> Vec<u8> {
    (0..n).map(|i| i as u8).collect()
}

async fn handles_every_outcome() {
    assert_eq!(
        mproc::spawn(square, 12)
            .unwrap()
            .join_async()
            .await
            .unwrap(),
        144
    );
    assert_eq!(mproc::spawn(square, 3).unwrap().await.unwrap(), 9);
    let value = mproc::fork(|| big(8 << 20)).unwrap().await.unwrap();
    assert_eq!(value, big(8 << 20));
    match mproc::spawn(panics, ()).unwrap().await {
        Err(Error::Panicked { message, .. }) => assert!(message.contains("gives up"), "{message}"),
        other => panic!("{other:?}"),
    }
    match mproc::spawn(exits, 3).unwrap().await {
        Err(Error::Exited { code: 3, .. }) => {}
        other => panic!("{other:?}"),
    }
    let h = mproc::spawn(sleeps_forever, ()).unwrap();
    h.kill().unwrap();
    match h.await {
        Err(Error::Signaled { signal: 9, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn join_handles_on_a_current_thread_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(handles_every_outcome());
}

#[test]
fn join_handles_on_a_multi_thread_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(handles_every_outcome());
}

/// Many handles awaited at once from one thread: no thread per wait.
#[test]
fn many_handles_awaited_together() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let handles: Vec<_> = (0..8u64)
            .map(|i| mproc::spawn(square, i).unwrap())
            .collect();
        let tasks: Vec<_> = handles
            .into_iter()
            .map(|h| tokio::spawn(h.join_async()))
            .collect();
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await.unwrap().unwrap(), (i * i) as u64);
        }
    });
}
