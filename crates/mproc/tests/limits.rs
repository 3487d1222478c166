//! Resource limits per process and per pool worker (`Limits`), the typed
//! failure of a child that exceeds one (`Error::LimitExceeded`), and what a
//! child used (`Process::resources`), under every start method: `fork::*`,
//! `spawn::*` and `forkserver::*` (see [`per_method!`]).
//!
//! No test sleeps to synchronise: each waits for a child's end (bounded by
//! a generous timeout as a guard).

#[macro_use]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use common::GENEROUS;
use mproc::{Error, Limit, Limits, Process, StartMethod};

per_method! {
    a_child_allocating_past_its_cap_fails_with_memory_named
    a_leaking_child_fails_with_memory_named
    a_process_says_which_limit_ended_it
    a_cpu_spinner_fails_with_cpu_time_named
    limits_do_not_leak_to_the_parent_or_the_fork_server
    nice_open_files_and_core_dumps_are_applied
    resources_report_peak_memory_and_cpu_time
    an_abort_is_not_a_limit_even_under_a_memory_cap
    a_pool_task_past_the_cap_fails_alone
    a_limit_failure_is_not_retried_unless_asked
    a_pool_task_past_the_cpu_cap_fails_alone
}

const CAP: u64 = 256 << 20;

fn ctx(method: StartMethod, limits: Limits) -> mproc::Context {
    mproc::get_context(Some(method)).limits(limits)
}

/// Joins `h` within the generous bound (a child past its limit must end).
fn join<R: serde::de::DeserializeOwned>(mut h: mproc::JoinHandle<R>) -> mproc::Result<R> {
    let began = Instant::now();
    let r = h.join_timeout(GENEROUS);
    assert!(
        !matches!(r, Err(Error::Timeout)),
        "the child did not end within {GENEROUS:?}"
    );
    assert!(began.elapsed() < GENEROUS);
    r
}

/// Allocates `bytes` at once and touches the first page (never elided).
///
/// Without a backtrace: with `RUST_BACKTRACE` set, Rust's allocation-
/// failure handler prints one, which may leave another `errno` than the
/// failed allocation's, and a single allocation far past the memory left
/// is then not told from an ordinary abort (see `Limits`; the leak tests
/// keep the variable).
fn allocate(bytes: u64) -> u64 {
    // The child runs this on its only thread.
    std::env::remove_var("RUST_BACKTRACE");
    let mut v: Vec<u8> = Vec::with_capacity(bytes as usize);
    v.push(1);
    black_box(&v);
    v.capacity() as u64
}

/// Allocates and touches 16 MiB at a time, forever (a leak).
fn leak(_: ()) -> usize {
    let mut kept = Vec::new();
    loop {
        let v = vec![1u8; 16 << 20];
        kept.push(black_box(v));
    }
}

fn spin(_: ()) {
    let mut x = 0u64;
    loop {
        x = black_box(x.wrapping_add(1));
    }
}

fn assert_memory(r: mproc::Result<u64>) {
    match r {
        Err(Error::LimitExceeded {
            limit: Limit::Memory,
            cap,
            code,
            ..
        }) => {
            assert_eq!(cap, CAP);
            assert_eq!(code, -libc::SIGABRT);
        }
        other => panic!("expected the memory limit, got {other:?}"),
    }
}

fn a_child_allocating_past_its_cap_fails_with_memory_named(method: StartMethod) {
    let _g = common::shared();
    let ctx = ctx(method, Limits::new().memory(CAP));
    // Within the cap.
    assert_eq!(
        join(ctx.spawn(allocate, 64 << 20).unwrap()).unwrap(),
        64 << 20
    );
    // 10 GiB at once.
    assert_memory(join(ctx.spawn(allocate, 10 << 30).unwrap()));
    // The parent is unaffected: it allocates past the child's cap.
    assert_eq!(allocate(CAP * 2), CAP * 2);
    // Under the address-space cap too.
    let ctx = self::ctx(
        method,
        Limits::new()
            .memory(CAP)
            .memory_kind(mproc::MemoryKind::AddressSpace),
    );
    assert_memory(join(ctx.spawn(allocate, 10 << 30).unwrap()));
}

