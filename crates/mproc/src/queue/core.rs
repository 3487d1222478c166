//! The untyped queue shared by `Queue`, `JoinableQueue` and `SimpleQueue`:
//! a ring of records in shared memory, one robust lock for producers and
//! one for consumers (see `README.md` and `header.rs`).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{
    AtomicU32, AtomicU64,
    Ordering::{Acquire, Relaxed, SeqCst},
};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::header::{self, decode_header, encode_header, record_len, Header, Kind};
use crate::codec::{self, WireFd};
use crate::error::{Error, Result};
use crate::shm::block::ShmBlock;
use crate::sync::{LockError, SharedMutex};
use crate::sys::ring::Ring;
use crate::sys::{fdpass, futex};

/// Bytes in the ring of the queues this process creates: the most bytes
/// of records a queue holds before a `put` waits for a consumer. Memory is
/// used only where records are written (see [`HOT`] and [`GIVE_BACK`]).
pub(super) const RING_CAP: u32 = MAX_CAP;
/// A producer that has written this far into a large ring starts again at
/// its beginning as soon as the queue is empty (a `PAD` record covers the
/// rest), so that a queue its consumers keep up with stays in this much
/// memory, warm in the CPUs' caches.
const HOT: u32 = 256 << 10;
/// A producer of items streamed in chunks starts the ring again past
/// [`HOT`] if the queue is empty, and waits for it to drain past this.
const FAR: u32 = 4 << 20;
/// Before [`HOT`], a producer of small items whose copy of `head` is this
/// many bytes behind reads it again, and waits (as for [`HOT`]) while more
/// than half as many bytes are queued.
const SOFT: u32 = 64 << 10;
/// Starting again from beyond this offset gives the pages written past
/// [`HOT`] back to the system, so that an idle queue does not keep the
/// memory of its largest backlog.
const GIVE_BACK: u32 = 8 << 20;
/// Past [`HOT`], how long a producer waits for the queue to drain while
/// its consumers make progress ([`STALL`] without progress ends the wait
/// sooner). It never sleeps, and only bounds how far ahead of its consumers
/// a producer runs while they keep up.
const DRAIN_MAX: Duration = Duration::from_millis(2);
const STALL: Duration = Duration::from_micros(20);
/// `pause`s between two looks at `head` of a producer waiting for a drain
/// (about a microsecond where measured; a `pause` takes 10 to 140 cycles,
/// by CPU): its consumer frees records one by one, and each look pulls
/// `head`'s cache line away from it, so that its next store of `head`
/// waits for the line.
const DRAIN_LOOK: u32 = 128;
/// After a wait for a drain that failed, a producer looks again only after
/// this many more bytes, doubled at each failure up to [`LOOK_MAX`].
const LOOK_MIN: u32 = 4 << 10;
const LOOK_MAX: u32 = 1 << 20;
/// The ring's memory is reserved (`fallocate`) this much at a time up to
/// [`HOT`], then [`RESERVE_STEP_FAR`] at a time.
const RESERVE_STEP: u32 = 64 << 10;
const RESERVE_STEP_FAR: u32 = 1 << 20;
/// Items whose record is longer than this go in chunks of this many bytes.
const CHUNK: usize = 256 << 10;
/// The longest sleep of a consumer inside a chunked item between looks at
/// its producer (a futex cannot tell that the producer died).
const SLICE: Duration = Duration::from_millis(20);
pub(super) const MIN_CAP: u32 = 4096;
const MAX_CAP: u32 = 1 << 30;
const WAKE_ALL: u32 = i32::MAX as u32;
/// Looks at `tail` a consumer that found no record makes at once, before
/// it spins and sleeps.
const QUICK_LOOKS: u32 = 2;

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

type Res<T> = std::result::Result<T, Stop>;

/// A lock held until dropped.
struct Held<'a>(&'a SharedMutex);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        let _ = self.0.release();
    }
}

/// The longest a waiter for a lock, for room, for data or for `join`
/// sleeps before it looks again, whatever it was told: a wake-up can be
/// lost with a process SIGKILLed at the wrong instant, and this bounds
/// what such a loss costs (see [`acquire`] and [`Core::wait_on`]). An
/// idle waiter wakes this often; nothing else depends on it.
const NAP: Duration = Duration::from_millis(50);

