//! A `Pool` tour: `map`, `imap_unordered` over an endless input, failures
//! that stay with their task, and a task timeout; `starmap` over triples,
//! a callback, and the timeline written as a Chrome trace.
//!
//! `cargo run --release --example pool`

use std::time::Duration;

use std::sync::mpsc::channel;

use mproc::{Callbacks, Error, Pool};

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

    // Several arguments, a callback, and the timeline.
    let pool = Pool::builder().processes(2).record_timeline(true).build()?;
    let volumes = pool.starmap(|x: u32, y: u32, z: u32| x * y * z, [(1, 2, 3), (4, 5, 6)])?;
    println!("starmap over triples: {volumes:?}");
    let (tx, rx) = channel();
    let r = pool.map_async_with(
        square,
        0..100,
        None,
        Callbacks::new().callback(move |v: &Vec<u64>| tx.send(v.iter().sum::<u64>()).unwrap()),
    )?;
    println!("the callback saw a sum of {}", rx.recv().expect("one call"));
    assert_eq!(r.get()?.len(), 100);
    let trace = std::env::temp_dir().join("mproc-pool-trace.json");
    std::fs::write(&trace, pool.timeline().to_chrome_trace()).expect("a writable temp dir");
    println!("{}", pool.timeline().to_ascii(60));
    println!(
        "Chrome trace in {} (open it in ui.perfetto.dev)",
        trace.display()
    );
    Ok(())
}
