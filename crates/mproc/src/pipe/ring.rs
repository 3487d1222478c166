//! One direction of a pipe: a single-producer single-consumer byte ring in
//! shared memory, with futex words to sleep on.
//!
//! # Control block (four 128-byte lines, so the two sides do not share
//! the lines they write on every message)
//!
//! | word              | line | written by                    | meaning                                                   |
//! |-------------------|------|-------------------------------|-----------------------------------------------------------|
//! | `tail`            | W +0 | writer                        | bytes ever published (wrapping); data is `[head, tail)`   |
//! | `data_seq`        | W +4 | writer; a closing end         | futex word readers sleep on; bumped to wake them          |
//! | `head`            | R +0 | reader                        | bytes ever consumed (wrapping); free space is `cap - used`|
//! | `space_seq`       | R +4 | reader; a closing end         | futex word writers sleep on; bumped to wake them          |
//! | `reader_sleepers` | X +0 | reader                        | readers announced asleep on `data_seq`                    |
//! | `writer_sleepers` | X +4 | writer                        | writers announced asleep on `space_seq`                   |
//! | `armed`           | X +8 | reader sets 1, writer swaps 0 | a `wait` polls the socket: write one wake byte there      |
//! | `space_armed`     | X +12| writer sets 1, reader swaps 0 | an awaiting writer (feature `tokio`) polls the socket: write one wake byte there when space frees |
//! | `writer_tail`     | V +0 | writer                        | a copy of `tail` on a line the reader never reads (a hint)|
//!
//! `used = tail - head` (wrapping) must be at most `cap`; anything else is a
//! broken or hostile peer and yields `Error::Protocol`. Every access is
//! masked into the ring, so a bad index can garble data but never reach
//! outside the region.
//!
//! # Protocol
//!
//! Publishing is a `Release` store of `tail` (or `head`), a light fence,
//! then a load of the other side's sleepers counter; only if it is non-zero
//! does the publisher bump the seq word and `FUTEX_WAKE`. A sleeper increments
//! its counter, runs a heavy fence, loads the seq word, then checks the
//! indices, and sleeps only if the seq word still holds what it loaded. The
//! fences pair (`futex::light_fence`, `futex::heavy_fence`: `membarrier(2)`
//! where the kernel has it, two full fences otherwise), so either the
//! publisher sees the sleeper or the sleeper sees the new index (Dekker).
//! `armed` pairs with `tail` the same way (`set_armed` is the heavy side).
//!
//! A closing end bumps both seq words whatever the counters say (a poke): a
//! waiter that sees its seq word change without the data or space it waits
//! for looks at the socket, whose hang-up is the truth about the peer. It
//! also looks every [`SLICE`], since a killed process pokes nobody.
//!
//! # Records
//!
//! The bytes are records (`record.rs`) at any offset, wrapping at the end of
//! the data area. The first publication of a message contains its whole
//! header. A message longer than a chunk (an eighth of the ring) is
//! published in chunks while the reader copies them out.

use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{Relaxed, Release, SeqCst};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::sys::futex;
use crate::sys::shm::SharedRegion;

const TAIL: usize = 0;
const DATA_SEQ: usize = 4;
const HEAD: usize = 128;
const SPACE_SEQ: usize = 132;
const READER_SLEEPERS: usize = 256;
const WRITER_SLEEPERS: usize = 260;
const ARMED: usize = 264;
#[cfg(feature = "tokio")]
const SPACE_ARMED: usize = 268;
const WRITER_TAIL: usize = 384;

/// The longest sleep between looks at the peer's socket: a futex cannot
/// tell that the peer died.
const SLICE: Duration = Duration::from_millis(20);

/// A view of ring `r` of a mapped region.
pub(super) struct Ring<'a> {
    region: &'a SharedRegion,
    control: usize,
    data: usize,
    cap: u32,
}

/// How a wait ended.
pub(super) enum Waited {
    /// The condition holds; the value it reported.
    Ready(u32),
    /// The deadline passed.
    Timeout,
    /// The peer's socket hung up and the condition does not hold.
    PeerGone,
}

impl<'a> Ring<'a> {
    pub(super) fn new(region: &'a SharedRegion, control: usize, data: usize, cap: u32) -> Self {
        Ring {
            region,
            control,
            data,
            cap,
        }
    }

