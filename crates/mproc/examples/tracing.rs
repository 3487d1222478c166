//! What a pool tells an operator through `tracing`: a worker that dies
//! (its task retried on its replacement), a task that runs past its
//! timeout (its worker stopped and replaced), and, at `debug`, every task
//! run in the workers (target `mproc::pool::worker`).
//!
//! ```sh
//! RUST_LOG=mproc=debug cargo run -p mproc --features tracing --example tracing
//! RUST_LOG=mproc::pool=info cargo run -p mproc --features tracing --example tracing
//! ```
//!
//! Without `RUST_LOG` it shows `mproc`'s warnings and infos. The filter is
//! `tracing-subscriber`'s `EnvFilter` (targets are module paths:
//! `mproc::pool::supervisor`, `mproc::pool::worker`,
//! `mproc::connection::acceptor`, ...).
//!
//! The workers are started by fork, so they inherit this program's
//! subscriber and their task runs (`pool task` spans, `pool task ran`
//! events with `duration_us` and `outcome`) are printed too. Workers
//! started by spawn or the fork server report to no subscriber unless
//! their program installs one before `mproc` takes over.

use std::path::PathBuf;
use std::time::Duration;

use mproc::{Error, Pool, StartMethod};
use tracing_subscriber::EnvFilter;

/// Squares `x`; the first worker to see 3 dies (`abort`), so 3 is retried.
fn fragile((x, mark): (u64, PathBuf)) -> u64 {
    if x == 3 && std::fs::create_dir(&mark).is_ok() {
        std::process::abort();
    }
    x * x
}

/// Sleeps `ms` milliseconds.
fn slow(ms: u64) -> u64 {
    std::thread::sleep(Duration::from_millis(ms));
    ms
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("mproc=info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();
    // Forking a process with threads (the pool's own) is what this example
    // means to do: no warning about it.
    mproc::set_fork_warning(false);

    let mut pool = Pool::builder()
        .processes(2)
        .start_method(StartMethod::Fork)
        .retry_on_worker_death(1)
        .task_timeout(Duration::from_millis(500))
        .build()?;

    // A worker dies running 3: `pool worker died running a task` (warn),
    // `pool task retried` (warn), `pool worker replaced` (info).
    let mark = std::env::temp_dir().join(format!("mproc-tracing-example-{}", std::process::id()));
    let items = (0..6).map(|x| (x, mark.clone()));
    let squares = pool.map_chunked(fragile, items, Some(1));
    let _ = std::fs::remove_dir(&mark);
    println!("squares: {:?}", squares?);

    // A task past the timeout: `pool task timed out` (warn), its worker
    // stopped and replaced (info); the call fails with `TaskTimeout`.
    match pool.apply(slow, 10_000) {
        Err(e @ Error::TaskTimeout { .. }) => println!("as expected: {e}"),
        other => println!("unexpected: {other:?}"),
    }
    println!("the pool goes on: {}", pool.apply(slow, 1)?);

    // `pool closed` and `pool joined` (debug).
    pool.close();
    pool.join()?;
    Ok(())
}
