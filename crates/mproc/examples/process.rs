//! Processes as in Python, and what their exit codes say.
//!
//! `cargo run --example process`

use std::time::Duration;

use mproc::{Error, Process};

fn greet(name: String) {
    let me = mproc::current_process();
    println!("{}: hello {name} (pid {})", me.name(), me.pid());
}

fn fail(code: i32) {
    if code == 1 {
        panic!("something went wrong in the child");
    }
    std::process::exit(code);
}

fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn sum_squares(n: u64) -> u64 {
    (1..=n).map(|x| x * x).sum()
}

fn main() -> mproc::Result<()> {
    let mut p = Process::new(greet, "world".to_string());
    p.start()?;
    p.join()?;
    println!("{p:?}");

    for code in [0, 1, 8] {
        let mut p = Process::new(fail, code);
        p.start()?;
        p.join()?;
        println!("child asked for {code}: exitcode {:?}", p.exitcode());
    }

    let mut sleeper = Process::new(nap, 60_000).name("sleeper");
    sleeper.start()?;
    println!(
        "joined within 10 ms: {}",
        sleeper.join_timeout(Duration::from_millis(10))?
    );
    sleeper.terminate()?;
    sleeper.join()?;
    println!(
        "terminated: exitcode {:?} (-15 is SIGTERM)",
        sleeper.exitcode()
    );

    println!(
        "sum of squares to 1000: {}",
        mproc::spawn(sum_squares, 1000)?.join()?
    );
    match mproc::spawn(fail, 1)?.join() {
        Err(Error::Panicked {
            message, location, ..
        }) => println!("the child panicked at {location}: {message}"),
        other => println!("unexpected: {other:?}"),
    }
    Ok(())
}
