//! `Pool` with real worker processes.
//!
//! The behaviours CPython's `Lib/test/_test_multiprocessing.py` checks for
//! pools (`_TestPool`: apply, map with and without chunksize, starmap,
//! map_async, imap order, imap_unordered set equality, empty input,
//! terminate with many queued tasks, maxtasksperchild, initializer,
//! unpicklable results), rewritten in Rust, plus mproc's own promises:
//! each way a worker can die fails only its task, timeouts, and nothing
//! leaks. No test sleeps to synchronise: tasks may sleep to stay busy, the
//! test waits on results.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{Unserialisable, LONG};
use mproc::{Error, Pool};

/// `2 * x`, or a misdeed chosen by a negative `x`.
fn task(x: i64) -> i64 {
    match x {
        -1 => panic!("task {x} panicked"),
        -2 => {
            // SAFETY: signalling oneself; the worker dies of it.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
            unreachable!()
        }
        -3 => std::process::abort(),
        -4 => {
            let p = std::ptr::null_mut::<u64>().wrapping_add(2);
            // SAFETY: none; the point is to fault (see tests/process.rs).
            unsafe { std::ptr::write_volatile(p, 1) };
            unreachable!()
        }
        -5 => std::process::exit(3),
        -6 => {
            std::thread::sleep(LONG);
            0
        }
        x => 2 * x,
    }
}

fn pid(_: u32) -> i32 {
    std::process::id() as i32
}

fn pool(n: usize) -> Pool {
    Pool::new(n).unwrap()
}

