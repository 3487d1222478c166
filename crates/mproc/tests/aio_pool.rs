//! Awaiting a pool (feature `tokio`): `AsyncResult` as a future and
//! `imap` as a stream, under tokio's current-thread and multi-thread
//! runtimes: values, the same errors as the blocking calls, no thread per
//! pending await, cancellation (dropped futures leave no waker behind and
//! the pool goes on), and nothing left after the pool and the runtime end.
#![cfg(feature = "tokio")]

mod common;

use std::collections::HashSet;
use std::future::{poll_fn, Future};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::Duration;

use common::{current_thread, multi_thread, thread_count, GENEROUS, LONG};
use futures_core::Stream;
use mproc::{Callbacks, Error, Pool};

/// `2 * x`, or a misdeed chosen by a negative `x`.
fn task(x: i64) -> i64 {
    match x {
        -1 => panic!("task {x} panicked"),
        -2 => {
            let me = rustix::process::getpid();
            let _ = rustix::process::kill_process(me, rustix::process::Signal::KILL);
            unreachable!()
        }
        -3 => std::process::abort(),
        -6 => {
            std::thread::sleep(LONG);
            0
        }
        x => 2 * x,
    }
}

fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// `x + 1` once the file `gate` is gone: tasks that stay pending until
/// the test lets them go (the worker naps between looks; the test itself
/// waits on results, never on time).
fn gated((gate, x): (String, u64)) -> u64 {
    while Path::new(&gate).exists() {
        std::thread::sleep(Duration::from_millis(1));
    }
    x + 1
}

/// A file whose existence holds [`gated`] tasks; removed when dropped.
struct Gate(PathBuf);