fn a_leaking_child_fails_with_memory_named(method: StartMethod) {
    let _g = common::shared();
    let ctx = ctx(method, Limits::new().memory(CAP));
    match join(ctx.spawn(leak, ()).unwrap()) {
        Err(Error::LimitExceeded {
            limit: Limit::Memory,
            ..
        }) => {}
        other => panic!("expected the memory limit, got {other:?}"),
    }
}

fn a_process_says_which_limit_ended_it(method: StartMethod) {
    let _g = common::shared();
    let mut p = Process::new(allocate, 10 << 30)
        .start_method(method)
        .limits(Limits::new().memory(CAP));
    assert_eq!(p.limit_exceeded(), None);
    p.start().unwrap();
    assert!(p.join_timeout(GENEROUS).unwrap());
    assert_eq!(p.exitcode(), Some(-libc::SIGABRT));
    assert_eq!(p.limit_exceeded(), Some(Limit::Memory));
    // From the context, for a CPU cap.
    let mut p = ctx(method, Limits::new().cpu_time(Duration::from_secs(1))).process(spin, ());
    p.start().unwrap();
    assert!(p.join_timeout(GENEROUS).unwrap());
    assert_eq!(p.limit_exceeded(), Some(Limit::CpuTime));
}

fn a_cpu_spinner_fails_with_cpu_time_named(method: StartMethod) {
    let _g = common::shared();
    let ctx = ctx(method, Limits::new().cpu_time(Duration::from_secs(1)));
    let mut h = ctx.spawn(spin, ()).unwrap();
    let r = h.join_timeout(GENEROUS);
    assert!(
        matches!(r, Err(Error::LimitExceeded { .. })),
        "{r:?} {:?}",
        h.resources()
    );
    let used = h.resources().expect("reaped").cpu_time();
    // The reaped times fall short of the run time the kernel counts (by up
    // to a fifth on a loaded machine).
    assert!(used >= Duration::from_millis(500), "{used:?}");
    let mut h = ctx.spawn(spin, ()).unwrap();
    let r = h.join_timeout(GENEROUS);
    let used = h.resources();
    match r {
        Err(Error::LimitExceeded {
            limit: Limit::CpuTime,
            cap: 1,
            code,
            ..
        }) => assert_eq!(code, -libc::SIGXCPU),
        other => panic!("expected the CPU limit, got {other:?} after {used:?}"),
    }
}

