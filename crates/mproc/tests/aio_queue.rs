//! Awaiting queues (feature `tokio`): `get_async`, `put_async` and
//! `JoinableQueue::join_async` under both tokio runtimes, their errors,
//! cancellation, and blocking and async users of one queue across
//! processes.
#![cfg(feature = "tokio")]

mod common;

use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

use common::{block_on_without_runtime, current_thread, multi_thread, thread_count};
use mproc::{Error, GetError, JoinableQueue, Process, PutError, Queue, SimpleQueue};

/// Every test reads, the leak test writes: under `cargo test` (threads of
/// one process) no other test opens descriptors while it counts them.
static EXCLUSIVE: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared() -> std::sync::RwLockReadGuard<'static, ()> {
    EXCLUSIVE.read().unwrap_or_else(|e| e.into_inner())
}

/// A generous guard: no test waits on it unless something hangs.
const GUARD: Duration = Duration::from_secs(60);

/// Runs `make()` on a current-thread runtime, then on a multi-thread one.
fn on_both<F: Future<Output = ()>>(make: impl Fn() -> F) {
    for rt in [current_thread(), multi_thread()] {
        rt.block_on(async { tokio::time::timeout(GUARD, make()).await.unwrap() });
    }
}

fn started<A: serde::Serialize + serde::de::DeserializeOwned + Send + 'static>(
    f: fn(A),
    args: A,
) -> Process {
    let mut p = Process::new(f, args);
    p.start().unwrap();
    p
}

async fn joined(mut p: Process) {
    p.join_async().await.unwrap();
    assert_eq!(p.exitcode(), Some(0));
}

#[test]
fn futures_complete_with_the_right_values() {
    let _g = shared();
    on_both(|| async {
        let q = Queue::bounded(2).unwrap();
        q.put_async(1u32).await.unwrap();
        q.put_async(2).await.unwrap();
        assert!(q.is_full());
        // A third waits for room, made by a get in another task.
        let q2 = q.clone();
        let third = tokio::spawn(async move { q2.put_async(3).await.map_err(Error::from) });
        assert_eq!(q.get_async().await.unwrap(), 1);
        third.await.unwrap().unwrap();
        assert_eq!(q.get_async().await.unwrap(), 2);
        assert_eq!(q.get_async().await.unwrap(), 3);
        // A get waits for an item put by another task.
        let q2 = q.clone();
        let got = tokio::spawn(async move { q2.get_async().await });
        tokio::task::yield_now().await;
        q.put(4).unwrap();
        assert_eq!(got.await.unwrap().unwrap(), 4);

        let s = SimpleQueue::new().unwrap();
        s.put_async("a".to_string()).await.unwrap();
        assert_eq!(s.get_async().await.unwrap(), "a");

        let j = JoinableQueue::new().unwrap();
        j.join_async().await.unwrap(); // nothing unfinished
        j.put_async(5u8).await.unwrap();
        let j2 = j.clone();
        let joiner = tokio::spawn(async move { j2.join_async().await });
        assert_eq!(j.get_async().await.unwrap(), 5);
        tokio::task::yield_now().await;
        assert!(!joiner.is_finished() || j.unfinished() == 0);
        j.task_done().unwrap();
        joiner.await.unwrap().unwrap();
    });
}