impl Gate {
    fn new(name: &str) -> Gate {
        let path =
            std::env::temp_dir().join(format!("mproc-aio-pool-{name}-{}", std::process::id()));
        std::fs::write(&path, b"").unwrap();
        Gate(path)
    }
    fn arg(&self, x: u64) -> (String, u64) {
        (self.0.to_str().unwrap().to_owned(), x)
    }
    fn open(&self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

fn runtimes() -> [(&'static str, tokio::runtime::Runtime); 2] {
    [
        ("current-thread", current_thread()),
        ("multi-thread", multi_thread()),
    ]
}

/// The next item of a stream (what `futures::StreamExt::next` does).
async fn next<S: Stream + Unpin>(s: &mut S) -> Option<S::Item> {
    poll_fn(|cx| Pin::new(&mut *s).poll_next(cx)).await
}

/// `f`, telling `first` whether its first poll was pending.
async fn tell_first_poll<F: Future + Unpin>(mut f: F, first: impl FnOnce(bool)) -> F::Output {
    let mut first = Some(first);
    poll_fn(|cx| {
        let p = Pin::new(&mut f).poll(cx);
        if let Some(tell) = first.take() {
            tell(p.is_pending());
        }
        p
    })
    .await
}

/// A waker that counts nothing but its own references: whoever keeps a
/// clone of it shows in its `Arc`'s strong count.
struct Counted;

impl Wake for Counted {
    fn wake(self: Arc<Self>) {}
}

#[test]
fn awaited_results_are_the_blocking_ones() {
    let _g = common::shared();
    let pool = Pool::new(2).unwrap();
    for (name, rt) in runtimes() {
        rt.block_on(async {
            assert_eq!(pool.apply_async(task, 21).unwrap().await.unwrap(), 42);
            let want: Vec<i64> = (0..1000).map(|x| 2 * x).collect();
            assert_eq!(pool.map_async(task, 0..1000).unwrap().await.unwrap(), want);
            for c in [1, 7, 5000] {
                let r = pool.map_async_chunked(task, 0..1000, Some(c)).unwrap();
                assert_eq!(r.await.unwrap(), want, "{name}, chunksize {c}");
            }
            let r = pool.starmap_async(add as fn(i64, i64) -> i64, [(1, 2), (3, 4)]);
            let r = r.unwrap();
            assert_eq!(r.await.unwrap(), [3, 7]);
            assert!(pool
                .map_async(task, Vec::new())
                .unwrap()
                .await
                .unwrap()
                .is_empty());

            // Callbacks run as before, and before the await completes.
            let seen = Arc::new(AtomicUsize::new(0));
            let s = seen.clone();
            let cb = Callbacks::new().callback(move |v: &Vec<i64>| {
                s.store(v.iter().sum::<i64>() as usize, Ordering::SeqCst)
            });
            let r = pool.map_async_with(task, 1..=3, Some(1), cb).unwrap();
            assert_eq!(r.await.unwrap(), [2, 4, 6]);
            assert_eq!(seen.load(Ordering::SeqCst), 12, "{name}");

            // Many awaited at once, from tasks of the runtime.
            let handles: Vec<_> = (0..200)
                .map(|i| tokio::spawn(pool.apply_async(task, i).unwrap()))
                .collect();
            for (i, h) in handles.into_iter().enumerate() {
                assert_eq!(h.await.unwrap().unwrap(), 2 * i as i64, "{name}");
            }
        });
    }
}

#[test]
fn awaited_errors_are_the_blocking_ones() {
    let _g = common::shared();
    let pool = Pool::builder()
        .processes(2)
        .task_timeout(Duration::from_millis(500))
        .grace_period(Duration::from_millis(100))
        .build()
        .unwrap();
    for (name, rt) in runtimes() {
        rt.block_on(async {
            let e = pool.apply_async(task, -1).unwrap().await.unwrap_err();
            match e {
                Error::Panicked { message, .. } => assert!(message.contains("panicked")),
                e => panic!("{name}: {e:?}"),
            }
            let e = pool.apply_async(task, -2).unwrap().await.unwrap_err();
            assert!(
                matches!(e, Error::Signaled { signal: 9, .. }),
                "{name}: {e:?}"
            );
            let e = pool.apply_async(task, -3).unwrap().await.unwrap_err();
            assert!(
                matches!(e, Error::Signaled { signal: 6, .. }),
                "{name}: {e:?}"
            );
            let e = pool.apply_async(task, -6).unwrap().await.unwrap_err();
            assert!(matches!(e, Error::TaskTimeout { .. }), "{name}: {e:?}");
            // The first failure in input order, after every item.
            let e = pool.map_async(task, [1, -1, 2]).unwrap().await.unwrap_err();
            assert!(matches!(e, Error::Panicked { .. }), "{name}: {e:?}");
            // The same through the callback thread.
            let r = pool
                .apply_async_with(task, -3, Callbacks::new().error_callback(|_| {}))
                .unwrap();
            let e = r.await.unwrap_err();
            assert!(
                matches!(e, Error::Signaled { signal: 6, .. }),
                "{name}: {e:?}"
            );
            // And the pool goes on.
            assert_eq!(pool.apply_async(task, 5).unwrap().await.unwrap(), 10);
        });
    }
}

#[test]
fn awaiting_a_result_twice_is_an_invalid_state() {
    let _g = common::shared();
    let pool = Pool::new(1).unwrap();
    current_thread().block_on(async {
        let mut r = pool.apply_async(task, 1).unwrap();
        assert_eq!((&mut r).await.unwrap(), 2);
        assert!(matches!((&mut r).await, Err(Error::InvalidState(_))));
        // A timer that wins leaves the result usable.
        let gate = Gate::new("twice");
        let mut r = pool.apply_async(gated, gate.arg(1)).unwrap();
        let early = tokio::time::timeout(Duration::from_millis(1), &mut r).await;
        assert!(early.is_err());
        gate.open();
        assert_eq!(r.await.unwrap(), 2);
    });
}

#[test]
fn a_pool_terminated_or_dropped_while_awaited_fails_with_pool_terminated() {
    let _g = common::shared();
    for (name, rt) in runtimes() {
        for drop_it in [false, true] {
            let pool = Pool::new(2).unwrap();
            rt.block_on(async {
                // Held until the end, two running and one queued.
                let gate = Gate::new(&format!("terminated-{name}-{drop_it}"));
                let mut pending = Vec::new();
                for x in 0..3 {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    let r = pool.apply_async(gated, gate.arg(x)).unwrap();
                    let tell = move |p| {
                        let _ = tx.send(p);
                    };
                    pending.push(tokio::spawn(tell_first_poll(r, tell)));
                    assert!(rx.await.unwrap(), "{name}: pending when first polled");
                }
                if drop_it {
                    drop(pool);
                } else {
                    pool.terminate();
                }
                for h in pending {
                    let outcome = h.await.unwrap();
                    assert!(
                        matches!(outcome, Err(Error::PoolTerminated)),
                        "{name}: {outcome:?}"
                    );
                }
            });
        }
    }
}

/// 10,000 pending awaits take no thread: the count of this process's
/// threads is the same with 10 or 10,000 of them pending.
#[test]
fn ten_thousand_pending_awaits_use_no_more_threads() {
    let _g = common::exclusive();
    drop(Pool::new(1).unwrap()); // the fork server starts once
    const N: u64 = 10_000;
    for (name, rt) in runtimes() {
        let pool = Arc::new(Pool::new(2).unwrap());
        rt.block_on(async {
            // Whatever starts lazily has started.
            assert_eq!(pool.apply_async(task, 1).unwrap().await.unwrap(), 2);
            let mut counts = Vec::new();
            for n in [10, N] {
                let gate = Gate::new(&format!("threads-{n}"));
                let (polled_tx, mut polled_rx) = tokio::sync::mpsc::unbounded_channel();
                let handles: Vec<_> = (0..n)
                    .map(|i| {
                        let r = pool.apply_async(gated, gate.arg(i)).unwrap();
                        let tx = polled_tx.clone();
                        tokio::spawn(tell_first_poll(r, move |pending| {
                            let _ = tx.send(pending);
                        }))
                    })
                    .collect();
                let mut pending = 0;
                for _ in 0..n {
                    pending += polled_rx.recv().await.unwrap() as u64;
                }
                // The gate holds every task: all are pending.
                assert_eq!(pending, n, "{name}");
                counts.push(thread_count());
                gate.open();
                for (i, h) in handles.into_iter().enumerate() {
                    assert_eq!(h.await.unwrap().unwrap(), i as u64 + 1);
                }
            }
            assert_eq!(
                counts[0], counts[1],
                "{name}: threads with 10, then {N} pending"
            );
        });
    }
}

/// Results dropped while awaited (the timer of a `select!` wins) leave no
/// waker in the pool, and the pool goes on.
#[test]
fn ten_thousand_results_dropped_while_awaited_leave_nothing() {
    let _g = common::shared();
    const N: u64 = 10_000;
    for (name, rt) in runtimes() {
        let pool = Pool::new(2).unwrap();
        let gate = Gate::new(&format!("dropped-{name}"));
        // Polled once by hand with a counted waker, then dropped: nothing
        // keeps the waker.
        let counted = Arc::new(Counted);
        let waker = Waker::from(counted.clone());
        let mut cx = Context::from_waker(&waker);
        for i in 0..N {
            let mut r = pool.apply_async(gated, gate.arg(i)).unwrap();
            assert!(Pin::new(&mut r).poll(&mut cx).is_pending());
        }
        drop(waker);
        assert_eq!(Arc::strong_count(&counted), 1, "{name}: a waker was kept");
        // The same through the runtime: the timer of a select! wins.
        rt.block_on(async {
            let mut lost = 0;
            for i in 0..N {
                let r = pool.apply_async(gated, gate.arg(i)).unwrap();
                tokio::select! {
                    biased;
                    _ = r => panic!("{name}: the gate is closed"),
                    _ = tokio::task::yield_now() => lost += 1,
                }
            }
            assert_eq!(lost, N);
            gate.open();
            // Every dropped task still runs; the pool goes on.
            let r = pool.map_async_chunked(task, 0..100, Some(1)).unwrap();
            assert_eq!(
                r.await.unwrap(),
                (0..100).map(|x| 2 * x).collect::<Vec<_>>()
            );
        });
    }
}

#[test]
fn imap_streams_in_order_and_completely() {
    let _g = common::shared();
    let pool = Pool::new(2).unwrap();
    for (name, rt) in runtimes() {
        rt.block_on(async {
            const N: i64 = 10_000;
            let want: Vec<i64> = (0..N).map(|x| 2 * x).collect();
            for c in [1, 7] {
                let mut s = pool.imap_chunked(task, 0..N, c);
                let mut got = Vec::new();
                while let Some(r) = next(&mut s).await {
                    got.push(r.unwrap());
                }
                assert_eq!(got, want, "{name}: imap, chunksize {c}");
                let mut s = pool.imap_unordered_chunked(task, 0..N, c);
                let mut got = HashSet::new();
                while let Some(r) = next(&mut s).await {
                    assert!(got.insert(r.unwrap()));
                }
                assert_eq!(got, want.iter().copied().collect(), "{name}");
            }
            // An endless input: the window bounds what is read ahead.
            let mut s = pool.imap(task, 0..);
            for i in 0..5 {
                assert_eq!(next(&mut s).await.unwrap().unwrap(), 2 * i);
            }
            drop(s);
            // Failures come in their place, as from the iterator.
            let mut s = pool.imap(task, [1, -1, 2]);
            assert_eq!(next(&mut s).await.unwrap().unwrap(), 2);
            assert!(matches!(
                next(&mut s).await,
                Some(Err(Error::Panicked { .. }))
            ));
            assert_eq!(next(&mut s).await.unwrap().unwrap(), 4);
            assert!(next(&mut s).await.is_none());
        });
    }
}

/// A stream dropped while it waits keeps no waker in the pool.
#[test]
fn a_stream_dropped_while_waiting_keeps_no_waker() {
    let _g = common::shared();
    let pool = Pool::new(2).unwrap();
    let gate = Gate::new("stream");
    let counted = Arc::new(Counted);
    let waker = Waker::from(counted.clone());
    let mut cx = Context::from_waker(&waker);
    for ordered in [true, false] {
        let input: Vec<_> = (0..10).map(|i| gate.arg(i)).collect();
        let mut s = match ordered {
            true => pool.imap(gated, input),
            false => pool.imap_unordered(gated, input),
        };
        assert!(Pin::new(&mut s).poll_next(&mut cx).is_pending());
        assert!(Arc::strong_count(&counted) > 1);
        drop(s);
    }
    drop(waker);
    assert_eq!(Arc::strong_count(&counted), 1, "a waker was kept");
    gate.open();
    assert_eq!(pool.map(task, [1, 2]).unwrap(), [2, 4]);
}

/// Dropping a `next()` future (a timer wins) loses no item.
#[test]
fn a_dropped_next_loses_no_item() {
    let _g = common::shared();
    let pool = Pool::new(2).unwrap();
    for (name, rt) in runtimes() {
        rt.block_on(async {
            const N: i64 = 2_000;
            let mut s = pool.imap(task, 0..N);
            let (mut got, mut dropped) = (Vec::new(), 0);
            loop {
                tokio::select! {
                    biased;
                    r = next(&mut s) => match r {
                        Some(r) => got.push(r.unwrap()),
                        None => break,
                    },
                    _ = tokio::task::yield_now() => dropped += 1,
                }
            }
            assert_eq!(got, (0..N).map(|x| 2 * x).collect::<Vec<_>>(), "{name}");
            println!("{name}: {dropped} next() futures dropped");
        });
    }
}

/// Descriptors and threads are back where they were once the pool and the
/// runtime are gone.
#[test]
fn nothing_leaks_after_the_pool_and_the_runtime_end() {
    let _g = common::exclusive();
    drop(Pool::new(1).unwrap()); // the fork server starts once
    let fds = mproc::__private::open_fd_count();
    let tasks = thread_count();
    let children = common::descendant_ids();
    for (name, rt) in runtimes() {
        let pool = Pool::new(2).unwrap();
        rt.block_on(async {
            let r = pool.map_async_chunked(task, 0..100, Some(1)).unwrap();
            assert_eq!(r.await.unwrap().len(), 100);
            let e = pool.apply_async(task, -2).unwrap().await.unwrap_err();
            assert!(matches!(e, Error::Signaled { .. }), "{name}: {e:?}");
            let mut s = pool.imap_unordered(task, 0..100);
            while let Some(r) = next(&mut s).await {
                r.unwrap();
            }
            // Left pending when the pool goes.
            let gate = Gate::new(&format!("leaks-{name}"));
            let r = pool.apply_async(gated, gate.arg(1)).unwrap();
            let early = tokio::time::timeout(Duration::from_millis(1), r).await;
            assert!(early.is_err());
            drop(pool);
        });
        drop(rt);
    }
    assert!(
        common::eventually(GENEROUS, || thread_count() == tasks),
        "threads: {} then {}",
        tasks,
        thread_count()
    );
    assert!(common::eventually(GENEROUS, || common::descendant_ids() == children));
    assert_eq!(common::zombie_children(), Vec::<i32>::new());
    assert_eq!(mproc::__private::open_fd_count(), fds);
}
