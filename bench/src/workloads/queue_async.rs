//! A `Queue` round trip awaited from tokio (`queue_roundtrip_async`): the
//! parent `put_async`s a `u64` and awaits `get_async` on a second queue,
//! on a current-thread runtime; a child echoes with the blocking calls.
//! Against it: the same round trip over a tokio `UnixStream` (the natural
//! async alternative between two processes) and the futex limit. Its
//! blocking form is `queue_roundtrip_small` (run both: `--filter
//! queue_roundtrip`).

use std::io::{Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener, UnixStream};

use mproc::{Process, Queue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Workload;
use crate::affinity;
use crate::harness::{Kind, Mode, Result, Runner, Session};
use crate::limit::pingpong::FutexPingPong;
use crate::stats::Better;

pub fn workloads() -> Vec<Workload> {
    vec![Workload {
        name: "queue_roundtrip_async",
        unit: "us/rtt",
        better: Better::Lower,
        about: "a u64 put on a queue, echoed by a child on a second queue, awaited back from tokio",
        pinned: true,
        runners: roundtrip,
    }]
}

fn roundtrip(mode: Mode) -> Vec<Runner> {
    let n = mode.pick(200, 5_000, 20_000);
    vec![
        Runner::new(
            Kind::Mproc,
            "Queue::<u64>: put_async(i) + get_async() on a second queue on a current-thread tokio runtime, echoed by a child's blocking get/put (forkserver)",
            move || AsyncEcho::session(n),
        ),
        Runner::new(
            Kind::Peer,
            "tokio UnixStream: write 8 bytes + read_exact 8 on a current-thread runtime, echoed by a child's blocking std UnixStream",
            move || StreamEcho::session(n),
        ),
        Runner::new(
            Kind::Limit,
            "futex ping-pong on a MAP_SHARED page, spin then FUTEX_WAIT",
            move || FutexPingPong::session(n * 20, affinity::child_cpu()),
        ),
    ]
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?)
}

type EchoArgs = (Queue<Option<u64>>, Queue<Option<u64>>, Option<usize>);

/// Echoes `Some(x)` from `to` onto `from` until shut down or `None`.
fn echo((to, from, cpu): EchoArgs) {
    if affinity::pin(cpu).is_err() {
        return;
    }
    while let Ok(Some(x)) = to.get() {
        if from.put(Some(x)).is_err() {
            break;
        }
    }
}

struct AsyncEcho {
    rt: tokio::runtime::Runtime,
    to: Queue<Option<u64>>,
    from: Queue<Option<u64>>,
    process: Process,
    n: usize,
    next: u64,
}

impl AsyncEcho {
    fn session(n: usize) -> Result<Box<dyn Session>> {
        let (to, from) = (Queue::new()?, Queue::new()?);
        let mut process = Process::new(echo, (to.clone(), from.clone(), affinity::child_cpu()));
        process.start()?;
        Ok(Box::new(AsyncEcho {
            rt: runtime()?,
            to,
            from,
            process,
            n,
            next: 0,
        }))
    }
}

impl Drop for AsyncEcho {
    fn drop(&mut self) {
        let _ = self.to.shutdown(true);
        let _ = self.process.join();
    }
}

impl Session for AsyncEcho {
    fn rep(&mut self) -> Result<f64> {
        let (to, from, n, next) = (&self.to, &self.from, self.n, &mut self.next);
        self.rt.block_on(async {
            let t = std::time::Instant::now();
            for _ in 0..n {
                *next += 1;
                to.put_async(Some(*next)).await.map_err(|_| "put failed")?;
                if from.get_async().await? != Some(*next) {
                    return Err("wrong echo".into());
                }
            }
            Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
        })
    }
}

/// Connects to the abstract socket `name` and echoes 8-byte messages.
fn stream_echo((name, cpu): (String, Option<usize>)) {
    if affinity::pin(cpu).is_err() {
        return;
    }
    let Ok(addr) = SocketAddr::from_abstract_name(name.as_bytes()) else {
        return;
    };
    let Ok(mut s) = UnixStream::connect_addr(&addr) else {
        return;
    };
    let mut b = [0u8; 8];
    while s.read_exact(&mut b).is_ok() {
        if s.write_all(&b).is_err() {
            break;
        }
    }
}

struct StreamEcho {
    rt: tokio::runtime::Runtime,
    stream: Option<tokio::net::UnixStream>,
    process: Process,
    n: usize,
    next: u64,
}

impl StreamEcho {
    fn session(n: usize) -> Result<Box<dyn Session>> {
        let name = format!("mproc-bench-echo-{}", std::process::id());
        let listener = UnixListener::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes())?)?;
        let mut process = Process::new(stream_echo, (name, affinity::child_cpu()));
        process.start()?;
        let (stream, _) = listener.accept()?;
        stream.set_nonblocking(true)?;
        let rt = runtime()?;
        let stream = rt.block_on(async { tokio::net::UnixStream::from_std(stream) })?;
        Ok(Box::new(StreamEcho {
            rt,
            stream: Some(stream),
            process,
            n,
            next: 0,
        }))
    }
}

impl Drop for StreamEcho {
    fn drop(&mut self) {
        // Deregistered inside the runtime, then closed: the child's read
        // ends and it returns.
        let stream = self.stream.take();
        self.rt.block_on(async { drop(stream) });
        let _ = self.process.join();
    }
}

impl Session for StreamEcho {
    fn rep(&mut self) -> Result<f64> {
        let (n, next) = (self.n, &mut self.next);
        let s = self.stream.as_mut().ok_or("no stream")?;
        self.rt.block_on(async {
            let t = std::time::Instant::now();
            for _ in 0..n {
                *next += 1;
                s.write_all(&next.to_le_bytes()).await?;
                let mut b = [0u8; 8];
                s.read_exact(&mut b).await?;
                if u64::from_le_bytes(b) != *next {
                    return Err("wrong echo".into());
                }
            }
            Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
        })
    }
}
