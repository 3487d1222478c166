//! Awaiting a process (feature `tokio`): `Process::join_async` under both
//! tokio runtimes and every start method, and its errors.
#![cfg(feature = "tokio")]

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
    let outcome = futures_lite_block_on(p.join_async());
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

/// Polls a future to completion on this thread with no runtime at all.
fn futures_lite_block_on<F: std::future::Future>(f: F) -> F::Output {
    use std::task::{Context, Poll, Wake, Waker};
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(std::sync::Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        match f.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}
