//! The untyped queue shared by `Queue`, `JoinableQueue` and `SimpleQueue`:
//! a ring of records in shared memory, one robust lock for producers and
//! one for consumers (see `README.md` and `header.rs`).
//!
//! This file holds the handle (`Core`: its parts, its wire form, its
//! sizes), how long a call may wait and why it stopped, and the calls that
//! take neither lock (`len`, `shutdown`, `task_done`, `join`). The protocol
//! is in the files beside it: `index.rs` (the two index words), `record.rs`
//! (copies in and out of the ring), `wait.rs` (locks, naps, wake-ups),
//! `space.rs` (where records go), `put.rs`, `get.rs` and `handles.rs`.

use std::os::fd::AsFd;
use std::sync::atomic::{
    AtomicU32, AtomicU64,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::aio::{Side, WakeFd};
use super::handles::Chan;
use super::header::Header;
use super::space::LOOK_MIN;
use super::wait::{acquire, Unlocked, NAP, WAKE_ALL};
use crate::codec::{self, WireFd};
use crate::error::{Error, Result};
use crate::shm::block::ShmBlock;
use crate::sync::SharedMutex;
use crate::sys::futex;
use crate::sys::ring::Ring;

/// Bytes in the ring of the queues this process creates: the most bytes
/// of records a queue holds before a `put` waits for a consumer. Memory is
/// used only where records are written (see [`HOT`](super::space::HOT) and
/// [`GIVE_BACK`](super::space::GIVE_BACK)).
pub(super) const RING_CAP: u32 = MAX_CAP;
/// Items whose record is longer than this go in chunks of this many bytes.
pub(super) const CHUNK: usize = 256 << 10;
pub(super) const MIN_CAP: u32 = 4096;
pub(super) const MAX_CAP: u32 = 1 << 30;

/// How long a call may wait.
#[derive(Clone, Copy, Debug)]
pub(super) enum Wait {
    /// Not at all (`try_*`).
    Try,
    /// Until this instant (`*_timeout`).
    Until(Instant),
    /// For ever.
    Forever,
}

impl Wait {
    pub(super) fn timeout(d: Duration) -> Wait {
        Instant::now()
            .checked_add(d)
            .map_or(Wait::Forever, Wait::Until)
    }
}

/// Why a call did not succeed.
#[derive(Debug)]
pub(super) enum Stop {
    /// Full (put) or empty (get), or the lock was busy, for a `Wait::Try`.
    Busy,
    Timeout,
    ShutDown,
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Stop {
        Stop::Failed(e)
    }
}

pub(super) type Res<T> = std::result::Result<T, Stop>;

/// The ring of records, shared by every handle of a queue in a process
/// (each process maps its segments as it meets them).
#[derive(Clone)]
pub(super) struct SharedRing(pub(super) Arc<Ring>);

impl Serialize for SharedRing {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        codec::serialize_fd(self.0.as_fd(), s)
    }
}

impl<'de> Deserialize<'de> for SharedRing {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let WireFd(fd) = Deserialize::deserialize(d)?;
        let ring = Ring::open(fd).map_err(serde::de::Error::custom)?;
        Ok(SharedRing(Arc::new(ring)))
    }
}

/// The wire form of a queue: its header, its ring, its two locks, its
/// socket pair and (feature `tokio`) its eventfd.
#[derive(Serialize, Deserialize)]
struct Wire {
    block: ShmBlock<Header>,
    ring: SharedRing,
    put_lock: SharedMutex,
    get_lock: SharedMutex,
    chan: Chan,
    wake: WakeFd,
}

