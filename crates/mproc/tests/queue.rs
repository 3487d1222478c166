//! `Queue`, `JoinableQueue` and `SimpleQueue` across real processes.
//!
//! Provenance: the behaviours CPython's `Lib/test/_test_multiprocessing.py`
//! checks in `_TestQueue` (`test_put`/`test_get` on a queue of maxsize 6:
//! `Full`/`Empty` after the right time for every variant, the qsize
//! sequence, `test_fork` ordering, `test_task_done` with 4 workers over 10
//! items, `test_closed_queue_*`) and `_TestSimpleQueue`, rewritten in Rust.
//! Added: what CPython cannot offer (a million items through 4 producers and
//! 4 consumers, checked exactly once; a producer that exits right after
//! `put`; producers and consumers SIGKILLed mid-operation; 64 MiB items;
//! values that do not encode or decode).

use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use mproc::{
    Connection, Event, GetError, JoinableQueue, Lock, Pipe, Process, PutError, Queue, SimpleQueue,
};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const GENEROUS: Duration = Duration::from_secs(20);
const TIMEOUT: Duration = Duration::from_millis(100);

static SERIAL: Mutex<()> = Mutex::new(());

/// Tests that kill or stop children run one at a time.
fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn start<A: Serialize + serde::de::DeserializeOwned + Send + 'static>(
    f: fn(A),
    args: A,
) -> Process {
    let mut p = Process::new(f, args);
    p.start().unwrap();
    p
}

fn join_ok(mut p: Process) {
    assert!(p.join_timeout(GENEROUS).unwrap(), "child hung");
    assert_eq!(p.exitcode(), Some(0), "child failed");
}

fn signal(p: &Process, sig: &str) {
    let pid = p.pid().unwrap().to_string();
    let ok = Command::new("kill").args([sig, &pid]).status().unwrap();
    assert!(ok.success());
}

fn timed<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let t = Instant::now();
    (f(), t.elapsed())
}

// ------------------------------------------------------------ CPython's behaviours

/// `_TestQueue.test_put`, `test_get` and the qsize sequence, maxsize 6.
#[test]
fn full_and_empty_after_the_right_time() {
    let q = Queue::<u32>::bounded(6).unwrap();
    assert!(q.is_empty());
    assert_eq!(q.maxsize(), Some(6));
    q.put(1).unwrap();
    q.put_timeout(2, TIMEOUT).unwrap();
    q.try_put(3).unwrap();
    q.put(4).unwrap();
    q.put_timeout(5, TIMEOUT).unwrap();
    q.try_put(6).unwrap();
    assert_eq!(q.len(), 6);
    assert!(q.is_full());

    let (r, took) = timed(|| q.try_put(7));
    assert!(matches!(r, Err(PutError::Full(7))));
    assert!(took < Duration::from_millis(50));
    let (r, took) = timed(|| q.put_timeout(7, TIMEOUT));
    assert!(matches!(r, Err(PutError::Timeout(7))));
    assert!(took >= TIMEOUT && took < GENEROUS);
    assert_eq!(q.len(), 6);

    let mut sizes = vec![];
    for want in 1..=6 {
        let got = match want % 3 {
            0 => q.get().unwrap(),
            1 => q.get_timeout(TIMEOUT).unwrap(),
            _ => q.try_get().unwrap(),
        };
        assert_eq!(got, want);
        sizes.push(q.len());
    }
    assert_eq!(sizes, [5, 4, 3, 2, 1, 0]);
    let (r, took) = timed(|| q.try_get());
    assert!(matches!(r, Err(GetError::Empty)));
    assert!(took < Duration::from_millis(50));
    let (r, took) = timed(|| q.get_timeout(TIMEOUT));
    assert!(matches!(r, Err(GetError::Timeout)));
    assert!(took >= TIMEOUT && took < GENEROUS);
}

fn produce_tagged((q, tag, n): (Queue<(u32, u32)>, u32, u32)) {
    for i in 0..n {
        q.put((tag, i)).unwrap();
    }
}