/// Takes `m` within `wait`. An owner that died holding it is not an error:
/// the caller repairs what the dead holder may have left half done.
///
/// A wait for the lock is cut into naps of at most [`NAP`] (one
/// `pthread_mutex_timedlock` each), because glibc's robust mutex can lose
/// the wake-up of a waiter: its unlock clears the lock word and wakes
/// **one** sleeper (`FUTEX_WAKE`, 1). If that sleeper was SIGKILLed and
/// has not yet left the futex queue, the wake is spent on a dying process;
/// the kernel makes up for it at the exit only if the lock word is still
/// free then (`handle_futex_death`, "pending op"), but the producer that
/// just unlocked usually takes the lock again at once, by the fast path,
/// which does not set `FUTEX_WAITERS`: from then on no unlock wakes
/// anyone, and the other sleepers sleep until their deadline (for ever for
/// a `put`). Seen as a queue wedged after a producer was killed. A sleeper
/// whose nap ends calls again, which sets `FUTEX_WAITERS` anew, so a lost
/// wake-up costs at most one nap. The first look is a `trylock`, so that
/// an uncontended acquisition reads no clock.
fn acquire(m: &SharedMutex, wait: Wait) -> Res<Held<'_>> {
    let mut timeout = Duration::ZERO; // first a `trylock`
    loop {
        match m.acquire(Some(timeout)) {
            Ok(true) | Err(LockError::OwnerDied(_)) => return Ok(Held(m)),
            Ok(false) => {}
            Err(LockError::Failed(e)) => return Err(Stop::Failed(e)),
        }
        timeout = match wait {
            Wait::Try => return Err(Stop::Busy),
            Wait::Until(d) => d.saturating_duration_since(Instant::now()).min(NAP),
            Wait::Forever => NAP,
        };
        if timeout.is_zero() {
            return Err(Stop::Timeout);
        }
    }
}

/// Wakes the sleepers of `seq` if `sleepers` says there are any (after the
/// `SeqCst` store they wait for; see `sys::futex`).
fn notify(seq: &AtomicU32, sleepers: &AtomicU32) {
    if sleepers.load(SeqCst) != 0 {
        seq.fetch_add(1, SeqCst);
        futex::wake(seq, WAKE_ALL);
    }
}

/// The socket pair that carries the descriptors of items holding OS
/// handles, shared by every handle of a queue: producers send on the
/// first, consumers receive on the second (see `README.md`).
#[derive(Clone)]
struct Chan(Arc<[OwnedFd; 2]>);

impl Chan {
    fn new() -> Result<Chan> {
        let (a, b) = fdpass::packet_pair().map_err(Error::io("cannot create a queue's socket"))?;
        Ok(Chan(Arc::new([a, b])))
    }
    fn tx(&self) -> BorrowedFd<'_> {
        self.0[0].as_fd()
    }
    fn rx(&self) -> BorrowedFd<'_> {
        self.0[1].as_fd()
    }
}

/// A descriptor serialised through the codec's side table.
struct FdRef<'a>(BorrowedFd<'a>);

impl Serialize for FdRef<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        codec::serialize_fd(self.0, s)
    }
}

impl Serialize for Chan {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (FdRef(self.tx()), FdRef(self.rx())).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Chan {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (WireFd(a), WireFd(b)) = Deserialize::deserialize(d)?;
        Ok(Chan(Arc::new([a, b])))
    }
}

/// The ring of records, shared by every handle of a queue in a process
/// (each process maps its segments as it meets them).
#[derive(Clone)]
struct SharedRing(Arc<Ring>);

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

/// The wire form of a queue: its header, its ring, its two locks and its
/// socket pair.
#[derive(Serialize, Deserialize)]
struct Wire {
    block: ShmBlock<Header>,
    ring: SharedRing,
    put_lock: SharedMutex,
    get_lock: SharedMutex,
    chan: Chan,
}

/// The bytes before the encoded item in a `HANDLES` record: the tag of
/// its message on the socket (`u64`), the number of descriptors (`u32`)
/// and 4 zero bytes.
const HANDLES_PREFIX: usize = 16;

/// A tag for the socket message of the item put as number `seq`: the
/// low half tells it from a message a killed producer sent for the same
/// number but never published.
fn handles_tag(seq: u32) -> u64 {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Relaxed).wrapping_mul(0x9e37_79b9);
    header::join(seq, n ^ std::process::id())
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
    block: ShmBlock<Header>,
    ring: SharedRing,
    put_lock: SharedMutex,
    get_lock: SharedMutex,
    chan: Chan,
    cap: u32,
    maxsize: u32,
    seen_head: AtomicU64,
    seen_laps: AtomicU32,
    seen_tail: AtomicU64,
    next_look: AtomicU32,
    look_step: AtomicU32,
}

