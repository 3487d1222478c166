//! A progress bar over a long `imap` (with the `indicatif` crate), and
//! Ctrl-C turned into an orderly `terminate` (with the `ctrlc` crate).
//!
//! `cargo run --release --example pool_progress [ITEMS]`; press Ctrl-C to
//! stop early: the workers never see the signal (they block SIGINT), the
//! handler terminates the pool, the items in flight fail with
//! `Error::PoolTerminated`, the loop ends, and every worker is reaped.

use std::hint::black_box;
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use mproc::{Error, Pool};

/// About a millisecond of counting.
fn work(x: u64) -> u64 {
    let mut n = 0u64;
    for _ in 0..1_000_000 {
        n = black_box(n + 1);
    }
    x + n - 1_000_000
}

fn main() -> mproc::Result<()> {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5_000);
    let pool = Arc::new(Pool::new(mproc::cpu_count())?);

    // The handler runs in a thread of its own: it holds the pool weakly,
    // so that the pool is dropped (and its workers reaped) when `main`
    // lets it go.
    let weak = Arc::downgrade(&pool);
    ctrlc::set_handler(move || {
        if let Some(pool) = weak.upgrade() {
            pool.terminate();
        }
    })
    .expect("no other Ctrl-C handler in this program");

    let bar = ProgressBar::new(n);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} [{elapsed_precise} < {eta}] {per_sec}")
            .expect("a valid template"),
    );
    let (mut sum, mut done) = (0u64, 0u64);
    // Results arrive in input order; `bar.inc` per result. (For a
    // waiting `map`, use `imap` and collect instead, as here.)
    for r in pool.imap_chunked(work, 0..n, 16) {
        match r {
            Ok(v) => sum += v,
            Err(Error::PoolTerminated) => {
                bar.abandon_with_message("terminated");
                eprintln!("\nCtrl-C: the pool was terminated after {done} of {n} items");
                break;
            }
            Err(e) => return Err(e),
        }
        done += 1;
        bar.inc(1);
    }
    if done == n {
        bar.finish();
        assert_eq!(sum, n * (n - 1) / 2);
        println!("{n} items, sum {sum}");
    }
    // Close and join when it is ours alone (the handler may hold it for
    // an instant); else the last holder's drop terminates and reaps.
    if let Some(mut pool) = Arc::into_inner(pool) {
        pool.close();
        pool.join()?;
    }
    Ok(())
}