/// `_TestQueue.test_fork`-like: two producer processes, each one's items
/// arrive in its order.
#[test]
fn two_producers_keep_their_order() {
    let q = Queue::<(u32, u32)>::bounded(10).unwrap();
    let a = start(produce_tagged, (q.clone(), 0, 2000));
    let b = start(produce_tagged, (q.clone(), 1, 2000));
    let mut next = [0u32; 2];
    for _ in 0..4000 {
        let (tag, i) = q.get_timeout(GENEROUS).unwrap();
        assert_eq!(i, next[tag as usize], "producer {tag} out of order");
        next[tag as usize] += 1;
    }
    join_ok(a);
    join_ok(b);
    assert!(q.is_empty());
}

fn joinable_worker(q: JoinableQueue<Option<u32>>) {
    while let Some(_n) = q.get().unwrap() {
        thread::sleep(Duration::from_millis(2));
        q.task_done().unwrap();
    }
    q.task_done().unwrap();
}

/// `_TestQueue.test_task_done`: 4 workers over 10 items.
#[test]
fn joinable_queue_with_four_workers() {
    let q = JoinableQueue::<Option<u32>>::new().unwrap();
    let workers: Vec<_> = (0..4).map(|_| start(joinable_worker, q.clone())).collect();
    for i in 0..10 {
        q.put(Some(i)).unwrap();
    }
    q.join_timeout(GENEROUS).unwrap();
    assert_eq!(q.unfinished(), 0);
    for _ in &workers {
        q.put(None).unwrap();
    }
    workers.into_iter().for_each(join_ok);
    q.join().unwrap();
    assert!(q.task_done().is_err(), "one too many");
}

#[test]
fn join_times_out_while_items_are_unfinished() {
    let q = JoinableQueue::<u8>::new().unwrap();
    q.put(1).unwrap();
    assert!(matches!(
        q.join_timeout(TIMEOUT),
        Err(mproc::Error::Timeout)
    ));
    q.get().unwrap();
    assert!(matches!(
        q.join_timeout(TIMEOUT),
        Err(mproc::Error::Timeout)
    ));
    q.task_done().unwrap();
    q.join_timeout(TIMEOUT).unwrap();
}

/// `test_closed_queue_put_get_exceptions`.
#[test]
fn a_closed_handle_refuses() {
    let q = Queue::<u8>::new().unwrap();
    let other = q.clone();
    q.close();
    assert!(q.is_closed());
    assert!(matches!(q.put(1), Err(PutError::Closed(1))));
    assert!(matches!(q.get(), Err(GetError::Closed)));
    other.put(2).unwrap();
    assert_eq!(other.get().unwrap(), 2);
}

fn simple_double((inq, outq): (SimpleQueue<u64>, SimpleQueue<u64>)) {
    while let Ok(n) = inq.get() {
        if n == 0 {
            break;
        }
        outq.put(n * 2).unwrap();
    }
}

/// `_TestSimpleQueue`.
#[test]
fn simple_queue() {
    let (inq, outq) = (SimpleQueue::new().unwrap(), SimpleQueue::new().unwrap());
    assert!(inq.is_empty());
    let p = start(simple_double, (inq.clone(), outq.clone()));
    for n in 1..=100 {
        inq.put(n).unwrap();
    }
    inq.put(0).unwrap();
    for n in 1..=100 {
        assert_eq!(outq.get().unwrap(), n * 2);
    }
    join_ok(p);
    assert!(outq.is_empty());
}

#[test]
fn shutdown_stops_puts_then_gets() {
    let q = Queue::<u8>::new().unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    q.shutdown(false).unwrap();
    assert!(q.is_shut_down());
    assert!(matches!(q.put(3), Err(PutError::ShutDown(3))));
    assert_eq!(q.get().unwrap(), 1);
    assert_eq!(q.get().unwrap(), 2);
    assert!(matches!(q.get(), Err(GetError::ShutDown)));
}