/// A handle on a queue's shared state; `cap` and `maxsize` are this
/// process's checked copies, `seen_head` the last `head` word a producer
/// of this handle read (valid while `laps` is still `seen_laps`: a rewind
/// moves the byte indices by up to a ring, so an older word could alias)
/// and `seen_tail` the last `tail` word a consumer read (valid while its
/// item count is not behind `head`'s) (hints: room and data are only ever
/// underestimated, so the other side's cache line is read only when the
/// hint runs out).
#[derive(Serialize, Deserialize)]
#[serde(into = "Wire", try_from = "Wire")]
pub(super) struct Core {
    pub(super) block: ShmBlock<Header>,
    pub(super) ring: SharedRing,
    pub(super) put_lock: SharedMutex,
    pub(super) get_lock: SharedMutex,
    pub(super) chan: Chan,
    /// The eventfd that wakes async waiters (`aio.rs`); nothing without
    /// the feature `tokio`.
    pub(super) wake: WakeFd,
    pub(super) cap: u32,
    pub(super) maxsize: u32,
    pub(super) seen_head: AtomicU64,
    pub(super) seen_laps: AtomicU32,
    pub(super) seen_tail: AtomicU64,
    pub(super) next_look: AtomicU32,
    pub(super) look_step: AtomicU32,
}

impl Clone for Core {
    fn clone(&self) -> Self {
        Core {
            block: self.block.clone(),
            ring: self.ring.clone(),
            put_lock: self.put_lock.clone(),
            get_lock: self.get_lock.clone(),
            chan: self.chan.clone(),
            wake: self.wake.clone(),
            cap: self.cap,
            maxsize: self.maxsize,
            seen_head: AtomicU64::new(self.seen_head.load(Relaxed)),
            seen_laps: AtomicU32::new(self.seen_laps.load(Relaxed)),
            seen_tail: AtomicU64::new(self.seen_tail.load(Relaxed)),
            next_look: AtomicU32::new(0),
            look_step: AtomicU32::new(LOOK_MIN),
        }
    }
}

impl From<Core> for Wire {
    fn from(c: Core) -> Wire {
        Wire {
            block: c.block,
            ring: c.ring,
            put_lock: c.put_lock,
            get_lock: c.get_lock,
            chan: c.chan,
            wake: c.wake,
        }
    }
}

impl TryFrom<Wire> for Core {
    type Error = String;
    fn try_from(w: Wire) -> std::result::Result<Core, String> {
        let h = w.block.header();
        let (cap, maxsize) = (h.cap.load(SeqCst), h.maxsize.load(SeqCst));
        let room = w.ring.0.len();
        if !cap.is_power_of_two() || !(MIN_CAP..=MAX_CAP).contains(&cap) || cap as usize > room {
            return Err(format!(
                "bad queue ring size {cap} ({room} bytes in the ring)"
            ));
        }
        Ok(Core::with_parts(
            w.block, w.ring, w.put_lock, w.get_lock, w.chan, w.wake, cap, maxsize,
        ))
    }
}

impl Core {
    /// A new queue of at most `maxsize` items (0: no limit) over a ring of
    /// `cap` bytes (a power of two).
    pub(super) fn new(maxsize: u32, cap: u32) -> Result<Core> {
        debug_assert!(cap.is_power_of_two() && (MIN_CAP..=MAX_CAP).contains(&cap));
        let block = ShmBlock::<Header>::create("mproc-queue", 0)?;
        block.header().cap.store(cap, SeqCst);
        block.header().maxsize.store(maxsize, SeqCst);
        let ring = Ring::create("mproc-queue-ring", cap as usize)
            .map_err(Error::io("cannot create a queue's ring"))?;
        Ok(Core::with_parts(
            block,
            SharedRing(Arc::new(ring)),
            SharedMutex::new(false)?,
            SharedMutex::new(false)?,
            Chan::new()?,
            WakeFd::new()?,
            cap,
            maxsize,
        ))
    }

    /// A handle over checked parts, with this process's caches empty.
    #[allow(clippy::too_many_arguments)]
    fn with_parts(
        block: ShmBlock<Header>,
        ring: SharedRing,
        put_lock: SharedMutex,
        get_lock: SharedMutex,
        chan: Chan,
        wake: WakeFd,
        cap: u32,
        maxsize: u32,
    ) -> Core {
        Core {
            block,
            ring,
            put_lock,
            get_lock,
            chan,
            wake,
            cap,
            maxsize,
            seen_head: AtomicU64::new(0),
            seen_laps: AtomicU32::new(0),
            seen_tail: AtomicU64::new(0),
            next_look: AtomicU32::new(0),
            look_step: AtomicU32::new(LOOK_MIN),
        }
    }

    /// The largest record; longer items go in chunks of this size (a
    /// quarter of the ring at most, so that chunks flow while others wait).
    #[inline]
    pub(super) fn chunk(&self) -> usize {
        CHUNK.min(self.cap as usize / 4)
    }

