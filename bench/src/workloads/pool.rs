//! `Pool` on 2 workers with trivial tasks (`x * x`): `pool_map_chunksize1`,
//! `pool_map_default_chunksize` and `pool_imap_unordered_chunksize1`, in
//! tasks per second; `pool_map_chunksize1_max_memory`, the first with
//! `max_memory_per_child` on (one read of the worker's resident memory a
//! task) against it off. What is measured is the hand-off of tasks and
//! results, not the work.

use super::Workload;
use crate::cpython;
use crate::harness::{session, Kind, Mode, Result, Runner};
use crate::stats::Better;

/// Workers in every runner.
const WORKERS: usize = 2;

pub fn workloads() -> Vec<Workload> {
    vec![
        Workload {
            name: "pool_map_chunksize1",
            unit: "tasks/s",
            better: Better::Higher,
            about: "Pool.map(x * x) over N ints on 2 workers, one task per chunk",
            pinned: false,
            runners: |mode| runners(mode, Call::Map(Some(1))),
        },
        Workload {
            name: "pool_map_default_chunksize",
            unit: "tasks/s",
            better: Better::Higher,
            about: "Pool.map(x * x) over N ints on 2 workers, chunksize ceil(N / 8)",
            pinned: false,
            runners: |mode| runners(mode, Call::Map(None)),
        },
        Workload {
            name: "pool_map_chunksize1_vs_executor",
            unit: "tasks/s",
            better: Better::Higher,
            about:
                "as pool_map_chunksize1, against ProcessPoolExecutor.map (chunksize 1, its default)",
            pinned: false,
            runners: |mode| runners(mode, Call::Executor),
        },
        Workload {
            name: "pool_map_chunksize1_max_memory",
            unit: "tasks/s",
            better: Better::Higher,
            about: "as pool_map_chunksize1 with max_memory_per_child on (never reached), against it off",
            pinned: false,
            runners: max_memory_runners,
        },
        Workload {
            name: "pool_imap_unordered_chunksize1",
            unit: "tasks/s",
            better: Better::Higher,
            about: "Pool.imap_unordered(x * x) over N ints on 2 workers, consumed as they come",
            pinned: false,
            runners: |mode| runners(mode, Call::ImapUnordered),
        },
        Workload {
            name: "pool_map_async_awaited_chunksize1",
            unit: "tasks/s",
            better: Better::Higher,
            about: "Pool.map_async(x * x) over N ints, chunksize 1, awaited on a tokio runtime, against the blocking map",
            pinned: false,
            runners: |mode| awaited_runners(mode, Awaited::MapAsync),
        },
        Workload {
            name: "pool_apply_async_awaited",
            unit: "tasks/s",
            better: Better::Higher,
            about: "N x Pool.apply_async(x * x), each awaited by its own tokio task, against the blocking map at chunksize 1",
            pinned: false,
            runners: |mode| awaited_runners(mode, Awaited::ApplyAsync),
        },
    ]
}

/// How the awaited workloads call the pool.
#[derive(Clone, Copy)]
enum Awaited {
    /// One `map_async_chunked(.., Some(1))`, awaited.
    MapAsync,
    /// One `apply_async` per task, each awaited in a task of its own.
    ApplyAsync,
}

/// The awaited form (`mproc`) against the blocking `map` at chunksize 1
/// (in the `peer` column: the bar here is mproc's own blocking call).
fn awaited_runners(mode: Mode, how: Awaited) -> Vec<Runner> {
    let n = tasks(mode);
    let what = match how {
        Awaited::MapAsync => format!(
            "pool.map_async_chunked(square, 0..{n}, Some(1))?.await on a current-thread tokio runtime"
        ),
        Awaited::ApplyAsync => format!(
            "{n} x tokio::spawn(pool.apply_async(square, i)?), each JoinHandle awaited, current-thread tokio runtime"
        ),
    };
    vec![
        Runner::new(Kind::Mproc, format!("{what}, 2 workers"), move || {
            awaited_session(n, how)
        }),
        Runner::new(
            Kind::Peer,
            format!("mproc's blocking pool.map_chunked(square, 0..{n}, Some(1)), 2 workers"),
            move || mproc_session(n, Call::Map(Some(1))),
        ),
    ]
}

fn awaited_session(n: u64, how: Awaited) -> Result<Box<dyn crate::harness::Session>> {
    let pool = mproc::Pool::new(WORKERS)?;
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    session(move || {
        let t = std::time::Instant::now();
        let sum: u64 = rt.block_on(async {
            match how {
                Awaited::MapAsync => Ok::<u64, crate::harness::BoxError>(
                    pool.map_async_chunked(square, 0..n, Some(1))?
                        .await?
                        .iter()
                        .sum(),
                ),
                Awaited::ApplyAsync => {
                    let mut handles = Vec::with_capacity(n as usize);
                    for i in 0..n {
                        handles.push(tokio::spawn(pool.apply_async(square, i)?));
                    }
                    let mut sum = 0;
                    for h in handles {
                        sum += h.await??;
                    }
                    Ok(sum)
                }
            }
        })?;
        let secs = t.elapsed().as_secs_f64();
        check(sum, n)?;
        Ok(n as f64 / secs)
    })
}