/// The lines of `/proc/<pid>/limits` a child's limits change.
fn limits_of(pid: &str) -> Vec<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    text.lines()
        .filter(|l| {
            [
                "Max cpu time",
                "Max data size",
                "Max core file size",
                "Max open files",
                "Max address space",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .map(String::from)
        .collect()
}

/// The nice value of `pid` (`/proc/<pid>/stat`, field 19).
fn nice_of(pid: &str) -> i32 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let (_, rest) = text.rsplit_once(')').unwrap();
    rest.split_whitespace().nth(16).unwrap().parse().unwrap()
}

fn confined() -> Limits {
    Limits::new()
        .memory(CAP)
        .cpu_time(Duration::from_secs(30))
        .nice(7)
        .open_files(77)
        .core_dumps(false)
}

fn my_limits(_: ()) -> (Vec<String>, i32) {
    (limits_of("self"), nice_of("self"))
}

fn limits_do_not_leak_to_the_parent_or_the_fork_server(method: StartMethod) {
    let _g = common::shared();
    // A fork server started before any limited child, and one after.
    let server = || mproc::__private::fork_server_pid().map(|p| p.to_string());
    let before = (limits_of("self"), nice_of("self"));
    let plain = join(ctx(method, Limits::new()).spawn(my_limits, ()).unwrap()).unwrap();
    let server_before = server().map(|p| (limits_of(&p), nice_of(&p)));
    let limited = join(ctx(method, confined()).spawn(my_limits, ()).unwrap()).unwrap();
    assert_ne!(limited, plain, "the limits were not applied");
    assert_eq!((limits_of("self"), nice_of("self")), before);
    if method == StartMethod::ForkServer {
        let pid = server().expect("a fork server runs");
        assert_eq!(Some((limits_of(&pid), nice_of(&pid))), server_before);
        assert_eq!((limits_of(&pid), nice_of(&pid)), before);
    }
    // A child started after a limited one has its parent's limits.
    let after = join(ctx(method, Limits::new()).spawn(my_limits, ()).unwrap()).unwrap();
    assert_eq!(after, plain);
}

fn nice_open_files_and_core_dumps_are_applied(method: StartMethod) {
    let _g = common::shared();
    let (limits, nice) = join(ctx(method, confined()).spawn(my_limits, ()).unwrap()).unwrap();
    assert_eq!(nice, 7);
    let line = |p: &str| -> Vec<String> {
        let l = limits.iter().find(|l| l.starts_with(p)).unwrap();
        l[p.len()..].split_whitespace().map(String::from).collect()
    };
    assert_eq!(line("Max open files")[..2], ["77", "77"]);
    assert_eq!(line("Max core file size")[..2], ["0", "0"]);
    assert_eq!(line("Max cpu time")[..2], ["30", "31"]);
    let cap = CAP.to_string();
    assert_eq!(line("Max data size")[..2], [cap.as_str(), cap.as_str()]);
}

/// Touches `mib` MiB, then spins until it used `ms` of CPU time (as its
/// own `/proc/self/stat` counts it, in ticks).
fn touch_and_spin((mib, ms): (usize, u64)) -> u8 {
    let v = black_box(vec![1u8; mib << 20]);
    let ticks = |()| -> u64 {
        let text = std::fs::read_to_string("/proc/self/stat").unwrap();
        let (_, rest) = text.rsplit_once(')').unwrap();
        let f: Vec<u64> = rest
            .split_whitespace()
            .skip(11)
            .take(2)
            .map(|x| x.parse().unwrap())
            .collect();
        f[0] + f[1]
    };
    // 100 ticks a second (USER_HZ).
    while ticks(()) * 10 < ms {
        black_box(spin_a_little());
    }
    v[v.len() - 1]
}

fn spin_a_little() -> u64 {
    (0..100_000u64).fold(0, |a, x| black_box(a ^ x))
}

fn resources_report_peak_memory_and_cpu_time(method: StartMethod) {
    let _g = common::shared();
    let mut p = Process::new(touch_and_spin, (64, 300)).start_method(method);
    assert_eq!(p.resources(), None);
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    let r = p.resources().expect("reaped here");
    assert!(r.peak_rss() >= 64 << 20, "{r:?}");
    assert!(r.peak_rss() < 8 << 30, "{r:?}");
    assert!(r.cpu_time() >= Duration::from_millis(280), "{r:?}");
    assert!(r.cpu_time() < GENEROUS, "{r:?}");
    assert_eq!(r.cpu_time(), r.user_time() + r.system_time());
    // On a spawn's handle too.
    let mut h = mproc::get_context(Some(method))
        .spawn(touch_and_spin, (64, 0))
        .unwrap();
    assert_eq!(h.join_timeout(GENEROUS).unwrap(), 1);
    assert!(h.resources().unwrap().peak_rss() >= 64 << 20);
}

fn abort(_: ()) {
    std::process::abort()
}

fn an_abort_is_not_a_limit_even_under_a_memory_cap(method: StartMethod) {
    let _g = common::shared();
    for limits in [Limits::new(), Limits::new().memory(CAP)] {
        match join(ctx(method, limits).spawn(abort, ()).unwrap()) {
            Err(Error::Signaled { signal, .. }) => assert_eq!(signal, libc::SIGABRT),
            other => panic!("expected SIGABRT, got {other:?}"),
        }
        let mut p = ctx(method, limits).process(abort, ());
        p.start().unwrap();
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(-libc::SIGABRT));
        assert_eq!(p.limit_exceeded(), None);
    }
    // A kill is not a CPU limit either.
    let mut p = ctx(method, Limits::new().cpu_time(Duration::from_secs(5))).process(spin, ());
    p.start().unwrap();
    p.kill().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(-libc::SIGKILL));
    assert_eq!(p.limit_exceeded(), None);
}

