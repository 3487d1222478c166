//! `Queue` between a parent and one child: `queue_roundtrip_small` (a
//! value there through one queue and back through another),
//! `queue_throughput_small` (a child producing small items as fast as it
//! can, the parent consuming) and `queue_bulk_1mib` (1 MiB items to a
//! consuming child).

use std::sync::Arc;
use std::time::Instant;

use mproc::{Process, Queue};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::Workload;
use crate::affinity;
use crate::cpython;
use crate::harness::{gigabytes_per_sec, micros_per_op, Kind, Mode, Result, Runner, Session};
use crate::limit::{bulk, pingpong::FutexPingPong};
use crate::stats::Better;

const MIB: usize = 1 << 20;

pub fn workloads() -> Vec<Workload> {
    vec![
        Workload {
            name: "queue_roundtrip_small",
            unit: "us/rtt",
            better: Better::Lower,
            about: "a u64 put on a queue, echoed by a child on a second queue, got back",
            pinned: true,
            runners: roundtrip,
        },
        Workload {
            name: "queue_throughput_small",
            unit: "Mitems/s",
            better: Better::Higher,
            about: "u64 items put by a child, got by the parent (one producer, one consumer)",
            pinned: true,
            runners: throughput,
        },
        Workload {
            name: "queue_bulk_1mib",
            unit: "GB/s",
            better: Better::Higher,
            about: "1 MiB byte items put by the parent, got by a child",
            pinned: true,
            runners: |mode| bulk_runners(MIB, mode.pick(8, 256, 1024)),
        },
    ]
}

fn roundtrip(mode: Mode) -> Vec<Runner> {
    let n = mode.pick(200, 5_000, 20_000);
    vec![
        Runner::new(
            Kind::Mproc,
            "Queue::<u64>: put(i) + get() on a second queue, echoed by a child (forkserver)",
            move || Echo::session(n),
        ),
        cpython::runner(
            "Queue(): put(i) + get() on a second queue, echoed by a child (fork)",
            "mp_queue.py",
            [
                vec!["roundtrip".into(), n.to_string()],
                affinity::script_cpus(),
            ]
            .concat(),
        ),
        Runner::new(
            Kind::Limit,
            "futex ping-pong on a MAP_SHARED page, spin then FUTEX_WAIT",
            move || FutexPingPong::session(n * 20, affinity::child_cpu()),
        ),
    ]
}

fn throughput(mode: Mode) -> Vec<Runner> {
    let n = mode.pick(10_000, 1_000_000, 1_000_000);
    vec![
        Runner::new(
            Kind::Mproc,
            format!("Queue::<u64>: a child put()s {n} items, the parent get()s them (forkserver)"),
            move || Stream::session(n),
        ),
        cpython::runner(
            format!(
                "Queue(): a child put()s {} items, the parent get()s them (fork)",
                n / 10
            ),
            "mp_queue.py",
            // CPython moves a tenth as many: the figure is a rate.
            [
                vec!["throughput".into(), (n / 10).to_string()],
                affinity::script_cpus(),
            ]
            .concat(),
        ),
    ]
}

fn bulk_runners(size: usize, total_mib: usize) -> Vec<Runner> {
    let count = (total_mib * MIB / size).max(1);
    let msg = format!("{} MiB", size / MIB);
    vec![
        Runner::new(
            Kind::Mproc,
            format!("Queue::<Bytes>: put({msg}) -> child get() (forkserver)"),
            move || Sink::session(size, count),
        ),
        cpython::runner(
            format!("Queue(): put(bytes of {msg}) -> child get() (fork)"),
            "mp_queue.py",
            [
                vec!["bulk".into(), size.to_string(), count.to_string()],
                affinity::script_cpus(),
            ]
            .concat(),
        ),
        Runner::new(
            Kind::Limit,
            format!("memcpy of each {msg} item into a warm buffer, one process"),
            move || bulk::memcpy(size, count),
        ),
    ]
}

