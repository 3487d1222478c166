//! A walk through mproc, following the seed material it grew from.
//!
//! Run it with `cargo run --release --example tour`.
//!
//! Part 1: one process per CPU, each counting to 50,000,000. The processes
//! finish in any order; the same work done in one process afterwards shows
//! the speed-up that real parallelism buys.

use std::hint::black_box;
use std::time::{Duration, Instant};

use mproc::Process;

const COUNT: u64 = 50_000_000;

/// Counts to `COUNT` one step at a time (`black_box` keeps the loop real).
fn count_up() -> u64 {
    let mut n = 0u64;
    for _ in 0..COUNT {
        n = black_box(n + 1);
    }
    n
}

fn count_in_process(i: usize) {
    let result = count_up();
    println!("process {i} finished result {result}");
}

fn part1_counting() -> mproc::Result<()> {
    let cpus = mproc::cpu_count();
    println!("== Part 1: {cpus} processes counting to {COUNT} ==");
    let start = Instant::now();
    let mut procs = Vec::new();
    for i in 0..cpus {
        println!("starting process {i}");
        let mut p = Process::new(count_in_process, i);
        p.start()?;
        procs.push(p);
    }
    for p in &mut procs {
        p.join()?;
    }
    let parallel = start.elapsed();

    let start = Instant::now();
    for i in 0..cpus {
        let result = count_up();
        println!("sequential {i} finished result {result}");
    }
    let sequential = start.elapsed();
    report(cpus, parallel, sequential);
    Ok(())
}

fn report(cpus: usize, parallel: Duration, sequential: Duration) {
    let speedup = sequential.as_secs_f64() / parallel.as_secs_f64();
    println!(
        "{cpus} processes: {:.2} s; the same work in one process: {:.2} s; speed-up {speedup:.2}x (ideal {cpus}x)",
        parallel.as_secs_f64(),
        sequential.as_secs_f64(),
    );
}

fn main() -> mproc::Result<()> {
    part1_counting()?;
    Ok(())
}