    #[inline]
    pub(super) fn h(&self) -> &Header {
        self.block.header()
    }

    pub(super) fn maxsize(&self) -> u32 {
        self.maxsize
    }

    /// Items in the queue now (a snapshot).
    pub(super) fn len(&self) -> Result<usize> {
        Ok(self.indices()?.5 as usize)
    }

    pub(super) fn is_shut_down(&self) -> bool {
        self.h().shut.load(SeqCst) != 0
    }

    /// Shuts the queue down for everyone; `immediate` also drains it and
    /// marks the drained items done. Returns how many were drained.
    pub(super) fn shutdown(&self, immediate: bool) -> Result<u32> {
        self.h().shut.store(1, SeqCst);
        for seq in [&self.h().data_seq, &self.h().space_seq] {
            seq.fetch_add(1, SeqCst);
            futex::wake(seq, WAKE_ALL);
        }
        self.wake_async();
        if !immediate {
            return Ok(0);
        }
        let _held = (
            acquire(&self.get_lock, Wait::Forever).map_err(into_error)?,
            Unlocked(self, Side::Get),
        );
        let (mut drained, mut sink) = (0u32, Vec::new());
        loop {
            match self.get_locked(&mut sink, Wait::Try) {
                Ok(_fds) => drained += 1,
                Err(Stop::Busy | Stop::ShutDown | Stop::Timeout) => break,
                Err(Stop::Failed(e)) => return Err(e),
            }
        }
        self.h().done.fetch_add(drained, SeqCst);
        futex::wake(&self.h().done, WAKE_ALL);
        // After `done`, for async joiners (the first wake, above, came
        // before the drain).
        self.wake_async();
        Ok(drained)
    }

    /// Items put and not yet marked done.
    pub(super) fn unfinished(&self) -> Result<u32> {
        let put = self.indices()?.0;
        Ok(put.wrapping_sub(self.h().done.load(SeqCst)))
    }

    /// Marks one item done; an error if every put item already is.
    pub(super) fn task_done(&self) -> Result<()> {
        let done = &self.h().done;
        let mut seen = done.load(SeqCst);
        loop {
            if self.indices()?.0 == seen {
                return Err(Error::InvalidState("task_done() called too many times"));
            }
            match done.compare_exchange(seen, seen.wrapping_add(1), SeqCst, SeqCst) {
                Ok(_) => break,
                Err(now) => seen = now,
            }
        }
        if self.h().join_sleepers.load(SeqCst) != 0 {
            futex::wake(done, WAKE_ALL);
            self.wake_async_if(&self.h().join_async);
        }
        Ok(())
    }

    /// Waits until every put item is marked done: `false` on timeout.
    pub(super) fn join(&self, deadline: Option<Instant>) -> Result<bool> {
        // In naps, as `wait_on` and for the same reason: a process killed
        // between its `done` increment and its wake-up.
        let h = self.h();
        let check = || match self.indices() {
            Ok(i) if i.0 == h.done.load(SeqCst) => Some(Ok(())),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        };
        let r =
            futex::wait_until_napping(&h.done, &h.join_sleepers, deadline, Some(NAP), |_| check())
                .map_err(Error::io("cannot wait on a queue"))?;
        r.transpose().map(|r| r.is_some())
    }
}