#[test]
fn immediate_shutdown_drains_and_wakes() {
    let q = JoinableQueue::<u8>::bounded(2).unwrap();
    q.put(1).unwrap();
    q.put(2).unwrap();
    let putter = {
        let q = q.clone();
        thread::spawn(move || q.put(3))
    };
    thread::sleep(TIMEOUT);
    q.shutdown(true).unwrap();
    assert!(matches!(putter.join().unwrap(), Err(PutError::ShutDown(3))));
    assert!(q.is_empty());
    assert!(matches!(q.get(), Err(GetError::ShutDown)));
    q.join_timeout(TIMEOUT).unwrap(); // the drained items count as done
}

#[test]
fn shutdown_wakes_a_blocked_get() {
    let q = Queue::<u8>::new().unwrap();
    let getter = {
        let q = q.clone();
        thread::spawn(move || q.get())
    };
    thread::sleep(TIMEOUT);
    q.shutdown(false).unwrap();
    assert!(matches!(getter.join().unwrap(), Err(GetError::ShutDown)));
}

// ------------------------------------------------------------ values

/// Serialises only while it is not 13.
#[derive(Debug, PartialEq)]
struct Picky(u32);

impl Serialize for Picky {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            13 => Err(serde::ser::Error::custom("13 does not serialise")),
            n => s.serialize_u32(n),
        }
    }
}

impl<'de> Deserialize<'de> for Picky {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match u32::deserialize(d)? {
            14 => Err(serde::de::Error::custom("14 does not deserialise")),
            n => Ok(Picky(n)),
        }
    }
}

#[test]
fn a_value_that_does_not_encode_leaves_the_queue_unchanged() {
    let q = Queue::<Picky>::bounded(1).unwrap();
    match q.put(Picky(13)) {
        Err(PutError::Failed(v, mproc::Error::Encode(_))) => assert_eq!(v, Picky(13)),
        other => panic!("{other:?}"),
    }
    assert_eq!(q.len(), 0);
    q.put(Picky(1)).unwrap(); // the bound still allows one
    assert_eq!(q.get().unwrap(), Picky(1));
}

#[test]
fn a_value_that_does_not_decode_is_an_error_and_the_queue_goes_on() {
    let q = Queue::<Picky>::new().unwrap();
    q.put(Picky(14)).unwrap();
    q.put(Picky(2)).unwrap();
    assert!(matches!(
        q.get(),
        Err(GetError::Failed(mproc::Error::Decode(_)))
    ));
    assert_eq!(q.get().unwrap(), Picky(2));
    assert!(q.is_empty());
}

// ------------------------------------------------------------ items holding OS handles

/// Gets a queue out of `outer`, and puts `0..n` on it.
fn fill_inner((outer, n): (Queue<Queue<u64>>, u64)) {
    let inner = outer.get_timeout(GENEROUS).unwrap();
    for i in 0..n {
        inner.put(i).unwrap();
    }
}

/// A queue inside a queue, which Python refuses.
#[test]
fn a_queue_travels_inside_a_queue() {
    let outer = Queue::<Queue<u64>>::new().unwrap();
    let inner = Queue::<u64>::new().unwrap();
    let child = start(fill_inner, (outer.clone(), 100));
    outer.put(inner.clone()).unwrap();
    for i in 0..100 {
        assert_eq!(inner.get_timeout(GENEROUS).unwrap(), i);
    }
    join_ok(child);
    assert!(outer.is_empty() && inner.is_empty());
}

type Tools = (Connection<String>, Lock);

/// Gets a pipe end and a lock out of `q`: takes the lock, says so on the
/// pipe, and releases it when told.
fn use_tools(q: Queue<Tools>) {
    let (conn, lock) = q.get_timeout(GENEROUS).unwrap();
    lock.acquire().unwrap();
    conn.send(&"locked".to_string()).unwrap();
    assert_eq!(conn.recv().unwrap(), "release");
    lock.release().unwrap();
    conn.send(&"released".to_string()).unwrap();
}

