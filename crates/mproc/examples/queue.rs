//! Producers and consumers in separate processes, through a `Queue`, with a
//! sentinel to say "no more work", as in Python's documentation.
//!
//! `cargo run --example queue`

use mproc::{Process, Queue};

/// A job, or `None`: the sentinel that ends a consumer.
type Job = Option<u64>;

fn producer((jobs, first, n): (Queue<Job>, u64, u64)) {
    for x in first..first + n {
        jobs.put(Some(x)).expect("the queue is open");
    }
}

fn consumer((jobs, results): (Queue<Job>, Queue<(u32, u64)>)) {
    let me = std::process::id();
    while let Ok(Some(x)) = jobs.get() {
        results.put((me, x * x)).expect("the queue is open");
    }
}

fn main() -> mproc::Result<()> {
    let jobs = Queue::<Job>::bounded(100)?;
    let results = Queue::new()?;
    let mut consumers = Vec::new();
    for _ in 0..3 {
        let mut c = Process::new(consumer, (jobs.clone(), results.clone()));
        c.start()?;
        consumers.push(c);
    }
    let mut producers = Vec::new();
    for i in 0..2 {
        let mut p = Process::new(producer, (jobs.clone(), i * 500, 500));
        p.start()?;
        producers.push(p);
    }
    for p in &mut producers {
        p.join()?;
    }
    for _ in &consumers {
        jobs.put(None)?; // one sentinel per consumer
    }
    let mut sum = 0u64;
    let mut by_pid = std::collections::BTreeMap::new();
    for _ in 0..1000 {
        let (pid, square) = results.get()?;
        sum += square;
        *by_pid.entry(pid).or_insert(0) += 1;
    }
    for c in &mut consumers {
        c.join()?;
    }
    println!("sum of squares of 0..1000: {sum}");
    for (pid, n) in by_pid {
        println!("consumer {pid} did {n} jobs");
    }
    assert_eq!(sum, (0..1000u64).map(|x| x * x).sum());
    Ok(())
}