/// Shared bytes that serialise as one byte string (as `serde_bytes` does),
/// not as a sequence of `u8`s; a clone is a reference count, so the parent
/// puts the same buffer again and again, as CPython's runner does.
#[derive(Clone, Default)]
struct Bytes(Arc<Vec<u8>>);

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> std::result::Result<Bytes, E> {
                Ok(Bytes(Arc::new(v.to_vec())))
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> std::result::Result<Bytes, E> {
                Ok(Bytes(Arc::new(v)))
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// A child running `f((to child, from child, its CPU))`.
struct WithChild<T> {
    to: Queue<T>,
    from: Queue<T>,
    process: Process,
}

type ChildArgs<T> = (Queue<T>, Queue<T>, Option<usize>);

impl<T: 'static> WithChild<T> {
    fn start(f: fn(ChildArgs<T>)) -> Result<WithChild<T>> {
        let (to, from) = (Queue::new()?, Queue::new()?);
        let args = (to.clone(), from.clone(), affinity::child_cpu());
        let mut process = Process::new(f, args);
        process.start()?;
        Ok(WithChild { to, from, process })
    }
}

impl<T> Drop for WithChild<T> {
    fn drop(&mut self) {
        let _ = self.to.shutdown(true);
        let _ = self.process.join();
    }
}

/// Echoes `Some(x)` from `to` onto `from` until shut down or `None`.
fn echo((to, from, cpu): ChildArgs<Option<u64>>) {
    if affinity::pin(cpu).is_err() {
        return;
    }
    while let Ok(Some(x)) = to.get() {
        if from.put(Some(x)).is_err() {
            break;
        }
    }
}

/// For each `Some(n)` on `to`, puts `Some(0..n)` on `from`.
fn produce((to, from, cpu): ChildArgs<Option<u64>>) {
    if affinity::pin(cpu).is_err() {
        return;
    }
    while let Ok(Some(n)) = to.get() {
        for i in 0..n {
            if from.put(Some(i)).is_err() {
                return;
            }
        }
    }
}

/// Gets items from `to`; an empty one asks for an ack on `from`.
fn sink((to, from, cpu): ChildArgs<Bytes>) {
    if affinity::pin(cpu).is_err() {
        return;
    }
    while let Ok(item) = to.get() {
        if item.0.is_empty() && from.put(Bytes::default()).is_err() {
            break;
        }
    }
}

struct Echo {
    child: WithChild<Option<u64>>,
    n: usize,
    next: u64,
}

impl Echo {
    fn session(n: usize) -> Result<Box<dyn Session>> {
        let child = WithChild::start(echo)?;
        Ok(Box::new(Echo { child, n, next: 0 }))
    }
}

impl Session for Echo {
    fn rep(&mut self) -> Result<f64> {
        let (c, next) = (&self.child, &mut self.next);
        micros_per_op(self.n, || {
            *next += 1;
            c.to.put(Some(*next))?;
            match c.from.get()? == Some(*next) {
                true => Ok(()),
                false => Err("wrong echo".into()),
            }
        })
    }
}

struct Stream {
    child: WithChild<Option<u64>>,
    n: usize,
}

impl Stream {
    fn session(n: usize) -> Result<Box<dyn Session>> {
        let child = WithChild::start(produce)?;
        Ok(Box::new(Stream { child, n }))
    }
}

impl Session for Stream {
    fn rep(&mut self) -> Result<f64> {
        let t = Instant::now();
        self.child.to.put(Some(self.n as u64))?;
        for i in 0..self.n as u64 {
            if self.child.from.get()? != Some(i) {
                return Err("items out of order".into());
            }
        }
        Ok(self.n as f64 / t.elapsed().as_secs_f64() / 1e6)
    }
}

struct Sink {
    child: WithChild<Bytes>,
    payload: Bytes,
    count: usize,
}

impl Sink {
    fn session(size: usize, count: usize) -> Result<Box<dyn Session>> {
        let child = WithChild::start(sink)?;
        let payload = Bytes(Arc::new(vec![7u8; size]));
        Ok(Box::new(Sink {
            child,
            payload,
            count,
        }))
    }
}

impl Session for Sink {
    fn rep(&mut self) -> Result<f64> {
        let (c, payload, count) = (&self.child, &self.payload, self.count);
        gigabytes_per_sec(payload.0.len() * count, || {
            for _ in 0..count {
                c.to.put(payload.clone()).map_err(|_| "put failed")?;
            }
            c.to.put(Bytes::default()).map_err(|_| "put failed")?;
            c.from.get()?;
            Ok(())
        })
    }
}