#[test]
fn a_pipe_end_and_a_lock_travel_in_a_queue_item() {
    let q = Queue::<Tools>::new().unwrap();
    let (mine, theirs) = Pipe::<String>::new().unwrap();
    let lock = Lock::new().unwrap();
    let child = start(use_tools, q.clone());
    q.put((theirs, lock.clone())).unwrap();
    assert_eq!(mine.recv().unwrap(), "locked");
    assert!(!lock.try_acquire().unwrap());
    mine.send(&"release".to_string()).unwrap();
    assert_eq!(mine.recv().unwrap(), "released");
    assert!(lock.try_acquire().unwrap());
    lock.release().unwrap();
    join_ok(child);
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// In a child of its own (no other test opens descriptors there): queues
/// in queues, items of handles left in a dropped queue, a decode failure.
fn count_fds(_: ()) {
    let before = open_fds();
    {
        let outer = Queue::<(u32, Queue<u8>, Lock)>::new().unwrap();
        let inner = Queue::<u8>::new().unwrap();
        for i in 0..20 {
            outer.put((i, inner.clone(), Lock::new().unwrap())).unwrap();
        }
        for i in 0..10 {
            let (n, q, lock) = outer.get().unwrap();
            assert_eq!(n, i);
            q.put(n as u8).unwrap();
            drop(lock.lock().unwrap());
        }
        assert_eq!(inner.len(), 10);
        // An item of handles that fails to decode.
        let refused = Queue::<Refuses>::new().unwrap();
        refused.put(Refuses(Lock::new().unwrap())).unwrap();
        assert!(matches!(refused.get(), Err(GetError::Failed(_))));
        // Ten items of handles stay in `outer` as it goes.
    }
    assert_eq!(open_fds(), before, "descriptors leaked");
}

/// Holds a lock, and never decodes (after taking the lock's handle).
#[derive(Serialize)]
struct Refuses(Lock);

impl<'de> Deserialize<'de> for Refuses {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let lock = Lock::deserialize(d)?;
        drop(lock);
        Err(serde::de::Error::custom("refused"))
    }
}

#[test]
fn items_of_handles_leak_no_descriptor() {
    join_ok(start(count_fds, ()));
}

/// Puts items holding a lock until killed.
fn put_locks_forever(q: Queue<(u64, Lock)>) {
    for i in 0.. {
        q.put((i, Lock::new().unwrap())).unwrap();
    }
}

#[test]
fn a_producer_killed_while_putting_handles_does_not_wedge_the_queue() {
    let _serial = serial();
    let q = Queue::<(u64, Lock)>::new().unwrap();
    let mut p = start(put_locks_forever, q.clone());
    let mut last = None;
    for _ in 0..200 {
        let (i, lock) = q.get_timeout(GENEROUS).unwrap();
        assert!(last.is_none_or(|l| l < i));
        last = Some(i);
        drop(lock.lock().unwrap());
    }
    p.kill().unwrap();
    p.join().unwrap();
    // Whatever it was doing, what it published is whole, and the queue
    // goes on.
    while let Ok((i, lock)) = q.try_get() {
        assert!(last.is_none_or(|l| l < i));
        last = Some(i);
        drop(lock.lock().unwrap());
    }
    q.put((u64::MAX, Lock::new().unwrap())).unwrap();
    let (i, lock) = q.get_timeout(GENEROUS).unwrap();
    assert_eq!(i, u64::MAX);
    assert!(lock.try_acquire().unwrap());
}

// ------------------------------------------------------------ many processes

const PRODUCERS: u64 = 4;
const CONSUMERS: u64 = 4;
const TOTAL: u64 = 1_000_000;

fn produce_range((q, id): (Queue<Option<u64>>, u64)) {
    let per = TOTAL / PRODUCERS;
    for i in id * per..(id + 1) * per {
        q.put(Some(i)).unwrap();
    }
}

/// (count, sum, sum of squares) of what one consumer took; checks each
/// producer's items come in order.
fn consume_range(q: Queue<Option<u64>>) -> (u64, u64, u64) {
    let per = TOTAL / PRODUCERS;
    let mut last = [None::<u64>; PRODUCERS as usize];
    let (mut n, mut sum, mut sq) = (0u64, 0u64, 0u64);
    while let Some(i) = q.get().unwrap() {
        let p = (i / per) as usize;
        assert!(last[p].is_none_or(|l| l < i), "producer {p} out of order");
        last[p] = Some(i);
        n += 1;
        sum = sum.wrapping_add(i);
        sq = sq.wrapping_add(i.wrapping_mul(i));
    }
    (n, sum, sq)
}