#[test]
fn futures_fail_as_the_blocking_calls_do() {
    let _g = shared();
    on_both(|| async {
        // A closed handle.
        let q = Queue::<u8>::bounded(1).unwrap();
        let closed = q.clone();
        closed.close();
        assert!(matches!(closed.get_async().await, Err(GetError::Closed)));
        assert!(matches!(
            closed.put_async(7).await,
            Err(PutError::Closed(7))
        ));
        // Shut down: a pending get and a pending put wake with ShutDown.
        let (g, p) = (q.clone(), q.clone());
        let getter = tokio::spawn(async move { g.get_async().await });
        tokio::task::yield_now().await;
        q.put(1).unwrap();
        assert_eq!(getter.await.unwrap().unwrap(), 1);
        q.put(2).unwrap();
        let putter = tokio::spawn(async move { p.put_async(3).await });
        tokio::task::yield_now().await;
        q.shutdown(false).unwrap();
        assert!(matches!(putter.await.unwrap(), Err(PutError::ShutDown(3))));
        assert_eq!(q.get_async().await.unwrap(), 2); // drained first
        assert!(matches!(q.get_async().await, Err(GetError::ShutDown)));
        let g = q.clone();
        assert!(matches!(
            tokio::spawn(async move { g.get_async().await })
                .await
                .unwrap(),
            Err(GetError::ShutDown)
        ));
        // A pending get woken by a shutdown from another process.
        let q = Queue::<u8>::new().unwrap();
        let g = q.clone();
        let getter = tokio::spawn(async move { g.get_async().await });
        joined(started(shut_down, q)).await;
        assert!(matches!(getter.await.unwrap(), Err(GetError::ShutDown)));
        // Immediate shutdown wakes a joiner.
        let j = JoinableQueue::<u8>::new().unwrap();
        j.put(1).unwrap();
        let j2 = j.clone();
        let joiner = tokio::spawn(async move { j2.join_async().await });
        tokio::task::yield_now().await;
        j.shutdown(true).unwrap();
        joiner.await.unwrap().unwrap();
    });
}

fn shut_down(q: Queue<u8>) {
    q.shutdown(false).unwrap();
}

