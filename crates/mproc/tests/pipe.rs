//! `Pipe` and `Connection` across real processes, under every start method.
//!
//! The behaviours follow CPython's `_test_multiprocessing.py` (`_TestConnection`:
//! values, boundaries, `recv_bytes_into`, `poll`, end of file, sending a
//! closed pipe, `wait`), plus what the shared-memory rings add: messages far
//! larger than a ring, a peer killed while we sleep on a futex, descriptors
//! travelling beside the ring.
//!
//! Tests take a global lock: a child started by `Fork` inherits every
//! descriptor of the test process, so a pipe of a test running beside it would
//! not see end of file until that child exits (and descriptor counts would
//! be meaningless).

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mproc::{Connection, Error, Pipe, Process, StartMethod};
use serde::{Deserialize, Serialize};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    mproc::set_fork_warning(false);
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn start<A, R>(m: StartMethod, f: fn(A) -> R, args: A) -> Process
where
    A: Serialize + serde::de::DeserializeOwned + Send + 'static,
    R: Serialize + serde::de::DeserializeOwned + Send + 'static,
{
    let mut p = mproc::get_context(Some(m)).process(f, args);
    p.start().unwrap();
    p
}

fn finish(mut p: Process) {
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0), "child failed");
}

/// A cheap checksum over 8-byte words (fast even in debug builds).
fn checksum(bytes: &[u8]) -> u64 {
    let mut words = bytes.chunks_exact(8);
    let sum = words.by_ref().fold(0u64, |h, w| {
        (h ^ u64::from_le_bytes(w.try_into().unwrap())).wrapping_mul(0x100_0000_01b3)
    });
    words
        .remainder()
        .iter()
        .fold(sum, |h, &b| (h ^ u64::from(b)).wrapping_mul(31))
}

/// `len` bytes of a pattern depending on `seed`.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    let mut x = seed | 1;
    for w in v.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.copy_from_slice(&x.to_le_bytes()[..w.len()]);
    }
    v
}