#[test]
fn a_million_items_through_four_producers_and_four_consumers() {
    let q = Queue::<Option<u64>>::bounded(10_000).unwrap();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| mproc::spawn(consume_range, q.clone()).unwrap())
        .collect();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|id| start(produce_range, (q.clone(), id)))
        .collect();
    producers.into_iter().for_each(join_ok);
    for _ in 0..CONSUMERS {
        q.put(None).unwrap();
    }
    let (mut n, mut sum, mut sq) = (0u64, 0u64, 0u64);
    for c in consumers {
        let (a, b, c) = c.join().unwrap();
        n += a;
        sum = sum.wrapping_add(b);
        sq = sq.wrapping_add(c);
    }
    let want_sum = (0..TOTAL).fold(0u64, |a, i| a.wrapping_add(i));
    let want_sq = (0..TOTAL).fold(0u64, |a, i| a.wrapping_add(i.wrapping_mul(i)));
    assert_eq!((n, sum, sq), (TOTAL, want_sum, want_sq));
    assert!(q.is_empty());
}

/// Items of every path at once: small ones encoded in place, medium ones
/// copied in, large ones (past a quarter of the 64 KiB ring) streamed in
/// chunks; `(producer, seq, bytes)` with bytes derived from both.
type Mixed = Option<(u32, u32, Vec<u8>)>;
const MIXED_PRODUCERS: u32 = 3;
const MIXED_CONSUMERS: usize = 3;
const MIXED_ITEMS: u32 = 4000;

fn mixed_bytes(id: u32, seq: u32) -> Vec<u8> {
    let len = match seq % 50 {
        0 => 20_000 + seq as usize % 3000, // chunked
        1..=9 => 200 + (seq as usize * 37) % 2000,
        _ => (seq as usize * 13) % 100, // in place
    };
    (0..len).map(|i| (i as u32 ^ id ^ seq) as u8).collect()
}

fn produce_mixed((q, id): (Queue<Mixed>, u32)) {
    for seq in 0..MIXED_ITEMS {
        q.put(Some((id, seq, mixed_bytes(id, seq)))).unwrap();
    }
}

/// The `(producer, seq)` of every item taken, each checked whole and each
/// producer's in order.
fn consume_mixed(q: Queue<Mixed>) -> Vec<(u32, u32)> {
    let mut taken = Vec::new();
    let mut last = [None::<u32>; MIXED_PRODUCERS as usize];
    while let Some((id, seq, bytes)) = q.get_timeout(GENEROUS).unwrap() {
        assert!(bytes == mixed_bytes(id, seq), "item {id}/{seq} garbled");
        let l = &mut last[id as usize];
        assert!(l.is_none_or(|l| l < seq), "producer {id} out of order");
        *l = Some(seq);
        taken.push((id, seq));
    }
    taken
}

#[test]
fn items_of_every_size_through_many_producers_and_consumers_come_once() {
    // A 64 KiB ring: records wrap at its end all the time, in place or not.
    let q = Queue::<Mixed>::with_byte_limit(0, 64 << 10).unwrap();
    let consumers: Vec<_> = (0..MIXED_CONSUMERS)
        .map(|_| mproc::spawn(consume_mixed, q.clone()).unwrap())
        .collect();
    let producers: Vec<_> = (0..MIXED_PRODUCERS)
        .map(|id| start(produce_mixed, (q.clone(), id)))
        .collect();
    producers.into_iter().for_each(join_ok);
    for _ in 0..MIXED_CONSUMERS {
        q.put(None).unwrap();
    }
    let mut all: Vec<(u32, u32)> = consumers
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    all.sort_unstable();
    let want: Vec<(u32, u32)> = (0..MIXED_PRODUCERS)
        .flat_map(|id| (0..MIXED_ITEMS).map(move |seq| (id, seq)))
        .collect();
    assert!(all == want, "{} items taken of {}", all.len(), want.len());
    assert!(q.is_empty());
}