    fn word(&self, at: usize) -> &'a AtomicU32 {
        self.region.atomic_u32(self.control + at)
    }

    /// The reader's index.
    pub(super) fn head(&self) -> u32 {
        self.word(HEAD).load(SeqCst)
    }

    /// The writer's index.
    pub(super) fn tail(&self) -> u32 {
        self.word(TAIL).load(SeqCst)
    }

    /// The last writer's copy of its index: equal to the tail a writer
    /// last published as long as no other copy of its end wrote since. On
    /// a line the reader never reads, so it stays in the writer's cache
    /// (the reader's spinning on `tail` takes that line away: a miss of
    /// ~0.1 µs per message measured). A hint; the caller falls back on
    /// [`tail`](Self::tail) when it differs from what it published.
    pub(super) fn writer_tail(&self) -> u32 {
        self.word(WRITER_TAIL).load(Relaxed)
    }

    /// Bytes published and not consumed.
    pub(super) fn used(&self) -> Result<u32> {
        self.used_to(self.tail())
    }

    /// Bytes free for a writer whose (possibly unpublished) index is `tail`.
    pub(super) fn free(&self, tail: u32) -> Result<u32> {
        Ok(self.cap - self.used_to(tail)?)
    }

    fn used_to(&self, tail: u32) -> Result<u32> {
        let used = tail.wrapping_sub(self.head());
        if used > self.cap {
            return Err(Error::Protocol(format!(
                "ring indices {tail} and {} are {used} bytes apart in a ring of {}",
                self.head(),
                self.cap
            )));
        }
        Ok(used)
    }

    /// Bytes in the ring.
    pub(super) fn cap(&self) -> u32 {
        self.cap
    }

    /// The most bytes copied between two publications: an eighth of the
    /// ring (64 KiB of 512 KiB), so that the reader copies one chunk while
    /// the writer fills the next. Larger chunks or rings measured no faster.
    pub(super) fn chunk(&self) -> usize {
        self.cap as usize / 8
    }

    /// The one or two pieces of the data area holding `n` bytes from index
    /// `at` (`n <= cap`): `(offset, length)` pairs.
    fn pieces(&self, at: u32, n: usize) -> [(usize, usize); 2] {
        assert!(
            n <= self.cap as usize,
            "{n} bytes from a ring of {}",
            self.cap
        );
        let pos = (at & (self.cap - 1)) as usize;
        let first = n.min(self.cap as usize - pos);
        [(self.data + pos, first), (self.data, n - first)]
    }

    /// Copies bytes from index `at` into `dst`.
    pub(super) fn read(&self, at: u32, dst: &mut [u8]) {
        let [(a, n), (b, _)] = self.pieces(at, dst.len());
        let (x, y) = dst.split_at_mut(n);
        self.region.read(a, x);
        self.region.read(b, y);
    }

    /// Appends `n` bytes from index `at` to `out`.
    pub(super) fn append(&self, at: u32, n: usize, out: &mut Vec<u8>) {
        for (offset, len) in self.pieces(at, n) {
            self.region.append_to(offset, len, out);
        }
    }

    /// Copies `src` to index `at`.
    pub(super) fn write(&self, at: u32, src: &[u8]) {
        let [(a, n), (b, _)] = self.pieces(at, src.len());
        self.region.write(a, &src[..n]);
        self.region.write(b, &src[n..]);
    }

    /// Makes the bytes before `tail` visible and wakes a sleeping reader.
    ///
    /// The `Release` store orders the record's bytes before the index (the
    /// reader loads it with acquire semantics and then copies). The light
    /// fence orders the store before the load of the sleepers counter: with
    /// the sleeper's heavy fence after its increment, either this load sees
    /// the sleeper or the sleeper sees the new tail (see `futex::light_fence`).
    pub(super) fn publish_tail(&self, tail: u32) {
        self.word(WRITER_TAIL).store(tail, Relaxed);
        self.word(TAIL).store(tail, Release);
        futex::light_fence();
        notify(self.word(DATA_SEQ), self.word(READER_SLEEPERS));
    }

    /// Frees the bytes before `head` and wakes a sleeping writer. The
    /// `Release` store orders this end's copies out of the ring before the
    /// writer may overwrite them; the fences pair as in
    /// [`publish_tail`](Self::publish_tail).
    pub(super) fn publish_head(&self, head: u32) {
        self.word(HEAD).store(head, Release);
        futex::light_fence();
        notify(self.word(SPACE_SEQ), self.word(WRITER_SLEEPERS));
    }

    /// Whether a reader announced itself asleep (for tests).
    #[cfg(test)]
    pub(super) fn is_reader_asleep(&self) -> bool {
        self.word(READER_SLEEPERS).load(SeqCst) != 0
    }

    /// Whether a writer announced itself asleep (for tests).
    #[cfg(test)]
    pub(super) fn is_writer_asleep(&self) -> bool {
        self.word(WRITER_SLEEPERS).load(SeqCst) != 0
    }

    /// Asks writers for a wake byte on the socket (or stops asking). Arming
    /// is the sleeper's side of a Dekker pair with [`publish_tail`]'s light
    /// fence: the heavy fence makes sure that either the writer sees
    /// `armed` or the caller's next look at the ring sees the data.
    ///
    /// [`publish_tail`]: Self::publish_tail
    pub(super) fn set_armed(&self, armed: bool) {
        self.word(ARMED).store(armed as u32, SeqCst);
        if armed {
            futex::heavy_fence();
        }
    }

    /// After a publication: whether a waiter asked for a wake byte (which
    /// the caller then owes it). A relaxed look first (ordered after the
    /// publication by its fence): the line is only read on the fast path.
    pub(super) fn take_armed(&self) -> bool {
        let armed = self.word(ARMED);
        armed.load(Relaxed) != 0 && armed.swap(0, SeqCst) != 0
    }

    /// Asks readers for a wake byte on the socket when they free space
    /// (or stops asking): an awaiting writer. The heavy side of a Dekker
    /// pair with [`publish_head`](Self::publish_head)'s light fence, as
    /// [`set_armed`](Self::set_armed).
    #[cfg(feature = "tokio")]
    pub(super) fn set_space_armed(&self, armed: bool) {
        self.word(SPACE_ARMED).store(armed as u32, SeqCst);
        if armed {
            futex::heavy_fence();
        }
    }

    /// After freeing space: whether an awaiting writer asked for a wake
    /// byte (which the caller then owes it). A relaxed look first, on the
    /// line whose sleepers counter the publication just read.
    #[cfg(feature = "tokio")]
    pub(super) fn take_space_armed(&self) -> bool {
        let armed = self.word(SPACE_ARMED);
        armed.load(Relaxed) != 0 && armed.swap(0, SeqCst) != 0
    }

    /// Wakes whoever sleeps on this ring, on either side, so that it looks
    /// at the socket (a copy of an end is closing).
    pub(super) fn poke(&self) {
        for seq in [self.word(DATA_SEQ), self.word(SPACE_SEQ)] {
            seq.fetch_add(1, SeqCst);
            futex::wake(seq, i32::MAX as u32);
        }
    }

    /// Waits until at least `need` bytes are published (reader side).
    pub(super) fn wait_data(
        &self,
        need: u32,
        deadline: Option<Instant>,
        peer: Peer<impl Fn() -> bool>,
    ) -> Result<Waited> {
        let ready = || self.used().map(|u| (u >= need).then_some(u));
        let (seq, sleepers) = (self.word(DATA_SEQ), self.word(READER_SLEEPERS));
        wait(seq, sleepers, deadline, ready, peer)
    }

    /// Waits until at least `need` bytes are free for a writer at `tail`.
    pub(super) fn wait_space(
        &self,
        tail: u32,
        need: u32,
        peer: Peer<impl Fn() -> bool>,
    ) -> Result<Waited> {
        let ready = || self.free(tail).map(|f| (f >= need).then_some(f));
        let (seq, sleepers) = (self.word(SPACE_SEQ), self.word(WRITER_SLEEPERS));
        wait(seq, sleepers, None, ready, peer)
    }
}

