//! The pool and whole process trees (a task's own children go with its
//! worker: at the task timeout, at `terminate`), and recycling on growth
//! (`max_memory_per_child`). No test sleeps to synchronise: the tasks tell
//! the test their `sleep`'s pid through a queue, the test waits on
//! results and pidfds.

mod common;
mod grandchild;

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::Duration;

use common::GENEROUS;
use grandchild::{ends_within, sleep_and_wait, watch, Tag};
use mproc::{Error, Pool, Queue, StartMethod};

static SENT: OnceLock<Queue<i32>> = OnceLock::new();

fn keep_queue(q: Queue<i32>) {
    let _ = SENT.set(q);
}

fn sleeper(tag: String) {
    sleep_and_wait(&tag, SENT.get().expect("the initializer ran"));
}

fn pool_with_queue(method: StartMethod, timeout: Option<Duration>) -> (Pool, Queue<i32>) {
    let q = Queue::new().unwrap();
    let mut b = Pool::builder()
        .processes(1)
        .start_method(method)
        .initializer(keep_queue, q.clone());
    if let Some(t) = timeout {
        b = b.task_timeout(t);
    }
    (b.build().unwrap(), q)
}

/// A task that starts a `sleep` and then runs past its timeout: its worker
/// is stopped, and the `sleep` with it.
fn timeout_takes_the_tree(method: StartMethod) {
    let _g = common::shared();
    let tag = Tag::new();
    let (pool, q) = pool_with_queue(method, Some(Duration::from_secs(2)));
    let r = pool.apply_async(sleeper, tag.0.clone()).unwrap();
    let pid = q.get_timeout(GENEROUS).expect("the sleep started");
    let sleep = watch(pid, &tag);
    assert!(matches!(r.get(), Err(Error::TaskTimeout { .. })));
    assert!(
        ends_within(&sleep, GENEROUS),
        "{method}: the task's child outlived its timed-out worker"
    );
    assert_eq!(tag.bearers(), Vec::<i32>::new());
    // The replacement works.
    assert_eq!(pool.apply(double, 21).unwrap(), 42);
}

fn double(x: u64) -> u64 {
    2 * x
}

#[test]
fn a_timeout_takes_the_tree_fork() {
    timeout_takes_the_tree(StartMethod::Fork);
}

#[test]
fn a_timeout_takes_the_tree_spawn() {
    timeout_takes_the_tree(StartMethod::Spawn);
}

#[test]
fn a_timeout_takes_the_tree_forkserver() {
    timeout_takes_the_tree(StartMethod::ForkServer);
}

/// `terminate` while a task's `sleep` runs: the `sleep` goes too.
fn terminate_takes_the_tree(method: StartMethod) {
    let _g = common::shared();
    let tag = Tag::new();
    let (pool, q) = pool_with_queue(method, None);
    let r = pool.apply_async(sleeper, tag.0.clone()).unwrap();
    let pid = q.get_timeout(GENEROUS).expect("the sleep started");
    let sleep = watch(pid, &tag);
    pool.terminate();
    assert!(matches!(r.get(), Err(Error::PoolTerminated)));
    assert!(
        ends_within(&sleep, GENEROUS),
        "{method}: the task's child outlived its terminated pool"
    );
    assert_eq!(tag.bearers(), Vec::<i32>::new());
}

#[test]
fn terminate_takes_the_tree_fork() {
    terminate_takes_the_tree(StartMethod::Fork);
}

#[test]
fn terminate_takes_the_tree_spawn() {
    terminate_takes_the_tree(StartMethod::Spawn);
}

#[test]
fn terminate_takes_the_tree_forkserver() {
    terminate_takes_the_tree(StartMethod::ForkServer);
}

const MIB: u64 = 1 << 20;

/// This process's resident bytes (`/proc/self/statm`).
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    // SAFETY: a plain query.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// Keeps `mib` MiB (touched) for the worker's life; its pid and resident
/// bytes after.
fn leak(mib: u64) -> (i32, u64) {
    std::mem::forget(std::hint::black_box(vec![1u8; (mib * MIB) as usize]));
    (std::process::id() as i32, resident())
}

/// A worker's resident bytes once it ran nothing.
fn baseline(method: StartMethod) -> u64 {
    let pool = Pool::builder()
        .processes(1)
        .start_method(method)
        .build()
        .unwrap();
    pool.apply(leak, 0).unwrap().1
}