/// A `u64` on the wire; one holding `stall` sets that event at its second
/// serialisation (the first is the queue's size pass, the second its
/// encoding in place, in the ring), after a first piece, and never ends.
struct Stalls {
    n: u64,
    stall: Option<Event>,
    calls: std::sync::atomic::AtomicU32,
}

impl Stalls {
    fn new(n: u64, stall: Option<Event>) -> Stalls {
        let calls = Default::default();
        Stalls { n, stall, calls }
    }
}

impl Serialize for Stalls {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let calls = self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if let (Some(started), 1) = (&self.stall, calls) {
            // Half an encoding: a tuple's first field, then a stall.
            use serde::ser::SerializeTuple;
            let mut t = s.serialize_tuple(2)?;
            t.serialize_element(&(self.n as u32))?;
            started.set();
            loop {
                thread::sleep(GENEROUS);
            }
        }
        s.serialize_u64(self.n)
    }
}

impl<'de> Deserialize<'de> for Stalls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Stalls::new(u64::deserialize(d)?, None))
    }
}

fn put_stalling((q, started): (Queue<Stalls>, Event)) {
    let _ = q.put(Stalls::new(0xdead, Some(started)));
}

#[test]
fn a_producer_killed_while_encoding_in_place_does_not_wedge_the_queue() {
    let _serial = serial();
    let q = Queue::<Stalls>::new().unwrap();
    q.put(Stalls::new(1, None)).unwrap();
    let started = Event::new().unwrap();
    let mut p = start(put_stalling, (q.clone(), started.clone()));
    assert!(started.wait_timeout(GENEROUS).unwrap());
    p.kill().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(-9));
    // Its record was never published; the put lock it held is taken over
    // and the next record overwrites its half.
    assert_eq!(q.len(), 1);
    q.put(Stalls::new(2, None)).unwrap();
    assert_eq!(q.get_timeout(GENEROUS).unwrap().n, 1);
    assert_eq!(q.get_timeout(GENEROUS).unwrap().n, 2);
    assert!(q.try_get().is_err());
}

fn put_and_exit(q: Queue<u32>) {
    for i in 0..1000 {
        q.put(i).unwrap();
    }
    // returns at once: nothing may be left behind in a buffer
}

#[test]
fn a_producer_that_exits_right_after_put_loses_nothing() {
    let q = Queue::<u32>::new().unwrap();
    join_ok(start(put_and_exit, q.clone()));
    assert_eq!(q.len(), 1000);
    for i in 0..1000 {
        assert_eq!(q.try_get().unwrap(), i);
    }
}

// ------------------------------------------------------------ big items

const BIG: usize = 64 << 20;

fn put_big((q, tag): (Queue<Vec<u8>>, u8)) {
    for _ in 0..2 {
        q.put(vec![tag; BIG]).unwrap();
        q.put(vec![tag; 10]).unwrap();
    }
}

const BACKLOG: u32 = 100_000;

/// Puts `BACKLOG` items of 700 bytes (70 MB) and returns: nobody gets them
/// meanwhile.
fn put_backlog(q: Queue<(u32, Vec<u8>)>) {
    for i in 0..BACKLOG {
        let item = (i, vec![i as u8; 700]);
        q.put_timeout(item, GENEROUS)
            .expect("an unbounded queue took it");
    }
}

/// Python's unbounded queue never blocks `put`: nor does this one, short
/// of a GiB of queued bytes.
#[test]
fn an_unbounded_queue_takes_70_mb_with_no_consumer() {
    let q = Queue::new().unwrap();
    join_ok(start(put_backlog, q.clone()));
    assert_eq!(q.len(), BACKLOG as usize);
    for i in 0..BACKLOG {
        let (n, bytes) = q.try_get().unwrap();
        assert_eq!(n, i);
        assert!(bytes.len() == 700 && bytes.iter().all(|&b| b == i as u8));
    }
    assert!(q.is_empty());
    // The ring starts again once drained (the backlog's pages go back).
    for i in 0..10_000u32 {
        q.put((i, vec![1])).unwrap();
        assert_eq!(q.get().unwrap(), (i, vec![1]));
    }
}

