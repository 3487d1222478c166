//! Awaiting a pipe (feature `tokio`): `recv_async`, `send_async`,
//! `poll_async` and `aio::wait_async`, against blocking and async peers in
//! other processes, under both tokio runtimes; cancellation in `select!`;
//! no leaks.
#![cfg(feature = "tokio")]

/// The tests of this file take turns: `nothing_leaks` counts the process's
/// descriptors and threads, which the others would change under
/// `cargo test` (one process for all; nextest runs each alone anyway).
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

mod common;

use std::future::Future;
use std::time::Duration;

use common::{current_thread, multi_thread, thread_count};
use mproc::{Connection, Error, Pipe, Process};

/// Runs `f` on each runtime in turn.
fn on_both<F: Future<Output = ()>>(f: impl Fn() -> F) {
    current_thread().block_on(f());
    multi_thread().block_on(f());
}

/// A blocking echo: sends back every message until end of file.
fn echo(conn: Connection<u64>) {
    while let Ok(v) = conn.recv() {
        conn.send(&(v + 1)).unwrap();
    }
}

#[test]
fn round_trips_with_a_blocking_child() {
    let _turn = turn();
    on_both(|| async {
        let (a, b) = Pipe::<u64>::new().unwrap();
        let mut p = Process::new(echo, b);
        p.start().unwrap();
        for i in 0..2000u64 {
            a.send_async(&i).await.unwrap();
            assert_eq!(a.recv_async().await.unwrap(), i + 1);
        }
        drop(a);
        p.join_async().await.unwrap();
        assert_eq!(p.exitcode(), Some(0));
    });
}

/// A child that waits on its end until killed.
fn holds(conn: Connection<u64>) {
    let _keep = conn;
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_peer_killed_while_awaited_is_disconnected() {
    let _turn = turn();
    on_both(|| async {
        let (a, b) = Pipe::<u64>::new().unwrap();
        let mut p = Process::new(holds, b);
        p.start().unwrap();
        let killer = async {
            // The receive below is asleep in the reactor by now, or soon.
            tokio::task::yield_now().await;
            p.kill().unwrap();
        };
        let (r, ()) = tokio::join!(a.recv_async(), killer);
        assert!(matches!(r, Err(Error::Disconnected)), "{r:?}");
        // As the blocking form says.
        assert!(matches!(a.recv(), Err(Error::Disconnected)));
        assert!(matches!(a.send_async(&1).await, Err(Error::Disconnected)));
        p.join_async().await.unwrap();
    });
}

/// Sends `n` messages (index and 100 bytes) with blocking sends, with a
/// pause between them (longer than the receiver's spin, so that most
/// receives go to sleep in the reactor before their message comes; only
/// the count of dropped futures depends on it).
fn sends_many((conn, n): (Connection<(u64, Vec<u8>)>, u64)) {
    for i in 0..n {
        conn.send(&(i, vec![i as u8; 100])).unwrap();
        std::thread::sleep(Duration::from_micros(30));
    }
}

/// A `select!` that drops the receive future whenever another branch wins
/// first: every message arrives exactly once, in order.
#[test]
fn dropped_receives_lose_nothing() {
    let _turn = turn();
    const N: u64 = 10_000;
    on_both(|| async {
        let (a, b) = Pipe::<(u64, Vec<u8>)>::new().unwrap();
        let mut p = Process::new(sends_many, (b, N));
        p.start().unwrap();
        let (mut next, mut dropped) = (0u64, 0u64);
        while next < N {
            tokio::select! {
                r = a.recv_async() => {
                    let (i, bytes) = r.unwrap();
                    assert_eq!(i, next, "in order, once");
                    assert_eq!(bytes, vec![i as u8; 100]);
                    next += 1;
                }
                () = tokio::task::yield_now() => dropped += 1,
            }
        }
        assert!(matches!(a.recv_async().await, Err(Error::Disconnected)));
        p.join_async().await.unwrap();
        assert_eq!(p.exitcode(), Some(0));
        eprintln!("{dropped} receive futures dropped before they completed");
        assert!(dropped > 0);
    });
}

/// A child whose sends are awaited on its own runtime, and whose ring
/// fills (2 MiB through a 512 KiB ring): the parent receives blocking.
fn sends_async((conn, n): (Connection<Vec<u8>>, u64)) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for i in 0..n {
            conn.send_async(&vec![i as u8; 1024]).await.unwrap();
        }
        // The parent's answer: how many it got.
        assert_eq!(conn.recv_async().await.unwrap(), n.to_le_bytes());
    });
}

#[test]
fn an_async_sender_with_a_full_ring_and_a_blocking_receiver() {
    let _turn = turn();
    let (a, b) = Pipe::<Vec<u8>>::new().unwrap();
    let mut p = Process::new(sends_async, (b, 2048));
    p.start().unwrap();
    for i in 0..2048u64 {
        assert_eq!(a.recv().unwrap(), vec![i as u8; 1024]);
    }
    a.send(&2048u64.to_le_bytes().to_vec()).unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
}

