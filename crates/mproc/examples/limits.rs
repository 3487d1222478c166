//! Confining untrusted or leaky code: a pool whose workers each have a
//! memory cap and a CPU-time cap, whose tasks have a wall-clock timeout,
//! and whose workers are recycled when they grow. One task leaks without
//! end, one allocates 10 GiB at once, one spins forever, one sleeps
//! forever: each fails alone, with its reason, while the others finish.
//! Tasks that each leave 48 MiB behind (a leaky library) succeed: their
//! worker is replaced once it holds more than 128 MiB, their results kept.
//!
//! `cargo run --release --example limits`
//!
//! Rust prints `memory allocation of N bytes failed` on stderr for the two
//! memory failures. With `RUST_BACKTRACE` set it also prints a backtrace,
//! whose printing can hide the cause of a *single* allocation far past the
//! memory left (the 10 GiB task would fail as an ordinary `SIGABRT`; see
//! `mproc::Limits`): this example turns backtraces off for its workers.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use mproc::{Error, Limit, Limits, Pool};

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
enum Job {
    /// Ordinary work.
    Square(u64),
    /// Keeps every buffer it allocates, a MiB at a time.
    Leak,
    /// Asks for 10 GiB at once.
    Huge,
    /// Never ends, never waits.
    Spin,
    /// Never ends, never uses the CPU.
    Sleep,
    /// Succeeds (giving its worker's pid), but leaves 48 MiB behind in
    /// its worker.
    Grow,
}

fn run(job: Job) -> u64 {
    match job {
        Job::Square(x) => x * x,
        Job::Leak => {
            let mut kept: Vec<Vec<u8>> = Vec::new();
            loop {
                kept.push(vec![1u8; 1 << 20]);
            }
        }
        Job::Huge => {
            let v = vec![1u8; 10 << 30];
            v[v.len() / 2] as u64
        }
        Job::Spin => {
            let mut x = 0u64;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        Job::Sleep => loop {
            std::thread::sleep(Duration::from_secs(3600));
        },
        Job::Grow => {
            let kept: &'static mut [u8] = Box::leak(vec![1u8; 48 << 20].into_boxed_slice());
            std::hint::black_box(kept);
            u64::from(std::process::id()) // which worker ran it
        }
    }
}

fn main() -> mproc::Result<()> {
    // Before any thread exists; the workers inherit it.
    std::env::set_var("RUST_BACKTRACE", "0");
    let pool = Pool::builder()
        .processes(2)
        .limits(
            Limits::new()
                .memory(512 << 20)
                .cpu_time(Duration::from_secs(1))
                .core_dumps(false),
        )
        .task_timeout(Duration::from_secs(10))
        .max_memory_per_child(128 << 20)
        .build()?;
    let mut jobs: Vec<Job> = (0..20).map(Job::Square).collect();
    jobs.insert(3, Job::Leak);
    jobs.insert(8, Job::Huge);
    jobs.insert(13, Job::Spin);
    jobs.insert(18, Job::Sleep);
    jobs.extend([Job::Grow; 6]);
    let began = Instant::now();
    let results = pool.map_results_chunked(run, jobs.iter().copied(), Some(1))?;
    for (job, r) in jobs.iter().zip(&results) {
        let what = match r {
            Ok(v) => format!("{v}"),
            Err(Error::LimitExceeded {
                limit: Limit::Memory,
                ..
            }) => "failed: memory cap".into(),
            Err(Error::LimitExceeded {
                limit: Limit::CpuTime,
                ..
            }) => "failed: CPU-time cap".into(),
            Err(Error::TaskTimeout { after, .. }) => format!("failed: timed out after {after:?}"),
            Err(e) => format!("failed: {e}"),
        };
        println!("{:>12}  {what}", format!("{job:?}"));
    }
    let ok = results.iter().filter(|r| r.is_ok()).count();
    println!(
        "{ok} of {} tasks finished in {:.1?}",
        results.len(),
        began.elapsed()
    );
    Ok(())
}