/// Puts `0..n` as fast as it can.
fn put_stream((q, n): (Queue<u64>, u64)) {
    for i in 0..n {
        q.put(i).unwrap();
    }
}

/// Small items as fast as one producer can put them: the ring starts again
/// at its beginning over a hundred times (freeing a `PAD` under a
/// consumer's feet), and every item comes, in order.
#[test]
fn a_stream_of_small_items_comes_whole_and_in_order() {
    const N: u64 = 2_000_000;
    let q = Queue::<u64>::new().unwrap();
    let p = start(put_stream, (q.clone(), N));
    for i in 0..N {
        assert_eq!(q.get_timeout(GENEROUS).unwrap(), i);
    }
    join_ok(p);
    assert!(q.is_empty());
}

#[test]
fn items_of_64_mib_pass_whole_and_never_interleave() {
    let _serial = serial();
    let q = Queue::<Vec<u8>>::new().unwrap();
    let a = start(put_big, (q.clone(), 1));
    let b = start(put_big, (q.clone(), 2));
    let mut seen = [0usize; 3];
    for _ in 0..8 {
        let item = q.get_timeout(GENEROUS).unwrap();
        let tag = item[0];
        assert!(item.len() == BIG || item.len() == 10);
        assert!(item.iter().all(|&b| b == tag), "interleaved item");
        seen[tag as usize] += item.len();
    }
    assert_eq!(seen[1], 2 * (BIG + 10));
    assert_eq!(seen[2], 2 * (BIG + 10));
    join_ok(a);
    join_ok(b);
}

// ------------------------------------------------------------ crashes

const STUCK: usize = 16 << 20;
/// The ring of the queues `put_one_big` gets stuck in.
const RING: usize = 4 << 20;

fn put_one_big((q, started): (Queue<Vec<u8>>, Event)) {
    started.set();
    q.put(vec![7; STUCK]).unwrap(); // blocks once the ring is full
    q.put(vec![8]).unwrap();
}

/// Long enough for `put_one_big` to encode its item (slow in a debug
/// build) and fill the ring: measured here, with a wide margin (JSON
/// writes more per byte than mproc's format, a bound from above).
fn until_stuck() -> Duration {
    let (bytes, took) = timed(|| serde_json::to_vec(&vec![7u8; STUCK]).unwrap());
    drop(bytes);
    took * 4 + Duration::from_millis(300)
}

#[test]
fn a_producer_killed_inside_put_does_not_wedge_the_queue() {
    let _serial = serial();
    let q = Queue::<Vec<u8>>::with_byte_limit(0, RING).unwrap();
    let started = Event::new().unwrap();
    let mut p = start(put_one_big, (q.clone(), started.clone()));
    started.wait().unwrap();
    thread::sleep(until_stuck()); // streaming, then stuck
    p.kill().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(-9));
    let putter = {
        let q = q.clone();
        thread::spawn(move || q.put(vec![1, 2, 3]).is_ok())
    };
    let got = q.get_timeout(GENEROUS).unwrap();
    assert!(got == [1, 2, 3], "got {} bytes", got.len());
    assert!(putter.join().unwrap());
    assert!(q.is_empty());
}

fn get_one((q, started): (Queue<Vec<u8>>, Event)) {
    started.set();
    let _ = q.get();
}

