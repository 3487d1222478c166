//! `Pipe` between a parent and one child: `pipe_roundtrip_small` (a small
//! value there and back) and `pipe_bulk_{1,64}mib` (large messages one way).

use mproc::{Connection, Pipe, Process};

use super::Workload;
use crate::affinity;
use crate::cpython;
use crate::harness::{gigabytes_per_sec, micros_per_op, Kind, Mode, Result, Runner, Session};
use crate::limit::{bulk, pingpong::FutexPingPong};
use crate::peer::ipc;
use crate::stats::Better;

const MIB: usize = 1 << 20;

pub fn workloads() -> Vec<Workload> {
    vec![
        Workload {
            name: "pipe_roundtrip_small",
            unit: "us/rtt",
            better: Better::Lower,
            about: "a u64 sent to a child that echoes it, received back",
            pinned: true,
            runners: roundtrip,
        },
        Workload {
            name: "pipe_roundtrip_async",
            unit: "us/rtt",
            better: Better::Lower,
            about:
                "a u64 sent to a child that echoes it, received back, awaited from a tokio runtime",
            pinned: true,
            runners: roundtrip_async,
        },
        Workload {
            name: "pipe_bulk_1mib",
            unit: "GB/s",
            better: Better::Higher,
            about: "1 MiB messages sent to a child that receives each (bytes API)",
            pinned: true,
            runners: |mode| bulk_runners(MIB, mode.pick(8, 256, 1024)),
        },
        Workload {
            name: "pipe_bulk_64mib",
            unit: "GB/s",
            better: Better::Higher,
            about: "64 MiB messages sent to a child that receives each (bytes API)",
            pinned: true,
            runners: |mode| bulk_runners(64 * MIB, mode.pick(1, 4, 16)),
        },
        Workload {
            name: "pipe_bulk_1mib_pod",
            unit: "GB/s",
            better: Better::Higher,
            about: "1 MiB u64 slices sent to a child that receives each into a reused buffer",
            pinned: true,
            runners: |mode| pod_runners(MIB, mode.pick(8, 256, 1024)),
        },
        Workload {
            name: "pipe_bulk_64mib_pod",
            unit: "GB/s",
            better: Better::Higher,
            about: "64 MiB u64 slices sent to a child that receives each into a reused buffer",
            pinned: true,
            runners: |mode| pod_runners(64 * MIB, mode.pick(1, 4, 16)),
        },
    ]
}

/// The zero-copy path: `send_pod` / `recv_pod_into` a reused buffer.
fn pod_runners(size: usize, total_mib: usize) -> Vec<Runner> {
    let count = (total_mib * MIB / size).max(1);
    let msg = format!("{} MiB", size / MIB);
    vec![
        Runner::new(
            Kind::Mproc,
            format!("Connection::send_pod({msg} of u64) -> child recv_pod_into(reused buffer)"),
            move || MprocSink::session_pod(size, count),
        ),
        Runner::new(
            Kind::Limit,
            format!("memcpy of each {msg} message into a warm buffer, one process"),
            move || bulk::memcpy(size, count),
        ),
    ]
}

fn roundtrip(mode: Mode) -> Vec<Runner> {
    let n = mode.pick(200, 5_000, 20_000);
    vec![
        Runner::new(
            Kind::Mproc,
            "Pipe::<u64>: send(&i) + recv(), echoed by a child (forkserver)",
            move || MprocEcho::session(n),
        ),
        cpython::runner(
            "Pipe(): send(i) + recv(), echoed by a child (fork)",
            "pipe.py",
            [
                vec!["roundtrip".into(), n.to_string()],
                affinity::script_cpus(),
            ]
            .concat(),
        ),
        Runner::new(
            Kind::Peer,
            "ipc-channel 0.23 IpcSender<u64> + IpcReceiver<u64>, echoed by a child",
            move || ipc::Echo::session(n),
        ),
        Runner::new(
            Kind::Limit,
            "futex ping-pong on a MAP_SHARED page, spin then FUTEX_WAIT",
            move || FutexPingPong::session(n * 20, affinity::child_cpu()),
        ),
    ]
}

/// The awaited round trip: mproc's futures against the natural async
/// alternative, a tokio `UnixStream` between two processes. (The blocking
/// form is `pipe_roundtrip_small`'s mproc runner, in the same run.)
fn roundtrip_async(mode: Mode) -> Vec<Runner> {
    let n = mode.pick(200, 5_000, 20_000);
    vec![
        Runner::new(
            Kind::Mproc,
            "Pipe::<u64>: send_async(&i).await + recv_async().await on a current-thread tokio runtime, echoed by a blocking child (forkserver)",
            move || MprocAsyncEcho::session(n),
        ),
        Runner::new(
            Kind::Peer,
            "tokio 1 UnixStream: write_all(8 bytes) + read_exact(8 bytes), echoed by a forked child awaiting on its own tokio runtime",
            move || TokioEcho::session(n),
        ),
    ]
}

