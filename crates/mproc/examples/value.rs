//! Value and Array: plain data in shared memory, each with its own lock.
//!
//! `cargo run --example value`

use mproc::bytemuck::{Pod, Zeroable};
use mproc::{Array, LockError, Pipe, Process, RawValue, Value};

#[derive(Clone, Copy, Debug, Pod, Zeroable)]
#[repr(C)]
struct Stats {
    count: u64,
    sum: f64,
}

/// Adds its share of the numbers to the shared statistics, and squares its
/// slice of the array in place.
fn worker((stats, squares, part): (Value<Stats>, Array<u32>, usize)) {
    for x in (part * 100)..(part * 100 + 100) {
        let mut s = stats.lock().unwrap(); // one atomic update of both fields
        s.count += 1;
        s.sum += x as f64;
    }
    let mut a = squares.lock().unwrap();
    for x in &mut a[part * 4..part * 4 + 4] {
        *x *= *x;
    }
}

/// Takes the value's lock and is killed while holding it.
fn hold_forever((v, ready): (Value<i32>, mproc::Connection<()>)) {
    let mut g = v.lock().unwrap();
    *g = -1; // half-way through an update
    ready.send(&()).unwrap();
    loop {
        std::thread::park();
    }
}

fn main() -> mproc::Result<()> {
    let stats = Value::new(Stats::zeroed())?;
    let squares = Array::from_slice(&(0..12).collect::<Vec<u32>>())?;
    let mut procs = Vec::new();
    for part in 0..3 {
        let mut p = Process::new(worker, (stats.clone(), squares.clone(), part));
        p.start()?;
        procs.push(p);
    }
    for p in &mut procs {
        p.join()?;
    }
    let s = stats.get()?;
    println!(
        "count {} sum {} mean {}",
        s.count,
        s.sum,
        s.sum / s.count as f64
    );
    println!("squares {:?}", squares.to_vec()?);

    // A lock-free flag for data another mechanism orders (here: the join).
    let done = RawValue::new(false)?;
    fn finish(done: RawValue<bool>) {
        done.set(true);
    }
    mproc::spawn(finish, done.clone())?.join()?;
    println!("raw flag set by the child: {}", done.get());

    // A holder killed while holding the value's lock: the next taker is told.
    let v = Value::new(0i32)?;
    let (here, there) = Pipe::new()?;
    let mut p = Process::new(hold_forever, (v.clone(), there));
    p.start()?;
    here.recv()?;
    p.kill()?;
    p.join()?;
    match v.get() {
        Err(LockError::OwnerDied(x)) => println!("the holder died; the value it left: {x}"),
        other => println!("unexpected: {other:?}"),
    }
    Ok(())
}