impl Clone for Core {
    fn clone(&self) -> Self {
        Core {
            block: self.block.clone(),
            ring: self.ring.clone(),
            put_lock: self.put_lock.clone(),
            get_lock: self.get_lock.clone(),
            chan: self.chan.clone(),
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
            w.block, w.ring, w.put_lock, w.get_lock, w.chan, cap, maxsize,
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
        cap: u32,
        maxsize: u32,
    ) -> Core {
        Core {
            block,
            ring,
            put_lock,
            get_lock,
            chan,
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
    fn chunk(&self) -> usize {
        CHUNK.min(self.cap as usize / 4)
    }

    fn h(&self) -> &Header {
        self.block.header()
    }

    pub(super) fn maxsize(&self) -> u32 {
        self.maxsize
    }

    /// Checked (items_put, tail, items_got, head, used bytes, items queued).
    ///
    /// `head` is read on both sides of `tail` until it did not move: a
    /// producer that frees a `PAD` moves `head` past any `tail` read
    /// before its `PAD` was published, so only a snapshot of both words at
    /// one instant may be judged (at any instant they are in order).
    fn indices(&self) -> Result<(u32, u32, u32, u32, u32, u32)> {
        let mut before = self.h().head.load(SeqCst);
        let (mut word, mut tries) = (self.h().tail.load(SeqCst), 0);
        loop {
            let after = self.h().head.load(SeqCst);
            if after == before || tries == 100 {
                break;
            }
            (before, word, tries) = (after, self.h().tail.load(SeqCst), tries + 1);
        }
        let (put, tail) = header::split(word);
        let (got, head) = header::split(before);
        let (used, count) = (tail.wrapping_sub(head), put.wrapping_sub(got));
        if used > self.cap || count > 1 << 31 || tail % 8 != 0 || head % 8 != 0 {
            return Err(Error::Protocol(format!(
                "queue indices out of order: tail {put}/{tail}, head {got}/{head}"
            )));
        }
        Ok((put, tail, got, head, used, count))
    }

    /// Items in the queue now (a snapshot).
    pub(super) fn len(&self) -> Result<usize> {
        Ok(self.indices()?.5 as usize)
    }

    pub(super) fn is_shut_down(&self) -> bool {
        self.h().shut.load(SeqCst) != 0
    }

    /// The one or two pieces (ring offset, length) of `n` bytes at `at`.
    fn pieces(&self, at: u32, n: usize) -> [(usize, usize); 2] {
        let pos = (at & (self.cap - 1)) as usize;
        let first = n.min(self.cap as usize - pos);
        [(pos, first), (0, n - first)]
    }

    /// Copies `src` into the ring at `at` (mapping the segments it
    /// touches in this process first, which may fail).
    fn write(&self, at: u32, src: &[u8]) -> Result<()> {
        let [(a, n), (b, _)] = self.pieces(at, src.len());
        let ring = &self.ring.0;
        let mut r = ring.write(a, &src[..n]);
        if n < src.len() {
            r = r.and_then(|()| ring.write(b, &src[n..]));
        }
        r.map_err(Error::io("cannot map a queue's ring"))
    }

    fn read(&self, at: u32, dst: &mut [u8]) -> Result<()> {
        let [(a, n), (b, _)] = self.pieces(at, dst.len());
        let (first, second) = dst.split_at_mut(n);
        let ring = &self.ring.0;
        let mut r = ring.read(a, first);
        if !second.is_empty() {
            r = r.and_then(|()| ring.read(b, second));
        }
        r.map_err(Error::io("cannot map a queue's ring"))
    }

    fn append(&self, at: u32, n: usize, out: &mut Vec<u8>) -> Result<()> {
        for (offset, len) in self.pieces(at, n) {
            if len > 0 {
                self.ring
                    .0
                    .append_to(offset, len, out)
                    .map_err(Error::io("cannot map a queue's ring"))?;
            }
        }
        Ok(())
    }

    /// Spins, then sleeps on `seq`, until `check` reports something or
    /// `until` passes (`Ok(None)`).
    ///
    /// Each sleep lasts at most [`NAP`]: the side that makes `check` true
    /// stores its index word, then wakes the sleepers (`notify`), and a
    /// process SIGKILLed between the two leaves a sleeper that nobody will
    /// wake (a consumer asleep on an item that is there, a producer on
    /// room that is there) until some other process happens to notify,
    /// which may be never. Looking again after a nap bounds that to a nap.
    fn wait_on<R>(
        &self,
        seq: &AtomicU32,
        sleepers: &AtomicU32,
        until: Option<Instant>,
        check: impl Fn() -> Res<Option<R>>,
    ) -> Res<Option<R>> {
        let got =
            futex::wait_until_napping(seq, sleepers, until, Some(NAP), |_| check().transpose())
                .map_err(Error::io("cannot wait on a queue"))?;
        got.transpose()
    }

    // ------------------------------------------------------------ put

    /// Appends one item (encoded bytes and the descriptors they refer
    /// to), within `wait`.
    pub(super) fn put(&self, bytes: &[u8], fds: &[OwnedFd], wait: Wait) -> Res<()> {
        if fds.is_empty() {
            self.put_bytes(bytes, wait)
        } else {
            self.put_handles(bytes, fds, wait)
        }
    }

    /// Appends an item holding descriptors: one `HANDLES` record, its
    /// descriptors sent on the socket first, both under the put lock. The
    /// socket is never waited on holding the lock.
    fn put_handles(&self, bytes: &[u8], fds: &[OwnedFd], wait: Wait) -> Res<()> {
        let len = record_len(HANDLES_PREFIX + bytes.len());
        if fds.len() > fdpass::MAX_FDS || len > self.chunk() {
            return Err(Stop::Failed(Error::InvalidArgument(format!(
                "a queue item holding OS handles takes at most {} handles and {} bytes",
                fdpass::MAX_FDS,
                self.chunk() - 8 - HANDLES_PREFIX
            ))));
        }
        let mut data = vec![0u8; HANDLES_PREFIX];
        data.extend_from_slice(bytes);
        data[8..12].copy_from_slice(&(fds.len() as u32).to_le_bytes());
        let fds = fdpass::borrow_all(fds);
        loop {
            if self.is_shut_down() {
                return Err(Stop::ShutDown);
            }
            let held = acquire(&self.put_lock, wait)?;
            self.repair_put()?;
            self.pace(wait, true);
            self.wait_room(len, true, wait)?;
            let put = header::split(self.h().tail.load(SeqCst)).0;
            let tag = handles_tag(put);
            data[..8].copy_from_slice(&tag.to_le_bytes());
            let sent = fdpass::try_send_packet(self.chan.tx(), &tag.to_le_bytes(), &fds)
                .map_err(Error::io("cannot pass a queue item's OS handles"))?;
            if sent {
                return self.commit(Kind::Handles, &data, true);
            }
            // The socket is full of other items' handles: wait for the
            // consumers without the lock.
            drop(held);
            let deadline = match wait {
                Wait::Try => return Err(Stop::Busy),
                Wait::Until(d) => Some(d),
                Wait::Forever => Some(Instant::now() + SLICE),
            };
            let ready = fdpass::wait_writable(self.chan.tx(), deadline)
                .map_err(Error::io("cannot wait on a queue's socket"))?;
            if !ready && matches!(wait, Wait::Until(_)) {
                return Err(Stop::Timeout);
            }
        }
    }

    fn put_bytes(&self, bytes: &[u8], wait: Wait) -> Res<()> {
        if self.is_shut_down() {
            return Err(Stop::ShutDown);
        }
        let _held = acquire(&self.put_lock, wait)?;
        self.repair_put()?;
        self.pace(wait, record_len(bytes.len()) <= self.chunk());
        if record_len(bytes.len()) <= self.chunk() {
            return self.put_record(Kind::Whole, bytes, true, 0, wait);
        }
        if matches!(wait, Wait::Try) {
            // Streamed only if every chunk fits now: a `try_put` never
            // waits for a consumer.
            let chunks = bytes.len().div_ceil(self.chunk() - 8);
            self.wait_room(chunks * self.chunk() + 8, true, Wait::Try)?;
        }
        self.stream(bytes, wait)
    }

    /// Paces a producer about to write a new item (`small`: in one record)
    /// into a large ring (the caller holds the put lock). Past [`HOT`], it
    /// waits for the queue to drain (a large item: only past [`FAR`]) and
    /// starts the ring again at its beginning; before, a small item whose
    /// producer last saw `head` more than [`SOFT`] bytes ago looks again,
    /// and waits while more than half of that is queued (so that `head`,
    /// stored by the consumer for every item, is read at most once per
    /// `SOFT / 2` bytes outside a wait). Each wait spins, only
    /// while the consumers make progress (none for a `Try`): a consumer
    /// that keeps up is kept close, so the records it reads are still in
    /// the caches, and one that does not costs the producer a few
    /// microseconds now and then.
    fn pace(&self, wait: Wait, small: bool) {
        if self.cap < 4 * HOT {
            return;
        }
        let (put, tail) = header::split(self.h().tail.load(Relaxed));
        let pos = tail & (self.cap - 1);
        let far = pos >= HOT;
        if tail % 8 != 0 || !(far || small) {
            return;
        }
        let seen = self.seen_head.load(Relaxed) as u32;
        let fresh = self.seen_laps.load(Relaxed) == self.h().laps.load(Relaxed);
        if !far && fresh && tail.wrapping_sub(seen) <= SOFT {
            return;
        }
        if !small {
            // An item in chunks: its consumer reads one chunk while the
            // next is written, and a wait for the drain would stop that
            // flow, so it waits only far out.
            let patient = !matches!(wait, Wait::Try) && pos >= FAR;
            if let Some(got) = self.drain_to(tail, 0, 0, patient) {
                self.rewind(put, tail, got);
            }
            return;
        }
        let ahead = self.next_look.load(Relaxed).wrapping_sub(tail);
        if ahead != 0 && ahead <= LOOK_MAX {
            return; // waited in vain not long ago
        }
        let patient = !matches!(wait, Wait::Try);
        let got = self
            .drain_to(tail, SOFT / 2, SOFT / 2, patient)
            .and_then(|got| match far {
                true => self.drain_to(tail, 0, 0, patient),
                false => Some(got),
            });
        let Some(got) = got else {
            let step = self.look_step.load(Relaxed).clamp(LOOK_MIN, LOOK_MAX);
            self.next_look.store(tail.wrapping_add(step), Relaxed);
            self.look_step.store((step * 2).min(LOOK_MAX), Relaxed);
            return;
        };
        self.look_step.store(LOOK_MIN, Relaxed);
        if far {
            self.rewind(put, tail, got);
        }
    }

    /// Writes a `PAD` from `tail` (the caller holds the put lock, and every
    /// record up to `tail` is consumed, `got` items in all) to the end of
    /// the ring, frees it, and gives back the pages written far out.
    fn rewind(&self, put: u32, tail: u32, got: u32) {
        let pos = tail & (self.cap - 1);
        let pad = self.cap - pos;
        let end = tail.wrapping_add(pad);
        let header = encode_header(Kind::Pad, pad - 8);
        if self.reserve(tail, 8).is_err() || self.write(tail, &header).is_err() {
            return; // nothing published: the next record goes at `tail`
        }
        let laps = self.h().laps.load(Relaxed).wrapping_add(1);
        self.h().laps.store(laps, Relaxed);
        self.h().tail.store(header::join(put, end), SeqCst);
        // Free the `PAD` at once, unless a consumer already did (it then
        // stored this same word).
        let (from, to) = (header::join(got, tail), header::join(got, end));
        let _ = self.h().head.compare_exchange(from, to, SeqCst, Relaxed);
        self.seen_head.store(to, Relaxed);
        self.seen_laps.store(laps, Relaxed);
        self.next_look.store(end, Relaxed);
        self.give_back(pos);
    }

    /// If more than `enough` bytes up to `tail` are queued, spins (while
    /// the consumers make progress, at most [`DRAIN_MAX`]; not at all
    /// unless `patient`) until no more than `target` are: `Some(items got)`,
    /// or `None`.
    fn drain_to(&self, tail: u32, enough: u32, target: u32, patient: bool) -> Option<u32> {
        let look = |bound: u32| {
            let word = self.h().head.load(Acquire);
            let (got, head) = header::split(word);
            let used = tail.wrapping_sub(head);
            self.seen_head.store(word, Relaxed);
            self.seen_laps.store(self.h().laps.load(Relaxed), Relaxed);
            (used <= bound).then_some(got)
        };
        if let Some(got) = look(enough) {
            return Some(got);
        }
        if !patient {
            return None;
        }
        let start = Instant::now();
        let (mut last, mut moved) = (self.seen_head.load(Relaxed), start);
        loop {
            for _ in 0..4 {
                for _ in 0..DRAIN_LOOK {
                    std::hint::spin_loop();
                }
                if let Some(got) = look(target) {
                    return Some(got);
                }
            }
            let head = self.seen_head.load(Relaxed);
            let now = Instant::now();
            if head != last {
                (last, moved) = (head, now);
            } else if now - moved > STALL {
                return None;
            }
            if now - start > DRAIN_MAX {
                return None;
            }
        }
    }

    /// Gives back the pages written past [`HOT`] if records went beyond
    /// [`GIVE_BACK`], all but the page of the `PAD` at `pos` (a consumer
    /// may still be reading it). Nothing past [`HOT`] is queued.
    fn give_back(&self, pos: u32) {
        const PAGE: u32 = 4096;
        let deep = self.h().deep.load(Relaxed).max(pos + 8).min(self.cap);
        if deep <= GIVE_BACK {
            return;
        }
        self.h().deep.store(0, Relaxed);
        // Lowered before the punch: killed in between, this producer
        // leaves pages backed that need not be, never the other way round.
        let reserved = &self.h().reserved;
        reserved.store(reserved.load(Relaxed).min(HOT), Relaxed);
        let (pad_page, after) = (pos / PAGE * PAGE, (pos / PAGE + 1) * PAGE);
        let ring = &self.ring.0;
        if pad_page > HOT {
            ring.punch_hole(HOT as usize, (pad_page - HOT) as usize);
        }
        let end = deep.div_ceil(PAGE) * PAGE;
        if end > after {
            ring.punch_hole(after as usize, (end - after) as usize);
        }
    }

    /// Voids the chunks of an item whose producer died streaming it (the
    /// caller holds the put lock): room for the `ABORT` record is always
    /// reserved while streaming.
    fn repair_put(&self) -> Res<()> {
        if self.h().put_open.load(SeqCst) != 0 {
            self.put_record(Kind::Abort, &[], false, 0, Wait::Try)?;
            self.h().put_open.store(0, SeqCst);
        }
        Ok(())
    }

    fn stream(&self, bytes: &[u8], wait: Wait) -> Res<()> {
        self.h().put_open.store(1, SeqCst);
        let n = bytes.chunks(self.chunk() - 8).count();
        for (i, chunk) in bytes.chunks(self.chunk() - 8).enumerate() {
            let kind = match i {
                0 => Kind::First,
                _ if i + 1 == n => Kind::Last,
                _ => Kind::More,
            };
            if let Err(stop) = self.put_record(kind, chunk, kind == Kind::Last, 8, wait) {
                if i > 0 {
                    self.put_record(Kind::Abort, &[], false, 0, Wait::Try)?;
                }
                self.h().put_open.store(0, SeqCst);
                return Err(stop);
            }
        }
        self.h().put_open.store(0, SeqCst);
        Ok(())
    }

    /// Waits for room for `bytes` (and, for the first record of an item,
    /// for the item count to be under `maxsize`).
    fn wait_room(&self, bytes: usize, new_item: bool, wait: Wait) -> Res<()> {
        let check = || {
            if self.is_shut_down() {
                return Err(Stop::ShutDown);
            }
            // First against the last `head` seen (an underestimate of the
            // room: the consumer only frees), so that a put does not pull
            // the consumer's cache line every time; then against the real one.
            let fits = |used: u32, count: u32| {
                let full = new_item && self.maxsize != 0 && count >= self.maxsize;
                used <= self.cap && !full && (self.cap - used) as usize >= bytes
            };
            let (put, tail) = header::split(self.h().tail.load(SeqCst));
            let (got, head) = header::split(self.seen_head.load(Relaxed));
            let laps = self.h().laps.load(Relaxed);
            let fresh = self.seen_laps.load(Relaxed) == laps;
            if fresh && fits(tail.wrapping_sub(head), put.wrapping_sub(got)) {
                return Ok(Some(()));
            }
            let (_, _, got, head, used, count) = self.indices()?;
            self.seen_head.store(header::join(got, head), Relaxed);
            self.seen_laps.store(laps, Relaxed);
            Ok(fits(used, count).then_some(()))
        };
        let until = match wait {
            Wait::Try => return check()?.ok_or(Stop::Busy),
            Wait::Until(d) => Some(d),
            Wait::Forever => None,
        };
        let (seq, sleepers) = (&self.h().space_seq, &self.h().put_sleepers);
        self.wait_on(seq, sleepers, until, check)?
            .ok_or(Stop::Timeout)
    }

    /// Writes one record and commits it (with one more item if
    /// `completes`), after waiting for its room plus `reserve` bytes.
    fn put_record(
        &self,
        kind: Kind,
        data: &[u8],
        completes: bool,
        reserve: usize,
        wait: Wait,
    ) -> Res<()> {
        let len = record_len(data.len());
        if len + reserve > self.cap as usize {
            return Err(Stop::Failed(Error::InvalidState(
                "queue record larger than its ring",
            )));
        }
        let new_item = matches!(kind, Kind::Whole | Kind::First);
        self.wait_room(len + reserve, new_item, wait)?;
        self.commit(kind, data, completes)
    }

    /// Writes one record at `tail` and publishes it (with one more item if
    /// `completes`); the caller holds the put lock and saw room for it.
    fn commit(&self, kind: Kind, data: &[u8], completes: bool) -> Res<()> {
        let len = record_len(data.len());
        // The put lock's holder alone writes `tail`: only alignment can be
        // wrong (room was checked against it just now).
        let (put, tail) = header::split(self.h().tail.load(SeqCst));
        if tail % 8 != 0 {
            return Err(Stop::Failed(Error::Protocol(format!(
                "misaligned queue tail {tail}"
            ))));
        }
        self.reserve(tail, len)?;
        self.write(tail, &encode_header(kind, data.len() as u32))?;
        self.write(tail.wrapping_add(8), data)?;
        let reach = ((tail & (self.cap - 1)) as usize + len).min(self.cap as usize) as u32;
        if reach > self.h().deep.load(Relaxed) {
            self.h().deep.store(reach, Relaxed);
        }
        let put = put.wrapping_add(completes as u32);
        self.h()
            .tail
            .store(header::join(put, tail.wrapping_add(len as u32)), SeqCst);
        notify(&self.h().data_seq, &self.h().get_sleepers);
        Ok(())
    }

    /// Backs the ring's memory up to the end of `len` bytes at `at` before
    /// they are written (the caller holds the put lock): a write into a
    /// page of a `memfd` that the system cannot back kills the writer
    /// (`SIGBUS`, or the OOM killer) from safe code, where `fallocate`
    /// says `ENOSPC` or `ENOMEM`, and the `put` returns
    /// [`Error::NoSpace`] with nothing written.
    ///
    /// `reserved` (in the header) is a high-water mark: every byte of the
    /// ring below it is backed. It grows in steps ([`RESERVE_STEP`], so the
    /// call stays off the per-item path), from 0 up (a record that wraps
    /// reaches the ring's end, so its second piece, at the start, is below
    /// the mark), and is lowered to [`HOT`] before `give_back` punches the
    /// pages past it. A peer that garbles it can only make this process
    /// fault, as one that punches holes could.
    fn reserve(&self, at: u32, len: usize) -> Result<()> {
        let pos = at & (self.cap - 1);
        let reach = (pos as usize + len).min(self.cap as usize) as u32;
        let have = self.h().reserved.load(Relaxed).min(self.cap);
        if reach <= have {
            return Ok(());
        }
        let step = if reach <= HOT {
            RESERVE_STEP
        } else {
            RESERVE_STEP_FAR
        };
        let mut to = reach.next_multiple_of(step).min(self.cap);
        let mut r = reserve_ring(&self.ring.0, have, to - have);
        if r.is_err() && to > reach {
            to = reach; // no room for a step: perhaps for this record
            r = reserve_ring(&self.ring.0, have, to - have);
        }
        match r {
            Ok(()) => {
                self.h().reserved.store(to, Relaxed);
                Ok(())
            }
            Err(e) => Err(Error::shm_create(
                "cannot reserve a queue's memory",
                "a queue's ring",
                (to - have) as usize,
            )(e)),
        }
    }

    // ------------------------------------------------------------ get

    /// Takes the oldest item's bytes into `out` (cleared first), within
    /// `wait`; returns the descriptors they refer to.
    pub(super) fn get(&self, out: &mut Vec<u8>, wait: Wait) -> Res<Vec<OwnedFd>> {
        let _held = acquire(&self.get_lock, wait)?;
        self.get_locked(out, wait)
    }

    fn get_locked(&self, out: &mut Vec<u8>, wait: Wait) -> Res<Vec<OwnedFd>> {
        // A consumer that died inside a chunked item left the rest of it.
        let mut skip = self.h().get_open.load(SeqCst) != 0;
        out.clear();
        let mut in_item = false;
        loop {
            let Some((word, used)) = self.wait_data(in_item, wait)? else {
                self.look_at_producer()?;
                continue;
            };
            // The get lock's holder writes `head`, and a producer that
            // frees a `PAD` (checked by `wait_data`).
            let (got, head) = header::split(word);
            let mut h = [0u8; 8];
            self.read(head, &mut h)?;
            let (kind, len) = decode_header(h, used)?;
            if kind == Kind::Pad {
                let next = head.wrapping_add(record_len(len as usize) as u32);
                self.h().head.store(header::join(got, next), SeqCst);
                notify(&self.h().space_seq, &self.h().put_sleepers);
                continue;
            }
            if matches!(kind, Kind::Whole | Kind::First | Kind::Handles) {
                skip = false;
                out.clear(); // a partial item without its end: void
                in_item = false;
            }
            if kind == Kind::Handles {
                let next = head.wrapping_add(record_len(len as usize) as u32);
                let fds = self.take_handles(head, len as usize, out)?;
                self.h()
                    .head
                    .store(header::join(got.wrapping_add(1), next), SeqCst);
                notify(&self.h().space_seq, &self.h().put_sleepers);
                self.h().get_open.store(0, SeqCst);
                match fds {
                    Some(fds) => return Ok(fds),
                    None => {
                        out.clear(); // lost with a killed consumer
                        continue;
                    }
                }
            }
            let counted = kind == Kind::Last || kind == Kind::Whole;
            let keep = !skip && (matches!(kind, Kind::Whole | Kind::First) || in_item);
            if keep && kind != Kind::Abort {
                in_item = true;
                self.append(head.wrapping_add(8), len as usize, out)?;
            }
            let next = head.wrapping_add(record_len(len as usize) as u32);
            let got = got.wrapping_add(counted as u32);
            self.h().head.store(header::join(got, next), SeqCst);
            notify(&self.h().space_seq, &self.h().put_sleepers);
            match kind {
                Kind::First => self.h().get_open.store(1, SeqCst),
                Kind::Abort | Kind::Last => {
                    self.h().get_open.store(0, SeqCst);
                    skip = false;
                    if kind == Kind::Abort {
                        in_item = false;
                        out.clear();
                    }
                }
                _ => {}
            }
            if counted && keep {
                return Ok(Vec::new());
            }
        }
    }

    /// Reads the `HANDLES` record at `head` (`len` bytes): its item into
    /// `out`, its descriptors from the socket. Messages older than its
    /// tag (sent by producers killed before they published) are dropped;
    /// `None` if its message is gone (taken by a consumer killed before it
    /// freed the record: the item is lost with it).
    fn take_handles(&self, head: u32, len: usize, out: &mut Vec<u8>) -> Res<Option<Vec<OwnedFd>>> {
        if len < HANDLES_PREFIX {
            return Err(Stop::Failed(Error::Protocol(format!(
                "queue record of handles of {len} bytes"
            ))));
        }
        self.append(head.wrapping_add(8), len, out)?;
        let tag = u64::from_le_bytes(out[..8].try_into().unwrap_or_default());
        out.drain(..HANDLES_PREFIX);
        let io = || Error::io("cannot take a queue item's OS handles");
        loop {
            let mut b = [0u8; 8];
            let Some(n) = fdpass::peek_packet(self.chan.rx(), &mut b).map_err(io())? else {
                return Ok(None);
            };
            let seen = if n == 8 { u64::from_le_bytes(b) } else { 0 };
            let ahead = header::split(seen).0.wrapping_sub(header::split(tag).0);
            if seen != tag && ahead != 0 && ahead < 1 << 31 {
                return Ok(None); // a later item's
            }
            let taken = fdpass::recv_tagged(self.chan.rx(), &mut b, true).map_err(io())?;
            let fds = taken.map(|(_, fds)| fds).unwrap_or_default();
            if seen == tag {
                return Ok(Some(fds));
            }
            drop(fds); // a dead producer's
        }
    }

    /// Waits until a record is published: `Some((head word, used bytes))`
    /// from one reading of `head`, or `None`
    /// after a slice when inside a chunked item (`in_item`), which ignores
    /// `wait` and shutdown: its producer finishes or voids it.
    fn wait_data(&self, in_item: bool, wait: Wait) -> Res<Option<(u64, u32)>> {
        let check = || {
            let word = self.h().head.load(Acquire);
            let (got, head) = header::split(word);
            let (put, tail) = header::split(self.seen_tail.load(Relaxed));
            let hint = tail.wrapping_sub(head);
            let behind = put.wrapping_sub(got) > 1 << 31;
            if hint > 0 && hint <= self.cap && head % 8 == 0 && !behind {
                return Ok(Some((word, hint)));
            }
            let (put, tail, got, head, used, _) = self.indices()?;
            self.seen_tail.store(header::join(put, tail), Relaxed);
            if used == 0 && !in_item && self.is_shut_down() {
                return Err(Stop::ShutDown);
            }
            Ok((used > 0).then_some((header::join(got, head), used)))
        };
        let until = match (in_item, wait) {
            (true, _) => Some(Instant::now() + SLICE),
            (false, Wait::Try) => return check()?.ok_or(Stop::Busy).map(Some),
            (false, Wait::Until(d)) => Some(d),
            (false, Wait::Forever) => None,
        };
        // Look before `wait_on` (whose first look also reads `data_seq`,
        // on `tail`'s line, and whose spin then starts): a stream's next
        // record is often published by the second look. Measured on the
        // small-item stream: going to `wait_on` at once halves the rate.
        for _ in 0..QUICK_LOOKS {
            if let Some(found) = check()? {
                return Ok(Some(found));
            }
        }
        let (seq, sleepers) = (&self.h().data_seq, &self.h().get_sleepers);
        match self.wait_on(seq, sleepers, until, check)? {
            Some(found) => Ok(Some(found)),
            None if in_item => Ok(None),
            None => Err(Stop::Timeout),
        }
    }

    /// Inside a chunked item and nothing came for a slice: if the put lock
    /// is free (its holder died, or a producer met the void), void the item
    /// on the dead producer's behalf.
    fn look_at_producer(&self) -> Res<()> {
        match acquire(&self.put_lock, Wait::Try) {
            Ok(_held) => self.repair_put(),
            Err(Stop::Busy) => Ok(()),
            Err(e) => Err(e),
        }
    }

    // ------------------------------------------------------------ shutdown, join

    /// Shuts the queue down for everyone; `immediate` also drains it and
    /// marks the drained items done. Returns how many were drained.
    pub(super) fn shutdown(&self, immediate: bool) -> Result<u32> {
        self.h().shut.store(1, SeqCst);
        for seq in [&self.h().data_seq, &self.h().space_seq] {
            seq.fetch_add(1, SeqCst);
            futex::wake(seq, WAKE_ALL);
        }
        if !immediate {
            return Ok(0);
        }
        let _held = acquire(&self.get_lock, Wait::Forever).map_err(into_error)?;
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

/// `fallocate` of `len` ring bytes at `pos`; in unit tests, a failure can
/// be injected (the kernel's `ENOSPC` is hard to provoke for a `memfd`,
/// whose filesystem has no size limit, as root).
fn reserve_ring(ring: &Ring, pos: u32, len: u32) -> std::io::Result<()> {
    #[cfg(test)]
    if let Some(errno) = tests::FAIL_RESERVE.with(|f| f.get()) {
        return Err(std::io::Error::from_raw_os_error(errno));
    }
    ring.reserve(pos as usize, len as usize)
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

    thread_local! {
        /// An errno that `fallocate` of the ring fails with, in this thread.
        pub(super) static FAIL_RESERVE: Cell<Option<i32>> = const { Cell::new(None) };
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
}