/// A worker that leaks 16 MiB a task is replaced after the task that left
/// it above the threshold, every result is kept, and the timeline records
/// each chunk's worker memory.
fn a_leaking_worker_is_recycled(method: StartMethod) {
    let _g = common::shared();
    let threshold = baseline(method) + 40 * MIB;
    let pool = Pool::builder()
        .processes(1)
        .start_method(method)
        .max_memory_per_child(threshold)
        .record_timeline(true)
        .build()
        .unwrap();
    let first = pool.pids();
    let out = pool.map_chunked(leak, vec![16; 12], Some(1)).unwrap();
    assert_eq!(out.len(), 12, "every result is kept");
    let pids: Vec<i32> = out.iter().map(|r| r.0).collect();
    let distinct: HashSet<i32> = pids.iter().copied().collect();
    assert!(distinct.len() >= 3, "{method}: recycled: {out:?}");
    assert_eq!(pids[0], first[0], "{method}");
    for (i, w) in out.windows(2).enumerate() {
        let ((pid, rss), (next, _)) = (w[0], w[1]);
        // The worker reads its memory after the task's own look: a little
        // more, never less than what the task saw (it keeps its leaks).
        if rss > threshold {
            assert_ne!(pid, next, "{method}: task {i} left {rss} > {threshold}");
        }
        if rss + 8 * MIB < threshold {
            assert_eq!(pid, next, "{method}: task {i} left {rss} < {threshold}");
        }
    }
    let t = pool.timeline();
    assert_eq!(t.events().len(), 12);
    for (e, (pid, rss)) in t.events().iter().zip(&out) {
        assert_eq!(e.pid, *pid);
        let memory = e.memory.expect("recorded");
        assert!(memory + 4 * MIB >= *rss, "{memory} {rss}");
    }
}

#[test]
fn a_leaking_worker_is_recycled_fork() {
    a_leaking_worker_is_recycled(StartMethod::Fork);
}

#[test]
fn a_leaking_worker_is_recycled_spawn() {
    a_leaking_worker_is_recycled(StartMethod::Spawn);
}

#[test]
fn a_leaking_worker_is_recycled_forkserver() {
    a_leaking_worker_is_recycled(StartMethod::ForkServer);
}

/// Under the threshold, a worker runs everything.
#[test]
fn a_worker_under_the_threshold_stays() {
    let _g = common::shared();
    for method in mproc::all_start_methods() {
        let threshold = baseline(method) + 256 * MIB;
        let pool = Pool::builder()
            .processes(1)
            .start_method(method)
            .max_memory_per_child(threshold)
            .build()
            .unwrap();
        let out = pool.map_chunked(leak, vec![0; 200], Some(1)).unwrap();
        let pids: HashSet<i32> = out.iter().map(|r| r.0).collect();
        assert_eq!(pids.len(), 1, "{method}");
    }
}

/// Many workers, tiny chunks pipelined: a retiring worker's held chunks
/// go to others (or its replacement), in order, none lost or run twice.
#[test]
fn held_chunks_of_a_retiring_worker_are_run_elsewhere() {
    let _g = common::shared();
    let method = StartMethod::ForkServer;
    let threshold = baseline(method) + 24 * MIB;
    let pool = Pool::builder()
        .processes(2)
        .start_method(method)
        .max_memory_per_child(threshold)
        .build()
        .unwrap();
    let sizes: Vec<u64> = (0..400).map(|i| u64::from(i % 50 == 0) * 8).collect();
    let items: Vec<(usize, u64)> = sizes.into_iter().enumerate().collect();
    let out = pool.map_chunked(leak_or_echo, items, Some(1)).unwrap();
    let order: Vec<usize> = out.iter().map(|r| r.0).collect();
    assert_eq!(order, (0..400).collect::<Vec<_>>());
    let pids: HashSet<i32> = out.iter().map(|r| r.1).collect();
    assert!(pids.len() > 2, "recycled: {pids:?}");
}

fn leak_or_echo((i, mib): (usize, u64)) -> (usize, i32) {
    (i, leak(mib).0)
}

/// A threshold of 0 is refused.
#[test]
fn a_zero_threshold_is_refused() {
    let _g = common::shared();
    let e = Pool::builder().max_memory_per_child(0).build().unwrap_err();
    assert!(matches!(e, Error::InvalidArgument(_)), "{e}");
}