#[test]
fn outside_a_runtime_a_waiting_future_is_a_typed_error() {
    let _g = shared();
    let q = Queue::<u8>::bounded(1).unwrap();
    let outcome = block_on_without_runtime(q.get_async());
    assert!(
        matches!(outcome, Err(GetError::Failed(Error::NoAsyncRuntime))),
        "{outcome:?}"
    );
    // One that need not wait completes.
    block_on_without_runtime(q.put_async(1)).unwrap();
    match block_on_without_runtime(q.put_async(2)) {
        Err(PutError::Failed(2, Error::NoAsyncRuntime)) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(block_on_without_runtime(q.get_async()).unwrap(), 1);
}

const ITEMS: u32 = 10_000;
const BATCH: u32 = 100;

/// Puts `ITEMS` numbers in batches, each after the consumer's go.
fn produce_in_batches((q, go): (Queue<u32>, Queue<()>)) {
    for batch in 0..ITEMS / BATCH {
        go.get().unwrap();
        for i in 0..BATCH {
            q.put(batch * BATCH + i).unwrap();
        }
    }
}

async fn select_drops_lose_nothing() {
    let (q, go) = (Queue::new().unwrap(), Queue::new().unwrap());
    let p = started(produce_in_batches, (q.clone(), go.clone()));
    go.put(()).unwrap();
    let (mut next, mut drops, mut round) = (0u32, 0u32, 0u32);
    while next < ITEMS || drops < ITEMS {
        round += 1;
        // Every other round races a branch that is ready at once (the
        // get, pending, is dropped after one poll: registered and
        // announced), the others a short sleep.
        let got = if round % 2 == 0 {
            tokio::select! {
                biased;
                r = q.get_async() => Some(r),
                () = std::future::ready(()) => None,
            }
        } else {
            tokio::select! {
                r = q.get_async() => Some(r),
                () = tokio::time::sleep(Duration::from_micros(200)) => None,
            }
        };
        match got {
            Some(r) => {
                assert_eq!(r.unwrap(), next, "items in order, each once");
                next += 1;
                if next % BATCH == 0 && next < ITEMS {
                    go.put(()).unwrap();
                }
            }
            None => drops += 1,
        }
    }
    joined(p).await;
    assert!(q.is_empty());
    assert!(q.try_get().is_err());
}

#[test]
fn a_select_that_drops_get_futures_loses_no_item_current_thread() {
    let _g = shared();
    current_thread().block_on(select_drops_lose_nothing());
}

#[test]
fn a_select_that_drops_get_futures_loses_no_item_multi_thread() {
    let _g = shared();
    multi_thread().block_on(select_drops_lose_nothing());
}

fn produce_then_shut_down((q, n): (Queue<u32>, u32)) {
    for i in 0..n {
        q.put(i).unwrap();
    }
    q.shutdown(false).unwrap();
}

fn consume_until_shut_down((q, out): (Queue<u32>, Queue<Vec<u32>>)) {
    let mut got = Vec::new();
    loop {
        match q.get() {
            Ok(v) => got.push(v),
            Err(GetError::ShutDown) => break,
            Err(e) => panic!("{e}"),
        }
    }
    out.put(got).unwrap();
}

fn consume_bounded((q, n, out): (Queue<u32>, u32, Queue<u64>)) {
    let sum = (0..n).map(|_| u64::from(q.get().unwrap())).sum();
    out.put(sum).unwrap();
}

#[test]
fn blocking_and_async_users_mix_across_processes() {
    let _g = shared();
    on_both(|| async {
        // A blocking producer child, an async consumer here.
        let q = Queue::new().unwrap();
        let p = started(produce_then_shut_down, (q.clone(), 5_000));
        let mut next = 0;
        loop {
            match q.get_async().await {
                Ok(v) => {
                    assert_eq!(v, next);
                    next += 1;
                }
                Err(GetError::ShutDown) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(next, 5_000);
        joined(p).await;

        // An async producer here into a bounded queue, a blocking consumer
        // child.
        let (q, out) = (Queue::bounded(4).unwrap(), Queue::new().unwrap());
        let p = started(consume_bounded, (q.clone(), 5_000, out.clone()));
        for i in 0..5_000u32 {
            q.put_async(i).await.unwrap();
        }
        assert_eq!(out.get_async().await.unwrap(), 4_999 * 5_000 / 2);
        joined(p).await;

        // A blocking consumer child (asleep inside the get lock while the
        // queue is empty) and an async consumer here, fed by a producer
        // child: every item taken once.
        let (q, out) = (Queue::new().unwrap(), Queue::new().unwrap());
        let consumer = started(consume_until_shut_down, (q.clone(), out.clone()));
        let producer = started(produce_then_shut_down, (q.clone(), 5_000));
        let mut mine = Vec::new();
        loop {
            match q.get_async().await {
                Ok(v) => mine.push(v),
                Err(GetError::ShutDown) => break,
                Err(e) => panic!("{e}"),
            }
        }
        let theirs = out.get_async().await.unwrap();
        joined(producer).await;
        joined(consumer).await;
        assert_exactly_once(5_000, [mine, theirs]);
    });
}

fn assert_exactly_once(n: u32, parts: impl IntoIterator<Item = Vec<u32>>) {
    let mut seen = HashSet::new();
    for v in parts.into_iter().flatten() {
        assert!(seen.insert(v), "{v} twice");
    }
    assert_eq!(seen.len(), n as usize);
}

/// Takes one item, asleep inside the get lock until it comes.
fn take_one((q, out): (Queue<u32>, Queue<u32>)) {
    out.put(q.get().unwrap()).unwrap();
}

#[test]
fn an_async_get_kept_out_by_a_blocking_get_is_woken_when_it_leaves() {
    let _g = shared();
    // A blocking consumer child sleeps inside the get lock; two items come
    // at once: the child takes one, the async get (whose tries found the
    // lock held) must be woken by the lock's release to take the other.
    let rt = current_thread();
    rt.block_on(async {
        for round in 0..40 {
            let (q, out) = (Queue::new().unwrap(), Queue::new().unwrap());
            let child = started(take_one, (q.clone(), out.clone()));
            // Wait until the child is inside its get (announced asleep).
            while !child_waits(&q) {
                tokio::task::yield_now().await;
            }
            let q2 = q.clone();
            let getter = tokio::spawn(async move { q2.get_async().await });
            tokio::task::yield_now().await;
            q.put(1).unwrap();
            q.put(2).unwrap();
            let mine = tokio::time::timeout(Duration::from_secs(10), getter)
                .await
                .unwrap_or_else(|_| panic!("round {round}: the async get was not woken"))
                .unwrap()
                .unwrap();
            let theirs = out.get_async().await.unwrap();
            assert_eq!(mine + theirs, 3);
            joined(child).await;
        }
    });
}

/// Whether a consumer is inside the get lock (the child, asleep in its
/// `get`, once it has started it).
fn child_waits(q: &Queue<u32>) -> bool {
    mproc::__private::queue_get_lock_held(q)
}

async fn several_consumers(tasks: usize) {
    let q = Queue::new().unwrap();
    let producer = started(produce_then_shut_down, (q.clone(), ITEMS));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let q = q.clone();
        handles.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                match q.get_async().await {
                    Ok(v) => got.push(v),
                    Err(GetError::ShutDown) => return got,
                    Err(e) => panic!("{e}"),
                }
            }
        }));
    }
    let mut parts = Vec::new();
    for h in handles {
        parts.push(h.await.unwrap());
    }
    joined(producer).await;
    assert_exactly_once(ITEMS, parts);
}