/// Wakes the sleepers of `seq` if `sleepers` says there are any. Call right
/// after the store they wait for and a fence (see `publish_tail`).
fn notify(seq: &AtomicU32, sleepers: &AtomicU32) {
    if sleepers.load(Relaxed) != 0 {
        seq.fetch_add(1, SeqCst);
        futex::wake(seq, i32::MAX as u32);
    }
}

/// How a waiter learns that its peer is gone.
pub(super) struct Peer<F> {
    /// Looks at the socket (a system call): true once the peer hung up.
    pub(super) gone: F,
    /// Look before waiting at all (a copy of the peer closed since the
    /// last look).
    pub(super) look_first: bool,
}

/// Spins, then sleeps on `seq` in slices until `ready` reports a value.
/// A change of `seq` that leaves `ready` unsatisfied (a poke), and the end
/// of each slice, make it look at the peer.
fn wait(
    seq: &AtomicU32,
    sleepers: &AtomicU32,
    deadline: Option<Instant>,
    ready: impl Fn() -> Result<Option<u32>>,
    peer: Peer<impl Fn() -> bool>,
) -> Result<Waited> {
    if let Some(v) = ready()? {
        return Ok(Waited::Ready(v));
    }
    // Just looking (`try_recv`, `poll(0)`) neither spins nor teaches the
    // adaptive spin budget anything.
    let expired = deadline.is_some_and(|d| Instant::now() >= d);
    if peer.look_first || expired {
        if (peer.gone)() {
            return Ok(ready()?.map_or(Waited::PeerGone, Waited::Ready));
        }
        if expired {
            return Ok(Waited::Timeout);
        }
    }
    loop {
        let seen = seq.load(SeqCst);
        let slice_end = Instant::now() + SLICE;
        let until = deadline.map_or(slice_end, |d| d.min(slice_end));
        let got = futex::wait_until_fenced(seq, sleepers, Some(until), |now| match ready() {
            Ok(None) if now == seen => None,
            r => Some(r),
        })
        .map_err(Error::io("cannot wait on a pipe"))?;
        if let Some(v) = got.transpose()?.flatten() {
            return Ok(Waited::Ready(v));
        }
        if (peer.gone)() {
            return Ok(ready()?.map_or(Waited::PeerGone, Waited::Ready));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(Waited::Timeout);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region() -> SharedRegion {
        SharedRegion::create("ring-test", 4096 + 4096).unwrap()
    }

    #[test]
    fn copies_wrap_around_the_end() {
        let region = region();
        let ring = Ring::new(&region, 0, 4096, 4096);
        let src: Vec<u8> = (0..100).collect();
        ring.write(4096 * 3 - 40, &src);
        let mut dst = [0u8; 100];
        ring.read(4096 * 3 - 40, &mut dst);
        assert_eq!(&dst[..], &src[..]);
        let mut v = vec![9];
        ring.append(u32::MAX - 10, 100, &mut v);
        assert_eq!(v.len(), 101);
    }

    #[test]
    fn inconsistent_indices_are_a_protocol_error() {
        let region = region();
        let ring = Ring::new(&region, 0, 4096, 4096);
        ring.publish_tail(5000);
        assert!(matches!(ring.used(), Err(Error::Protocol(_))));
        ring.publish_head(4000);
        assert_eq!(ring.used().unwrap(), 1000);
        assert_eq!(ring.free(5000).unwrap(), 4096 - 1000);
    }

    #[test]
    fn a_wait_times_out_or_sees_the_peer_gone() {
        let region = region();
        let ring = Ring::new(&region, 0, 4096, 4096);
        let peer = |gone, look_first| Peer {
            gone: move || gone,
            look_first,
        };
        let soon = Some(Instant::now() + Duration::from_millis(5));
        let r = ring.wait_data(1, soon, peer(false, false));
        assert!(matches!(r, Ok(Waited::Timeout)));
        let r = ring.wait_data(1, None, peer(true, false));
        assert!(matches!(r, Ok(Waited::PeerGone)), "seen after a slice");
        let r = ring.wait_data(1, None, peer(true, true));
        assert!(matches!(r, Ok(Waited::PeerGone)), "seen at once");
        ring.publish_tail(3);
        let r = ring.wait_data(1, None, peer(true, true));
        assert!(matches!(r, Ok(Waited::Ready(3))), "data first");
    }
}
