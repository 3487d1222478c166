//! The same pool on one machine or across hosts, on MPI.
//!
//! ```sh
//! cargo build --release --features mpi --example mpi_pool
//! # one machine, 3 ranks (add --allow-run-as-root as root, --oversubscribe
//! # with more ranks than cores):
//! mpirun -n 3 target/release/examples/mpi_pool
//! # across hosts (the binary at the same path on each: a shared file
//! # system, or copied):
//! mpirun --hostfile hosts -n 9 target/release/examples/mpi_pool
//! # under Slurm:
//! srun --mpi=pmix -n 9 target/release/examples/mpi_pool
//! # and without MPI, the same program with a local pool:
//! target/release/examples/mpi_pool
//! ```
//!
//! Rank 0 drives; every other rank runs its share of the pool's workers as
//! local processes. A task that panics or crashes fails alone and says on
//! which rank and host; losing a whole host ends the job (MPI is
//! fail-stop), with `mpirun`'s message.

use std::time::Instant;

use mproc::{Error, Pool};

/// Work worth sending to another host.
fn collatz_steps(mut n: u64) -> u32 {
    let mut steps = 0;
    while n != 1 {
        n = if n % 2 == 0 { n / 2 } else { 3 * n + 1 };
        steps += 1;
    }
    steps
}

/// Fails on one input, to show where a failure happened.
fn picky(n: u64) -> u64 {
    assert!(n != 13, "13 is unlucky");
    n
}

fn main() -> Result<(), Error> {
    // First thing: ranks != 0 serve in here until rank 0 is done.
    let world = mproc::mpi::init()?;
    let pool = Pool::builder().mpi(&world).build()?;
    println!(
        "{} ranks on {:?}: {} worker processes",
        world.size(),
        world.hosts(),
        pool.processes()
    );

    let t = Instant::now();
    let n = 1_000_000u64;
    let steps = pool.map_chunked(collatz_steps, 1..=n, Some(10_000))?;
    let (most, at) = (steps.iter().enumerate())
        .map(|(i, &s)| (s, i + 1))
        .max()
        .expect("items");
    println!(
        "longest Collatz chain below {n}: {at} ({most} steps), in {:.2?}",
        t.elapsed()
    );

    for (i, r) in pool
        .map_results_chunked(picky, 10..16, Some(1))?
        .into_iter()
        .enumerate()
    {
        match r {
            Ok(v) => println!("picky({}) = {v}", i + 10),
            Err(e) => println!("picky({}) failed: {e}", i + 10),
        }
    }
    Ok(())
}
