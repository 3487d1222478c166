//! A walk through mproc, following the seed material it grew from.
//!
//! Run it with `cargo run --release --example tour`.
//!
//! Part 1: one process per CPU, each counting to 50,000,000. The processes
//! finish in any order; the same work done in one process afterwards shows
//! the speed-up that real parallelism buys.
//!
//! Part 2: the bank account. A balance of 100 in a shared `Value`; one
//! process withdraws 1 and another deposits 1, 10,000 times each; ten
//! times over. First each step reads and then writes the balance (each of
//! the two calls locked, but not the pair): the final balance is wrong and
//! different each time. Then each step holds the value's lock across the
//! read and the write: 100 every time.
//!
//! Part 3: a `Pool`. `p.map(func, col)` over a collection, then `close`
//! and `join`, as the seed does, timed against the same `map` done in one
//! process; then the pool's timeline: which worker ran which task, when.
//!
//! Part 4: a queue. A child squares the numbers a `Queue` brings it and
//! puts the results on another, until a `None` sentinel; then the same
//! round trip is timed.

use std::hint::black_box;
use std::time::{Duration, Instant};

use mproc::{Connection, Pipe, Process, Queue, RawValue, Value};

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

fn nothing(_: ()) {}

fn part1_counting() -> mproc::Result<()> {
    let cpus = mproc::cpu_count();
    println!("== Part 1: {cpus} processes counting to {COUNT} ==");
    // The fork server starts once per program (an exec, a millisecond or
    // more): start it now so that the timing below is of the processes.
    let warm = Instant::now();
    mproc::spawn(nothing, ())?.join()?;
    println!(
        "(fork server started and a first child run in {:.1} ms)",
        warm.elapsed().as_secs_f64() * 1e3
    );
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

/// What a bank process is given: the balance, the step (-1 or +1), how
/// many times, whether to lock, and the start signal (it says "ready" on
/// its pipe, then waits for `go` to turn 1, so that both processes run
/// their loops at the same time rather than one after the other).
type Account = (Value<i32>, i32, u32, bool, RawValue<u32>, Connection<()>);

fn bank((balance, step, times, locked, go, ready): Account) {
    ready.send(&()).expect("the parent waits for this");
    let mut spins = 0u32;
    while go.get() == 0 {
        spins = spins.wrapping_add(1);
        if spins % 64 == 0 {
            std::thread::yield_now(); // never starve a machine with one CPU
        }
        std::hint::spin_loop();
    }
    for _ in 0..times {
        if locked {
            *balance.lock().expect("no holder dies here") += step;
        } else {
            // Python's `balance.value = balance.value - 1`: two locked
            // calls, but another process can run between them.
            let seen = balance.get().expect("no holder dies here");
            balance.set(seen + step).expect("no holder dies here");
        }
    }
}

/// One round: withdraw and deposit `times` each, together; the balance.
fn perform_transactions(times: u32, locked: bool) -> mproc::Result<i32> {
    let balance = Value::new(100)?;
    let go = RawValue::new(0u32)?;
    let mut procs = Vec::new();
    let mut readies = Vec::new();
    for step in [-1, 1] {
        let (here, there) = Pipe::new()?;
        let args = (balance.clone(), step, times, locked, go.clone(), there);
        let mut p = Process::new(bank, args);
        p.start()?;
        procs.push(p);
        readies.push(here);
    }
    for r in &readies {
        r.recv()?;
    }
    go.set(1);
    for p in &mut procs {
        p.join()?;
    }
    Ok(balance.get()?)
}

/// Ten rounds; the final balances and the time taken.
fn ten_rounds(times: u32, locked: bool) -> mproc::Result<(Vec<i32>, Duration)> {
    let start = Instant::now();
    let mut finals = Vec::new();
    for _ in 0..10 {
        let b = perform_transactions(times, locked)?;
        println!("Final balance = {b}");
        finals.push(b);
    }
    Ok((finals, start.elapsed()))
}

fn part2_bank() -> mproc::Result<()> {
    let mut times = 10_000;
    let wrong = |finals: &[i32]| finals.iter().filter(|&&b| b != 100).count();
    println!("\n== Part 2: withdraw and deposit {times} times each, without a lock ==");
    let (mut finals, mut unlocked) = ten_rounds(times, false)?;
    // A contended lock puts the loser to sleep in the kernel, and 10,000
    // steps take about a millisecond: often one process finishes before
    // the other wakes, and no update is lost.
    while wrong(&finals) < 5 && times < 10_000_000 {
        times *= 10;
        println!(
            "(only {} of 10 balances wrong: the processes barely overlap; raising the count to {times})",
            wrong(&finals)
        );
        (finals, unlocked) = ten_rounds(times, false)?;
    }
    println!("== with the value's lock held across each read and write, {times} times each ==");
    let (locked_finals, locked) = ten_rounds(times, true)?;
    println!(
        "without a lock: {} of 10 balances wrong, in {:.3} s; with the lock: {} of 10 wrong, in {:.3} s",
        wrong(&finals),
        unlocked.as_secs_f64(),
        wrong(&locked_finals),
        locked.as_secs_f64(),
    );
    println!(
        "get() and set() are each atomic, but a read-modify-write is not: updates are lost \
         unless the lock is held from the read to the write"
    );
    Ok(())
}

/// The pool's function: counts to a tenth of `COUNT` and returns `x`
/// squared, so that each item is real work.
fn func(x: u64) -> u64 {
    let mut n = 0u64;
    for _ in 0..COUNT / 10 {
        n = black_box(n + 1);
    }
    x * x + (n - COUNT / 10)
}

fn part3_pool() -> mproc::Result<()> {
    let cpus = mproc::cpu_count();
    let col: Vec<u64> = (0..4 * cpus as u64).collect();
    println!("\n== Part 3: a Pool of {cpus} workers mapping func over {col:?} ==");
    let started = Instant::now();
    // `record_timeline` notes which worker ran each task, from when to
    // when (`Pool::new(cpus)` is the same pool without it).
    let mut p = mproc::Pool::builder()
        .processes(cpus)
        .record_timeline(true)
        .build()?;
    let result = p.map(func, col.clone())?;
    p.close();
    p.join()?;
    let parallel = started.elapsed();
    println!("{result:?}");
    println!("the pool's timeline (each bar a task, on a shared time axis):");
    print!("{}", p.timeline().to_ascii(72));
    let started = Instant::now();
    let sequential_result: Vec<u64> = col.into_iter().map(func).collect();
    let sequential = started.elapsed();
    assert_eq!(result, sequential_result);
    println!("map in one process: {sequential_result:?}");
    report(cpus, parallel, sequential);
    Ok(())
}

/// Squares what `jobs` brings until the `None` sentinel.
fn squarer((jobs, results): (Queue<Option<u64>>, Queue<u64>)) {
    while let Ok(Some(x)) = jobs.get() {
        results.put(x * x).expect("the parent reads the results");
    }
}

fn part4_queue() -> mproc::Result<()> {
    println!("\n== Part 4: a child squaring what a Queue brings it ==");
    let (jobs, results) = (Queue::new()?, Queue::new()?);
    let mut p = Process::new(squarer, (jobs.clone(), results.clone()));
    p.start()?;
    for x in 1..=5 {
        jobs.put(Some(x))?;
    }
    let squares: Vec<u64> = (0..5).map(|_| results.get()).collect::<Result<_, _>>()?;
    println!(
        "squares of 1..=5, computed in process {}: {squares:?}",
        p.pid().unwrap_or(0)
    );
    let n = 100_000u64;
    let start = Instant::now();
    for x in 0..n {
        jobs.put(Some(x))?;
        results.get()?;
    }
    let per = start.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!("{n} round trips through two queues: {per:.2} us each");
    jobs.put(None)?;
    p.join()?;
    Ok(())
}

fn main() -> mproc::Result<()> {
    part1_counting()?;
    part2_bank()?;
    part3_pool()?;
    part4_queue()?;
    Ok(())
}