#[test]
fn map_keeps_input_order_with_any_chunksize() {
    let _g = common::shared();
    let p = pool(2);
    let want: Vec<i64> = (0..1000).map(|x| 2 * x).collect();
    assert_eq!(p.map(task, 0..1000).unwrap(), want);
    for c in [1, 2, 7, 1000, 5000] {
        assert_eq!(p.map_chunked(task, 0..1000, Some(c)).unwrap(), want, "{c}");
    }
    assert!(matches!(
        p.map_chunked(task, 0..3, Some(0)),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn empty_input_gives_empty_results_at_once() {
    let _g = common::shared();
    let p = pool(1);
    assert!(p.map(task, Vec::new()).unwrap().is_empty());
    assert!(p
        .map_async(task, Vec::new())
        .unwrap()
        .get()
        .unwrap()
        .is_empty());
    assert_eq!(p.imap(task, Vec::new()).count(), 0);
    assert_eq!(p.imap_unordered(task, Vec::new()).count(), 0);
    assert!(p
        .starmap(|a: u8, b: u8| a + b, Vec::<(u8, u8)>::new())
        .unwrap()
        .is_empty());
}

#[test]
fn apply_starmap_and_async_forms() {
    let _g = common::shared();
    let p = pool(2);
    assert_eq!(p.apply(task, 21).unwrap(), 42);
    let pairs: Vec<(String, usize)> = (0..50).map(|i| ("ab".repeat(i), i)).collect();
    let lens = p.starmap(|s: String, n: usize| s.len() - n, pairs).unwrap();
    assert_eq!(lens, (0..50).collect::<Vec<_>>());

    let r = p.apply_async(task, 5).unwrap();
    r.wait();
    assert!(r.ready());
    assert!(r.successful().unwrap());
    assert_eq!(r.get().unwrap(), 10);

    let mut m = p.map_async(task, [1, -1, 3]).unwrap();
    assert!(m.wait_timeout(common::GENEROUS));
    assert!(!m.successful().unwrap());
    assert!(matches!(
        m.get_timeout(Duration::ZERO),
        Err(Error::Panicked { .. })
    ));
    assert!(matches!(
        m.get_timeout(Duration::ZERO),
        Err(Error::InvalidState(_))
    ));
}

#[test]
fn successful_before_ready_is_an_error() {
    let _g = common::shared();
    let p = pool(1);
    let mut r = p.apply_async(task, -6).unwrap();
    assert!(!r.ready());
    assert!(matches!(r.successful(), Err(Error::InvalidState(_))));
    assert!(matches!(
        r.get_timeout(Duration::from_millis(1)),
        Err(Error::Timeout)
    ));
    assert!(!r.wait_timeout(Duration::ZERO));
    p.terminate();
    assert!(matches!(
        r.get_timeout(common::GENEROUS),
        Err(Error::PoolTerminated)
    ));
}

#[test]
fn a_panic_fails_its_item_and_the_worker_survives() {
    let _g = common::shared();
    let p = pool(2);
    let before = p.pids();
    let r = p
        .map_results_chunked(task, [1, -1, 3, -1, 5], Some(2))
        .unwrap();
    assert_eq!(r[0].as_ref().ok(), Some(&2));
    match &r[1] {
        Err(Error::Panicked {
            message, location, ..
        }) => {
            assert_eq!(message, "task -1 panicked");
            assert!(location.contains("tests/pool.rs"), "{location}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r[2].as_ref().ok(), Some(&6));
    assert!(r[3].is_err());
    assert_eq!(r[4].as_ref().ok(), Some(&10));
    assert!(matches!(p.map(task, [1, -1]), Err(Error::Panicked { .. })));
    assert_eq!(p.pids(), before);
}

/// `map` decodes the chunks that succeed straight into its result and
/// reports the first failure in input order, whichever chunk ends first.
#[test]
fn map_reports_the_first_failure_in_input_order() {
    let _g = common::shared();
    let p = pool(2);
    let mut items: Vec<i64> = (0..4000).collect();
    items[3000] = -1;
    items[3500] = -5;
    match p.map(task, items.clone()) {
        Err(Error::Panicked { message, .. }) => assert_eq!(message, "task -1 panicked"),
        other => panic!("{other:?}"),
    }
    items.swap(3000, 3500);
    assert!(matches!(
        p.map(task, items),
        Err(Error::Exited { code: 3, .. })
    ));
    let want: Vec<i64> = (0..4000).map(|x| 2 * x).collect();
    assert_eq!(p.map(task, 0..4000).unwrap(), want);
    let r = p.map_results(task, [4, -1, 6]).unwrap();
    assert!(matches!(
        r[..],
        [Ok(8), Err(Error::Panicked { .. }), Ok(12)]
    ));
}

/// Each way a worker can die fails that task only; the worker is replaced.
#[test]
fn each_death_fails_only_its_task() {
    let _g = common::shared();
    let p = pool(2);
    for (cause, check) in [
        (
            -2,
            (|e: &Error| matches!(e, Error::Signaled { signal: 9, .. })) as fn(&Error) -> bool,
        ),
        (-3, |e| matches!(e, Error::Signaled { signal: 6, .. })),
        (-4, |e| matches!(e, Error::Signaled { signal: 11, .. })),
        (-5, |e| matches!(e, Error::Exited { code: 3, .. })),
    ] {
        let before: HashSet<i32> = p.pids().into_iter().collect();
        let input: Vec<i64> = (0..40).map(|i| if i == 17 { cause } else { i }).collect();
        let r = p.map_results_chunked(task, input, Some(1)).unwrap();
        for (i, item) in r.iter().enumerate() {
            if i == 17 {
                let e = item.as_ref().unwrap_err();
                assert!(check(e), "{cause}: {e}");
                let pid = match e {
                    Error::Signaled { pid, .. } | Error::Exited { pid, .. } => *pid,
                    _ => unreachable!(),
                };
                assert!(before.contains(&pid), "{e} names a worker");
            } else {
                assert_eq!(
                    item.as_ref().ok(),
                    Some(&(2 * i as i64)),
                    "{cause}: item {i}"
                );
            }
        }
        // The error is delivered before the replacement starts.
        let replaced = || {
            let after: HashSet<i32> = p.pids().into_iter().collect();
            after.len() == 2 && before.intersection(&after).count() == 1
        };
        assert!(
            common::eventually(common::GENEROUS, replaced),
            "{cause}: one replaced"
        );
    }
    assert_eq!(p.map(task, 0..10).unwrap().len(), 10);
}

#[test]
fn a_task_past_its_timeout_fails_and_its_worker_is_replaced() {
    let _g = common::shared();
    let p = Pool::builder()
        .processes(2)
        .task_timeout(Duration::from_millis(300))
        .grace_period(Duration::from_millis(100))
        .build()
        .unwrap();
    let started = Instant::now();
    let r = p.map_results_chunked(task, [1, -6, 3, 4], Some(1)).unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(matches!(r[1], Err(Error::TaskTimeout { .. })), "{:?}", r[1]);
    assert_eq!(r.iter().filter(|x| x.is_ok()).count(), 3);
    assert_eq!(p.apply(task, 8).unwrap(), 16);
}

#[test]
fn imap_keeps_order_with_chunksizes_1_2_4() {
    let _g = common::shared();
    let p = pool(2);
    for c in [1, 2, 4] {
        let got: Vec<i64> = p
            .imap_chunked(task, 0..301, c)
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, (0..301).map(|x| 2 * x).collect::<Vec<_>>(), "{c}");
    }
    let got: Vec<Result<i64, Error>> = p.imap(task, [1, -1, 2]).collect();
    assert!(got[0].is_ok() && got[1].is_err() && got[2].is_ok());
}

#[test]
fn imap_unordered_gives_the_same_set() {
    let _g = common::shared();
    let p = pool(2);
    for c in [1, 3] {
        let got: HashSet<i64> = p
            .imap_unordered_chunked(task, 0..500, c)
            .map(Result::unwrap)
            .collect();
        assert_eq!(got, (0..500).map(|x| 2 * x).collect(), "{c}");
    }
}

/// The input is read lazily: an endless iterator works, and no more than
/// the window is read ahead.
#[test]
fn imap_reads_input_lazily() {
    let _g = common::shared();
    let p = pool(2);
    static PULLED: AtomicU32 = AtomicU32::new(0);
    let input = (0..).inspect(|_| {
        PULLED.fetch_add(1, Ordering::Relaxed);
    });
    let got: Vec<i64> = p.imap(task, input).take(10).map(Result::unwrap).collect();
    assert_eq!(got, (0..10).map(|x| 2 * x).collect::<Vec<_>>());
    let pulled = PULLED.load(Ordering::Relaxed);
    assert!(pulled <= 10 + 1024 * 2, "read {pulled} items ahead");
    // Constant memory over many items of an endless input.
    let n = p
        .imap_unordered(task, 0..)
        .take(20_000)
        .filter(|r| r.is_ok())
        .count();
    assert_eq!(n, 20_000);
}

#[test]
fn imap_next_timeout() {
    let _g = common::shared();
    let p = pool(1);
    let mut it = p.imap(task, [-6, 1]);
    assert!(matches!(
        it.next_timeout(Duration::from_millis(20)),
        Some(Err(Error::Timeout))
    ));
    p.terminate();
    assert!(matches!(
        it.next_timeout(common::GENEROUS),
        Some(Err(Error::PoolTerminated))
    ));
}

#[test]
fn terminate_with_10000_queued_long_tasks_returns_promptly() {
    let _g = common::shared();
    let mut p = pool(2);
    let r = p.map_async(task, vec![-6; 10_000]).unwrap();
    let started = Instant::now();
    p.terminate();
    p.join().unwrap();
    assert!(matches!(r.get(), Err(Error::PoolTerminated)));
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn max_tasks_per_child_changes_pids() {
    let _g = common::shared();
    let p = Pool::builder()
        .processes(1)
        .max_tasks_per_child(2)
        .build()
        .unwrap();
    let pids: HashSet<i32> = p
        .map_chunked(pid, 0..10, Some(1))
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(pids.len(), 5, "{pids:?}");
}

static INIT_RUNS: AtomicU32 = AtomicU32::new(0);

fn init(add: u32) {
    INIT_RUNS.fetch_add(add, Ordering::Relaxed);
}

fn init_runs(_: u32) -> (i32, u32) {
    (std::process::id() as i32, INIT_RUNS.load(Ordering::Relaxed))
}

#[test]
fn initializer_runs_once_per_worker() {
    let _g = common::shared();
    let p = Pool::builder()
        .processes(2)
        .initializer(init, 1)
        .build()
        .unwrap();
    let runs = p.map_chunked(init_runs, 0..200, Some(1)).unwrap();
    assert!(runs.iter().all(|&(_, n)| n == 1), "{runs:?}");
    assert_eq!(INIT_RUNS.load(Ordering::Relaxed), 0, "not in the parent");
}

static SHARED: std::sync::OnceLock<(mproc::Queue<u32>, mproc::Value<u64>)> =
    std::sync::OnceLock::new();

fn init_shared(handles: (mproc::Queue<u32>, mproc::Value<u64>)) {
    let _ = SHARED.set(handles);
}

fn report(x: u32) -> u32 {
    let (q, total) = SHARED.get().expect("initializer ran");
    *total.lock().unwrap() += u64::from(x);
    q.put(x).unwrap();
    x
}

/// CPython's `Pool(initializer=f, initargs=(queue, lock))`: handles in the
/// initializer's arguments reach every worker, replacements included.
#[test]
fn initializer_arguments_carry_handles() {
    let _g = common::shared();
    let q = mproc::Queue::<u32>::new().unwrap();
    let total = mproc::Value::new(0u64).unwrap();
    let p = Pool::builder()
        .processes(2)
        .max_tasks_per_child(3)
        .initializer(init_shared, (q.clone(), total.clone()))
        .build()
        .unwrap();
    let out = p.map_chunked(report, 1..=20, Some(1)).unwrap();
    assert_eq!(out, (1..=20).collect::<Vec<_>>());
    let mut got: Vec<u32> = (0..20).map(|_| q.get().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, out);
    assert!(q.try_get().is_err(), "nothing more");
    assert_eq!(*total.lock().unwrap(), 210);
}

fn init_panics(_: ()) {
    panic!("no init")
}

#[test]
fn a_failing_initializer_fails_build() {
    let _g = common::shared();
    let r = Pool::builder()
        .processes(2)
        .initializer(init_panics, ())
        .build();
    assert!(matches!(r, Err(Error::Exited { code: 1, .. })), "{r:?}");
    assert!(matches!(Pool::new(0), Err(Error::InvalidArgument(_))));
}

fn unserialisable(_: u32) -> Unserialisable {
    Unserialisable
}

#[test]
fn unserialisable_results_lose_no_worker() {
    let _g = common::shared();
    let p = pool(2);
    let pids = p.pids();
    for _ in 0..20 {
        assert!(matches!(p.apply(unserialisable, 1), Err(Error::Encode(_))));
    }
    assert_eq!(p.pids(), pids);
}

#[test]
fn lifecycle_errors_and_close_finishes_queued_work() {
    let _g = common::shared();
    let mut p = pool(2);
    assert!(matches!(p.join(), Err(Error::InvalidState(_))));
    let r = p.map_async(task, 0..100).unwrap();
    p.close();
    assert!(p.apply(task, 1).is_err());
    p.join().unwrap();
    assert_eq!(r.get().unwrap().len(), 100);
    assert!(p.pids().is_empty());
    p.terminate();
    assert!(matches!(p.apply(task, 1), Err(Error::PoolTerminated)));
}

#[test]
fn break_on_worker_death_breaks_the_pool() {
    let _g = common::shared();
    let p = Pool::builder()
        .processes(2)
        .break_on_worker_death(true)
        .build()
        .unwrap();
    let r = p
        .map_results_chunked(task, [1, -2, -6, -6, -6], Some(1))
        .unwrap();
    assert!(
        matches!(r[1], Err(Error::Signaled { signal: 9, .. })),
        "{:?}",
        r[1]
    );
    assert!(
        r[2..]
            .iter()
            .all(|x| matches!(x, Err(Error::PoolBroken { .. }))),
        "{r:?}"
    );
    assert!(matches!(p.apply(task, 1), Err(Error::PoolBroken { .. })));
}

#[test]
fn pools_under_fork_and_spawn() {
    let _g = common::shared();
    for m in [mproc::StartMethod::Fork, mproc::StartMethod::Spawn] {
        let p = mproc::get_context(Some(m)).pool(2).unwrap();
        assert_eq!(p.map(task, 0..10).unwrap()[9], 18, "{m}");
        assert!(
            matches!(p.apply(task, -2), Err(Error::Signaled { .. })),
            "{m}"
        );
    }
}

#[test]
fn thousand_create_drop_cycles_leave_nothing() {
    let _g = common::exclusive();
    drop(pool(1)); // the fork server starts once
    let fds = mproc::__private::open_fd_count();
    let before = common::descendant_ids();
    for i in 0..1000 {
        let p = pool(2);
        if i % 2 == 0 {
            assert_eq!(p.apply(task, 1).unwrap(), 2);
        }
    }
    assert!(common::eventually(
        common::GENEROUS,
        || common::descendant_ids() == before
    ));
    assert_eq!(common::zombie_children(), Vec::<i32>::new());
    assert_eq!(mproc::__private::open_fd_count(), fds);
}

/// 100,000 tasks while a worker is killed every 5,000 results (19 kills):
/// every task is accounted for once, as its value or its worker's death.
#[test]
fn soak_with_worker_kills_accounts_for_every_task() {
    let _g = common::shared();
    let p = pool(2);
    let (mut ok, mut died) = (0u64, 0u64);
    let mut seen = vec![false; 100_000];
    for (i, r) in p.imap(task, 0..100_000).enumerate() {
        if i % 5_000 == 4_999 && i < 95_000 {
            if let Some(&pid) = p.pids().first() {
                // SAFETY: a plain kill(2) of one of our workers.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        match r {
            Ok(v) => {
                assert_eq!(v, 2 * i as i64);
                ok += 1;
            }
            Err(Error::Signaled { signal: 9, .. }) => died += 1,
            Err(e) => panic!("item {i}: {e}"),
        }
        assert!(!std::mem::replace(&mut seen[i], true));
    }
    assert_eq!(ok + died, 100_000);
    assert!(died <= 19, "{died} tasks failed for 19 kills");
    assert_eq!(p.map(task, 0..10).unwrap().len(), 10);
}

/// Same soak with `retry_on_worker_death`, the kills at pseudo-random
/// points of either worker (the seed is printed): every task is accounted
/// for exactly once, as its value (the killed ones re-ran elsewhere).
#[test]
fn soak_with_random_worker_kills_and_retries_gives_every_value_once() {
    let _g = common::shared();
    let p = Pool::builder()
        .processes(2)
        .retry_on_worker_death(3)
        .record_timeline(true)
        .build()
        .unwrap();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    println!("seed {seed}");
    let mut random = move |n: u64| {
        // xorshift64
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut next_kill = 1_000 + random(8_000) as usize;
    let mut kills = 0;
    let mut seen = vec![false; 100_000];
    for (i, r) in p.imap(task, 0..100_000).enumerate() {
        if i == next_kill && i < 95_000 {
            let pids = p.pids();
            if !pids.is_empty() {
                let pid = pids[random(pids.len() as u64) as usize];
                // SAFETY: a plain kill(2) of one of our workers.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                kills += 1;
            }
            next_kill += 1_000 + random(8_000) as usize;
        }
        match r {
            Ok(v) => assert_eq!(v, 2 * i as i64),
            Err(e) => panic!("item {i} (after {kills} kills): {e}"),
        }
        assert!(!std::mem::replace(&mut seen[i], true));
    }
    assert!(seen.iter().all(|&s| s));
    assert!(kills >= 9, "{kills} kills");
    // The timeline: each chunk replied exactly once; the runs cut short
    // by a kill are the retries.
    let t = p.take_timeline();
    let mut replied = vec![0u8; 100_000];
    let mut cut = 0;
    for e in t.events() {
        if e.replied {
            replied[e.chunk] += 1;
        } else {
            cut += 1;
        }
    }
    assert!(replied.iter().all(|&n| n == 1));
    println!("{kills} kills, {cut} runs cut short and retried");
    assert!(cut <= kills);
    assert_eq!(p.map(task, 0..10).unwrap().len(), 10);
}

fn nap(x: u32) -> u32 {
    std::thread::sleep(Duration::from_millis(1));
    x
}

#[test]
fn timeline_records_each_task_once_without_overlap() {
    let _g = common::shared();
    let p = Pool::builder()
        .processes(2)
        .record_timeline(true)
        .build()
        .unwrap();
    let n = 60;
    assert_eq!(p.map_chunked(nap, 0..n, Some(1)).unwrap().len(), n as usize);
    let pids: HashSet<i32> = p.pids().into_iter().collect();
    let t = p.take_timeline();
    let ev = t.events();
    assert_eq!(ev.len(), n as usize);
    let chunks: HashSet<usize> = ev.iter().map(|e| e.chunk).collect();
    assert_eq!(chunks, (0..n as usize).collect());
    let tasks: HashSet<u64> = ev.iter().map(|e| e.task).collect();
    assert_eq!(tasks.len(), n as usize);
    for e in ev {
        assert!(e.end >= e.start, "{e:?}");
        assert!(e.duration() >= Duration::from_millis(1), "{e:?}");
        assert!(e.replied && e.worker < 2 && pids.contains(&e.pid), "{e:?}");
    }
    for w in 0..2 {
        let mine: Vec<_> = ev.iter().filter(|e| e.worker == w).collect();
        for pair in mine.windows(2) {
            assert!(
                pair[0].end <= pair[1].start,
                "{:?} overlaps {:?}",
                pair[0],
                pair[1]
            );
        }
    }
    let json: serde_json::Value = serde_json::from_str(&t.to_chrome_trace()).unwrap();
    let complete: Vec<_> = json["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["ph"] == "X")
        .collect();
    assert_eq!(complete.len(), n as usize);
    for e in complete {
        assert!(e["name"].as_str().unwrap().starts_with("task "));
        assert!(e["ts"].as_f64().unwrap() >= 0.0);
        assert!(e["dur"].as_f64().unwrap() >= 1000.0);
        let pid = e["pid"].as_i64().unwrap() as i32;
        assert!(pids.contains(&pid) && e["tid"] == e["pid"]);
    }
    let ascii = t.to_ascii(80);
    assert_eq!(
        ascii.lines().filter(|l| l.starts_with("worker ")).count(),
        2,
        "{ascii}"
    );
    // Taken: the record starts again.
    assert!(p.timeline().events().is_empty());
    p.map(nap, [1]).unwrap();
    assert_eq!(p.timeline().events().len(), 1);
    // Off by default.
    let quiet = pool(1);
    quiet.map(nap, [1, 2]).unwrap();
    assert!(quiet.timeline().events().is_empty());
}

/// A task that always kills its worker runs 1 + retries times (each run
/// in the timeline), then fails with the death; the others succeed.
#[test]
fn retries_are_bounded_and_recorded() {
    let _g = common::shared();
    let p = Pool::builder()
        .processes(2)
        .retry_on_worker_death(2)
        .record_timeline(true)
        .build()
        .unwrap();
    let r = p.map_results_chunked(task, [1, -2, 3], Some(1)).unwrap();
    assert_eq!(r[0].as_ref().ok(), Some(&2));
    assert!(
        matches!(r[1], Err(Error::Signaled { signal: 9, .. })),
        "{:?}",
        r[1]
    );
    assert_eq!(r[2].as_ref().ok(), Some(&6));
    let t = p.timeline();
    let runs: Vec<_> = t.events().iter().filter(|e| e.chunk == 1).collect();
    assert_eq!(runs.len(), 3, "{runs:?}");
    assert!(runs.iter().all(|e| !e.replied));
    let pids: HashSet<i32> = runs.iter().map(|e| e.pid).collect();
    assert_eq!(pids.len(), 3, "each run on another worker process");
    // Timeouts are not retried.
    let p = Pool::builder()
        .processes(1)
        .retry_on_worker_death(2)
        .task_timeout(Duration::from_millis(300))
        .grace_period(Duration::from_millis(50))
        .record_timeline(true)
        .build()
        .unwrap();
    let r = p.map_results_chunked(task, [-6], Some(1)).unwrap();
    assert!(matches!(r[0], Err(Error::TaskTimeout { .. })), "{:?}", r[0]);
    assert_eq!(p.timeline().events().len(), 1);
}

/// Python's `int` on a string.
fn int(s: String) -> i64 {
    s.parse()
        .unwrap_or_else(|_| panic!("invalid literal for int(): {s:?}"))
}

/// What a callback saw, and in which thread.
#[derive(Debug)]
enum Seen {
    Value(Vec<i64>, Option<String>),
    Error(String),
}

fn recorder() -> (
    std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
    mproc::Callbacks<Vec<i64>>,
) {
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (a, b) = (calls.clone(), calls.clone());
    let cbs = mproc::Callbacks::new()
        .callback(move |v: &Vec<i64>| {
            let name = std::thread::current().name().map(String::from);
            a.lock().unwrap().push(Seen::Value(v.clone(), name))
        })
        .error_callback(move |e| b.lock().unwrap().push(Seen::Error(e.to_string())));
    (calls, cbs)
}

/// CPython's `test_map_async_callbacks`: one call, to the right callback,
/// done by the time `wait` returns; in the pool's callback thread.
#[test]
fn map_async_callbacks_as_cpython() {
    let _g = common::shared();
    let p = pool(2);
    let (calls, cbs) = recorder();
    p.map_async_with(int, ["1".to_string()], None, cbs)
        .unwrap()
        .wait();
    {
        let c = calls.lock().unwrap();
        assert_eq!(c.len(), 1);
        assert!(
            matches!(&c[0], Seen::Value(v, Some(t)) if *v == [1] && t == "mproc-pool-callbacks"),
            "{c:?}"
        );
    }
    let (calls, cbs) = recorder();
    let r = p.map_async_with(int, ["a".to_string()], None, cbs).unwrap();
    r.wait();
    assert!(!r.successful().unwrap());
    {
        let c = calls.lock().unwrap();
        assert_eq!(c.len(), 1);
        assert!(
            matches!(&c[0], Seen::Error(e) if e.contains("invalid literal")),
            "{c:?}"
        );
    }
    assert!(matches!(r.get(), Err(Error::Panicked { .. })));
    // Empty input: the callback gets an empty list at once.
    let (calls, cbs) = recorder();
    let r = p.map_async_with(int, Vec::new(), None, cbs).unwrap();
    assert!(r.get().unwrap().is_empty());
    assert!(matches!(&calls.lock().unwrap()[..], [Seen::Value(v, _)] if v.is_empty()));
}

/// CPython's `test_async_error_callback`, and `callback` on success.
#[test]
fn apply_async_callbacks() {
    let _g = common::shared();
    let p = pool(2);
    let (tx, rx) = std::sync::mpsc::channel();
    let r = p
        .apply_async_with(
            task,
            -1,
            mproc::Callbacks::new()
                .callback(|_: &i64| panic!("not this one"))
                .error_callback(move |e| tx.send(e.to_string()).unwrap()),
        )
        .unwrap();
    assert!(matches!(r.get(), Err(Error::Panicked { .. })));
    assert!(rx.try_recv().unwrap().contains("task -1 panicked"));
    let (tx, rx) = std::sync::mpsc::channel();
    let mut r = p
        .apply_async_with(
            task,
            21,
            mproc::Callbacks::new().callback(move |v: &i64| tx.send(*v).unwrap()),
        )
        .unwrap();
    assert_eq!(r.get_timeout(LONG).unwrap(), 42);
    assert_eq!(rx.try_recv().unwrap(), 42);
    assert!(r.get_timeout(Duration::ZERO).is_err(), "taken once");
}

/// A panicking callback harms neither the pool nor the callbacks after it.
#[test]
fn a_panicking_callback_does_not_kill_the_pool() {
    let _g = common::shared();
    let p = pool(2);
    let r = p
        .map_async_with(
            task,
            [1, 2],
            None,
            mproc::Callbacks::new().callback(|_: &Vec<i64>| panic!("callback panics")),
        )
        .unwrap();
    assert_eq!(r.get().unwrap(), [2, 4]);
    let (calls, cbs) = recorder();
    p.map_async_with(int, ["7".to_string()], None, cbs)
        .unwrap()
        .wait();
    assert_eq!(calls.lock().unwrap().len(), 1);
    assert_eq!(p.map(task, 0..3).unwrap(), [0, 2, 4]);
}

/// Terminating or dropping the pool runs the pending error callbacks once,
/// with `PoolTerminated`, before `join` or the drop returns.
#[test]
fn terminate_and_drop_run_pending_callbacks_once() {
    let _g = common::shared();
    let count = std::sync::Arc::new(AtomicU32::new(0));
    let mut p = pool(1);
    let mut results = Vec::new();
    for _ in 0..5 {
        let c = count.clone();
        results.push(
            p.apply_async_with(
                task,
                -6, // sleeps LONG
                mproc::Callbacks::new().error_callback(move |e| {
                    assert!(matches!(e, Error::PoolTerminated), "{e}");
                    c.fetch_add(1, Ordering::SeqCst);
                }),
            )
            .unwrap(),
        );
    }
    p.terminate();
    p.join().unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 5);
    for r in results {
        assert!(matches!(r.get(), Err(Error::PoolTerminated)));
    }
    let count = std::sync::Arc::new(AtomicU32::new(0));
    let p = pool(1);
    for _ in 0..3 {
        let c = count.clone();
        // Dropped unread (with the feature `tokio` it is a future: `drop`
        // says it is meant).
        drop(
            p.apply_async_with(
                task,
                -6,
                mproc::Callbacks::new().error_callback(move |_| {
                    c.fetch_add(1, Ordering::SeqCst);
                }),
            )
            .unwrap(),
        );
    }
    drop(p);
    assert_eq!(count.load(Ordering::SeqCst), 3);
}

fn join6(a: u8, b: u16, c: u32, d: u64, e: String, f: char) -> String {
    format!("{a}{b}{c}{d}{e}{f}")
}

/// `starmap` over tuples of 1 to 8 arguments, in input order.
#[test]
fn starmap_takes_one_to_eight_arguments() {
    let _g = common::shared();
    let p = pool(2);
    assert_eq!(p.starmap(|a: i32| -a, [(1,), (2,)]).unwrap(), [-1, -2]);
    assert_eq!(
        p.starmap(
            |a: i32, b: i32, c: i32| a * b + c,
            (0..50).map(|i| (i, 2, 1))
        )
        .unwrap(),
        (0..50).map(|i| 2 * i + 1).collect::<Vec<_>>()
    );
    assert_eq!(
        p.starmap(|a: u8, b: u8, c: u8, d: u8| [a, b, c, d], [(1, 2, 3, 4)])
            .unwrap(),
        [[1, 2, 3, 4]]
    );
    assert_eq!(
        p.starmap(
            |a: u8, b: u8, c: u8, d: u8, e: u8| a + b + c + d + e,
            [(1, 2, 3, 4, 5)]
        )
        .unwrap(),
        [15]
    );
    let six = [
        (1, 2, 3, 4, "e".to_string(), 'f'),
        (9, 8, 7, 6, "x".into(), 'y'),
    ];
    assert_eq!(
        p.starmap(join6 as fn(_, _, _, _, _, _) -> _, six.clone())
            .unwrap(),
        ["1234ef", "9876xy"]
    );
    assert_eq!(
        p.starmap_chunked(
            |a: u8, b: u16, c: u32, d: u64, e: String, f: char| join6(a, b, c, d, e, f),
            six,
            Some(1)
        )
        .unwrap(),
        ["1234ef", "9876xy"]
    );
    let eight = (1u8, 2u8, 3u8, 4u8, 5u8, 6u8, 7u8, 8u8);
    assert_eq!(
        p.starmap(
            |a: u8, b: u8, c: u8, d: u8, e: u8, f: u8, g: u8, h: u8| a + b + c + d + e + f + g + h,
            [eight]
        )
        .unwrap(),
        [36]
    );
    let r = p.starmap(
        |a: i64, b: i64, c: i64| task(a + b + c),
        [(1, 1, 1), (-1, 0, 0)],
    );
    assert!(matches!(r, Err(Error::Panicked { .. })), "{r:?}");
    let r = p
        .starmap_async(|a: u32, b: u32, c: u32| a + b + c, [(1, 2, 3)])
        .unwrap();
    assert_eq!(r.get().unwrap(), [6]);
}

fn sqr(x: u32) -> u32 {
    x * x
}

/// CPython's `exception_throwing_generator`: panics when it reaches `when`.
fn say_when(total: u32, when: u32) -> impl Iterator<Item = u32> {
    (0..total).inspect(move |&i| {
        if i == when {
            panic!("SayWhenError");
        }
    })
}

/// CPython's `test_imap_handle_iterable_exception`, chunksizes 1, 2 and 4,
/// ordered and not: the results before the panicking chunk, then the
/// panic in the caller; the pool is unharmed.
#[test]
fn imap_input_that_panics_reaches_the_caller_after_earlier_results() {
    let _g = common::shared();
    let p = pool(2);
    let pids = p.pids();
    for (total, when, chunksize, before) in [
        (1, 0, 1, 0),
        (1, 0, 1, 0),
        (10, 3, 1, 3),
        (20, 7, 2, 6),
        (20, 7, 4, 4),
    ] {
        for ordered in [true, false] {
            let mut it = if ordered {
                p.imap_chunked(sqr, say_when(total, when), chunksize)
            } else {
                p.imap_unordered_chunked(sqr, say_when(total, when), chunksize)
            };
            let mut got: Vec<u32> = (0..before).map(|_| it.next().unwrap().unwrap()).collect();
            got.sort();
            assert_eq!(got, (0..before).map(sqr).collect::<Vec<_>>());
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| it.next()));
            let payload = caught.expect_err("the input's panic");
            assert_eq!(payload.downcast_ref::<&str>(), Some(&"SayWhenError"));
            assert!(it.next().is_none());
        }
    }
    // Usable, same workers, nothing in flight.
    assert_eq!(
        p.map(sqr, 0..100).unwrap(),
        (0..100).map(sqr).collect::<Vec<_>>()
    );
    assert_eq!(p.pids(), pids);
    let mut p = p;
    p.close();
    p.join().unwrap();
}

/// Ctrl-C: the workers block SIGINT; the parent turns it into an orderly
/// terminate with a handler (the `ctrlc` crate, as documented on `Pool`).
#[test]
fn ctrl_c_becomes_an_orderly_terminate() {
    let _g = common::shared();
    let pool = std::sync::Arc::new(pool(2));
    let pids = pool.pids();
    for &pid in &pids {
        // SAFETY: a plain kill(2) of one of our workers.
        unsafe { libc::kill(pid, libc::SIGINT) };
    }
    assert_eq!(pool.map(task, 0..4).unwrap(), [0, 2, 4, 6]);
    assert_eq!(pool.pids(), pids, "no worker died of SIGINT");
    let weak = std::sync::Arc::downgrade(&pool);
    ctrlc::set_handler(move || {
        if let Some(pool) = weak.upgrade() {
            pool.terminate();
        }
    })
    .unwrap();
    let r = pool.map_async(task, [-6, -6, -6]).unwrap(); // each sleeps LONG
    let started = Instant::now();
    // SAFETY: raise(3) on this process; the handler above takes it.
    unsafe { libc::raise(libc::SIGINT) };
    assert!(matches!(r.get(), Err(Error::PoolTerminated)));
    assert!(started.elapsed() < LONG);
    let mut pool = pool;
    let mut pool = loop {
        // The handler holds the pool for an instant at most.
        match std::sync::Arc::try_unwrap(pool) {
            Ok(p) => break p,
            Err(p) => {
                pool = p;
                std::thread::yield_now();
            }
        }
    };
    pool.join().unwrap();
    assert!(pool.pids().is_empty());
}

/// `try_imap`: an input of `Result`s; the items before the first `Err`
/// are mapped, then the error comes, typed, and the iterator ends.
#[test]
fn try_imap_stops_at_the_inputs_first_error() {
    let _g = common::shared();
    let p = pool(2);
    for chunksize in [1, 2, 4] {
        let input = (0..20u32).map(|i| {
            if i == 7 {
                Err(format!("bad {i}"))
            } else {
                Ok(i)
            }
        });
        let got: Vec<_> = p.try_imap(sqr, input, chunksize).collect();
        assert_eq!(got.len(), 8, "chunksize {chunksize}");
        for (i, r) in got[..7].iter().enumerate() {
            assert_eq!(*r.as_ref().unwrap().as_ref().unwrap(), sqr(i as u32));
        }
        assert_eq!(got[7].as_ref().err(), Some(&"bad 7".to_string()));
    }
    // No error: every item; borrowed input is fine.
    let text = "1\n2\n3";
    let all: Vec<_> = p
        .try_imap(sqr, text.lines().map(str::parse::<u32>), 2)
        .map(|r| r.unwrap().unwrap())
        .collect();
    assert_eq!(all, [1, 4, 9]);
    assert_eq!(p.map(sqr, 0..3).unwrap(), [0, 1, 4]);
}

fn square(x: u64) -> u64 {
    x.wrapping_mul(x)
}

/// An item of any size, returned as large as it came, with its first byte
/// bumped (cheap: the chunks go fast, so a worker is given several).
fn bump(mut v: serde_bytes::ByteBuf) -> serde_bytes::ByteBuf {
    if let Some(b) = v.first_mut() {
        *b = b.wrapping_add(1);
    }
    v
}

/// `len` bytes, every one `i`.
fn item(i: usize, len: usize) -> serde_bytes::ByteBuf {
    serde_bytes::ByteBuf::from(vec![i as u8; len])
}

/// Whether `v` is `bump(item(i, len))`.
fn bumped(v: &serde_bytes::ByteBuf, i: usize, len: usize) -> bool {
    let i = i as u8;
    v.len() == len && v[0] == i.wrapping_add(1) && v[1..].iter().all(|&b| b == i)
}

/// Runs `f` on a pool of two workers in a thread; if it has not returned
/// after a generous deadline, terminates the pool (which fails whatever
/// waits) and fails the test: a hang becomes a failure. The pool first
/// runs many tiny tasks, so that its supervisors have measured chunks of
/// microseconds and hand their workers several chunks at once, whatever
/// the speed of the build.
fn within<P>(what: &str, f: P)
where
    P: FnOnce(&Pool) + Send + 'static,
{
    let pool = std::sync::Arc::new(pool(2));
    let (done, finished) = std::sync::mpsc::channel();
    let p = pool.clone();
    let t = std::thread::spawn(move || {
        assert_eq!(p.map_chunked(square, 0..4000, Some(1)).unwrap().len(), 4000);
        f(&p);
        let _ = done.send(());
    });
    let hung = matches!(
        finished.recv_timeout(Duration::from_secs(60)),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout)
    );
    if hung {
        pool.terminate();
    }
    let r = t.join();
    assert!(!hung, "{what}: no result after 60 s (a deadlock)");
    if let Err(panic) = r {
        std::panic::resume_unwind(panic);
    }
}

/// Chunks of megabytes both ways: jobs sent while the worker replies to
/// the previous ones must not leave both sides waiting for the other to
/// read (messages larger than the pipe's ring, or many of them). Every
/// call here but the two `imap`s of large chunks hung before the
/// supervisor kept what it sends within the pipe's room.
#[test]
fn large_messages_both_ways_never_deadlock() {
    let _g = common::shared();
    const N: u64 = 2_000_000;
    within("map, default chunksize", |p| {
        let got = p.map(square, 0..N).unwrap();
        assert_eq!(got.len(), N as usize);
        assert!(got.iter().enumerate().all(|(i, &r)| r == square(i as u64)));
    });
    within("map, chunksize 1000", |p| {
        let got = p.map_chunked(square, 0..N / 4, Some(1000)).unwrap();
        assert!(got.iter().enumerate().all(|(i, &r)| r == square(i as u64)));
    });
    within("imap, large chunks", |p| {
        let got = p.imap_chunked(square, 0..N, N as usize / 8);
        let mut n = 0;
        for (i, r) in got.enumerate() {
            assert_eq!(r.unwrap(), square(i as u64));
            n += 1;
        }
        assert_eq!(n, N);
    });
    within("imap_unordered, large chunks", |p| {
        let got = p.imap_unordered_chunked(square, 0..N, N as usize / 8);
        let mut got: Vec<u64> = got.map(|r| r.unwrap()).collect();
        got.sort_unstable(); // squares below 2^64 grow with their roots
        assert!(got.iter().enumerate().all(|(i, &r)| r == square(i as u64)));
        assert_eq!(got.len(), N as usize);
    });
    within("starmap, default chunksize", |p| {
        let got = p
            .starmap(|a: u64, b: u64| a.wrapping_mul(b), (0..N).map(|i| (i, i)))
            .unwrap();
        assert!(got.iter().enumerate().all(|(i, &r)| r == square(i as u64)));
    });
    // Items of 1 MiB, and of 192 KiB (chunks of a few hundred µs, so the
    // worker is given several), four to a chunk.
    for len in [1 << 20, 192 << 10] {
        const M: usize = 24;
        let items = move || (0..M).map(move |i| item(i, len));
        within(&format!("map, items of {len} bytes"), move |p| {
            let got = p.map_chunked(bump, items(), Some(4)).unwrap();
            assert_eq!(got.len(), M);
            assert!(got.iter().enumerate().all(|(i, v)| bumped(v, i, len)));
        });
        within(&format!("imap, items of {len} bytes"), move |p| {
            let got: Vec<_> = p.imap_chunked(bump, items(), 4).collect();
            assert_eq!(got.len(), M);
            for (i, v) in got.iter().enumerate() {
                assert!(bumped(v.as_ref().unwrap(), i, len));
            }
        });
        within(&format!("imap_unordered, items of {len} bytes"), move |p| {
            let mut seen = Vec::new();
            for v in p.imap_unordered_chunked(bump, items(), 4) {
                let v = v.unwrap();
                let i = v[1] as usize;
                assert!(bumped(&v, i, len));
                seen.push(i);
            }
            seen.sort_unstable();
            assert_eq!(seen, (0..M).collect::<Vec<_>>());
        });
        within(&format!("apply_async, items of {len} bytes"), move |p| {
            let all: Vec<_> = items().map(|a| p.apply_async(bump, a).unwrap()).collect();
            for (i, r) in all.into_iter().enumerate() {
                assert!(bumped(&r.get().unwrap(), i, len));
            }
        });
    }
}