// ---------------------------------------------------------------- values

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Point {
    x: i64,
    y: f64,
    name: String,
    tags: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
enum Msg {
    Point(Point),
    Pair((u32, String, Option<bool>)),
    List(Vec<u64>),
    Nested(Vec<Vec<Point>>),
    Unit,
    Stop,
}

fn echo_msgs(conn: Connection<Msg>) {
    while let Ok(m) = conn.recv() {
        if m == Msg::Stop {
            return;
        }
        conn.send(&m).unwrap();
    }
}

fn sample_msgs() -> Vec<Msg> {
    let p = Point {
        x: -3,
        y: 2.5,
        name: "pt".into(),
        tags: vec!["a".into(), String::new()],
    };
    vec![
        Msg::Point(p.clone()),
        Msg::Pair((7, "seven".into(), Some(false))),
        Msg::List((0..1000).collect()),
        Msg::List(Vec::new()),
        Msg::Nested(vec![vec![p.clone(); 3], vec![]]),
        Msg::Unit,
    ]
}

#[test]
fn structs_tuples_and_lists_round_trip() {
    let _g = serial();
    for m in mproc::all_start_methods() {
        let (here, there) = Pipe::<Msg>::new().unwrap();
        let p = start(m, echo_msgs, there);
        for msg in sample_msgs() {
            here.send(&msg).unwrap();
            assert_eq!(here.recv().unwrap(), msg, "{m}");
        }
        // Many in flight at once (about 90 KB, less than any buffer), then
        // all back in order.
        let all: Vec<Msg> = (0..10).flat_map(|_| sample_msgs()).collect();
        all.iter().for_each(|msg| here.send(msg).unwrap());
        for msg in &all {
            assert_eq!(&here.recv().unwrap(), msg, "{m}");
        }
        here.send(&Msg::Stop).unwrap();
        finish(p);
    }
}

// ---------------------------------------------------------------- boundaries

/// Lengths around the interesting sizes: empty, tiny, a chunk (64 KiB), a
/// ring (512 KiB), more than a ring.
fn lengths() -> Vec<usize> {
    let mut v: Vec<usize> = vec![0, 0, 1, 0, 7, 8, 9, 15, 16, 17, 255, 4096];
    for base in [64 << 10, 512 << 10, 1 << 20, 3 << 20] {
        v.extend([base - 17, base - 16, base - 1, base, base + 1]);
    }
    v.extend([0, 0, 0, 1, 2, 3]);
    v
}

fn measure_each(args: (Connection<Vec<(u64, u64)>>, usize)) {
    let (conn, n) = args;
    let got = (0..n)
        .map(|_| conn.recv_bytes().unwrap())
        .map(|b| (b.len() as u64, checksum(&b)))
        .collect();
    conn.send(&got).unwrap();
}

#[test]
fn messages_keep_their_boundaries() {
    let _g = serial();
    for m in mproc::all_start_methods() {
        let (here, there) = Pipe::new().unwrap();
        let lens = lengths();
        let p = start(m, measure_each, (there, lens.len()));
        let mut want = Vec::new();
        for (i, &len) in lens.iter().enumerate() {
            let b = pattern(len, i as u64);
            want.push((len as u64, checksum(&b)));
            here.send_bytes(&b).unwrap();
        }
        assert_eq!(here.recv().unwrap(), want, "{m}");
        finish(p);
    }
}

#[test]
fn zero_length_messages() {
    let _g = serial();
    let (a, b) = Pipe::<()>::new().unwrap();
    a.send(&()).unwrap();
    a.send_bytes(&[]).unwrap();
    a.send_bytes(b"x").unwrap();
    a.send_bytes(&[]).unwrap();
    b.recv().unwrap();
    assert_eq!(b.recv_bytes().unwrap(), b"");
    assert_eq!(b.recv_bytes().unwrap(), b"x");
    assert_eq!(b.recv_bytes_into(&mut []).unwrap(), 0);
    assert!(matches!(b.try_recv(), Err(Error::Empty)));
}

// ---------------------------------------------------------------- big messages

fn big_echo(conn: Connection<u64>) {
    let data = conn.recv_bytes().unwrap();
    conn.send(&checksum(&data)).unwrap();
    conn.send_bytes(&pattern(data.len(), 99)).unwrap();
}

#[test]
fn a_64_mib_message_arrives_intact_both_ways() {
    let _g = serial();
    let len = 64 << 20;
    let (here, there) = Pipe::<u64>::new().unwrap();
    let p = start(StartMethod::ForkServer, big_echo, there);
    let data = pattern(len, 7);
    here.send_bytes(&data).unwrap();
    assert_eq!(here.recv().unwrap(), checksum(&data));
    let mut back = vec![0u8; len];
    assert_eq!(here.recv_bytes_into(&mut back).unwrap(), len);
    assert_eq!(checksum(&back), checksum(&pattern(len, 99)));
    finish(p);
}

// ---------------------------------------------------------------- end of file

fn send_three_and_leave(conn: Connection<String>) {
    for s in ["one", "two", "three"] {
        conn.send(&s.repeat(10_000)).unwrap();
    }
}

#[test]
fn recv_after_the_peer_closed_drains_then_reports_disconnected() {
    let _g = serial();
    for m in mproc::all_start_methods() {
        let (here, there) = Pipe::<String>::new().unwrap();
        finish(start(m, send_three_and_leave, there));
        for s in ["one", "two", "three"] {
            assert_eq!(here.recv().unwrap(), s.repeat(10_000), "{m}");
        }
        assert!(
            here.poll(Duration::ZERO).unwrap(),
            "{m}: end of file is ready"
        );
        assert!(matches!(here.recv(), Err(Error::Disconnected)), "{m}");
        assert!(matches!(here.try_recv(), Err(Error::Disconnected)), "{m}");
        assert!(matches!(here.recv_bytes(), Err(Error::Disconnected)), "{m}");
    }
}

fn leave(_conn: Connection<String>) {}

#[test]
fn send_to_a_closed_peer_is_an_error_not_sigpipe() {
    let _g = serial();
    for m in mproc::all_start_methods() {
        let (here, there) = Pipe::<String>::new().unwrap();
        finish(start(m, leave, there));
        assert!(
            matches!(here.send(&"x".into()), Err(Error::Disconnected)),
            "{m}"
        );
        let big = vec![1u8; 4 << 20];
        assert!(
            matches!(here.send_bytes(&big), Err(Error::Disconnected)),
            "{m}"
        );
    }
    // Within one process, and through `close`.
    let (mut a, b) = Pipe::<u8>::new().unwrap();
    a.close();
    assert!(a.closed());
    assert!(matches!(b.send(&1), Err(Error::Disconnected)));
    assert!(matches!(b.recv(), Err(Error::Disconnected)));
    assert!(matches!(a.send(&1), Err(Error::InvalidState(_))));
}

fn block_forever(conn: Connection<u8>) {
    conn.send(&1).unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn send_to_a_killed_peer_fails_once_the_ring_is_full() {
    let _g = serial();
    for m in mproc::all_start_methods() {
        let (here, there) = Pipe::<u8>::new().unwrap();
        let mut p = start(m, block_forever, there);
        assert_eq!(here.recv().unwrap(), 1);
        p.kill().unwrap();
        p.join().unwrap();
        let chunk = vec![0u8; 64 << 10];
        let sent = (0..100)
            .take_while(|_| here.send_bytes(&chunk).is_ok())
            .count();
        assert!(sent < 20, "{m}: {sent} sends to a dead peer succeeded");
        assert!(matches!(here.send(&1), Err(Error::Disconnected)), "{m}");
    }
}

fn ready_then_die(conn: Connection<u8>) {
    conn.send(&1).unwrap();
    // Give the parent time to fall asleep in `recv`; the test holds
    // whatever the timing.
    std::thread::sleep(Duration::from_millis(30));
    // SAFETY: kill(2) on our own pid has no memory-safety preconditions.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

#[test]
fn a_peer_killed_while_we_block_in_recv_is_seen_promptly() {
    let _g = serial();
    for m in mproc::all_start_methods() {
        let (here, there) = Pipe::<u8>::new().unwrap();
        let mut p = start(m, ready_then_die, there);
        assert_eq!(here.recv().unwrap(), 1);
        let t = Instant::now();
        assert!(matches!(here.recv(), Err(Error::Disconnected)), "{m}");
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "{m}: {:?}",
            t.elapsed()
        );
        p.join().unwrap();
        assert_eq!(p.exitcode(), Some(-libc::SIGKILL));
    }
}

// ---------------------------------------------------------------- into, poll, timeouts

#[test]
fn recv_bytes_into_a_short_buffer_returns_the_whole_message() {
    let _g = serial();
    let (a, b) = Pipe::<u8>::new().unwrap();
    let msg = pattern(100, 3);
    a.send_bytes(&msg).unwrap();
    a.send_bytes(&msg[..10]).unwrap();
    let mut buf = [0u8; 10];
    match b.recv_bytes_into(&mut buf) {
        Err(Error::BufferTooShort { message }) => assert_eq!(message, msg),
        r => panic!("{r:?}"),
    }
    assert_eq!(b.recv_bytes_into(&mut buf).unwrap(), 10);
    assert_eq!(&buf[..], &msg[..10]);
}

/// Doubles numbers until it gets 0. (Not until end of file: a child
/// started by `Fork` holds a copy of the parent's end too.)
fn answer_on_request(conn: Connection<u32>) {
    while let Ok(x @ 1..) = conn.recv() {
        conn.send(&(x * 2)).unwrap();
    }
}

#[test]
fn poll_recv_timeout_and_try_recv() {
    let _g = serial();
    for m in mproc::all_start_methods() {
        let (here, there) = Pipe::<u32>::new().unwrap();
        let p = start(m, answer_on_request, there);
        assert!(!here.poll(Duration::ZERO).unwrap());
        let t = Instant::now();
        assert!(!here.poll(Duration::from_millis(30)).unwrap());
        assert!(t.elapsed() >= Duration::from_millis(30));
        assert!(matches!(here.try_recv(), Err(Error::Empty)));
        let t = Instant::now();
        let r = here.recv_timeout(Duration::from_millis(30));
        assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        assert!(t.elapsed() >= Duration::from_millis(30));
        here.send(&21).unwrap();
        assert!(here.poll(Duration::from_secs(10)).unwrap(), "{m}");
        assert!(here.poll(Duration::ZERO).unwrap(), "poll does not consume");
        assert_eq!(here.try_recv().unwrap(), 42);
        here.send(&5).unwrap();
        assert_eq!(here.recv_timeout(Duration::from_secs(10)).unwrap(), 10);
        here.send(&0).unwrap();
        finish(p);
    }
}

// ---------------------------------------------------------------- direction

fn check_rx_end(rx: Connection<u32>) -> u32 {
    assert!(rx.readable() && !rx.writable());
    assert!(matches!(rx.send(&0), Err(Error::InvalidState(_))));
    rx.recv().unwrap()
}

fn check_tx_end(tx: Connection<u32>) {
    assert!(!tx.readable() && tx.writable());
    assert!(matches!(tx.recv(), Err(Error::InvalidState(_))));
    assert!(matches!(
        tx.poll(Duration::ZERO),
        Err(Error::InvalidState(_))
    ));
    tx.send(&77).unwrap();
}

#[test]
fn a_one_way_pipe_enforces_its_direction_in_a_child_too() {
    let _g = serial();
    let (rx, tx) = Pipe::<u32>::one_way().unwrap();
    assert!(matches!(rx.send(&1), Err(Error::InvalidState(_))));
    assert!(matches!(tx.recv(), Err(Error::InvalidState(_))));
    assert!(matches!(tx.recv_bytes(), Err(Error::InvalidState(_))));
    assert!(mproc::wait(&[&tx], Some(Duration::ZERO)).is_err());
    for m in mproc::all_start_methods() {
        let (rx, tx) = Pipe::<u32>::one_way().unwrap();
        let ctx = mproc::get_context(Some(m));
        let h = ctx.spawn(check_rx_end, rx).unwrap();
        tx.send(&5).unwrap();
        assert_eq!(h.join().unwrap(), 5, "{m}");

        let (rx, tx) = Pipe::<u32>::one_way().unwrap();
        ctx.spawn(check_tx_end, tx).unwrap().join().unwrap();
        assert_eq!(rx.recv().unwrap(), 77, "{m}");
        assert!(matches!(rx.recv(), Err(Error::Disconnected)), "{m}");
    }
}

// ---------------------------------------------------------------- connections travel

/// Receives a connection through `conn`, then serves on it until its peer
/// closes; returns how many strings it answered.
fn serve_received(conn: Connection<Connection<String>>) -> usize {
    let inner = conn.recv().unwrap();
    let one_way_tx = conn.recv().unwrap();
    assert!(one_way_tx.writable() && !one_way_tx.readable());
    one_way_tx.send(&"via one-way".to_string()).unwrap();
    drop(one_way_tx);
    let mut n = 0;
    while let Ok(s) = inner.recv() {
        inner.send(&s.to_uppercase()).unwrap();
        n += 1;
    }
    n
}

#[test]
fn a_connection_travels_inside_a_message() {
    let _g = serial();
    for m in mproc::all_start_methods() {
        let (carrier, carrier_there) = Pipe::<Connection<String>>::new().unwrap();
        let h = mproc::get_context(Some(m))
            .spawn(serve_received, carrier_there)
            .unwrap();
        let (mine, theirs) = Pipe::<String>::new().unwrap();
        carrier.send(&theirs).unwrap();
        drop(theirs); // the child holds the only copy now
        let (rx, tx) = Pipe::<String>::one_way().unwrap();
        carrier.send(&tx).unwrap();
        drop(tx);
        assert_eq!(rx.recv().unwrap(), "via one-way", "{m}");
        assert!(matches!(rx.recv(), Err(Error::Disconnected)), "{m}");
        for s in ["abc", "", "Hello"] {
            mine.send(&s.to_string()).unwrap();
            assert_eq!(mine.recv().unwrap(), s.to_uppercase(), "{m}");
        }
        drop(mine);
        assert_eq!(h.join().unwrap(), 3, "{m}");
    }
}

fn forward(args: (Connection<u64>, Connection<u64>)) {
    let (from, to) = args;
    while let Ok(x @ 1..) = from.recv() {
        to.send(&(x + 1)).unwrap();
    }
}

#[test]
fn connections_travel_in_arguments() {
    let _g = serial();
    for m in mproc::all_start_methods() {
        let (a, a_there) = Pipe::<u64>::new().unwrap();
        let (b_rx, b_tx) = Pipe::<u64>::one_way().unwrap();
        let p = start(m, forward, (a_there, b_tx));
        for i in 1..100 {
            a.send(&i).unwrap();
        }
        for i in 1..100 {
            assert_eq!(b_rx.recv().unwrap(), i + 1, "{m}");
        }
        a.send(&0).unwrap();
        assert!(matches!(b_rx.recv(), Err(Error::Disconnected)), "{m}");
        finish(p);
    }
}

// ---------------------------------------------------------------- wait

fn on_cue(args: (Connection<u8>, Connection<u8>, Connection<u8>)) {
    let (cue, first, second) = args;
    cue.recv().unwrap();
    first.send(&1).unwrap();
    cue.recv().unwrap();
    second.send(&2).unwrap();
    cue.recv().unwrap();
}

#[test]
fn wait_over_connections_and_a_process() {
    let _g = serial();
    for m in mproc::all_start_methods() {
        let (cue, cue_there) = Pipe::<u8>::new().unwrap();
        let (a, a_there) = Pipe::<u8>::new().unwrap();
        let (b, b_there) = Pipe::<u8>::one_way().unwrap();
        let p = start(m, on_cue, (cue_there, a_there, b_there));
        let none = mproc::wait(&[&a, &b, &p], Some(Duration::ZERO)).unwrap();
        assert!(none.is_empty(), "{m}: {none:?}");
        let t = Instant::now();
        let none = mproc::wait(&[&a, &b, &p], Some(Duration::from_millis(30))).unwrap();
        assert!(
            none.is_empty() && t.elapsed() >= Duration::from_millis(30),
            "{m}"
        );

        cue.send(&0).unwrap();
        let ready = mproc::wait(&[&a, &b, &p], Some(Duration::from_secs(10))).unwrap();
        assert_eq!(ready, vec![0], "{m}");
        assert_eq!(a.recv().unwrap(), 1);
        // Drained: no stale wake-up makes `a` look ready again.
        let none = mproc::wait(&[&a, &b, &p], Some(Duration::from_millis(10))).unwrap();
        assert!(none.is_empty(), "{m}: {none:?}");

        cue.send(&0).unwrap();
        let ready = mproc::wait(&[&a, &b, &p], None).unwrap();
        assert_eq!(ready, vec![1], "{m}");
        assert_eq!(b.recv().unwrap(), 2);

        // The child exits: its ends close before it is seen to end. (Wait
        // before `join`: a joined fork-server child's sentinel may not be
        // readable.)
        cue.send(&0).unwrap();
        let ready = loop {
            let ready = mproc::wait(&[&a, &b, &p], Some(Duration::from_secs(10))).unwrap();
            if ready.contains(&2) {
                break ready;
            }
        };
        assert_eq!(ready, vec![0, 1, 2], "{m}: end of file and exit are ready");
        assert!(matches!(a.recv(), Err(Error::Disconnected)));
        finish(p);
    }
}

// ---------------------------------------------------------------- garbage

fn send_garbage(conn: Connection<String>) {
    conn.send_bytes(&[3, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xfe, 0xfd])
        .unwrap();
    conn.send_bytes(&[1, 2, 3]).unwrap();
    conn.send(&"fine".to_string()).unwrap();
}

#[test]
fn garbage_is_a_decode_error_and_the_connection_stays_usable() {
    let _g = serial();
    for m in mproc::all_start_methods() {
        let (here, there) = Pipe::<String>::new().unwrap();
        finish(start(m, send_garbage, there));
        assert!(
            matches!(here.recv(), Err(Error::Decode(_))),
            "{m}: bad utf-8"
        );
        assert!(
            matches!(here.recv(), Err(Error::Decode(_))),
            "{m}: truncated"
        );
        assert_eq!(here.recv().unwrap(), "fine");
    }
}

// ---------------------------------------------------------------- sharing, leaks

#[test]
fn threads_of_one_process_take_turns_on_an_end() {
    let _g = serial();
    let (a, b) = Pipe::<(u8, u32)>::new().unwrap();
    std::thread::scope(|s| {
        for t in 0..2u8 {
            let a = &a;
            s.spawn(move || (0..2000).for_each(|i| a.send(&(t, i)).unwrap()));
        }
        let mut next = [0u32; 2];
        for _ in 0..4000 {
            let (t, i) = b.recv().unwrap();
            assert_eq!(next[t as usize], i);
            next[t as usize] += 1;
        }
    });
}

fn relay_and_close(conn: Connection<Connection<u8>>) {
    let inner = conn.recv().unwrap();
    inner.send(&9).unwrap();
    conn.send(&inner).unwrap();
}

#[test]
fn nothing_leaks() {
    let _g = serial();
    // Warm up: the fork server and helper threads hold descriptors of
    // their own.
    for m in mproc::all_start_methods() {
        finish(start(m, leave, Pipe::<String>::new().unwrap().1));
    }
    let before = mproc::__private::open_fd_count();
    for m in mproc::all_start_methods() {
        let (carrier, there) = Pipe::<Connection<u8>>::new().unwrap();
        let p = start(m, relay_and_close, there);
        let (x, y) = Pipe::<u8>::one_way().unwrap();
        carrier.send(&y).unwrap();
        drop(y);
        assert_eq!(x.recv().unwrap(), 9);
        // The connection comes back; receive it as bytes (its descriptors
        // are closed) or as a value (then dropped).
        let _bytes = carrier.recv_bytes().unwrap();
        finish(p);
        assert!(matches!(x.recv(), Err(Error::Disconnected)), "{m}");
    }
    assert_eq!(mproc::__private::open_fd_count(), before);
    assert!(mproc::active_children().is_empty());
}

// ---------------------------------------------------------------- plain data, many messages

/// Sends `n` numbers in order, then receives `n` and checks their order;
/// returns how many it received in order.
fn count_both_ways(args: (Connection<u64>, u64)) -> u64 {
    let (conn, n) = args;
    for i in 0..n {
        conn.send(&i).unwrap();
    }
    let mut got = 0;
    while got < n && conn.recv().unwrap() == got {
        got += 1;
    }
    got
}

#[test]
fn a_million_small_messages_arrive_in_order_across_processes() {
    let _g = serial();
    let n = 1_000_000u64;
    let (here, there) = Pipe::<u64>::new().unwrap();
    let child = mproc::spawn(count_both_ways, (there, n)).unwrap();
    // Both directions at once: the child's messages fill our ring while
    // ours fill its, with both ends of each ring busy.
    std::thread::scope(|s| {
        s.spawn(|| (0..n).for_each(|i| here.send(&i).unwrap()));
        for i in 0..n {
            assert_eq!(here.recv().unwrap(), i);
        }
    });
    assert_eq!(child.join().unwrap(), n);
}

/// Echoes pod slices of `u32` until an empty one.
fn echo_pod(conn: Connection<()>) {
    let mut buf = vec![0u32; 1 << 20];
    loop {
        let n = conn.recv_pod_into(&mut buf).unwrap();
        conn.send_pod(&buf[..n]).unwrap();
        if n == 0 {
            return;
        }
    }
}

#[test]
fn pod_slices_cross_processes_and_wrap_the_ring() {
    let _g = serial();
    for m in mproc::all_start_methods() {
        let (here, there) = Pipe::<()>::new().unwrap();
        let p = start(m, echo_pod, there);
        let mut out = vec![0u32; 1 << 20];
        // Lengths that are not divisors of the ring's size: records straddle
        // its end at ever different places; some are larger than the ring.
        for (round, n) in [1usize, 3, 1000, 33_333, 99_999, 250_001, 7, 0]
            .into_iter()
            .cycle()
            .take(40)
            .enumerate()
        {
            let items: Vec<u32> = (0..n as u32).map(|i| i ^ (round as u32) << 20).collect();
            here.send_pod(&items).unwrap();
            assert_eq!(here.recv_pod_into(&mut out).unwrap(), n, "{m}");
            assert_eq!(&out[..n], &items[..], "{m}: round {round}");
            if n == 0 {
                break;
            }
        }
        finish(p);
    }
}

/// Tells the parent it starts, then sends a pod message far larger than
/// the ring (it blocks once the ring is full, since nobody reads).
fn big_pod_forever(conn: Connection<()>) {
    conn.send_bytes(b"go").unwrap();
    let big = vec![0x5au64; 8 << 20];
    let _ = conn.send_pod(&big);
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_peer_killed_mid_pod_write_is_disconnected_not_a_hang() {
    let _g = serial();
    // Warm up: the fork server and helper threads hold descriptors of
    // their own (this test may be the first of its process, under nextest).
    for m in mproc::all_start_methods() {
        finish(start(m, leave, Pipe::<String>::new().unwrap().1));
    }
    let before = mproc::__private::open_fd_count();
    for m in mproc::all_start_methods() {
        let (here, there) = Pipe::<()>::new().unwrap();
        let mut p = start(m, big_pod_forever, there);
        assert_eq!(here.recv_bytes().unwrap(), b"go");
        // The big message has started (its first chunk is published) and
        // cannot be finished: the ring holds far less than 64 MiB.
        assert!(here.poll(Duration::from_secs(30)).unwrap(), "{m}");
        p.kill().unwrap();
        p.join().unwrap();
        let mut out = vec![0u64; 8 << 20];
        let t = Instant::now();
        let r = here.recv_pod_into(&mut out);
        assert!(matches!(r, Err(Error::Disconnected)), "{m}: {r:?}");
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "{m}: {:?}",
            t.elapsed()
        );
        assert!(matches!(
            here.recv_pod_into(&mut out),
            Err(Error::Disconnected)
        ));
        assert!(
            matches!(here.send_pod(&[1u8]), Err(Error::Disconnected)),
            "{m}"
        );
    }
    assert_eq!(mproc::__private::open_fd_count(), before);
}

/// Sends pod data, a connection, then pod data again, each on cue.
fn pods_and_a_connection(args: (Connection<u8>, Connection<Option<Connection<u8>>>)) {
    let (cue, conn) = args;
    let (mine, theirs) = Pipe::<u8>::new().unwrap();
    cue.recv().unwrap();
    conn.send_pod(&[1u64, 2, 3]).unwrap();
    cue.recv().unwrap();
    conn.send(&Some(theirs)).unwrap();
    cue.recv().unwrap();
    conn.send_pod(&[4u64]).unwrap();
    assert_eq!(mine.recv().unwrap(), 42);
}

#[test]
fn descriptors_and_wait_work_among_pod_messages() {
    let _g = serial();
    for m in mproc::all_start_methods() {
        let (cue, cue_there) = Pipe::<u8>::new().unwrap();
        let (conn, there) = Pipe::<Option<Connection<u8>>>::new().unwrap();
        let p = start(m, pods_and_a_connection, (cue_there, there));
        let never = Some(Duration::from_secs(30));
        let mut out = [0u64; 4];

        assert!(mproc::wait(&[&conn], Some(Duration::ZERO))
            .unwrap()
            .is_empty());
        cue.send(&0).unwrap();
        assert_eq!(mproc::wait(&[&conn], never).unwrap(), vec![0], "{m}");
        assert_eq!(conn.recv_pod_into(&mut out).unwrap(), 3);
        assert_eq!(out[..3], [1, 2, 3]);

        cue.send(&0).unwrap();
        assert_eq!(mproc::wait(&[&conn], never).unwrap(), vec![0], "{m}");
        let theirs = conn.recv().unwrap().unwrap();

        cue.send(&0).unwrap();
        assert_eq!(mproc::wait(&[&conn], never).unwrap(), vec![0], "{m}");
        assert_eq!(conn.recv_pod_into(&mut out).unwrap(), 1);
        assert_eq!(out[0], 4);
        theirs.send(&42).unwrap();
        finish(p);
    }
}