#[test]
fn a_consumer_killed_inside_get_does_not_wedge_the_queue() {
    let _serial = serial();
    let q = Queue::<Vec<u8>>::with_byte_limit(0, RING).unwrap();
    // A producer stopped in the middle of a big item, so that the consumer
    // is killed in the middle of reading it.
    let started = Event::new().unwrap();
    let producer = start(put_one_big, (q.clone(), started.clone()));
    started.wait().unwrap();
    thread::sleep(until_stuck());
    signal(&producer, "-STOP");
    let started = Event::new().unwrap();
    let mut consumer = start(get_one, (q.clone(), started.clone()));
    started.wait().unwrap();
    thread::sleep(Duration::from_millis(300)); // read 4 MiB, waits for more
    consumer.kill().unwrap();
    consumer.join().unwrap();
    assert_eq!(consumer.exitcode(), Some(-9));
    signal(&producer, "-CONT");
    // The big item went with the consumer; the next one is intact.
    let got = q.get_timeout(GENEROUS).unwrap();
    assert!(got == [8], "got {} bytes", got.len());
    join_ok(producer);
    assert!(q.is_empty());

    // A consumer killed while it waits (holding the read lock) on an empty
    // queue.
    let started = Event::new().unwrap();
    let mut waiting = start(get_one, (q.clone(), started.clone()));
    started.wait().unwrap();
    thread::sleep(Duration::from_millis(100));
    waiting.kill().unwrap();
    waiting.join().unwrap();
    q.put(vec![9]).unwrap();
    assert_eq!(q.get_timeout(GENEROUS).unwrap(), [9]);
}

// ------------------------------------------------------------ address space

fn double((inq, outq, n): (Queue<u64>, Queue<u64>, u64)) {
    for _ in 0..n {
        let x = inq.get_timeout(GENEROUS).unwrap();
        outq.put(x * 2).unwrap();
    }
}

/// This process's address space in bytes (`VmSize`).
fn address_space() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmSize:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

/// Issue 11, item 7: each queue handle mapped its 1 GiB ring whole, so
/// that under an address-space limit no queue could be made, nor a child
/// given two queue handles start. A child capped at 512 MiB above what it
/// uses makes two queues and hands both to a grandchild (started afresh,
/// under the same cap), and items go round through them.
#[test]
fn queues_work_under_an_address_space_limit() {
    let h = mproc::fork(|| -> Result<u64, String> {
        use rustix::process::{setrlimit, Resource, Rlimit};
        let cap = address_space() + (512 << 20);
        let limit = Rlimit {
            current: Some(cap),
            maximum: Some(cap),
        };
        setrlimit(Resource::As, limit).map_err(|e| format!("setrlimit: {e}"))?;
        let text = |e: mproc::Error| e.to_string();
        let a = Queue::<u64>::new().map_err(text)?;
        let b = Queue::<u64>::bounded(10).map_err(text)?;
        let n = 500;
        let mut grandchild =
            Process::new(double, (a.clone(), b.clone(), n)).start_method(mproc::StartMethod::Spawn);
        grandchild.start().map_err(text)?;
        let mut sum = 0;
        for i in 0..n {
            a.put(i).map_err(|e| e.to_string())?;
            sum += b.get_timeout(GENEROUS).map_err(|e| e.to_string())?;
        }
        assert!(grandchild.join_timeout(GENEROUS).map_err(text)?);
        if grandchild.exitcode() != Some(0) {
            return Err(format!("grandchild: {:?}", grandchild.exitcode()));
        }
        Ok(sum)
    })
    .unwrap();
    assert_eq!(h.join().unwrap(), Ok(500 * 499));
}

// ------------------------------------------------------------ start methods

fn echo_once((inq, outq): (Queue<String>, Queue<String>)) {
    let s = inq.get().unwrap();
    outq.put(s.to_uppercase()).unwrap();
}

#[test]
fn handles_travel_under_every_start_method() {
    let _serial = serial();
    mproc::set_fork_warning(false);
    for method in mproc::all_start_methods() {
        let ctx = mproc::get_context(Some(method));
        let (inq, outq) = (ctx.queue(0).unwrap(), ctx.queue(0).unwrap());
        let mut p = ctx.process(echo_once, (inq.clone(), outq.clone()));
        p.start().unwrap();
        inq.put(format!("hello {method}")).unwrap();
        let got = outq.get_timeout(GENEROUS).unwrap();
        assert_eq!(got, format!("HELLO {}", method).to_uppercase());
        join_ok(p);
    }
}
