//! Trivial tasks through a `Pool` of 2 workers, in tasks per second: the
//! cost of the hand-off. `cargo run --release --example pool_bench`.

use std::time::Instant;

fn square(x: u64) -> u64 {
    x * x
}

fn main() -> mproc::Result<()> {
    let pool = mproc::Pool::new(2)?;
    let n = 200_000u64;
    for (name, chunks) in [("chunksize 1", Some(1)), ("default chunksize", None)] {
        for _ in 0..3 {
            let t = Instant::now();
            let v = pool.map_chunked(square, 0..n, chunks)?;
            let rate = n as f64 / t.elapsed().as_secs_f64();
            assert_eq!(v.len() as u64, n);
            println!("map, {name}: {rate:.0} tasks/s");
        }
    }
    let t = Instant::now();
    let c = pool.imap_unordered(square, 0..n).count();
    println!(
        "imap_unordered, chunksize 1: {:.0} tasks/s",
        c as f64 / t.elapsed().as_secs_f64()
    );
    Ok(())
}