/// A `Stop` as the crate's error.
pub(super) fn into_error(s: Stop) -> Error {
    match s {
        Stop::Busy | Stop::Timeout => Error::Timeout,
        Stop::ShutDown => Error::ShutDown,
        Stop::Failed(e) => e,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::cell::Cell;
    use std::os::fd::OwnedFd;

    use crate::queue::handles::handles_tag;
    use crate::queue::header::{self, Kind};
    use crate::queue::space::{GIVE_BACK, HOT, LOOK_MAX};
    use crate::sys::fdpass;

    thread_local! {
        /// An errno that `fallocate` of the ring fails with, in this thread.
        pub(in crate::queue) static FAIL_RESERVE: Cell<Option<i32>> = const { Cell::new(None) };
    }

    fn core() -> Core {
        Core::new(0, MIN_CAP).unwrap()
    }

    #[test]
    fn records_wrap_around_the_ring() {
        let q = core();
        let mut out = Vec::new();
        for i in 0..2000u32 {
            let item = vec![i as u8; (i % 700) as usize];
            q.put(&item, &[], Wait::Try).unwrap();
            q.get(&mut out, Wait::Try).unwrap();
            assert_eq!(out, item);
        }
        assert!(matches!(q.get(&mut out, Wait::Try), Err(Stop::Busy)));
    }

    /// Puts `item` by the in-place path (as `Queue::put` does for a small
    /// value), its "encoding" a copy of it.
    fn put_in_place(q: &Core, item: &[u8]) -> Res<()> {
        q.put_encoded(item.len(), Wait::Try, |dst| {
            dst.copy_from_slice(item);
            Ok(Vec::new())
        })
    }

    #[test]
    fn items_encoded_in_place_wrap_at_the_ring_end_and_cross_segments() {
        // A 4 KiB ring: records of every length up to 128 bytes wrap at its
        // end (then they are encoded aside and copied in two pieces).
        let q = core();
        let mut out = Vec::new();
        let mut wrapped = 0;
        for i in 0..3000u32 {
            let item: Vec<u8> = (0..(i * 7) % 129).map(|b| (b ^ i) as u8).collect();
            let pos = header::split(q.h().tail.load(SeqCst)).1 & (q.cap - 1);
            wrapped += (pos as usize + header::record_len(item.len()) > q.cap as usize) as u32;
            put_in_place(&q, &item).unwrap();
            if i % 3 == 0 {
                put_in_place(&q, &item).unwrap();
                q.get(&mut out, Wait::Try).unwrap();
                assert_eq!(out, item, "item {i}");
            }
            q.get(&mut out, Wait::Try).unwrap();
            assert_eq!(out, item, "item {i}");
        }
        assert!(wrapped > 10, "only {wrapped} records wrapped");
        assert!(matches!(q.get(&mut out, Wait::Try), Err(Stop::Busy)));

        // A 1 MiB ring (too small to start again early): records of 112
        // bytes, one of which crosses the first segment's end, 256 KiB in.
        let q = Core::new(0, 1 << 20).unwrap();
        let item = [0x5au8; 100];
        let mut crossed = false;
        for _ in 0..(1 << 20) / 112 {
            let pos = header::split(q.h().tail.load(SeqCst)).1 & (q.cap - 1);
            crossed |= pos < 256 << 10 && pos + 112 > 256 << 10;
            put_in_place(&q, &item).unwrap();
            q.get(&mut out, Wait::Try).unwrap();
            assert_eq!(out, item);
        }
        assert!(crossed);
        assert_eq!(q.len().unwrap(), 0);
    }

    #[test]
    fn an_encoder_that_fails_in_place_leaves_the_queue_unchanged() {
        let q = core();
        put_in_place(&q, b"before").unwrap();
        let tail = q.h().tail.load(SeqCst);
        let r = q.put_encoded(40, Wait::Try, |dst| {
            dst[..3].copy_from_slice(b"bad");
            Err(Error::InvalidArgument("no".into()))
        });
        assert!(matches!(r, Err(Stop::Failed(Error::InvalidArgument(_)))));
        assert_eq!(q.h().tail.load(SeqCst), tail);
        assert!(!q.put_lock.is_locked());
        put_in_place(&q, b"after").unwrap();
        let mut out = Vec::new();
        q.get(&mut out, Wait::Try).unwrap();
        assert_eq!(out, b"before");
        q.get(&mut out, Wait::Try).unwrap();
        assert_eq!(out, b"after");
        assert!(matches!(q.get(&mut out, Wait::Try), Err(Stop::Busy)));
    }

    #[test]
    fn an_item_encoded_in_place_with_handles_goes_with_its_handles() {
        let q = core();
        let r = q.put_encoded(5, Wait::Try, |dst| {
            dst.copy_from_slice(b"fds:2");
            Ok(handles(2))
        });
        r.unwrap();
        put_in_place(&q, b"plain").unwrap();
        let mut out = Vec::new();
        assert_eq!(q.get(&mut out, Wait::Try).unwrap().len(), 2);
        assert_eq!(out, b"fds:2");
        assert!(q.get(&mut out, Wait::Try).unwrap().is_empty());
        assert_eq!(out, b"plain");
    }

    #[test]
    fn items_larger_than_the_ring_need_a_consumer() {
        let q = core();
        let big = vec![5u8; 3 * MIN_CAP as usize];
        assert!(matches!(q.put(&big, &[], Wait::Try), Err(Stop::Busy)));
        assert_eq!(q.len().unwrap(), 0);
    }

    #[test]
    fn hostile_indices_are_a_protocol_error() {
        let q = core();
        q.h().tail.store(header::join(1, MIN_CAP + 8), SeqCst);
        let mut out = Vec::new();
        assert!(matches!(
            q.get(&mut out, Wait::Try),
            Err(Stop::Failed(Error::Protocol(_)))
        ));
        assert!(matches!(
            q.put(b"x", &[], Wait::Try),
            Err(Stop::Failed(Error::Protocol(_)))
        ));
        q.h().tail.store(header::join(1, 3), SeqCst);
        assert!(matches!(q.len(), Err(Error::Protocol(_))));
    }

    #[test]
    fn a_garbled_record_header_is_a_protocol_error() {
        let q = core();
        q.put(b"hello", &[], Wait::Try).unwrap();
        q.ring.0.write(4, &[0xff; 4]).unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            q.get(&mut out, Wait::Try),
            Err(Stop::Failed(Error::Protocol(_)))
        ));
    }

    #[test]
    fn a_large_ring_starts_again_when_drained_and_gives_pages_back() {
        let q = Core::new(0, 32 << 20).unwrap();
        let mut out = Vec::new();
        let item = vec![9u8; 1000];
        let pos = |q: &Core| header::split(q.h().tail.load(SeqCst)).1 & (q.cap - 1);
        // Kept up with: the producer stays near the start of the ring.
        for i in 0..2000u32 {
            q.put(&item, &[], Wait::Forever).unwrap();
            q.get(&mut out, Wait::Try).unwrap();
            assert_eq!(out, item, "item {i}");
            assert!(pos(&q) <= HOT + 1016);
        }
        // A backlog of 12 MiB with no consumer: the ring grows into it.
        let n = (12 << 20) / 1008;
        for _ in 0..n {
            q.put(&item, &[], Wait::Try).unwrap();
        }
        assert!(pos(&q) > GIVE_BACK);
        assert!(q.h().reserved.load(SeqCst) >= pos(&q));
        let written = |at: u32| {
            let mut b = [0u8; 8];
            q.ring.0.read(at as usize, &mut b).unwrap();
            b != [0; 8]
        };
        let probe = GIVE_BACK - 4096 * 7;
        assert!(written(probe));
        for _ in 0..n {
            q.get(&mut out, Wait::Try).unwrap();
            assert_eq!(out, item);
        }
        // Drained: a put (at most `LOOK_MAX` later, the producer having
        // looked in vain before) starts again, and the far pages are gone.
        let mut puts = 0;
        while pos(&q) > HOT {
            q.put(&item, &[], Wait::Try).unwrap();
            q.get(&mut out, Wait::Try).unwrap();
            assert_eq!(out, item);
            puts += 1;
            assert!(puts * 1008 < LOOK_MAX as usize + 2 * 1008);
        }
        assert!(!written(probe));
        assert_eq!(q.len().unwrap(), 0);
        // Reserved again only as far as records went since.
        assert_eq!(q.h().reserved.load(SeqCst), HOT);
    }

    #[test]
    fn a_queue_maps_only_the_segments_it_touches() {
        let q = Core::new(0, RING_CAP).unwrap();
        assert_eq!(q.ring.0.mapped(), 0);
        let mut out = Vec::new();
        for i in 0..1000u32 {
            q.put(&i.to_le_bytes(), &[], Wait::Try).unwrap();
            q.get(&mut out, Wait::Try).unwrap();
        }
        assert_eq!(q.ring.0.mapped(), 1);
        assert!(q.h().reserved.load(SeqCst) <= HOT);
    }

    #[test]
    fn a_failed_reservation_is_no_space_and_leaves_the_queue_untouched() {
        let q = core();
        let before = q.h().tail.load(SeqCst);
        FAIL_RESERVE.with(|f| f.set(Some(libc::ENOSPC)));
        let r = q.put(b"no room", &[], Wait::Forever);
        FAIL_RESERVE.with(|f| f.set(None));
        match r {
            Err(Stop::Failed(Error::NoSpace {
                what, requested, ..
            })) => {
                assert_eq!(what, "a queue's ring");
                assert!(requested > 0);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(q.h().tail.load(SeqCst), before);
        assert_eq!(q.len().unwrap(), 0);
        FAIL_RESERVE.with(|f| f.set(Some(libc::EIO)));
        assert!(matches!(
            q.put(b"x", &[], Wait::Try),
            Err(Stop::Failed(Error::Io { .. }))
        ));
        FAIL_RESERVE.with(|f| f.set(None));
        q.put(b"room", &[], Wait::Try).unwrap();
        let mut out = Vec::new();
        q.get(&mut out, Wait::Try).unwrap();
        assert_eq!(out, b"room");
        assert_eq!(q.h().reserved.load(SeqCst), MIN_CAP);
    }

    fn handles(n: usize) -> Vec<OwnedFd> {
        (0..n).map(|_| fdpass::packet_pair().unwrap().0).collect()
    }

    #[test]
    fn a_dead_producers_handles_are_dropped_and_a_dead_consumers_item_skipped() {
        let q = core();
        let mut out = Vec::new();
        // A producer killed between sending its handles and publishing:
        // a message with the next item's number and another tag.
        let put = header::split(q.h().tail.load(SeqCst)).0;
        let stale = handles(2);
        let tag = handles_tag(put).to_le_bytes();
        fdpass::try_send_packet(q.chan.tx(), &tag, &fdpass::borrow_all(&stale)).unwrap();
        q.put(b"one", &handles(3), Wait::Try).unwrap();
        assert_eq!(q.get(&mut out, Wait::Try).unwrap().len(), 3);
        assert_eq!(out, b"one");
        // A consumer killed after taking the handles, before freeing the
        // record: the item is lost, the next one comes.
        q.put(b"two", &handles(1), Wait::Try).unwrap();
        q.put(b"three", &handles(2), Wait::Try).unwrap();
        let mut b = [0u8; 8];
        fdpass::recv_tagged(q.chan.rx(), &mut b, true)
            .unwrap()
            .unwrap();
        assert_eq!(q.get(&mut out, Wait::Try).unwrap().len(), 2);
        assert_eq!(out, b"three");
        assert_eq!(q.len().unwrap(), 0);
        assert!(fdpass::peek_packet(q.chan.rx(), &mut b).unwrap().is_none());
    }

    #[test]
    fn an_abort_voids_a_partial_item() {
        let q = core();
        q.h().put_open.store(1, SeqCst);
        q.put_record(Kind::First, b"partial", false, 8, Wait::Try)
            .unwrap();
        q.put(b"next", &[], Wait::Try).unwrap(); // repairs first: ABORT, then the item
        let mut out = Vec::new();
        q.get(&mut out, Wait::Try).unwrap();
        assert_eq!(out, b"next");
        assert_eq!(q.len().unwrap(), 0);
    }

    #[test]
    fn a_consumer_after_one_killed_inside_an_item_skips_its_rest() {
        let q = core();
        // A producer streams an item, a consumer killed after its `FIRST`
        // left `get_open` at 1: the next get skips to the next item, and
        // the skipped item counts as taken.
        q.h().put_open.store(1, SeqCst);
        q.put_record(Kind::More, b"middle", false, 8, Wait::Try)
            .unwrap();
        q.put_record(Kind::Last, b"end", true, 0, Wait::Try)
            .unwrap();
        q.h().put_open.store(0, SeqCst);
        q.put(b"next", &[], Wait::Try).unwrap();
        q.h().get_open.store(1, SeqCst);
        let mut out = Vec::new();
        q.get(&mut out, Wait::Try).unwrap();
        assert_eq!(out, b"next");
        assert_eq!(q.h().get_open.load(SeqCst), 0);
        assert_eq!(q.len().unwrap(), 0);
        assert!(matches!(q.get(&mut out, Wait::Try), Err(Stop::Busy)));
    }
}