/// Item 37 allocates 10 GiB; the others a little.
fn one_in_a_hundred(i: u64) -> u64 {
    if i == 37 {
        allocate(10 << 30)
    } else {
        allocate(1 << 20) + i
    }
}

fn a_pool_task_past_the_cap_fails_alone(method: StartMethod) {
    let _g = common::shared();
    let pool = mproc::Pool::builder()
        .processes(2)
        .start_method(method)
        .limits(Limits::new().memory(CAP))
        .task_timeout(GENEROUS)
        .build()
        .unwrap();
    let first = pool.pids();
    let out = pool
        .map_results_chunked(one_in_a_hundred, 0..100, Some(1))
        .unwrap();
    assert_eq!(out.len(), 100);
    let mut dead = None;
    for (i, r) in out.iter().enumerate() {
        if i == 37 {
            match r {
                Err(Error::LimitExceeded {
                    pid,
                    limit: Limit::Memory,
                    ..
                }) => dead = Some(*pid),
                other => panic!("{other:?}"),
            }
        } else {
            assert_eq!(r.as_ref().ok(), Some(&((1 << 20) + i as u64)), "item {i}");
        }
    }
    // The worker was replaced (its replacement may still be starting when
    // the last result comes: polled under a generous deadline).
    let dead = dead.unwrap();
    assert!(first.contains(&dead), "{first:?} {dead}");
    let deadline = Instant::now() + GENEROUS;
    loop {
        let now = pool.pids();
        if now.len() == 2 && !now.contains(&dead) {
            break;
        }
        assert!(Instant::now() < deadline, "not replaced: {now:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The replacements have the limit too.
    assert_memory(pool.apply(allocate, 10 << 30));
    assert_eq!(pool.apply(allocate, 1 << 20).unwrap(), 1 << 20);
}

/// Records its run in `dir`, then allocates 10 GiB.
fn recorded_hog(dir: std::path::PathBuf) -> u64 {
    let _ = std::fs::write(dir.join(std::process::id().to_string()), b"");
    allocate(10 << 30)
}

fn runs_with(method: StartMethod, retry_limits: bool) -> usize {
    let dir = std::env::temp_dir().join(format!(
        "mproc-limit-retries-{}-{method}-{retry_limits}",
        std::process::id()
    ));
    std::fs::create_dir(&dir).unwrap();
    let pool = mproc::Pool::builder()
        .processes(1)
        .start_method(method)
        .limits(Limits::new().memory(CAP))
        .retry_on_worker_death(2)
        .retry_limit_failures(retry_limits)
        .build()
        .unwrap();
    let r = pool.apply(recorded_hog, dir.clone());
    drop(pool);
    let runs = std::fs::read_dir(&dir).unwrap().count();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_memory(r);
    runs
}

fn a_limit_failure_is_not_retried_unless_asked(method: StartMethod) {
    let _g = common::shared();
    assert_eq!(runs_with(method, false), 1);
    assert_eq!(runs_with(method, true), 3);
}

/// Item 2 spins forever; the others return at once.
fn spin_on_two(i: u64) -> u64 {
    if i == 2 {
        spin(());
    }
    i
}

fn a_pool_task_past_the_cpu_cap_fails_alone(method: StartMethod) {
    let _g = common::shared();
    let pool = mproc::Pool::builder()
        .processes(1)
        .start_method(method)
        .limits(Limits::new().cpu_time(Duration::from_secs(1)))
        .task_timeout(GENEROUS)
        .build()
        .unwrap();
    let out = pool
        .map_results_chunked(spin_on_two, 0..5, Some(1))
        .unwrap();
    for (i, r) in out.iter().enumerate() {
        if i == 2 {
            assert!(
                matches!(
                    r,
                    Err(Error::LimitExceeded {
                        limit: Limit::CpuTime,
                        cap: 1,
                        ..
                    })
                ),
                "{r:?}"
            );
        } else {
            assert_eq!(r.as_ref().ok(), Some(&(i as u64)), "item {i}");
        }
    }
}
