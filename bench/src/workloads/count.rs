//! `seed_count_speedup`, from the seed material: one process per CPU, each
//! counting to N, against counting N once per CPU in one process.

use std::hint::black_box;
use std::time::Instant;

use super::Workload;
use crate::cpython;
use crate::harness::{session, Kind, Mode, Result, Runner};
use crate::stats::Better;

pub fn workloads() -> Vec<Workload> {
    vec![Workload {
        name: "seed_count_speedup",
        unit: "x",
        better: Better::Higher,
        about: "speed-up of one process per CPU counting to N over counting N once per CPU in one process",
        pinned: false,
        runners,
    }]
}

/// N: 50,000,000 as in the seed; less in the shorter modes.
fn target(mode: Mode) -> u64 {
    mode.pick(200_000, 20_000_000, 50_000_000)
}

/// Counts to `n`, one `black_box` step at a time.
fn count(n: u64) -> u64 {
    let mut c = 0u64;
    for _ in 0..n {
        c = black_box(c + 1);
    }
    c
}

/// Rust counts 50M in ~12 ms, Python in ~2.5 s: a Rust repetition does
/// the sequential + parallel pair this many times and adds up the times,
/// so that a moment of disturbance weighs on it as little as on Python's.
const RUST_ROUNDS: usize = 10;

/// Sequential time over parallel time; `parallel` starts `procs` workers
/// each counting to `n`, and joins them.
fn speedup(n: u64, procs: usize, mut parallel: impl FnMut() -> Result<()>) -> Result<f64> {
    let (mut sequential, mut par) = (0.0, 0.0);
    for _ in 0..RUST_ROUNDS {
        let t = Instant::now();
        for _ in 0..procs {
            black_box(count(black_box(n)));
        }
        sequential += t.elapsed().as_secs_f64();
        let t = Instant::now();
        parallel()?;
        par += t.elapsed().as_secs_f64();
    }
    Ok(sequential / par)
}

fn runners(mode: Mode) -> Vec<Runner> {
    let n = target(mode);
    let procs = mproc::cpu_count();
    vec![
        Runner::new(
            Kind::Mproc,
            format!("{procs} x mproc::spawn(count, {n}), joined (forkserver); {RUST_ROUNDS} rounds per repetition"),
            move || {
                session(move || {
                    speedup(n, procs, || {
                        let handles: Vec<_> = (0..procs)
                            .map(|_| mproc::spawn(count, n))
                            .collect::<mproc::Result<_>>()?;
                        for h in handles {
                            if h.join()? != n {
                                return Err("wrong count".into());
                            }
                        }
                        Ok(())
                    })
                })
            },
        ),
        cpython::runner(
            format!("{procs} x Process(target=count, args=({n},)), started then joined (fork)"),
            "count.py",
            vec![n.to_string(), procs.to_string()],
        ),
        Runner::new(
            Kind::Peer,
            format!("{procs} x procspawn::spawn({n}, count), joined; {RUST_ROUNDS} rounds per repetition"),
            move || {
                session(move || {
                    speedup(n, procs, || {
                        let handles: Vec<_> =
                            (0..procs).map(|_| procspawn::spawn(n, count)).collect();
                        for h in handles {
                            if h.join()? != n {
                                return Err("wrong count".into());
                            }
                        }
                        Ok(())
                    })
                })
            },
        ),
        Runner::ideal(
            Kind::Limit,
            format!("ideal: the number of CPUs ({procs})"),
            procs as f64,
        ),
    ]
}