fn current_thread_runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?)
}

struct MprocAsyncEcho {
    child: WithChild<u64>,
    rt: tokio::runtime::Runtime,
    n: usize,
    next: u64,
}

impl MprocAsyncEcho {
    fn session(n: usize) -> Result<Box<dyn Session>> {
        let child = WithChild::start(echo)?;
        let rt = current_thread_runtime()?;
        Ok(Box::new(MprocAsyncEcho {
            child,
            rt,
            n,
            next: 0,
        }))
    }
}

impl Session for MprocAsyncEcho {
    fn rep(&mut self) -> Result<f64> {
        let (conn, next, n) = (&self.child.conn, &mut self.next, self.n);
        self.rt.block_on(async {
            let t = std::time::Instant::now();
            for _ in 0..n {
                *next += 1;
                conn.send_async(next).await?;
                if conn.recv_async().await? != *next {
                    return Err("wrong echo".into());
                }
            }
            Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
        })
    }
}

/// A forked child echoing 8-byte messages on a tokio `UnixStream`.
struct TokioEcho {
    stream: tokio::net::UnixStream,
    rt: tokio::runtime::Runtime,
    child: Option<mproc::JoinHandle<()>>,
    n: usize,
    next: u64,
}

impl TokioEcho {
    fn session(n: usize) -> Result<Box<dyn Session>> {
        let (mine, theirs) = std::os::unix::net::UnixStream::pair()?;
        let cpu = affinity::child_cpu();
        // The child keeps a copy of `mine` (it is a copy of this process):
        // the parent ends it with a `shutdown`, which reaches the socket.
        let child = mproc::fork(move || {
            if affinity::pin(cpu).is_err() {
                return;
            }
            let _ = tokio_echo(theirs);
        })?;
        mine.set_nonblocking(true)?;
        let rt = current_thread_runtime()?;
        let stream = {
            let _in = rt.enter();
            tokio::net::UnixStream::from_std(mine)?
        };
        Ok(Box::new(TokioEcho {
            stream,
            rt,
            child: Some(child),
            n,
            next: 0,
        }))
    }
}

fn tokio_echo(stream: std::os::unix::net::UnixStream) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.set_nonblocking(true)?;
    let rt = current_thread_runtime()?;
    rt.block_on(async {
        let mut s = tokio::net::UnixStream::from_std(stream)?;
        let mut buf = [0u8; 8];
        while s.read_exact(&mut buf).await.is_ok() {
            s.write_all(&buf).await?;
        }
        Ok(())
    })
}

impl Session for TokioEcho {
    fn rep(&mut self) -> Result<f64> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (s, next, n) = (&mut self.stream, &mut self.next, self.n);
        self.rt.block_on(async {
            let t = std::time::Instant::now();
            let mut buf = [0u8; 8];
            for _ in 0..n {
                *next += 1;
                s.write_all(&next.to_le_bytes()).await?;
                s.read_exact(&mut buf).await?;
                if u64::from_le_bytes(buf) != *next {
                    return Err("wrong echo".into());
                }
            }
            Ok(t.elapsed().as_secs_f64() * 1e6 / n as f64)
        })
    }
}

impl Drop for TokioEcho {
    fn drop(&mut self) {
        // Ends the child's read loop, whoever holds copies of the socket.
        let _ = std::os::fd::AsFd::as_fd(&self.stream)
            .try_clone_to_owned()
            .map(std::os::unix::net::UnixStream::from)
            .map(|s| s.shutdown(std::net::Shutdown::Both));
        if let Some(child) = self.child.take() {
            let _ = child.join();
        }
    }
}

fn bulk_runners(size: usize, total_mib: usize) -> Vec<Runner> {
    let count = (total_mib * MIB / size).max(1);
    let msg = format!("{} MiB", size / MIB);
    vec![
        Runner::new(
            Kind::Mproc,
            format!("Connection::send_bytes({msg}) -> child recv_bytes() (forkserver)"),
            move || MprocSink::session(size, count),
        ),
        cpython::runner(
            format!("Pipe(): send_bytes({msg}) -> child recv_bytes() (fork)"),
            "pipe.py",
            [
                vec!["bulk".into(), size.to_string(), count.to_string()],
                affinity::script_cpus(),
            ]
            .concat(),
        ),
        Runner::new(
            Kind::Peer,
            format!("ipc-channel 0.23 IpcBytesSender::send({msg}) -> child recv()"),
            move || ipc::Sink::session(size, count),
        ),
        Runner::new(
            Kind::Limit,
            format!("memcpy of each {msg} message into a warm buffer, one process"),
            move || bulk::memcpy(size, count),
        ),
    ]
}

