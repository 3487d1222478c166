//! Two processes talking through a `Pipe`, as in Python.
//!
//! `cargo run --example pipe`

use serde::{Deserialize, Serialize};

use mproc::{Connection, Error, Pipe, Process};

#[derive(Debug, Serialize, Deserialize)]
enum Msg {
    Work(Vec<u32>),
    Sum(u64),
    Done,
}

fn adder(conn: Connection<Msg>) {
    loop {
        match conn.recv() {
            Ok(Msg::Work(xs)) => conn
                .send(&Msg::Sum(xs.iter().map(|&x| x as u64).sum()))
                .unwrap(),
            Ok(Msg::Done) | Err(Error::Disconnected) => break,
            Ok(other) => panic!("unexpected message {other:?}"),
            Err(e) => panic!("{e}"),
        }
    }
}

fn main() -> mproc::Result<()> {
    let (here, there) = Pipe::<Msg>::new()?;
    let mut p = Process::new(adder, there);
    p.start()?;
    for n in [10, 100, 1000] {
        here.send(&Msg::Work((1..=n).collect()))?;
        println!("sum 1..={n}: {:?}", here.recv()?);
    }
    here.send(&Msg::Done)?;
    p.join()?;
    println!("adder exited with {:?}", p.exitcode());
    Ok(())
}
