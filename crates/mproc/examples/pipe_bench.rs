//! Pipe latency and throughput between two processes, against a raw
//! socketpair doing the same.
//!
//! ```text
//! cargo run --release --example pipe_bench
//! ```
//!
//! Round trips: the median of 20,000 timed request/answer pairs of a `u64`.
//! "Late": the peer busy-waits before it answers (20 µs: the waiter still
//! spins; 200 µs and 1 ms: it has gone to sleep); the figure shown is the
//! round trip minus the delay, the cost of being woken. Throughput: one-way
//! transfer of 1 MiB and 64 MiB messages into a reused buffer, timed until
//! the receiver's acknowledgement. `PIPE_BENCH_VERBOSE=1` prints the
//! percentiles of each round-trip series on stderr.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use mproc::{Connection, Pipe};

/// Peer delays in µs, and how many round trips to time with each.
const ROUND_TRIPS: [(u64, usize); 4] = [(0, 20_000), (20, 5_000), (200, 2_000), (1000, 500)];

fn busy_wait(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

fn echo(args: (Connection<u64>, u64)) {
    let (conn, delay_us) = args;
    while let Ok(x) = conn.recv() {
        busy_wait(Duration::from_micros(delay_us));
        if conn.send(&(x + 1)).is_err() {
            break;
        }
    }
}

fn sink(args: (Connection<u64>, usize, usize)) {
    let (conn, size, count) = args;
    let mut buf = vec![0u8; size];
    for _ in 0..count {
        conn.recv_bytes_into(&mut buf).unwrap();
    }
    conn.send(&0).unwrap();
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    if std::env::var_os("PIPE_BENCH_VERBOSE").is_some() {
        let q = |p: usize| v[v.len() * p / 100].as_secs_f64() * 1e6;
        eprintln!(
            "  p10 {:.2} p50 {:.2} p90 {:.2} p99 {:.2} µs",
            q(10),
            q(50),
            q(90),
            q(99)
        );
    }
    v[v.len() / 2]
}

fn pipe_round_trip(n: usize, delay: Duration) -> Duration {
    let (here, there) = Pipe::<u64>::new().unwrap();
    let h = mproc::spawn(echo, (there, delay.as_micros() as u64)).unwrap();
    let mut times = Vec::with_capacity(n);
    for i in 0..(n + n / 10) as u64 {
        let t = Instant::now();
        here.send(&i).unwrap();
        assert_eq!(here.recv().unwrap(), i + 1);
        times.push(t.elapsed());
    }
    drop(here);
    h.join().unwrap();
    median(times.split_off(n / 10)).saturating_sub(delay)
}

fn socket_round_trip(n: usize, delay: Duration) -> Duration {
    let (mut here, mut there) = UnixStream::pair().unwrap();
    let h = mproc::fork(move || {
        let mut b = [0u8; 8];
        // The child inherits `here` too (fork), so it stops on a sentinel
        // rather than on end of file.
        while there.read_exact(&mut b).is_ok() && b != [0xff; 8] {
            busy_wait(delay);
            let x = u64::from_le_bytes(b) + 1;
            if there.write_all(&x.to_le_bytes()).is_err() {
                break;
            }
        }
    })
    .unwrap();
    let mut times = Vec::with_capacity(n);
    let mut b = [0u8; 8];
    for i in 0..(n + n / 10) as u64 {
        let t = Instant::now();
        here.write_all(&i.to_le_bytes()).unwrap();
        here.read_exact(&mut b).unwrap();
        assert_eq!(u64::from_le_bytes(b), i + 1);
        times.push(t.elapsed());
    }
    here.write_all(&[0xff; 8]).unwrap();
    h.join().unwrap();
    median(times.split_off(n / 10)).saturating_sub(delay)
}

fn pipe_throughput(size: usize, count: usize) -> f64 {
    let (here, there) = Pipe::<u64>::new().unwrap();
    let h = mproc::spawn(sink, (there, size, count)).unwrap();
    let data = vec![7u8; size];
    let t = Instant::now();
    for _ in 0..count {
        here.send_bytes(&data).unwrap();
    }
    here.recv().unwrap();
    let secs = t.elapsed().as_secs_f64();
    h.join().unwrap();
    (size * count) as f64 / secs / 1e9
}

fn socket_throughput(size: usize, count: usize) -> f64 {
    let (mut here, mut there) = UnixStream::pair().unwrap();
    let h = mproc::fork(move || {
        let mut buf = vec![0u8; size];
        for _ in 0..count {
            there.read_exact(&mut buf).unwrap();
        }
        there.write_all(&[1]).unwrap();
    })
    .unwrap();
    let data = vec![7u8; size];
    let t = Instant::now();
    for _ in 0..count {
        here.write_all(&data).unwrap();
    }
    here.read_exact(&mut [0u8]).unwrap();
    let secs = t.elapsed().as_secs_f64();
    h.join().unwrap();
    (size * count) as f64 / secs / 1e9
}

/// One `memcpy` of `size` bytes between two buffers of this process, for
/// scale: a message through a pipe is copied twice.
fn memcpy_throughput(size: usize, count: usize) -> f64 {
    let src = vec![7u8; size];
    let mut dst = vec![0u8; size];
    let t = Instant::now();
    for _ in 0..count {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&mut dst);
    }
    (size * count) as f64 / t.elapsed().as_secs_f64() / 1e9
}

fn main() {
    mproc::set_fork_warning(false);
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    println!("{:<34} {:>10} {:>12}", "", "Pipe", "socketpair");
    for (delay_us, n) in ROUND_TRIPS {
        let delay = Duration::from_micros(delay_us);
        let what = match delay_us {
            0 => "round trip (median)".to_string(),
            d => format!("  peer {d} µs late (minus {d} µs)"),
        };
        println!(
            "{what:<34} {:>7.2} µs {:>9.2} µs",
            us(pipe_round_trip(n, delay)),
            us(socket_round_trip(n, delay)),
        );
    }
    for (size, count) in [(1 << 20, 2048), (64 << 20, 32)] {
        println!(
            "{:<34} {:>7.2} GB/s {:>7.2} GB/s",
            format!("{} MiB messages, one way", size >> 20),
            pipe_throughput(size, count),
            socket_throughput(size, count),
        );
    }
    println!(
        "{:<34} {:>7.2} GB/s",
        "(memcpy of 64 MiB, for scale)",
        memcpy_throughput(64 << 20, 32)
    );
}