/// The arguments of a child: its end of the pipe, and the CPU to run on.
type ChildArgs<T> = (Connection<T>, Option<usize>);

/// The mproc child of `pipe_roundtrip_small`: echoes until disconnected.
fn echo((conn, cpu): ChildArgs<u64>) {
    if affinity::pin(cpu).is_err() {
        return;
    }
    while let Ok(x) = conn.recv() {
        if conn.send(&x).is_err() {
            break;
        }
    }
}

/// The mproc child of `pipe_bulk_*`: receives; acks each empty message.
fn sink((conn, cpu): ChildArgs<()>) {
    if affinity::pin(cpu).is_err() {
        return;
    }
    while let Ok(msg) = conn.recv_bytes() {
        if msg.is_empty() && conn.send_bytes(b"k").is_err() {
            break;
        }
    }
}

/// The mproc child of `pipe_bulk_*_pod`: receives into one buffer; acks
/// each empty message.
fn sink_pod((conn, cpu): ChildArgs<()>) {
    if affinity::pin(cpu).is_err() {
        return;
    }
    let mut buf = vec![0u64; 64 * MIB / 8];
    while let Ok(n) = conn.recv_pod_into(&mut buf) {
        if n == 0 && conn.send_bytes(b"k").is_err() {
            break;
        }
    }
}

/// A child started with `f(child's end)`, and the parent's end.
struct WithChild<T> {
    conn: Connection<T>,
    process: Process,
}

impl<T: 'static> WithChild<T> {
    fn start(f: fn(ChildArgs<T>)) -> Result<WithChild<T>> {
        let (conn, theirs) = Pipe::<T>::new()?;
        let mut process = Process::new(f, (theirs, affinity::child_cpu()));
        process.start()?;
        Ok(WithChild { conn, process })
    }
}

impl<T> Drop for WithChild<T> {
    fn drop(&mut self) {
        self.conn.close();
        let _ = self.process.join();
    }
}

struct MprocEcho {
    child: WithChild<u64>,
    n: usize,
    next: u64,
}

impl MprocEcho {
    fn session(n: usize) -> Result<Box<dyn Session>> {
        let child = WithChild::start(echo)?;
        Ok(Box::new(MprocEcho { child, n, next: 0 }))
    }
}

impl Session for MprocEcho {
    fn rep(&mut self) -> Result<f64> {
        let (conn, next) = (&self.child.conn, &mut self.next);
        micros_per_op(self.n, || {
            *next += 1;
            conn.send(next)?;
            match conn.recv()? == *next {
                true => Ok(()),
                false => Err("wrong echo".into()),
            }
        })
    }
}

struct MprocSink {
    child: WithChild<()>,
    payload: Vec<u8>,
    count: usize,
    pod: Option<Vec<u64>>,
}

impl MprocSink {
    fn session(size: usize, count: usize) -> Result<Box<dyn Session>> {
        let child = WithChild::start(sink)?;
        Ok(Box::new(MprocSink {
            child,
            payload: vec![7u8; size],
            count,
            pod: None,
        }))
    }

    fn session_pod(size: usize, count: usize) -> Result<Box<dyn Session>> {
        let child = WithChild::start(sink_pod)?;
        Ok(Box::new(MprocSink {
            child,
            payload: Vec::new(),
            count,
            pod: Some(vec![7u64; size / 8]),
        }))
    }
}

impl Session for MprocSink {
    fn rep(&mut self) -> Result<f64> {
        let (conn, payload, count) = (&self.child.conn, &self.payload, self.count);
        if let Some(items) = &self.pod {
            return gigabytes_per_sec(items.len() * 8 * count, || {
                for _ in 0..count {
                    conn.send_pod(items)?;
                }
                conn.send_pod::<u64>(&[])?;
                conn.recv_bytes()?;
                Ok(())
            });
        }
        gigabytes_per_sec(payload.len() * count, || {
            for _ in 0..count {
                conn.send_bytes(payload)?;
            }
            conn.send_bytes(&[])?;
            conn.recv_bytes()?;
            Ok(())
        })
    }
}