/// Receives blocking, answers with the sum.
fn sums((conn, n): (Connection<Vec<u8>>, usize)) {
    let mut sum = 0u64;
    for _ in 0..n {
        sum += conn.recv().unwrap().iter().map(|&b| b as u64).sum::<u64>();
    }
    conn.send(&sum.to_le_bytes().to_vec()).unwrap();
}

#[test]
fn async_sends_through_a_full_ring_to_a_blocking_child() {
    let _turn = turn();
    on_both(|| async {
        let (a, b) = Pipe::<Vec<u8>>::new().unwrap();
        let mut p = Process::new(sums, (b, 600));
        p.start().unwrap();
        let mut want = 0u64;
        for i in 0..600u64 {
            // 600 KiB messages in all of 4 KiB... and a few larger than the ring.
            let len = if i % 100 == 0 { 700 << 10 } else { 4096 };
            want += (i % 256) * len as u64;
            a.send_async(&vec![i as u8; len]).await.unwrap();
        }
        let got = a.recv_async().await.unwrap();
        assert_eq!(u64::from_le_bytes(got.try_into().unwrap()), want);
        p.join_async().await.unwrap();
    });
}

#[test]
fn bytes_descriptors_and_poll() {
    let _turn = turn();
    on_both(|| async {
        let (a, b) = Pipe::<Connection<String>>::new().unwrap();
        let (mine, theirs) = Pipe::<String>::new().unwrap();
        a.send_async(&theirs).await.unwrap();
        drop(theirs);
        let theirs = b.recv_async().await.unwrap();
        theirs.send_async(&"hi".to_string()).await.unwrap();
        mine.poll_async().await.unwrap();
        assert_eq!(mine.recv_async().await.unwrap(), "hi");
        a.send_bytes_async(b"raw").await.unwrap();
        assert_eq!(b.recv_bytes_async().await.unwrap(), b"raw");
        // A read-only end cannot send, as for `send`.
        let (rx, _tx) = Pipe::<u8>::one_way().unwrap();
        assert!(matches!(
            rx.send_async(&1).await,
            Err(Error::InvalidState(_))
        ));
        // End of file is ready for `poll_async`.
        drop(theirs);
        mine.poll_async().await.unwrap();
        assert!(matches!(mine.recv_async().await, Err(Error::Disconnected)));
    });
}

fn nap(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

fn sends_one(conn: Connection<u64>) {
    conn.send(&5).unwrap();
    conn.recv().ok(); // until the parent closes
}

#[test]
fn wait_async_over_processes_and_connections() {
    let _turn = turn();
    on_both(|| async {
        let (a, b) = Pipe::<u64>::new().unwrap();
        let mut p = Process::new(nap, 30);
        p.start().unwrap();
        let mut q = Process::new(sends_one, b);
        q.start().unwrap();
        let ready = mproc::aio::wait_async(&[&p, &a], None).await.unwrap();
        assert!(!ready.is_empty());
        let ready = mproc::aio::wait_async(&[&a], None).await.unwrap();
        assert_eq!(ready, [0]);
        assert_eq!(a.recv_async().await.unwrap(), 5);
        let ready = mproc::aio::wait_async(&[&a], Some(Duration::from_millis(5)))
            .await
            .unwrap();
        assert!(ready.is_empty(), "nothing more");
        let ready = mproc::aio::wait_async(&[&a, &p], None).await.unwrap();
        assert_eq!(ready, [1], "the napper ends");
        drop(a);
        p.join_async().await.unwrap();
        q.join_async().await.unwrap();
    });
}

/// Everything above once more, then counted: no descriptor and no thread
/// is left behind once the runtimes are gone.
#[test]
fn nothing_leaks() {
    let _turn = turn();
    let work = || async {
        let (a, b) = Pipe::<u64>::new().unwrap();
        let mut p = Process::new(echo, b);
        p.start().unwrap();
        for i in 0..200u64 {
            a.send_async(&i).await.unwrap();
            let r = tokio::time::timeout(Duration::from_secs(30), a.recv_async()).await;
            assert_eq!(r.unwrap().unwrap(), i + 1);
        }
        // A receive dropped while asleep in the reactor.
        let (c, _d) = Pipe::<u64>::new().unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(5), c.recv_async())
                .await
                .is_err()
        );
        drop(a);
        p.join_async().await.unwrap();
        let h = mproc::spawn(|x: u64| x, 1).unwrap();
        assert_eq!(h.await.unwrap(), 1);
    };
    // Warm up: the fork server, helper threads.
    on_both(work);
    let (fds, threads) = (mproc::__private::open_fd_count(), thread_count());
    on_both(work);
    assert_eq!(mproc::__private::open_fd_count(), fds, "descriptors");
    // A thread of a runtime may take a moment to be gone after shutdown.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while thread_count() > threads && std::time::Instant::now() < deadline {
        std::thread::yield_now();
    }
    assert_eq!(thread_count(), threads, "threads");
}
