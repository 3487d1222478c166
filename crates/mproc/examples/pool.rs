//! A `Pool` tour: `map`, `imap_unordered` over an endless input, failures
//! that stay with their task, and a task timeout.
//!
//! `cargo run --release --example pool`

use std::time::Duration;

use mproc::{Error, Pool};

fn square(x: u64) -> u64 {
    x * x
}

/// Misbehaves for some inputs.
fn fragile(x: i32) -> i32 {
    match x {
        3 => panic!("three is unlucky"),
        // SAFETY: signalling oneself; this worker dies of it.
        5 => unsafe { libc::kill(libc::getpid(), libc::SIGKILL) },
        7 => {
            std::thread::sleep(Duration::from_secs(60));
            x
        }
        x => x * 10,
    }
}

fn main() -> mproc::Result<()> {
    let pool = Pool::new(2)?;
    println!("workers {:?}", pool.pids());
    println!("map: {:?}", pool.map(square, 0..10)?);

    // An endless input, read lazily: the first squares that are 1 mod 7.
    let big: Vec<u64> = pool
        .imap_unordered(square, 0..)
        .filter_map(Result::ok)
        .filter(|x| x % 7 == 1)
        .take(5)
        .collect();
    println!("imap_unordered over 0..: {big:?}");

    // Each failure stays with its task; the pool goes on.
    let pool = Pool::builder()
        .processes(2)
        .task_timeout(Duration::from_millis(500))
        .build()?;
    for (x, r) in (0..9).zip(pool.map_results_chunked(fragile, 0..9, Some(1))?) {
        match r {
            Ok(v) => println!("fragile({x}) = {v}"),
            Err(
                e @ (Error::Panicked { .. } | Error::Signaled { .. } | Error::TaskTimeout { .. }),
            ) => {
                println!("fragile({x}) failed: {e}")
            }
            Err(e) => return Err(e),
        }
    }
    // Replacements start in the background, after the failure is reported.
    println!("workers now {:?}", pool.pids());
    Ok(())
}
