//! Awaiting an event or a semaphore (feature `tokio`): `Event::wait_async`
//! and `Semaphore::acquire_async`, set or released in another
//! process or task, under both tokio runtimes; cancellation; no leaks.
#![cfg(feature = "tokio")]

/// The tests of this file take turns: `nothing_leaks` counts the process's
/// descriptors and threads, which the others would change under
/// `cargo test` (one process for all; nextest runs each alone anyway).
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

mod common;

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use mproc::{Event, Process, StartMethod};

fn on_both<F: Future<Output = ()>>(f: impl Fn() -> F) {
    common::current_thread().block_on(f());
    common::multi_thread().block_on(f());
}

/// Waits for `go` (blocking), then sets `done`.
fn answers((go, done): (Event, Event)) {
    go.wait().unwrap();
    done.set();
}

#[test]
fn an_event_set_in_a_child_wakes_an_awaiting_parent() {
    let _turn = turn();
    on_both(|| async {
        for method in [
            StartMethod::Fork,
            StartMethod::Spawn,
            StartMethod::ForkServer,
        ] {
            let (go, done) = (Event::new().unwrap(), Event::new().unwrap());
            let mut p = Process::new(answers, (go.clone(), done.clone())).start_method(method);
            p.start().unwrap();
            // The parent's future is asleep in the reactor before the child
            // may set: `go` is set only once the wait has announced itself.
            let waiting = done.wait_async();
            let release = async {
                tokio::task::yield_now().await;
                go.set();
            };
            let (r, ()) = tokio::join!(waiting, release);
            r.unwrap();
            assert!(done.is_set());
            p.join_async().await.unwrap();
            assert_eq!(p.exitcode(), Some(0), "{method:?}");
        }
    });
}

/// Awaits `go` on its own runtime, then sets `done`.
fn awaits((go, done): (Event, Event)) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(go.wait_async()).unwrap();
    done.set();
}

#[test]
fn a_child_awaits_an_event_the_parent_sets_blocking() {
    let _turn = turn();
    let (go, done) = (Event::new().unwrap(), Event::new().unwrap());
    let mut p = Process::new(awaits, (go.clone(), done.clone()));
    p.start().unwrap();
    go.set();
    done.wait().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
}

#[test]
fn a_set_event_is_ready_and_a_dropped_wait_is_harmless() {
    let _turn = turn();
    on_both(|| async {
        let e = Event::new().unwrap();
        // Not set: the wait times out and its future is dropped.
        let early = tokio::time::timeout(Duration::from_millis(5), e.wait_async()).await;
        assert!(early.is_err());
        // Many waiters at once, released by one set from another task.
        let waiters: Vec<_> = (0..50)
            .map(|_| {
                let e = e.clone();
                tokio::spawn(async move { e.wait_async().await })
            })
            .collect();
        tokio::task::yield_now().await;
        e.set();
        for w in waiters {
            w.await.unwrap().unwrap();
        }
        e.wait_async().await.unwrap();
        // A set at once undone by a clear still releases a waiter (one
        // that has begun to wait: polled once, asleep).
        e.clear();
        let mut w = std::pin::pin!(e.wait_async());
        let first = std::future::poll_fn(|cx| Poll::Ready(w.as_mut().poll(cx))).await;
        assert!(first.is_pending());
        e.set();
        e.clear();
        w.await.unwrap();
    });
}

/// Releases `sem` `n` times, with a pause between releases (so that the
/// parent's futures go to sleep in the reactor; only the path taken
/// depends on it).
fn releases((sem, n): (mproc::Semaphore, u32)) {
    for _ in 0..n {
        sem.release().unwrap();
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn semaphore_permits_released_in_a_child_are_awaited() {
    let _turn = turn();
    on_both(|| async {
        let sem = mproc::Semaphore::new(0).unwrap();
        let mut p = Process::new(releases, (sem.clone(), 200));
        p.start().unwrap();
        // Four tasks share the 200 permits, racing for each.
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let sem = sem.clone();
                tokio::spawn(async move {
                    let mut got = 0;
                    while got < 50 {
                        sem.acquire_async().await.unwrap();
                        got += 1;
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(sem.value(), 0);
        // A dropped acquire takes nothing.
        let early = tokio::time::timeout(Duration::from_millis(5), sem.acquire_async()).await;
        assert!(early.is_err());
        sem.release().unwrap();
        assert_eq!(sem.value(), 1);
        p.join_async().await.unwrap();
    });
}

#[test]
fn nothing_leaks() {
    let _turn = turn();
    let work = || async {
        let (go, done) = (Event::new().unwrap(), Event::new().unwrap());
        let mut p = Process::new(answers, (go.clone(), done.clone()));
        p.start().unwrap();
        let release = async {
            tokio::task::yield_now().await;
            go.set();
        };
        let (r, ()) = tokio::join!(done.wait_async(), release);
        r.unwrap();
        p.join_async().await.unwrap();
        let never = Event::new().unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(2), never.wait_async())
                .await
                .is_err()
        );
    };
    on_both(work);
    let (fds, threads) = (mproc::__private::open_fd_count(), common::thread_count());
    on_both(work);
    assert_eq!(mproc::__private::open_fd_count(), fds, "descriptors");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while common::thread_count() > threads && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(common::thread_count(), threads, "threads");
}