#[derive(Clone, Copy)]
enum Call {
    Map(Option<usize>),
    /// `Map(Some(1))`, against `ProcessPoolExecutor`.
    Executor,
    ImapUnordered,
}

fn square(x: u64) -> u64 {
    x * x
}

/// Tasks per repetition: 100,000 as in the figures of the issue.
fn tasks(mode: Mode) -> u64 {
    mode.pick(1_000, 100_000, 100_000)
}

fn runners(mode: Mode, call: Call) -> Vec<Runner> {
    let n = tasks(mode);
    let (what, py_call) = match call {
        Call::Map(Some(c)) => (
            format!("pool.map_chunked(square, 0..{n}, Some({c}))"),
            "map1",
        ),
        Call::Executor => (
            format!("pool.map_chunked(square, 0..{n}, Some(1))"),
            "executor1",
        ),
        Call::Map(None) => (format!("pool.map(square, 0..{n})"), "map"),
        Call::ImapUnordered => (
            format!("pool.imap_unordered(square, 0..{n})"),
            "imap_unordered1",
        ),
    };
    let python = match call {
        Call::Executor => format!("ProcessPoolExecutor(2).map(square, range({n})) (fork)"),
        _ => format!("Pool(2): the same call (fork), {n} tasks"),
    };
    let mut v = vec![
        Runner::new(
            Kind::Mproc,
            format!("{what}, 2 workers (forkserver)"),
            move || mproc_session(n, call),
        ),
        cpython::runner(
            python,
            "pool.py",
            vec![py_call.into(), n.to_string(), WORKERS.to_string()],
        ),
    ];
    if matches!(call, Call::Map(Some(1)) | Call::ImapUnordered) {
        let m = mode.pick(100, 2_000, 5_000);
        v.push(Runner::new(
            Kind::Peer,
            format!("procspawn 1.0 Pool::new(2): {m} x pool.spawn(i, square), then join each"),
            move || procspawn_session(m),
        ));
    }
    v
}

/// The threshold of `pool_map_chunksize1_max_memory`: far above what a
/// worker holds, so that each task pays the read and none retires.
const NEVER_REACHED: u64 = 1 << 40;

fn max_memory_runners(mode: Mode) -> Vec<Runner> {
    let n = tasks(mode);
    let call = Call::Map(Some(1));
    vec![
        Runner::new(
            Kind::Mproc,
            format!(
                "pool.map_chunked(square, 0..{n}, Some(1)), 2 workers (forkserver), max_memory_per_child(1 TiB)"
            ),
            move || session_with(n, call, Some(NEVER_REACHED)),
        ),
        Runner::new(
            Kind::Limit,
            "the same pool with max_memory_per_child off: what the option costs is measured against it",
            move || session_with(n, call, None),
        ),
    ]
}

fn mproc_session(n: u64, call: Call) -> Result<Box<dyn crate::harness::Session>> {
    session_with(n, call, None)
}

fn session_with(
    n: u64,
    call: Call,
    max_memory: Option<u64>,
) -> Result<Box<dyn crate::harness::Session>> {
    let mut builder = mproc::Pool::builder().processes(WORKERS);
    if let Some(bytes) = max_memory {
        builder = builder.max_memory_per_child(bytes);
    }
    let pool = builder.build()?;
    session(move || {
        let t = std::time::Instant::now();
        let sum: u64 = match call {
            Call::Map(c) => pool.map_chunked(square, 0..n, c)?.iter().sum(),
            Call::Executor => pool.map_chunked(square, 0..n, Some(1))?.iter().sum(),
            Call::ImapUnordered => pool
                .imap_unordered(square, 0..n)
                .collect::<mproc::Result<Vec<u64>>>()?
                .iter()
                .sum(),
        };
        let secs = t.elapsed().as_secs_f64();
        check(sum, n)?;
        Ok(n as f64 / secs)
    })
}

fn check(sum: u64, n: u64) -> Result<()> {
    let want: u64 = (0..n).map(square).sum();
    if sum != want {
        return Err(format!("wrong sum {sum}, want {want}").into());
    }
    Ok(())
}

fn procspawn_session(m: u64) -> Result<Box<dyn crate::harness::Session>> {
    let pool = procspawn::Pool::new(WORKERS)?;
    session(move || {
        let t = std::time::Instant::now();
        let handles: Vec<_> = (0..m).map(|i| pool.spawn(i, square)).collect();
        let mut sum = 0;
        for h in handles {
            sum += h.join()?;
        }
        let secs = t.elapsed().as_secs_f64();
        check(sum, m)?;
        Ok(m as f64 / secs)
    })
}
