//! Synchronisation: `lock_uncontended` (acquire + release in one process),
//! `bank_locked_increments` (the seed's bank: two processes incrementing a
//! shared value under its lock) and `event_pingpong` (two processes handing
//! a turn back and forth through two events).

use mproc::{Event, Lock, Process, Value};

use super::Workload;
use crate::affinity;
use crate::cpython;
use crate::harness::{micros_per_op, session, Kind, Mode, Result, Runner, Session};
use crate::limit::{lock, pingpong::FutexPingPong};
use crate::stats::Better;

pub fn workloads() -> Vec<Workload> {
    vec![
        Workload {
            name: "lock_uncontended",
            unit: "ns/pair",
            better: Better::Lower,
            about: "acquire + release of a free lock, one process",
            pinned: false,
            runners: uncontended,
        },
        Workload {
            name: "bank_locked_increments",
            unit: "ns/incr",
            better: Better::Lower,
            about:
                "two processes each add 1 to a shared value under its lock N times (start to join)",
            pinned: false,
            runners: bank,
        },
        Workload {
            name: "event_pingpong",
            unit: "us/rtt",
            better: Better::Lower,
            about:
                "a child waits on event A, clears it, sets event B; the parent sets A, waits on B",
            pinned: true,
            runners: pingpong,
        },
    ]
}

fn uncontended(mode: Mode) -> Vec<Runner> {
    let n = mode.pick(1_000, 1_000_000, 5_000_000);
    vec![
        Runner::new(Kind::Mproc, "Lock: acquire() + release()", move || {
            let lock = Lock::new()?;
            session(move || {
                let t = std::time::Instant::now();
                for _ in 0..n {
                    lock.acquire()?;
                    lock.release()?;
                }
                Ok(t.elapsed().as_nanos() as f64 / n as f64)
            })
        }),
        cpython::runner(
            "multiprocessing.Lock(): acquire() + release()",
            "sync.py",
            vec!["pair".into(), n.to_string()],
        ),
        Runner::new(
            Kind::Limit,
            "bare futex mutex: CAS lock + swap unlock",
            move || lock::futex_pairs(n),
        ),
    ]
}

fn bank(mode: Mode) -> Vec<Runner> {
    let n = mode.pick(1_000u64, 200_000, 1_000_000);
    vec![
        Runner::new(
            Kind::Mproc,
            "Value::<i64>::new(0); 2 processes x `*v.lock()? += 1` (forkserver)",
            move || {
                session(move || {
                    let v = Value::new(0i64)?;
                    let t = std::time::Instant::now();
                    let mut ps: Vec<Process> = (0..2)
                        .map(|_| Process::new(deposit, (v.clone(), n)))
                        .collect();
                    for p in &mut ps {
                        p.start()?;
                    }
                    for p in &mut ps {
                        p.join()?;
                    }
                    let ns = t.elapsed().as_nanos() as f64 / (2 * n) as f64;
                    match v.get()? == 2 * n as i64 {
                        true => Ok(ns),
                        false => Err("lost increments".into()),
                    }
                })
            },
        ),
        cpython::runner(
            "Value('q') with get_lock(): v.value += 1, 2 processes (fork)",
            "sync.py",
            vec!["bank".into(), n.to_string()],
        ),
        Runner::new(
            Kind::Limit,
            "process-shared robust pthread mutex around a u64, 2 forked processes",
            move || lock::robust_bank(n as usize),
        ),
    ]
}

/// The mproc child of `bank_locked_increments`.
fn deposit((v, n): (Value<i64>, u64)) {
    for _ in 0..n {
        *v.lock().expect("the value's lock") += 1;
    }
}

fn pingpong(mode: Mode) -> Vec<Runner> {
    let n = mode.pick(200, 5_000, 20_000);
    let cpus = affinity::script_cpus();
    vec![
        Runner::new(
            Kind::Mproc,
            "Event pair: set(A) + wait(B) + clear(B), a child answering (forkserver)",
            move || EventPingPong::session(n),
        ),
        cpython::runner(
            "Event pair: set(A) + wait(B) + clear(B), a child answering (fork)",
            "sync.py",
            [vec!["event".into(), n.to_string()], cpus].concat(),
        ),
        Runner::new(
            Kind::Limit,
            "futex ping-pong on a MAP_SHARED page, spin then FUTEX_WAIT",
            move || FutexPingPong::session(n * 20, affinity::child_cpu()),
        ),
    ]
}

/// Events: A (parent -> child), B (child -> parent), stop.
type Events = (Event, Event, Event);

/// The mproc child of `event_pingpong`.
fn answer(((a, b, stop), cpu): (Events, Option<usize>)) {
    if affinity::pin(cpu).is_err() {
        return;
    }
    loop {
        if a.wait().is_err() || stop.is_set() {
            return;
        }
        a.clear();
        b.set();
    }
}

struct EventPingPong {
    events: Events,
    process: Process,
    n: usize,
}

impl EventPingPong {
    fn session(n: usize) -> Result<Box<dyn Session>> {
        let events = (Event::new()?, Event::new()?, Event::new()?);
        let mut process = Process::new(answer, (events.clone(), affinity::child_cpu()));
        process.start()?;
        Ok(Box::new(EventPingPong { events, process, n }))
    }
}

impl Session for EventPingPong {
    fn rep(&mut self) -> Result<f64> {
        let (a, b, _) = &self.events;
        micros_per_op(self.n, || {
            a.set();
            b.wait()?;
            b.clear();
            Ok(())
        })
    }
}

impl Drop for EventPingPong {
    fn drop(&mut self) {
        self.events.2.set();
        self.events.0.set();
        let _ = self.process.join();
    }
}