#[test]
fn several_async_consumers_in_tasks() {
    let _g = shared();
    on_both(|| several_consumers(4));
}

fn mark_done((q, n): (JoinableQueue<u32>, u32)) {
    for _ in 0..n {
        q.get().unwrap();
        q.task_done().unwrap();
    }
}

#[test]
fn join_async_waits_for_a_consumer_process() {
    let _g = shared();
    on_both(|| async {
        let q = JoinableQueue::new().unwrap();
        for i in 0..100 {
            q.put_async(i).await.unwrap();
        }
        let p = started(mark_done, (q.clone(), 100));
        q.join_async().await.unwrap();
        assert_eq!(q.unfinished(), 0);
        joined(p).await;
    });
}

#[test]
fn nothing_leaks_after_the_runtime_shuts_down() {
    let _g = EXCLUSIVE.write().unwrap_or_else(|e| e.into_inner());
    // Warm up: the fork server and helper threads hold descriptors and
    // threads of their own (this may be the first test of its process).
    for m in mproc::all_start_methods() {
        let mut p = Process::new(shut_down, Queue::new().unwrap()).start_method(m);
        p.start().unwrap();
        p.join().unwrap();
    }
    let (fds, threads) = (mproc::__private::open_fd_count(), thread_count());
    for rt in [current_thread(), multi_thread()] {
        rt.block_on(async {
            let q = Queue::new().unwrap();
            let p = started(produce_then_shut_down, (q.clone(), 1_000));
            // Pending gets dropped half-way, and completed ones.
            for _ in 0..100 {
                let _ = tokio::time::timeout(Duration::from_micros(50), q.get_async()).await;
            }
            while q.get_async().await.is_ok() {}
            joined(p).await;
        });
        drop(rt);
    }
    assert_eq!(mproc::__private::open_fd_count(), fds, "descriptors leaked");
    assert_eq!(thread_count(), threads, "threads left behind");
}

#[test]
fn an_immediate_shutdown_wakes_an_async_joiner() {
    let _g = shared();
    // The joiner runs on another worker and may look between the
    // shutdown's first wake and its marking the drained items done.
    multi_thread().block_on(async {
        for round in 0..300 {
            let j = JoinableQueue::<u8>::new().unwrap();
            j.put(1).unwrap();
            let j2 = j.clone();
            let joiner = tokio::spawn(async move { j2.join_async().await });
            for _ in 0..round % 4 {
                tokio::task::yield_now().await;
            }
            j.shutdown(true).unwrap();
            tokio::time::timeout(Duration::from_secs(10), joiner)
                .await
                .unwrap_or_else(|_| panic!("round {round}: the joiner was not woken"))
                .unwrap()
                .unwrap();
        }
    });
}

fn produce_range((q, from, n): (Queue<u32>, u32, u32)) {
    for i in from..from + n {
        q.put(i).unwrap();
    }
}

fn consume_n((q, n, out): (Queue<u32>, u32, Queue<Vec<u32>>)) {
    out.put((0..n).map(|_| q.get().unwrap()).collect()).unwrap();
}

#[test]
fn async_and_blocking_producers_share_a_bounded_queue() {
    let _g = shared();
    // A full queue of one item, a blocking producer child asleep inside the
    // put lock waiting for room, an async producer here whose tries find
    // the lock held, a blocking consumer child: every item once.
    on_both(|| async {
        let (q, out) = (Queue::bounded(1).unwrap(), Queue::new().unwrap());
        let consumer = started(consume_n, (q.clone(), 4_000, out.clone()));
        let producer = started(produce_range, (q.clone(), 0, 2_000));
        for i in 2_000..4_000 {
            q.put_async(i).await.unwrap();
        }
        let got = out.get_async().await.unwrap();
        joined(producer).await;
        joined(consumer).await;
        assert_exactly_once(4_000, [got]);
    });
}
