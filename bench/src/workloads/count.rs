//! `seed_count_speedup`, from the seed material: one process per CPU, each
//! counting to N, against counting N once per CPU in one process. Each
//! runner picks its own N so that one count takes it about half a second of
//! CPU: every language does the same amount of *time* of work per process,
//! and the figure measures parallelism, not start-up.

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

/// CPU time each process spends counting: long enough that the figure
/// says how close the runner comes to the number of CPUs, not how fast it
/// starts a process (the seed's 50,000,000 counts take Rust ~12 ms).
fn work_seconds(mode: Mode) -> f64 {
    mode.pick(0.02, 0.5, 0.5)
}

/// Counts to `n`, one `black_box` step at a time.
fn count(n: u64) -> u64 {
    let mut c = 0u64;
    for _ in 0..n {
        c = black_box(c + 1);
    }
    c
}

/// The count that takes this process about `seconds` of CPU: counts twice
/// as far until one run takes at least a tenth of it, then scales (the
/// loop is linear in `n`), keeping the fastest of three measurements so a
/// moment of disturbance does not inflate the work.
fn calibrate(seconds: f64) -> u64 {
    let mut n = 1u64 << 20;
    loop {
        let took = (0..3)
            .map(|_| {
                let t = Instant::now();
                black_box(count(black_box(n)));
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min);
        if took >= seconds / 10.0 {
            return (n as f64 * seconds / took) as u64;
        }
        n *= 2;
    }
}

/// Sequential time over parallel time: `procs` counts to `n` one after
/// the other in this process, then `parallel` starts `procs` workers each
/// counting to `n`, and joins them.
fn speedup(n: u64, procs: usize, parallel: impl FnOnce() -> Result<()>) -> Result<f64> {
    let t = Instant::now();
    for _ in 0..procs {
        black_box(count(black_box(n)));
    }
    let sequential = t.elapsed().as_secs_f64();
    let t = Instant::now();
    parallel()?;
    Ok(sequential / t.elapsed().as_secs_f64())
}

fn runners(mode: Mode) -> Vec<Runner> {
    let seconds = work_seconds(mode);
    let procs = mproc::cpu_count();
    vec![
        Runner::new(
            Kind::Mproc,
            format!("{procs} x mproc::spawn(count, n), joined (forkserver); n counts for ~{seconds} s"),
            move || {
                let n = calibrate(seconds);
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
            format!("{procs} x Process(target=count, args=(n,)), started then joined (fork); n counts for ~{seconds} s"),
            "count.py",
            vec![seconds.to_string(), procs.to_string()],
        ),
        Runner::new(
            Kind::Peer,
            format!("{procs} x procspawn::spawn(n, count), joined; n counts for ~{seconds} s"),
            move || {
                let n = calibrate(seconds);
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
